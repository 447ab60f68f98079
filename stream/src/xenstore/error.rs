//! Why a xenstore stream is invalid (each rule named), and what is unusual
//! in a valid one; both carry the byte offset and the record concerned.

use std::fmt;
use std::io;

use super::record::XsRecordPos;
use super::record_type_name;

/// A rule of the xenstore stream, broken by the input.
///
/// [`name`](Self::name) gives each a stable kebab-case name, which `xcmig
/// verify` prints and tests match on; `Display` adds the detail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum XsRule {
    /// The input ended inside a structure.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Octets missing from the error offset.
        needed: u64,
    },
    /// `ident` is not "xenstore".
    BadMagic,
    /// `version` is neither 1 nor 2.
    UnsupportedVersion(u32),
    /// Header flag bits 1-31 (reserved) set.
    ReservedFlags(u32),
    /// The input ended where a record header was expected, before END.
    MissingEnd,
    /// Octets after the END record.
    TrailingData,
    /// A record type the design reserves (9 and up).
    UnknownRecordType(u32),
    /// A record type the stream's version does not define
    /// (WATCH_DATA_EXTENDED in version 1).
    NotInVersion {
        /// The stream's version.
        version: u32,
    },
    /// `len` over the reader's limit: refused before allocating.
    RecordTooLong {
        /// The record's `len`.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The record's fields need more octets than `len` gives.
    LengthOverrun {
        /// Octets the fields need.
        needed: u64,
        /// The record's `len`.
        len: u32,
    },
    /// `len` leaves 8 or more octets after the fields: more than padding.
    ExcessBody {
        /// Octets the fields need.
        used: u64,
        /// The record's `len`.
        len: u32,
    },
    /// CONNECTION_DATA with conn-id 0 (conn-id 0 means "committed" in
    /// NODE_DATA, so a connection may not use it).
    ZeroConnId,
    /// CONNECTION_DATA `conn-type` the design reserves.
    UnknownConnType(u16),
    /// `out-resp-len` larger than `out-data-len`, which includes it.
    RespExceedsOut {
        /// out-resp-len.
        resp: u16,
        /// out-data-len.
        out: u32,
    },
    /// A path or token whose length (which counts the NUL) is 0 or whose
    /// last octet is not NUL.
    NotTerminated(&'static str),
    /// A path or token with a NUL before its terminator.
    EmbeddedNul(&'static str),
    /// A node path neither absolute ("/...") nor special ("@..."), or with
    /// an empty component ("//", a trailing "/").
    BadNodePath(String),
    /// A permission specifier whose `perm` is not 'w', 'r', 'b' or 'n'.
    BadPerm {
        /// Index of the specifier.
        index: u16,
        /// The octet found.
        perm: u8,
    },
    /// A node that exists (committed, or not deleted in its transaction)
    /// with no permission specifier: perm1 names its owner.
    NoOwner,
    /// `access` bits other than read (1) and written (2).
    ReservedAccessBits(u16),
    /// A node deleted in a transaction (perm-count 0) with a value or with
    /// access bits, which the design says are zero for a deleted node.
    DeletedNodeNotEmpty,
    /// The quota names do not hold one NUL-terminated name per value.
    QuotaNames {
        /// Quota values declared.
        expected: u32,
        /// Complete names found.
        found: u32,
    },
    /// GLOBAL_DATA after another record: the restoring side needs its fds
    /// before any connection.
    GlobalNotFirst,
    /// A second GLOBAL_DATA.
    DuplicateGlobal,
    /// A second GLOBAL_QUOTA_DATA.
    DuplicateGlobalQuota,
    /// A second CONNECTION_DATA with the same conn-id.
    DuplicateConnId(u32),
    /// A record naming a conn-id no earlier CONNECTION_DATA declared.
    UnknownConn(u32),
    /// A second TRANSACTION_DATA for the same connection and tx-id.
    DuplicateTransaction {
        /// conn-id.
        conn_id: u32,
        /// tx-id.
        tx_id: u32,
    },
    /// A NODE_DATA naming a transaction no earlier TRANSACTION_DATA
    /// declared.
    UnknownTransaction {
        /// conn-id.
        conn_id: u32,
        /// tx-id.
        tx_id: u32,
    },
    /// A watch registered twice by one connection (same path and token):
    /// xenstored refuses the second WATCH.
    DuplicateWatch,
    /// A node recorded twice (committed, or twice in one transaction).
    DuplicateNode(String),
    /// A committed node of a live-update stream (one with GLOBAL_DATA,
    /// which holds every node) whose parent no earlier NODE_DATA gave.
    MissingParent {
        /// The node.
        path: String,
        /// Its parent.
        parent: String,
    },
    /// A second DOMAIN_DATA for the same domain.
    DuplicateDomain(u16),
    /// An I/O error other than end of input.
    Io(String),
}

impl XsRule {
    /// The rule's stable name.
    pub fn name(&self) -> &'static str {
        use XsRule::*;
        match self {
            Truncated { .. } => "truncated",
            BadMagic => "bad-magic",
            UnsupportedVersion(_) => "unsupported-version",
            ReservedFlags(_) => "reserved-flags",
            MissingEnd => "missing-end",
            TrailingData => "trailing-data",
            UnknownRecordType(_) => "unknown-record-type",
            NotInVersion { .. } => "not-in-version",
            RecordTooLong { .. } => "record-too-long",
            LengthOverrun { .. } => "length-overrun",
            ExcessBody { .. } => "excess-body",
            ZeroConnId => "zero-conn-id",
            UnknownConnType(_) => "unknown-conn-type",
            RespExceedsOut { .. } => "resp-exceeds-out",
            NotTerminated(_) => "not-terminated",
            EmbeddedNul(_) => "embedded-nul",
            BadNodePath(_) => "bad-node-path",
            BadPerm { .. } => "bad-perm",
            NoOwner => "no-owner",
            ReservedAccessBits(_) => "reserved-access-bits",
            DeletedNodeNotEmpty => "deleted-node-not-empty",
            QuotaNames { .. } => "quota-names",
            GlobalNotFirst => "global-not-first",
            DuplicateGlobal => "duplicate-global",
            DuplicateGlobalQuota => "duplicate-global-quota",
            DuplicateConnId(_) => "duplicate-conn-id",
            UnknownConn(_) => "unknown-conn",
            DuplicateTransaction { .. } => "duplicate-transaction",
            UnknownTransaction { .. } => "unknown-transaction",
            DuplicateWatch => "duplicate-watch",
            DuplicateNode(_) => "duplicate-node",
            MissingParent { .. } => "missing-parent",
            DuplicateDomain(_) => "duplicate-domain",
            Io(_) => "io",
        }
    }

    /// Every rule name, in the order of the design's sections (for
    /// documentation and tests).
    pub const NAMES: &'static [&'static str] = &[
        "truncated",
        "bad-magic",
        "unsupported-version",
        "reserved-flags",
        "missing-end",
        "trailing-data",
        "unknown-record-type",
        "not-in-version",
        "record-too-long",
        "length-overrun",
        "excess-body",
        "zero-conn-id",
        "unknown-conn-type",
        "resp-exceeds-out",
        "not-terminated",
        "embedded-nul",
        "bad-node-path",
        "bad-perm",
        "no-owner",
        "reserved-access-bits",
        "deleted-node-not-empty",
        "quota-names",
        "global-not-first",
        "duplicate-global",
        "duplicate-global-quota",
        "duplicate-conn-id",
        "unknown-conn",
        "duplicate-transaction",
        "unknown-transaction",
        "duplicate-watch",
        "duplicate-node",
        "missing-parent",
        "duplicate-domain",
        "io",
    ];
}

