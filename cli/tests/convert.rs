//! `xcmig convert`: wrapping and unwrapping between libxc, libxl and xl
//! images, re-versioning libxc v2 <-> v3, and what it refuses.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::Shape;
use xcmig_stream::libxl::{EmulatorHeader, LibxlHeader, LibxlRecord, LibxlWriter};
use xcmig_stream::{
    CpuidLeaf, DomainHeader, DomainType, ImageHeader, MsrEntry, PageType, PfnEntry, Version,
    Writer, WriterOptions, PAGE_SIZE,
};
use xcmig_testkit::process::run_with_input;

const BIN: &str = env!("CARGO_BIN_EXE_xcmig");
const TIMEOUT: Duration = Duration::from_secs(120);
const CHECKER: &str = "/usr/lib/xen-4.17/bin/verify-stream-v2";

fn small() -> Shape {
    Shape {
        pages: 64,
        checkpoints: 0,
        end: true,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("convert-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

/// Hidden files in `dir`: convert's staged outputs.
fn leftovers(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count()
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_with_input(Command::new(BIN).args(args), stdin, TIMEOUT)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `xcmig convert ARGS -i IN -o OUT` and returns OUT's octets.
fn convert(dir: &Path, input: &[u8], args: &[&str]) -> Vec<u8> {
    let i = put(dir, "in", input);
    let o = path(dir, "out");
    let mut all = vec!["convert", "-i", &i, "-o", &o];
    all.extend_from_slice(args);
    let out = run(&all, None);
    assert!(out.status.success(), "convert {args:?}: {}", err(&out));
    std::fs::read(&o).unwrap()
}

/// `xcmig verify` accepts `bytes` as `format`.
fn assert_valid(dir: &Path, bytes: &[u8], format: &str) {
    let p = put(dir, "check", bytes);
    let o = run(&["verify", "--format", format, &p], None);
    assert!(
        o.status.success(),
        "verify {format}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        err(&o)
    );
}

/// Xen's own checker accepts `bytes` (skipped when not installed).
fn assert_xen_checker_valid(dir: &Path, bytes: &[u8], format: &str) {
    if !Path::new(CHECKER).exists() {
        eprintln!("skipped: {CHECKER} not installed (make deps installs it)");
        return;
    }
    let p = put(dir, "xen-check", bytes);
    let o = run_with_input(
        Command::new("python3")
            .arg(CHECKER)
            .args(["-f", format, "-i", &p])
            .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python"),
        None,
        TIMEOUT,
    );
    assert!(
        o.status.success(),
        "verify-stream-v2 -f {format}: {}",
        err(&o)
    );
}

/// The libxl stream libxl 4.17 writes for an HVM guest without xenstore
/// data: header, LIBXC_CONTEXT, libxc, EMULATOR_CONTEXT, END.
fn libxl_of(libxc: &[u8], blob: &[u8]) -> Vec<u8> {
    let mut lx = LibxlWriter::new(Vec::new(), LibxlHeader::new()).unwrap();
    lx.write_record(&LibxlRecord::LibxcContext).unwrap();
    lx.inner_mut().extend_from_slice(libxc);
    lx.write_record(&LibxlRecord::EmulatorContext {
        emulator: EmulatorHeader { id: 2, index: 0 },
        blob: blob.to_vec(),
    })
    .unwrap();
    lx.write_record(&LibxlRecord::End).unwrap();
    lx.into_inner().unwrap()
}

/// What `xl save` writes around `libxl` with `config` (NUL added).
fn xl_of(config: &[u8], libxl: &[u8]) -> Vec<u8> {
    let mut c = config.to_vec();
    c.push(0);
    let mut out = xcmig_stream::xl::XlHeader::new_json(c).to_bytes().unwrap();
    out.extend_from_slice(libxl);
    out
}

/// An HVM v3 stream as Xen 4.17 saves it: CPU policy records, then
/// STATIC_DATA_END, memory, the end-of-stream records.
fn hvm_with_cpu_policy() -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_x86_cpuid_policy(&[CpuidLeaf {
        leaf: 0,
        subleaf: 0xffff_ffff,
        a: 0xd,
        b: 0x756e_6547,
        c: 0x6c65_746e,
        d: 0x4965_6e69,
    }])
    .unwrap();
    w.write_x86_msr_policy(&[MsrEntry {
        idx: 0xce,
        flags: 0,
        val: 0,
    }])
    .unwrap();
    w.write_static_data_end().unwrap();
    let page = [7u8; PAGE_SIZE];
    w.write_page_data(&[PfnEntry::new(3, PageType::NoTab)], &[&page])
        .unwrap();
    w.write_hvm_context(&[1; 64]).unwrap();
    w.write_end().unwrap();
    w.into_inner()
}

const CONFIG: &[u8] =
    b"{\n    \"c_info\": {\n        \"type\": \"hvm\",\n        \"name\": \"guest\"\n    }\n}\n";

#[test]
fn wrap_then_unwrap_gives_back_the_libxc_stream_and_the_emulator_blob() {
    let dir = scratch("wrap-unwrap");
    let libxc = common::libxc_hvm(small());
    let blob = b"QEVM\0\0\0\x03 device state of qemu".to_vec();
    let emu = put(&dir, "emu", &blob);
    let libxl = convert(&dir, &libxc, &["--to", "libxl", "--emulator-record", &emu]);
    // Exactly what libxl writes around that libxc stream and blob.
    assert_eq!(libxl, libxl_of(&libxc, &blob));
    assert_valid(&dir, &libxl, "libxl");
    assert_xen_checker_valid(&dir, &libxl, "libxl");

    let got_emu = path(&dir, "emu-out");
    let back = convert(
        &dir,
        &libxl,
        &["--to", "libxc", "--extract-emulator", &got_emu],
    );
    assert!(back == libxc, "unwrapped stream differs from the original");
    assert_eq!(std::fs::read(&got_emu).unwrap(), blob);

    // Without an emulator record: header, LIBXC_CONTEXT, libxc, END.
    let bare = convert(&dir, &libxc, &["--to", "libxl"]);
    assert_valid(&dir, &bare, "libxl");
    assert_eq!(convert(&dir, &bare, &["--to", "libxc"]), libxc);
}

#[test]
fn xl_with_a_config_wraps_and_unwraps_byte_identically() {
    let dir = scratch("xl");
    let libxc = common::libxc_hvm(small());
    let blob = b"qemu state".to_vec();
    let emu = put(&dir, "emu", &blob);
    let cfg = put(&dir, "cfg.json", CONFIG);
    let xl = convert(
        &dir,
        &libxc,
        &["--to", "xl", "--xl-config", &cfg, "--emulator-record", &emu],
    );
    // What `xl save` writes: its header with the config and its NUL.
    assert_eq!(xl, xl_of(CONFIG, &libxl_of(&libxc, &blob)));
    assert_valid(&dir, &xl, "xl");
    assert_xen_checker_valid(&dir, &xl, "xl");

    // xl -> libxl drops the header and nothing else.
    let libxl = convert(&dir, &xl, &["--to", "libxl"]);
    assert_eq!(libxl, libxl_of(&libxc, &blob));
    // libxl -> xl with the same config gives the file back.
    assert_eq!(
        convert(&dir, &libxl, &["--to", "xl", "--xl-config", &cfg]),
        xl
    );

    // xl -> libxc with both extractions; the config comes out as the JSON
    // text given (without xl's NUL).
    let (cfg_out, emu_out) = (path(&dir, "cfg-out"), path(&dir, "emu-out"));
    let back = convert(
        &dir,
        &xl,
        &[
            "--to",
            "libxc",
            "--extract-config",
            &cfg_out,
            "--extract-emulator",
            &emu_out,
        ],
    );
    assert!(back == libxc);
    assert_eq!(std::fs::read(&cfg_out).unwrap(), CONFIG);
    assert_eq!(std::fs::read(&emu_out).unwrap(), blob);

    // xl -> xl with a new config keeps everything else.
    let other = put(&dir, "other.json", b"{\"c_info\":{\"name\":\"other\"}}");
    let xl2 = convert(&dir, &xl, &["--xl-config", &other]);
    assert_eq!(
        xl2,
        xl_of(
            b"{\"c_info\":{\"name\":\"other\"}}",
            &libxl_of(&libxc, &blob)
        )
    );
}

#[test]
fn the_test_fixtures_of_every_format_survive_a_round_trip() {
    let dir = scratch("fixtures");
    // libxl with xenstore data and checkpoints: unwrap drops the libxl
    // records and keeps the libxc checkpoints.
    let shape = Shape {
        pages: 64,
        checkpoints: 2,
        end: true,
    };
    let libxl = common::libxl_hvm(shape);
    let libxc = convert(&dir, &libxl, &["--to", "libxc"]);
    assert!(libxc == common::libxc_hvm(shape));
    assert_valid(&dir, &libxc, "libxc");
    // Wrapping a checkpointed stream writes CHECKPOINT_END after each
    // CHECKPOINT, as libxl's checkpoint loop does.
    let rewrapped = convert(&dir, &libxc, &["--to", "libxl"]);
    assert_valid(&dir, &rewrapped, "libxl");
    let o = run(&["inspect", "--json", "-"], Some(&rewrapped));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["checkpoints_libxl"], 2);
    assert_eq!(j["checkpoints_libxc"], 2);

    // A failed-over stream (EOF after a checkpoint) stays one.
    let failover = Shape {
        end: false,
        ..shape
    };
    let lx = common::libxl_hvm(failover);
    let xc = convert(&dir, &lx, &["--to", "libxc"]);
    assert!(xc == common::libxc_hvm(failover));
    let o = run(&["verify", "-"], Some(&xc));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ends after a complete checkpoint"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_valid(&dir, &convert(&dir, &xc, &["--to", "libxl"]), "libxl");

    // PV: no emulator; the same stream through every layer and back.
    let pv = common::libxc_pv();
    let cfg = put(&dir, "cfg", CONFIG);
    let xl = convert(&dir, &pv, &["--to", "xl", "--xl-config", &cfg]);
    assert_valid(&dir, &xl, "xl");
    assert!(convert(&dir, &xl, &["--to", "libxc"]) == pv);
    assert!(convert(&dir, &common::libxl_pv(), &["--to", "libxc"]) == pv);
}

#[test]
fn v3_to_v2_to_v3_is_byte_identical_and_v2_passes_xens_checker() {
    let dir = scratch("versions");
    for (name, v3) in [
        ("hvm", common::libxc_hvm(small())),
        ("pv", common::libxc_pv()),
    ] {
        let v2 = convert(&dir, &v3, &["--version", "2"]);
        assert_eq!(
            &v2[12..16],
            &2u32.to_be_bytes(),
            "{name}: image header version"
        );
        // Only STATIC_DATA_END (8 octets) goes.
        assert_eq!(v2.len() + 8, v3.len(), "{name}");
        assert_valid(&dir, &v2, "libxc");
        assert_xen_checker_valid(&dir, &v2, "libxc");
        let back = convert(&dir, &v2, &["--version", "3"]);
        assert!(back == v3, "{name}: v2 -> v3 differs from the original");
    }
    // Re-versioning works inside the layers too.
    let libxl = common::libxl_hvm(small());
    let v2 = convert(&dir, &libxl, &["--version", "2"]);
    assert_valid(&dir, &v2, "libxl");
    assert!(convert(&dir, &v2, &["--version", "3"]) == libxl);
}

#[test]
fn a_v2_stream_of_older_xen_gets_static_data_end_where_4_17_writes_it() {
    let dir = scratch("v2-old");
    // A PV v2 stream as Xen 4.6-4.13 wrote it: X86_PV_INFO, P2M frames...
    let v3 = common::libxc_pv();
    let v2 = convert(&dir, &v3, &["--version", "2"]);
    let i = put(&dir, "v2", &v2);
    let o = run(&["convert", "--version", "3", "-i", &i, "-o", "-"], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(o.stdout == v3);
    assert!(
        err(&o).contains("inserted: STATIC_DATA_END before libxc record #1 X86_PV_P2M_FRAMES"),
        "{}",
        err(&o)
    );
}

#[test]
fn v3_to_v2_refuses_cpu_policy_records_unless_told_to_drop_them() {
    let dir = scratch("cpu-policy");
    let v3 = hvm_with_cpu_policy();
    assert_valid(&dir, &v3, "libxc");
    let i = put(&dir, "in", &v3);
    let out = path(&dir, "out");
    let o = run(&["convert", "--version", "2", "-i", &i, "-o", &out], None);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("offset 40, libxc record #0 X86_CPUID_POLICY")
            && e.contains("--drop-cpu-policy"),
        "{e}"
    );
    assert!(!Path::new(&out).exists(), "partial output left behind");
    assert_eq!(leftovers(&dir), 0, "a temporary file is left");

    let o = run(
        &[
            "convert",
            "--version",
            "2",
            "--drop-cpu-policy",
            "-i",
            &i,
            "-o",
            &out,
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let e = err(&o);
    for what in [
        "dropped: 1 x STATIC_DATA_END",
        "dropped: 1 x X86_CPUID_POLICY (1 leaves)",
        "dropped: 1 x X86_MSR_POLICY (1 MSRs)",
    ] {
        assert!(e.contains(what), "{what}: {e}");
    }
    let v2 = std::fs::read(&out).unwrap();
    assert_valid(&dir, &v2, "libxc");
    assert_xen_checker_valid(&dir, &v2, "libxc");
    // 8 (STATIC_DATA_END) + 8 + 24 (one leaf) + 8 + 16 (one MSR).
    assert_eq!(v2.len() + 64, v3.len());
}

#[test]
fn malformed_input_fails_with_one_line_and_leaves_no_output() {
    let dir = scratch("malformed");
    let out = path(&dir, "out");
    let libxl = common::libxl_hvm(small());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated libxc",
            common::libxc_hvm(small())[..5000].to_vec(),
            "offset 5000",
        ),
        (
            "truncated libxl",
            libxl[..libxl.len() - 8].to_vec(),
            "libxl record #",
        ),
        (
            "bad magic",
            b"not a stream at all, not at all".to_vec(),
            "offset 0",
        ),
        (
            "trailing data",
            [common::libxc_pv(), vec![0; 8]].concat(),
            "data after the END record",
        ),
    ];
    for (name, bytes, fragment) in cases {
        let i = put(&dir, "in", &bytes);
        for to in ["libxc", "libxl"] {
            let o = run(&["convert", "--to", to, "-i", &i, "-o", &out], None);
            assert_eq!(o.status.code(), Some(1), "{name}: {}", err(&o));
            let e = err(&o);
            assert_eq!(e.lines().count(), 1, "{name}: {e}");
            assert!(e.contains(fragment), "{name}: {fragment:?} not in {e}");
            assert!(!Path::new(&out).exists(), "{name}: output left");
        }
    }
    assert_eq!(leftovers(&dir), 0, "a temporary file is left");
    // An existing output is kept as it was when the conversion fails.
    std::fs::write(&out, b"old").unwrap();
    let i = put(&dir, "in", &common::libxc_hvm(small())[..100]);
    let o = run(&["convert", "-i", &i, "-o", &out], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
}

#[test]
fn stdin_and_stdout_work_with_a_dash_and_the_format_is_guessed() {
    let libxl = common::libxl_hvm(small());
    let o = run(
        &["convert", "--to", "libxc", "-i", "-", "-o", "-"],
        Some(&libxl),
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(o.stdout == common::libxc_hvm(small()));
    assert!(
        err(&o).starts_with("xcmig convert: libxl v2 > libxc v3 -> libxc v3: "),
        "{}",
        err(&o)
    );
    let o = run(&["convert", "-q", "--to", "libxc"], Some(&libxl));
    assert!(o.status.success() && o.stderr.is_empty(), "{}", err(&o));
    // --from overrides the guess.
    let o = run(
        &["convert", "--from", "libxc", "--to", "libxl"],
        Some(&libxl),
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
}

#[test]
fn options_that_do_not_fit_the_input_are_usage_errors() {
    let dir = scratch("usage");
    let hvm = put(&dir, "hvm", &common::libxc_hvm(small()));
    let pv = put(&dir, "pv", &common::libxc_pv());
    let libxl = put(&dir, "libxl", &common::libxl_hvm(small()));
    let emu = put(&dir, "emu", b"blob");
    let not_json = put(&dir, "cfg", b"name = \"guest\"\n");
    let out = path(&dir, "out");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--to", "xl", "-i", &hvm], "--xl-config"),
        (
            vec!["--to", "xl", "--xl-config", &not_json, "-i", &hvm],
            "not JSON",
        ),
        (
            vec!["--to", "libxl", "--emulator-record", &emu, "-i", &pv],
            "PV guest",
        ),
        (
            vec!["--to", "libxc", "--emulator-record", &emu, "-i", &hvm],
            "no libxl layer",
        ),
        (
            vec!["--to", "libxl", "--emulator-record", &emu, "-i", &libxl],
            "already has",
        ),
        (vec!["--extract-config", &emu, "-i", &libxl], "no xl header"),
        (
            vec!["--extract-emulator", &emu, "-i", &hvm],
            "no libxl layer",
        ),
        (vec!["--xl-config", &emu, "-i", &hvm], "not an xl file"),
    ];
    for (args, fragment) in cases {
        let mut all = vec!["convert"];
        all.extend(args.iter().copied());
        all.extend(["-o", &out]);
        let o = run(&all, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(fragment), "{args:?}: {}", err(&o));
        assert!(!Path::new(&out).exists(), "{args:?}");
    }
    let o = run(&["convert", "--version", "4", "-i", &hvm, "-o", &out], None);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["convert", "-i", &hvm, "-o", &hvm], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("the output is the input"), "{}", err(&o));
    assert_eq!(std::fs::read(&hvm).unwrap(), common::libxc_hvm(small()));
}

#[test]
fn inspect_names_the_layers_in_text_and_json() {
    let libxc = common::libxc_hvm(small());
    let xl = xl_of(CONFIG, &libxl_of(&libxc, b"x"));
    let o = run(&["inspect", "-"], Some(&xl));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let n = CONFIG.len() + 1;
    assert!(
        text.contains(&format!(
            "layers: xl header (config {n} octets, JSON) > libxl v2 > libxc v3\n"
        )),
        "{text}"
    );
    let o = run(&["inspect", "--json", "-"], Some(&xl));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layers = j["layers"].as_array().unwrap();
    let names: Vec<&str> = layers
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["xl", "libxl", "libxc"]);
    assert_eq!(layers[0]["config_bytes"], n as u64);
    assert_eq!(layers[0]["config_json"], true);
    assert_eq!(layers[1]["offset"], 48 + 4 + n as u64);
    assert_eq!(layers[2]["version"], 3);

    let o = run(&["inspect", "-"], Some(&libxc));
    assert!(String::from_utf8_lossy(&o.stdout).contains("layers: libxc v3\n"));
    let v2 = {
        let mut w = Writer::with_options(
            Vec::new(),
            &DomainHeader::new(DomainType::X86Hvm, 4, 6),
            WriterOptions {
                image: ImageHeader {
                    version: Version::V2,
                    endian: xcmig_stream::Endian::Little,
                },
                ..WriterOptions::default()
            },
        )
        .unwrap();
        w.write_page_data(&[PfnEntry::new(1, PageType::NoTab)], &[&[0u8; PAGE_SIZE]])
            .unwrap();
        w.write_hvm_context(&[1; 8]).unwrap();
        w.write_end().unwrap();
        w.into_inner()
    };
    let o = run(&["inspect", "-"], Some(&libxl_of(&v2, b"x")));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("layers: libxl v2 > libxc v2\n"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
