//! Debian's real `libxl-save-helper` (with Debian's libxenguest) saves and
//! restores HVM and PVH guests on xensim, driven through its wire protocol
//! the way libxl drives it (see `common/save_helper.rs`).
//!
//! Evidence for issue 3: non-live save to a file and restore; live save
//! while `xensim domain run` dirties memory, concurrently restored over a
//! socket; faults injected on the save and the restore path reported as
//! `complete(-1, errno)` with a logged reason.

mod common;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::Duration;

use common::save_helper::{migrate, run_helper, HelperRun, Mode, Msg};
use common::stream::REC_PAGE_DATA;
use common::{check_stream, Host, CONSOLE_EVTCHN, GUEST_MEMORY, OP_TIMEOUT, STORE_EVTCHN};

/// xentoollog's XTL_ERROR.
const XTL_ERROR: u32 = 8;

/// Checks a save run: exited 0, complete(0, 0), one suspend, log-dirty
/// switched on and off for the device model.
fn assert_save_ok(run: &HelperRun, domid: u32) {
    run.assert_ok("save");
    assert_eq!(
        run.count(|m| *m == Msg::Suspend),
        1,
        "exactly one suspend\n{}",
        run.describe()
    );
    assert!(run.suspend_failures.is_empty(), "{}", run.describe());
    for enable in [1, 0] {
        assert!(
            run.messages
                .contains(&Msg::SwitchQemuLogdirty { domid, enable }),
            "no switch_qemu_logdirty({domid}, {enable})\n{}",
            run.describe()
        );
    }
}

/// Checks a restore run and returns (store_gfn, console_gfn).
fn assert_restore_ok(run: &HelperRun) -> (u64, u64) {
    run.assert_ok("restore");
    assert_eq!(
        run.count(|m| matches!(m, Msg::StaticDataDone { .. })),
        1,
        "{}",
        run.describe()
    );
    assert!(
        run.messages.contains(&Msg::StaticDataDone { missing: 0 }),
        "static_data_done must report nothing missing\n{}",
        run.describe()
    );
    let results = run.restore_results();
    assert_eq!(results.len(), 1, "{}", run.describe());
    let (store, console) = results[0];
    assert!(
        store != 0 && console != 0 && store != console,
        "restore_results({store:#x}, {console:#x})\n{}",
        run.describe()
    );
    (store, console)
}

/// The source after a save: suspended, log-dirty off, and unchanged since
/// the helper's suspend callback. Returns its digest.
fn assert_source_saved(host: &Host, src: u32, save: &HelperRun, context: &str) -> String {
    host.assert_saved(src, context);
    let digest = host.digest(src);
    assert_eq!(
        save.digest_at_suspend.as_deref(),
        Some(digest.as_str()),
        "the source changed between its suspend and the end of the save"
    );
    digest
}

/// The restored domain: what the restore sets up beyond memory (event
/// channels, magic pages, grants), and a digest equal to the source's.
/// Returns that digest.
fn assert_restored_like(
    host: &Host,
    dst: u32,
    (store, console): (u64, u64),
    source_digest: &str,
) -> String {
    let restored = host.digest(dst);
    host.assert_restore_plumbing(
        dst,
        store,
        console,
        STORE_EVTCHN.into(),
        CONSOLE_EVTCHN.into(),
    );
    assert_eq!(
        restored, source_digest,
        "restored domain differs from the source"
    );
    restored
}

fn nonlive_round_trip(guest_type: &str, seed: u64) {
    let host = Host::new(&format!("helper-nonlive-{guest_type}"));
    let src = host.create(guest_type, GUEST_MEMORY, "mixed", seed);
    let img = host.scratch("nonlive.img");

    let out = File::create(&img).expect("create the stream file");
    let save = run_helper(
        &host,
        Mode::save(src, false),
        OwnedFd::from(out),
        &[],
        OP_TIMEOUT,
    );
    assert_save_ok(&save, src);
    let summary = check_stream(&img);
    assert_eq!(summary.resent_pfns, 0, "{summary:?}");
    let source_digest = assert_source_saved(&host, src, &save, "after a non-live save");

    let dst = host.create_empty(guest_type, GUEST_MEMORY);
    assert_ne!(
        host.digest(dst),
        source_digest,
        "an empty domain digests like the source"
    );
    let input = File::open(&img).expect("open the stream file");
    let restore = run_helper(
        &host,
        Mode::restore(dst),
        OwnedFd::from(input),
        &[],
        OP_TIMEOUT,
    );
    let (store, console) = assert_restore_ok(&restore);
    let restored = assert_restored_like(&host, dst, (store, console), &source_digest);
    eprintln!(
        "helper non-live {guest_type}: {} pages in {} PAGE_DATA records; \
         store {store:#x} console {console:#x}; digest {restored}",
        summary.pages_with_data,
        summary.count(REC_PAGE_DATA)
    );
}

