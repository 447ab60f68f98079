//! The rules between xenstore records: what a record names must have been
//! declared earlier, what is unique must not repeat, and END comes last.

use std::collections::HashSet;

use super::error::{XsError, XsRule, XsWarning};
use super::record::{ConnSpec, XsRecord, XsRecordPos};
use super::XS_RECORD_HEADER_LEN;

/// Checks the order of records and their references to each other.
///
/// - GLOBAL_DATA at most once, and first (`global-not-first`,
///   `duplicate-global`); GLOBAL_QUOTA_DATA at most once;
/// - connection ids unique (`duplicate-conn-id`); a WATCH_DATA,
///   TRANSACTION_DATA or pending NODE_DATA names an earlier connection
///   (`unknown-conn`), a pending NODE_DATA an earlier transaction of it
///   (`unknown-transaction`); transactions, watches (per connection, path
///   and token), nodes (per transaction, or committed) and DOMAIN_DATA (per
///   domain) unique;
/// - a committed node's parent must be known: in a live-update stream (one
///   with GLOBAL_DATA) every node is in the stream, so the parent must come
///   earlier (`missing-parent`); a migration stream carries only one
///   domain's nodes, whose ancestors the receiver already holds, so there
///   a missing parent is a warning. "/" and special ("@...") nodes have no
///   parent;
/// - nothing after END (`trailing-data`).
///
/// Memory grows with the ids and paths seen, i.e. at most with the input.
#[derive(Debug, Clone)]
pub struct XsGrammar {
    version: u32,
    records: u64,
    global: bool,
    global_quota: bool,
    ended: bool,
    conns: HashSet<u32>,
    socket_conns: u64,
    txs: HashSet<(u32, u32)>,
    watches: HashSet<(u32, Vec<u8>, Vec<u8>)>,
    nodes: HashSet<Vec<u8>>,
    tx_nodes: HashSet<(u32, u32, Vec<u8>)>,
    domains: HashSet<u16>,
    parent_warned: bool,
    warnings: Vec<XsWarning>,
}

