//! The libxl migration stream (libxl-migration-stream.html, revision 2): the
//! layer libxl wraps around the libxc stream.
//!
//! ```text
//! header: ident "LibxlFmt" (u64 BE) | version 2 (u32 BE) | options (u32 BE)
//! record: type (u32) | body_length (u32) | body | zero padding to 8 octets
//! ```
//!
//! The header is always big-endian; record headers and bodies follow the
//! endianness bit of `options` (bit 0: 0 little, 1 big). Bit 1 marks a
//! stream produced by `convert-legacy-stream`; bits 2-31 are reserved.
//!
//! A `LIBXC_CONTEXT` record has an empty body and is followed *inline* by a
//! complete libxc stream, whose length the libxl layer never knows. This
//! module therefore only decodes libxl records; the caller reads the libxc
//! stream over the same byte source ([`LibxlReader::inner_mut`]) and tells
//! the reader how many bytes it consumed ([`LibxlReader::advance`]), so that
//! offsets stay absolute. Checkpointed (Remus/COLO) streams interleave the
//! two layers: after each libxc `CHECKPOINT` record, libxl records follow up
//! to a `CHECKPOINT_END`, then the libxc stream resumes. [`LibxlGrammar`]
//! checks that ordering; drive it with the records read and the libxc
//! milestones the caller observes.
//!
//! ```text
//!  Start --LIBXC_CONTEXT--> InLibxc --libxc END--> AfterLibxc --END--> Ended
//!    |  ^                    |    ^                   |  ^
//!    EMULATOR_*      libxc CHECKPOINT  CHECKPOINT_END    EMULATOR_*
//!                            v    |
//!                          InCheckpoint (EMULATOR_* records)
//! ```

use std::fmt;
use std::io::{self, Read, Write};

use super::input::{read_growing, read_upto};

/// `ident`: "LibxlFmt" in ASCII, read as a big-endian u64.
pub const LIBXL_IDENT: u64 = 0x4c69_6278_6c46_6d74;
/// The only header version defined.
pub const LIBXL_VERSION: u32 = 2;
/// Options bit 0: record fields are big-endian.
pub const LIBXL_OPT_BIG_ENDIAN: u32 = 1 << 0;
/// Options bit 1: the stream was produced by the legacy conversion tool.
pub const LIBXL_OPT_LEGACY: u32 = 1 << 1;
/// Options bits that have a meaning; the others are reserved and must be 0.
pub const LIBXL_OPT_KNOWN: u32 = LIBXL_OPT_BIG_ENDIAN | LIBXL_OPT_LEGACY;
/// Size of the stream header in octets.
pub const LIBXL_HEADER_LEN: u64 = 16;
/// Size of a record header in octets.
pub const LIBXL_RECORD_HEADER_LEN: u64 = 8;
/// Size of the emulator sub-header that starts EMULATOR_* bodies.
pub const EMULATOR_HEADER_LEN: usize = 8;

/// Record type codes.
pub mod rec_type {
    /// Last record of the stream.
    pub const END: u32 = 0x0000_0000;
    /// Marker: a libxc stream follows inline.
    pub const LIBXC_CONTEXT: u32 = 0x0000_0001;
    /// Xenstore key/value pairs for an emulator.
    pub const EMULATOR_XENSTORE_DATA: u32 = 0x0000_0002;
    /// Opaque emulator (qemu) state.
    pub const EMULATOR_CONTEXT: u32 = 0x0000_0003;
    /// End of the libxl part of one checkpoint.
    pub const CHECKPOINT_END: u32 = 0x0000_0004;
    /// COLO control message (back channel only).
    pub const CHECKPOINT_STATE: u32 = 0x0000_0005;
    /// Bit 31 marks optional records, which a reader may skip.
    pub const OPTIONAL_BIT: u32 = 0x8000_0000;
}