/// Live save and concurrent restore over sockets, with a copy of the
/// stream kept for the verifier.
fn live_round_trip(guest_type: &str, seed: u64) {
    let host = Host::new(&format!("helper-live-{guest_type}"));
    let src = host.create(guest_type, GUEST_MEMORY, "mixed", seed);
    let dst = host.create_empty(guest_type, GUEST_MEMORY);
    let img = host.scratch("live-copy.img");

    let mut workload = host.start_workload(src, "32", "32M");
    std::thread::sleep(Duration::from_millis(300));
    assert!(workload.running(), "xensim domain run exited early");

    let (save, restore, copied) = migrate(&host, src, true, &host, dst, &img);
    let wl = workload.wait(Duration::from_secs(60));
    assert!(wl.status.success(), "workload: {}", wl.status);

    assert_save_ok(&save, src);
    let (store, console) = assert_restore_ok(&restore);

    let phases = save.progress_phases();
    let iterations: Vec<&String> = phases
        .iter()
        .filter(|p| p.starts_with("Frames iteration"))
        .collect();
    assert!(
        iterations.len() >= 3,
        "expected the full pass, at least one dirty round and the final pass; phases {phases:?}"
    );
    let summary = check_stream(&img);
    assert!(summary.resent_pfns > 0, "no page was resent: {summary:?}");

    let source_digest = assert_source_saved(&host, src, &save, "after a live save");
    let restored = assert_restored_like(&host, dst, (store, console), &source_digest);
    eprintln!(
        "helper live {guest_type}: {} iteration phases {iterations:?}; {copied} bytes; \
         {} pages sent ({} distinct, {} resent); store {store:#x} console {console:#x}; \
         digest {restored}",
        iterations.len(),
        summary.pages_with_data,
        summary.distinct_pfns,
        summary.resent_pfns
    );
}

#[test]
fn helper_nonlive_hvm_round_trip_restores_identical_domain() {
    nonlive_round_trip("hvm", 31);
}

#[test]
fn helper_nonlive_pvh_round_trip_restores_identical_domain() {
    nonlive_round_trip("pvh", 32);
}

#[test]
fn helper_live_hvm_concurrent_restore_iterates_and_restores_identical_domain() {
    live_round_trip("hvm", 33);
}

#[test]
fn helper_live_pvh_concurrent_restore_iterates_and_restores_identical_domain() {
    live_round_trip("pvh", 34);
}

/// See `interop_capi.rs`: a save-only call and a restore-only call.
const SAVE_FAULT: &str = "xc_get_pfn_type_batch:EIO";
const RESTORE_FAULT: &str = "xc_domain_populate_physmap_exact:ENOMEM";

fn assert_failed_with_reason(run: &HelperRun, what: &str) {
    assert!(
        run.status.is_some_and(|s| s.code() == Some(0)),
        "{what} helper hung or crashed (it exits 0 after reporting complete)\n{}",
        run.describe()
    );
    assert!(run.protocol_error.is_none(), "{}", run.describe());
    let (retval, errno) = run
        .complete()
        .unwrap_or_else(|| panic!("{what} helper sent no complete\n{}", run.describe()));
    assert_eq!(retval, -1, "{}", run.describe());
    assert_ne!(errno, 0, "a failure carries an errno\n{}", run.describe());
    let reasons: Vec<String> = run
        .logs_at_least(XTL_ERROR)
        .into_iter()
        .filter(|l| l.starts_with("xc: "))
        .collect();
    assert!(
        !reasons.is_empty(),
        "libxenguest logged no error reason\n{}",
        run.describe()
    );
    eprintln!("{what} failed as injected: complete({retval}, {errno}); reasons {reasons:?}");
}

#[test]
fn helper_save_with_injected_fault_completes_minus_one_with_reason() {
    let host = Host::new("helper-save-fault");
    let src = host.create("hvm", GUEST_MEMORY, "mixed", 41);
    let out = File::create(host.scratch("fault.img")).expect("create");
    let run = run_helper(
        &host,
        Mode::save(src, false),
        OwnedFd::from(out),
        &[("XENSIM_FAULTS", SAVE_FAULT)],
        OP_TIMEOUT,
    );
    assert_failed_with_reason(&run, "save");
}

#[test]
fn helper_restore_with_injected_fault_completes_minus_one_with_reason() {
    let host = Host::new("helper-restore-fault");
    let src = host.create("hvm", GUEST_MEMORY, "mixed", 42);
    let img = host.scratch("for-fault.img");
    let out = File::create(&img).expect("create");
    let save = run_helper(
        &host,
        Mode::save(src, false),
        OwnedFd::from(out),
        &[],
        OP_TIMEOUT,
    );
    assert_save_ok(&save, src);
    let dst = host.create_empty("hvm", GUEST_MEMORY);
    let input = File::open(&img).expect("open");
    let run = run_helper(
        &host,
        Mode::restore(dst),
        OwnedFd::from(input),
        &[("XENSIM_FAULTS", RESTORE_FAULT)],
        OP_TIMEOUT,
    );
    assert_failed_with_reason(&run, "restore");
    assert_eq!(
        run.count(|m| matches!(m, Msg::RestoreResults { .. })),
        1,
        "the helper reports restore_results even after a failure\n{}",
        run.describe()
    );
}
