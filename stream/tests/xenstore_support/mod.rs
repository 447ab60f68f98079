//! Field-labelled xenstore stream builders, the reference vectors and the
//! malformed table, shared by the codec's tests (stream_xenstore.rs) and
//! the CLI's (cli/tests/cli_xenstore.rs, which includes this file by path).
#![allow(dead_code)]

use xcmig_stream::xenstore::*;

// ---- labelled builders ---------------------------------------------------

#[derive(Clone, Copy)]
pub enum E {
    /// Little-endian.
    Le,
    /// Big-endian.
    Be,
}

pub fn u16e(e: E, v: u16) -> [u8; 2] {
    match e {
        E::Le => v.to_le_bytes(),
        E::Be => v.to_be_bytes(),
    }
}

pub fn u32e(e: E, v: u32) -> [u8; 4] {
    match e {
        E::Le => v.to_le_bytes(),
        E::Be => v.to_be_bytes(),
    }
}

/// The 16-octet header: ident, version (BE), flags (BE).
pub fn header(version: u32, flags: u32) -> Vec<u8> {
    let mut v = b"xenstore".to_vec(); // ident
    v.extend_from_slice(&version.to_be_bytes()); // version
    v.extend_from_slice(&flags.to_be_bytes()); // flags
    v
}

pub fn flags(e: E) -> u32 {
    match e {
        E::Le => 0,
        E::Be => 1,
    }
}

/// A record as xenstored writes it: `len` rounded up to 8, padding inside.
pub fn rec(e: E, t: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(8) * 8;
    rec_len(e, t, padded as u32, body)
}

/// A record with an explicit `len`; the body is zero-padded to
/// `max(len, body)` rounded up to 8.
pub fn rec_len(e: E, t: u32, len: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&u32e(e, t)); // type
    v.extend_from_slice(&u32e(e, len)); // len
    v.extend_from_slice(body); // body
    let total = (len as usize).max(body.len()).div_ceil(8) * 8;
    v.resize(8 + total, 0); // padding
    v
}

pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// CONNECTION_DATA body for a ring connection.
#[allow(clippy::too_many_arguments)]
pub fn conn_ring(
    e: E,
    id: u32,
    domid: u16,
    tdomid: u16,
    port: u32,
    inp: &[u8],
    resp: u16,
    out: &[u8],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u32e(e, id)); // conn-id
    b.extend_from_slice(&u16e(e, 0)); // conn-type: shared ring
    b.extend_from_slice(&u16e(e, 0)); // pad
    b.extend_from_slice(&u16e(e, domid)); // domid
    b.extend_from_slice(&u16e(e, tdomid)); // tdomid
    b.extend_from_slice(&u32e(e, port)); // evtchn
    b.extend_from_slice(&u16e(e, inp.len() as u16)); // in-data-len
    b.extend_from_slice(&u16e(e, resp)); // out-resp-len
    b.extend_from_slice(&u32e(e, out.len() as u32)); // out-data-len
    b.extend_from_slice(inp); // data: read
    b.extend_from_slice(out); // data: written
    b
}

pub fn conn_socket(e: E, id: u32, fd: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u32e(e, id)); // conn-id
    b.extend_from_slice(&u16e(e, 1)); // conn-type: socket
    b.extend_from_slice(&u16e(e, 0)); // pad
    b.extend_from_slice(&u32e(e, fd as u32)); // socket-fd
    b.extend_from_slice(&u32e(e, 0)); // pad
    b.extend_from_slice(&u16e(e, 0)); // in-data-len
    b.extend_from_slice(&u16e(e, 0)); // out-resp-len
    b.extend_from_slice(&u32e(e, 0)); // out-data-len
    b
}

/// WATCH_DATA body (`depth` Some: WATCH_DATA_EXTENDED). Strings as given,
/// NUL included by the caller.
pub fn watch(e: E, conn: u32, path: &[u8], token: &[u8], depth: Option<u16>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u32e(e, conn)); // conn-id
    b.extend_from_slice(&u16e(e, path.len() as u16)); // wpath-len
    b.extend_from_slice(&u16e(e, token.len() as u16)); // token-len
    if let Some(d) = depth {
        b.extend_from_slice(&u16e(e, d)); // depth
        b.extend_from_slice(&u16e(e, 0)); // pad
    }
    b.extend_from_slice(path); // wpath
    b.extend_from_slice(token); // token
    b
}

