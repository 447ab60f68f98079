//! Debian's unmodified libxenguest saves and restores x86 PV guests (64-bit
//! and 32-bit, linear and tree p2m) on xensim, through the C harnesses of
//! `capi-tests/` and through Debian's `libxl-save-helper`: the reference
//! peer the PV engines of xcmig are checked against (issue 9).
//!
//! Each guest is saved on one host and restored into an `--empty` PV domain
//! on another, so every MFN differs between the two: the stream passes
//! `verify-stream-v2`, the restored digest (taken over the pseudo-physical
//! view) equals the source's at suspend, and the restore's own outputs are
//! in place: store/console MFNs of the new domain, start_info rewritten
//! with them and the event channels, grant entries seeded with the MFNs.

mod common;

use std::path::Path;
use std::time::Duration;

use common::capi::{dirty_rounds, precopy_stats, result_line, xg_restore, xg_save};
use common::save_helper::{migrate, HelperRun};
use common::stream::StreamSummary;
use common::{
    check_stream, describe, field, parse_num, Host, CONSOLE_EVTCHN, GUEST_MEMORY, STORE_EVTCHN,
};
/// Stream domain-header guest type of x86 PV.
const DHDR_TYPE_X86_PV: u32 = 1;
/// Record types a PV stream must carry.
const REC_X86_PV_INFO: u32 = 2;
const REC_X86_PV_P2M_FRAMES: u32 = 3;
const REC_X86_PV_VCPU_BASIC: u32 = 4;
const REC_SHARED_INFO: u32 = 7;

/// One PV guest shape.
#[derive(Debug, Clone, Copy)]
struct Pv {
    bits: u32,
    p2m: &'static str,
}

impl Pv {
    fn tag(self) -> String {
        format!("pv{}-{}", self.bits, self.p2m)
    }
}

fn create_pv(host: &Host, pv: Pv, seed: u64) -> u32 {
    let bits = pv.bits.to_string();
    let seed = seed.to_string();
    let out = host.xensim(
        "create",
        &[
            "--type",
            "pv",
            "--address-size",
            &bits,
            "--p2m",
            pv.p2m,
            "--memory",
            GUEST_MEMORY,
            "--fill",
            "mixed",
            "--seed",
            &seed,
        ],
    );
    common::parse_domid(&out)
}

/// Another host for a restore, whose first domain and frame window are
/// taken by a bystander, so the restored guest gets another domid and other
/// MFNs than its source (a pfn/MFN mix-up then shows as a wrong page).
fn other_host(tag: &str) -> Host {
    let h = Host::new(tag);
    h.create_empty("pv", "16M");
    h
}

/// Asserts a stream is a PV stream Debian's verifier accepts, with the PV
/// records, and summarises it.
fn check_pv_stream(img: &Path) -> StreamSummary {
    let s = check_stream(img);
    assert_eq!(s.guest_type, DHDR_TYPE_X86_PV, "domain header type: {s:?}");
    for t in [
        REC_X86_PV_INFO,
        REC_X86_PV_P2M_FRAMES,
        REC_SHARED_INFO,
        REC_X86_PV_VCPU_BASIC,
    ] {
        assert!(s.count(t) >= 1, "no record of type {t:#x}: {s:?}");
    }
    s
}

/// The shared_info/start_info fields a restore writes, checked on the
/// restored (still paused) domain through xensim's own API.
fn assert_pv_plumbing(host: &Host, domid: u32, pv: Pv, store: u64, console: u64) {
    let h = xensim::Host::open(&host.dir).expect("open the host");
    let d = h
        .domain(domid as xensim::DomId)
        .expect("the restored domain");
    assert_eq!(d.address_size(), pv.bits, "restored guest width");
    for (what, mfn) in [("store", store), ("console", console)] {
        assert!(
            d.mfn_to_pfn(mfn).is_some(),
            "the {what} frame {mfn:#x} the restore reported is not a page of domain {domid}"
        );
    }
    // vcpu0's rdx/edx holds the start_info MFN (restore rewrote it from the pfn).
    let ctx = d.vcpu_context(0).expect("vcpu0 context");
    let (si_reg, word) = if pv.bits == 64 { (616, 8) } else { (524, 4) };
    let word_at = |b: &[u8], off: usize| {
        let mut a = [0u8; 8];
        a[..word].copy_from_slice(&b[off..off + word]);
        u64::from_le_bytes(a)
    };
    let si_mfn = word_at(&ctx, si_reg);
    let mut si = vec![0u8; 4096];
    d.read_frame(si_mfn, &mut si)
        .unwrap_or_else(|e| panic!("start_info frame {si_mfn:#x}: {e}"));
    // start_info: magic[32], then nr_pages, shared_info (words), flags (u32,
    // padded to a word on 64-bit), store_mfn, store_evtchn, console mfn,
    // console evtchn.
    let (store_off, console_off) = if pv.bits == 64 { (56, 72) } else { (44, 52) };
    assert_eq!(word_at(&si, store_off), store, "start_info.store_mfn");
    assert_eq!(
        word_at(&si, store_off + word) & 0xffff_ffff,
        u64::from(STORE_EVTCHN),
        "start_info.store_evtchn"
    );
    assert_eq!(
        word_at(&si, console_off),
        console,
        "start_info.console.domU.mfn"
    );
    assert_eq!(
        word_at(&si, console_off + word) & 0xffff_ffff,
        u64::from(CONSOLE_EVTCHN),
        "start_info.console.domU.evtchn"
    );
    // Grant entries seeded with the MFNs.
    host.assert_grants_seeded(domid, store, console);
}

