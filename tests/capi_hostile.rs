//! Hostile input through the C entry point: malformed and truncated streams
//! fed to `xc_domain_restore` (the `xg-restore` harness with libxcmig
//! preloaded, on xensim) each return -1 with a message naming the problem
//! and a non-zero errno: no crash, no hang (every run has a deadline).
//!
//! The streams are mutations of one valid stream saved from a small HVM
//! guest; a control case restores that stream unmodified and must succeed.
//!
//! Prerequisites come from `make build` (xensim, target/xensim/lib,
//! target/capi-tests); a missing one fails the test with that step.

#![cfg(feature = "xen")]

mod capi_support;

use std::process::Output;
use std::time::Duration;

use capi_support::host::Host;
use capi_support::{describe, run, run_ok};

/// One restore of a malformed stream must finish well within this.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);
/// The source guest's memory: small, so that the suite stays fast.
const MEMORY: &str = "16M";

const END: u32 = 0x0;
const PAGE_DATA: u32 = 0x1;
const X86_PV_INFO: u32 = 0x2;
const X86_TSC_INFO: u32 = 0x8;
const HVM_CONTEXT: u32 = 0x9;
const HVM_PARAMS: u32 = 0xa;
const CHECKPOINT: u32 = 0xe;
const STATIC_DATA_END: u32 = 0x10;
const X86_CPUID_POLICY: u32 = 0x11;

/// Image header (24 bytes) plus domain header (16 bytes).
const HEADERS: usize = 40;

/// A little-endian stream split into its headers and records.
#[derive(Clone)]
struct Parsed {
    headers: Vec<u8>,
    records: Vec<(u32, Vec<u8>)>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl Parsed {
    fn parse(stream: &[u8]) -> Parsed {
        let mut records = Vec::new();
        let mut off = HEADERS;
        while off + 8 <= stream.len() {
            let rtype = le32(stream, off);
            let len = le32(stream, off + 4) as usize;
            records.push((rtype, stream[off + 8..off + 8 + len].to_vec()));
            off += 8 + len.div_ceil(8) * 8;
        }
        assert_eq!(off, stream.len(), "saved stream does not parse");
        Parsed {
            headers: stream[..HEADERS].to_vec(),
            records,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut v = self.headers.clone();
        for (t, body) in &self.records {
            v.extend_from_slice(&record(*t, body));
        }
        v
    }

    /// Offset of the first record of type `rtype`.
    fn offset_of(&self, rtype: u32) -> usize {
        let mut off = HEADERS;
        for (t, body) in &self.records {
            if *t == rtype {
                return off;
            }
            off += 8 + body.len().div_ceil(8) * 8;
        }
        panic!("no record of type {rtype:#x}");
    }

    fn index_of(&self, rtype: u32) -> usize {
        self.records
            .iter()
            .position(|(t, _)| *t == rtype)
            .unwrap_or_else(|| panic!("no record of type {rtype:#x}"))
    }

    /// The stream with `rec` inserted before the first record of `before`.
    fn insert_before(&self, before: u32, rec: (u32, Vec<u8>)) -> Vec<u8> {
        let mut p = self.clone();
        p.records.insert(self.index_of(before), rec);
        p.bytes()
    }

    /// The stream with raw bytes `raw` before the first record of `before`.
    fn insert_raw_before(&self, before: u32, raw: Vec<u8>) -> Vec<u8> {
        let mut v = self.bytes();
        let at = self.offset_of(before);
        v.splice(at..at, raw);
        v
    }

    /// The stream with the body of the first record of `rtype` replaced.
    fn replace_body(&self, rtype: u32, body: Vec<u8>) -> Vec<u8> {
        let mut p = self.clone();
        let i = self.index_of(rtype);
        p.records[i].1 = body;
        p.bytes()
    }
}

/// A record: type, length, body, zero padding to 8 bytes.
fn record(rtype: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len() + 7);
    v.extend_from_slice(&rtype.to_le_bytes());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v.resize(8 + body.len().div_ceil(8) * 8, 0);
    v
}

/// `stream` with `bytes` written at `at`.
fn set(stream: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut v = stream.to_vec();
    v[at..at + bytes.len()].copy_from_slice(bytes);
    v
}

/// A PAGE_DATA body of one entry (type nibble `ty`, `pfn`), with `pages`.
fn page_data(ty: u64, pfn: u64, pages: usize) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&((ty << 60) | pfn).to_le_bytes());
    v.resize(v.len() + 4096 * pages, 0x5a);
    v
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Saves a small HVM guest with the preloaded harness; the stream's bytes.
fn valid_stream(h: &Host) -> Vec<u8> {
    let out = h.xensim(&[
        "create", "--type", "hvm", "--memory", MEMORY, "--fill", "mixed", "--seed", "7",
    ]);
    let src = Host::last_line(&out);
    let img = h.dir.join("valid.img");
    run_ok(h.harness("xg-save", true).arg(&src).arg(&img));
    std::fs::read(&img).expect("read saved stream")
}

