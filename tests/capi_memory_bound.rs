//! Bounded memory through the C entry point: the worst streams we know,
//! fed to `xc_domain_restore` (the `xg-restore` harness with libxcmig
//! preloaded, on xensim), each keep the harness's peak RSS (`ru_maxrss` of
//! the child, measured by GNU time's `%M`) under the bound documented in
//! docs/memory.md for a plain HVM restore:
//!
//! ```text
//!   BASE (process, libraries, page batch and its mapping)   64 MiB
//! + reader body buffer (one record, MAX_RECORD_LEN)        128 MiB
//! + decoded PAGE_DATA entries (16 B x 16 Mi entries)       256 MiB
//! + HVM_CONTEXT kept (at most 16 MiB) and libxenctrl's
//!   bounce buffer for it when it is set                     32 MiB
//! + populated-set tracking, 58 B x the domain's max_pages
//! ```
//!
//! The streams: PAGE_DATA naming pfn 2^33 (where Debian's libxenguest
//! sizes its tracking by the pfn and grows to 1 GiB and more) and other huge
//! pfns with each kind of page type, a full batch of scattered huge pfns,
//! a PAGE_DATA record of maximal length (16 Mi XTAB entries), many small
//! PAGE_DATA records at scattered pfns, a maximal HVM_CONTEXT followed by a
//! maximal PAGE_DATA (every fixed term at once), an HVM_CONTEXT of a whole
//! record (refused), a maximal CPUID policy, a maximal optional record, and a record claiming the maximal length with
//! no body; and, in a second test, every plain HVM stream of the
//! whole-restore fuzzer's committed corpus (seeds and campaign finds). The same streams through Debian's libxenguest 4.17 (not
//! preloaded) are measured beside and only printed; with
//! `XCMIG_MEMORY_BOUND_RESULTS=FILE` the table is also written there (the
//! committed copy is bench/results/memory-bound.md).
//!
//! Checkpointed streams are bounded by the checkpoint buffer limit (engine
//! tests in src/restore/tests.rs); `xg-restore` restores plain streams only.
//!
//! Prerequisites come from `make build` (xensim, target/xensim/lib,
//! target/capi-tests) and GNU time (`time` in DEB_PACKAGES).

#![cfg(feature = "xen")]

mod capi_support;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use capi_support::host::Host;
use capi_support::records::{record, Parsed, HEADERS};
use capi_support::{describe, run, run_ok};

/// One restore must finish well within this.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);
/// The guest: small, so that populate's own limit (max_pages) is low.
const MEMORY: &str = "16M";
/// Pages xensim lets a 16 MiB domain populate (its memory plus 1024 slack).
const MAX_PAGES: u64 = (16 << 20) / 4096 + 1024;

const MIB: u64 = 1 << 20;
/// The stream codec's record cap (`MAX_RECORD_LEN`, as libxc's).
const MAX_RECORD_LEN: usize = 128 << 20;
/// docs/memory.md's terms for a plain HVM restore.
const BASE: u64 = 64 * MIB;
const READER_BUFFER: u64 = MAX_RECORD_LEN as u64;
const ENTRY_BYTES: u64 = 16;
const MAX_ENTRIES: u64 = (MAX_RECORD_LEN as u64 - 8) / 8;
/// The HVM_CONTEXT kept until the end (restore's `MAX_HVM_CONTEXT`), twice:
/// libxenctrl bounces it for the hypercall.
const MAX_HVM_CONTEXT: usize = 16 << 20;
const STASHED_BLOB: u64 = 2 * MAX_HVM_CONTEXT as u64;
const POPULATED_BYTES_PER_PAGE: u64 = 58;

const PAGE_DATA: u32 = 0x1;
const HVM_CONTEXT: u32 = 0x9;
const END: u32 = 0x0;
const X86_CPUID_POLICY: u32 = 0x11;

/// PAGE_DATA type nibbles.
const NOTAB: u64 = 0x0;
const XALLOC: u64 = 0xe;
const XTAB: u64 = 0xf;
const BROKEN: u64 = 0xd;

/// The documented bound for a plain HVM restore into a domain of
/// `max_pages`, in bytes.
fn documented_bound(max_pages: u64) -> u64 {
    BASE + READER_BUFFER
        + ENTRY_BYTES * MAX_ENTRIES
        + STASHED_BLOB
        + POPULATED_BYTES_PER_PAGE * max_pages
}

