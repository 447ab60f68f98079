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

//!
//! Files: `record.rs` (header and records as values), `reader.rs`,
//! `writer.rs`, `grammar.rs` (the ordering above) and `error.rs`; byte order
//! and alignment come from the crate's shared base ([`Endian`](crate::Endian)), as for the
//! libxc stream. [`crate::nested`] drives the reader and grammar together
//! with the libxc [`Reader`](crate::Reader) over one input.

mod error;
mod grammar;
mod reader;
mod record;
mod writer;

pub use error::{LibxlError, LibxlErrorKind, LibxlWarning};
pub use grammar::{GuestKind, LibxlGrammar, LibxlNext};
pub use reader::LibxlReader;
pub use record::{
    emulator_id, emulator_name, pack_xenstore_pairs, CheckpointControl, EmulatorHeader,
    LibxlHeader, LibxlRecord, RecordPos,
};
pub use writer::LibxlWriter;

/// The byte order of libxl records: the crate's [`Endian`](crate::Endian), under the name
/// this module used to give it.
pub use crate::wire::Endian as Endianness;

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
