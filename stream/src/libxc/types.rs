//! Plain values of the libxc stream: headers, record types, PAGE_DATA
//! entries and the small fixed-layout record bodies. Byte order is
//! [`Endian`](crate::Endian); Xen's own x86 values are in [`crate::x86`].

use std::fmt;

use crate::wire::Endian;
use crate::x86::{PageType, PAGE_SHIFT};

/// The image header marker: 8 bytes of 0xFF (legacy images have a zero bit here).
pub const IHDR_MARKER: u64 = 0xFFFF_FFFF_FFFF_FFFF;
/// The image header id, "XENF" in ASCII.
pub const IHDR_ID: u32 = 0x5845_4E46;
/// Options bit 0: the domain header and records are big-endian.
pub const IHDR_OPT_BIG_ENDIAN: u16 = 1;
/// Size of the image header in bytes.
pub const IMAGE_HEADER_LEN: usize = 24;
/// Size of the domain header in bytes.
pub const DOMAIN_HEADER_LEN: usize = 16;
/// Size of a record header (type + body_length) in bytes.
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest record body accepted (and written), as libxc's `REC_LENGTH_MAX`.
pub const MAX_RECORD_LEN: u32 = 128 << 20;
/// Mask of the PFN in a PAGE_DATA pfn entry (bits 0-51).
pub const PFN_MASK: u64 = (1 << 52) - 1;
/// Mask of the reserved bits 52-59 of a PAGE_DATA pfn entry.
pub const PFN_RESERVED_MASK: u64 = 0xFF << 52;
/// Bit 31 of a record type: the record is optional and may be skipped.
pub const REC_TYPE_OPTIONAL: u32 = 0x8000_0000;

/// Stream format version from the image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// Version 2 (Xen 4.6 - 4.13): no STATIC_DATA_END, no CPU policy records.
    V2,
    /// Version 3 (Xen 4.14 and later): STATIC_DATA_END mandatory.
    V3,
}

impl Version {
    /// The number written in the image header.
    pub fn number(self) -> u32 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// The version for a header number, if supported.
    pub fn from_number(n: u32) -> Option<Version> {
        match n {
            2 => Some(Version::V2),
            3 => Some(Version::V3),
            _ => None,
        }
    }
}

/// The image header (24 bytes, always big-endian on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageHeader {
    /// Stream format version.
    pub version: Version,
    /// Byte order of everything after the image header (options bit 0).
    pub endian: Endian,
}

impl ImageHeader {
    /// A version 3 little-endian header: what xcmig writes.
    pub const V3_LE: ImageHeader = ImageHeader {
        version: Version::V3,
        endian: Endian::Little,
    };

    /// The 24 wire bytes of this header.
    pub fn to_bytes(&self) -> [u8; IMAGE_HEADER_LEN] {
        let mut b = [0u8; IMAGE_HEADER_LEN];
        b[0..8].copy_from_slice(&IHDR_MARKER.to_be_bytes());
        b[8..12].copy_from_slice(&IHDR_ID.to_be_bytes());
        b[12..16].copy_from_slice(&self.version.number().to_be_bytes());
        let options = match self.endian {
            Endian::Little => 0u16,
            Endian::Big => IHDR_OPT_BIG_ENDIAN,
        };
        b[16..18].copy_from_slice(&options.to_be_bytes());
        // Bytes 18..24 are reserved and stay zero.
        b
    }
}

/// Guest type from the domain header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainType {
    /// 0x0001: x86 PV.
    X86Pv,
    /// 0x0002: x86 HVM (and PVH, which Xen saves as HVM).
    X86Hvm,
}

impl DomainType {
    /// The number written in the domain header.
    pub fn number(self) -> u32 {
        match self {
            DomainType::X86Pv => 1,
            DomainType::X86Hvm => 2,
        }
    }

    /// The type for a header number; every other value is reserved.
    pub fn from_number(n: u32) -> Option<DomainType> {
        match n {
            1 => Some(DomainType::X86Pv),
            2 => Some(DomainType::X86Hvm),
            _ => None,
        }
    }
}

impl fmt::Display for DomainType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DomainType::X86Pv => "x86 PV",
            DomainType::X86Hvm => "x86 HVM",
        })
    }
}

/// The domain header (16 bytes, in the stream's byte order):
/// `type u32, page_shift u16, reserved u16, xen_major u32, xen_minor u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DomainHeader {
    /// Guest type.
    pub domain_type: DomainType,
    /// log2 of the guest page size; the reader only accepts 12.
    pub page_shift: u16,
    /// Xen major version of the saving host; 0 when converted from a legacy image.
    pub xen_major: u32,
    /// Xen minor version; for converted images, the converter's own version.
    pub xen_minor: u32,
}

impl DomainHeader {
    /// A header for a guest of `domain_type` saved on Xen `major.minor`.
    pub fn new(domain_type: DomainType, xen_major: u32, xen_minor: u32) -> DomainHeader {
        DomainHeader {
            domain_type,
            // 12 fits the wire field.
            page_shift: PAGE_SHIFT as u16,
            xen_major,
            xen_minor,
        }
    }

