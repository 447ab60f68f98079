//! The header and records as values, and their encoding. Strings (paths,
//! tokens) are held without their NUL terminator; the encoder adds it.

use std::io;

use super::{
    rec_type, NODE_ACCESS_READ, NODE_ACCESS_WRITTEN, PERM_FLAG_STALE, XS_FLAG_BIG_ENDIAN, XS_IDENT,
    XS_RECORD_HEADER_LEN, XS_VERSION_2,
};
use crate::wire::{padded_len, Endian};

/// The stream header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XsHeader {
    /// 1 or 2.
    pub version: u32,
    /// Byte order of the records (flags bit 0).
    pub endian: Endian,
}

impl XsHeader {
    /// A version 2 little-endian header (what an x86 xenstored writes).
    pub fn new() -> Self {
        XsHeader {
            version: XS_VERSION_2,
            endian: Endian::Little,
        }
    }

    /// The `flags` field.
    pub fn flags(&self) -> u32 {
        match self.endian {
            Endian::Little => 0,
            Endian::Big => XS_FLAG_BIG_ENDIAN,
        }
    }

    /// The 16 header octets (always big-endian, whatever the flags say).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&XS_IDENT);
        b[8..12].copy_from_slice(&self.version.to_be_bytes());
        b[12..].copy_from_slice(&self.flags().to_be_bytes());
        b
    }
}

impl Default for XsHeader {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a record is and what its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct XsRecordPos {
    /// Offset of the record header in the whole input.
    pub offset: u64,
    /// Index of the record, from 0.
    pub index: u64,
    /// `type`.
    pub rtype: u32,
    /// `len`.
    pub len: u32,
}

impl XsRecordPos {
    /// Octets the record occupies: header, `len` and padding to 8.
    pub fn wire_len(&self) -> u64 {
        XS_RECORD_HEADER_LEN + padded_len(u64::from(self.len))
    }
}

/// GLOBAL_DATA: xenstored's own fds, for live update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalData {
    /// The socket accepting read-write connections, or -1.
    pub rw_socket_fd: i32,
    /// The event channel driver's fd.
    pub evtchn_fd: i32,
}

/// How a connection reaches xenstored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnSpec {
    /// A domain's shared ring page (conn-type 0).
    Ring {
        /// The domain owning the ring.
        domid: u16,
        /// The domain `domid` acts for after SET_TARGET, else
        /// [`DOMID_INVALID`](super::DOMID_INVALID).
        tdomid: u16,
        /// The interdomain event channel port xenstored uses.
        evtchn: u32,
    },
    /// A local socket (conn-type 1, live update only).
    Socket {
        /// The connected socket's fd.
        fd: i32,
    },
}

impl ConnSpec {
    /// The conn-type code.
    pub fn conn_type(&self) -> u16 {
        match self {
            ConnSpec::Ring { .. } => 0,
            ConnSpec::Socket { .. } => 1,
        }
    }
}

/// CONNECTION_DATA: a connection and the data pending on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Non-zero id that later records name.
    pub conn_id: u32,
    /// Ring or socket.
    pub spec: ConnSpec,
    /// Octets read from the connection and not yet processed.
    pub in_data: Vec<u8>,
    /// Length of a partial response at the start of `out_data`.
    pub out_resp_len: u16,
    /// Octets not yet written to the connection.
    pub out_data: Vec<u8>,
}

/// WATCH_DATA or WATCH_DATA_EXTENDED: one watch of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The connection that set the watch.
    pub conn_id: u32,
    /// The watched path (without the NUL).
    pub path: Vec<u8>,
    /// The token (without the NUL).
    pub token: Vec<u8>,
    /// Levels below `path` that match (WATCH_DATA_EXTENDED only; 0xffff is
    /// unlimited); `None` for a WATCH_DATA record.
    pub depth: Option<u16>,
}

/// TRANSACTION_DATA: a transaction pending on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    /// The connection that started it.
    pub conn_id: u32,
    /// The id TRANSACTION_START returned.
    pub tx_id: u32,
}

/// What a permission specifier grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermKind {
    /// 'n': no access.
    None,
    /// 'r': read.
    Read,
    /// 'w': write.
    Write,
    /// 'b': read and write.
    Both,
}

impl PermKind {
    /// The ASCII letter of SET_PERMS.
    pub fn letter(self) -> u8 {
        match self {
            PermKind::None => b'n',
            PermKind::Read => b'r',
            PermKind::Write => b'w',
            PermKind::Both => b'b',
        }
    }

