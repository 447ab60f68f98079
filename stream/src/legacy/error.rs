//! Errors of the legacy reader and converter: the byte offset of the
//! offending octets and the rule they break, as one line.

use std::fmt;
use std::io;

use super::{ChunkId, Width};

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyErrorKind {
    /// Reading the input or writing the output failed.
    Io(String),
    /// The input ends inside a field.
    Truncated {
        /// The field.
        what: &'static str,
    },
    /// `p2m_size` is 0 or above [`super::MAX_P2M_SIZE`].
    BadP2mSize(u64),
    /// A PV image without the extended-info signature `~0UL`.
    NoExtendedInfo {
        /// The value found.
        found: u64,
        /// The width it was read at.
        width: Width,
    },
    /// An extended-info block runs past the total length.
    ExtendedInfoOverrun {
        /// The block id.
        id: [u8; 4],
        /// Its size.
        size: u32,
        /// Octets left in the extended info.
        left: u32,
    },
    /// A "vcpu" block of neither context size.
    BadVcpuBlockSize(u32),
    /// A "xcnt" block of another size than its u32, or an xsave size below
    /// the 16 octets of mask and size.
    BadXcntBlock(u32),
    /// The extended info has no "vcpu" block, so the guest width is unknown.
    NoVcpuBlock,
    /// A p2m frame list entry that is not a guest pfn.
    P2mFrameOutOfRange {
        /// Index in the list.
        index: usize,
        /// The value.
        pfn: u64,
    },
    /// A marker above [`super::MAX_BATCH`] or a negative one no saver uses.
    UnknownChunk(i32),
    /// A 64-bit batch entry with bits 32-63 set (the saver never sets them).
    HighEntryBits {
        /// Index in the batch.
        index: usize,
        /// The entry.
        entry: u64,
    },
    /// A batch entry of a reserved page type.
    BadPageType {
        /// Index in the batch.
        index: usize,
        /// The type nibble.
        bits: u8,
    },
    /// A batch entry's pfn is not below `p2m_size`.
    PfnOutOfRange {
        /// Index in the batch.
        index: usize,
        /// The pfn.
        pfn: u64,
        /// The image's p2m size.
        p2m_size: u64,
    },
    /// The same pfn twice in one batch.
    DuplicatePfn(u64),
    /// VCPU_INFO's highest id is negative or not below [`super::MAX_VCPUS`].
    BadMaxVcpuId(i32),
    /// VCPU_INFO's map sets a vCPU above its highest id, or none.
    BadVcpuMap(String),
    /// An HVM-only chunk in a PV image.
    HvmChunkInPv(ChunkId),
    /// A chunk's reserved padding is not zero.
    NonZeroChunkPad(ChunkId),
    /// A chunk this converter cannot carry into a v2 stream.
    Unsupported {
        /// The chunk.
        chunk: ChunkId,
        /// Why.
        why: &'static str,
    },
    /// Only one of the ioreq server pair.
    IoreqServerPair,
    /// The body ended without VCPU_INFO, which every Xen 4.0-4.5 saver
    /// writes in the body (a symptom of a wrong `--width`).
    NoVcpuInfo,
    /// The PV tail's unmapped pfn count is above the restorer's bound.
    TooManyUnmappedPfns(u32),
    /// A length field above [`super::MAX_BLOB`], or 0 where data is needed.
    BadLength {
        /// The field.
        what: &'static str,
        /// Its value.
        len: u64,
    },
    /// libxl's toolstack data (the QEMU physmap) is malformed.
    BadToolstack(String),
    /// The device model record's signature is not one of the known ones.
    BadQemuSignature([u8; 21]),
    /// Octets after the image's last part.
    TrailingData {
        /// Whether LAST_CHECKPOINT was missing (a Remus stream).
        checkpointed: bool,
    },
    /// An option combination the converter refuses.
    Usage(String),
}