    /// True when `convert-legacy-stream` produced this image (`xen_major == 0`).
    pub fn is_legacy_converted(&self) -> bool {
        self.xen_major == 0
    }

    /// The 16 wire bytes of this header in byte order `endian`.
    pub fn to_bytes(&self, endian: Endian) -> [u8; DOMAIN_HEADER_LEN] {
        let mut v = Vec::with_capacity(DOMAIN_HEADER_LEN);
        endian.put_u32(&mut v, self.domain_type.number());
        endian.put_u16(&mut v, self.page_shift);
        endian.put_u16(&mut v, 0);
        endian.put_u32(&mut v, self.xen_major);
        endian.put_u32(&mut v, self.xen_minor);
        let mut b = [0u8; DOMAIN_HEADER_LEN];
        b.copy_from_slice(&v);
        b
    }
}

/// A record type number (mandatory unless bit 31 is set).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u32);

impl RecordType {
    /// Marks the end of the stream.
    pub const END: RecordType = RecordType(0x00);
    /// Guest memory: pfn/type array and page contents.
    pub const PAGE_DATA: RecordType = RecordType(0x01);
    /// PV guest width and page-table levels.
    pub const X86_PV_INFO: RecordType = RecordType(0x02);
    /// PV: the frames holding the guest's P2M table.
    pub const X86_PV_P2M_FRAMES: RecordType = RecordType(0x03);
    /// PV vcpu: `XEN_DOMCTL_{get,set}vcpucontext` blob.
    pub const X86_PV_VCPU_BASIC: RecordType = RecordType(0x04);
    /// PV vcpu: `XEN_DOMCTL_{get,set}_ext_vcpucontext` blob.
    pub const X86_PV_VCPU_EXTENDED: RecordType = RecordType(0x05);
    /// PV vcpu: `XEN_DOMCTL_{get,set}vcpuextstate` blob.
    pub const X86_PV_VCPU_XSAVE: RecordType = RecordType(0x06);
    /// PV: the shared info page.
    pub const SHARED_INFO: RecordType = RecordType(0x07);
    /// TSC mode, frequency, elapsed time, incarnation.
    pub const X86_TSC_INFO: RecordType = RecordType(0x08);
    /// HVM: `XEN_DOMCTL_{get,set}hvmcontext` blob.
    pub const HVM_CONTEXT: RecordType = RecordType(0x09);
    /// HVM: (index, value) parameter pairs.
    pub const HVM_PARAMS: RecordType = RecordType(0x0a);
    /// Deprecated toolstack blob.
    pub const TOOLSTACK: RecordType = RecordType(0x0b);
    /// PV vcpu: `XEN_DOMCTL_{get,set}_vcpu_msrs` blob.
    pub const X86_PV_VCPU_MSRS: RecordType = RecordType(0x0c);
    /// Further memory records are sent for verification only.
    pub const VERIFY: RecordType = RecordType(0x0d);
    /// The preceding records form a consistent snapshot (Remus/COLO).
    pub const CHECKPOINT: RecordType = RecordType(0x0e);
    /// COLO back channel: pfns dirtied on the secondary.
    pub const CHECKPOINT_DIRTY_PFN_LIST: RecordType = RecordType(0x0f);
    /// End of the static (execution-invariant) data.
    pub const STATIC_DATA_END: RecordType = RecordType(0x10);
    /// Array of `xen_cpuid_leaf_t` (24 bytes each).
    pub const X86_CPUID_POLICY: RecordType = RecordType(0x11);
    /// Array of `xen_msr_entry_t` (16 bytes each).
    pub const X86_MSR_POLICY: RecordType = RecordType(0x12);
    /// xcmig's extension, from the spec's range reserved for mandatory
    /// records: PAGE_DATA with each page compressed
    /// (`docs/compressed-page-data.md`). Xen's restorers refuse it as an
    /// unknown mandatory record.
    pub const XCMIG_COMPRESSED_PAGE_DATA: RecordType = RecordType(0x5843_0001);

    /// True when bit 31 is set: a reader may skip the record.
    pub fn is_optional(self) -> bool {
        self.0 & REC_TYPE_OPTIONAL != 0
    }

    /// True for the mandatory types defined by revision 3 of the spec.
    pub fn is_known(self) -> bool {
        self.0 <= 0x12
    }

    /// True for xcmig's own mandatory record types (readers other than
    /// xcmig's refuse them).
    pub fn is_xcmig_extension(self) -> bool {
        self == RecordType::XCMIG_COMPRESSED_PAGE_DATA
    }