    /// The kind a letter names.
    pub fn from_letter(c: u8) -> Option<Self> {
        match c {
            b'n' => Some(PermKind::None),
            b'r' => Some(PermKind::Read),
            b'w' => Some(PermKind::Write),
            b'b' => Some(PermKind::Both),
            _ => None,
        }
    }
}

/// A node permission specifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// The access granted.
    pub kind: PermKind,
    /// Flags as read (bit 0: stale); kept whole so a stream round-trips.
    pub flags: u8,
    /// The domain it concerns (perm1: the owner).
    pub domid: u16,
}

impl Perm {
    /// Whether the permission is stale (ignored when checking access).
    pub fn is_stale(&self) -> bool {
        self.flags & PERM_FLAG_STALE != 0
    }

    /// SET_PERMS notation: letter and domid, with a '!' when stale.
    pub fn notation(&self) -> String {
        format!(
            "{}{}{}",
            self.kind.letter() as char,
            self.domid,
            if self.is_stale() { "!" } else { "" }
        )
    }
}

/// NODE_DATA: a node, committed (`conn_id` 0) or pending in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 0 for a committed node, else the transaction's connection.
    pub conn_id: u32,
    /// The transaction (ignored when `conn_id` is 0, kept as read).
    pub tx_id: u32,
    /// For a transaction's node: read (1) and written (2) bits, 0 when
    /// deleted (ignored for a committed node, kept as read).
    pub access: u16,
    /// Permissions; empty for a node deleted in its transaction.
    pub perms: Vec<Perm>,
    /// The absolute path (without the NUL).
    pub path: Vec<u8>,
    /// The value (may hold NULs).
    pub value: Vec<u8>,
}

impl Node {
    /// A committed node.
    pub fn committed(path: &str, value: &[u8], perms: Vec<Perm>) -> Self {
        Node {
            conn_id: 0,
            tx_id: 0,
            access: 0,
            perms,
            path: path.as_bytes().to_vec(),
            value: value.to_vec(),
        }
    }

    /// Whether the node belongs to a pending transaction.
    pub fn in_transaction(&self) -> bool {
        self.conn_id != 0
    }

    /// Whether this is a node deleted in its transaction.
    pub fn is_deleted(&self) -> bool {
        self.in_transaction() && self.perms.is_empty()
    }

    /// The access bits as text ("read", "written", "read+written",
    /// "deleted").
    pub fn access_text(&self) -> String {
        let r = self.access & NODE_ACCESS_READ != 0;
        let w = self.access & NODE_ACCESS_WRITTEN != 0;
        match (r, w) {
            (true, true) => "read+written".into(),
            (true, false) => "read".into(),
            (false, true) => "written".into(),
            (false, false) => "deleted".into(),
        }
    }
}

/// A named quota value (0: unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The name, as GET_QUOTA knows it (without the NUL).
    pub name: Vec<u8>,
    /// The value.
    pub value: u32,
}

/// GLOBAL_QUOTA_DATA: xenstored's quota settings, for live update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalQuota {
    /// Defaults that apply to each domain.
    pub per_domain: Vec<Quota>,
    /// Settings that apply globally only.
    pub global: Vec<Quota>,
}

/// DOMAIN_DATA: one domain's quotas and features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainData {
    /// The domain.
    pub domid: u16,
    /// The ring page feature field (version 2; written 0 in version 1).
    pub features: u32,
    /// The domain's quotas.
    pub quotas: Vec<Quota>,
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XsRecord {
    /// END.
    End,
    /// GLOBAL_DATA.
    Global(GlobalData),
    /// CONNECTION_DATA.
    Connection(Connection),
    /// WATCH_DATA (`depth` None) or WATCH_DATA_EXTENDED.
    Watch(Watch),
    /// TRANSACTION_DATA.
    Transaction(Transaction),
    /// NODE_DATA.
    Node(Node),
    /// GLOBAL_QUOTA_DATA.
    GlobalQuota(GlobalQuota),
    /// DOMAIN_DATA.
    Domain(DomainData),
}

fn too_long(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("xenstore {what} too long for its length field"),
    )
}

fn len16(n: usize, what: &str) -> io::Result<u16> {
    u16::try_from(n).map_err(|_| too_long(what))
}

/// Appends `s` and its NUL; a NUL inside `s` would end it early.
fn put_str(out: &mut Vec<u8>, s: &[u8], what: &str) -> io::Result<()> {
    if s.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("xenstore {what} holds a NUL"),
        ));
    }
    out.extend_from_slice(s);
    out.push(0);
    Ok(())
}

fn put_quotas(e: Endian, out: &mut Vec<u8>, quotas: &[&Quota]) -> io::Result<()> {
    for q in quotas {
        e.put_u32(out, q.value);
    }
    for q in quotas {
        put_str(out, &q.name, "quota name")?;
    }
    Ok(())
}

