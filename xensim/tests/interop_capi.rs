//! Debian's unmodified libxenguest saves and restores HVM and PVH guests on
//! xensim, driven by the C harnesses in `capi-tests/` (compiled against the
//! installed xenguest.h and linked to `-lxenguest`).
//!
//! Evidence for issue 3: non-live and live round trips of 256 MiB guests
//! with mixed fill, streams accepted by `verify-stream-v2`, restored digests
//! equal to the source's after suspend, and injected faults on the save and
//! restore paths turning into -1 with a logged reason.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::capi::{
    dirty_rounds, precopy_stats, progress_phases, result_line, stderr, xg_restore, xg_save,
};
use common::{
    check_stream, describe, field, inherit_fd, parse_num, tagged_lines, Background, Host,
    CONSOLE_EVTCHN, GUEST_MEMORY, GUEST_PAGES, OP_TIMEOUT, STORE_EVTCHN,
};

/// Record type of VERIFY.
const REC_VERIFY: u32 = 0xd;

/// Restores `img` into a new empty domain and checks the restored digest.
fn restore_and_compare(host: &Host, guest_type: &str, img: &Path, source_digest: &str) -> String {
    let dst = host.create_empty(guest_type, GUEST_MEMORY);
    assert_ne!(
        host.digest(dst),
        source_digest,
        "an empty domain must not digest like the source (the comparison would prove nothing)"
    );
    let out = xg_restore(host, dst, img, None);
    assert!(
        out.status.success(),
        "xg-restore failed: {}\n{}",
        out.status,
        describe(&out)
    );
    let result = result_line(&out, "xg-restore: ");
    assert_eq!(field(&result, "rc"), Some("0"), "{result}");
    let store = field(&result, "store_gfn").and_then(parse_num).unwrap_or(0);
    let console = field(&result, "console_gfn")
        .and_then(parse_num)
        .unwrap_or(0);
    assert!(
        store != 0 && console != 0 && store != console,
        "restore returned store gfn {store:#x} and console gfn {console:#x}\n{}",
        describe(&out)
    );
    let err = stderr(&out);
    let sdd = tagged_lines(&err, "xg-restore: ")
        .into_iter()
        .filter(|l| l.starts_with("static_data_done "))
        .collect::<Vec<_>>();
    assert_eq!(
        sdd,
        vec!["static_data_done missing=0x0"],
        "static_data_done must be called once with nothing missing (the stream carries CPUID and MSR policy)"
    );
    let restored = host.digest(dst);
    assert_eq!(
        restored, source_digest,
        "restored domain {dst} differs from the source after suspend"
    );
    host.assert_restore_plumbing(
        dst,
        store,
        console,
        u64::from(STORE_EVTCHN),
        u64::from(CONSOLE_EVTCHN),
    );
    format!("store_gfn={store:#x} console_gfn={console:#x} digest={restored}")
}

fn nonlive_round_trip(guest_type: &str, seed: u64) {
    let host = Host::new(&format!("capi-nonlive-{guest_type}"));
    let src = host.create(guest_type, GUEST_MEMORY, "mixed", seed);
    let img = host.scratch("nonlive.img");

    let out = xg_save(&host, src, &[], &img, None);
    assert!(
        out.status.success(),
        "xg-save failed: {}\n{}",
        out.status,
        describe(&out)
    );
    let err = stderr(&out);
    let tagged = tagged_lines(&err, "xg-save: ");
    assert!(
        tagged.contains(&format!("suspend domid={src} rc=0").as_str()),
        "the suspend callback did not run or failed\n{}",
        describe(&out)
    );
    assert_eq!(field(&result_line(&out, "xg-save: "), "rc"), Some("0"));
    host.assert_saved(src, "after a non-live save");

    let summary = check_stream(&img);
    assert_eq!(
        summary.resent_pfns, 0,
        "a non-live save sends each page once: {summary:?}"
    );
    let source_digest = host.digest(src);
    let figures = restore_and_compare(&host, guest_type, &img, &source_digest);
    eprintln!(
        "capi non-live {guest_type}: {} pages in {} PAGE_DATA records, stream v{}, {figures}",
        summary.pages_with_data,
        summary.count(common::stream::REC_PAGE_DATA),
        summary.version
    );
}

