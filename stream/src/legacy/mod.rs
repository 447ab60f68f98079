//! The legacy save image: what `xc_domain_save` wrote from Xen 4.0 to 4.5,
//! before the v2 stream (Xen 4.6). Read from `tools/libxc/xc_domain_save.c`
//! and `xc_domain_restore.c` at RELEASE-4.4.0 and RELEASE-4.5.0 and the
//! protocol comment of `xg_save_restore.h`.
//!
//! The image has no header, no version and no byte-order mark: its layout
//! follows the C types of the saving toolstack. Every `ulong` below is the
//! toolstack's `unsigned long` (4 octets for a 32-bit dom0, 8 for a 64-bit
//! one: the [`Width`] a reader must be told or must [detect](detect));
//! everything is little-endian (x86 only).
//!
//! ```text
//! ulong   p2m_size                      guest frames (pfns are 28-bit: <= 2^28)
//! PV only:
//!   ulong ~0                            extended-info signature
//!   u32   total                         octets of blocks that follow
//!   blocks: char[4] id, u32 size, data  "vcpu" (a vCPU context: 2800 octets
//!                                       for a 32-bit guest, 5168 for a
//!                                       64-bit one), "extv" (size 0: each
//!                                       vCPU has a 128-octet extended
//!                                       context), "xcnt" (u32: octets of
//!                                       each vCPU's xsave block)
//!   ulong frames[ceil(p2m_size / (4096 / guest width))]  p2m frame list (pfns)
//! body: chunks, each starting with an i32
//!   n in 1..=1024   a page batch: ulong entries[n] (type in bits 28-31,
//!                   pfn in bits 0-27), then 4096 octets for every entry
//!                   whose type carries data (not XTAB, XALLOC, BROKEN)
//!   n < 0           a chunk of id n ([`ChunkId`])
//!   0               end of the body
//! HVM tail: u64 ioreq pfn, u64 bufioreq pfn, u64 store pfn,
//!           u32 length, HVM context (length octets)
//! PV tail:  u32 n, ulong unmapped pfns[n];
//!           for every vCPU set in the VCPU_INFO map: its context (the
//!           "vcpu" block's size), 128 octets of extended context ("extv"),
//!           u64 xfeature mask, u64 size, size octets of xsave ("xcnt");
//!           4096 octets of shared info
//! ```
//!
//! Above the libxc layer, the toolstack appended the device model's state
//! to an HVM image ([`DeviceModel`]): libxl since 4.1 a 21-octet signature,
//! "DeviceModelRecord0002" (or "RemusDeviceModelState" for Remus), u32
//! length and the QEMU save data; xend and libxl 4.0
//! "QemuDeviceModelRecord" and the data to the end of the file. An `xl
//! save` file puts its [header](crate::xl) in front, without the "stream
//! v2" flag; an xend file "LinuxGuestRecord", a big-endian i32 length and
//! its SXP config.
//!
//! Files: `reader.rs` (a pull parser that never holds more than one page
//! batch), `error.rs` (errors with the byte offset and the rule broken),
//! `detect.rs` (the toolstack word size from the first octets) and
//! `convert.rs` (a v2/v3 libxc or libxl stream, as Xen's
//! `convert-legacy-stream` writes it).

pub mod convert;
pub mod detect;
mod error;
mod reader;

pub use convert::{convert, ConvertOptions, ConvertSummary, Converted, OutputFormat, Trailer};
pub use detect::{detect_width, Detection, DECISIVE_PREFIX};
pub use error::{LegacyError, LegacyErrorKind};
pub use reader::{Batch, Chunk, DeviceModel, ExtendedInfo, Item, LegacyReader, VcpuTail};

use std::fmt;

/// Most pages in one batch (`MAX_BATCH_SIZE`).
pub const MAX_BATCH: u32 = 1024;
/// Most vCPUs (`XC_SR_MAX_VCPUS`): vCPU ids are below this.
pub const MAX_VCPUS: u32 = 4096;
/// The pfn field of a batch entry: bits 0-27.
pub const PFN_FIELD: u64 = 0x0fff_ffff;
/// The type field of a batch entry: bits 28-31.
pub const TYPE_FIELD: u64 = 0xf000_0000;
/// Largest p2m size a legacy image can describe: its pfns have 28 bits.
pub const MAX_P2M_SIZE: u64 = 1 << 28;
/// The entry the saver leaves for frames it could not map (XTAB, pfn 0);
/// it names no page and is dropped.
pub const XTAB_FILLER: u64 = 0xf000_0000;
/// Size of a 32-bit guest's `vcpu_guest_context`.
pub const VCPU_CONTEXT_32: u32 = 0xaf0;
/// Size of a 64-bit guest's `vcpu_guest_context`.
pub const VCPU_CONTEXT_64: u32 = 0x1430;
/// Size of each vCPU's extended context when "extv" is present.
pub const EXTENDED_CONTEXT_LEN: usize = 128;
/// Most unmapped pfns in the PV tail (the restorer's own bound).
pub const MAX_UNMAPPED_PFNS: u32 = 1 << 28;
/// Largest HVM context, toolstack data or device model record accepted
/// (the v2 record limit).
pub const MAX_BLOB: u32 = 128 << 20;
/// Device model signature of libxl since Xen 4.1: u32 length, data.
pub const QEMU_SIGNATURE: &[u8; 21] = b"DeviceModelRecord0002";
/// Device model signature of Remus checkpoints (same layout).
pub const REMUS_QEMU_SIGNATURE: &[u8; 21] = b"RemusDeviceModelState";
/// Device model signature of xend (every release) and of libxl 4.0: the
/// data runs to the end of the file.
pub const XEND_QEMU_SIGNATURE: &[u8; 21] = b"QemuDeviceModelRecord";
/// The start of an xend save file, then a big-endian i32 config length and
/// the SXP config, then the legacy image.
pub const XEND_SIGNATURE: &[u8; 16] = b"LinuxGuestRecord";