/// The parent of an absolute path other than "/".
fn parent(path: &[u8]) -> Option<&[u8]> {
    if path.first() != Some(&b'/') || path == b"/" {
        return None;
    }
    let cut = path.iter().rposition(|&c| c == b'/')?;
    Some(if cut == 0 { b"/" } else { &path[..cut] })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl XsGrammar {
    /// A grammar at the start of a stream of this version.
    pub fn new(version: u32) -> Self {
        XsGrammar {
            version,
            records: 0,
            global: false,
            global_quota: false,
            ended: false,
            conns: HashSet::new(),
            socket_conns: 0,
            txs: HashSet::new(),
            watches: HashSet::new(),
            nodes: HashSet::new(),
            tx_nodes: HashSet::new(),
            domains: HashSet::new(),
            parent_warned: false,
            warnings: Vec::new(),
        }
    }

    /// The stream version the grammar was made for.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether a GLOBAL_DATA record was seen: a live-update stream.
    pub fn is_live_update(&self) -> bool {
        self.global
    }

    /// Whether END has been accepted.
    pub fn is_done(&self) -> bool {
        self.ended
    }

    /// Drains the warnings gathered so far.
    pub fn take_warnings(&mut self) -> Vec<XsWarning> {
        std::mem::take(&mut self.warnings)
    }

    /// Checks one record against the rules, given what came before.
    pub fn on_record(&mut self, pos: XsRecordPos, rec: &XsRecord) -> Result<(), XsError> {
        let body = pos.offset + XS_RECORD_HEADER_LEN;
        let fail = |at: u64, rule| Err(XsError::at(at, pos, rule));
        if self.ended {
            return fail(pos.offset, XsRule::TrailingData);
        }
        let first = self.records == 0;
        self.records += 1;
        match rec {
            XsRecord::End => {
                self.ended = true;
                if self.socket_conns > 0 && !self.global {
                    self.warnings.push(XsWarning {
                        offset: pos.offset,
                        record: Some(pos),
                        message: format!(
                            "{} socket connections in a stream without GLOBAL_DATA (sockets only \
                             survive a live update)",
                            self.socket_conns
                        ),
                    });
                }
            }
            XsRecord::Global(_) => {
                if self.global {
                    return fail(pos.offset, XsRule::DuplicateGlobal);
                }
                if !first {
                    return fail(pos.offset, XsRule::GlobalNotFirst);
                }
                self.global = true;
            }
            XsRecord::GlobalQuota(_) => {
                if self.global_quota {
                    return fail(pos.offset, XsRule::DuplicateGlobalQuota);
                }
                self.global_quota = true;
            }
            XsRecord::Connection(c) => {
                if !self.conns.insert(c.conn_id) {
                    return fail(body, XsRule::DuplicateConnId(c.conn_id));
                }
                if matches!(c.spec, ConnSpec::Socket { .. }) {
                    self.socket_conns += 1;
                }
            }
            XsRecord::Watch(w) => {
                if !self.conns.contains(&w.conn_id) {
                    return fail(body, XsRule::UnknownConn(w.conn_id));
                }
                if !self
                    .watches
                    .insert((w.conn_id, w.path.clone(), w.token.clone()))
                {
                    return fail(pos.offset, XsRule::DuplicateWatch);
                }
            }
            XsRecord::Transaction(t) => {
                if !self.conns.contains(&t.conn_id) {
                    return fail(body, XsRule::UnknownConn(t.conn_id));
                }
                if !self.txs.insert((t.conn_id, t.tx_id)) {
                    return fail(
                        body + 4,
                        XsRule::DuplicateTransaction {
                            conn_id: t.conn_id,
                            tx_id: t.tx_id,
                        },
                    );
                }
            }
            XsRecord::Node(n) => {
                let path_at = body + 16 + 4 * n.perms.len() as u64;
                if n.in_transaction() {
                    if !self.conns.contains(&n.conn_id) {
                        return fail(body, XsRule::UnknownConn(n.conn_id));
                    }
                    if !self.txs.contains(&(n.conn_id, n.tx_id)) {
                        return fail(
                            body + 4,
                            XsRule::UnknownTransaction {
                                conn_id: n.conn_id,
                                tx_id: n.tx_id,
                            },
                        );
                    }
                    if !self.tx_nodes.insert((n.conn_id, n.tx_id, n.path.clone())) {
                        return fail(path_at, XsRule::DuplicateNode(text(&n.path)));
                    }
                    return Ok(());
                }
                if let Some(p) = parent(&n.path) {
                    if !self.nodes.contains(p) {
                        if self.global {
                            return fail(
                                path_at,
                                XsRule::MissingParent {
                                    path: text(&n.path),
                                    parent: text(p),
                                },
                            );
                        }
                        if !self.parent_warned {
                            self.parent_warned = true;
                            self.warnings.push(XsWarning {
                                offset: path_at,
                                record: Some(pos),
                                message: format!(
                                    "parent {:?} of {:?} is not in the stream: the receiver must \
                                     already hold it (further such nodes not reported)",
                                    text(p),
                                    text(&n.path)
                                ),
                            });
                        }
                    }
                }
                if !self.nodes.insert(n.path.clone()) {
                    return fail(path_at, XsRule::DuplicateNode(text(&n.path)));
                }
            }
            XsRecord::Domain(d) => {
                if !self.domains.insert(d.domid) {
                    return fail(body, XsRule::DuplicateDomain(d.domid));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parent;

    #[test]
    fn parents_of_absolute_paths() {
        assert_eq!(parent(b"/local/domain/1"), Some(&b"/local/domain"[..]));
        assert_eq!(parent(b"/local"), Some(&b"/"[..]));
        assert_eq!(parent(b"/"), None);
        assert_eq!(parent(b"@releaseDomain"), None);
    }
}
