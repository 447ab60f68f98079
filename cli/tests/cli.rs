//! The `xcmig` binary, run as a user would: `verify` verdicts and their
//! one-line messages, `inspect` text and JSON, stdin, libxl and xl wrapping.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::Shape;
use xcmig_stream::libxl::{EmulatorHeader, LibxlHeader, LibxlRecord, LibxlWriter};
use xcmig_stream::xl::{XlHeader, XL_MANDATORY_JSON};
use xcmig_stream::{DomainHeader, DomainType, HvmParam, PageType, PfnEntry, RecordType, Writer};
use xcmig_testkit::process::run_with_input;

const BIN: &str = env!("CARGO_BIN_EXE_xcmig");

fn small() -> Shape {
    Shape {
        pages: 64,
        checkpoints: 0,
        end: true,
    }
}

fn checkpointed(end: bool) -> Shape {
    Shape {
        pages: 64,
        checkpoints: 2,
        end,
    }
}

/// A scratch directory per test, under the target dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Time allowed for one `xcmig` or `verify-stream-v2` run.
const TIMEOUT: Duration = Duration::from_secs(120);

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_with_input(Command::new(BIN).args(args), stdin, TIMEOUT)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn verify_file(bytes: &[u8], format: Option<&str>) -> Output {
    let dir = scratch(&format!(
        "v-{:x}-{}",
        fxhash(bytes),
        format.unwrap_or("auto")
    ));
    let p = write(&dir, "s", bytes);
    let mut args = vec!["verify"];
    if let Some(f) = format {
        args.extend(["--format", f]);
    }
    let ps = p.to_str().unwrap().to_string();
    args.push(&ps);
    run(&args, None)
}

/// A small content hash to name scratch directories.
fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

fn assert_valid(bytes: &[u8], format: Option<&str>) -> Output {
    let o = verify_file(bytes, format);
    assert!(
        o.status.success(),
        "expected valid ({format:?}): {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(stdout(&o).starts_with("valid "), "{}", stdout(&o));
    o
}

/// Runs verify on `bytes`, expecting exit 1 and one stdout line that holds
/// every fragment.
fn assert_invalid(name: &str, bytes: &[u8], format: Option<&str>, fragments: &[&str]) {
    let o = verify_file(bytes, format);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{name}: expected exit 1, got {:?}: {out}{}",
        o.status,
        stderr(&o)
    );
    assert_eq!(out.lines().count(), 1, "{name}: one line expected: {out:?}");
    for f in fragments {
        assert!(out.contains(f), "{name}: {f:?} missing from {out:?}");
    }
}

#[test]
fn valid_streams_of_every_format_verify_with_exit_0() {
    let libxc = common::libxc_hvm(small());
    let libxl = common::libxl_hvm(small());
    let xl = common::xl_file(&libxl);
    assert_valid(&libxc, Some("libxc"));
    assert_valid(&libxl, Some("libxl"));
    assert_valid(&xl, Some("xl"));
    // Autodetected from the first octets.
    assert!(stdout(&assert_valid(&libxc, None)).starts_with("valid libxc stream"));
    assert!(stdout(&assert_valid(&libxl, None)).starts_with("valid libxl stream"));
    assert!(stdout(&assert_valid(&xl, None)).starts_with("valid xl stream"));
    assert_valid(&common::libxc_pv(), None);
    assert_valid(&common::libxl_pv(), None);
}

#[test]
fn checkpointed_streams_verify_with_and_without_a_final_end() {
    for end in [true, false] {
        let libxc = common::libxc_hvm(checkpointed(end));
        let libxl = common::libxl_hvm(checkpointed(end));
        let o = assert_valid(&libxc, None);
        let o2 = assert_valid(&libxl, None);
        let o3 = assert_valid(&common::xl_file(&libxl), None);
        let how = if end {
            "ends with END"
        } else {
            "ends after a complete checkpoint"
        };
        for o in [o, o2, o3] {
            assert!(stdout(&o).contains(how), "{}", stdout(&o));
        }
    }
}

#[test]
fn stdin_is_read_with_a_dash_or_no_file() {
    let libxl = common::libxl_hvm(small());
    let o = run(&["verify", "-"], Some(&libxl));
    assert!(o.status.success(), "{}", stdout(&o));
    let o = run(&["verify"], Some(&common::xl_file(&libxl)));
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("valid xl stream"));
    // A broken stream on stdin fails the same way as from a file.
    let o = run(&["verify"], Some(&libxl[..libxl.len() - 8]));
    assert_eq!(o.status.code(), Some(1));
    let o = run(&["inspect", "--json", "-"], Some(&libxl));
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["bytes"], libxl.len() as u64);
}