fn empty_domain(h: &Host) -> String {
    let out = h.xensim(&["create", "--type", "hvm", "--memory", MEMORY, "--empty"]);
    Host::last_line(&out)
}

/// Restores `bytes` into a fresh empty HVM domain with xcmig.
fn restore(h: &Host, name: &str, bytes: &[u8]) -> Output {
    let img = h.dir.join(&format!("{name}.img"));
    std::fs::write(&img, bytes).expect("write stream");
    let dst = empty_domain(h);
    run(
        h.harness("xg-restore", true).arg(&dst).arg(&img),
        CASE_TIMEOUT,
    )
}

/// The errno the harness printed on its result line.
fn errno(err: &str) -> Option<i32> {
    let line = err.lines().find(|l| l.contains("xg-restore: result rc="))?;
    let rest = line.split("errno=").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A host with a valid stream saved on it, which restores successfully
/// (so that the failures of its mutations are the mutations' doing).
fn setup(tag: &str) -> (Host, Vec<u8>, Parsed) {
    let h = Host::new(tag);
    let good = valid_stream(&h);
    let p = Parsed::parse(&good);
    let out = restore(&h, "control", &good);
    assert!(
        out.status.success(),
        "control restore failed\n{}",
        describe(&out)
    );
    (h, good, p)
}

#[test]
fn reserved_fields_and_padding_are_ignored_on_restore() {
    let (h, good, p) = setup("capi-hostile-reserved");
    // Reserved fields and padding "must be ignored during restore" (spec
    // rev 3; libxenguest ignores them too): these restore successfully.
    let tolerated: Vec<(&str, Vec<u8>)> = vec![
        (
            "reserved option bits",
            set(&good, 16, &0x8000u16.to_be_bytes()),
        ),
        (
            "non-zero record padding",
            p.insert_raw_before(PAGE_DATA, {
                // An optional (bit 31) record of 4 bytes, padded with 0xff.
                let mut r = record(0x8000_0123, &[0; 4]);
                r[12..].fill(0xff);
                r
            }),
        ),
        (
            "PAGE_DATA reserved pfn bits",
            p.insert_before(PAGE_DATA, (PAGE_DATA, page_data(0, (1 << 55) | 3, 1))),
        ),
    ];
    for (name, bytes) in &tolerated {
        let out = restore(&h, &name.replace(' ', "-"), bytes);
        assert!(
            out.status.success() && stderr(&out).contains("xg-restore: result rc=0"),
            "{name}: reserved bits must be ignored on restore\n{}",
            describe(&out)
        );
    }
}

#[test]
fn malformed_and_truncated_streams_return_minus_one_with_a_named_reason() {
    let (h, good, p) = setup("capi-hostile");

    let first_rec = HEADERS;
    let page_off = p.offset_of(PAGE_DATA);
    let page_count = le32(&good, page_off + 8) as usize;
    assert!(page_count > 1, "first PAGE_DATA has {page_count} entries");
    let page_len = le32(&good, page_off + 4) as usize;
    assert!(
        page_len > 8 + 8 * page_count + 100,
        "first PAGE_DATA carries no page data"
    );
    let hvm_context = p.records[p.index_of(HVM_CONTEXT)].1.clone();
    assert_eq!(
        hvm_context[hvm_context.len() - 8..],
        [0; 8],
        "HVM context does not end with an END descriptor"
    );
    let mut pv_header = p.clone();
    pv_header.headers[24..28].copy_from_slice(&1u32.to_le_bytes());

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty input", Vec::new(), "truncated in image header"),
        ("bad marker", set(&good, 0, &[0]), "bad image marker"),
        ("bad id", set(&good, 8, b"XENG"), "bad image id"),
        (
            "version 4",
            set(&good, 12, &4u32.to_be_bytes()),
            "unsupported stream version 4",
        ),
        (
            "PV header into an HVM domain",
            pv_header.bytes(),
            "PV domain into an x86 HVM",
        ),
        (
            "version 1",
            set(&good, 12, &1u32.to_be_bytes()),
            "unsupported stream version 1",
        ),
        ("headers only", good[..HEADERS].to_vec(), "without an END"),
        (
            "reserved domain type",
            set(&good, 24, &7u32.to_le_bytes()),
            "reserved domain type",
        ),
        (
            "page shift 13",
            set(&good, 28, &13u16.to_le_bytes()),
            "page_shift 13",
        ),
        (
            "cut in image header",
            good[..10].to_vec(),
            "truncated in image header",
        ),
        (
            "cut in domain header",
            good[..30].to_vec(),
            "truncated in domain header",
        ),
        (
            "cut in a record header",
            good[..first_rec + 4].to_vec(),
            "truncated in record header",
        ),
        (
            "cut in the PAGE_DATA pfn array",
            good[..page_off + 16 + 8 * (page_count / 2) + 3].to_vec(),
            "truncated in record body",
        ),
        (
            "cut in page data",
            good[..page_off + 16 + 8 * page_count + 100].to_vec(),
            "truncated in record body",
        ),
        (
            "record longer than 128 MiB",
            set(&good, first_rec + 4, &((128u32 << 20) + 8).to_le_bytes()),
            "128 MiB",
        ),
        (
            "unknown mandatory record",
            p.insert_before(PAGE_DATA, (0x1234, vec![0; 8])),
            "unknown mandatory record type 0x1234",
        ),
        (
            "PAGE_DATA count 0",
            p.insert_before(PAGE_DATA, (PAGE_DATA, vec![0; 8])),
            "count is zero",
        ),
        (
            "PAGE_DATA reserved page type",
            p.insert_before(PAGE_DATA, (PAGE_DATA, page_data(5, 7, 0))),
            "reserved page type",
        ),
        (
            "PAGE_DATA pfn beyond the guest",
            p.insert_before(PAGE_DATA, (PAGE_DATA, page_data(0, 1 << 40, 1))),
            "populate_physmap",
        ),
        (
            "PV record in an HVM stream",
            p.insert_before(PAGE_DATA, (X86_PV_INFO, vec![8, 4, 0, 0, 0, 0, 0, 0])),
            "not valid in an",
        ),
        (
            "second STATIC_DATA_END",
            p.insert_before(PAGE_DATA, (STATIC_DATA_END, Vec::new())),
            "second STATIC_DATA_END",
        ),
        (
            "CHECKPOINT in a plain stream",
            p.insert_before(END, (CHECKPOINT, Vec::new())),
            "CHECKPOINT in a plain stream",
        ),
        ("no END", good[..good.len() - 8].to_vec(), "without an END"),
        (
            "X86_TSC_INFO wrong length",
            p.replace_body(X86_TSC_INFO, vec![0; 16]),
            "body_length 16",
        ),
        (
            "HVM_PARAMS count beyond its body",
            p.replace_body(HVM_PARAMS, {
                let mut b = 5u32.to_le_bytes().to_vec();
                b.extend_from_slice(&[0; 4 + 16]);
                b
            }),
            "body_length 24",
        ),
        (
            "CPUID policy not a multiple of 24",
            p.replace_body(X86_CPUID_POLICY, vec![0; 25]),
            "multiple of 24",
        ),
        (
            "HVM_CONTEXT garbage",
            p.replace_body(HVM_CONTEXT, vec![0xa5; 64]),
            "xc_domain_hvm_setcontext failed",
        ),
        (
            "HVM_CONTEXT without its END descriptor",
            p.replace_body(HVM_CONTEXT, hvm_context[..hvm_context.len() - 8].to_vec()),
            "xc_domain_hvm_setcontext failed",
        ),
    ];

    let mut failures = Vec::new();
    for (name, bytes, want) in &cases {
        let out = restore(&h, &name.replace(' ', "-"), bytes);
        let err = stderr(&out);
        let mut problems = Vec::new();
        if out.status.code() != Some(1) {
            problems.push(format!("exit status {:?}, want 1", out.status));
        }
        if !err.contains("xg-restore: result rc=-1") {
            problems.push("no `result rc=-1` line".to_owned());
        }
        match errno(&err) {
            Some(e) if e != 0 => {}
            e => problems.push(format!("errno {e:?}, want non-zero")),
        }
        let reason = err
            .lines()
            .find(|l| l.contains("xc: error:") && l.contains(want));
        // Shown with `--nocapture`: the table of cases and what each said.
        println!("{name}: errno {:?}: {}", errno(&err), reason.unwrap_or("-"));
        if reason.is_none() {
            problems.push(format!("no `xc: error:` line containing {want:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: {}\n{}",
                problems.join("; "),
                describe(&out)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
