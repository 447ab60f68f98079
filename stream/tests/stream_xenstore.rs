//! The xenstore migration stream: hand-built, field-labelled vectors in
//! both byte orders, a table of malformed streams with the rule and offset
//! each must produce, truncation at every octet, and round trips and
//! never-panic properties (proptest).

use proptest::prelude::*;
use xcmig_stream::xenstore::*;
use xcmig_stream::Endian;

// ---- labelled builders ---------------------------------------------------

#[derive(Clone, Copy)]
enum E {
    Le,
    Be,
}

fn u16e(e: E, v: u16) -> [u8; 2] {
    match e {
        E::Le => v.to_le_bytes(),
        E::Be => v.to_be_bytes(),
    }
}

fn u32e(e: E, v: u32) -> [u8; 4] {
    match e {
        E::Le => v.to_le_bytes(),
        E::Be => v.to_be_bytes(),
    }
}

/// The 16-octet header: ident, version (BE), flags (BE).
fn header(version: u32, flags: u32) -> Vec<u8> {
    let mut v = b"xenstore".to_vec(); // ident
    v.extend_from_slice(&version.to_be_bytes()); // version
    v.extend_from_slice(&flags.to_be_bytes()); // flags
    v
}

fn flags(e: E) -> u32 {
    match e {
        E::Le => 0,
        E::Be => 1,
    }
}

/// A record as xenstored writes it: `len` rounded up to 8, padding inside.
fn rec(e: E, t: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(8) * 8;
    rec_len(e, t, padded as u32, body)
}