/// Restores `img` with xg-restore into a new empty PV domain of `host`;
/// checks the digest against `source_digest` and the plumbing. Returns the
/// new domid.
fn restore_with_xg(host: &Host, pv: Pv, img: &Path, source_digest: &str) -> u32 {
    let dst = host.create_empty("pv", GUEST_MEMORY);
    assert_ne!(
        host.digest(dst),
        source_digest,
        "an empty domain must not digest like the source"
    );
    let out = xg_restore(host, dst, img, None);
    assert!(
        out.status.success(),
        "xg-restore of a {} stream failed: {}\n{}",
        pv.tag(),
        out.status,
        describe(&out)
    );
    let result = result_line(&out, "xg-restore: ");
    let store = field(&result, "store_gfn").and_then(parse_num).unwrap_or(0);
    let console = field(&result, "console_gfn")
        .and_then(parse_num)
        .unwrap_or(0);
    assert_eq!(
        host.digest(dst),
        source_digest,
        "domain {dst} restored from a {} stream differs from the source at suspend",
        pv.tag()
    );
    assert_pv_plumbing(host, dst, pv, store, console);
    dst
}

/// Saves domain `src` of `host` non-live with xg-save; returns the digest
/// at suspend (the source stays suspended) and the stream summary.
fn save_nonlive(host: &Host, src: u32, img: &Path) -> (String, StreamSummary) {
    let out = xg_save(host, src, &[], img, None);
    assert!(
        out.status.success(),
        "xg-save of PV domain {src} failed: {}\n{}",
        out.status,
        describe(&out)
    );
    assert_eq!(field(&result_line(&out, "xg-save: "), "rc"), Some("0"));
    host.assert_saved(src, "after a non-live PV save");
    let summary = check_pv_stream(img);
    assert_eq!(
        summary.resent_pfns, 0,
        "non-live: each page once: {summary:?}"
    );
    (host.digest(src), summary)
}

fn nonlive_round_trip(pv: Pv, seed: u64) {
    let a = Host::new(&format!("pv-nonlive-src-{}", pv.tag()));
    let b = other_host(&format!("pv-nonlive-dst-{}", pv.tag()));
    let src = create_pv(&a, pv, seed);
    let img = a.scratch("pv.img");
    let (digest, summary) = save_nonlive(&a, src, &img);
    let dst = restore_with_xg(&b, pv, &img, &digest);
    eprintln!(
        "capi non-live {}: {} pages sent, restored as domain {dst} on a second host, digest {digest}",
        pv.tag(),
        summary.pages_with_data
    );
}

#[test]
fn pv64_linear_nonlive_save_restores_on_another_host_with_the_same_digest() {
    nonlive_round_trip(
        Pv {
            bits: 64,
            p2m: "linear",
        },
        41,
    );
}

#[test]
fn pv64_tree_nonlive_save_restores_on_another_host_with_the_same_digest() {
    nonlive_round_trip(
        Pv {
            bits: 64,
            p2m: "tree",
        },
        42,
    );
}

#[test]
fn pv32_linear_nonlive_save_restores_on_another_host_with_the_same_digest() {
    nonlive_round_trip(
        Pv {
            bits: 32,
            p2m: "linear",
        },
        43,
    );
}

#[test]
fn pv32_tree_nonlive_save_restores_on_another_host_with_the_same_digest() {
    nonlive_round_trip(
        Pv {
            bits: 32,
            p2m: "tree",
        },
        44,
    );
}

/// Live save while `xensim domain run` dirties the guest (page tables
/// included), restored on a second host.
fn live_round_trip(pv: Pv, seed: u64) {
    let a = Host::new(&format!("pv-live-src-{}", pv.tag()));
    let b = other_host(&format!("pv-live-dst-{}", pv.tag()));
    let src = create_pv(&a, pv, seed);
    let img = a.scratch("pv-live.img");
    let mut workload = a.start_workload(src, "32", "32M");
    std::thread::sleep(Duration::from_millis(300));
    assert!(workload.running(), "xensim domain run exited early");
    let out = xg_save(&a, src, &["--live", "--stats"], &img, None);
    assert!(
        out.status.success(),
        "live xg-save of {} failed: {}\n{}",
        pv.tag(),
        out.status,
        describe(&out)
    );
    let wl = workload.wait(Duration::from_secs(60));
    assert!(
        wl.status.success(),
        "workload: {}\n{}",
        wl.status,
        describe(&wl)
    );
    let dirty_rounds = dirty_rounds(&precopy_stats(&out));
    assert!(
        dirty_rounds >= 1,
        "no precopy round after the first found dirty pages\n{}",
        describe(&out)
    );
    let summary = check_pv_stream(&img);
    assert!(summary.resent_pfns > 0, "no page was resent: {summary:?}");
    a.assert_saved(src, "after a live PV save");
    let digest = a.digest(src);
    let dst = restore_with_xg(&b, pv, &img, &digest);
    eprintln!(
        "capi live {}: {dirty_rounds} dirty rounds, {} pages sent ({} resent), restored as {dst}",
        pv.tag(),
        summary.pages_with_data,
        summary.resent_pfns
    );
}

