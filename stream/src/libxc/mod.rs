//! The libxc migration stream: types, records, reader, writer and grammar.
//!
//! Format: `libxc-migration-stream.html` revision 3 (from `xen-doc`). A
//! stream is a 24-byte big-endian image header, a 16-byte domain header and
//! records of `type u32, body_length u32, body, zero padding to 8 bytes`,
//! all in the byte order the image header names. Versions 2 and 3 are read;
//! [`Writer`] writes v3 (and v2 or big-endian when asked, for tests).
//!
//! # API
//! - [`Reader`] over any `Read`: [`Reader::new`] reads and checks both
//!   headers ([`Reader::image_header`], [`Reader::domain_header`]; a
//!   `xen_major` of 0 means converted from a legacy image:
//!   [`DomainHeader::is_legacy_converted`]).
//!   - [`Reader::next_record`] returns each [`Record`] fully checked (layout
//!     and grammar), borrowing the reader's one reusable buffer:
//!     `Record::PageData(pd)` gives `pd.entries()` (`&[PfnEntry]`),
//!     `pd.data()` and `pd.pages()` (entry, `Option<&[u8]>` page) with no
//!     copy of the page bytes.
//!   - [`Reader::next_item`] is the same, except that PAGE_DATA comes as
//!     [`Item::Pages`]: a [`PageReader`] with the checked pfn array and the
//!     pages still in the input, read with [`PageReader::read_pages`]
//!     straight into the caller's memory (e.g. a mapping of guest frames);
//!     unread pages are skipped by the next call.
//!   - `None` marks the end: [`Reader::end`] says how ([`StreamEnd::End`],
//!     or [`StreamEnd::EofAfterCheckpoint`] for a checkpointed stream whose
//!     sender stopped after a CHECKPOINT).
//!   - The reader never reads past END or buffers ahead, so an enclosing
//!     libxl stream can continue on [`Reader::get_mut`] after END or
//!     CHECKPOINT. For a standalone libxc file, call
//!     [`Reader::expect_eof`] after END: bytes after END are an error
//!     (the spec: END "shall be the final record").
//!   - [`Reader::verify_to_end`] checks a whole stream, skipping page bytes.
//!   - Reads are exact (8-byte header, body, padding); wrap a file or
//!     socket in a `BufReader` to save syscalls on small records (large
//!     bodies bypass its buffer), and share that `BufReader` with any
//!     enclosing-stream reader. Memory: one body buffer (grown to the
//!     largest record read, at most 128 MiB) and one pfn array, reused.
//!   - Warnings are values ([`Reader::warnings`]), never printed.
//!   - [`ReaderOptions`]: [`Checkpoints::Reject`] for a plain restore,
//!     [`Reserved::Ignore`] for a restore that ignores reserved fields and
//!     padding as the spec says restorers must (the default rejects them,
//!     as a checker should), `start_offset` for streams embedded in another.
//! - [`BackChannelReader`]: the COLO back channel (no headers, only
//!   CHECKPOINT_DIRTY_PFN_LIST, ends at EOF).
//! - [`Writer`] over any `Write`: [`Writer::new`] writes v3 LE headers, then
//!   one method per record type (`write_page_data(&[PfnEntry], &[&[u8]])`,
//!   `write_hvm_params(&[HvmParam])`, ...; [`Writer::write_record`] takes
//!   any [`Record`]). One `write_vectored` per record (partial writes
//!   handled), page slices passed through uncopied. It checks layout and
//!   grammar like the reader, so it only emits valid streams in spec order;
//!   [`Writer::write_raw`] bypasses the checks for building bad input.
//!   [`Writer::back_channel`] writes the COLO back channel.
//! - [`Grammar`]: the record-order state machine (drawn in its module doc),
//!   usable on its own.
//! - [`Error`]: byte offset, record index, record type and the rule broken
//!   ([`ErrorKind`], [`Violation`]); `Display` is one line.
//!
//! # Decisions where the spec, Xen and `verify-stream-v2` differ
//! - Reserved fields and padding: the spec says writers zero them and
//!   restorers ignore them; by default we reject non-zero values like
//!   `verify-stream-v2` (a checker must catch them), and
//!   [`Reserved::Ignore`] gives the restorer's behaviour (libxenguest's).
//! - Record types introduced in v3 (STATIC_DATA_END, X86_CPUID_POLICY,
//!   X86_MSR_POLICY) are errors in v2 streams (they were reserved mandatory
//!   types then), as in `verify-stream-v2`.
//! - HVM_PARAMS after HVM_CONTEXT: warning (libxenguest's own order).
//! - Empty HVM_PARAMS (count 0) and X86_PV_VCPU_* with no context: warning
//!   (errata); the 8-byte record headers must still be present, as in Xen.
//! - HVM_CONTEXT must not be empty; SHARED_INFO must be one page.
//! - TOOLSTACK: accepted with a warning (Xen 4.17's restore would refuse it;
//!   `verify-stream-v2` fails on it).
//! - Optional records: carried through (`verify-stream-v2` rejects them).
//! - Big-endian streams: read (libxc and `verify-stream-v2` refuse them).
//! - Vcpu blob sizes Xen's restore enforces (BASIC = guest context size,
//!   EXTENDED <= 128, XSAVE >= 16, MSRS multiple of 16) are warnings, not
//!   errors: the spec leaves the blobs opaque.
//! - PV streams must contain X86_PV_INFO, X86_PV_P2M_FRAMES, PAGE_DATA and
//!   vcpu 0's X86_PV_VCPU_BASIC (spec 5.1 "must be present"); v3 streams must
//!   contain STATIC_DATA_END.
//! - Record bodies over 128 MiB are rejected before any byte of them is read.

mod compressed;
mod error;
mod grammar;
mod reader;
mod record;
mod types;
mod writer;

pub use compressed::{
    CompressedPageData, CompressedPages, Compression, PageCompressor, PageDecompressor,
    MAX_COMPRESSED_BODY, MAX_COMPRESSED_ENTRIES, STORED_PAGE, ZSTD_DEFAULT_LEVEL, ZSTD_LEVELS,
};
pub use error::{Error, ErrorKind, LengthRule, Missing, Part, Violation, Warning, WarningKind};
pub use grammar::{Channel, Checkpoints, Grammar, GrammarOptions, State};
pub use reader::{
    parse_domain_header, parse_image_header, BackChannelReader, Item, PageReader, Reader,
    ReaderOptions, StreamEnd,
};
pub use record::{
    data_pages, parse, Array, Element, P2mFrames, PageData, Record, Reserved, VcpuContext,
};
pub use types::{
    DomainHeader, DomainType, HvmParam, ImageHeader, PfnEntry, RecordType, VcpuKind, Version,
    X86PvInfo, DOMAIN_HEADER_LEN, IHDR_ID, IHDR_MARKER, IHDR_OPT_BIG_ENDIAN, IMAGE_HEADER_LEN,
    MAX_RECORD_LEN, PFN_MASK, PFN_RESERVED_MASK, RECORD_HEADER_LEN, REC_TYPE_OPTIONAL,
};
pub use writer::{Writer, WriterOptions};