/// The name of a libxl record type, for messages.
pub fn record_type_name(rtype: u32) -> String {
    match rtype {
        rec_type::END => "END".into(),
        rec_type::LIBXC_CONTEXT => "LIBXC_CONTEXT".into(),
        rec_type::EMULATOR_XENSTORE_DATA => "EMULATOR_XENSTORE_DATA".into(),
        rec_type::EMULATOR_CONTEXT => "EMULATOR_CONTEXT".into(),
        rec_type::CHECKPOINT_END => "CHECKPOINT_END".into(),
        rec_type::CHECKPOINT_STATE => "CHECKPOINT_STATE".into(),
        t if t & rec_type::OPTIONAL_BIT != 0 => format!("OPTIONAL_{t:#010x}"),
        t => format!("UNKNOWN_{t:#010x}"),
    }
}

/// Byte order of multi-octet fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endianness {
    /// Least significant octet first (every x86 and Arm host).
    Little,
    /// Most significant octet first.
    Big,
}

impl Endianness {
    /// Decodes a u32 from 4 octets in this order.
    pub fn u32_from(self, b: [u8; 4]) -> u32 {
        match self {
            Endianness::Little => u32::from_le_bytes(b),
            Endianness::Big => u32::from_be_bytes(b),
        }
    }

    /// Encodes a u32 as 4 octets in this order.
    pub fn u32_to(self, v: u32) -> [u8; 4] {
        match self {
            Endianness::Little => v.to_le_bytes(),
            Endianness::Big => v.to_be_bytes(),
        }
    }
}

/// The libxl stream header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibxlHeader {
    /// Header version (2 is the only one defined).
    pub version: u32,
    /// Raw options word.
    pub options: u32,
}

impl LibxlHeader {
    /// The header libxl writes: version 2, little-endian, not legacy.
    pub fn new() -> Self {
        LibxlHeader {
            version: LIBXL_VERSION,
            options: 0,
        }
    }

    /// Byte order of the records, from options bit 0.
    pub fn endianness(&self) -> Endianness {
        if self.options & LIBXL_OPT_BIG_ENDIAN != 0 {
            Endianness::Big
        } else {
            Endianness::Little
        }
    }

    /// Whether the stream came out of the legacy conversion tool.
    pub fn legacy(&self) -> bool {
        self.options & LIBXL_OPT_LEGACY != 0
    }

    /// Encodes the 16 header octets.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&LIBXL_IDENT.to_be_bytes());
        b[8..12].copy_from_slice(&self.version.to_be_bytes());
        b[12..16].copy_from_slice(&self.options.to_be_bytes());
        b
    }

    /// Decodes and checks the 16 header octets. `offset` is where they start
    /// in the input, for error messages.
    pub fn parse(b: &[u8; 16], offset: u64) -> Result<Self, LibxlError> {
        let ident = u64::from_be_bytes(b[0..8].try_into().expect("8 octets"));
        let version = u32::from_be_bytes(b[8..12].try_into().expect("4 octets"));
        let options = u32::from_be_bytes(b[12..16].try_into().expect("4 octets"));
        if ident != LIBXL_IDENT {
            return Err(LibxlError::header(offset, LibxlErrorKind::BadIdent(ident)));
        }
        if version != LIBXL_VERSION {
            return Err(LibxlError::header(
                offset + 8,
                LibxlErrorKind::BadVersion(version),
            ));
        }
        if options & !LIBXL_OPT_KNOWN != 0 {
            return Err(LibxlError::header(
                offset + 12,
                LibxlErrorKind::ReservedOptions(options & !LIBXL_OPT_KNOWN),
            ));
        }
        Ok(LibxlHeader { version, options })
    }
}

impl Default for LibxlHeader {
    fn default() -> Self {
        Self::new()
    }
}

/// Which emulator an EMULATOR_* record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmulatorHeader {
    /// 0 unknown (legacy streams), 1 qemu-traditional, 2 qemu-upstream.
    pub id: u32,
    /// Index of this emulator for the domain.
    pub index: u32,
}

/// `emulator_id` values.
pub mod emulator_id {
    /// Unknown; only legacy-converted streams use it.
    pub const UNKNOWN: u32 = 0;
    /// qemu-xen-traditional.
    pub const QEMU_TRADITIONAL: u32 = 1;
    /// Upstream qemu.
    pub const QEMU_UPSTREAM: u32 = 2;
}