pub fn tx(e: E, conn: u32, id: u32) -> Vec<u8> {
    cat(&[u32e(e, conn).to_vec(), u32e(e, id).to_vec()]) // conn-id, tx-id
}

/// NODE_DATA body; `path` includes its NUL.
pub fn node(
    e: E,
    conn: u32,
    txid: u32,
    access: u16,
    perms: &[(u8, u8, u16)],
    path: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u32e(e, conn)); // conn-id
    b.extend_from_slice(&u32e(e, txid)); // tx-id
    b.extend_from_slice(&u16e(e, path.len() as u16)); // path-len
    b.extend_from_slice(&u16e(e, value.len() as u16)); // value-len
    b.extend_from_slice(&u16e(e, access)); // access
    b.extend_from_slice(&u16e(e, perms.len() as u16)); // perm-count
    for &(perm, fl, domid) in perms {
        b.push(perm); // perm
        b.push(fl); // flags
        b.extend_from_slice(&u16e(e, domid)); // domid
    }
    b.extend_from_slice(path); // path
    b.extend_from_slice(value); // value
    b
}

pub fn global(e: E, sock: i32, evtchn: i32) -> Vec<u8> {
    cat(&[
        u32e(e, sock as u32).to_vec(),
        u32e(e, evtchn as u32).to_vec(),
    ])
}