#[test]
fn streams_our_writers_produce_also_pass_xens_verify_stream_v2() {
    let tool = Path::new("/usr/lib/xen-4.17/bin/verify-stream-v2");
    if !tool.exists() {
        eprintln!(
            "skipped: {} not installed (make deps installs it)",
            tool.display()
        );
        return;
    }
    // Xen's checker (under python3) rejects every non-empty
    // EMULATOR_XENSTORE_DATA (it compares an int with a str), so the libxl
    // stream here carries only an EMULATOR_CONTEXT.
    let mut lx = LibxlWriter::new(Vec::new(), LibxlHeader::new()).unwrap();
    lx.write_record(&LibxlRecord::LibxcContext).unwrap();
    lx.inner_mut()
        .write_all(&common::libxc_hvm(small()))
        .unwrap();
    lx.write_record(&LibxlRecord::EmulatorContext {
        emulator: EmulatorHeader { id: 2, index: 0 },
        blob: b"qemu state".to_vec(),
    })
    .unwrap();
    lx.write_record(&LibxlRecord::End).unwrap();
    let libxl = lx.into_inner().unwrap();
    let dir = scratch("xen-checker");
    for (fmt, bytes) in [
        ("libxc", common::libxc_hvm(small())),
        ("libxl", libxl.clone()),
        ("xl", common::xl_file(&libxl)),
    ] {
        let p = write(&dir, fmt, &bytes);
        let o = run_with_input(
            Command::new("python3")
                .arg(tool)
                .args(["-f", fmt, "-i", p.to_str().unwrap()])
                .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python"),
            None,
            TIMEOUT,
        );
        assert!(
            o.status.success(),
            "verify-stream-v2 -f {fmt}: {}",
            stderr(&o)
        );
        assert_valid(&bytes, Some(fmt));
    }
}

/// Offset of the first libxc record in a bare stream (after both headers).
const XC_FIRST: usize = 40;

#[test]
fn malformed_libxc_streams_fail_with_offset_record_type_and_rule() {
    let good = common::libxc_hvm(small());
    // Layout: headers 0..40, STATIC_DATA_END 40..48, PAGE_DATA at 48 with
    // its first pfn entry at 64..72 (type in the top nibble of octet 71).
    let mut bad_marker = good.clone();
    bad_marker[3] = 0;
    assert_invalid(
        "bad marker",
        &bad_marker,
        Some("libxc"),
        &["offset 0,", "libxc image header", "bad image marker"],
    );

    let mut bad_version = good.clone();
    bad_version[15] = 4;
    assert_invalid(
        "bad version",
        &bad_version,
        None,
        &["offset 0,", "unsupported stream version 4"],
    );

    let mut bad_type = good.clone();
    bad_type[71] = 0x50;
    assert_invalid(
        "reserved page type",
        &bad_type,
        None,
        &[
            "offset 48,",
            "libxc record #1 PAGE_DATA",
            "reserved page type 0x5 in pfn[0]",
        ],
    );

    let mut unknown = good.clone();
    unknown[XC_FIRST] = 0x13;
    assert_invalid(
        "unknown mandatory",
        &unknown,
        None,
        &[
            "offset 40,",
            "record #0",
            "unknown mandatory record type 0x13",
        ],
    );

    let truncated = &good[..1000];
    assert_invalid(
        "truncated page data",
        truncated,
        None,
        &["offset 1000,", "libxc record #1 PAGE_DATA", "truncated"],
    );

    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0; 8]);
    assert_invalid(
        "trailing data",
        &trailing,
        None,
        &[
            &format!("offset {},", good.len()),
            "data after the END record",
        ],
    );

    let no_end = &good[..good.len() - 8];
    assert_invalid(
        "no END",
        no_end,
        None,
        &[
            &format!("offset {},", good.len() - 8),
            "without an END record",
        ],
    );

    // Grammar: v3 PAGE_DATA before STATIC_DATA_END.
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    let page = [0u8; 4096];
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&PfnEntry::new(5, PageType::NoTab).to_raw().to_le_bytes());
    w.write_raw(RecordType::PAGE_DATA, &[&body, &page]).unwrap();
    let bad = w.into_inner();
    assert_invalid(
        "grammar",
        &bad,
        None,
        &[
            "offset 40,",
            "libxc record #0 PAGE_DATA",
            "before STATIC_DATA_END",
        ],
    );

    // Padding: an optional record with a 3-octet body has 5 padding octets.
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    w.write_optional(RecordType(0x8000_0001), b"abc").unwrap();
    w.write_end().unwrap();
    let mut bad_pad = w.into_inner();
    assert_valid(&bad_pad, None);
    bad_pad[XC_FIRST + 8 + 8 + 4] = 1;
    assert_invalid(
        "padding",
        &bad_pad,
        None,
        &["offset 48,", "libxc record #1", "padding"],
    );
}

