//! `xcmig` exit codes, the stdin hint, notes versus warnings, and what
//! `inspect` reports beyond the record counts (sizes, distinct and re-sent
//! pfns, zero pages, vCPUs, HVM param names, the JSON's tool fields).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::Shape;
use xcmig_stream::{DomainHeader, DomainType, HvmParam, PageType, PfnEntry, Writer};
use xcmig_testkit::process::run_with_input;

const BIN: &str = env!("CARGO_BIN_EXE_xcmig");
const TIMEOUT: Duration = Duration::from_secs(120);

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_with_input(Command::new(BIN).args(args), stdin, TIMEOUT)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli-report-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An HVM context blob of save records: a header, one CPU record per vCPU,
/// the end record.
fn hvm_context(vcpus: u16) -> Vec<u8> {
    let mut b = Vec::new();
    let mut rec = |code: u16, instance: u16, body: &[u8]| {
        b.extend_from_slice(&code.to_le_bytes());
        b.extend_from_slice(&instance.to_le_bytes());
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(body);
    };
    rec(1, 0, &[0u8; 24]);
    for i in 0..vcpus {
        rec(2, i, &[0x11u8; 64]);
    }
    rec(0, 0, &[]);
    b
}

/// A libxc HVM stream as stock libxenguest orders it (HVM_PARAMS after
/// HVM_CONTEXT), with 3 vCPUs, 4 pages of data, 2 zero pages sent as
/// XALLOC, and a second round re-sending pfns 0 and 1.
fn stock_stream() -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    let page = [7u8; 4096];
    let mut entries: Vec<PfnEntry> = (0..4).map(|p| PfnEntry::new(p, PageType::NoTab)).collect();
    entries.push(PfnEntry::new(4, PageType::XAlloc));
    entries.push(PfnEntry::new(5, PageType::XAlloc));
    w.write_page_data(&entries, &[&page, &page, &page, &page])
        .unwrap();
    let again = [
        PfnEntry::new(0, PageType::NoTab),
        PfnEntry::new(1, PageType::NoTab),
    ];
    w.write_page_data(&again, &[&page, &page]).unwrap();
    w.write_hvm_context(&hvm_context(3)).unwrap();
    w.write_hvm_params(&[
        HvmParam {
            index: 1,
            value: 0xfeffc,
        },
        HvmParam { index: 2, value: 3 },
        HvmParam {
            index: 999,
            value: 1,
        },
    ])
    .unwrap();
    w.write_end().unwrap();
    w.into_inner()
}

#[test]
fn stock_libxenguest_order_is_a_note_not_a_warning() {
    let s = stock_stream();
    let o = run(&["verify", "-"], Some(&s));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.ends_with(", 0 warnings, 1 note\n"), "{out}");
    let err = text(&o.stderr);
    assert!(
        err.starts_with("note: ") && err.contains("HVM_PARAMS after HVM_CONTEXT"),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");
    // -q silences notes too.
    let q = run(&["verify", "-q", "-"], Some(&s));
    assert!(q.status.success() && q.stdout.is_empty() && q.stderr.is_empty());
}

#[test]
fn verify_counts_in_the_singular_for_one() {
    // The spec's order: no note, no warning, and "0 warnings" plural.
    let s = common::libxc_hvm(Shape {
        pages: 64,
        checkpoints: 0,
        end: true,
    });
    let o = run(&["verify", "-"], Some(&s));
    let out = text(&o.stdout);
    assert!(out.ends_with(", 0 warnings\n"), "{out}");
    assert!(!out.contains("note"), "{out}");
    // One warning: a deprecated TOOLSTACK record is a warning.
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    w.write_raw(xcmig_stream::RecordType::TOOLSTACK, &[&[1u8; 8]])
        .unwrap();
    w.write_hvm_context(&hvm_context(1)).unwrap();
    w.write_end().unwrap();
    let o = run(&["verify", "-"], Some(&w.into_inner()));
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(out.ends_with(", 1 warning\n"), "{out}");
}