/// The name of an emulator id, for messages.
pub fn emulator_name(id: u32) -> String {
    match id {
        emulator_id::UNKNOWN => "unknown".into(),
        emulator_id::QEMU_TRADITIONAL => "qemu-traditional".into(),
        emulator_id::QEMU_UPSTREAM => "qemu-upstream".into(),
        other => format!("reserved({other:#x})"),
    }
}

/// CHECKPOINT_STATE `control_id` values (COLO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckpointControl {
    /// Primary -> secondary: start a new checkpoint.
    New,
    /// Secondary -> primary: the secondary VM is suspended.
    SvmSuspended,
    /// Secondary -> primary: the secondary VM is ready.
    SvmReady,
    /// Secondary -> primary: the secondary VM is resumed.
    SvmResumed,
}

impl CheckpointControl {
    /// Decodes a control id; `None` for a value the spec does not define.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => CheckpointControl::New,
            1 => CheckpointControl::SvmSuspended,
            2 => CheckpointControl::SvmReady,
            3 => CheckpointControl::SvmResumed,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            CheckpointControl::New => 0,
            CheckpointControl::SvmSuspended => 1,
            CheckpointControl::SvmReady => 2,
            CheckpointControl::SvmResumed => 3,
        }
    }
}

/// A decoded libxl record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibxlRecord {
    /// End of the stream.
    End,
    /// A libxc stream follows inline.
    LibxcContext,
    /// Xenstore key/value pairs for an emulator: `data` is the packed
    /// sequence of NUL-terminated keys and values (checked when read).
    EmulatorXenstoreData {
        /// Which emulator.
        emulator: EmulatorHeader,
        /// Packed `key\0value\0...` octets.
        data: Vec<u8>,
    },
    /// An opaque emulator state blob.
    EmulatorContext {
        /// Which emulator.
        emulator: EmulatorHeader,
        /// The emulator's own save format.
        blob: Vec<u8>,
    },
    /// End of the libxl records of one checkpoint.
    CheckpointEnd,
    /// A COLO control message.
    CheckpointState {
        /// What the peer signals.
        control: CheckpointControl,
    },
    /// A record with bit 31 set, carried through unchanged.
    Optional {
        /// Its type code (bit 31 set).
        rtype: u32,
        /// Its body, without padding.
        body: Vec<u8>,
    },
}

impl LibxlRecord {
    /// The record's type code.
    pub fn rtype(&self) -> u32 {
        match self {
            LibxlRecord::End => rec_type::END,
            LibxlRecord::LibxcContext => rec_type::LIBXC_CONTEXT,
            LibxlRecord::EmulatorXenstoreData { .. } => rec_type::EMULATOR_XENSTORE_DATA,
            LibxlRecord::EmulatorContext { .. } => rec_type::EMULATOR_CONTEXT,
            LibxlRecord::CheckpointEnd => rec_type::CHECKPOINT_END,
            LibxlRecord::CheckpointState { .. } => rec_type::CHECKPOINT_STATE,
            LibxlRecord::Optional { rtype, .. } => *rtype,
        }
    }

    /// Length of the body this record encodes to, without padding.
    pub fn body_len(&self) -> usize {
        match self {
            LibxlRecord::End | LibxlRecord::LibxcContext | LibxlRecord::CheckpointEnd => 0,
            LibxlRecord::EmulatorXenstoreData { data, .. } => EMULATOR_HEADER_LEN + data.len(),
            LibxlRecord::EmulatorContext { blob, .. } => EMULATOR_HEADER_LEN + blob.len(),
            LibxlRecord::CheckpointState { .. } => 4,
            LibxlRecord::Optional { body, .. } => body.len(),
        }
    }

    /// The key/value pairs of an EMULATOR_XENSTORE_DATA record (empty for
    /// any other record). Pairs are split at NULs; a record that came out of
    /// [`LibxlReader`] is known to be well formed.
    pub fn xenstore_pairs(&self) -> Vec<(&[u8], &[u8])> {
        match self {
            LibxlRecord::EmulatorXenstoreData { data, .. } => split_pairs(data),
            _ => Vec::new(),
        }
    }
}

