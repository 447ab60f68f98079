//! `xcmig verify` and `inspect` on xenstore streams: what the codec's
//! writer writes verifies (guessed or named format), each malformed case
//! of the codec's table is refused with its rule and offset on one line,
//! and the inspect text and JSON describe the tree, watches, transactions
//! and connections.

#[path = "../../stream/tests/xenstore_support/mod.rs"]
mod xenstore_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use xcmig_stream::xenstore::*;
use xcmig_stream::Endian;
use xcmig_testkit::process::run_with_input;
use xenstore_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_xcmig");
const TIMEOUT: Duration = Duration::from_secs(120);

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli-xenstore-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `xcmig ARGS FILE` with `bytes` in a scratch file named after `tag`.
fn run_on(tag: &str, args: &[&str], bytes: &[u8]) -> Output {
    let dir = scratch(tag);
    let p = dir.join("s");
    std::fs::write(&p, bytes).unwrap();
    let mut all: Vec<&str> = args.to_vec();
    let ps = p.to_str().unwrap().to_string();
    all.push(&ps);
    run_with_input(Command::new(BIN).args(&all), None, TIMEOUT)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A stream from the writer: a live update with every record type.
fn written() -> Vec<u8> {
    let perm = |kind, domid| Perm {
        kind,
        flags: 0,
        domid,
    };
    let h = XsHeader {
        version: 2,
        endian: Endian::Little,
    };
    let mut w = XsWriter::new(Vec::new(), h).unwrap();
    let recs = vec![
        XsRecord::Global(GlobalData {
            rw_socket_fd: 3,
            evtchn_fd: 4,
        }),
        XsRecord::GlobalQuota(GlobalQuota {
            per_domain: vec![Quota {
                name: b"nodes".to_vec(),
                value: 1000,
            }],
            global: vec![],
        }),
        XsRecord::Connection(Connection {
            conn_id: 1,
            spec: ConnSpec::Ring {
                domid: 7,
                tdomid: DOMID_INVALID,
                evtchn: 21,
            },
            in_data: vec![1, 2, 3],
            out_resp_len: 0,
            out_data: vec![],
        }),
        XsRecord::Connection(Connection {
            conn_id: 2,
            spec: ConnSpec::Socket { fd: 9 },
            in_data: vec![],
            out_resp_len: 0,
            out_data: vec![],
        }),
        XsRecord::Watch(Watch {
            conn_id: 1,
            path: b"/local/domain/7/device".to_vec(),
            token: b"backend".to_vec(),
            depth: Some(WATCH_DEPTH_UNLIMITED),
        }),
        XsRecord::Transaction(Transaction {
            conn_id: 1,
            tx_id: 42,
        }),
        XsRecord::Domain(DomainData {
            domid: 7,
            features: 1,
            quotas: vec![],
        }),
        XsRecord::Node(Node::committed("/", b"", vec![perm(PermKind::Read, 0)])),
        XsRecord::Node(Node::committed(
            "/local",
            b"",
            vec![perm(PermKind::None, 0)],
        )),
        XsRecord::Node(Node::committed(
            "/local/domain",
            b"",
            vec![perm(PermKind::None, 0)],
        )),
        XsRecord::Node(Node::committed(
            "/local/domain/7",
            b"",
            vec![perm(PermKind::Both, 7)],
        )),
        XsRecord::Node(Node::committed(
            "/local/domain/7/name",
            b"guest-7",
            vec![perm(PermKind::Both, 7), perm(PermKind::Read, 0)],
        )),
        XsRecord::Node(Node {
            conn_id: 1,
            tx_id: 42,
            access: NODE_ACCESS_WRITTEN,
            perms: vec![perm(PermKind::Both, 7)],
            path: b"/local/domain/7/data/x".to_vec(),
            value: b"1".to_vec(),
        }),
    ];
    for r in &recs {
        w.write_record(r).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn verify_accepts_what_the_writer_writes_with_the_format_guessed_or_named() {
    let bytes = written();
    for (tag, args) in [
        ("guess", &["verify"][..]),
        ("named", &["verify", "--format", "xenstore"][..]),
    ] {
        let o = run_on(tag, args, &bytes);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        assert_eq!(
            stdout(&o),
            format!(
                "valid xenstore stream: 14 records, {} octets, ends with END, 0 warnings\n",
                bytes.len()
            )
        );
    }
    // The reference vectors too, in both byte orders.
    for (i, v) in [migration(E::Le), migration(E::Be), live_update(E::Be)]
        .iter()
        .enumerate()
    {
        let o = run_on(&format!("vec{i}"), &["verify"], v);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).starts_with("valid xenstore stream"));
        // Warnings go to stderr, not into the verdict line.
        assert_eq!(stdout(&o).lines().count(), 1);
    }
    let q = run_on("quiet", &["verify", "-q"], &migration(E::Le));
    assert!(q.status.success());
    assert_eq!(stdout(&q), "");
    assert_eq!(stderr(&q), "");
}

#[test]
fn verify_rejects_each_malformed_case_naming_offset_record_and_rule() {
    for (i, (name, bytes, rule, offset)) in malformed().into_iter().enumerate() {
        let o = run_on(
            &format!("bad{i}"),
            &["verify", "--format", "xenstore"],
            &bytes,
        );
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {out}{}", stderr(&o));
        assert_eq!(out.lines().count(), 1, "{name}: {out:?}");
        assert!(
            out.starts_with(&format!(
                "invalid xenstore stream: offset {offset}, xenstore "
            )),
            "{name}: {out}"
        );
        assert!(out.contains(&format!(": {rule}: ")), "{name}: {out}");
    }
}

#[test]
fn verify_names_the_record_index_and_type() {
    let o = run_on("dup", &["verify"], &s1(&[c(1), c(1), end(L)]));
    assert_eq!(
        stdout(&o),
        "invalid xenstore stream: offset 56, xenstore record #1 CONNECTION_DATA: \
         duplicate-conn-id: conn-id 1 declared twice\n"
    );
    let o = run_on("noend", &["verify"], &s1(&[c(1)]));
    assert_eq!(
        stdout(&o),
        "invalid xenstore stream: offset 48, xenstore record #1: missing-end: input ends \
         before the END record\n"
    );
}

#[test]
fn inspect_text_shows_the_tree_watches_transactions_and_connections() {
    let o = run_on("text", &["inspect"], &written());
    assert!(o.status.success(), "{}", stderr(&o));
    let t = stdout(&o);
    for want in [
        "xenstore stream, version 2, little-endian, live update (GLOBAL_DATA present)",
        "global: rw-socket-fd 3, evtchn-fd 4",
        "global quota: per domain nodes=1000; global none",
        "  domain 7: features 0x1, quota none",
        "  #1 ring, domid 7, evtchn 21: pending 3 octets in, 0 octets out; 1 watch, 1 transaction, 1 transaction node",
        "  #2 socket, fd 9:",
        "  conn 1: \"/local/domain/7/device\" token \"backend\" depth unlimited",
        "  conn 1 tx 42: 1 node",
        "nodes: 5 committed, 1 pending in transactions",
        "  / [r0] (empty)\n    local [n0] (empty)\n      domain [n0] (empty)\n        7 [b7] (empty)\n          name [b7 r0] \"guest-7\"\n",
        "  [conn 1 tx 42, written] /local/domain/7/data/x [b7] \"1\"",
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }
    // -v lists every record with its offset.
    let v = stdout(&run_on("verbose", &["inspect", "-v"], &written()));
    assert!(v.contains("@16         #0      GLOBAL_DATA"), "{v}");
}

#[test]
fn inspect_json_describes_the_stream() {
    let bytes = written();
    let o = run_on(
        "json",
        &["inspect", "--json", "--format", "xenstore"],
        &bytes,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["format"], "xenstore");
    assert_eq!(j["valid"], true);
    assert_eq!(j["bytes"], bytes.len() as u64);
    assert_eq!(j["header"]["version"], 2);
    assert_eq!(j["live_update"], true);
    assert_eq!(j["connections"][0]["kind"], "ring");
    assert_eq!(j["connections"][0]["domid"], 7);
    assert_eq!(j["connections"][0]["target_domid"], serde_json::Value::Null);
    assert_eq!(j["connections"][1]["socket_fd"], 9);
    assert_eq!(j["watches"][0]["depth"], 65535);
    assert_eq!(j["transactions"][0]["nodes"], 1);
    assert_eq!(j["committed_nodes"], 5);
    assert_eq!(j["nodes"][4]["path"], "/local/domain/7/name");
    assert_eq!(j["nodes"][4]["perms"], serde_json::json!(["b7", "r0"]));
    assert_eq!(j["nodes"][4]["value"], "guest-7");
    assert_eq!(j["transaction_nodes"][0]["access"], "written");
    assert_eq!(j["domains"][0]["features"], 1);
    assert_eq!(j["global_quota"]["per_domain"]["nodes"], 1000);
    let names: Vec<&str> = j["record_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"WATCH_DATA_EXTENDED"), "{names:?}");

    // An invalid stream: exit 1, valid false, the error line kept.
    let bad = s1(&[c(0), end(L)]);
    let o = run_on("json-bad", &["inspect", "--json"], &bad);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["valid"], false);
    assert!(j["error"].as_str().unwrap().contains("zero-conn-id"), "{j}");
    assert!(stderr(&o).contains("invalid xenstore stream"));
}