#[test]
fn unopenable_and_unreadable_input_exit_3() {
    for cmd in ["verify", "inspect"] {
        let o = run(&[cmd, "/nonexistent/stream"], None);
        assert_eq!(o.status.code(), Some(3), "{cmd}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("cannot open"));
        // A directory opens but cannot be read.
        let dir = scratch(&format!("dir-{cmd}"));
        let o = run(&[cmd, dir.to_str().unwrap()], None);
        assert_eq!(o.status.code(), Some(3), "{cmd}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("cannot read"),
            "{}",
            text(&o.stderr)
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["verify", "--format", "bogus", "-"][..],
        &["inspect", "--nope"][..],
        &["frobnicate"][..],
        &[][..],
    ] {
        let o = run(args, Some(b""));
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn help_lists_the_exit_codes() {
    for args in [
        &["--help"][..],
        &["verify", "--help"][..],
        &["inspect", "--help"][..],
    ] {
        let o = run(args, None);
        assert!(o.status.success());
        let h = text(&o.stdout);
        assert!(h.contains("Exit status:"), "{args:?}: {h}");
        for line in ["  0  ", "  1  ", "  2  ", "  3  "] {
            assert!(h.contains(line), "{args:?} lacks exit code {line:?}: {h}");
        }
        assert!(h.contains("I/O error"), "{h}");
    }
}

/// Runs `xcmig ARGS` with a pseudo-terminal as stdin (util-linux `script`).
fn run_on_tty(args: &str) -> Output {
    let cmd = format!("{BIN} {args}; echo \"rc=$?\"");
    Command::new("timeout")
        .args(["20", "script", "-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script (package bsdutils)")
}

#[test]
fn no_file_on_a_terminal_exits_2_with_a_hint_instead_of_waiting() {
    for cmd in ["verify", "inspect"] {
        let o = run_on_tty(cmd);
        let out = text(&o.stdout);
        assert!(out.contains("rc=2"), "{cmd} on a tty: {out}");
        assert!(out.contains("stdin is a terminal"), "{cmd}: {out}");
    }
    // Without a terminal, no FILE still reads stdin.
    let s = stock_stream();
    let o = run(&["inspect"], Some(&s));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run(&["verify"], Some(&s));
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn inspect_text_shows_sizes_distinct_and_resent_pages_zero_pages_vcpus_and_params() {
    let s = stock_stream();
    let o = run(&["inspect", "-"], Some(&s));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let t = text(&o.stdout);
    assert!(
        t.contains("pages: 8 entries, 6 with data (24.00 KiB (24576 bytes)), 2 zero pages"),
        "{t}"
    );
    assert!(t.contains("6 distinct pfns, 2 re-sent pages"), "{t}");
    assert!(t.contains("XALLOC (zero pages, no data)"), "{t}");
    assert!(t.contains("vcpus: 3\n"), "{t}");
    assert!(t.contains("STORE_PFN"), "{t}");
    assert!(t.contains("STORE_EVTCHN"), "{t}");
    assert!(t.contains("#999"), "{t}");
    assert!(
        t.contains("end: END record, ") && t.contains(&format!("({} bytes)", s.len())),
        "{t}"
    );
    assert!(t.contains("KiB ("), "{t}");
    assert!(t.contains("notes: 1"), "{t}");
    let v = run(&["inspect", "-v", "-"], Some(&s));
    assert!(
        text(&v.stdout).contains("STORE_PFN=0xfeffc"),
        "{}",
        text(&v.stdout)
    );
}

#[test]
fn inspect_shows_a_gib_stream_in_binary_units() {
    // 262144 pages of data: just over 1 GiB of stream.
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    let page = [3u8; 4096];
    for batch in 0..256u64 {
        let entries: Vec<PfnEntry> = (0..1024)
            .map(|i| PfnEntry::new(batch * 1024 + i, PageType::NoTab))
            .collect();
        let pages: Vec<&[u8]> = vec![&page; 1024];
        w.write_page_data(&entries, &pages).unwrap();
    }
    w.write_hvm_params(&[HvmParam { index: 2, value: 1 }])
        .unwrap();
    w.write_hvm_context(&hvm_context(1)).unwrap();
    w.write_end().unwrap();
    let s = w.into_inner();
    let dir = scratch("gib");
    let p = dir.join("s");
    std::fs::write(&p, &s).unwrap();
    drop(s);
    let o = run(&["inspect", p.to_str().unwrap()], None);
    let t = text(&o.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        t.contains("262144 with data (1.00 GiB (1073741824 bytes))"),
        "{t}"
    );
    assert!(t.contains("262144 distinct pfns, 0 re-sent pages"), "{t}");
    assert!(t.contains("end: END record, 1.00 GiB ("), "{t}");
}

#[test]
fn inspect_json_names_the_tool_and_schema_and_the_new_counts() {
    let s = stock_stream();
    let o = run(&["inspect", "--json", "-"], Some(&s));
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["tool"], "xcmig");
    assert_eq!(j["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["schema_version"], 1);
    assert_eq!(j["pages"]["entries"], 8);
    assert_eq!(j["pages"]["zero_pages"], 2);
    assert_eq!(j["pages"]["distinct_pfns"], 6);
    assert_eq!(j["pages"]["resent_pages"], 2);
    assert_eq!(j["vcpus"], 3);
    assert_eq!(j["hvm_params"][0]["name"], "STORE_PFN");
    assert_eq!(j["hvm_params"][0]["value"], 0xfeffc);
    assert_eq!(j["hvm_params"][1]["name"], "STORE_EVTCHN");
    assert!(j["hvm_params"][2]["name"].is_null());
    assert_eq!(j["notes"].as_array().unwrap().len(), 1);
    assert_eq!(j["warnings"].as_array().unwrap().len(), 0);
    // The fields from before are kept.
    for k in [
        "format",
        "valid",
        "bytes",
        "ending",
        "record_types",
        "checkpoints_libxc",
    ] {
        assert!(j.get(k).is_some(), "JSON lost {k}");
    }
}

#[test]
fn inspect_counts_pv_vcpus_from_their_records() {
    let s = common::libxc_pv();
    let o = run(&["inspect", "--json", "-"], Some(&s));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["vcpus"], 1);
    assert!(j["hvm_params"].is_null());
}