/// Builds a libxl stream from pieces: libxl records and raw libxc bytes.
enum Piece {
    Rec(LibxlRecord),
    Raw(Vec<u8>),
}

fn libxl_of(pieces: Vec<Piece>) -> Vec<u8> {
    let mut lx = LibxlWriter::new(Vec::new(), LibxlHeader::new()).unwrap();
    for p in pieces {
        match p {
            Piece::Rec(r) => lx.write_record(&r).unwrap(),
            Piece::Raw(b) => lx.inner_mut().write_all(&b).unwrap(),
        }
    }
    lx.into_inner().unwrap()
}

fn emu(id: u32) -> LibxlRecord {
    LibxlRecord::EmulatorContext {
        emulator: EmulatorHeader { id, index: 0 },
        blob: vec![1, 2, 3],
    }
}

#[test]
fn malformed_libxl_streams_fail_with_offset_record_type_and_rule() {
    use Piece::*;
    let xc = common::libxc_hvm(small());
    let xc_end = 24 + xc.len(); // libxl header 16 + LIBXC_CONTEXT 8 + libxc stream

    let mut bad_ident = common::libxl_hvm(small());
    bad_ident[0] = b'X';
    assert_invalid(
        "bad ident",
        &bad_ident,
        Some("libxl"),
        &["offset 0,", "libxl header", "bad ident"],
    );

    let reserved_emu = libxl_of(vec![
        Rec(LibxlRecord::LibxcContext),
        Raw(xc.clone()),
        Rec(emu(7)),
        Rec(LibxlRecord::End),
    ]);
    assert_invalid(
        "reserved emulator",
        &reserved_emu,
        None,
        &[
            &format!("offset {xc_end},"),
            "libxl record #1 EMULATOR_CONTEXT",
            "reserved emulator_id 0x7",
        ],
    );

    let stray_cp_end = libxl_of(vec![
        Rec(LibxlRecord::LibxcContext),
        Raw(xc.clone()),
        Rec(LibxlRecord::CheckpointEnd),
        Rec(LibxlRecord::End),
    ]);
    assert_invalid(
        "CHECKPOINT_END outside checkpoint",
        &stray_cp_end,
        None,
        &[
            &format!("offset {xc_end},"),
            "libxl record #1 CHECKPOINT_END",
            "outside a checkpoint",
        ],
    );

    let no_libxc = libxl_of(vec![Rec(LibxlRecord::End)]);
    assert_invalid(
        "END first",
        &no_libxc,
        None,
        &[
            "offset 16,",
            "libxl record #0 END",
            "before any LIBXC_CONTEXT",
        ],
    );

    let no_end = libxl_of(vec![Rec(LibxlRecord::LibxcContext), Raw(xc.clone())]);
    assert_invalid(
        "no END",
        &no_end,
        None,
        &[
            &format!("offset {xc_end},"),
            "libxl record #1",
            "before the libxl END record",
        ],
    );

    let mut inner_bad = libxl_of(vec![
        Rec(LibxlRecord::LibxcContext),
        Raw(xc.clone()),
        Rec(LibxlRecord::End),
    ]);
    inner_bad[24 + 71] = 0x60;
    assert_invalid(
        "inner libxc error at an absolute offset",
        &inner_bad,
        None,
        &[
            "offset 72,",
            "libxc record #1 PAGE_DATA",
            "reserved page type 0x6",
        ],
    );

    let state_on_main = libxl_of(vec![Rec(LibxlRecord::CheckpointState {
        control: xcmig_stream::libxl::CheckpointControl::New,
    })]);
    assert_invalid(
        "CHECKPOINT_STATE",
        &state_on_main,
        None,
        &["offset 16,", "CHECKPOINT_STATE", "back channel"],
    );

    let pv_emu = libxl_of(vec![
        Rec(LibxlRecord::LibxcContext),
        Raw(common::libxc_pv()),
        Rec(emu(2)),
        Rec(LibxlRecord::End),
    ]);
    assert_invalid(
        "emulator for PV",
        &pv_emu,
        None,
        &["libxl record #1 EMULATOR_CONTEXT", "PV guest"],
    );

    let mut trailing = common::libxl_hvm(small());
    let n = trailing.len();
    trailing.extend_from_slice(b"junk");
    assert_invalid(
        "trailing data",
        &trailing,
        None,
        &[&format!("offset {n},"), "data after the END record"],
    );

    // Truncated inside a checkpoint: the libxl records after the first
    // libxc CHECKPOINT stop before CHECKPOINT_END.
    let cp = common::libxl_hvm(checkpointed(true));
    let cut = 24 + common::libxc_hvm(small()).len() - 8 + 8; // through the CHECKPOINT record
    assert_invalid(
        "inside checkpoint",
        &cp[..cut],
        None,
        &[&format!("offset {cut},"), "inside a checkpoint"],
    );
}

