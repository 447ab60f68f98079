//! `verify` and `inspect` for the xenstore migration stream: the walk
//! (records and warnings to a [`Visitor`], like the other formats) and the
//! report `inspect --format xenstore` prints, with the committed nodes as
//! a tree.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;

use serde::Serialize;
use xcmig_stream::xenstore::{
    record_type_name, ConnSpec, Node, Perm, Quota, XsError, XsHeader, XsReader, XsRecord,
    XsRecordPos, XsRule, DOMID_INVALID, WATCH_DEPTH_UNLIMITED,
};
use xcmig_stream::Endian;

use crate::inspect::SCHEMA_VERSION;
use crate::walk::{Done, Ending, Layer, RecordInfo, Visitor, WalkError};

/// Entries each list of the report keeps (nodes, watches, transactions,
/// connections, domains); past that they are only counted, so a huge
/// live-update image cannot exhaust `inspect`'s memory.
pub const MAX_LISTED: usize = 100_000;

/// Longest value summary, in characters.
const VALUE_SUMMARY: usize = 48;

fn walk_error(e: XsError, records_read: u64) -> WalkError {
    let line = match e.rule {
        // The codec has no record type to name here: give the index the
        // missing record would have had.
        XsRule::MissingEnd => format!(
            "offset {}, xenstore record #{}: {}",
            e.offset, records_read, e.rule
        ),
        _ => e.to_string(),
    };
    WalkError {
        io: e.is_io(),
        line,
    }
}

fn summary(rec: &XsRecord) -> String {
    match rec {
        XsRecord::End => String::new(),
        XsRecord::Global(g) => {
            format!("rw-socket-fd {}, evtchn-fd {}", g.rw_socket_fd, g.evtchn_fd)
        }
        XsRecord::Connection(c) => format!(
            "conn {} {}, {} in, {} out",
            c.conn_id,
            spec_text(&c.spec),
            c.in_data.len(),
            c.out_data.len()
        ),
        XsRecord::Watch(w) => format!(
            "conn {} {:?} token {:?}{}",
            w.conn_id,
            lossy(&w.path),
            lossy(&w.token),
            depth_text(w.depth)
        ),
        XsRecord::Transaction(t) => format!("conn {} tx {}", t.conn_id, t.tx_id),
        XsRecord::Node(n) => {
            let tx = if n.in_transaction() {
                format!(" (conn {} tx {}, {})", n.conn_id, n.tx_id, n.access_text())
            } else {
                String::new()
            };
            format!("{}{tx} {}", lossy(&n.path), value_summary(&n.value))
        }
        XsRecord::GlobalQuota(q) => format!(
            "{} per-domain, {} global quotas",
            q.per_domain.len(),
            q.global.len()
        ),
        XsRecord::Domain(d) => format!(
            "domain {}, features {:#x}, {} quotas",
            d.domid,
            d.features,
            d.quotas.len()
        ),
    }
}

