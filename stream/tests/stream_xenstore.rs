//! The xenstore migration stream: hand-built, field-labelled vectors in
//! both byte orders, a table of malformed streams with the rule and offset
//! each must produce, truncation at every octet, and round trips and
//! never-panic properties (proptest).

mod xenstore_support;

use proptest::prelude::*;
use xcmig_stream::xenstore::*;
use xcmig_stream::Endian;
use xenstore_support::*;

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

// ---- the fuzz seeds --------------------------------------------------------

/// The seeds of the `xenstore_reader` fuzz target
/// (`fuzz/corpus/xenstore_reader/seed-*`): each committed file must equal
/// its generated bytes and be accepted. `XCMIG_REGEN_CORPUS=1 cargo test -p
/// xcmig-stream --test stream_xenstore` rewrites them.
#[test]
fn fuzz_seeds_are_the_reference_vectors() {
    let design_len = {
        let h = XsHeader {
            version: 1,
            endian: Endian::Little,
        };
        write(h, LenMode::BodyOnly, &migration_records())
    };
    let seeds = [
        ("migration-le", migration(E::Le)),
        ("migration-be", migration(E::Be)),
        ("live-update-le", live_update(E::Le)),
        ("live-update-be", live_update(E::Be)),
        ("migration-design-len", design_len),
    ];
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/xenstore_reader");
    let regen = std::env::var_os("XCMIG_REGEN_CORPUS").is_some();
    for (name, bytes) in seeds {
        read_stream(&bytes[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = dir.join(format!("seed-{name}"));
        if regen {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with XCMIG_REGEN_CORPUS=1)",
                path.display()
            )
        });
        assert_eq!(
            committed, bytes,
            "{name}: stale seed (regenerate with XCMIG_REGEN_CORPUS=1)"
        );
    }
}
