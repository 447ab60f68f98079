//! x86 PV evidence for xcmig against Debian's libxenguest on xensim
//! (issue 9), through the unmodified C harnesses of `capi-tests/` and
//! Debian's `libxl-save-helper`, with `LD_PRELOAD=libxcmig.so` for the
//! xcmig side (its binding proved with `LD_DEBUG=bindings`):
//!
//! * the saver x restorer matrix in {xcmig, libxenguest}^2 for 64-bit and
//!   32-bit guests, both p2m layouts, non-live and live with `xensim domain
//!   run` dirtying memory: every restore, on another host with other MFNs,
//!   digests as the source at suspend; every stream passes
//!   `verify-stream-v2` and `xcmig verify`;
//! * record equality: for the same suspended guest, xcmig's X86_PV_INFO,
//!   X86_PV_P2M_FRAMES, SHARED_INFO, vCPU records and normalised page-table
//!   pages equal libxenguest's;
//! * `libxl-save-helper` under preload for PV: save, restore, live, Remus;
//! * a chain over three hosts, libxenguest and xcmig alternating.
//!
//! Prerequisites come from `make build` (xensim, target/xensim/lib,
//! target/capi-tests, target/release/xcmig); a missing one fails the test
//! with that step.

#![cfg(feature = "xen")]

mod capi_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use capi_support::host::{restore_argv, save_argv, Host};
use capi_support::save_helper::{run_helper, HelperRun};
use capi_support::{assert_bound_to_xcmig, describe, run, verify_stream, Env, TIMEOUT};
use xcmig_stream::{DomainType, PageType, Reader, Record, RecordType, X86PvInfo};

/// One PV guest shape.
#[derive(Debug, Clone, Copy)]
struct Pv {
    bits: u32,
    p2m: &'static str,
}

const PV64_LINEAR: Pv = Pv {
    bits: 64,
    p2m: "linear",
};
const PV64_TREE: Pv = Pv {
    bits: 64,
    p2m: "tree",
};
const PV32_LINEAR: Pv = Pv {
    bits: 32,
    p2m: "linear",
};
const PV32_TREE: Pv = Pv {
    bits: 32,
    p2m: "tree",
};

impl Pv {
    fn tag(self) -> String {
        format!("pv{}-{}", self.bits, self.p2m)
    }

    /// A guest of this shape with [`VCPUS`] vCPUs, each with non-zero MSRs
    /// of Xen's PV list (so the streams carry X86_PV_VCPU_MSRS records,
    /// which the digest covers).
    fn create(self, h: &Host, seed: u64) -> u32 {
        let domid = h.create_pv(self.bits, self.p2m, VCPUS, seed);
        let host = xensim::Host::open(&h.path()).expect("open the host");
        let d = host.domain(domid).expect("the new domain");
        for v in 0..VCPUS {
            // MSR_SPEC_CTRL.IBRS and MSR_TSC_AUX.
            d.set_vcpu_msrs(v, &[(0x48, 1), (0xc000_0103, seed + u64::from(v))])
                .expect("set the guest's MSRs");
        }
        domid
    }
}

/// vCPUs of every guest: the vCPU records of more than one.
const VCPUS: u32 = 2;

/// Who runs `xc_domain_save`/`xc_domain_restore`: the harness plain
/// (Debian's libxenguest) or with libxcmig preloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Libxenguest,
    Xcmig,
}

const TOOLS: [Tool; 2] = [Tool::Libxenguest, Tool::Xcmig];

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Libxenguest => "libxenguest",
            Tool::Xcmig => "xcmig",
        }
    }

    fn other(self) -> Tool {
        match self {
            Tool::Libxenguest => Tool::Xcmig,
            Tool::Xcmig => Tool::Libxenguest,
        }
    }
}

