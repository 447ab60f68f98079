//! Errors and warnings of the codec. Both carry where they happened (byte
//! offset, record index, record type) and which rule was broken; `Display`
//! gives one line.

use std::fmt;
use std::io;

use super::types::{DomainType, RecordType};

/// Which structure was being read when the input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The 24-byte image header.
    ImageHeader,
    /// The 16-byte domain header.
    DomainHeader,
    /// An 8-byte record header.
    RecordHeader,
    /// A record body.
    RecordBody,
    /// The 0-7 padding bytes after a body.
    Padding,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::ImageHeader => "image header",
            Part::DomainHeader => "domain header",
            Part::RecordHeader => "record header",
            Part::RecordBody => "record body",
            Part::Padding => "record padding",
        })
    }
}

/// A length rule a record body broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LengthRule {
    /// The body must be exactly this long.
    Exactly(u64),
    /// The body must be at least this long.
    AtLeast(u64),
    /// The body must be at most this long.
    AtMost(u64),
    /// The body must be a non-zero multiple of this.
    NonZeroMultipleOf(u64),
    /// The body must be a multiple of this (zero allowed).
    MultipleOf(u64),
}

impl fmt::Display for LengthRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LengthRule::Exactly(n) => write!(f, "exactly {n}"),
            LengthRule::AtLeast(n) => write!(f, "at least {n}"),
            LengthRule::AtMost(n) => write!(f, "at most {n}"),
            LengthRule::NonZeroMultipleOf(n) => write!(f, "a non-zero multiple of {n}"),
            LengthRule::MultipleOf(n) => write!(f, "a multiple of {n}"),
        }
    }
}

/// A requirement a complete stream did not meet at END.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Missing {
    /// v3: no STATIC_DATA_END record.
    StaticDataEnd,
    /// PV: no X86_PV_INFO record.
    PvInfo,
    /// PV: no X86_PV_P2M_FRAMES record.
    P2mFrames,
    /// PV: no PAGE_DATA record.
    PageData,
    /// PV: no non-empty X86_PV_VCPU_BASIC record for vcpu 0.
    Vcpu0Basic,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Missing::StaticDataEnd => "STATIC_DATA_END (mandatory in v3)",
            Missing::PvInfo => "X86_PV_INFO (mandatory for PV)",
            Missing::P2mFrames => "X86_PV_P2M_FRAMES (mandatory for PV)",
            Missing::PageData => "PAGE_DATA (mandatory for PV)",
            Missing::Vcpu0Basic => "X86_PV_VCPU_BASIC for vcpu 0 (mandatory for PV)",
        })
    }
}