/// Walks a xenstore stream, checking every rule; stops at the first error.
pub fn walk<R: Read, V: Visitor>(input: R, v: &mut V) -> Result<Done, WalkError> {
    let mut r = XsReader::new(input).map_err(|e| walk_error(e, 0))?;
    v.xenstore_header(r.header());
    let summaries = v.wants_summaries();
    loop {
        let next = r.next_record();
        // Warnings of the failing record too: they may explain the error.
        for w in r.take_warnings() {
            v.warning(&w.to_string());
        }
        let (pos, rec) = match next {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => return Err(walk_error(e, r.records_read())),
        };
        v.record(&RecordInfo {
            layer: Layer::Xenstore,
            offset: pos.offset,
            index: pos.index,
            code: pos.rtype,
            name: record_type_name(pos.rtype),
            body_len: u64::from(pos.len),
            wire_len: pos.wire_len(),
            summary: summaries.then(|| summary(&rec)),
        });
        v.xenstore_record(&pos, &rec);
    }
    let end = r.offset();
    r.expect_eof()
        .map_err(|e| walk_error(e, r.records_read()))?;
    Ok(Done {
        bytes: end,
        ending: Ending::End,
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn spec_text(s: &ConnSpec) -> String {
    match *s {
        ConnSpec::Ring {
            domid,
            tdomid,
            evtchn,
        } => {
            let target = if tdomid == DOMID_INVALID {
                String::new()
            } else {
                format!(" target {tdomid}")
            };
            format!("ring domid {domid}{target} evtchn {evtchn}")
        }
        ConnSpec::Socket { fd } => format!("socket fd {fd}"),
    }
}

fn depth_text(d: Option<u16>) -> String {
    match d {
        None => String::new(),
        Some(WATCH_DEPTH_UNLIMITED) => " depth unlimited".into(),
        Some(d) => format!(" depth {d}"),
    }
}

/// A node value for people: quoted when printable, else its size.
fn value_summary(v: &[u8]) -> String {
    if v.is_empty() {
        return "(empty)".into();
    }
    let printable = v.iter().all(|&c| (0x20..0x7f).contains(&c));
    if !printable {
        return format!("({} octets, binary)", v.len());
    }
    let s: String = v.iter().take(VALUE_SUMMARY).map(|&c| c as char).collect();
    if v.len() > VALUE_SUMMARY {
        format!("{s:?}... ({} octets)", v.len())
    } else {
        format!("{s:?}")
    }
}

/// The value for JSON: the text when it is printable ASCII, else null.
fn value_json(v: &[u8]) -> Option<String> {
    v.iter().all(|&c| (0x20..0x7f).contains(&c)).then(|| {
        v.iter()
            .take(4 * VALUE_SUMMARY)
            .map(|&c| c as char)
            .collect()
    })
}

fn perms_text(p: &[Perm]) -> Vec<String> {
    p.iter().map(Perm::notation).collect()
}

fn quota_map(q: &[Quota]) -> BTreeMap<String, u32> {
    q.iter().map(|q| (lossy(&q.name), q.value)).collect()
}

/// The header, for output.
#[derive(Debug, Serialize)]
struct HeaderInfo {
    version: u32,
    big_endian: bool,
}

/// Count and octets of one record type.
#[derive(Debug, Serialize)]
struct TypeStats {
    name: String,
    code: u32,
    count: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct GlobalInfo {
    rw_socket_fd: i32,
    evtchn_fd: i32,
}

#[derive(Debug, Serialize)]
struct GlobalQuotaInfo {
    per_domain: BTreeMap<String, u32>,
    global: BTreeMap<String, u32>,
}

/// One connection and what the stream holds for it.
#[derive(Debug, Serialize)]
struct ConnInfo {
    conn_id: u32,
    /// "ring" or "socket".
    kind: &'static str,
    domid: Option<u16>,
    /// Null when DOMID_INVALID (no SET_TARGET).
    target_domid: Option<u16>,
    evtchn: Option<u32>,
    socket_fd: Option<i32>,
    in_data_bytes: u64,
    out_data_bytes: u64,
    out_resp_len: u16,
    watches: u64,
    transactions: u64,
    transaction_nodes: u64,
}

#[derive(Debug, Serialize)]
struct WatchInfo {
    conn_id: u32,
    path: String,
    token: String,
    /// Null for WATCH_DATA; 65535 is unlimited.
    depth: Option<u16>,
}

#[derive(Debug, Serialize)]
struct TxInfo {
    conn_id: u32,
    tx_id: u32,
    nodes: u64,
}

#[derive(Debug, Serialize)]
struct DomainInfo {
    domid: u16,
    features: u32,
    quotas: BTreeMap<String, u32>,
}

#[derive(Debug, Serialize)]
struct NodeInfo {
    path: String,
    /// SET_PERMS notation ("b5", "r0"), '!' marking a stale one; the first
    /// names the owner.
    perms: Vec<String>,
    value_len: u64,
    /// The value when printable ASCII (cut at 192 characters), else null.
    value: Option<String>,
    /// For a pending node: its transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_id: Option<u32>,
    /// For a pending node: "read", "written", "read+written" or "deleted".
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<String>,
}

impl NodeInfo {
    fn new(n: &Node) -> Self {
        let tx = n.in_transaction();
        NodeInfo {
            path: lossy(&n.path),
            perms: perms_text(&n.perms),
            value_len: n.value.len() as u64,
            value: value_json(&n.value),
            conn_id: tx.then_some(n.conn_id),
            tx_id: tx.then_some(n.tx_id),
            access: tx.then(|| n.access_text()),
        }
    }
}

#[derive(Debug, Serialize)]
struct RecordLine {
    offset: u64,
    index: u64,
    name: String,
    code: u32,
    len: u64,
    summary: String,
}

/// Everything `inspect --format xenstore` reports.
#[derive(Debug, Serialize)]
pub struct XsReport {
    tool: &'static str,
    tool_version: &'static str,
    schema_version: u32,
    format: &'static str,
    valid: bool,
    error: Option<String>,
    /// Octets of the whole stream; null when it is invalid.
    bytes: Option<u64>,
    header: Option<HeaderInfo>,
    /// Whether the stream has GLOBAL_DATA (a live update) rather than
    /// being one domain's migration.
    live_update: bool,
    record_types: Vec<TypeStats>,
    global: Option<GlobalInfo>,
    global_quota: Option<GlobalQuotaInfo>,
    connections: Vec<ConnInfo>,
    watches: Vec<WatchInfo>,
    transactions: Vec<TxInfo>,
    domains: Vec<DomainInfo>,
    committed_nodes: u64,
    pending_nodes: u64,
    /// Committed nodes, in tree order.
    nodes: Vec<NodeInfo>,
    /// Nodes of pending transactions, in stream order.
    transaction_nodes: Vec<NodeInfo>,
    /// Entries left out of the lists above past [`MAX_LISTED`] each.
    not_listed: u64,
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<Vec<RecordLine>>,
    #[serde(skip)]
    by_type: BTreeMap<u32, TypeStats>,
    #[serde(skip)]
    echo_warnings: bool,
}

impl XsReport {
    /// An empty report; `verbose` lists every record, `echo_warnings`
    /// copies warnings to stderr as they come (text mode).
    pub fn new(verbose: bool, echo_warnings: bool) -> Self {
        XsReport {
            tool: "xcmig",
            tool_version: env!("CARGO_PKG_VERSION"),
            schema_version: SCHEMA_VERSION,
            format: "xenstore",
            valid: false,
            error: None,
            bytes: None,
            header: None,
            live_update: false,
            record_types: Vec::new(),
            global: None,
            global_quota: None,
            connections: Vec::new(),
            watches: Vec::new(),
            transactions: Vec::new(),
            domains: Vec::new(),
            committed_nodes: 0,
            pending_nodes: 0,
            nodes: Vec::new(),
            transaction_nodes: Vec::new(),
            not_listed: 0,
            warnings: Vec::new(),
            records: verbose.then(Vec::new),
            by_type: BTreeMap::new(),
            echo_warnings,
        }
    }

    /// Records the outcome of the walk and puts the lists in order.
    pub fn finish(&mut self, result: Result<(u64, Ending), String>) {
        match result {
            Ok((bytes, _)) => {
                self.valid = true;
                self.bytes = Some(bytes);
            }
            Err(line) => self.error = Some(line),
        }
        self.record_types = std::mem::take(&mut self.by_type).into_values().collect();
        // Tree order: by components, so "/a/b" follows "/a" and precedes
        // "/a-b"; special nodes ("@...") first.
        self.nodes.sort_by(|a, b| {
            let key = |p: &str| {
                (
                    !p.starts_with('@'),
                    p.split('/').map(String::from).collect::<Vec<_>>(),
                )
            };
            key(&a.path).cmp(&key(&b.path))
        });
    }

    fn push<T>(list: &mut Vec<T>, not_listed: &mut u64, item: T) {
        if list.len() < MAX_LISTED {
            list.push(item);
        } else {
            *not_listed += 1;
        }
    }

    fn conn_mut(&mut self, id: u32) -> Option<&mut ConnInfo> {
        self.connections.iter_mut().find(|c| c.conn_id == id)
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut o = String::new();
        match &self.header {
            Some(h) => {
                let _ = writeln!(
                    o,
                    "xenstore stream, version {}, {}-endian, {}",
                    h.version,
                    if h.big_endian { "big" } else { "little" },
                    if self.live_update {
                        "live update (GLOBAL_DATA present)"
                    } else {
                        "migration (no GLOBAL_DATA)"
                    }
                );
            }
            None => o.push_str("xenstore stream: no valid header\n"),
        }
        match (&self.error, self.bytes) {
            (Some(e), _) => {
                let _ = writeln!(o, "INVALID: {e}");
            }
            (None, Some(b)) => {
                let n: u64 = self.record_types.iter().map(|t| t.count).sum();
                let _ = writeln!(
                    o,
                    "valid: {}, {}, ends with END",
                    crate::plural(b, "octet", "octets"),
                    crate::plural(n, "record", "records")
                );
            }
            (None, None) => {}
        }
        o.push_str("records:\n");
        for t in &self.record_types {
            let _ = writeln!(
                o,
                "  {:<20} {:>8}  {}",
                t.name,
                t.count,
                crate::plural(t.bytes, "octet", "octets")
            );
        }
        if let Some(g) = &self.global {
            let _ = writeln!(
                o,
                "global: rw-socket-fd {}, evtchn-fd {}",
                g.rw_socket_fd, g.evtchn_fd
            );
        }
        if let Some(q) = &self.global_quota {
            let _ = writeln!(
                o,
                "global quota: per domain {}; global {}",
                quota_text(&q.per_domain),
                quota_text(&q.global)
            );
        }
        if !self.domains.is_empty() {
            o.push_str("domains:\n");
            for d in &self.domains {
                let _ = writeln!(
                    o,
                    "  domain {}: features {:#x}, quota {}",
                    d.domid,
                    d.features,
                    quota_text(&d.quotas)
                );
            }
        }
        let _ = writeln!(o, "connections: {}", self.connections.len());
        for c in &self.connections {
            let what = match c.kind {
                "ring" => {
                    let target = c
                        .target_domid
                        .map_or(String::new(), |t| format!(" (target {t})"));
                    format!(
                        "ring, domid {}{target}, evtchn {}",
                        c.domid.unwrap_or(0),
                        c.evtchn.unwrap_or(0)
                    )
                }
                _ => format!("socket, fd {}", c.socket_fd.unwrap_or(-1)),
            };
            let resp = if c.out_resp_len > 0 {
                format!(" ({} of it a partial response)", c.out_resp_len)
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "  #{} {what}: pending {} in, {} out{resp}; {}, {}, {}",
                c.conn_id,
                crate::plural(c.in_data_bytes, "octet", "octets"),
                crate::plural(c.out_data_bytes, "octet", "octets"),
                crate::plural(c.watches, "watch", "watches"),
                crate::plural(c.transactions, "transaction", "transactions"),
                crate::plural(c.transaction_nodes, "transaction node", "transaction nodes"),
            );
        }
        let _ = writeln!(o, "watches: {}", self.watches.len());
        for w in &self.watches {
            let _ = writeln!(
                o,
                "  conn {}: {:?} token {:?}{}",
                w.conn_id,
                w.path,
                w.token,
                depth_text(w.depth)
            );
        }
        let _ = writeln!(o, "transactions: {}", self.transactions.len());
        for t in &self.transactions {
            let _ = writeln!(
                o,
                "  conn {} tx {}: {}",
                t.conn_id,
                t.tx_id,
                crate::plural(t.nodes, "node", "nodes")
            );
        }
        let _ = writeln!(
            o,
            "nodes: {} committed, {} pending in transactions",
            self.committed_nodes, self.pending_nodes
        );
        self.tree_text(&mut o);
        for n in &self.transaction_nodes {
            // A deleted node has neither permissions nor value to show.
            let rest = if n.perms.is_empty() {
                String::new()
            } else {
                format!(" [{}] {}", n.perms.join(" "), value_text(n))
            };
            let _ = writeln!(
                o,
                "  [conn {} tx {}, {}] {}{rest}",
                n.conn_id.unwrap_or(0),
                n.tx_id.unwrap_or(0),
                n.access.as_deref().unwrap_or(""),
                n.path,
            );
        }
        if self.not_listed > 0 {
            let _ = writeln!(
                o,
                "({} entries not listed: more than {MAX_LISTED} in a list)",
                self.not_listed
            );
        }
        if let Some(recs) = &self.records {
            o.push_str("record list:\n");
            for r in recs {
                let _ = writeln!(
                    o,
                    "  @{:<10} #{:<6} {:<20} len {:<7} {}",
                    r.offset, r.index, r.name, r.len, r.summary
                );
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(o, "warnings: {}", self.warnings.len());
            for w in &self.warnings {
                let _ = writeln!(o, "  {w}");
            }
        }
        o
    }

    /// Committed nodes indented under their nearest ancestor in the
    /// stream; a node whose ancestors are absent (a migration stream)
    /// shows its full path.
    fn tree_text(&self, o: &mut String) {
        let mut depth_of: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &self.nodes {
            let mut parent = n.path.as_str();
            let mut found = None;
            while let Some(cut) = parent.rfind('/') {
                parent = if cut == 0 && parent.len() > 1 {
                    "/"
                } else {
                    &parent[..cut]
                };
                if let Some(&d) = depth_of.get(parent) {
                    found = Some((parent, d));
                    break;
                }
                if parent == "/" || parent.is_empty() {
                    break;
                }
            }
            let (label, depth) = match found {
                Some(("/", d)) => (&n.path[1..], d + 1),
                Some((p, d)) => (&n.path[p.len() + 1..], d + 1),
                None => (n.path.as_str(), 1),
            };
            depth_of.insert(&n.path, depth);
            let _ = writeln!(
                o,
                "{:indent$}{} [{}] {}",
                "",
                label,
                n.perms.join(" "),
                value_text(n),
                indent = 2 * depth
            );
        }
    }
}

fn value_text(n: &NodeInfo) -> String {
    match (&n.value, n.value_len) {
        (_, 0) => "(empty)".into(),
        (Some(v), len) if len as usize <= VALUE_SUMMARY => format!("{v:?}"),
        (Some(v), len) => {
            let s: String = v.chars().take(VALUE_SUMMARY).collect();
            format!("{s:?}... ({len} octets)")
        }
        (None, len) => format!("({len} octets, binary)"),
    }
}

fn quota_text(q: &BTreeMap<String, u32>) -> String {
    if q.is_empty() {
        return "none".into();
    }
    let v: Vec<String> = q
        .iter()
        .map(|(k, v)| {
            if *v == 0 {
                format!("{k}=unlimited")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    v.join(", ")
}

impl Visitor for XsReport {
    fn wants_summaries(&self) -> bool {
        self.records.is_some()
    }

    fn xenstore_header(&mut self, h: &XsHeader) {
        self.header = Some(HeaderInfo {
            version: h.version,
            big_endian: h.endian == Endian::Big,
        });
    }

    fn record(&mut self, r: &RecordInfo) {
        let t = self.by_type.entry(r.code).or_insert_with(|| TypeStats {
            name: r.name.clone(),
            code: r.code,
            count: 0,
            bytes: 0,
        });
        t.count += 1;
        t.bytes += r.wire_len;
        if let Some(list) = &mut self.records {
            let line = RecordLine {
                offset: r.offset,
                index: r.index,
                name: r.name.clone(),
                code: r.code,
                len: r.body_len,
                summary: r.summary.clone().unwrap_or_default(),
            };
            Self::push(list, &mut self.not_listed, line);
        }
    }

    fn xenstore_record(&mut self, _pos: &XsRecordPos, rec: &XsRecord) {
        let nl = &mut self.not_listed;
        match rec {
            XsRecord::End => {}
            XsRecord::Global(g) => {
                self.live_update = true;
                self.global = Some(GlobalInfo {
                    rw_socket_fd: g.rw_socket_fd,
                    evtchn_fd: g.evtchn_fd,
                });
            }
            XsRecord::GlobalQuota(q) => {
                self.global_quota = Some(GlobalQuotaInfo {
                    per_domain: quota_map(&q.per_domain),
                    global: quota_map(&q.global),
                })
            }
            XsRecord::Connection(c) => {
                let (domid, target_domid, evtchn, socket_fd) = match c.spec {
                    ConnSpec::Ring {
                        domid,
                        tdomid,
                        evtchn,
                    } => (
                        Some(domid),
                        (tdomid != DOMID_INVALID).then_some(tdomid),
                        Some(evtchn),
                        None,
                    ),
                    ConnSpec::Socket { fd } => (None, None, None, Some(fd)),
                };
                let info = ConnInfo {
                    conn_id: c.conn_id,
                    kind: if socket_fd.is_some() {
                        "socket"
                    } else {
                        "ring"
                    },
                    domid,
                    target_domid,
                    evtchn,
                    socket_fd,
                    in_data_bytes: c.in_data.len() as u64,
                    out_data_bytes: c.out_data.len() as u64,
                    out_resp_len: c.out_resp_len,
                    watches: 0,
                    transactions: 0,
                    transaction_nodes: 0,
                };
                Self::push(&mut self.connections, nl, info);
            }
            XsRecord::Watch(w) => {
                let info = WatchInfo {
                    conn_id: w.conn_id,
                    path: lossy(&w.path),
                    token: lossy(&w.token),
                    depth: w.depth,
                };
                Self::push(&mut self.watches, nl, info);
                if let Some(c) = self.conn_mut(w.conn_id) {
                    c.watches += 1;
                }
            }
            XsRecord::Transaction(t) => {
                let info = TxInfo {
                    conn_id: t.conn_id,
                    tx_id: t.tx_id,
                    nodes: 0,
                };
                Self::push(&mut self.transactions, nl, info);
                if let Some(c) = self.conn_mut(t.conn_id) {
                    c.transactions += 1;
                }
            }
            XsRecord::Node(n) if n.in_transaction() => {
                self.pending_nodes += 1;
                Self::push(&mut self.transaction_nodes, nl, NodeInfo::new(n));
                if let Some(t) = self
                    .transactions
                    .iter_mut()
                    .find(|t| t.conn_id == n.conn_id && t.tx_id == n.tx_id)
                {
                    t.nodes += 1;
                }
                if let Some(c) = self.conn_mut(n.conn_id) {
                    c.transaction_nodes += 1;
                }
            }
            XsRecord::Node(n) => {
                self.committed_nodes += 1;
                Self::push(&mut self.nodes, nl, NodeInfo::new(n));
            }
            XsRecord::Domain(d) => {
                let info = DomainInfo {
                    domid: d.domid,
                    features: d.features,
                    quotas: quota_map(&d.quotas),
                };
                Self::push(&mut self.domains, nl, info);
            }
        }
    }

    fn warning(&mut self, w: &str) {
        if self.echo_warnings {
            eprintln!("warning: {w}");
        }
        Self::push(&mut self.warnings, &mut self.not_listed, w.to_string());
    }

    fn note(&mut self, n: &str) {
        self.warning(n)
    }
}