impl fmt::Display for XsRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use XsRule::*;
        write!(f, "{}: ", self.name())?;
        match self {
            Truncated { what, needed } => write!(
                f,
                "input ends inside {what} ({needed} more octets expected)"
            ),
            BadMagic => f.write_str("ident is not \"xenstore\": not a xenstore stream"),
            UnsupportedVersion(v) => write!(f, "version {v:#010x}, expected 1 or 2"),
            ReservedFlags(v) => write!(f, "reserved flag bits set ({v:#010x})"),
            MissingEnd => f.write_str("input ends before the END record"),
            TrailingData => f.write_str("data after the END record"),
            UnknownRecordType(t) => write!(f, "record type {t:#010x} is reserved"),
            NotInVersion { version } => {
                write!(f, "record type not defined in a version {version} stream")
            }
            RecordTooLong { len, max } => write!(f, "len {len} exceeds the {max}-octet limit"),
            LengthOverrun { needed, len } => {
                write!(f, "fields need {needed} octets, len is {len}")
            }
            ExcessBody { used, len } => write!(
                f,
                "len {len} leaves {} octets after {used} octets of fields (at most 7 may pad)",
                u64::from(*len) - used
            ),
            ZeroConnId => f.write_str("conn-id must be non-zero"),
            UnknownConnType(t) => write!(f, "conn-type {t:#06x} is reserved"),
            RespExceedsOut { resp, out } => write!(
                f,
                "out-resp-len {resp} exceeds out-data-len {out}, which includes it"
            ),
            NotTerminated(what) => write!(f, "{what} is not NUL terminated"),
            EmbeddedNul(what) => write!(f, "{what} holds a NUL before its end"),
            BadNodePath(p) => write!(
                f,
                "node path {p:?} is neither absolute nor special (@...), or has an empty component"
            ),
            BadPerm { index, perm } => write!(
                f,
                "perm{} is {perm:#04x}, expected 'w', 'r', 'b' or 'n'",
                u32::from(*index) + 1
            ),
            NoOwner => f.write_str("perm-count 0 for a node that exists (perm1 is its owner)"),
            ReservedAccessBits(a) => write!(f, "access {a:#06x} has bits other than read and written"),
            DeletedNodeNotEmpty => f.write_str(
                "node deleted in its transaction (perm-count 0) has a value or access bits",
            ),
            QuotaNames { expected, found } => write!(
                f,
                "{found} NUL-terminated quota names for {expected} quota values"
            ),
            GlobalNotFirst => f.write_str("GLOBAL_DATA must be the first record"),
            DuplicateGlobal => f.write_str("second GLOBAL_DATA record"),
            DuplicateGlobalQuota => f.write_str("second GLOBAL_QUOTA_DATA record"),
            DuplicateConnId(c) => write!(f, "conn-id {c} declared twice"),
            UnknownConn(c) => write!(f, "conn-id {c} names no earlier CONNECTION_DATA record"),
            DuplicateTransaction { conn_id, tx_id } => {
                write!(f, "transaction {tx_id} of conn-id {conn_id} declared twice")
            }
            UnknownTransaction { conn_id, tx_id } => write!(
                f,
                "transaction {tx_id} of conn-id {conn_id} names no earlier TRANSACTION_DATA record"
            ),
            DuplicateWatch => f.write_str("watch with this path and token already registered by the connection"),
            DuplicateNode(p) => write!(f, "node {p:?} recorded twice"),
            MissingParent { path, parent } => write!(
                f,
                "parent {parent:?} of {path:?} not given earlier (a live-update stream holds every node)"
            ),
            DuplicateDomain(d) => write!(f, "second DOMAIN_DATA for domain {d}"),
            Io(s) => write!(f, "read error: {s}"),
        }
    }
}