/// A record with an explicit `len`; the body is zero-padded to
/// `max(len, body)` rounded up to 8.
fn rec_len(e: E, t: u32, len: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&u32e(e, t)); // type
    v.extend_from_slice(&u32e(e, len)); // len
    v.extend_from_slice(body); // body
    let total = (len as usize).max(body.len()).div_ceil(8) * 8;
    v.resize(8 + total, 0); // padding
    v
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// CONNECTION_DATA body for a ring connection.
#[allow(clippy::too_many_arguments)]
fn conn_ring(
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

fn conn_socket(e: E, id: u32, fd: i32) -> Vec<u8> {
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
fn watch(e: E, conn: u32, path: &[u8], token: &[u8], depth: Option<u16>) -> Vec<u8> {
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

fn tx(e: E, conn: u32, id: u32) -> Vec<u8> {
    cat(&[u32e(e, conn).to_vec(), u32e(e, id).to_vec()]) // conn-id, tx-id
}

/// NODE_DATA body; `path` includes its NUL.
fn node(
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

fn global(e: E, sock: i32, evtchn: i32) -> Vec<u8> {
    cat(&[
        u32e(e, sock as u32).to_vec(),
        u32e(e, evtchn as u32).to_vec(),
    ])
}

fn domain(e: E, domid: u16, features: u32, quotas: &[(u32, &[u8])]) -> Vec<u8> {
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

fn glob_quota(e: E, dom: &[(u32, &[u8])], glob: &[(u32, &[u8])]) -> Vec<u8> {
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

fn end(e: E) -> Vec<u8> {
    rec(e, 0, &[])
}

// ---- the migration vector ------------------------------------------------

/// One domain's state as a migration carries it, version 1. Offsets:
/// header 0, CONNECTION_DATA 16, WATCH_DATA 56, TRANSACTION_DATA 88, NODE
/// 104, NODE 152, NODE (transaction) 208, NODE (deleted) 264, END 312;
/// 320 octets.
fn migration(e: E) -> Vec<u8> {
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

fn migration_records() -> Vec<XsRecord> {
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

fn write(h: XsHeader, mode: LenMode, recs: &[XsRecord]) -> Vec<u8> {
    let mut w = XsWriter::with_mode(Vec::new(), h, mode).unwrap();
    for r in recs {
        w.write_record(r).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn migration_vector_decodes_in_both_byte_orders_with_offsets() {
    for (e, endian) in [(E::Le, Endian::Little), (E::Be, Endian::Big)] {
        let bytes = migration(e);
        assert_eq!(bytes.len(), 320);
        let mut r = XsReader::new(&bytes[..]).unwrap();
        assert_eq!(*r.header(), XsHeader { version: 1, endian });
        let want = migration_records();
        let offsets = [16, 56, 88, 104, 152, 208, 264];
        for (i, w) in want.iter().enumerate() {
            let (pos, got) = r.next_record().unwrap().unwrap();
            assert_eq!(pos.offset, offsets[i], "record {i}");
            assert_eq!(pos.index, i as u64);
            assert_eq!(&got, w, "record {i}");
        }
        let (pos, endrec) = r.next_record().unwrap().unwrap();
        assert_eq!((pos.offset, endrec), (312, XsRecord::End));
        assert_eq!(r.next_record().unwrap(), None);
        r.expect_eof().unwrap();
        assert_eq!(r.offset(), 320);
        let warnings = r.take_warnings();
        // Only the parent of the first committed node is missing (a
        // migration stream lacks /local/domain); big-endian is also noted.
        assert!(
            warnings
                .iter()
                .any(|w| w.offset == 104 + 8 + 24 && w.message.contains("receiver")),
            "{warnings:?}"
        );
        let expected = if matches!(e, E::Be) { 2 } else { 1 };
        assert_eq!(warnings.len(), expected, "{warnings:?}");
    }
}

#[test]
fn writer_produces_the_vector_exactly() {
    for (e, endian) in [(E::Le, Endian::Little), (E::Be, Endian::Big)] {
        let h = XsHeader { version: 1, endian };
        assert_eq!(
            write(h, LenMode::IncludesPadding, &migration_records()),
            migration(e)
        );
    }
}

#[test]
fn design_style_len_without_padding_is_read_and_warned_about() {
    let e = E::Le;
    let w = watch(e, 1, b"a\0", b"tok\0", None); // 14 octets
    let bytes = cat(&[
        header(1, 0),
        rec(e, 2, &conn_ring(e, 1, 1, 0x7ff4, 3, b"", 0, b"")),
        rec_len(e, 3, w.len() as u32, &w), // len 14, 2 octets of padding after it
        end(e),
    ]);
    let s = read_stream(&bytes[..]).unwrap();
    assert_eq!(s.records.len(), 2);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.message.contains("multiple of 8")),
        "{:?}",
        s.warnings
    );
    // The writer's BodyOnly mode writes exactly that.
    let h = XsHeader {
        version: 1,
        endian: Endian::Little,
    };
    assert_eq!(write(h, LenMode::BodyOnly, &s.records), bytes);
}

/// A live-update stream, version 2: GLOBAL_DATA first, the root node, a
/// special node, quotas, a socket connection and an extended watch.
fn live_update(e: E) -> Vec<u8> {
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

#[test]
fn live_update_vector_decodes_and_round_trips() {
    for (e, endian) in [(E::Le, Endian::Little), (E::Be, Endian::Big)] {
        let bytes = live_update(e);
        let s = read_stream(&bytes[..]).unwrap();
        assert_eq!(s.header, XsHeader { version: 2, endian });
        assert_eq!(s.records.len(), 12);
        assert_eq!(
            s.records[0],
            XsRecord::Global(GlobalData {
                rw_socket_fd: 4,
                evtchn_fd: 5
            })
        );
        assert_eq!(
            s.records[1],
            XsRecord::GlobalQuota(GlobalQuota {
                per_domain: vec![Quota {
                    name: b"nodes".to_vec(),
                    value: 1000
                }],
                global: vec![Quota {
                    name: b"transaction-nodes".to_vec(),
                    value: 0
                }],
            })
        );
        assert_eq!(
            s.records[2],
            XsRecord::Connection(Connection {
                conn_id: 1,
                spec: ConnSpec::Socket { fd: 12 },
                in_data: vec![],
                out_resp_len: 0,
                out_data: vec![],
            })
        );
        match &s.records[4] {
            XsRecord::Watch(w) => assert_eq!(w.depth, Some(WATCH_DEPTH_UNLIMITED)),
            r => panic!("{r:?}"),
        }
        match &s.records[6] {
            XsRecord::Domain(d) => {
                assert_eq!((d.domid, d.features, d.quotas.len()), (3, 1, 2));
                assert_eq!(d.quotas[1].name, b"watches");
            }
            r => panic!("{r:?}"),
        }
        match &s.records[11] {
            XsRecord::Node(n) => assert_eq!(n.value, b"a\0b"),
            r => panic!("{r:?}"),
        }
        let big = usize::from(matches!(e, E::Be));
        assert_eq!(s.warnings.len(), big, "{:?}", s.warnings);
        assert_eq!(write(s.header, LenMode::IncludesPadding, &s.records), bytes);
    }
}

#[test]
fn nonzero_padding_and_ignored_fields_are_warnings_not_errors() {
    let e = E::Le;
    let mut n = node(e, 0, 9, 1, &[(b'b', 0x80, 0)], b"/\0", b"");
    n.push(0xaa); // spare octet inside len
    let mut bytes = cat(&[header(1, 0), rec(e, 5, &n), end(e)]);
    let s = read_stream(&bytes[..]).unwrap();
    let msgs: Vec<&str> = s.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(msgs.iter().any(|m| m.contains("padding")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("tx-id or access")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("undefined bits")),
        "{msgs:?}"
    );
    // Padding after a short len, outside it.
    bytes = cat(&[header(1, 0), rec_len(e, 4, 4, &[0; 4]), end(e)]);
    assert_eq!(
        read_stream(&bytes[..]).unwrap_err().rule.name(),
        "length-overrun"
    );
}

// ---- malformed streams ---------------------------------------------------

const L: E = E::Le;

fn s1(recs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = header(1, 0);
    for r in recs {
        v.extend_from_slice(r);
    }
    v
}

fn s2(recs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = header(2, 0);
    for r in recs {
        v.extend_from_slice(r);
    }
    v
}

/// A ring connection without pending data: 32 octets on the wire.
fn c(id: u32) -> Vec<u8> {
    rec(L, 2, &conn_ring(L, id, 1, 0x7ff4, 3, b"", 0, b""))
}

/// Each case: name, bytes, the rule broken, the offset reported.
fn malformed() -> Vec<(&'static str, Vec<u8>, &'static str, u64)> {
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

#[test]
fn each_malformed_stream_breaks_its_rule_at_its_offset() {
    for (name, bytes, rule, offset) in malformed() {
        let err = read_stream(&bytes[..]).expect_err(name);
        assert_eq!(err.rule.name(), rule, "{name}: {err}");
        assert_eq!(err.offset, offset, "{name}: {err}");
        let line = err.to_string();
        assert!(
            line.starts_with(&format!("offset {offset}, xenstore ")),
            "{name}: {line}"
        );
        assert!(line.contains(rule), "{name}: {line}");
    }
}

#[test]
fn the_malformed_table_covers_every_rule_but_io() {
    let covered: std::collections::BTreeSet<&str> = malformed().iter().map(|c| c.2).collect();
    for name in XsRule::NAMES {
        assert!(
            *name == "io" || covered.contains(name),
            "rule {name} has no malformed case"
        );
    }
}

#[test]
fn error_lines_name_the_record() {
    let bytes = s1(&[c(1), c(1), end(L)]);
    let err = read_stream(&bytes[..]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "offset 56, xenstore record #1 CONNECTION_DATA: duplicate-conn-id: conn-id 1 declared twice"
    );
    assert_eq!(err.record.map(|r| r.index), Some(1));
    let err = read_stream(&header(7, 0)[..]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("offset 8, xenstore header: unsupported-version"),
        "{err}"
    );
}

#[test]
fn a_migration_stream_may_lack_parents_but_not_a_live_update_one() {
    let n = rec(L, 5, &node(L, 0, 0, 0, &[(b'b', 0, 0)], b"/a/b\0", b""));
    let s = read_stream(&s1(&[n.clone(), end(L)])[..]).unwrap();
    assert_eq!(s.warnings.len(), 1);
    let live = s1(&[rec(L, 1, &global(L, -1, 3)), n, end(L)]);
    assert_eq!(
        read_stream(&live[..]).unwrap_err().rule.name(),
        "missing-parent"
    );
}

#[test]
fn truncation_at_every_octet_is_an_error_never_a_panic() {
    for bytes in [migration(E::Le), live_update(E::Be)] {
        for cut in 0..bytes.len() {
            let err = read_stream(&bytes[..cut]).expect_err("truncated stream accepted");
            assert!(
                matches!(err.rule.name(), "truncated" | "missing-end"),
                "cut {cut}: {err}"
            );
            assert!(err.offset <= cut as u64, "cut {cut}: {err}");
        }
    }
}

#[test]
fn an_absurd_length_is_refused_before_allocating() {
    let mut bytes = s1(&[]);
    bytes.extend_from_slice(&u32e(L, 2));
    bytes.extend_from_slice(&u32e(L, XS_DEFAULT_MAX_BODY_LEN + 8));
    let err = read_stream(&bytes[..]).unwrap_err();
    assert_eq!(err.rule.name(), "record-too-long");
    // A lower limit is honoured.
    let opts = XsReaderOptions {
        start_offset: 100,
        max_body_len: 16,
    };
    let bytes = s1(&[c(1), end(L)]);
    let mut r = XsReader::with_options(&bytes[..], opts).unwrap();
    let err = r.next_record().unwrap_err();
    assert_eq!((err.rule.name(), err.offset), ("record-too-long", 120));
}

#[test]
fn writer_refuses_what_cannot_be_encoded() {
    let h = XsHeader::new();
    let mut w = XsWriter::new(Vec::new(), h).unwrap();
    let long = Node::committed(&"/a".repeat(40_000), b"", vec![]);
    assert!(w.write_record(&XsRecord::Node(long)).is_err());
    let nul = Watch {
        conn_id: 1,
        path: b"a\0b".to_vec(),
        token: b"t".to_vec(),
        depth: None,
    };
    assert!(w.write_record(&XsRecord::Watch(nul)).is_err());
}

// ---- properties ------------------------------------------------------------

fn quota() -> impl Strategy<Value = Quota> {
    ("[a-z-]{0,12}", any::<u32>()).prop_map(|(n, value)| Quota {
        name: n.into_bytes(),
        value,
    })
}

fn perm() -> impl Strategy<Value = Perm> {
    (
        prop_oneof![
            Just(PermKind::None),
            Just(PermKind::Read),
            Just(PermKind::Write),
            Just(PermKind::Both)
        ],
        0u8..2,
        any::<u16>(),
    )
        .prop_map(|(kind, flags, domid)| Perm { kind, flags, domid })
}

fn conn_spec() -> impl Strategy<Value = ConnSpec> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u32>()).prop_map(|(domid, tdomid, evtchn)| {
            ConnSpec::Ring {
                domid,
                tdomid,
                evtchn,
            }
        }),
        any::<i32>().prop_map(|fd| ConnSpec::Socket { fd }),
    ]
}

#[derive(Debug, Clone)]
struct Plan {
    version: u32,
    big: bool,
    mode: LenMode,
    records: Vec<XsRecord>,
}

/// Valid streams: every reference declared before use, ids unique,
/// committed nodes as a tree under "/".
fn plan() -> impl Strategy<Value = Plan> {
    (
        1u32..=2,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of((
            prop::collection::vec(quota(), 0..4),
            prop::collection::vec(quota(), 0..4),
        )),
        prop::collection::vec(
            (
                conn_spec(),
                prop::collection::vec(any::<u8>(), 0..24),
                prop::collection::vec(any::<u8>(), 0..24),
                any::<u16>(),
                prop::collection::btree_set(("[a-z/@]{1,10}", "[a-z0-9]{1,6}"), 0..3),
                prop::option::of(any::<u16>()),
                prop::collection::btree_set(any::<u32>(), 0..3),
            ),
            0..4,
        ),
        prop::collection::btree_map(
            any::<u16>(),
            (any::<u32>(), prop::collection::vec(quota(), 0..3)),
            0..3,
        ),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                "[a-z0-9_-]{1,8}",
                prop::collection::vec(perm(), 1..3),
                prop::collection::vec(any::<u8>(), 0..20),
            ),
            0..8,
        ),
        prop::collection::vec(
            (
                any::<bool>(),
                prop::collection::vec(perm(), 1..3),
                prop::collection::vec(any::<u8>(), 0..8),
                1u16..4,
            ),
            0..4,
        ),
    )
        .prop_map(
            |(version, big, body_only, live, gq, conns, doms, tree, txnodes)| {
                let mut records = Vec::new();
                if live {
                    records.push(XsRecord::Global(GlobalData {
                        rw_socket_fd: -1,
                        evtchn_fd: 7,
                    }));
                }
                if let Some((per_domain, global)) = gq {
                    records.push(XsRecord::GlobalQuota(GlobalQuota { per_domain, global }));
                }
                let mut txs = Vec::new();
                for (i, (spec, in_data, out_data, resp, watches, depth, tx_ids)) in
                    conns.into_iter().enumerate()
                {
                    let conn_id = i as u32 * 3 + 1;
                    let out_resp_len = if out_data.is_empty() {
                        0
                    } else {
                        resp % (out_data.len() as u16 + 1)
                    };
                    records.push(XsRecord::Connection(Connection {
                        conn_id,
                        spec,
                        in_data,
                        out_resp_len,
                        out_data,
                    }));
                    for (p, t) in watches {
                        let depth = if version >= 2 { depth } else { None };
                        records.push(XsRecord::Watch(Watch {
                            conn_id,
                            path: p.into_bytes(),
                            token: t.into_bytes(),
                            depth,
                        }));
                    }
                    for tx_id in tx_ids {
                        records.push(XsRecord::Transaction(Transaction { conn_id, tx_id }));
                        txs.push((conn_id, tx_id));
                    }
                }
                for (domid, (features, quotas)) in doms {
                    let features = if version >= 2 { features } else { 0 };
                    records.push(XsRecord::Domain(DomainData {
                        domid,
                        features,
                        quotas,
                    }));
                }
                let mut paths = vec!["/".to_string()];
                records.push(XsRecord::Node(Node::committed(
                    "/",
                    b"",
                    vec![Perm {
                        kind: PermKind::Read,
                        flags: 0,
                        domid: 0,
                    }],
                )));
                for (parent, name, perms, value) in tree {
                    let p = &paths[parent.index(paths.len())];
                    let path = if p == "/" {
                        format!("/{name}")
                    } else {
                        format!("{p}/{name}")
                    };
                    if paths.contains(&path) {
                        continue;
                    }
                    records.push(XsRecord::Node(Node::committed(&path, &value, perms)));
                    paths.push(path);
                }
                for (i, (deleted, perms, value, access)) in txnodes.into_iter().enumerate() {
                    let Some(&(conn_id, tx_id)) = txs.get(i % txs.len().max(1)) else {
                        break;
                    };
                    let (perms, value, access) = if deleted {
                        (vec![], vec![], 0)
                    } else {
                        (perms, value, access)
                    };
                    records.push(XsRecord::Node(Node {
                        conn_id,
                        tx_id,
                        access,
                        perms,
                        path: format!("/tx/{i}").into_bytes(),
                        value,
                    }));
                }
                Plan {
                    version,
                    big,
                    mode: if body_only {
                        LenMode::BodyOnly
                    } else {
                        LenMode::IncludesPadding
                    },
                    records,
                }
            },
        )
}

fn write_plan(p: &Plan) -> Vec<u8> {
    let endian = if p.big { Endian::Big } else { Endian::Little };
    write(
        XsHeader {
            version: p.version,
            endian,
        },
        p.mode,
        &p.records,
    )
}

proptest! {
    #[test]
    fn writer_then_reader_gives_the_records_back(p in plan()) {
        let bytes = write_plan(&p);
        let s = read_stream(&bytes[..]).unwrap();
        prop_assert_eq!(s.header.version, p.version);
        prop_assert_eq!(&s.records, &p.records);
        // Re-encoding what was read gives the same octets.
        prop_assert_eq!(write(s.header, p.mode, &s.records), bytes);
    }

    #[test]
    fn any_octets_never_panic_the_reader(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = read_stream(&bytes[..]);
        let mut v = header(2, 0);
        v.extend_from_slice(&bytes);
        let _ = read_stream(&v[..]);
    }

    #[test]
    fn a_valid_stream_with_one_octet_changed_never_panics(p in plan(), at in any::<prop::sample::Index>(), x in 1u8..) {
        let mut bytes = write_plan(&p);
        let i = at.index(bytes.len());
        bytes[i] ^= x;
        let _ = read_stream(&bytes[..]);
    }
}