/// A record in a place the stream grammar does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    /// A record type introduced in v3 (STATIC_DATA_END, CPU policies) in a v2 stream.
    NotInV2,
    /// A memory, register or signalling record before the end of static data
    /// (STATIC_DATA_END in v3; in v2 the first PAGE_DATA or X86_PV_P2M_FRAMES).
    BeforeStaticDataEnd,
    /// A second STATIC_DATA_END.
    DuplicateStaticDataEnd,
    /// A static record (CPU policy, X86_PV_INFO) after the end of static data.
    StaticAfterStaticDataEnd,
    /// A record that belongs to the other guest type.
    WrongGuestType(DomainType),
    /// PV: a second X86_PV_INFO.
    DuplicatePvInfo,
    /// PV: X86_PV_P2M_FRAMES (or SHARED_INFO) before X86_PV_INFO.
    BeforePvInfo,
    /// PV: PAGE_DATA (or VERIFY, CHECKPOINT) before X86_PV_P2M_FRAMES.
    BeforeP2mFrames,
    /// PV: PAGE_DATA or X86_PV_P2M_FRAMES after vcpu records of the same checkpoint.
    MemoryAfterVcpuRecords,
    /// PV: a vcpu record before any PAGE_DATA.
    VcpuBeforePageData,
    /// PV: X86_PV_P2M_FRAMES does not hold one pfn per P2M frame of `start..=end`.
    P2mFrameCount {
        /// Frames needed for the range at the guest's width.
        expected: u64,
        /// Frames present.
        got: u64,
    },
    /// CHECKPOINT_DIRTY_PFN_LIST on the forward channel.
    BackChannelOnly,
    /// A record other than CHECKPOINT_DIRTY_PFN_LIST on the back channel.
    NotOnBackChannel,
    /// CHECKPOINT in a stream read as not checkpointed.
    CheckpointNotAllowed,
    /// A record after END.
    AfterEnd,
    /// END reached without a required record.
    Incomplete(Missing),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotInV2 => f.write_str("record type not defined in a v2 stream"),
            Violation::BeforeStaticDataEnd => f.write_str("record before STATIC_DATA_END"),
            Violation::DuplicateStaticDataEnd => f.write_str("second STATIC_DATA_END"),
            Violation::StaticAfterStaticDataEnd => {
                f.write_str("static record after STATIC_DATA_END")
            }
            Violation::WrongGuestType(t) => write!(f, "record not valid in an {t} stream"),
            Violation::DuplicatePvInfo => f.write_str("second X86_PV_INFO"),
            Violation::BeforePvInfo => f.write_str("record before X86_PV_INFO"),
            Violation::BeforeP2mFrames => f.write_str("record before X86_PV_P2M_FRAMES"),
            Violation::MemoryAfterVcpuRecords => {
                f.write_str("memory record after vcpu records of the same checkpoint")
            }
            Violation::VcpuBeforePageData => f.write_str("vcpu record before any PAGE_DATA"),
            Violation::P2mFrameCount { expected, got } => {
                write!(f, "P2M range needs {expected} frame pfns, record has {got}")
            }
            Violation::BackChannelOnly => {
                f.write_str("CHECKPOINT_DIRTY_PFN_LIST is only valid on the back channel")
            }
            Violation::NotOnBackChannel => f.write_str("record not valid on the back channel"),
            Violation::CheckpointNotAllowed => f.write_str("CHECKPOINT in a plain stream"),
            Violation::AfterEnd => f.write_str("record after END"),
            Violation::Incomplete(m) => write!(f, "END without {m}"),
        }
    }
}