fn split_pairs(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let body = data.strip_suffix(&[0]).unwrap_or(data);
    if body.is_empty() && data.is_empty() {
        return Vec::new();
    }
    let mut parts = body.split(|&b| b == 0);
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        out.push((k, v));
    }
    out
}

/// Encodes key/value pairs as EMULATOR_XENSTORE_DATA octets.
pub fn pack_xenstore_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// Where a record sits in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    /// Byte offset of the record header in the whole input.
    pub offset: u64,
    /// 0-based index among the libxl records.
    pub index: u64,
    /// Type code.
    pub rtype: u32,
    /// `body_length` field.
    pub body_len: u32,
}

impl RecordPos {
    /// Octets the record occupies on the wire, header and padding included.
    pub fn wire_len(&self) -> u64 {
        LIBXL_RECORD_HEADER_LEN + padded(u64::from(self.body_len))
    }
}

fn padded(len: u64) -> u64 {
    (len + 7) & !7
}

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
    fn header(offset: u64, kind: LibxlErrorKind) -> Self {
        LibxlError {
            offset,
            record: None,
            kind,
        }
    }

    fn at(offset: u64, rec: RecordPos, kind: LibxlErrorKind) -> Self {
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

fn io_err(offset: u64, record: Option<RecordPos>, e: io::Error) -> LibxlError {
    LibxlError {
        offset,
        record,
        kind: LibxlErrorKind::Io(e.to_string()),
    }
}

/// Reads libxl records from a byte source, checking each record's layout.
///
/// Ordering between records is [`LibxlGrammar`]'s job. After a
/// `LIBXC_CONTEXT` record (or inside a checkpoint) the caller reads the libxc
/// stream from [`inner_mut`](Self::inner_mut) and reports the octets it
/// consumed with [`advance`](Self::advance).
#[derive(Debug)]
pub struct LibxlReader<R> {
    inner: R,
    offset: u64,
    next_index: u64,
    header: LibxlHeader,
    warnings: Vec<LibxlWarning>,
}

impl<R: Read> LibxlReader<R> {
    /// Reads and checks the header at the start of `inner`.
    pub fn new(inner: R) -> Result<Self, LibxlError> {
        Self::with_offset(inner, 0)
    }

    /// Like [`new`](Self::new), for a stream that starts `offset` octets into
    /// the input (e.g. after an `xl` save-file header).
    pub fn with_offset(mut inner: R, offset: u64) -> Result<Self, LibxlError> {
        let mut b = [0u8; 16];
        let got = read_upto(&mut inner, &mut b).map_err(|e| io_err(offset, None, e))?;
        if got < b.len() {
            return Err(LibxlError::header(
                offset + got as u64,
                LibxlErrorKind::Truncated {
                    what: "the stream header",
                    needed: (b.len() - got) as u64,
                },
            ));
        }
        let header = LibxlHeader::parse(&b, offset)?;
        let mut warnings = Vec::new();
        if header.endianness() == Endianness::Big {
            warnings.push(LibxlWarning {
                offset: offset + 12,
                record: None,
                message: "big-endian records: libxl on x86 refuses such streams".into(),
            });
        }
        Ok(LibxlReader {
            inner,
            offset: offset + LIBXL_HEADER_LEN,
            next_index: 0,
            header,
            warnings,
        })
    }

    /// The stream header.
    pub fn header(&self) -> &LibxlHeader {
        &self.header
    }

    /// Byte offset (in the whole input) of the next unread octet.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of libxl records read so far.
    pub fn records_read(&self) -> u64 {
        self.next_index
    }

    /// The byte source, for reading the inline libxc stream.
    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Accounts for `n` octets the caller consumed from
    /// [`inner_mut`](Self::inner_mut).
    pub fn advance(&mut self, n: u64) {
        self.offset += n;
    }

    /// Gives the byte source back.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Drains the warnings gathered so far.
    pub fn take_warnings(&mut self) -> Vec<LibxlWarning> {
        std::mem::take(&mut self.warnings)
    }

    /// Reads the next record: header, body and padding, checking the body's
    /// layout for its type and that padding is zero.
    pub fn next_record(&mut self) -> Result<(RecordPos, LibxlRecord), LibxlError> {
        let start = self.offset;
        let mut hb = [0u8; 8];
        let got = read_upto(&mut self.inner, &mut hb).map_err(|e| io_err(start, None, e))?;
        if got == 0 {
            return Err(LibxlError::header(start, LibxlErrorKind::MissingEnd));
        }
        let e = self.header.endianness();
        let rtype = e.u32_from(hb[0..4].try_into().expect("4 octets"));
        let body_len = e.u32_from(hb[4..8].try_into().expect("4 octets"));
        let pos = RecordPos {
            offset: start,
            index: self.next_index,
            rtype,
            body_len,
        };
        if got < hb.len() {
            return Err(LibxlError::at(
                start + got as u64,
                pos,
                LibxlErrorKind::Truncated {
                    what: "a record header",
                    needed: (hb.len() - got) as u64,
                },
            ));
        }
        // Reject before reading the body: an unknown mandatory record cannot
        // be understood, whatever it holds.
        if rtype & rec_type::OPTIONAL_BIT == 0 && rtype > rec_type::CHECKPOINT_STATE {
            return Err(LibxlError::at(start, pos, LibxlErrorKind::UnknownMandatory));
        }
        let body_start = start + LIBXL_RECORD_HEADER_LEN;
        let total = padded(u64::from(body_len));
        let raw =
            read_growing(&mut self.inner, total).map_err(|e| io_err(body_start, Some(pos), e))?;
        if (raw.len() as u64) < total {
            let (what, needed) = if (raw.len() as u64) < u64::from(body_len) {
                ("a record body", u64::from(body_len) - raw.len() as u64)
            } else {
                ("record padding", total - raw.len() as u64)
            };
            return Err(LibxlError::at(
                body_start + raw.len() as u64,
                pos,
                LibxlErrorKind::Truncated { what, needed },
            ));
        }
        if raw[body_len as usize..].iter().any(|&b| b != 0) {
            return Err(LibxlError::at(start, pos, LibxlErrorKind::NonZeroPadding));
        }
        let mut body = raw;
        body.truncate(body_len as usize);
        let rec = self.decode(pos, body)?;
        self.offset = start + pos.wire_len();
        self.next_index += 1;
        Ok((pos, rec))
    }

    fn decode(&mut self, pos: RecordPos, body: Vec<u8>) -> Result<LibxlRecord, LibxlError> {
        let e = self.header.endianness();
        let fail = |k| Err(LibxlError::at(pos.offset, pos, k));
        match pos.rtype {
            rec_type::END | rec_type::LIBXC_CONTEXT | rec_type::CHECKPOINT_END => {
                if !body.is_empty() {
                    return fail(LibxlErrorKind::NonEmptyBody);
                }
                Ok(match pos.rtype {
                    rec_type::END => LibxlRecord::End,
                    rec_type::LIBXC_CONTEXT => LibxlRecord::LibxcContext,
                    _ => LibxlRecord::CheckpointEnd,
                })
            }
            rec_type::EMULATOR_XENSTORE_DATA | rec_type::EMULATOR_CONTEXT => {
                if body.len() < EMULATOR_HEADER_LEN {
                    return fail(LibxlErrorKind::ShortEmulatorHeader);
                }
                let emulator = EmulatorHeader {
                    id: e.u32_from(body[0..4].try_into().expect("4 octets")),
                    index: e.u32_from(body[4..8].try_into().expect("4 octets")),
                };
                if emulator.id > emulator_id::QEMU_UPSTREAM {
                    return fail(LibxlErrorKind::ReservedEmulatorId(emulator.id));
                }
                if emulator.id == emulator_id::UNKNOWN && !self.header.legacy() {
                    self.warnings.push(LibxlWarning {
                        offset: pos.offset,
                        record: Some(pos),
                        message: "emulator_id 0 (unknown) outside a legacy-converted stream".into(),
                    });
                }
                let payload = body[EMULATOR_HEADER_LEN..].to_vec();
                if pos.rtype == rec_type::EMULATOR_CONTEXT {
                    return Ok(LibxlRecord::EmulatorContext {
                        emulator,
                        blob: payload,
                    });
                }
                self.check_xenstore(pos, &payload)?;
                Ok(LibxlRecord::EmulatorXenstoreData {
                    emulator,
                    data: payload,
                })
            }
            rec_type::CHECKPOINT_STATE => {
                // libxl writes body_length 4; the spec draws the record as
                // control_id plus a padding word, so 8 with that word zero
                // is accepted too.
                match body.len() {
                    4 => {}
                    8 if body[4..8] == [0; 4] => self.warnings.push(LibxlWarning {
                        offset: pos.offset,
                        record: Some(pos),
                        message: "body_length 8 with a zero padding word (libxl writes 4)".into(),
                    }),
                    _ => return fail(LibxlErrorKind::CheckpointStateLength(pos.body_len)),
                }
                let id = e.u32_from(body[0..4].try_into().expect("4 octets"));
                match CheckpointControl::from_u32(id) {
                    Some(control) => Ok(LibxlRecord::CheckpointState { control }),
                    None => fail(LibxlErrorKind::BadControlId(id)),
                }
            }
            rtype => {
                // Only optional types reach here: unknown mandatory ones were
                // rejected from the header.
                self.warnings.push(LibxlWarning {
                    offset: pos.offset,
                    record: Some(pos),
                    message: "optional record skipped (libxl itself rejects unknown records)"
                        .into(),
                });
                Ok(LibxlRecord::Optional { rtype, body })
            }
        }
    }

    fn check_xenstore(&mut self, pos: RecordPos, data: &[u8]) -> Result<(), LibxlError> {
        let fail = |k| Err(LibxlError::at(pos.offset, pos, k));
        if data.is_empty() {
            return Ok(());
        }
        if data.last() != Some(&0) {
            return fail(LibxlErrorKind::XenstoreNotTerminated);
        }
        let strings = data[..data.len() - 1].split(|&b| b == 0).count();
        if strings % 2 != 0 {
            return fail(LibxlErrorKind::XenstoreOddStrings(strings));
        }
        for (i, (k, v)) in split_pairs(data).into_iter().enumerate() {
            let kname = || String::from_utf8_lossy(k).into_owned();
            if k.is_empty() {
                return fail(LibxlErrorKind::XenstoreEmptyKey(i));
            }
            if k[0] == b'/' {
                return fail(LibxlErrorKind::XenstoreAbsoluteKey(kname()));
            }
            if !k
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"-/_@".contains(&c))
            {
                return fail(LibxlErrorKind::XenstoreBadKeyChar(kname()));
            }
            if v.iter().any(|&c| !(0x20..0x7f).contains(&c)) {
                self.warnings.push(LibxlWarning {
                    offset: pos.offset,
                    record: Some(pos),
                    message: format!("xenstore value of {:?} is not printable ASCII", kname()),
                });
            }
        }
        Ok(())
    }
}