/// The length of an xend file's header and config when `prefix` starts
/// with one (and holds its length field).
pub fn xend_header_len(prefix: &[u8]) -> Option<usize> {
    let rest = prefix.strip_prefix(XEND_SIGNATURE)?;
    let len: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    Some(XEND_SIGNATURE.len() + 4 + u32::from_be_bytes(len) as usize)
}

/// Word size of the toolstack that wrote the image (`sizeof(unsigned long)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Width {
    /// A 32-bit dom0 toolstack.
    Bits32,
    /// A 64-bit dom0 toolstack.
    Bits64,
}

impl Width {
    /// Octets of an `unsigned long`.
    pub fn bytes(self) -> usize {
        match self {
            Width::Bits32 => 4,
            Width::Bits64 => 8,
        }
    }

    /// 32 or 64.
    pub fn bits(self) -> u32 {
        8 * self.bytes() as u32
    }

    /// The width for 32 or 64.
    pub fn from_bits(bits: u32) -> Option<Width> {
        match bits {
            32 => Some(Width::Bits32),
            64 => Some(Width::Bits64),
            _ => None,
        }
    }

    /// The other width.
    pub fn other(self) -> Width {
        match self {
            Width::Bits32 => Width::Bits64,
            Width::Bits64 => Width::Bits32,
        }
    }

    /// `~0UL`.
    pub fn all_ones(self) -> u64 {
        match self {
            Width::Bits32 => u64::from(u32::MAX),
            Width::Bits64 => u64::MAX,
        }
    }
}

impl fmt::Display for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit", self.bits())
    }
}

/// The guest kind: it decides the image's layout, and nothing in the image
/// says which it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guest {
    /// x86 PV.
    Pv,
    /// x86 HVM.
    Hvm,
}

impl fmt::Display for Guest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guest::Pv => "PV",
            Guest::Hvm => "HVM",
        })
    }
}

/// The negative chunk ids (`XC_SAVE_ID_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkId {
    /// -1: the pages that follow are to be verified (debug saves).
    EnableVerifyMode,
    /// -2: highest vCPU id and the map of online vCPUs.
    VcpuInfo,
    /// -3: HVM EPT identity page table address.
    HvmIdentPt,
    /// -4: HVM vm86 TSS address.
    HvmVm86Tss,
    /// -5: transcendent memory pages.
    Tmem,
    /// -6: transcendent memory, per-vCPU extra.
    TmemExtra,
    /// -7: TSC mode, elapsed time, frequency and incarnation.
    TscInfo,
    /// -8: HVM console pfn.
    HvmConsolePfn,
    /// -9: this is the last (or only) checkpoint.
    LastCheckpoint,
    /// -10: HVM ACPI I/O port location.
    HvmAcpiIoportsLocation,
    /// -11: HVM Viridian enlightenments.
    HvmViridian,
    /// -12: compressed page data (Remus checkpoint compression).
    CompressedData,
    /// -13: compression is on from the next checkpoint.
    EnableCompression,
    /// -14: HVM VM generation id address.
    HvmGenerationIdAddr,
    /// -15: HVM paging ring pfn.
    HvmPagingRingPfn,
    /// -16: HVM access (monitor) ring pfn.
    HvmAccessRingPfn,
    /// -17: HVM sharing ring pfn.
    HvmSharingRingPfn,
    /// -18: the toolstack's own data (libxl: the QEMU physmap).
    Toolstack,
    /// -19: HVM ioreq server pfn base (Xen 4.5).
    HvmIoreqServerPfn,
    /// -20: HVM ioreq server page count (Xen 4.5).
    HvmNrIoreqServerPages,
}