    /// The spec's name of the type (or xcmig's, for its extension), or
    /// "OPTIONAL"/"UNKNOWN".
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "END",
            0x01 => "PAGE_DATA",
            0x02 => "X86_PV_INFO",
            0x03 => "X86_PV_P2M_FRAMES",
            0x04 => "X86_PV_VCPU_BASIC",
            0x05 => "X86_PV_VCPU_EXTENDED",
            0x06 => "X86_PV_VCPU_XSAVE",
            0x07 => "SHARED_INFO",
            0x08 => "X86_TSC_INFO",
            0x09 => "HVM_CONTEXT",
            0x0a => "HVM_PARAMS",
            0x0b => "TOOLSTACK",
            0x0c => "X86_PV_VCPU_MSRS",
            0x0d => "VERIFY",
            0x0e => "CHECKPOINT",
            0x0f => "CHECKPOINT_DIRTY_PFN_LIST",
            0x10 => "STATIC_DATA_END",
            0x11 => "X86_CPUID_POLICY",
            0x12 => "X86_MSR_POLICY",
            0x5843_0001 => "XCMIG_COMPRESSED_PAGE_DATA",
            t if t & REC_TYPE_OPTIONAL != 0 => "OPTIONAL",
            _ => "UNKNOWN",
        }
    }
}

impl fmt::Debug for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:#x})", self.name(), self.0)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_known() || self.is_xcmig_extension() {
            f.write_str(self.name())
        } else {
            write!(f, "{} {:#010x}", self.name(), self.0)
        }
    }
}

/// One decoded PAGE_DATA entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PfnEntry {
    /// Guest frame number (at most 52 bits).
    pub pfn: u64,
    /// Page type.
    pub page_type: PageType,
}

impl PfnEntry {
    /// An entry; `pfn` must fit in 52 bits to be written.
    pub fn new(pfn: u64, page_type: PageType) -> PfnEntry {
        PfnEntry { pfn, page_type }
    }

    /// The 64-bit wire value: type in bits 60-63, pfn in bits 0-51.
    pub fn to_raw(self) -> u64 {
        (u64::from(self.page_type.bits()) << 60) | (self.pfn & PFN_MASK)
    }
}

/// X86_PV_INFO body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct X86PvInfo {
    /// Guest width in bytes: 4 (32-bit) or 8 (64-bit).
    pub guest_width: u8,
    /// Page-table levels: 3 with width 4, 4 with width 8.
    pub pt_levels: u8,
}

impl X86PvInfo {
    /// The record for a guest of `width`.
    pub fn new(width: crate::x86::pv::GuestWidth) -> X86PvInfo {
        X86PvInfo {
            guest_width: width.bytes(),
            pt_levels: width.levels(),
        }
    }

    /// The guest width the record names; `None` for a pair Xen does not
    /// have (the reader refuses those).
    pub fn width(&self) -> Option<crate::x86::pv::GuestWidth> {
        crate::x86::pv::GuestWidth::from_pv_info(self.guest_width, self.pt_levels)
    }
}

/// One HVM_PARAMS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HvmParam {
    /// `HVM_PARAM_*` index.
    pub index: u64,
    /// Value.
    pub value: u64,
}

/// Which of the four X86_PV_VCPU_* records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VcpuKind {
    /// X86_PV_VCPU_BASIC.
    Basic,
    /// X86_PV_VCPU_EXTENDED.
    Extended,
    /// X86_PV_VCPU_XSAVE.
    Xsave,
    /// X86_PV_VCPU_MSRS.
    Msrs,
}

impl VcpuKind {
    /// The record type carrying this kind.
    pub fn record_type(self) -> RecordType {
        match self {
            VcpuKind::Basic => RecordType::X86_PV_VCPU_BASIC,
            VcpuKind::Extended => RecordType::X86_PV_VCPU_EXTENDED,
            VcpuKind::Xsave => RecordType::X86_PV_VCPU_XSAVE,
            VcpuKind::Msrs => RecordType::X86_PV_VCPU_MSRS,
        }
    }

    /// The kind for a record type, if it is one of the four.
    pub fn from_record_type(t: RecordType) -> Option<VcpuKind> {
        match t {
            RecordType::X86_PV_VCPU_BASIC => Some(VcpuKind::Basic),
            RecordType::X86_PV_VCPU_EXTENDED => Some(VcpuKind::Extended),
            RecordType::X86_PV_VCPU_XSAVE => Some(VcpuKind::Xsave),
            RecordType::X86_PV_VCPU_MSRS => Some(VcpuKind::Msrs),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pfn_entry_raw_form_puts_type_in_the_top_nibble() {
        let e = PfnEntry::new(0x000f_ffff_ffff_ffff, PageType::L2TabPin);
        assert_eq!(e.to_raw(), 0xa00f_ffff_ffff_ffff);
    }

    #[test]
    fn headers_encode_as_the_spec_draws_them() {
        let ih = ImageHeader {
            version: Version::V2,
            endian: Endian::Big,
        }
        .to_bytes();
        assert_eq!(
            ih,
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b'X', b'E', b'N', b'F', 0, 0, 0, 2,
                0, 1, 0, 0, 0, 0, 0, 0
            ]
        );
        let dh = DomainHeader::new(DomainType::X86Pv, 4, 17).to_bytes(Endian::Little);
        assert_eq!(dh, [1, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 17, 0, 0, 0]);
    }

    #[test]
    fn record_type_names_and_optional_bit() {
        assert_eq!(RecordType::X86_MSR_POLICY.name(), "X86_MSR_POLICY");
        assert!(RecordType(0x8000_0000).is_optional());
        assert!(!RecordType(0x13).is_known());
        assert_eq!(RecordType(0x13).to_string(), "UNKNOWN 0x00000013");
    }
}