#[test]
fn malformed_xl_files_fail_with_offset_and_rule() {
    let libxl = common::libxl_hvm(small());
    let good = common::xl_file(&libxl);
    let hdr_len = good.len() - libxl.len();

    let mut bad_magic = good.clone();
    bad_magic[10] = b'?';
    assert_invalid(
        "bad magic",
        &bad_magic,
        Some("xl"),
        &["offset 10,", "xl header", "bad magic"],
    );

    let mut flags = good.clone();
    flags[36] |= 0x80;
    assert_invalid(
        "unknown mandatory flag",
        &flags,
        None,
        &["offset 36,", "xl header", "unknown mandatory flags 0x80"],
    );

    let legacy = {
        let mut h = XlHeader::new_json(b"{}\0".to_vec());
        h.mandatory_flags = XL_MANDATORY_JSON;
        let mut v = h.to_bytes().unwrap();
        v.extend_from_slice(&common::libxc_hvm(small()));
        v
    };
    assert_invalid(
        "STREAMv2 clear",
        &legacy,
        None,
        &["offset 36,", "STREAMv2", "legacy"],
    );

    let mut inner = good.clone();
    inner[hdr_len + 11] = 9;
    assert_invalid(
        "libxl error at an absolute offset",
        &inner,
        None,
        &[
            &format!("offset {},", hdr_len + 8),
            "libxl header",
            "unsupported version 9",
        ],
    );

    assert_invalid(
        "truncated header",
        &good[..40],
        None,
        &["offset 40,", "xl header", "truncated"],
    );
}

#[test]
fn warnings_go_to_stderr_and_do_not_fail() {
    // HVM_PARAMS after HVM_CONTEXT (libxenguest's order) and an emulator
    // record with emulator_id 0 in a non-legacy stream.
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    w.write_page_data(&[PfnEntry::new(1, PageType::NoTab)], &[&[7u8; 4096]])
        .unwrap();
    w.write_hvm_context(&[1; 64]).unwrap();
    let mut params = Vec::new();
    params.extend_from_slice(&1u32.to_le_bytes());
    params.extend_from_slice(&0u32.to_le_bytes());
    let param = HvmParam { index: 2, value: 3 };
    params.extend_from_slice(&param.index.to_le_bytes());
    params.extend_from_slice(&param.value.to_le_bytes());
    w.write_raw(RecordType::HVM_PARAMS, &[&params]).unwrap();
    w.write_raw(RecordType::END, &[]).unwrap();
    let xc = w.into_inner();
    let s = libxl_of(vec![
        Piece::Rec(LibxlRecord::LibxcContext),
        Piece::Raw(xc),
        Piece::Rec(emu(0)),
        Piece::Rec(LibxlRecord::End),
    ]);
    let o = assert_valid(&s, None);
    let err = stderr(&o);
    // libxenguest's own order is a note, not a warning: a stock stream
    // always has it and nobody can act on it.
    assert!(
        err.lines()
            .any(|l| l.starts_with("note: ") && l.contains("HVM_PARAMS after HVM_CONTEXT")),
        "{err}"
    );
    assert!(
        !err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("HVM_PARAMS")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("emulator_id 0")),
        "{err}"
    );
    assert!(
        stdout(&o).contains(", 1 warning, 1 note\n"),
        "{}",
        stdout(&o)
    );
    let q = verify_file(&s, Some("libxl"));
    assert!(q.status.success());
    let o = run(&["verify", "-q", "-"], Some(&s));
    assert!(o.status.success());
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "quiet prints nothing"
    );
}