/// Live round trip; with `debug` (XCFLAGS_DEBUG) the saver appends a
/// VERIFY record and sends every page again, and the restorer compares them
/// with what it wrote instead of writing.
fn live_round_trip(guest_type: &str, seed: u64, debug: bool) {
    let host = Host::new(&format!("capi-live-{guest_type}"));
    let src = host.create(guest_type, GUEST_MEMORY, "mixed", seed);
    let img = host.scratch("live.img");

    let mut workload = host.start_workload(src, "32", "32M");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        workload.running(),
        "xensim domain run exited before the save started"
    );
    let opts: &[&str] = if debug {
        &["--live", "--stats", "--debug"]
    } else {
        &["--live", "--stats"]
    };
    let out = xg_save(&host, src, opts, &img, None);
    assert!(
        out.status.success(),
        "live xg-save failed: {}\n{}",
        out.status,
        describe(&out)
    );
    let wl = workload.wait(Duration::from_secs(60));
    assert!(
        wl.status.success(),
        "the workload did not stop cleanly at suspend: {}\n{}",
        wl.status,
        describe(&wl)
    );

    // Precopy statistics, as libxenguest hands them to the policy callback.
    let stats = precopy_stats(&out);
    let dirty_rounds = dirty_rounds(&stats);
    assert!(
        dirty_rounds >= 1,
        "no precopy round after the first found dirty pages: {stats:?}\n{}",
        describe(&out)
    );
    let phases = progress_phases(&out, "xg-save: ");
    let iterations: Vec<&(String, u64)> = phases
        .iter()
        .filter(|(w, _)| w.starts_with("Frames iteration"))
        .collect();
    assert!(
        iterations.len() >= 3,
        "expected the full pass, at least one dirty round and the final pass, got {phases:?}"
    );

    host.assert_saved(
        src,
        "after a live save (libxenguest switches log-dirty off at cleanup)",
    );

    let summary = check_stream(&img);
    assert!(
        summary.resent_pfns > 0,
        "a live save with a dirtying workload resends pages: {summary:?}"
    );
    assert_eq!(
        summary.count(REC_VERIFY),
        usize::from(debug),
        "VERIFY records in a {} stream: {summary:?}",
        if debug { "debug" } else { "plain" }
    );
    if debug {
        assert!(
            summary.resent_pfns >= GUEST_PAGES,
            "the verify pass resends every page: {summary:?}"
        );
    }
    let source_digest = host.digest(src);
    let figures = restore_and_compare(&host, guest_type, &img, &source_digest);
    eprintln!(
        "capi live {guest_type} (debug {debug}): precopy stats {stats:?}; phases {iterations:?}; \
         {} pages sent ({} distinct, {} resent, max {} sends of one page); {figures}",
        summary.pages_with_data,
        summary.distinct_pfns,
        summary.resent_pfns,
        summary.max_sends_per_pfn
    );
}

#[test]
fn capi_nonlive_hvm_round_trip_restores_identical_domain() {
    nonlive_round_trip("hvm", 11);
}

#[test]
fn capi_nonlive_pvh_round_trip_restores_identical_domain() {
    nonlive_round_trip("pvh", 12);
}

#[test]
fn capi_live_hvm_with_workload_iterates_and_restores_identical_domain() {
    live_round_trip("hvm", 13, false);
}

#[test]
fn capi_live_pvh_debug_with_workload_iterates_verifies_and_restores_identical_domain() {
    live_round_trip("pvh", 14, true);
}

/// Fault on the save path: the named call fails, xc_domain_save returns -1
/// and libxenguest logs why; nothing hangs (the run has a timeout).
#[test]
fn capi_save_with_injected_fault_returns_minus_one_and_logs_reason() {
    let host = Host::new("capi-save-fault");
    let src = host.create("hvm", GUEST_MEMORY, "mixed", 21);
    let img = host.scratch("fault.img");
    let out = xg_save(&host, src, &[], &img, Some(SAVE_FAULT));
    assert_failed_with_reason(&out, "xg-save: ");
}

/// Fault on the restore path: xc_domain_restore returns -1 with a reason.
#[test]
fn capi_restore_with_injected_fault_returns_minus_one_and_logs_reason() {
    let host = Host::new("capi-restore-fault");
    let src = host.create("hvm", GUEST_MEMORY, "mixed", 22);
    let img = host.scratch("for-fault.img");
    let out = xg_save(&host, src, &[], &img, None);
    assert!(out.status.success(), "xg-save failed\n{}", describe(&out));
    let dst = host.create_empty("hvm", GUEST_MEMORY);
    let out = xg_restore(&host, dst, &img, Some(RESTORE_FAULT));
    assert_failed_with_reason(&out, "xg-restore: ");
}

/// A live migration between two harness processes joined by a socket
/// (`fd:N` on both sides), the restore running while the save iterates, as
/// `xl migrate` does; the stream never touches a file.
struct SocketMigration {
    guest_type: &'static str,
    src: u32,
    dst: u32,
    workload: Background,
    saver: Background,
    restorer: Background,
}

