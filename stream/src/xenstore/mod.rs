//! The xenstore migration stream (docs/designs/xenstore-migration.md, Xen
//! 4.17 and later): the image xenstored writes for a live update, and that
//! non-cooperative migration carries for one domain's xenstore state.
//!
//! ```text
//! header: ident "xenstore" (8 octets) | version u32 BE | flags u32 BE
//! record: type u32 | len u32 | body | padding to 8 octets
//! ```
//!
//! The header is always big-endian; flags bit 0 gives the byte order of
//! every record (0 little, 1 big), bits 1-31 are reserved. Version 1
//! defines END, GLOBAL_DATA, CONNECTION_DATA, WATCH_DATA, TRANSACTION_DATA,
//! NODE_DATA, GLOBAL_QUOTA_DATA and DOMAIN_DATA; version 2 adds
//! WATCH_DATA_EXTENDED and the DOMAIN_DATA `features` field.
//!
//! # The two readings of `len`
//! The design calls `len` the body length, with 0-7 padding octets after
//! it. xenstored (4.17 and later) instead writes `len` already rounded up to
//! 8, the padding inside it, and steps over exactly `len` octets when
//! reading. Both are accepted here: every body is self-delimiting, so the
//! reader takes the fields it needs, allows up to 7 spare octets inside
//! `len` ([`XsRule::ExcessBody`] past that), and skips padding to the next
//! 8-octet boundary after `len`. A `len` that is not a multiple of 8 is
//! warned about, as xenstored would misread the stream. The writer rounds
//! `len` up by default ([`LenMode`]), which both readings accept.
//!
//! # Rules
//! Every rule an input can break is an [`XsRule`], with a stable name
//! ([`XsRule::name`]). The rules between records (a record naming a
//! connection or transaction declared earlier, duplicates, GLOBAL_DATA
//! first, parents of committed nodes, END last) are [`XsGrammar`]'s, which
//! the [`XsReader`] applies to every record it returns.
//!
//! Files: `record.rs` (header and records as values, and their encoding),
//! `reader.rs` (decoding, bounded), `grammar.rs`, `writer.rs`, `error.rs`;
//! byte order and alignment come from the crate's shared base.

mod error;
mod grammar;
mod reader;
mod record;
mod writer;

pub use error::{XsError, XsRule, XsWarning};
pub use grammar::XsGrammar;
pub use reader::{read_stream, XsReader, XsReaderOptions, XsStream};
pub use record::{
    ConnSpec, Connection, DomainData, GlobalData, GlobalQuota, Node, Perm, PermKind, Quota,
    Transaction, Watch, XsHeader, XsRecord, XsRecordPos,
};
pub use writer::{LenMode, XsWriter};

/// `ident`: "xenstore" in ASCII.
pub const XS_IDENT: [u8; 8] = *b"xenstore";
/// The first version: every record type except WATCH_DATA_EXTENDED.
pub const XS_VERSION_1: u32 = 1;
/// Version 2: adds WATCH_DATA_EXTENDED and DOMAIN_DATA `features`.
pub const XS_VERSION_2: u32 = 2;
/// Flags bit 0: records are big-endian.
pub const XS_FLAG_BIG_ENDIAN: u32 = 1 << 0;
/// Size of the stream header in octets.
pub const XS_HEADER_LEN: u64 = 16;
/// Size of a record header in octets.
pub const XS_RECORD_HEADER_LEN: u64 = 8;
/// Default largest record body the reader accepts (see
/// [`XsReaderOptions::max_body_len`]). Only CONNECTION_DATA pending output
/// and quota names can approach it; NODE_DATA is at most about 384 KiB.
pub const XS_DEFAULT_MAX_BODY_LEN: u32 = 64 << 20;
/// `tdomid` of a ring connection not subject to SET_TARGET.
pub const DOMID_INVALID: u16 = 0x7ff4;
/// WATCH_DATA_EXTENDED `depth` meaning "any depth".
pub const WATCH_DEPTH_UNLIMITED: u16 = 0xffff;
/// NODE_DATA `access` bit: the transaction read the node.
pub const NODE_ACCESS_READ: u16 = 0x0001;
/// NODE_DATA `access` bit: the transaction wrote the node.
pub const NODE_ACCESS_WRITTEN: u16 = 0x0002;
/// Permission flag: stale, ignore when checking permissions.
pub const PERM_FLAG_STALE: u8 = 0x01;

/// Record type codes.
pub mod rec_type {
    /// Last record of the stream.
    pub const END: u32 = 0;
    /// Live update: xenstored's listening socket and event channel fds.
    pub const GLOBAL_DATA: u32 = 1;
    /// One connection (shared ring or socket) and its pending data.
    pub const CONNECTION_DATA: u32 = 2;
    /// One watch of a connection.
    pub const WATCH_DATA: u32 = 3;
    /// One pending transaction of a connection.
    pub const TRANSACTION_DATA: u32 = 4;
    /// One node, committed or pending in a transaction.
    pub const NODE_DATA: u32 = 5;
    /// Live update: the global quota settings.
    pub const GLOBAL_QUOTA_DATA: u32 = 6;
    /// One domain's quota and features.
    pub const DOMAIN_DATA: u32 = 7;
    /// A watch with a depth (version 2 and later).
    pub const WATCH_DATA_EXTENDED: u32 = 8;
}

/// The name of a record type, for messages.
pub fn record_type_name(rtype: u32) -> String {
    match rtype {
        rec_type::END => "END".into(),
        rec_type::GLOBAL_DATA => "GLOBAL_DATA".into(),
        rec_type::CONNECTION_DATA => "CONNECTION_DATA".into(),
        rec_type::WATCH_DATA => "WATCH_DATA".into(),
        rec_type::TRANSACTION_DATA => "TRANSACTION_DATA".into(),
        rec_type::NODE_DATA => "NODE_DATA".into(),
        rec_type::GLOBAL_QUOTA_DATA => "GLOBAL_QUOTA_DATA".into(),
        rec_type::DOMAIN_DATA => "DOMAIN_DATA".into(),
        rec_type::WATCH_DATA_EXTENDED => "WATCH_DATA_EXTENDED".into(),
        t => format!("UNKNOWN_{t:#010x}"),
    }
}