#[test]
fn inspect_json_reports_headers_counts_pages_and_checkpoints() {
    let shape = checkpointed(true);
    let libxl = common::libxl_hvm(shape);
    let xl = common::xl_file(&libxl);
    let dir = scratch("inspect-json");
    let p = write(&dir, "s.xl", &xl);
    let o = run(&["inspect", "--json", p.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(j["format"], "xl");
    assert_eq!(j["valid"], true);
    assert_eq!(j["bytes"], xl.len() as u64);
    assert_eq!(j["ending"], "end");
    assert_eq!(j["xl"]["stream_v2"], true);
    assert_eq!(j["xl"]["json_config"], true);
    assert_eq!(j["libxl"]["offset"], (xl.len() - libxl.len()) as u64);
    assert_eq!(j["libxc"]["domain_type"], "x86 HVM");
    assert_eq!(j["libxc"]["version"], 3);
    let count = |layer: &str, name: &str| {
        j["record_types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["layer"] == layer && t["name"] == name)
            .map_or(0, |t| t["count"].as_u64().unwrap())
    };
    // One first pass and two checkpoint passes of 64 and 8 pages.
    assert_eq!(count("libxc", "PAGE_DATA"), 3);
    assert_eq!(count("libxc", "CHECKPOINT"), 2);
    assert_eq!(count("libxc", "HVM_CONTEXT"), 3);
    assert_eq!(count("libxc", "END"), 1);
    assert_eq!(count("libxl", "EMULATOR_CONTEXT"), 3);
    assert_eq!(count("libxl", "CHECKPOINT_END"), 2);
    assert_eq!(count("libxl", "LIBXC_CONTEXT"), 1);
    assert_eq!(count("libxl", "END"), 1);
    // Octets by type add up to the file minus the headers.
    let total: u64 = j["record_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total,
        xl.len() as u64 - (xl.len() - libxl.len()) as u64 - 16 - 40
    );
    // Pages: 64 + 8 + 8 entries, pfn 63 is an XTAB hole in the first pass.
    assert_eq!(j["pages"]["entries"], 80);
    assert_eq!(j["pages"]["data_pages"], 79);
    assert_eq!(j["pages"]["by_type"]["NOTAB"], 79);
    assert_eq!(j["pages"]["by_type"]["XTAB"], 1);
    assert_eq!(j["pages"]["pfn_min"], 0);
    assert_eq!(j["pages"]["pfn_max"], 63);
    assert_eq!(j["checkpoints_libxc"], 2);
    assert_eq!(j["checkpoints_libxl"], 2);
    assert!(j.get("records").is_none(), "no record list without -v");

    let o = run(&["inspect", "--json", "-v", p.to_str().unwrap()], None);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let recs = j["records"].as_array().unwrap();
    // libxc: STATIC_DATA_END, then 3 passes of PAGE_DATA, TSC, PARAMS,
    // CONTEXT, each closed by CHECKPOINT (twice) or END.
    let libxc_recs = 1 + 3 * 5;
    // libxl: LIBXC_CONTEXT, then xenstore data, emulator context and
    // CHECKPOINT_END (twice) or END.
    let libxl_recs = 1 + 3 * 3;
    assert_eq!(recs.len(), libxc_recs + libxl_recs, "{recs:#?}");
    assert_eq!(recs[0]["name"], "LIBXC_CONTEXT");
    assert_eq!(recs[1]["layer"], "libxc");
    assert_eq!(
        recs[1]["offset"],
        j["libxc"]["offset"].as_u64().unwrap() + 40
    );
}

#[test]
fn inspect_text_lists_every_record_with_v_and_reports_invalid_streams() {
    let libxc = common::libxc_hvm(small());
    let dir = scratch("inspect-text");
    let p = write(&dir, "s", &libxc);
    let o = run(&["inspect", p.to_str().unwrap()], None);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("format: libxc"), "{text}");
    assert!(text.contains("libxc header at 0: version 3"), "{text}");
    assert!(text.contains("pfn range 0x0-0x3f"), "{text}");
    let o = run(&["inspect", "-v", p.to_str().unwrap()], None);
    let text = stdout(&o);
    for name in [
        "STATIC_DATA_END",
        "PAGE_DATA",
        "X86_TSC_INFO",
        "HVM_PARAMS",
        "HVM_CONTEXT",
        "END",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(" libxc ") && l.contains(name)),
            "{name}: {text}"
        );
    }
    assert!(
        text.contains("64 entries, 63 pages, pfn 0x0-0x3f"),
        "{text}"
    );

    let p = write(&dir, "bad", &libxc[..100]);
    let o = run(&["inspect", p.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("offset 100"), "{}", stderr(&o));
}

#[test]
fn unreadable_input_exits_3_and_bad_usage_exits_2() {
    let o = run(&["verify", "/nonexistent/stream"], None);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("cannot open"));
    let o = run(&["verify", "--format", "bogus", "-"], Some(b""));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn an_explicit_format_overrides_detection() {
    let libxc = common::libxc_hvm(small());
    assert_invalid(
        "libxc read as libxl",
        &libxc,
        Some("libxl"),
        &["offset 0,", "libxl header", "bad ident"],
    );
    assert_invalid(
        "libxc read as xl",
        &libxc,
        Some("xl"),
        &["offset 0,", "xl header", "bad magic"],
    );
    // Empty input: a truncated libxc image header.
    assert_invalid(
        "empty",
        b"",
        None,
        &["offset 0,", "libxc image header", "truncated"],
    );
}

#[test]
fn legacy_and_big_endian_libxl_headers_are_accepted_with_warnings() {
    // The legacy bit without xen_major 0 in the libxc header, and a
    // big-endian libxl layer (libxl itself refuses it; the spec allows it).
    for options in [
        xcmig_stream::libxl::LIBXL_OPT_LEGACY,
        xcmig_stream::libxl::LIBXL_OPT_BIG_ENDIAN,
    ] {
        let header = LibxlHeader {
            version: 2,
            options,
        };
        let mut lx = LibxlWriter::new(Vec::new(), header).unwrap();
        lx.write_record(&LibxlRecord::LibxcContext).unwrap();
        lx.inner_mut()
            .write_all(&common::libxc_hvm(small()))
            .unwrap();
        lx.write_record(&emu(2)).unwrap();
        lx.write_record(&LibxlRecord::End).unwrap();
        let s = lx.into_inner().unwrap();
        let o = assert_valid(&s, None);
        let want = if options == xcmig_stream::libxl::LIBXL_OPT_LEGACY {
            "legacy bit is set"
        } else {
            "big-endian"
        };
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
    }
}

#[test]
fn warnings_are_capped_at_1000_and_the_rest_counted() {
    // 1100 empty HVM_PARAMS records: each is tolerated with a warning.
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    w.write_page_data(&[PfnEntry::new(1, PageType::NoTab)], &[&[7u8; 4096]])
        .unwrap();
    for _ in 0..1100 {
        w.write_raw(RecordType::HVM_PARAMS, &[&[0u8; 8]]).unwrap();
    }
    w.write_hvm_context(&[1; 64]).unwrap();
    w.write_end().unwrap();
    let s = w.into_inner();
    let o = assert_valid(&s, None);
    let err = stderr(&o);
    assert_eq!(
        err.lines().count(),
        1001,
        "{}",
        &err[err.len().saturating_sub(300)..]
    );
    assert_eq!(
        err.lines().last().unwrap(),
        "warning: 100 further warnings not shown"
    );
}

#[test]
fn inspect_json_of_an_invalid_stream_reports_the_error_and_exits_1() {
    let libxl = common::libxl_hvm(small());
    let cut = &libxl[..libxl.len() - 8];
    let o = run(&["inspect", "--json", "-"], Some(cut));
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(j["valid"], false);
    assert!(j["bytes"].is_null());
    let err = j["error"].as_str().unwrap();
    assert!(err.contains(&format!("offset {}", cut.len())), "{err}");
    assert!(err.contains("before the libxl END record"), "{err}");
    // What was read before the error is still reported.
    assert_eq!(j["pages"]["entries"], 64);
    assert!(stderr(&o).contains("invalid libxl stream"));
}
