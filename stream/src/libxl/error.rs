//! Why a libxl stream is invalid, and what is unusual in a valid one: each
//! with the byte offset and the record concerned.

use std::fmt;
use std::io;

use super::record::RecordPos;
use super::{record_type_name, LIBXL_IDENT, LIBXL_VERSION};

/// Why a libxl stream is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibxlErrorKind {
    /// The input ended inside a structure.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Octets needed from the error offset.
        needed: u64,
    },
    /// The input ended where a record header was expected, before END.
    MissingEnd,
    /// `ident` is not "LibxlFmt".
    BadIdent(u64),
    /// `version` is not 2.
    BadVersion(u32),
    /// Reserved option bits set.
    ReservedOptions(u32),
    /// A mandatory record type this revision does not define.
    UnknownMandatory,
    /// A body that must be empty is not.
    NonEmptyBody,
    /// An EMULATOR_* body shorter than its 8-octet sub-header.
    ShortEmulatorHeader,
    /// An `emulator_id` the spec reserves.
    ReservedEmulatorId(u32),
    /// EMULATOR_XENSTORE_DATA payload not ending in NUL.
    XenstoreNotTerminated,
    /// EMULATOR_XENSTORE_DATA with a key but no value.
    XenstoreOddStrings(usize),
    /// EMULATOR_XENSTORE_DATA with an empty key.
    XenstoreEmptyKey(usize),
    /// EMULATOR_XENSTORE_DATA key that is absolute (starts with '/').
    XenstoreAbsoluteKey(String),
    /// EMULATOR_XENSTORE_DATA key with a character outside `[A-Za-z0-9-/_@]`.
    XenstoreBadKeyChar(String),
    /// CHECKPOINT_STATE body neither 4 octets nor 8 ending in a zero word.
    CheckpointStateLength(u32),
    /// CHECKPOINT_STATE with an undefined `control_id`.
    BadControlId(u32),
    /// A padding octet is not zero.
    NonZeroPadding,
    /// A record where the stream grammar does not allow it.
    Grammar(&'static str),
    /// EMULATOR_* records in a stream whose libxc part is a PV guest.
    EmulatorForPv,
    /// An I/O error other than end of input.
    Io(String),
}

impl fmt::Display for LibxlErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LibxlErrorKind::*;
        match self {
            Truncated { what, needed } => {
                write!(
                    f,
                    "truncated: input ends inside {what} ({needed} more octets expected)"
                )
            }
            MissingEnd => write!(f, "truncated: input ends before the END record"),
            BadIdent(v) => write!(
                f,
                "bad ident {v:#018x}, expected {LIBXL_IDENT:#018x} (\"LibxlFmt\")"
            ),
            BadVersion(v) => write!(f, "unsupported version {v}, expected {LIBXL_VERSION}"),
            ReservedOptions(v) => write!(f, "reserved option bits set ({v:#010x})"),
            UnknownMandatory => write!(f, "unknown mandatory record type (bit 31 clear)"),
            NonEmptyBody => write!(f, "body_length must be 0"),
            ShortEmulatorHeader => write!(f, "body shorter than the 8-octet emulator header"),
            ReservedEmulatorId(v) => write!(f, "reserved emulator_id {v:#x}"),
            XenstoreNotTerminated => write!(f, "xenstore data not NUL terminated"),
            XenstoreOddStrings(n) => {
                write!(
                    f,
                    "xenstore data holds {n} strings, expected key/value pairs"
                )
            }
            XenstoreEmptyKey(i) => write!(f, "xenstore pair {i} has an empty key"),
            XenstoreAbsoluteKey(k) => write!(f, "xenstore key {k:?} is absolute, must be relative"),
            XenstoreBadKeyChar(k) => {
                write!(
                    f,
                    "xenstore key {k:?} has a character outside [A-Za-z0-9-/_@]"
                )
            }
            CheckpointStateLength(n) => {
                write!(
                    f,
                    "body_length {n}, expected 4 (or 8 with a zero padding word)"
                )
            }
            BadControlId(v) => write!(f, "undefined control_id {v:#x}"),
            NonZeroPadding => write!(f, "non-zero padding octet"),
            Grammar(s) => write!(f, "{s}"),
            EmulatorForPv => write!(f, "emulator record in a PV guest's stream"),
            Io(s) => write!(f, "read error: {s}"),
        }
    }
}

/// An invalid libxl stream: where, which record, and the rule broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibxlError {
    /// Byte offset in the whole input of the offending octets.
    pub offset: u64,
    /// The record concerned; `None` for the stream header.
    pub record: Option<RecordPos>,
    /// The rule broken.
    pub kind: LibxlErrorKind,
}

impl LibxlError {
    pub(crate) fn header(offset: u64, kind: LibxlErrorKind) -> Self {
        LibxlError {
            offset,
            record: None,
            kind,
        }
    }

    pub(crate) fn at(offset: u64, rec: RecordPos, kind: LibxlErrorKind) -> Self {
        LibxlError {
            offset,
            record: Some(rec),
            kind,
        }
    }
}

impl fmt::Display for LibxlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            None => write!(f, "offset {}, libxl header: {}", self.offset, self.kind),
            Some(r) => write!(
                f,
                "offset {}, libxl record #{} {}: {}",
                self.offset,
                r.index,
                record_type_name(r.rtype),
                self.kind
            ),
        }
    }
}

impl std::error::Error for LibxlError {}

/// Something legal but unusual, reported without failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibxlWarning {
    /// Byte offset in the whole input.
    pub offset: u64,
    /// The record concerned; `None` for the header.
    pub record: Option<RecordPos>,
    /// What is unusual.
    pub message: String,
}

impl fmt::Display for LibxlWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            None => write!(f, "offset {}, libxl header: {}", self.offset, self.message),
            Some(r) => write!(
                f,
                "offset {}, libxl record #{} {}: {}",
                self.offset,
                r.index,
                record_type_name(r.rtype),
                self.message
            ),
        }
    }
}

pub(crate) fn io_err(offset: u64, record: Option<RecordPos>, e: io::Error) -> LibxlError {
    LibxlError {
        offset,
        record,
        kind: LibxlErrorKind::Io(e.to_string()),
    }
}