impl SocketMigration {
    /// Creates the guests, starts the workload, then the saver and restorer.
    fn start(host: &Host, guest_type: &'static str, seed: u64) -> SocketMigration {
        let src = host.create(guest_type, GUEST_MEMORY, "mixed", seed);
        let dst = host.create_empty(guest_type, GUEST_MEMORY);
        let (save_end, restore_end) = UnixStream::pair().expect("socketpair");
        let mut workload = host.start_workload(src, "32", "32M");
        std::thread::sleep(Duration::from_millis(300));
        assert!(workload.running(), "xensim domain run exited early");

        let mut save = host.command(host.env.capi("xg-save"));
        save.args(["--live", &src.to_string()])
            .arg(format!("fd:{}", save_end.as_raw_fd()));
        inherit_fd(&mut save, save_end.as_raw_fd());
        let mut restore = host.command(host.env.capi("xg-restore"));
        restore
            .args(["--store-evtchn", &STORE_EVTCHN.to_string()])
            .args(["--console-evtchn", &CONSOLE_EVTCHN.to_string()])
            .arg(dst.to_string())
            .arg(format!("fd:{}", restore_end.as_raw_fd()));
        inherit_fd(&mut restore, restore_end.as_raw_fd());
        let saver = Background::spawn(&mut save, "xg-save --live fd:N");
        let restorer = Background::spawn(&mut restore, "xg-restore fd:N");
        // Only the children hold the socket now, so either side's exit is seen.
        drop(save_end);
        drop(restore_end);
        SocketMigration {
            guest_type,
            src,
            dst,
            workload,
            saver,
            restorer,
        }
    }

    /// Waits for both sides and checks the result; returns the figures.
    fn finish(self, host: &Host) -> String {
        let save_out = self.saver.wait(OP_TIMEOUT);
        let restore_out = self.restorer.wait(OP_TIMEOUT);
        let wl = self.workload.wait(Duration::from_secs(60));
        assert!(wl.status.success(), "workload: {}", wl.status);
        assert!(
            save_out.status.success(),
            "xg-save failed\n{}",
            describe(&save_out)
        );
        assert!(
            restore_out.status.success(),
            "xg-restore failed\n{}",
            describe(&restore_out)
        );
        let phases = progress_phases(&save_out, "xg-save: ");
        let iterations: Vec<u64> = phases
            .iter()
            .filter(|(w, _)| w.starts_with("Frames iteration"))
            .map(|(_, total)| *total)
            .collect();
        assert!(iterations.len() >= 3, "phases {phases:?}");
        let source_digest = host.digest(self.src);
        let restored = host.digest(self.dst);
        assert_eq!(
            restored, source_digest,
            "restored {} domain {} differs from its source {}",
            self.guest_type, self.dst, self.src
        );
        format!(
            "{} over a socket: pages per iteration phase {iterations:?}; digest {restored}",
            self.guest_type
        )
    }
}

/// Two live migrations at once on one host (HVM and PVH), each over its own
/// socket: four toolstack processes and two workloads share the host's
/// state, and each restored domain equals its source.
#[test]
fn capi_two_concurrent_live_migrations_over_sockets_restore_identical_domains() {
    let host = Host::new("capi-live-sockets");
    let hvm = SocketMigration::start(&host, "hvm", 15);
    let pvh = SocketMigration::start(&host, "pvh", 16);
    let hvm_figures = hvm.finish(&host);
    let pvh_figures = pvh.finish(&host);
    eprintln!("capi live, concurrent: {hvm_figures}; {pvh_figures}");
}

/// Fault in the first log-dirty CLEAN of a live save, with the workload
/// running: -1 with a reason, log-dirty switched off again by libxenguest's
/// cleanup, and the guest never suspended.
#[test]
fn capi_live_save_with_fault_in_logdirty_clean_returns_minus_one_and_disables_logdirty() {
    let host = Host::new("capi-live-fault");
    let src = host.create("hvm", GUEST_MEMORY, "mixed", 23);
    let img = host.scratch("live-fault.img");
    let workload = host.start_workload(src, "32", "32M");
    let out = xg_save(
        &host,
        src,
        &["--live"],
        &img,
        Some("xc_logdirty_control:EIO"),
    );
    assert_failed_with_reason(&out, "xg-save: ");
    host.assert_info(
        src,
        &[("logdirty", "0"), ("shutdown", "0")],
        "after a failed live save",
    );
    let err = stderr(&out);
    assert!(
        !tagged_lines(&err, "xg-save: ")
            .iter()
            .any(|l| l.starts_with("suspend ")),
        "the guest must not be suspended when precopy fails\n{}",
        describe(&out)
    );
    drop(workload);
}

/// A call only the save path makes, failing with EIO on its first use.
const SAVE_FAULT: &str = "xc_get_pfn_type_batch:EIO";
/// A call only the restore path makes, failing with ENOMEM on its first use.
const RESTORE_FAULT: &str = "xc_domain_populate_physmap_exact:ENOMEM";

fn assert_failed_with_reason(out: &Output, prefix: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit status 1 (the call returned -1), got {}\n{}",
        out.status,
        describe(out)
    );
    let result = result_line(out, prefix);
    assert_eq!(field(&result, "rc"), Some("-1"), "{result}");
    let err = stderr(out);
    let reasons: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("xc: error: "))
        .collect();
    assert!(
        !reasons.is_empty(),
        "libxenguest logged no error reason\n{}",
        describe(out)
    );
    eprintln!("{prefix}failed as injected: {result}; reasons: {reasons:?}");
}
