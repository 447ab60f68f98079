//! `xcmig convert --compress / --decompress`, and `verify`/`inspect` of
//! streams with xcmig's compressed page record.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use xcmig_stream::{
    DomainHeader, DomainType, PageType, PfnEntry, Reader, Record, RecordType, Writer, PAGE_SIZE,
};
use xcmig_testkit::process::run_with_input;

const BIN: &str = env!("CARGO_BIN_EXE_xcmig");
const TIMEOUT: Duration = Duration::from_secs(120);
const CHECKER: &str = "/usr/lib/xen-4.17/bin/verify-stream-v2";

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("convert-compress-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_with_input(Command::new(BIN).args(args), stdin, TIMEOUT)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `xcmig convert ARGS -i IN -o OUT`: the output and stderr.
fn convert(dir: &Path, input: &[u8], args: &[&str]) -> (Vec<u8>, String) {
    let i = dir.join("in");
    let o = dir.join("out");
    std::fs::write(&i, input).unwrap();
    let _ = std::fs::remove_file(&o);
    let mut all = vec![
        "convert",
        "-i",
        i.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = run(&all, None);
    assert!(out.status.success(), "convert {args:?}: {}", err(&out));
    (std::fs::read(&o).unwrap(), err(&out))
}

/// A text page, different for each `n`.
fn text(n: u64) -> Vec<u8> {
    format!("int f{n}(void) {{ return g({n}) + h(); }} /* page {n} */\n")
        .bytes()
        .cycle()
        .take(PAGE_SIZE)
        .collect()
}

/// A page nothing compresses.
fn noise(n: u64) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..PAGE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// An HVM v3 stream with three batches: text, text mixed with noise and
/// XALLOC entries, and noise only; the last is 1500 entries long.
fn stream() -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    let batch = |first: u64, n: u64, page: &dyn Fn(u64) -> Option<Vec<u8>>| {
        let mut entries = Vec::new();
        let mut data = Vec::new();
        for pfn in first..first + n {
            match page(pfn) {
                Some(p) => {
                    entries.push(PfnEntry::new(pfn, PageType::NoTab));
                    data.extend_from_slice(&p);
                }
                None => entries.push(PfnEntry::new(pfn, PageType::XAlloc)),
            }
        }
        (entries, data)
    };
    let batches = [
        batch(0, 64, &|p| Some(text(p))),
        batch(64, 64, &|p| match p % 3 {
            0 => Some(text(p)),
            1 => Some(noise(p)),
            _ => None,
        }),
        batch(128, 1500, &|p| Some(noise(p))),
    ];
    for (entries, data) in &batches {
        w.write_page_data(entries, &[data]).unwrap();
    }
    w.write_hvm_context(&[1; 64]).unwrap();
    w.write_end().unwrap();
    w.into_inner()
}

/// Record types of a libxc stream, and its page data decompressed per pfn.
fn census(bytes: &[u8]) -> (Vec<RecordType>, Vec<(u64, Vec<u8>)>) {
    let mut r = Reader::new(bytes).unwrap();
    let mut types = Vec::new();
    let mut pages = Vec::new();
    let mut d = xcmig_stream::PageDecompressor::new();
    while let Some(rec) = r.next_record().unwrap() {
        types.push(rec.record_type());
        let (entries, data) = match &rec {
            Record::PageData(pd) => (pd.entries().to_vec(), pd.data().to_vec()),
            Record::CompressedPageData(c) => {
                let mut out = Vec::new();
                c.decompress_all(&mut d, &mut out).unwrap();
                (c.entries().to_vec(), out)
            }
            _ => continue,
        };
        let mut chunks = data.chunks(PAGE_SIZE);
        for e in entries {
            if e.page_type.has_data() {
                pages.push((e.pfn, chunks.next().unwrap().to_vec()));
            }
        }
    }
    (types, pages)
}

fn xen_checker(dir: &Path, bytes: &[u8]) -> Output {
    assert!(
        Path::new(CHECKER).exists(),
        "{CHECKER} not installed (make deps installs xen-utils-4.17)"
    );
    let p = dir.join("xen-check");
    std::fs::write(&p, bytes).unwrap();
    run_with_input(
        Command::new("python3")
            .arg(CHECKER)
            .args(["-f", "libxc", "-i"])
            .arg(&p)
            .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python"),
        None,
        TIMEOUT,
    )
}

#[test]
fn compress_then_decompress_gives_back_the_stream_octet_for_octet() {
    let dir = scratch("round-trip");
    let plain = stream();
    let (_, plain_pages) = census(&plain);
    for how in ["lz4", "zstd", "zstd:9"] {
        let (packed, summary) = convert(&dir, &plain, &["--compress", how]);
        let (types, pages) = census(&packed);
        assert_eq!(pages, plain_pages, "{how}: the same pages");
        let compressed = types
            .iter()
            .filter(|&&t| t == RecordType::XCMIG_COMPRESSED_PAGE_DATA)
            .count();
        // The text batch and the mixed one; the noise batch stays
        // PAGE_DATA, split at 1024 entries.
        assert_eq!(compressed, 2, "{how}: {types:?}");
        assert_eq!(
            types
                .iter()
                .filter(|&&t| t == RecordType::PAGE_DATA)
                .count(),
            2,
            "{how}: {types:?}"
        );
        assert!(packed.len() < plain.len(), "{how}");
        assert!(
            summary.contains("compressed: 2 XCMIG_COMPRESSED_PAGE_DATA records"),
            "{summary}"
        );
        let (back, summary) = convert(&dir, &packed, &["--decompress"]);
        assert!(summary.contains("decompressed: 2"), "{summary}");
        // The split batch stays split: everything else is identical.
        let (back_types, back_pages) = census(&back);
        assert_eq!(back_pages, plain_pages);
        assert!(!back_types.contains(&RecordType::XCMIG_COMPRESSED_PAGE_DATA));
        let (again, _) = convert(&dir, &back, &["--compress", how]);
        assert!(again == packed, "{how}: compressing is deterministic");
    }
    // A stream without a batch over 1024 entries comes back identical.
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    let data: Vec<u8> = (0..8).flat_map(text).collect();
    let entries: Vec<PfnEntry> = (0..8).map(|p| PfnEntry::new(p, PageType::NoTab)).collect();
    w.write_page_data(&entries, &[&data]).unwrap();
    w.write_hvm_context(&[1; 64]).unwrap();
    w.write_end().unwrap();
    let small = w.into_inner();
    let (packed, _) = convert(&dir, &small, &["--compress", "lz4"]);
    let (back, _) = convert(&dir, &packed, &["--decompress"]);
    assert!(back == small);
}

#[test]
fn xens_checker_refuses_the_compressed_stream_and_accepts_the_decompressed_one() {
    let dir = scratch("checker");
    let plain = stream();
    let (packed, _) = convert(&dir, &plain, &["--compress", "zstd"]);
    let o = xen_checker(&dir, &packed);
    assert!(!o.status.success(), "verify-stream-v2 accepted it");
    let (back, _) = convert(&dir, &packed, &["--decompress"]);
    let o = xen_checker(&dir, &back);
    assert!(o.status.success(), "verify-stream-v2: {}", err(&o));
}

#[test]
fn verify_and_inspect_read_compressed_streams_and_say_only_xcmig_restores_them() {
    let dir = scratch("verify");
    let (packed, _) = convert(&dir, &stream(), &["--compress", "lz4"]);
    let p = dir.join("packed");
    std::fs::write(&p, &packed).unwrap();
    let o = run(&["verify", p.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", err(&o));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), err(&o));
    assert!(all.contains("only xcmig restores this stream"), "{all}");
    let o = run(&["inspect", "--json", p.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", err(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Compressed pages are counted like any others.
    let data_pages = j["pages"]["data_pages"].as_u64().unwrap();
    assert_eq!(data_pages, 64 + 43 + 1500, "{}", j["pages"]);
}

#[test]
fn a_corrupt_compressed_page_fails_convert_and_verify_with_one_line_and_no_output() {
    let dir = scratch("corrupt");
    let (mut packed, _) = convert(&dir, &stream(), &["--compress", "lz4"]);
    // The first compressed record's first page: after the headers (40),
    // STATIC_DATA_END (8), the record header (8), count..reserved (8), 64
    // pfns and 64 sizes.
    let first = 40 + 8 + 8 + 8 + 64 * 8 + 64 * 2;
    for b in &mut packed[first..first + 16] {
        *b = 0xff;
    }
    let i = dir.join("bad");
    std::fs::write(&i, &packed).unwrap();
    let o = dir.join("decompressed");
    let r = run(
        &[
            "convert",
            "--decompress",
            "-i",
            i.to_str().unwrap(),
            "-o",
            o.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r.status.code(), Some(1), "{}", err(&r));
    let e = err(&r);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("XCMIG_COMPRESSED_PAGE_DATA") && e.contains("data page 0"),
        "{e}"
    );
    assert!(!o.exists());
    assert_eq!(
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        0,
        "no staged output left"
    );
    let v = run(&["verify", i.to_str().unwrap()], None);
    assert_eq!(v.status.code(), Some(1), "{}", err(&v));
    assert!(
        format!("{}{}", String::from_utf8_lossy(&v.stdout), err(&v)).contains("data page 0"),
        "{}",
        err(&v)
    );
}

#[test]
fn bad_compress_options_are_usage_errors() {
    let dir = scratch("usage");
    let i = dir.join("in");
    std::fs::write(&i, stream()).unwrap();
    let o = dir.join("out");
    for args in [
        vec!["--compress", "gzip"],
        vec!["--compress", "zstd:0"],
        vec!["--compress", "zstd:20"],
        vec!["--compress", "lz4:1"],
        vec!["--compress", "lz4", "--decompress"],
    ] {
        let mut all = vec![
            "convert",
            "-i",
            i.to_str().unwrap(),
            "-o",
            o.to_str().unwrap(),
        ];
        all.extend_from_slice(&args);
        let r = run(&all, None);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", err(&r));
        assert!(!o.exists(), "{args:?}");
    }
}

#[test]
fn compress_and_decompress_through_stdin_and_stdout() {
    let plain = stream();
    let r = run(
        &["convert", "--compress", "zstd", "-i", "-", "-o", "-"],
        Some(&plain),
    );
    assert!(r.status.success(), "{}", err(&r));
    let r = run(
        &["convert", "--decompress", "-", "-o", "-"],
        Some(&r.stdout),
    );
    // `-` as a positional is not how the input is named: a usage error.
    assert_eq!(r.status.code(), Some(2), "{}", err(&r));
    let packed = run(&["convert", "--compress", "zstd", "-o", "-"], Some(&plain)).stdout;
    let back = run(&["convert", "--decompress", "-i", "-"], Some(&packed));
    assert!(back.status.success(), "{}", err(&back));
    assert_eq!(census(&back.stdout).1, census(&plain).1);
}