/// The rule an input broke (or the I/O failure that stopped reading).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The underlying reader or writer failed.
    Io {
        /// Kind of the I/O error.
        kind: io::ErrorKind,
        /// Its message.
        message: String,
    },
    /// The input ended inside a structure.
    Truncated(Part),
    /// The input ended at a record boundary with no END (and not after a CHECKPOINT
    /// of a checkpointed stream).
    MissingEnd,
    /// Bytes follow the END record of a standalone stream.
    TrailingData,
    /// Image header marker is not all ones (a legacy image, or not a stream).
    BadMarker(u64),
    /// Image header id is not "XENF".
    BadId(u32),
    /// Image header version is not 2 or 3.
    UnsupportedVersion(u32),
    /// Reserved option bits 1-15 set.
    ReservedOptions(u16),
    /// Reserved bytes 18-23 of the image header are not zero.
    ReservedImageHeader,
    /// Domain header type is reserved.
    UnknownDomainType(u32),
    /// Domain header page_shift is not 12.
    BadPageShift(u16),
    /// Reserved field of the domain header is not zero.
    ReservedDomainHeader(u16),
    /// Record body_length exceeds 128 MiB.
    RecordTooLong(u32),
    /// Record padding bytes are not zero.
    NonZeroPadding,
    /// A mandatory record type this revision does not define.
    UnknownMandatory(u32),
    /// A record body length breaks the record's layout.
    BadLength {
        /// The rule.
        rule: LengthRule,
        /// The body_length found.
        got: u64,
    },
    /// A reserved field (named) is not zero.
    ReservedField(&'static str),
    /// PAGE_DATA count is zero.
    ZeroPageCount,
    /// PAGE_DATA pfn entry `index` has reserved bits 52-59 set.
    ReservedPfnBits {
        /// Entry index.
        index: u32,
    },
    /// PAGE_DATA pfn entry `index` has a reserved type (0x5-0x8).
    BadPageType {
        /// Entry index.
        index: u32,
        /// The 4-bit type.
        bits: u8,
    },
    /// X86_PV_INFO guest_width is not 4 or 8.
    BadGuestWidth(u8),
    /// X86_PV_INFO pt_levels is not 3 or 4.
    BadPtLevels(u8),
    /// X86_PV_INFO width and levels do not match (4 needs 3, 8 needs 4).
    WidthLevelsMismatch {
        /// guest_width.
        width: u8,
        /// pt_levels.
        levels: u8,
    },
    /// X86_PV_P2M_FRAMES start_pfn > end_pfn.
    P2mStartAfterEnd {
        /// start_pfn.
        start: u32,
        /// end_pfn.
        end: u32,
    },
    /// A record the grammar does not allow here.
    Grammar(Violation),
    /// XCMIG_COMPRESSED_PAGE_DATA has more entries than a batch.
    TooManyEntries {
        /// count.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// XCMIG_COMPRESSED_PAGE_DATA names a compressor that is not defined.
    UnknownCompression(u8),
    /// XCMIG_COMPRESSED_PAGE_DATA: a page's size entry is 0 or above 4096.
    BadCompressedSize {
        /// Data page index.
        index: u32,
        /// The size entry.
        size: u16,
    },
    /// XCMIG_COMPRESSED_PAGE_DATA: a page does not decompress to one page.
    Decompress {
        /// Data page index.
        index: u32,
        /// The record's compressor.
        compression: super::compressed::Compression,
        /// What went wrong.
        message: String,
    },
    /// Writer: a PFN does not fit in 52 bits.
    PfnTooLarge(u64),
    /// Writer: the page slices do not add up to one page per data-bearing entry.
    PageDataMismatch {
        /// Bytes expected (4096 per entry with data).
        expected: u64,
        /// Bytes given.
        got: u64,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Io { message, .. } => write!(f, "I/O error: {message}"),
            ErrorKind::Truncated(p) => write!(f, "stream truncated in {p}"),
            ErrorKind::MissingEnd => f.write_str("stream ended without an END record"),
            ErrorKind::TrailingData => f.write_str("data after the END record"),
            ErrorKind::BadMarker(m) => {
                write!(
                    f,
                    "bad image marker {m:#018x} (legacy image or not a stream)"
                )
            }
            ErrorKind::BadId(id) => write!(f, "bad image id {id:#010x}, expected 0x58454e46"),
            ErrorKind::UnsupportedVersion(v) => write!(f, "unsupported stream version {v}"),
            ErrorKind::ReservedOptions(o) => write!(f, "reserved image option bits set: {o:#06x}"),
            ErrorKind::ReservedImageHeader => f.write_str("reserved image header bytes not zero"),
            ErrorKind::UnknownDomainType(t) => write!(f, "reserved domain type {t:#x}"),
            ErrorKind::BadPageShift(s) => write!(f, "page_shift {s}, expected 12"),
            ErrorKind::ReservedDomainHeader(r) => {
                write!(f, "reserved domain header field not zero: {r:#06x}")
            }
            ErrorKind::RecordTooLong(l) => {
                write!(f, "record body_length {l} exceeds the 128 MiB limit")
            }
            ErrorKind::NonZeroPadding => f.write_str("record padding not zero"),
            ErrorKind::UnknownMandatory(t) => write!(f, "unknown mandatory record type {t:#x}"),
            ErrorKind::BadLength { rule, got } => {
                write!(f, "body_length {got}, must be {rule}")
            }
            ErrorKind::ReservedField(name) => write!(f, "reserved field {name} not zero"),
            ErrorKind::ZeroPageCount => f.write_str("PAGE_DATA count is zero"),
            ErrorKind::ReservedPfnBits { index } => {
                write!(f, "reserved bits 52-59 set in pfn[{index}]")
            }
            ErrorKind::BadPageType { index, bits } => {
                write!(f, "reserved page type {bits:#x} in pfn[{index}]")
            }
            ErrorKind::BadGuestWidth(w) => write!(f, "guest_width {w}, expected 4 or 8"),
            ErrorKind::BadPtLevels(l) => write!(f, "pt_levels {l}, expected 3 or 4"),
            ErrorKind::WidthLevelsMismatch { width, levels } => write!(
                f,
                "guest_width {width} with pt_levels {levels} (4 needs 3, 8 needs 4)"
            ),
            ErrorKind::P2mStartAfterEnd { start, end } => {
                write!(f, "p2m_start_pfn {start:#x} > p2m_end_pfn {end:#x}")
            }
            ErrorKind::Grammar(v) => write!(f, "{v}"),
            ErrorKind::TooManyEntries { count, max } => {
                write!(f, "{count} entries, at most {max} allowed")
            }
            ErrorKind::UnknownCompression(id) => write!(f, "unknown compressor id {id}"),
            ErrorKind::BadCompressedSize { index, size } => {
                write!(f, "data page {index} has size {size}, not 1 to 4096 octets")
            }
            ErrorKind::Decompress {
                index,
                compression,
                message,
            } => write!(f, "data page {index} ({}): {message}", compression.name()),
            ErrorKind::PfnTooLarge(p) => write!(f, "pfn {p:#x} does not fit in 52 bits"),
            ErrorKind::PageDataMismatch { expected, got } => {
                write!(f, "{got} bytes of page data given, entries need {expected}")
            }
        }
    }
}