impl XsRecord {
    /// The record type code.
    pub fn record_type(&self) -> u32 {
        match self {
            XsRecord::End => rec_type::END,
            XsRecord::Global(_) => rec_type::GLOBAL_DATA,
            XsRecord::Connection(_) => rec_type::CONNECTION_DATA,
            XsRecord::Watch(w) if w.depth.is_some() => rec_type::WATCH_DATA_EXTENDED,
            XsRecord::Watch(_) => rec_type::WATCH_DATA,
            XsRecord::Transaction(_) => rec_type::TRANSACTION_DATA,
            XsRecord::Node(_) => rec_type::NODE_DATA,
            XsRecord::GlobalQuota(_) => rec_type::GLOBAL_QUOTA_DATA,
            XsRecord::Domain(_) => rec_type::DOMAIN_DATA,
        }
    }

    /// The body, without padding. Fails for a field too long for its
    /// length field (e.g. a path of 65535 octets or more).
    pub fn encode_body(&self, e: Endian) -> io::Result<Vec<u8>> {
        let mut b = Vec::new();
        match self {
            XsRecord::End => {}
            XsRecord::Global(g) => {
                e.put_u32(&mut b, g.rw_socket_fd as u32);
                e.put_u32(&mut b, g.evtchn_fd as u32);
            }
            XsRecord::Connection(c) => {
                let in_len = len16(c.in_data.len(), "pending input")?;
                let out_len =
                    u32::try_from(c.out_data.len()).map_err(|_| too_long("pending output"))?;
                e.put_u32(&mut b, c.conn_id);
                e.put_u16(&mut b, c.spec.conn_type());
                e.put_u16(&mut b, 0);
                match c.spec {
                    ConnSpec::Ring {
                        domid,
                        tdomid,
                        evtchn,
                    } => {
                        e.put_u16(&mut b, domid);
                        e.put_u16(&mut b, tdomid);
                        e.put_u32(&mut b, evtchn);
                    }
                    ConnSpec::Socket { fd } => {
                        e.put_u32(&mut b, fd as u32);
                        e.put_u32(&mut b, 0);
                    }
                }
                e.put_u16(&mut b, in_len);
                e.put_u16(&mut b, c.out_resp_len);
                e.put_u32(&mut b, out_len);
                b.extend_from_slice(&c.in_data);
                b.extend_from_slice(&c.out_data);
            }
            XsRecord::Watch(w) => {
                e.put_u32(&mut b, w.conn_id);
                e.put_u16(&mut b, len16(w.path.len() + 1, "watch path")?);
                e.put_u16(&mut b, len16(w.token.len() + 1, "watch token")?);
                if let Some(depth) = w.depth {
                    e.put_u16(&mut b, depth);
                    e.put_u16(&mut b, 0);
                }
                put_str(&mut b, &w.path, "watch path")?;
                put_str(&mut b, &w.token, "watch token")?;
            }
            XsRecord::Transaction(t) => {
                e.put_u32(&mut b, t.conn_id);
                e.put_u32(&mut b, t.tx_id);
            }
            XsRecord::Node(n) => {
                e.put_u32(&mut b, n.conn_id);
                e.put_u32(&mut b, n.tx_id);
                e.put_u16(&mut b, len16(n.path.len() + 1, "node path")?);
                e.put_u16(&mut b, len16(n.value.len(), "node value")?);
                e.put_u16(&mut b, n.access);
                e.put_u16(&mut b, len16(n.perms.len(), "permission list")?);
                for p in &n.perms {
                    b.push(p.kind.letter());
                    b.push(p.flags);
                    e.put_u16(&mut b, p.domid);
                }
                put_str(&mut b, &n.path, "node path")?;
                b.extend_from_slice(&n.value);
            }
            XsRecord::GlobalQuota(q) => {
                e.put_u16(&mut b, len16(q.per_domain.len(), "quota list")?);
                e.put_u16(&mut b, len16(q.global.len(), "quota list")?);
                let all: Vec<&Quota> = q.per_domain.iter().chain(&q.global).collect();
                put_quotas(e, &mut b, &all)?;
            }
            XsRecord::Domain(d) => {
                e.put_u16(&mut b, d.domid);
                e.put_u16(&mut b, len16(d.quotas.len(), "quota list")?);
                e.put_u32(&mut b, d.features);
                let all: Vec<&Quota> = d.quotas.iter().collect();
                put_quotas(e, &mut b, &all)?;
            }
        }
        if b.len() > u32::MAX as usize {
            return Err(too_long("record"));
        }
        Ok(b)
    }
}