#[test]
fn pv64_linear_live_save_with_workload_iterates_and_restores_on_another_host() {
    live_round_trip(
        Pv {
            bits: 64,
            p2m: "linear",
        },
        51,
    );
}

#[test]
fn pv32_tree_live_save_with_workload_iterates_and_restores_on_another_host() {
    live_round_trip(
        Pv {
            bits: 32,
            p2m: "tree",
        },
        52,
    );
}

/// A guest libxenguest restored is itself saved again by libxenguest and
/// restored on a third host: the restore left page types, p2m, start_info
/// and shared_info in the shape a save needs, on both widths.
fn resave_round_trip(pv: Pv, seed: u64) {
    let a = Host::new(&format!("pv-resave-a-{}", pv.tag()));
    let b = other_host(&format!("pv-resave-b-{}", pv.tag()));
    let c = other_host(&format!("pv-resave-c-{}", pv.tag()));
    let src = create_pv(&a, pv, seed);
    let img1 = a.scratch("first.img");
    let (digest, _) = save_nonlive(&a, src, &img1);
    let mid = restore_with_xg(&b, pv, &img1, &digest);
    // As a toolstack does after a restore: let the guest run (its resume
    // code rebuilds its p2m references), then save it again.
    b.xensim("unpause", &[&mid.to_string()]);
    let img2 = b.scratch("second.img");
    let (digest2, _) = save_nonlive(&b, mid, &img2);
    assert_eq!(
        digest2, digest,
        "the restored guest, run and suspended again, digests as the original"
    );
    restore_with_xg(&c, pv, &img2, &digest);
}

#[test]
fn pv64_linear_guest_restored_by_libxenguest_saves_again_and_restores_on_a_third_host() {
    resave_round_trip(
        Pv {
            bits: 64,
            p2m: "linear",
        },
        61,
    );
}

#[test]
fn pv32_tree_guest_restored_by_libxenguest_saves_again_and_restores_on_a_third_host() {
    resave_round_trip(
        Pv {
            bits: 32,
            p2m: "tree",
        },
        62,
    );
}

// Through Debian's libxl-save-helper, driven as libxl drives it.

/// The one `restore_results` of a restore run.
fn restore_results(run: &HelperRun) -> (u64, u64) {
    let r = run.restore_results();
    assert_eq!(r.len(), 1, "one restore_results\n{}", run.describe());
    r[0]
}

fn helper_round_trip(pv: Pv, seed: u64, live: bool) {
    let a = Host::new(&format!("pv-helper-src-{}", pv.tag()));
    let b = other_host(&format!("pv-helper-dst-{}", pv.tag()));
    let src = create_pv(&a, pv, seed);
    let dst = b.create_empty("pv", GUEST_MEMORY);
    let img = a.scratch("helper-copy.img");
    let workload = live.then(|| {
        let w = a.start_workload(src, "32", "32M");
        std::thread::sleep(Duration::from_millis(300));
        w
    });
    let (save, restore, _) = migrate(&a, src, live, &b, dst, &img);
    if let Some(w) = workload {
        let wl = w.wait(Duration::from_secs(60));
        assert!(wl.status.success(), "workload: {}", wl.status);
    }
    save.assert_ok("save");
    restore.assert_ok("restore");
    let summary = check_pv_stream(&img);
    if live {
        let iterations = save
            .progress_phases()
            .into_iter()
            .filter(|p| p.starts_with("Frames iteration"))
            .count();
        assert!(
            iterations >= 3,
            "live: full pass, a dirty round, the last pass\n{}",
            save.describe()
        );
        assert!(summary.resent_pfns > 0, "{summary:?}");
    }
    let digest = save
        .digest_at_suspend
        .clone()
        .expect("the driver took the digest at suspend");
    assert_eq!(
        a.digest(src),
        digest,
        "the source changed after its suspend"
    );
    assert_eq!(
        b.digest(dst),
        digest,
        "restored domain differs from the source"
    );
    let (store, console) = restore_results(&restore);
    assert_pv_plumbing(&b, dst, pv, store, console);
}

#[test]
fn helper_pv64_tree_nonlive_round_trip_over_a_socket_restores_identical_domain() {
    helper_round_trip(
        Pv {
            bits: 64,
            p2m: "tree",
        },
        71,
        false,
    );
}

#[test]
fn helper_pv32_linear_live_round_trip_over_a_socket_restores_identical_domain() {
    helper_round_trip(
        Pv {
            bits: 32,
            p2m: "linear",
        },
        72,
        true,
    );
}