impl ChunkId {
    /// Every id, from -1 down.
    pub const ALL: [ChunkId; 20] = [
        ChunkId::EnableVerifyMode,
        ChunkId::VcpuInfo,
        ChunkId::HvmIdentPt,
        ChunkId::HvmVm86Tss,
        ChunkId::Tmem,
        ChunkId::TmemExtra,
        ChunkId::TscInfo,
        ChunkId::HvmConsolePfn,
        ChunkId::LastCheckpoint,
        ChunkId::HvmAcpiIoportsLocation,
        ChunkId::HvmViridian,
        ChunkId::CompressedData,
        ChunkId::EnableCompression,
        ChunkId::HvmGenerationIdAddr,
        ChunkId::HvmPagingRingPfn,
        ChunkId::HvmAccessRingPfn,
        ChunkId::HvmSharingRingPfn,
        ChunkId::Toolstack,
        ChunkId::HvmIoreqServerPfn,
        ChunkId::HvmNrIoreqServerPages,
    ];

    /// The wire value (negative).
    pub fn value(self) -> i32 {
        -1 - ChunkId::ALL.iter().position(|c| *c == self).unwrap_or(0) as i32
    }

    /// The id of a negative marker.
    pub fn from_value(v: i32) -> Option<ChunkId> {
        if v >= 0 {
            return None;
        }
        ChunkId::ALL.get((-1 - i64::from(v)) as usize).copied()
    }

    /// The `XC_SAVE_ID_*` suffix.
    pub fn name(self) -> &'static str {
        match self {
            ChunkId::EnableVerifyMode => "ENABLE_VERIFY_MODE",
            ChunkId::VcpuInfo => "VCPU_INFO",
            ChunkId::HvmIdentPt => "HVM_IDENT_PT",
            ChunkId::HvmVm86Tss => "HVM_VM86_TSS",
            ChunkId::Tmem => "TMEM",
            ChunkId::TmemExtra => "TMEM_EXTRA",
            ChunkId::TscInfo => "TSC_INFO",
            ChunkId::HvmConsolePfn => "HVM_CONSOLE_PFN",
            ChunkId::LastCheckpoint => "LAST_CHECKPOINT",
            ChunkId::HvmAcpiIoportsLocation => "HVM_ACPI_IOPORTS_LOCATION",
            ChunkId::HvmViridian => "HVM_VIRIDIAN",
            ChunkId::CompressedData => "COMPRESSED_DATA",
            ChunkId::EnableCompression => "ENABLE_COMPRESSION",
            ChunkId::HvmGenerationIdAddr => "HVM_GENERATION_ID_ADDR",
            ChunkId::HvmPagingRingPfn => "HVM_PAGING_RING_PFN",
            ChunkId::HvmAccessRingPfn => "HVM_ACCESS_RING_PFN",
            ChunkId::HvmSharingRingPfn => "HVM_SHARING_RING_PFN",
            ChunkId::Toolstack => "TOOLSTACK",
            ChunkId::HvmIoreqServerPfn => "HVM_IOREQ_SERVER_PFN",
            ChunkId::HvmNrIoreqServerPages => "HVM_NR_IOREQ_SERVER_PAGES",
        }
    }

    /// The HVM parameter an HVM-only chunk (`u32 pad, u64 value`) carries,
    /// as `HVM_PARAM_*`; `None` for the other chunks.
    pub fn hvm_param(self) -> Option<u64> {
        Some(match self {
            ChunkId::HvmIdentPt => 12,
            ChunkId::HvmVm86Tss => 15,
            ChunkId::HvmConsolePfn => 17,
            ChunkId::HvmAcpiIoportsLocation => 19,
            ChunkId::HvmViridian => 9,
            ChunkId::HvmGenerationIdAddr => 34,
            ChunkId::HvmPagingRingPfn => 27,
            ChunkId::HvmAccessRingPfn => 28,
            ChunkId::HvmSharingRingPfn => 29,
            ChunkId::HvmIoreqServerPfn => 32,
            ChunkId::HvmNrIoreqServerPages => 33,
            _ => return None,
        })
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.value())
    }
}

/// `HVM_PARAM_STORE_PFN`, `HVM_PARAM_IOREQ_PFN`, `HVM_PARAM_BUFIOREQ_PFN`:
/// the "magic pfns" of the HVM tail.
pub const HVM_PARAM_STORE_PFN: u64 = 1;
/// See [`HVM_PARAM_STORE_PFN`].
pub const HVM_PARAM_IOREQ_PFN: u64 = 5;
/// See [`HVM_PARAM_STORE_PFN`].
pub const HVM_PARAM_BUFIOREQ_PFN: u64 = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_round_trip_their_wire_values() {
        for (i, c) in ChunkId::ALL.iter().enumerate() {
            assert_eq!(c.value(), -1 - i as i32);
            assert_eq!(ChunkId::from_value(c.value()), Some(*c));
        }
        assert_eq!(ChunkId::TscInfo.value(), -7);
        assert_eq!(ChunkId::HvmNrIoreqServerPages.value(), -20);
        assert_eq!(ChunkId::from_value(-21), None);
        assert_eq!(ChunkId::from_value(0), None);
        assert_eq!(ChunkId::from_value(i32::MIN), None);
    }
}