/// A PAGE_DATA body: `entries` (type nibble, pfn), a page of 0x5a for each
/// entry whose type carries data.
fn page_data(entries: &[(u64, u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 8 * entries.len());
    v.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    let mut pages = 0;
    for &(ty, pfn) in entries {
        v.extend_from_slice(&((ty << 60) | pfn).to_le_bytes());
        if !matches!(ty, XALLOC | XTAB | BROKEN) {
            pages += 1;
        }
    }
    v.resize(v.len() + 4096 * pages, 0x5a);
    v
}

impl Parsed {
    fn index_of(&self, rtype: u32) -> usize {
        self.records
            .iter()
            .position(|(t, _)| *t == rtype)
            .unwrap_or_else(|| panic!("no record of type {rtype:#x}"))
    }

    /// The stream with `raw` (whole records) before the first record of
    /// `before`, and the body of each `(type, body)` in `replace` swapped in.
    fn build(&self, before: u32, raw: &[u8], replace: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let at = self.index_of(before);
        let mut v = self.headers.clone();
        for (i, (t, body)) in self.records.iter().enumerate() {
            if i == at {
                v.extend_from_slice(raw);
            }
            let body = replace
                .iter()
                .find(|(rt, _)| rt == t)
                .map_or(body, |(_, b)| b);
            v.extend_from_slice(&record(*t, body));
        }
        v
    }
}

/// Peak RSS (KiB) and the output of `xg-restore` into a fresh empty domain,
/// preloaded with libxcmig (`xcmig`) or with Debian's libxenguest.
fn measure(h: &Host, name: &str, img: &std::path::Path, xcmig: bool) -> (u64, Output, Duration) {
    let out = h.xensim(&["create", "--type", "hvm", "--memory", MEMORY, "--empty"]);
    let dst = Host::last_line(&out);
    let rss_file = h.dir.join(&format!("{name}-{xcmig}.rss"));
    let mut c = Command::new("/usr/bin/time");
    c.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(h.env.capi("xg-restore"))
        .arg(&dst)
        .arg(img)
        .env("LD_LIBRARY_PATH", h.env.ld_library_path())
        .env("XENSIM_HOST", h.path())
        .env_remove("LD_PRELOAD")
        .env_remove("XENSIM_FAULTS");
    if xcmig {
        c.env("LD_PRELOAD", &h.env.libxcmig);
    }
    let t = Instant::now();
    let out = run(&mut c, CASE_TIMEOUT);
    let took = t.elapsed();
    let text = std::fs::read_to_string(&rss_file).unwrap_or_default();
    // GNU time writes "Command exited with non-zero status N" first when
    // the child fails; the figure is the last line.
    let kib = text
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            panic!(
                "{name}: no RSS figure from GNU time: {text:?}\n{}",
                describe(&out)
            )
        });
    // The domain goes, so that the host's memory does not pile up.
    let _ = run(
        Command::new(h.env.xensim())
            .args(["domain", "destroy", "--host"])
            .arg(h.path())
            .arg(&dst),
        CASE_TIMEOUT,
    );
    (kib, out, took)
}