/// Writes a libxl stream: the header on creation, then records with their
/// padding. After a `LIBXC_CONTEXT` record, write the libxc stream to
/// [`inner_mut`](Self::inner_mut).
#[derive(Debug)]
pub struct LibxlWriter<W> {
    inner: W,
    endianness: Endianness,
}

impl<W: Write> LibxlWriter<W> {
    /// Writes `header` and returns the writer.
    pub fn new(mut inner: W, header: LibxlHeader) -> io::Result<Self> {
        inner.write_all(&header.to_bytes())?;
        Ok(LibxlWriter {
            inner,
            endianness: header.endianness(),
        })
    }

    /// A writer that continues a stream whose `header` was already written,
    /// e.g. after the sink was handed to a libxc writer and back.
    pub fn resume(inner: W, header: &LibxlHeader) -> Self {
        LibxlWriter {
            inner,
            endianness: header.endianness(),
        }
    }

    /// Writes one record with its padding. Fails (writing nothing) when the
    /// body does not fit the 32-bit length field.
    pub fn write_record(&mut self, rec: &LibxlRecord) -> io::Result<()> {
        let body_len = u32::try_from(rec.body_len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "libxl record body over 4 GiB")
        })?;
        let e = self.endianness;
        let mut head = Vec::with_capacity(16);
        head.extend_from_slice(&e.u32_to(rec.rtype()));
        head.extend_from_slice(&e.u32_to(body_len));
        let payload: &[u8] = match rec {
            LibxlRecord::End | LibxlRecord::LibxcContext | LibxlRecord::CheckpointEnd => &[],
            LibxlRecord::EmulatorXenstoreData { emulator, data } => {
                head.extend_from_slice(&e.u32_to(emulator.id));
                head.extend_from_slice(&e.u32_to(emulator.index));
                data
            }
            LibxlRecord::EmulatorContext { emulator, blob } => {
                head.extend_from_slice(&e.u32_to(emulator.id));
                head.extend_from_slice(&e.u32_to(emulator.index));
                blob
            }
            LibxlRecord::CheckpointState { control } => {
                head.extend_from_slice(&e.u32_to(control.to_u32()));
                &[]
            }
            LibxlRecord::Optional { body, .. } => body,
        };
        let pad = (padded(u64::from(body_len)) - u64::from(body_len)) as usize;
        let zeros = [0u8; 8];
        let parts = [
            io::IoSlice::new(&head),
            io::IoSlice::new(payload),
            io::IoSlice::new(&zeros[..pad]),
        ];
        write_all_vectored(&mut self.inner, &parts)
    }

    /// The byte sink, for writing the inline libxc stream.
    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Flushes and gives the sink back.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// `write_all` over several slices, using vectored writes so a large blob is