/// An invalid xenstore stream: where, which record, and the rule broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XsError {
    /// Byte offset in the whole input of the offending octets.
    pub offset: u64,
    /// The record concerned; `None` for the stream header (and for a
    /// stream that ends where a record header was expected).
    pub record: Option<XsRecordPos>,
    /// The rule broken.
    pub rule: XsRule,
}

impl XsError {
    pub(crate) fn header(offset: u64, rule: XsRule) -> Self {
        XsError {
            offset,
            record: None,
            rule,
        }
    }

    pub(crate) fn at(offset: u64, rec: XsRecordPos, rule: XsRule) -> Self {
        XsError {
            offset,
            record: Some(rec),
            rule,
        }
    }

    pub(crate) fn io(offset: u64, record: Option<XsRecordPos>, e: &io::Error) -> Self {
        XsError {
            offset,
            record,
            rule: XsRule::Io(e.to_string()),
        }
    }

    /// Whether the input failed (I/O) rather than a rule.
    pub fn is_io(&self) -> bool {
        matches!(self.rule, XsRule::Io(_))
    }
}

fn place(f: &mut fmt::Formatter<'_>, offset: u64, record: &Option<XsRecordPos>) -> fmt::Result {
    match record {
        None if offset < super::XS_HEADER_LEN => write!(f, "offset {offset}, xenstore header"),
        None => write!(f, "offset {offset}, xenstore stream"),
        Some(r) => write!(
            f,
            "offset {offset}, xenstore record #{} {}",
            r.index,
            record_type_name(r.rtype)
        ),
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        place(f, self.offset, &self.record)?;
        write!(f, ": {}", self.rule)
    }
}

impl std::error::Error for XsError {}

/// Something legal but unusual, reported without failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XsWarning {
    /// Byte offset in the whole input.
    pub offset: u64,
    /// The record concerned; `None` for the header.
    pub record: Option<XsRecordPos>,
    /// What is unusual.
    pub message: String,
}

impl fmt::Display for XsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        place(f, self.offset, &self.record)?;
        write!(f, ": {}", self.message)
    }
}
