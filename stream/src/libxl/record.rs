//! The libxl stream header and records as values, with their encodings.

use super::error::{LibxlError, LibxlErrorKind};
use super::{
    rec_type, EMULATOR_HEADER_LEN, LIBXL_IDENT, LIBXL_OPT_BIG_ENDIAN, LIBXL_OPT_KNOWN,
    LIBXL_OPT_LEGACY, LIBXL_RECORD_HEADER_LEN, LIBXL_VERSION,
};
use crate::wire::{padded_len, Endian};

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
    pub fn endianness(&self) -> Endian {
        if self.options & LIBXL_OPT_BIG_ENDIAN != 0 {
            Endian::Big
        } else {
            Endian::Little
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
        let ident = Endian::Big.u64(b, 0);
        let version = Endian::Big.u32(b, 8);
        let options = Endian::Big.u32(b, 12);
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
    /// [`LibxlReader`](super::LibxlReader) is known to be well formed.
    pub fn xenstore_pairs(&self) -> Vec<(&[u8], &[u8])> {
        match self {
            LibxlRecord::EmulatorXenstoreData { data, .. } => split_pairs(data),
            _ => Vec::new(),
        }
    }
}

pub(crate) fn split_pairs(data: &[u8]) -> Vec<(&[u8], &[u8])> {
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
        LIBXL_RECORD_HEADER_LEN + padded_len(u64::from(self.body_len))
    }
}