fn outcome(out: &Output) -> String {
    if let Some(sig) = out.status.signal() {
        return format!("killed by signal {sig}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find(|l| l.contains("xg-restore: result rc="))
        .map(|l| l.trim_start_matches("xg-restore: result ").to_owned())
        .unwrap_or_else(|| format!("exit {:?}, no result line", out.status.code()))
}

#[test]
fn worst_streams_keep_peak_rss_under_the_documented_bound() {
    let h = Host::new("capi-memory-bound");
    let out = h.xensim(&[
        "create", "--type", "hvm", "--memory", MEMORY, "--fill", "mixed", "--seed", "9",
    ]);
    let src = Host::last_line(&out);
    let good_img = h.dir.join("valid.img");
    run_ok(h.harness("xg-save", true).arg(&src).arg(&good_img));
    let good = std::fs::read(&good_img).expect("read saved stream");
    let p = Parsed::parse(&good);

    let huge = 1u64 << 33;
    let max_pfn = (1u64 << 52) - 1;
    let scattered: Vec<(u64, u64)> = (0..1024).map(|k| (NOTAB, huge + (k << 20))).collect();
    // Built as bytes: as a list of entries it would take 256 MiB here.
    let max_page_data = {
        let mut body = Vec::with_capacity(MAX_RECORD_LEN);
        body.extend_from_slice(&(MAX_ENTRIES as u32).to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        for k in 0..MAX_ENTRIES {
            body.extend_from_slice(&((XTAB << 60) | (huge + k * 4097)).to_le_bytes());
        }
        record(PAGE_DATA, &body)
    };
    let many_records: Vec<u8> = (0..100_000u64)
        .flat_map(|k| record(PAGE_DATA, &page_data(&[(XTAB, huge + (k << 12))])))
        .collect();
    let cpuid_max = vec![0u8; (MAX_RECORD_LEN / 24) * 24];
    let context_max = vec![0u8; MAX_HVM_CONTEXT];
    let context_record = vec![0u8; MAX_RECORD_LEN];
    let optional_max = record(0x8000_0123, &vec![0u8; MAX_RECORD_LEN]);
    let claim_max = {
        let mut v = Vec::new();
        v.extend_from_slice(&0x8000_0123u32.to_le_bytes());
        v.extend_from_slice(&(MAX_RECORD_LEN as u32).to_le_bytes());
        v.extend_from_slice(&[0u8; 4096]);
        v
    };

    type Build<'a> = Box<dyn Fn() -> Vec<u8> + 'a>;
    let cases: Vec<(&str, Build)> = vec![
        ("control (valid stream)", Box::new(|| good.clone())),
        (
            "one data page at pfn 2^33",
            Box::new(|| {
                p.build(
                    PAGE_DATA,
                    &record(PAGE_DATA, &page_data(&[(NOTAB, huge)])),
                    &[],
                )
            }),
        ),
        (
            "one data page at pfn 2^52-1",
            Box::new(|| {
                p.build(
                    PAGE_DATA,
                    &record(PAGE_DATA, &page_data(&[(NOTAB, max_pfn)])),
                    &[],
                )
            }),
        ),
        (
            "XALLOC at pfn 2^40",
            Box::new(|| {
                p.build(
                    PAGE_DATA,
                    &record(PAGE_DATA, &page_data(&[(XALLOC, 1 << 40)])),
                    &[],
                )
            }),
        ),
        (
            "XTAB and BROKEN at pfns 2^33, 2^51",
            Box::new(|| {
                p.build(
                    PAGE_DATA,
                    &record(PAGE_DATA, &page_data(&[(XTAB, huge), (BROKEN, 1 << 51)])),
                    &[],
                )
            }),
        ),
        (
            "a full batch of 1024 pages at scattered pfns above 2^33",
            Box::new(|| p.build(PAGE_DATA, &record(PAGE_DATA, &page_data(&scattered)), &[])),
        ),
        (
            "maximal PAGE_DATA: 16 Mi XTAB entries above 2^33",
            Box::new(|| p.build(PAGE_DATA, &max_page_data, &[])),
        ),
        (
            "100000 PAGE_DATA records, one XTAB pfn each above 2^33",
            Box::new(|| p.build(PAGE_DATA, &many_records, &[])),
        ),
        (
            "16 MiB HVM_CONTEXT, then maximal PAGE_DATA",
            Box::new(|| p.build(END, &max_page_data, &[(HVM_CONTEXT, context_max.clone())])),
        ),
        (
            "HVM_CONTEXT of 128 MiB",
            Box::new(|| p.build(PAGE_DATA, &[], &[(HVM_CONTEXT, context_record.clone())])),
        ),
        (
            "maximal X86_CPUID_POLICY",
            Box::new(|| p.build(PAGE_DATA, &[], &[(X86_CPUID_POLICY, cpuid_max.clone())])),
        ),
        (
            "maximal optional record",
            Box::new(|| p.build(PAGE_DATA, &optional_max, &[])),
        ),
        (
            "record claiming 128 MiB, 4 KiB present",
            Box::new(|| {
                let mut v = p.build(PAGE_DATA, &[], &[]);
                v.truncate(HEADERS + 8 + p.records[0].1.len().div_ceil(8) * 8);
                v.extend_from_slice(&claim_max);
                v
            }),
        ),
    ];

    let bound = documented_bound(MAX_PAGES);
    let mut table = vec![
        format!(
            "Peak RSS of `xg-restore` (GNU time %M) on xensim, 16 MiB HVM domain; documented bound {} MiB.\n",
            bound / MIB
        ),
        "| stream | xcmig peak RSS | xcmig result | libxenguest 4.17 peak RSS | libxenguest result |".into(),
        "|---|---:|---|---:|---|".into(),
    ];
    let mut failures = Vec::new();
    for (name, build) in &cases {
        let img = h.dir.join("case.img");
        std::fs::write(&img, build()).expect("write stream");
        let (ours, out, took) = measure(&h, "xcmig", &img, true);
        let (theirs, lout, ltook) = measure(&h, "libxenguest", &img, false);
        let (ours_r, theirs_r) = (outcome(&out), outcome(&lout));
        eprintln!(
            "{name}: xcmig {ours} KiB ({ours_r}, {:.1}s), libxenguest {theirs} KiB ({theirs_r}, {:.1}s)",
            took.as_secs_f64(),
            ltook.as_secs_f64()
        );
        table.push(format!(
            "| {name} | {:.1} MiB | {ours_r} | {:.1} MiB | {theirs_r} |",
            ours as f64 / 1024.0,
            theirs as f64 / 1024.0
        ));
        if ours * 1024 > bound {
            failures.push(format!(
                "{name}: peak RSS {ours} KiB over the bound of {} KiB",
                bound / 1024
            ));
        }
        if out.status.signal().is_some() || !matches!(out.status.code(), Some(0 | 1)) {
            failures.push(format!(
                "{name}: xg-restore did not end cleanly\n{}",
                describe(&out)
            ));
        }
        let _ = std::fs::remove_file(&img);
    }
    let text = table.join("\n") + "\n";
    eprintln!("{text}");
    if let Some(path) = std::env::var_os("XCMIG_MEMORY_BOUND_RESULTS") {
        std::fs::write(&path, &text).expect("write results");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The whole-restore fuzzer's HVM inputs that `xg-restore` can replay
/// (mode byte plain: bits 0-1 are 0 or 3, see fuzz/src/restore.rs): the
/// committed seeds and the campaigns' finds (fuzz/corpus/restore_hvm and
/// restore_hvm.found.tar.xz), without the mode byte.
fn fuzz_hvm_streams(scratch: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut dirs = vec![corpus.join("restore_hvm")];
    let packed = corpus.join("restore_hvm.found.tar.xz");
    if packed.exists() {
        let found = scratch.join("found");
        std::fs::create_dir_all(&found).expect("scratch directory");
        run_ok(
            Command::new("tar")
                .arg("-xJf")
                .arg(&packed)
                .arg("-C")
                .arg(&found),
        );
        dirs.push(found);
    }
    let mut streams = Vec::new();
    for dir in dirs {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("corpus directory")
            .map(|e| e.expect("directory entry").path())
            .collect();
        names.sort();
        for path in names {
            let input = std::fs::read(&path).expect("read corpus input");
            if let Some((&mode, stream)) = input.split_first() {
                if mode & 3 == 0 || mode & 3 == 3 {
                    let name = path.file_name().expect("file name").to_string_lossy();
                    streams.push((name.into_owned(), stream.to_vec()));
                }
            }
        }
    }
    streams
}

#[test]
fn the_fuzzers_hvm_corpus_keeps_peak_rss_under_the_documented_bound() {
    let h = Host::new("capi-memory-bound-fuzz");
    let streams = fuzz_hvm_streams(h.dir.path());
    assert!(
        streams.len() >= 4,
        "expected the committed plain HVM seeds at least, found {}",
        streams.len()
    );
    let bound = documented_bound(MAX_PAGES);
    let (mut worst, mut worst_name) = (0u64, String::new());
    let mut failures = Vec::new();
    let img = h.dir.join("fuzz.img");
    for (name, stream) in &streams {
        std::fs::write(&img, stream).expect("write stream");
        let (kib, out, _) = measure(&h, "fuzz", &img, true);
        if kib > worst {
            (worst, worst_name) = (kib, name.clone());
        }
        if kib * 1024 > bound {
            failures.push(format!(
                "{name}: peak RSS {kib} KiB over {} KiB",
                bound / 1024
            ));
        }
        if out.status.signal().is_some() || !matches!(out.status.code(), Some(0 | 1)) {
            failures.push(format!(
                "{name}: xg-restore did not end cleanly\n{}",
                describe(&out)
            ));
        }
    }
    eprintln!(
        "{} fuzz corpus streams: worst peak RSS {:.1} MiB ({worst_name}), bound {} MiB",
        streams.len(),
        worst as f64 / 1024.0,
        bound / MIB
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