/// not copied into a staging buffer.
fn write_all_vectored<W: Write + ?Sized>(w: &mut W, parts: &[io::IoSlice<'_>]) -> io::Result<()> {
    let mut idx = 0;
    let mut skip = 0usize;
    while idx < parts.len() {
        if parts[idx].len() == skip {
            idx += 1;
            skip = 0;
            continue;
        }
        let mut bufs: Vec<io::IoSlice<'_>> = Vec::with_capacity(parts.len() - idx);
        bufs.push(io::IoSlice::new(&parts[idx][skip..]));
        bufs.extend(parts[idx + 1..].iter().map(|p| io::IoSlice::new(p)));
        let mut n = match w.write_vectored(&bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 && idx < parts.len() {
            let left = parts[idx].len() - skip;
            if n >= left {
                n -= left;
                idx += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// What the caller should do after a record accepted by [`LibxlGrammar`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibxlNext {
    /// Read another libxl record.
    LibxlRecord,
    /// Read the libxc stream (from its image header) until its END or its
    /// next CHECKPOINT record.
    StartLibxc,
    /// Resume the libxc stream after a checkpoint, until END or CHECKPOINT.
    ResumeLibxc,
    /// The stream is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    BeforeLibxc,
    InLibxc,
    InCheckpoint,
    AfterLibxc,
    Ended,
}

/// Guest type as far as libxl cares: emulator records are HVM-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// Paravirtualised: no emulator.
    Pv,
    /// HVM or PVH.
    Hvm,
}

/// The libxl record ordering rules, as a state machine (see the module
/// documentation for the diagram).
///
/// - `LIBXC_CONTEXT` exactly once, and `END` only after the libxc stream
///   has ended;
/// - after each libxc `CHECKPOINT` record, libxl records up to a
///   `CHECKPOINT_END`; `CHECKPOINT_END` anywhere else is an error;
/// - `CHECKPOINT_STATE` belongs to the COLO back channel, never to the
///   main stream;
/// - EMULATOR_* records are for HVM guests only (libxl rejects them for PV).
#[derive(Debug, Clone)]
pub struct LibxlGrammar {
    phase: Phase,
    guest: Option<GuestKind>,
    first_emulator: Option<RecordPos>,
    checkpoints: u64,
    warnings: Vec<LibxlWarning>,
}

impl Default for LibxlGrammar {
    fn default() -> Self {
        Self::new()
    }
}

impl LibxlGrammar {
    /// A grammar at the start of a main (not back-channel) stream.
    pub fn new() -> Self {
        LibxlGrammar {
            phase: Phase::BeforeLibxc,
            guest: None,
            first_emulator: None,
            checkpoints: 0,
            warnings: Vec::new(),
        }
    }

    /// Checks one libxl record against the ordering rules.
    pub fn on_record(
        &mut self,
        pos: RecordPos,
        rec: &LibxlRecord,
    ) -> Result<LibxlNext, LibxlError> {
        let fail =
            |k: &'static str| Err(LibxlError::at(pos.offset, pos, LibxlErrorKind::Grammar(k)));
        match self.phase {
            Phase::InLibxc => return fail("libxl record while the libxc stream is being read"),
            Phase::Ended => return fail("record after END"),
            _ => {}
        }
        match rec {
            LibxlRecord::End => match self.phase {
                Phase::BeforeLibxc => fail("END before any LIBXC_CONTEXT record"),
                Phase::InCheckpoint => {
                    fail("END inside a checkpoint (CHECKPOINT_END expected first)")
                }
                _ => {
                    self.phase = Phase::Ended;
                    Ok(LibxlNext::Done)
                }
            },
            LibxlRecord::LibxcContext => match self.phase {
                Phase::BeforeLibxc => {
                    self.phase = Phase::InLibxc;
                    Ok(LibxlNext::StartLibxc)
                }
                _ => fail("second LIBXC_CONTEXT record"),
            },
            LibxlRecord::EmulatorXenstoreData { .. } | LibxlRecord::EmulatorContext { .. } => {
                if self.guest == Some(GuestKind::Pv) {
                    return Err(LibxlError::at(
                        pos.offset,
                        pos,
                        LibxlErrorKind::EmulatorForPv,
                    ));
                }
                if self.first_emulator.is_none() {
                    self.first_emulator = Some(pos);
                }
                if self.phase == Phase::BeforeLibxc {
                    self.warnings.push(LibxlWarning {
                        offset: pos.offset,
                        record: Some(pos),
                        message: "emulator record before LIBXC_CONTEXT (libxl writes it after the libxc stream)"
                            .into(),
                    });
                }
                Ok(LibxlNext::LibxlRecord)
            }
            LibxlRecord::CheckpointEnd => match self.phase {
                Phase::InCheckpoint => {
                    self.phase = Phase::InLibxc;
                    self.checkpoints += 1;
                    Ok(LibxlNext::ResumeLibxc)
                }
                _ => fail("CHECKPOINT_END outside a checkpoint"),
            },
            LibxlRecord::CheckpointState { .. } => {
                fail("CHECKPOINT_STATE belongs to the COLO back channel, not the main stream")
            }
            LibxlRecord::Optional { .. } => Ok(LibxlNext::LibxlRecord),
        }
    }

    /// The libxc domain header has been read: records the guest type and
    /// fails if an EMULATOR_* record was seen for a PV guest.
    pub fn set_guest(&mut self, guest: GuestKind) -> Result<(), LibxlError> {
        self.guest = Some(guest);
        match (guest, self.first_emulator) {
            (GuestKind::Pv, Some(pos)) => Err(LibxlError::at(
                pos.offset,
                pos,
                LibxlErrorKind::EmulatorForPv,
            )),
            _ => Ok(()),
        }
    }

    /// The libxc stream read a CHECKPOINT record: libxl records follow.
    /// Ignored unless the libxc stream is being read.
    pub fn libxc_checkpoint(&mut self) {
        if self.phase == Phase::InLibxc {
            self.phase = Phase::InCheckpoint;
        }
    }

    /// The libxc stream read its END record: libxl records follow.
    /// Ignored unless the libxc stream is being read.
    pub fn libxc_end(&mut self) {
        if self.phase == Phase::InLibxc {
            self.phase = Phase::AfterLibxc;
        }
    }

    /// Whether END has been accepted.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Whether libxl records of a checkpoint are being read (after a libxc
    /// CHECKPOINT, before CHECKPOINT_END).
    pub fn in_checkpoint(&self) -> bool {
        self.phase == Phase::InCheckpoint
    }

    /// Whether the libxc stream is currently being read.
    pub fn in_libxc(&self) -> bool {
        self.phase == Phase::InLibxc
    }

    /// Number of complete checkpoints (CHECKPOINT_END records) seen.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// Drains the warnings gathered so far.
    pub fn take_warnings(&mut self) -> Vec<LibxlWarning> {
        std::mem::take(&mut self.warnings)
    }
}