pub fn domain(e: E, domid: u16, features: u32, quotas: &[(u32, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u16e(e, domid)); // domain-id
    b.extend_from_slice(&u16e(e, quotas.len() as u16)); // n-quota
    b.extend_from_slice(&u32e(e, features)); // features
    for (v, _) in quotas {
        b.extend_from_slice(&u32e(e, *v)); // quota-val
    }
    for (_, n) in quotas {
        b.extend_from_slice(n); // quota-names (NUL given)
    }
    b
}

pub fn glob_quota(e: E, dom: &[(u32, &[u8])], glob: &[(u32, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u16e(e, dom.len() as u16)); // n-dom-quota
    b.extend_from_slice(&u16e(e, glob.len() as u16)); // n-glob-quota
    for (v, _) in dom.iter().chain(glob) {
        b.extend_from_slice(&u32e(e, *v)); // quota-val
    }
    for (_, n) in dom.iter().chain(glob) {
        b.extend_from_slice(n); // quota-names
    }
    b
}

pub fn end(e: E) -> Vec<u8> {
    rec(e, 0, &[])
}

// ---- the migration vector ------------------------------------------------

/// One domain's state as a migration carries it, version 1. Offsets:
/// header 0, CONNECTION_DATA 16, WATCH_DATA 56, TRANSACTION_DATA 88, NODE
/// 104, NODE 152, NODE (transaction) 208, NODE (deleted) 264, END 312;
/// 320 octets.
pub fn migration(e: E) -> Vec<u8> {
    cat(&[
        header(1, flags(e)),
        rec(e, 2, &conn_ring(e, 1, 5, 0x7ff4, 9, b"abc", 2, b"xyzw")),
        rec(e, 3, &watch(e, 1, b"device\0", b"t1\0", None)),
        rec(e, 4, &tx(e, 1, 7)),
        rec(
            e,
            5,
            &node(
                e,
                0,
                0,
                0,
                &[(b'b', 0, 5), (b'r', 1, 0)],
                b"/local/domain/5\0",
                b"",
            ),
        ),
        rec(
            e,
            5,
            &node(
                e,
                0,
                0,
                0,
                &[(b'n', 0, 5)],
                b"/local/domain/5/name\0",
                b"guest",
            ),
        ),
        rec(
            e,
            5,
            &node(e, 1, 7, 3, &[(b'b', 0, 5)], b"/local/domain/5/data\0", b"x"),
        ),
        rec(e, 5, &node(e, 1, 7, 0, &[], b"/local/domain/5/old\0", b"")),
        end(e),
    ])
}

pub fn migration_records() -> Vec<XsRecord> {
    vec![
        XsRecord::Connection(Connection {
            conn_id: 1,
            spec: ConnSpec::Ring {
                domid: 5,
                tdomid: DOMID_INVALID,
                evtchn: 9,
            },
            in_data: b"abc".to_vec(),
            out_resp_len: 2,
            out_data: b"xyzw".to_vec(),
        }),
        XsRecord::Watch(Watch {
            conn_id: 1,
            path: b"device".to_vec(),
            token: b"t1".to_vec(),
            depth: None,
        }),
        XsRecord::Transaction(Transaction {
            conn_id: 1,
            tx_id: 7,
        }),
        XsRecord::Node(Node::committed(
            "/local/domain/5",
            b"",
            vec![
                Perm {
                    kind: PermKind::Both,
                    flags: 0,
                    domid: 5,
                },
                Perm {
                    kind: PermKind::Read,
                    flags: PERM_FLAG_STALE,
                    domid: 0,
                },
            ],
        )),
        XsRecord::Node(Node::committed(
            "/local/domain/5/name",
            b"guest",
            vec![Perm {
                kind: PermKind::None,
                flags: 0,
                domid: 5,
            }],
        )),
        XsRecord::Node(Node {
            conn_id: 1,
            tx_id: 7,
            access: NODE_ACCESS_READ | NODE_ACCESS_WRITTEN,
            perms: vec![Perm {
                kind: PermKind::Both,
                flags: 0,
                domid: 5,
            }],
            path: b"/local/domain/5/data".to_vec(),
            value: b"x".to_vec(),
        }),
        XsRecord::Node(Node {
            conn_id: 1,
            tx_id: 7,
            access: 0,
            perms: vec![],
            path: b"/local/domain/5/old".to_vec(),
            value: vec![],
        }),
    ]
}

pub fn write(h: XsHeader, mode: LenMode, recs: &[XsRecord]) -> Vec<u8> {
    let mut w = XsWriter::with_mode(Vec::new(), h, mode).unwrap();
    for r in recs {
        w.write_record(r).unwrap();
    }
    w.finish().unwrap()
}

// ---- malformed streams ---------------------------------------------------

/// A live-update stream, version 2: GLOBAL_DATA first, the root node, a
/// special node, quotas, a socket connection and an extended watch.
pub fn live_update(e: E) -> Vec<u8> {
    cat(&[
        header(2, flags(e)),
        rec(e, 1, &global(e, 4, 5)),
        rec(
            e,
            6,
            &glob_quota(e, &[(1000, b"nodes\0")], &[(0, b"transaction-nodes\0")]),
        ),
        rec(e, 2, &conn_socket(e, 1, 12)),
        rec(e, 2, &conn_ring(e, 2, 3, 0x7ff4, 17, b"", 0, b"")),
        rec(
            e,
            8,
            &watch(e, 2, b"/local/domain/3\0", b"tk\0", Some(0xffff)),
        ),
        rec(e, 3, &watch(e, 1, b"@releaseDomain\0", b"rel\0", None)),
        rec(
            e,
            7,
            &domain(e, 3, 1, &[(2048, b"memory\0"), (0, b"watches\0")]),
        ),
        rec(e, 5, &node(e, 0, 0, 0, &[(b'r', 0, 0)], b"/\0", b"")),
        rec(
            e,
            5,
            &node(e, 0, 0, 0, &[(b'n', 0, 0)], b"@releaseDomain\0", b""),
        ),
        rec(e, 5, &node(e, 0, 0, 0, &[(b'n', 0, 0)], b"/local\0", b"")),
        rec(
            e,
            5,
            &node(
                e,
                0,
                0,
                0,
                &[(b'n', 0, 0), (b'r', 0, 3)],
                b"/local/domain\0",
                b"",
            ),
        ),
        rec(
            e,
            5,
            &node(e, 0, 0, 0, &[(b'b', 0, 3)], b"/local/domain/3\0", b"a\0b"),
        ),
        end(e),
    ])
}

pub const L: E = E::Le;

pub fn s1(recs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = header(1, 0);
    for r in recs {
        v.extend_from_slice(r);
    }
    v
}

pub fn s2(recs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = header(2, 0);
    for r in recs {
        v.extend_from_slice(r);
    }
    v
}

/// A ring connection without pending data: 32 octets on the wire.
pub fn c(id: u32) -> Vec<u8> {
    rec(L, 2, &conn_ring(L, id, 1, 0x7ff4, 3, b"", 0, b""))
}

/// Each case: name, bytes, the rule broken, the offset reported.
pub fn malformed() -> Vec<(&'static str, Vec<u8>, &'static str, u64)> {
    let mut trunc_body = s1(&[]);
    trunc_body.extend_from_slice(&u32e(L, 4));
    trunc_body.extend_from_slice(&u32e(L, 8));
    trunc_body.extend_from_slice(&[1, 0, 0, 0]);
    let mut bad_magic = migration(L);
    bad_magic[7] = b'f';
    let mut trailing = migration(L);
    trailing.push(0);
    vec![
        ("ident xenstorf", bad_magic, "bad-magic", 7),
        ("empty input", vec![], "truncated", 0),
        (
            "header cut at 10",
            header(1, 0)[..10].to_vec(),
            "truncated",
            10,
        ),
        (
            "version 3",
            cat(&[header(3, 0), end(L)]),
            "unsupported-version",
            8,
        ),
        (
            "version 0",
            cat(&[header(0, 0), end(L)]),
            "unsupported-version",
            8,
        ),
        (
            "flags bit 1",
            cat(&[header(1, 2), end(L)]),
            "reserved-flags",
            12,
        ),
        (
            "flags 1 written little-endian",
            cat(&[header(1, 0x0100_0000), end(L)]),
            "reserved-flags",
            12,
        ),
        ("header only", s1(&[]), "missing-end", 16),
        (
            "record header cut",
            cat(&[s1(&[]), vec![0, 0, 0]]),
            "truncated",
            19,
        ),
        ("body cut", trunc_body, "truncated", 28),
        ("octet after END", trailing, "trailing-data", 320),
        (
            "type 9",
            s1(&[rec(L, 9, &[]), end(L)]),
            "unknown-record-type",
            16,
        ),
        (
            "type 0xffffffff",
            s1(&[rec(L, u32::MAX, &[])]),
            "unknown-record-type",
            16,
        ),
        (
            "extended watch in v1",
            s1(&[
                c(1),
                rec(L, 8, &watch(L, 1, b"a\0", b"t\0", Some(1))),
                end(L),
            ]),
            "not-in-version",
            48,
        ),
        (
            "len 4 GiB - 8",
            s1(&[cat(&[u32e(L, 2).to_vec(), u32e(L, 0xffff_fff8).to_vec()])]),
            "record-too-long",
            20,
        ),
        (
            "END with len 8",
            s1(&[rec_len(L, 0, 8, &[])]),
            "excess-body",
            20,
        ),
        (
            "GLOBAL_DATA len 16",
            s1(&[rec_len(L, 1, 16, &global(L, -1, 3)), end(L)]),
            "excess-body",
            20,
        ),
        (
            "TRANSACTION_DATA len 4",
            s1(&[c(1), rec_len(L, 4, 4, &tx(L, 1, 1)[..4]), end(L)]),
            "length-overrun",
            52,
        ),
        (
            "connection data past len",
            s1(&[
                rec_len(L, 2, 24, &conn_ring(L, 1, 1, 2, 3, b"ab", 0, b"")[..24]),
                end(L),
            ]),
            "length-overrun",
            20,
        ),
        (
            "node perms past len",
            s1(&[
                rec_len(
                    L,
                    5,
                    16,
                    &node(L, 0, 0, 0, &[(b'b', 0, 0)], b"/\0", b"")[..16],
                ),
                end(L),
            ]),
            "length-overrun",
            20,
        ),
        (
            "quota values past len",
            s1(&[
                rec_len(L, 7, 8, &domain(L, 1, 0, &[(5, b"a\0")])[..8]),
                end(L),
            ]),
            "length-overrun",
            20,
        ),
        ("conn-id 0", s1(&[c(0), end(L)]), "zero-conn-id", 24),
        (
            "conn-type 2",
            s1(&[
                rec(L, 2, &{
                    let mut b = conn_socket(L, 1, 3);
                    b[4] = 2;
                    b
                }),
                end(L),
            ]),
            "unknown-conn-type",
            28,
        ),
        (
            "out-resp-len > out-data-len",
            s1(&[
                rec(L, 2, &conn_ring(L, 1, 1, 2, 3, b"", 5, b"abcd")),
                end(L),
            ]),
            "resp-exceeds-out",
            42,
        ),
        (
            "wpath without NUL",
            s1(&[c(1), rec(L, 3, &watch(L, 1, b"ab", b"\0", None)), end(L)]),
            "not-terminated",
            65,
        ),
        (
            "empty token",
            s1(&[c(1), rec(L, 3, &watch(L, 1, b"a\0", b"", None)), end(L)]),
            "not-terminated",
            66,
        ),
        (
            "NUL inside wpath",
            s1(&[
                c(1),
                rec(L, 3, &watch(L, 1, b"a\0b\0", b"t\0", None)),
                end(L),
            ]),
            "embedded-nul",
            65,
        ),
        (
            "NUL inside node path",
            s1(&[
                rec(L, 5, &node(L, 0, 0, 0, &[(b'b', 0, 0)], b"/a\0b\0", b"")),
                end(L),
            ]),
            "embedded-nul",
            46,
        ),
        (
            "relative node path",
            s1(&[
                rec(L, 5, &node(L, 0, 0, 0, &[(b'b', 0, 0)], b"local\0", b"")),
                end(L),
            ]),
            "bad-node-path",
            44,
        ),
        (
            "node path //",
            s1(&[
                rec(L, 5, &node(L, 0, 0, 0, &[(b'b', 0, 0)], b"/a//b\0", b"")),
                end(L),
            ]),
            "bad-node-path",
            44,
        ),
        (
            "node path trailing /",
            s1(&[
                rec(L, 5, &node(L, 0, 0, 0, &[(b'b', 0, 0)], b"/a/\0", b"")),
                end(L),
            ]),
            "bad-node-path",
            44,
        ),
        (
            "perm 'x'",
            s1(&[
                rec(L, 5, &node(L, 0, 0, 0, &[(b'x', 0, 0)], b"/\0", b"")),
                end(L),
            ]),
            "bad-perm",
            40,
        ),
        (
            "second perm 'R'",
            s1(&[
                rec(
                    L,
                    5,
                    &node(L, 0, 0, 0, &[(b'r', 0, 0), (b'R', 0, 1)], b"/\0", b""),
                ),
                end(L),
            ]),
            "bad-perm",
            44,
        ),
        (
            "committed node without perms",
            s1(&[rec(L, 5, &node(L, 0, 0, 0, &[], b"/\0", b"")), end(L)]),
            "no-owner",
            38,
        ),
        (
            "access bit 2",
            s1(&[
                c(1),
                rec(L, 4, &tx(L, 1, 1)),
                rec(L, 5, &node(L, 1, 1, 4, &[(b'b', 0, 0)], b"/a\0", b"")),
                end(L),
            ]),
            "reserved-access-bits",
            84,
        ),
        (
            "deleted node with a value",
            s1(&[
                c(1),
                rec(L, 4, &tx(L, 1, 1)),
                rec(L, 5, &node(L, 1, 1, 0, &[], b"/a\0", b"v")),
                end(L),
            ]),
            "deleted-node-not-empty",
            86,
        ),
        (
            "deleted node read",
            s1(&[
                c(1),
                rec(L, 4, &tx(L, 1, 1)),
                rec(L, 5, &node(L, 1, 1, 1, &[], b"/a\0", b"")),
                end(L),
            ]),
            "deleted-node-not-empty",
            86,
        ),
        (
            "one quota name for two values",
            s1(&[
                // len 19: the last name's NUL would be padding, outside len.
                rec_len(L, 7, 19, &domain(L, 1, 0, &[(1, b"a\0"), (2, b"b")])),
                end(L),
            ]),
            "quota-names",
            42,
        ),
        (
            "global quota names missing",
            s1(&[rec(L, 6, &glob_quota(L, &[(1, b"")], &[])), end(L)]),
            "quota-names",
            32,
        ),
        (
            "GLOBAL_DATA second",
            s1(&[c(1), rec(L, 1, &global(L, -1, 3)), end(L)]),
            "global-not-first",
            48,
        ),
        (
            "GLOBAL_DATA twice",
            s1(&[
                rec(L, 1, &global(L, -1, 3)),
                rec(L, 1, &global(L, -1, 3)),
                end(L),
            ]),
            "duplicate-global",
            32,
        ),
        (
            "GLOBAL_QUOTA_DATA twice",
            s1(&[
                rec(L, 6, &glob_quota(L, &[], &[])),
                rec(L, 6, &glob_quota(L, &[], &[])),
                end(L),
            ]),
            "duplicate-global-quota",
            32,
        ),
        (
            "conn-id 1 twice",
            s1(&[c(1), c(1), end(L)]),
            "duplicate-conn-id",
            56,
        ),
        (
            "watch of conn 2 undeclared",
            s1(&[rec(L, 3, &watch(L, 2, b"a\0", b"t\0", None)), end(L)]),
            "unknown-conn",
            24,
        ),
        (
            "transaction of conn 2 undeclared",
            s1(&[c(1), rec(L, 4, &tx(L, 2, 1)), end(L)]),
            "unknown-conn",
            56,
        ),
        (
            "node of conn 3 undeclared",
            s1(&[
                rec(L, 5, &node(L, 3, 1, 1, &[(b'b', 0, 0)], b"/a\0", b"")),
                end(L),
            ]),
            "unknown-conn",
            24,
        ),
        (
            "transaction 1 twice",
            s1(&[
                c(1),
                rec(L, 4, &tx(L, 1, 1)),
                rec(L, 4, &tx(L, 1, 1)),
                end(L),
            ]),
            "duplicate-transaction",
            76,
        ),
        (
            "node of undeclared transaction",
            s1(&[
                c(1),
                rec(L, 5, &node(L, 1, 9, 1, &[(b'b', 0, 0)], b"/a\0", b"")),
                end(L),
            ]),
            "unknown-transaction",
            60,
        ),
        (
            "watch twice",
            s1(&[
                c(1),
                rec(L, 3, &watch(L, 1, b"a\0", b"t\0", None)),
                rec(L, 3, &watch(L, 1, b"a\0", b"t\0", None)),
                end(L),
            ]),
            "duplicate-watch",
            72,
        ),
        (
            "committed node twice",
            s1(&[
                rec(L, 5, &node(L, 0, 0, 0, &[(b'b', 0, 0)], b"/\0", b"")),
                rec(L, 5, &node(L, 0, 0, 0, &[(b'b', 0, 0)], b"/\0", b"")),
                end(L),
            ]),
            "duplicate-node",
            76,
        ),
        (
            "transaction node twice",
            s1(&[
                c(1),
                rec(L, 4, &tx(L, 1, 1)),
                rec(L, 5, &node(L, 1, 1, 0, &[], b"/a\0", b"")),
                rec(L, 5, &node(L, 1, 1, 0, &[], b"/a\0", b"")),
                end(L),
            ]),
            "duplicate-node",
            120,
        ),
        (
            "live update without parent",
            s1(&[
                rec(L, 1, &global(L, -1, 3)),
                rec(L, 5, &node(L, 0, 0, 0, &[(b'b', 0, 0)], b"/a/b\0", b"")),
                end(L),
            ]),
            "missing-parent",
            60,
        ),
        (
            "DOMAIN_DATA twice",
            s1(&[
                rec(L, 7, &domain(L, 3, 0, &[])),
                rec(L, 7, &domain(L, 3, 0, &[])),
                end(L),
            ]),
            "duplicate-domain",
            40,
        ),
        (
            "v2 extended watch unknown conn",
            s2(&[rec(L, 8, &watch(L, 4, b"a\0", b"t\0", Some(0))), end(L)]),
            "unknown-conn",
            24,
        ),
    ]
}