/// Another host for restores, whose first domain and frame window are
/// taken by a small bystander, so a restored guest gets another domid and
/// other MFNs than its source (a pfn/MFN mix-up then shows as a wrong page).
fn other_host(tag: &str) -> Host {
    let h = Host::new(tag);
    h.xensim(&["create", "--type", "pv", "--memory", "16M", "--empty"]);
    h
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The xg-save or xg-restore harness as `tool`; with xcmig, under
/// `LD_DEBUG=bindings` so the binding can be checked.
fn harness(h: &Host, name: &str, tool: Tool) -> Command {
    let mut c = h.harness(name, tool == Tool::Xcmig);
    if tool == Tool::Xcmig {
        c.env("LD_DEBUG", "bindings");
    }
    c
}

/// Saves `domid` of `h` into `img` with `tool` (live: `--live --stats`,
/// whose precopy policy prints each round). Checks the call succeeded, its
/// binding, and that the stream is a PV stream both verifiers accept.
/// Returns the harness's stderr and the parsed stream.
fn save(h: &Host, domid: u32, tool: Tool, live: bool, img: &Path) -> (String, PvStream) {
    let mut c = harness(h, "xg-save", tool);
    if live {
        c.args(["--live", "--stats"]);
    }
    let out = run(c.arg(domid.to_string()).arg(img), TIMEOUT);
    assert!(
        out.status.success(),
        "{} save of PV domain {domid} failed\n{}",
        tool.name(),
        describe(&out)
    );
    let err = stderr(&out);
    if tool == Tool::Xcmig {
        assert_bound_to_xcmig(&err, "xg-save", "xc_domain_save", &h.env.libxcmig);
    }
    assert!(err.contains("xg-save: result rc=0"), "{err}");
    let stream = check_stream(&h.env, img);
    (err, stream)
}

/// Restores `img` with `tool` into a new empty PV domain of `h`; the
/// restored domain must digest as `digest`. Returns its domid.
fn restore(h: &Host, tool: Tool, img: &Path, digest: &str, what: &str) -> u32 {
    let dst = h.create_empty_with_vcpus("pv", VCPUS);
    let out = run(
        harness(h, "xg-restore", tool).arg(dst.to_string()).arg(img),
        TIMEOUT,
    );
    assert!(
        out.status.success(),
        "{what}: {} restore failed\n{}",
        tool.name(),
        describe(&out)
    );
    if tool == Tool::Xcmig {
        assert_bound_to_xcmig(
            &stderr(&out),
            "xg-restore",
            "xc_domain_restore",
            &h.env.libxcmig,
        );
    }
    assert_eq!(
        h.digest(dst),
        digest,
        "{what}: the domain {} restored differs from the source at suspend",
        tool.name()
    );
    dst
}

/// `verify-stream-v2` and `xcmig verify` accept the stream; it is a
/// complete x86 PV stream. Returns it parsed.
fn check_stream(env: &Env, img: &Path) -> PvStream {
    verify_stream(img);
    let out = run(
        Command::new(env.xcmig_cli())
            .args(["verify", "-f", "libxc"])
            .arg(img),
        TIMEOUT,
    );
    assert!(
        out.status.success(),
        "xcmig verify rejected {}\n{}",
        img.display(),
        describe(&out)
    );
    let s = PvStream::read(img);
    assert_eq!(s.domain_type, Some(DomainType::X86Pv), "{}", img.display());
    assert!(s.ended, "{}: no END record", img.display());
    s
}

/// What the PV comparison looks at in a stream (parsed with the
/// xcmig-stream codec): every X86_PV_INFO, P2M_FRAMES and SHARED_INFO
/// record in order; the last vCPU record of each kind and vCPU, and the
/// last copy of each page.
#[derive(Debug, Default)]
struct PvStream {
    domain_type: Option<DomainType>,
    ended: bool,
    pv_info: Vec<X86PvInfo>,
    /// X86_PV_P2M_FRAMES: (start pfn, end pfn, frames).
    p2m_frames: Vec<(u32, u32, Vec<u64>)>,
    shared_info: Vec<Vec<u8>>,
    /// vCPU records by (record type, vCPU).
    vcpus: BTreeMap<(u32, u32), Vec<u8>>,
    /// Pages typed L1..L4 (pinned or not): type and data, last sent.
    page_tables: BTreeMap<u64, (PageType, Vec<u8>)>,
    /// Times each pfn was sent with data.
    sends: BTreeMap<u64, u32>,
}

fn is_page_table(t: PageType) -> bool {
    use PageType::*;
    matches!(
        t,
        L1Tab | L2Tab | L3Tab | L4Tab | L1TabPin | L2TabPin | L3TabPin | L4TabPin
    )
}

impl PvStream {
    fn read(img: &Path) -> PvStream {
        let file = std::fs::File::open(img).expect("open the stream");
        let mut r = Reader::new(std::io::BufReader::new(file))
            .unwrap_or_else(|e| panic!("{}: {e}", img.display()));
        let mut s = PvStream {
            domain_type: Some(r.domain_header().domain_type),
            ..PvStream::default()
        };
        while let Some(rec) = r
            .next_record()
            .unwrap_or_else(|e| panic!("{}: {e}", img.display()))
        {
            match rec {
                Record::End => s.ended = true,
                Record::X86PvInfo(i) => s.pv_info.push(i),
                Record::X86PvP2mFrames(f) => {
                    s.p2m_frames
                        .push((f.start_pfn, f.end_pfn, f.frames.to_vec()))
                }
                Record::SharedInfo(b) => s.shared_info.push(b.to_vec()),
                Record::X86PvVcpu(v) => {
                    s.vcpus
                        .insert((v.kind.record_type().0, v.vcpu_id), v.context.to_vec());
                }
                Record::PageData(pd) => {
                    for (e, page) in pd.pages() {
                        let Some(data) = page else { continue };
                        *s.sends.entry(e.pfn).or_default() += 1;
                        if is_page_table(e.page_type) {
                            s.page_tables.insert(e.pfn, (e.page_type, data.to_vec()));
                        } else {
                            s.page_tables.remove(&e.pfn);
                        }
                    }
                }
                _ => {}
            }
        }
        s
    }

    fn resent(&self) -> usize {
        self.sends.values().filter(|&&n| n > 1).count()
    }
}

/// The PV records of a stream of a `pv` guest: one X86_PV_INFO of its
/// width, P2M_FRAMES, SHARED_INFO, the vCPU 0 BASIC record, page tables.
fn assert_pv_records(s: &PvStream, pv: Pv, who: &str) {
    let bytes = (pv.bits / 8) as u8;
    let levels = if pv.bits == 64 { 4 } else { 3 };
    assert_eq!(
        s.pv_info,
        [X86PvInfo {
            guest_width: bytes,
            pt_levels: levels
        }],
        "{who}: X86_PV_INFO"
    );
    assert!(!s.p2m_frames.is_empty(), "{who}: no X86_PV_P2M_FRAMES");
    assert!(!s.shared_info.is_empty(), "{who}: no SHARED_INFO");
    for v in 0..VCPUS {
        for t in [
            RecordType::X86_PV_VCPU_BASIC,
            RecordType::X86_PV_VCPU_EXTENDED,
            RecordType::X86_PV_VCPU_XSAVE,
            RecordType::X86_PV_VCPU_MSRS,
        ] {
            assert!(
                s.vcpus.contains_key(&(t.0, v)),
                "{who}: no record {t:?} for vCPU {v}"
            );
        }
    }
    assert!(!s.page_tables.is_empty(), "{who}: no page-table pages");
}

/// The records a save takes from the guest's state, compared record by
/// record: X86_PV_INFO, X86_PV_P2M_FRAMES, SHARED_INFO, every vCPU record
/// (BASIC, EXTENDED, XSAVE, MSRS) and the normalised page-table pages
/// (pfns, types and data of the pages typed L1..L4).
fn assert_same_pv_records(ours: &PvStream, theirs: &PvStream, what: &str) {
    assert_eq!(ours.pv_info, theirs.pv_info, "{what}: X86_PV_INFO");
    assert_eq!(
        ours.p2m_frames, theirs.p2m_frames,
        "{what}: X86_PV_P2M_FRAMES"
    );
    assert_eq!(ours.shared_info.len(), theirs.shared_info.len());
    for (i, (a, b)) in ours.shared_info.iter().zip(&theirs.shared_info).enumerate() {
        assert!(
            a == b,
            "{what}: SHARED_INFO #{i} differs at octets {:?}",
            differing_offsets(a, b)
        );
    }
    let keys = |s: &PvStream| s.vcpus.keys().copied().collect::<Vec<_>>();
    assert_eq!(
        keys(ours),
        keys(theirs),
        "{what}: vCPU records (record type, vCPU)"
    );
    for (k, a) in &ours.vcpus {
        let b = &theirs.vcpus[k];
        assert!(
            a == b,
            "{what}: vCPU record type {:#x} of vCPU {} differs ({} vs {} octets) at octets {:?}",
            k.0,
            k.1,
            a.len(),
            b.len(),
            differing_offsets(a, b)
        );
    }
    let pfns = |s: &PvStream| s.page_tables.keys().copied().collect::<BTreeSet<_>>();
    assert_eq!(
        pfns(ours),
        pfns(theirs),
        "{what}: the pfns sent as page tables"
    );
    for (pfn, (t, a)) in &ours.page_tables {
        let (u, b) = &theirs.page_tables[pfn];
        assert_eq!(t, u, "{what}: page type of pfn {pfn:#x}");
        assert!(
            a == b,
            "{what}: normalised {t:?} page at pfn {pfn:#x} differs at octets {:?}",
            differing_offsets(a, b)
        );
    }
}

/// The first few offsets where two blobs differ (and a length mismatch).
fn differing_offsets(a: &[u8], b: &[u8]) -> Vec<usize> {
    let mut v: Vec<usize> = (0..a.len().min(b.len()))
        .filter(|&i| a[i] != b[i])
        .take(16)
        .collect();
    if a.len() != b.len() {
        v.push(a.len().min(b.len()));
    }
    v
}

/// Non-live matrix of one shape, and record equality: one guest, suspended
/// by the first save, is saved by both tools in turn (`first` first). It
/// relies on the guest staying suspended between the two saves: a second
/// `SHUTDOWN_suspend` of a suspended domain changes nothing (xensim runs
/// the guest's suspend code once, on the first), and a non-live save only
/// reads the guest (log-dirty stays off), so both saves see the same
/// suspended guest, which the unchanged digest confirms. Each stream is
/// then restored by both tools on another host.
fn nonlive_matrix(pv: Pv, seed: u64, first: Tool) {
    let a = Host::new(&format!("pv-matrix-{}", pv.tag()));
    let b = other_host(&format!("pv-matrix-dst-{}", pv.tag()));
    let src = pv.create(&a, seed);
    let img = |t: Tool| a.dir.join(&format!("{}.img", t.name()));
    let (_, s1) = save(&a, src, first, false, &img(first));
    let digest = a.digest(src);
    let (_, s2) = save(&a, src, first.other(), false, &img(first.other()));
    assert_eq!(
        a.digest(src),
        digest,
        "the second save changed the suspended guest"
    );
    let (ours, theirs) = if first == Tool::Xcmig {
        (s1, s2)
    } else {
        (s2, s1)
    };
    for (s, who) in [(&ours, "xcmig"), (&theirs, "libxenguest")] {
        assert_pv_records(s, pv, who);
        assert_eq!(s.resent(), 0, "{who}: non-live sends each page once");
    }
    assert_same_pv_records(&ours, &theirs, &pv.tag());
    eprintln!(
        "{}: equal X86_PV_INFO, {} P2M_FRAMES record(s), SHARED_INFO, vCPU records {:?} and {} page-table pages",
        pv.tag(),
        ours.p2m_frames.len(),
        ours.vcpus.keys().collect::<Vec<_>>(),
        ours.page_tables.len()
    );
    for saver in TOOLS {
        for restorer in TOOLS {
            let what = format!(
                "{} non-live, {} save -> {} restore",
                pv.tag(),
                saver.name(),
                restorer.name()
            );
            restore(&b, restorer, &img(saver), &digest, &what);
        }
    }
}

#[test]
fn pv64_linear_nonlive_matrix_restores_identically_and_records_match_libxenguest() {
    nonlive_matrix(PV64_LINEAR, 101, Tool::Libxenguest);
}

#[test]
fn pv64_tree_nonlive_matrix_restores_identically_and_records_match_libxenguest() {
    nonlive_matrix(PV64_TREE, 102, Tool::Xcmig);
}

#[test]
fn pv32_linear_nonlive_matrix_restores_identically_and_records_match_libxenguest() {
    nonlive_matrix(PV32_LINEAR, 103, Tool::Xcmig);
}

#[test]
fn pv32_tree_nonlive_matrix_restores_identically_and_records_match_libxenguest() {
    nonlive_matrix(PV32_TREE, 104, Tool::Libxenguest);
}

/// Precopy rounds after the first that found dirty pages, from the
/// `xg-save --stats` lines (`precopy iteration=I ... dirty_count=C ...`).
fn dirty_rounds(err: &str) -> usize {
    let field = |l: &str, k: &str| -> i64 {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    err.lines()
        .filter_map(|l| l.strip_prefix("xg-save: precopy "))
        .filter(|l| field(l, "iteration") >= 1 && field(l, "dirty_count") > 0)
        .count()
}

/// Live matrix of one shape: for each saver, a fresh guest saved live while
/// `xensim domain run` dirties it (page tables included), the stream
/// restored by both tools on another host.
fn live_matrix(pv: Pv, seed: u64) {
    let a = Host::new(&format!("pv-live-{}", pv.tag()));
    let b = other_host(&format!("pv-live-dst-{}", pv.tag()));
    for (i, saver) in TOOLS.into_iter().enumerate() {
        let src = pv.create(&a, seed + i as u64);
        let worker = a.start_workload(src, "32", "32M", "120");
        std::thread::sleep(Duration::from_millis(300));
        let img = a.dir.join(&format!("live-{}.img", saver.name()));
        let (err, s) = save(&a, src, saver, true, &img);
        let w = worker.join().expect("workload thread");
        assert!(w.status.success(), "workload failed\n{}", describe(&w));
        let rounds = dirty_rounds(&err);
        assert!(
            rounds >= 1,
            "{} live save of {}: no precopy round after the first found dirty pages\n{err}",
            saver.name(),
            pv.tag()
        );
        assert!(s.resent() > 0, "{}: no page was resent", saver.name());
        assert_pv_records(&s, pv, saver.name());
        let digest = a.digest(src);
        for restorer in TOOLS {
            let what = format!(
                "{} live, {} save -> {} restore",
                pv.tag(),
                saver.name(),
                restorer.name()
            );
            restore(&b, restorer, &img, &digest, &what);
        }
        eprintln!(
            "{} live {} save: {rounds} dirty rounds, {} pages resent",
            pv.tag(),
            saver.name(),
            s.resent()
        );
    }
}

#[test]
fn pv64_linear_live_matrix_with_workload_iterates_and_restores_identically() {
    live_matrix(PV64_LINEAR, 111);
}

#[test]
fn pv32_tree_live_matrix_with_workload_iterates_and_restores_identically() {
    live_matrix(PV32_TREE, 113);
}

/// A guest saved on host A by `first`, restored on B by the other tool,
/// run there, saved again by `first` (so each tool saves what the other
/// restored) and restored on C by the other tool: its digest survives.
fn chain(pv: Pv, seed: u64, first: Tool) {
    let tag = format!("{}-{}", pv.tag(), first.name());
    let a = Host::new(&format!("pv-chain-a-{tag}"));
    let b = other_host(&format!("pv-chain-b-{tag}"));
    let c = other_host(&format!("pv-chain-c-{tag}"));
    c.xensim(&["create", "--type", "pv", "--memory", "16M", "--empty"]);
    let src = pv.create(&a, seed);
    let img1 = a.dir.join("first.img");
    save(&a, src, first, false, &img1);
    let digest = a.digest(src);
    let what = format!("{tag} chain, host B");
    let mid = restore(&b, first.other(), &img1, &digest, &what);
    // As a toolstack does after a restore: the guest runs (its resume code
    // rebuilds its p2m references and start_info), then is saved again.
    b.unpause(mid);
    let img2 = b.dir.join("second.img");
    save(&b, mid, first, false, &img2);
    assert_eq!(
        b.digest(mid),
        digest,
        "{tag}: the restored guest, run and suspended again, digests as the original"
    );
    let what = format!("{tag} chain, host C");
    restore(&c, first.other(), &img2, &digest, &what);
}

#[test]
fn pv64_tree_guest_keeps_its_digest_over_three_hosts_with_the_tools_alternating() {
    chain(PV64_TREE, 121, Tool::Libxenguest);
    chain(PV64_TREE, 122, Tool::Xcmig);
}

#[test]
fn pv32_linear_guest_keeps_its_digest_over_three_hosts_with_the_tools_alternating() {
    chain(PV32_LINEAR, 123, Tool::Libxenguest);
    chain(PV32_LINEAR, 124, Tool::Xcmig);
}

// Debian's libxl-save-helper, driven as libxl drives it, with libxcmig
// preloaded (and for Remus, without, to compare).

fn assert_helper_ok(run: &HelperRun, what: &str) {
    assert_eq!(
        run.complete,
        Some((0, 0)),
        "{what} through libxl-save-helper failed\n{}",
        run.log_text()
    );
    assert_eq!(run.exit_code, Some(0), "{what}\n{}", run.log_text());
}

/// Restores `img` through the helper into a new empty PV domain of `h`;
/// returns the run and the domid.
fn helper_restore(
    h: &Host,
    preload: Option<&Path>,
    img: &Path,
    bindings: bool,
) -> (HelperRun, u32) {
    let dst = h.create_empty_with_vcpus("pv", VCPUS);
    let host = h.path();
    let mut cmd = h.helper_cmd(&host, preload);
    if bindings {
        cmd.extra_env.push(("LD_DEBUG", "bindings".into()));
    }
    // cbflags 0x300 = static_data_done + restore_results.
    let argv = restore_argv(-1, dst, 0x300, 0);
    let r = run_helper(&cmd, &argv, img, false, |_| 0);
    assert_helper_ok(&r, "restore");
    let (store, console) = r.restore_results.expect("restore_results sent");
    assert!(
        store != 0 && console != 0,
        "store {store:#x} console {console:#x}"
    );
    (r, dst)
}

/// Non-live (bindings checked) and live (with a workload, several rounds)
/// saves through the preloaded helper, each restored through the preloaded
/// helper on another host.
fn preloaded_helper_round_trip(pv: Pv, seed: u64, live: bool) {
    let a = Host::new(&format!("pv-helper-{}", pv.tag()));
    let b = other_host(&format!("pv-helper-dst-{}", pv.tag()));
    let src = pv.create(&a, seed);
    let img = a.dir.join("helper.img");
    let host = a.path();
    let mut cmd = a.helper_cmd(&host, Some(&a.env.libxcmig));
    cmd.extra_env.push(("LD_DEBUG", "bindings".into()));
    let worker = live.then(|| {
        let w = a.start_workload(src, "32", "32M", "120");
        std::thread::sleep(Duration::from_millis(300));
        w
    });
    // xcflags 1 = XCFLAGS_LIVE; cbflags 0x88 = suspend + switch_qemu_logdirty.
    let argv = save_argv(-1, src, u32::from(live), 0x88, 0);
    let save = run_helper(&cmd, &argv, &img, true, |_| a.suspend_reply(src));
    if let Some(w) = worker {
        let w = w.join().expect("workload thread");
        assert!(w.status.success(), "workload failed\n{}", describe(&w));
    }
    assert_helper_ok(&save, "save");
    assert_bound_to_xcmig(
        &save.stderr,
        "libxl-save-helper",
        "xc_domain_save",
        &a.env.libxcmig,
    );
    // Only an HVM save switches qemu's log-dirty (libxenguest's HVM setup
    // and cleanup); a PV guest has no device model memory to track.
    assert_eq!(save.callbacks, ["suspend"], "{}", save.log_text());
    assert!(
        save.logs.iter().any(|(_, c, _)| c == "xc"),
        "no xc log forwarded\n{}",
        save.log_text()
    );
    let s = check_stream(&a.env, &img);
    assert_pv_records(&s, pv, "xcmig via libxl-save-helper");
    if live {
        let iterations: BTreeSet<&str> = save
            .progress
            .iter()
            .map(|(_, what, _, _)| what.as_str())
            .filter(|w| w.starts_with("Frames iteration"))
            .collect();
        assert!(
            iterations.len() >= 2,
            "expected several pre-copy rounds, saw {iterations:?}"
        );
        assert!(s.resent() > 0, "live: no page was resent");
    }
    let digest = a.digest(src);
    let (r, dst) = helper_restore(&b, Some(&b.env.libxcmig), &img, true);
    assert_bound_to_xcmig(
        &r.stderr,
        "libxl-save-helper",
        "xc_domain_restore",
        &b.env.libxcmig,
    );
    assert_eq!(r.callbacks, ["static_data_done(0)"], "{}", r.log_text());
    assert_eq!(
        b.digest(dst),
        digest,
        "helper restore differs\n{}",
        r.log_text()
    );
}

#[test]
fn preloaded_libxl_save_helper_saves_and_restores_pv32_linear() {
    preloaded_helper_round_trip(PV32_LINEAR, 131, false);
}

#[test]
fn preloaded_libxl_save_helper_live_saves_busy_pv64_tree_and_restores_identically() {
    preloaded_helper_round_trip(PV64_TREE, 132, true);
}

/// A Remus save of a PV guest (two checkpoints, then replication ends) and
/// the failover restore through libxl-save-helper, with libxcmig preloaded
/// or not; returns the callbacks seen on each side.
fn remus_through_helper(pv: Pv, preload: Option<&Path>) -> (Vec<String>, Vec<String>) {
    let who = if preload.is_some() {
        "xcmig"
    } else {
        "libxenguest"
    };
    let h = Host::new(&format!("pv-remus-{who}"));
    let b = other_host(&format!("pv-remus-dst-{who}"));
    let src = pv.create(&h, 141);
    let img = h.dir.join("remus.img");
    let host = h.path();
    let cmd = h.helper_cmd(&host, preload);
    let save = h.remus_save(&cmd, src, &img, who);
    // The guest runs again after the last postcopy; its state at the last
    // checkpoint is what a failover restores. Suspend it to compare.
    assert_eq!(h.suspend_reply(src), 1, "suspending the primary");
    let digest = h.digest(src);

    let dst = b.create_empty_with_vcpus("pv", VCPUS);
    let bhost = b.path();
    let bcmd = b.helper_cmd(&bhost, preload);
    let restore = b.remus_failover(&bcmd, dst, &img, &digest, who);
    (save.callbacks, restore.callbacks)
}

#[test]
fn preloaded_libxl_save_helper_remus_checkpoints_pv64_like_libxenguest_and_fails_over() {
    let libxcmig = Env::locate().require_libxcmig();
    let ours = remus_through_helper(PV64_LINEAR, Some(&libxcmig));
    let theirs = remus_through_helper(PV64_LINEAR, None);
    assert_eq!(
        ours, theirs,
        "callback sequences differ (xcmig, libxenguest)"
    );
}