/// A codec error: the rule broken and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Byte offset in the stream: start of the record (or header) at fault; for
    /// truncation, the offset where the input ended.
    pub offset: u64,
    /// Index of the record at fault (0 = first record after the headers).
    pub record_index: Option<u64>,
    /// Type of the record at fault.
    pub record_type: Option<RecordType>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl Error {
    /// An error at `offset` outside any record.
    pub fn at(offset: u64, kind: ErrorKind) -> Error {
        Error {
            offset,
            record_index: None,
            record_type: None,
            kind,
        }
    }

    /// An error about record `index` of type `rtype` at `offset`.
    pub fn in_record(offset: u64, index: u64, rtype: RecordType, kind: ErrorKind) -> Error {
        Error {
            offset,
            record_index: Some(index),
            record_type: Some(rtype),
            kind,
        }
    }

    /// The grammar violation, if this is one.
    pub fn violation(&self) -> Option<Violation> {
        match self.kind {
            ErrorKind::Grammar(v) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn io(offset: u64, e: &io::Error) -> Error {
        Error::at(
            offset,
            ErrorKind::Io {
                kind: e.kind(),
                message: e.to_string(),
            },
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {}", self.offset)?;
        match (self.record_index, self.record_type) {
            (Some(i), Some(t)) => write!(f, ", record #{i} {t}")?,
            (Some(i), None) => write!(f, ", record #{i}")?,
            (None, Some(t)) => write!(f, ", record {t}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e.kind {
            ErrorKind::Io { kind, .. } => io::Error::new(kind, e.to_string()),
            ErrorKind::Truncated(_) | ErrorKind::MissingEnd => {
                io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string())
            }
            _ => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}

/// Something valid but worth reporting (deprecated records, spec errata,
/// deviations libxenguest itself makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningKind {
    /// TOOLSTACK is deprecated (and Xen 4.17's restore does not accept it).
    DeprecatedToolstack,
    /// A variable-size record with no content (spec errata: Xen 4.6-4.8 wrote these).
    EmptyRecord,
    /// HVM_PARAMS after HVM_CONTEXT in the same checkpoint: the spec says
    /// params must come first, libxenguest writes them after.
    HvmParamsAfterHvmContext,
    /// A vcpu context size Xen 4.17's restore would refuse (`limit` describes the bound).
    VcpuContextSize {
        /// Context bytes in the record.
        got: u64,
        /// Xen's bound for this kind and guest width.
        limit: LengthRule,
    },
    /// The first record of xcmig's extension in the stream: Xen's
    /// restorers refuse the stream (warned once per stream).
    XcmigExtension,
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarningKind::DeprecatedToolstack => f.write_str("deprecated TOOLSTACK record"),
            WarningKind::EmptyRecord => f.write_str("record with no content (tolerated, errata)"),
            WarningKind::HvmParamsAfterHvmContext => f.write_str(
                "HVM_PARAMS after HVM_CONTEXT (spec says before; libxenguest writes it after)",
            ),
            WarningKind::XcmigExtension => f.write_str(
                "xcmig extension record (compressed page data): only xcmig restores this stream; `xcmig convert --decompress` makes it standard",
            ),
            WarningKind::VcpuContextSize { got, limit } => write!(
                f,
                "vcpu context of {got} bytes; Xen 4.17 restore requires {limit}"
            ),
        }
    }
}

/// A warning: what and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Warning {
    /// Offset of the record.
    pub offset: u64,
    /// Index of the record.
    pub record_index: u64,
    /// Type of the record.
    pub record_type: RecordType,
    /// What.
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offset {}, record #{} {}: {}",
            self.offset, self.record_index, self.record_type, self.kind
        )
    }
}