impl fmt::Display for LegacyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LegacyErrorKind::*;
        match self {
            Io(m) => write!(f, "I/O error: {m}"),
            Truncated { what } => write!(f, "image truncated in {what}"),
            BadP2mSize(n) => write!(
                f,
                "p2m_size {n:#x} must be 1 to 2^28 (a legacy image names pfns in 28 bits)"
            ),
            NoExtendedInfo { found, width } => write!(
                f,
                "no extended-info signature: {found:#x} read as a {width} word, a PV image \
                 starts its extended info with ~0UL (wrong --width or --guest, or an image \
                 from before Xen 3.1)"
            ),
            ExtendedInfoOverrun { id, size, left } => write!(
                f,
                "extended-info block {:?} of {size} octets overruns the {left} octets left",
                String::from_utf8_lossy(id)
            ),
            BadVcpuBlockSize(n) => write!(
                f,
                "\"vcpu\" block of {n} octets: a vCPU context is 2800 (32-bit guest) or 5168 \
                 (64-bit guest) octets"
            ),
            BadXcntBlock(n) => write!(
                f,
                "\"xcnt\" block: {n} octets where a 4-octet size of at least 16 is due"
            ),
            NoVcpuBlock => f.write_str("extended info without a \"vcpu\" block: guest width unknown"),
            P2mFrameOutOfRange { index, pfn } => write!(
                f,
                "p2m frame list entry {index} is {pfn:#x}, not a pfn below p2m_size"
            ),
            UnknownChunk(m) => write!(
                f,
                "chunk marker {m}: neither a page batch (1 to 1024) nor a chunk id (-1 to -20)"
            ),
            HighEntryBits { index, entry } => write!(
                f,
                "batch entry {index} is {entry:#x}: bits 32-63 set, which no 64-bit saver writes \
                 (a 32-bit image read as 64-bit?)"
            ),
            BadPageType { index, bits } => {
                write!(f, "batch entry {index}: reserved page type {bits:#x}")
            }
            PfnOutOfRange {
                index,
                pfn,
                p2m_size,
            } => write!(
                f,
                "batch entry {index}: pfn {pfn:#x} not below p2m_size {p2m_size:#x}"
            ),
            DuplicatePfn(p) => write!(f, "pfn {p:#x} twice in one batch"),
            BadMaxVcpuId(n) => write!(f, "VCPU_INFO max_vcpu_id {n} must be 0 to 4095"),
            BadVcpuMap(m) => write!(f, "VCPU_INFO map {m}"),
            HvmChunkInPv(c) => write!(f, "HVM-only chunk {c} in a PV image"),
            NonZeroChunkPad(c) => write!(f, "chunk {c}: padding not zero"),
            Unsupported { chunk, why } => write!(f, "chunk {chunk}: {why}"),
            IoreqServerPair => f.write_str(
                "HVM_IOREQ_SERVER_PFN and HVM_NR_IOREQ_SERVER_PAGES come as a pair, one is missing",
            ),
            NoVcpuInfo => f.write_str(
                "body ends without a VCPU_INFO chunk, which every Xen 4 saver writes (wrong --width?)",
            ),
            TooManyUnmappedPfns(n) => {
                write!(f, "{n} unmapped pfns in the PV tail, more than 2^28")
            }
            BadLength { what, len } => write!(f, "{what} {len} out of range (1 to 128 MiB)"),
            BadToolstack(m) => write!(f, "libxl toolstack data: {m}"),
            BadQemuSignature(s) => write!(
                f,
                "device model signature {:?}, expected \"DeviceModelRecord0002\"",
                String::from_utf8_lossy(s)
            ),
            TrailingData { checkpointed } => {
                if *checkpointed {
                    f.write_str(
                        "data after the image, and no LAST_CHECKPOINT: a checkpointed (Remus) \
                         stream, which cannot be converted",
                    )
                } else {
                    f.write_str("data after the image's last part")
                }
            }
            Usage(m) => f.write_str(m),
        }
    }
}

/// An invalid legacy image (or an I/O failure), with the offset of the
/// offending octets from the start of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyError {
    /// Byte offset in the input.
    pub offset: u64,
    /// The part of the image: "p2m size", "extended info", "batch 3",
    /// "chunk TSC_INFO (-7)", "PV tail", ...
    pub part: String,
    /// What is wrong.
    pub kind: LegacyErrorKind,
}

impl LegacyError {
    /// True for I/O failures (as opposed to a malformed image).
    pub fn is_io(&self) -> bool {
        matches!(self.kind, LegacyErrorKind::Io(_))
    }

    /// An error at `offset` in `part`.
    pub fn new(offset: u64, part: impl Into<String>, kind: LegacyErrorKind) -> LegacyError {
        LegacyError {
            offset,
            part: part.into(),
            kind,
        }
    }

    /// An I/O error.
    pub fn io(offset: u64, part: impl Into<String>, e: &io::Error) -> LegacyError {
        LegacyError::new(offset, part, LegacyErrorKind::Io(e.to_string()))
    }
}

impl fmt::Display for LegacyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offset {}, legacy {}: {}",
            self.offset, self.part, self.kind
        )
    }
}

impl std::error::Error for LegacyError {}
