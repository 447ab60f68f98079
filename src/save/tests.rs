//! Save engine tests over a temporary xensim host (round trips with the
//! restore engine are in `restore::tests`).

use xensim::{FaultRule, GuestType};

use super::testutil::{RecLog, ScriptedDirty, TempHost, ToolstackSave, STOP};
use super::*;
use crate::stream::{self, Checkpoints, GrammarOptions, ReaderOptions, StreamEnd};
use crate::toolstack::{CallbackFailed, Next};

const SMALL: u64 = 16 << 20;

fn stats(iteration: u32, total_written: u64, dirty_count: i64) -> PrecopyStats {
    PrecopyStats {
        iteration,
        total_written,
        dirty_count,
    }
}

fn live() -> SaveParams {
    SaveParams {
        live: true,
        ..SaveParams::default()
    }
}

/// Record types of a stream, in order.
fn record_types(bytes: &[u8], options: ReaderOptions) -> (Vec<u32>, Option<StreamEnd>) {
    let mut r = stream::Reader::with_options(bytes, options).expect("headers");
    let mut types = Vec::new();
    while let Some(rec) = r.next_record().expect("record") {
        types.push(rec.record_type().0);
    }
    (types, r.end())
}

#[test]
fn precopy_policy_sees_libxenguests_statistics_in_libxenguests_order() {
    let h = TempHost::new("precopy");
    let id = h.create(GuestType::Hvm, SMALL, 1, false);
    // The guest dirties 60, 60, 60 and then 10 pages before each CLEAN, as
    // in the reference's observed trace.
    let hv = ScriptedDirty::new(h.hv(), h.domain(id), &[60, 60, 60, 10]);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.policy = Some(Box::new(simple_precopy_policy));
    let mut out = Vec::new();
    let s = save_domain(&hv, id, &mut out, &live(), &mut cb, &RecLog::default()).expect("save");

    let p = s.p2m_size;
    assert_eq!(p, h.domain(id).max_gpfn() + 1);
    use PolicyDecision::{Continue as C, StopAndCopy as S};
    let expected = vec![
        (stats(0, 0, p as i64), C),
        (stats(1, p, -1), C),
        (stats(1, p, 60), C),
        (stats(2, p + 60, -1), C),
        (stats(2, p + 60, 60), C),
        (stats(3, p + 120, -1), C),
        (stats(3, p + 120, 60), C),
        (stats(4, p + 180, -1), C),
        (stats(4, p + 180, 10), S),
    ];
    assert_eq!(s.policy_calls, expected);
    assert_eq!(
        cb.policy_calls,
        expected.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );
    assert_eq!(
        *hv.cleans.borrow(),
        vec![
            (60, false),
            (60, false),
            (60, false),
            (10, false),
            (0, true)
        ]
    );
    assert_eq!(*hv.enables.borrow(), 1);
    // Rounds sent live: everything, then 60, 60, 60 and 10 pages.
    assert_eq!(s.precopy_iterations, 5);
    let ram = h.domain(id).info().unwrap().tot_pages;
    // Zero pages never sent go as XALLOC, without data.
    assert_eq!(s.pages_sent + s.pages_zero, ram + 190);
    assert_eq!(s.pages_sent_suspended, 0);
    assert_eq!(cb.suspends, 1);
    assert!(!h.domain(id).logdirty_enabled());
}

#[test]
fn classic_policy_stops_after_five_rounds_without_calling_back() {
    let h = TempHost::new("default-policy");
    let id = h.create(GuestType::Pvh, SMALL, 2, false);
    let hv = ScriptedDirty::new(h.hv(), h.domain(id), &[100; 8]);
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut out = Vec::new();
    let params = SaveParams {
        precopy: PrecopySettings::classic(),
        ..live()
    };
    let s = save_domain(&hv, id, &mut out, &params, &mut cb, &RecLog::default()).expect("save");
    let p = s.p2m_size;
    let seen: Vec<PrecopyStats> = s.policy_calls.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seen,
        vec![
            stats(0, 0, p as i64),
            stats(1, p, -1),
            stats(1, p, 100),
            stats(2, p + 100, -1),
            stats(2, p + 100, 100),
            stats(3, p + 200, -1),
            stats(3, p + 200, 100),
            stats(4, p + 300, -1),
            stats(4, p + 300, 100),
            stats(5, p + 400, -1),
        ]
    );
    assert_eq!(
        s.policy_calls.last().map(|c| c.1),
        Some(PolicyDecision::StopAndCopy)
    );
    // The caller gave no policy: it was never called.
    assert!(cb.policy_calls.is_empty());
    // Four live CLEANs (the fifth round stops before cleaning), then the
    // final one; the script only dirties before live CLEANs, so it finds none.
    let cleans = hv.cleans.borrow().clone();
    assert_eq!(cleans.len(), 5);
    assert!(cleans[..4].iter().all(|&(n, f)| n == 100 && !f));
    assert_eq!(cleans[4], (0, true));
    assert_eq!(s.precopy_iterations, 5);
}

#[test]
fn policy_abort_fails_the_save_and_switches_log_dirty_off() {
    let h = TempHost::new("abort");
    let id = h.create(GuestType::Hvm, SMALL, 3, false);
    let hv = ScriptedDirty::new(h.hv(), h.domain(id), &[200, 200]);
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut n = 0;
    cb.policy = Some(Box::new(move |_| {
        n += 1;
        if n == 3 {
            PolicyDecision::Abort
        } else {
            PolicyDecision::Continue
        }
    }));
    let log = RecLog::default();
    let mut out = Vec::new();
    let e = save_domain(&hv, id, &mut out, &live(), &mut cb, &log).expect_err("abort");
    assert!(matches!(e, SaveError::Aborted), "{e}");
    assert_eq!(e.errno(), libc::ECANCELED);
    // ABORT at call A of round 1: that round's dirty set is not sent.
    assert_eq!(cb.policy_calls.len(), 3);
    assert_eq!(cb.suspends, 0);
    assert!(!h.domain(id).logdirty_enabled());
    assert_eq!(cb.qemu_logdirty, vec![true, false]);
    assert!(log
        .errors()
        .iter()
        .any(|m| m.contains("Abort precopy loop")));
}

#[test]
fn injected_faults_fail_the_save_with_their_errno_and_leave_log_dirty_off() {
    let cases = [
        ("xc_get_pfn_type_batch:EIO:3", 5),
        ("xenforeignmemory_map:ENOMEM:2", 12),
        ("xc_logdirty_control:EIO:1", 5),
        ("xc_domain_getinfo:ESRCH:2", 3),
        ("xc_domain_hvm_getcontext:EIO:1", 5),
        ("xc_hvm_param_get:EPERM:4", 1),
        ("xc_domain_get_tsc_info:EIO:1", 5),
        ("xencall1:EACCES:1", 13),
    ];
    for (rule, errno) in cases {
        let h = TempHost::new("fault");
        let id = h.create(GuestType::Hvm, SMALL, 4, false);
        h.host
            .set_faults(&[FaultRule::parse(rule).unwrap()])
            .unwrap();
        let hv = ScriptedDirty::new(h.hv(), h.domain(id), &[80, 20]);
        let mut cb = ToolstackSave::new(h.domain(id));
        let mut out = Vec::new();
        let e =
            save_domain(&hv, id, &mut out, &live(), &mut cb, &RecLog::default()).expect_err(rule);
        assert_eq!(e.errno(), errno, "{rule}: {e}");
        assert!(matches!(e, SaveError::Hv(_)), "{rule}: {e}");
        assert!(
            !h.domain(id).logdirty_enabled(),
            "{rule}: log-dirty left on"
        );
        assert_eq!(cb.qemu_logdirty, vec![true, false], "{rule}");
    }
}

/// Found by the save_hypercalls fuzz target: an HVM p2m size from
/// `xc_domain_nr_gpfns` of 2^40 pfns or more made the save allocate its
/// bitmaps by it (128 GiB each) and abort the process.
#[test]
fn an_hvm_p2m_size_beyond_52_bit_addresses_is_refused_not_allocated() {
    for answer in [(1u64 << 40) + 1, 1 << 52, u64::MAX] {
        let h = TempHost::new("nr-gpfns");
        let id = h.create(GuestType::Hvm, SMALL, 4, false);
        let mut hv = ScriptedDirty::new(h.hv(), h.domain(id), &[]);
        hv.nr_gpfns_answer = Some(answer);
        let mut cb = ToolstackSave::new(h.domain(id));
        let mut out = Vec::new();
        let e = save_domain(&hv, id, &mut out, &live(), &mut cb, &RecLog::default())
            .expect_err("a p2m beyond the address space");
        assert_eq!(e.errno(), libc::EPROTO, "{e}");
        assert!(e.to_string().contains("xc_domain_nr_gpfns"), "{e}");
        assert!(!h.domain(id).logdirty_enabled());
        assert_eq!(cb.suspends, 0);
    }
}

/// Found by the fault sweep (tests/capi_fault_sweep.rs): libxenguest's
/// cleanup ignores a failed log-dirty OFF, and so did xcmig, leaving the
/// guest in log-dirty mode after a save that reported success.
#[test]
fn a_failed_logdirty_off_at_the_end_of_a_live_save_is_retried() {
    let h = TempHost::new("ldoff1");
    let id = h.create(GuestType::Hvm, SMALL, 4, false);
    // Call 1 enables log-dirty, call 2 is the cleanup's OFF.
    h.host
        .set_faults(&[FaultRule::parse("xc_shadow_control:EIO:2").unwrap()])
        .unwrap();
    let hv = ScriptedDirty::new(h.hv(), h.domain(id), &[80, 20]);
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut out = Vec::new();
    save_domain(&hv, id, &mut out, &live(), &mut cb, &RecLog::default()).expect("save");
    assert!(!h.domain(id).logdirty_enabled(), "log-dirty left on");
}

#[test]
fn a_live_save_that_cannot_switch_log_dirty_off_fails_naming_the_call() {
    let h = TempHost::new("ldoff2");
    let id = h.create(GuestType::Hvm, SMALL, 4, false);
    h.host
        .set_faults(&[FaultRule::parse("xc_shadow_control:EIO:2:always").unwrap()])
        .unwrap();
    let hv = ScriptedDirty::new(h.hv(), h.domain(id), &[80, 20]);
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut out = Vec::new();
    let log = RecLog::default();
    let e = save_domain(&hv, id, &mut out, &live(), &mut cb, &log).expect_err("OFF failed");
    assert_eq!(e.errno(), libc::EIO, "{e}");
    assert!(e.to_string().contains("xc_shadow_control"), "{e}");
    assert_eq!(log.errors().len(), 1, "{:?}", log.errors());
}

#[test]
fn suspend_callback_failure_fails_the_save() {
    let h = TempHost::new("suspend0");
    let id = h.create(GuestType::Hvm, SMALL, 5, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.suspend_failure = Some(CallbackFailed { code: 0 });
    let mut out = Vec::new();
    let e = save_domain(&h.hv(), id, &mut out, &live(), &mut cb, &RecLog::default())
        .expect_err("suspend failure");
    assert!(
        matches!(
            e,
            SaveError::Callback {
                name: "suspend",
                rc: 0
            }
        ),
        "{e}"
    );
    assert!(!h.domain(id).logdirty_enabled());
    assert_eq!(cb.qemu_logdirty, vec![true, false]);
}

#[test]
fn a_domain_not_shut_down_for_suspend_fails_the_save() {
    let h = TempHost::new("notsusp");
    let id = h.create(GuestType::Pvh, SMALL, 6, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.shutdown_on_suspend = false;
    let mut out = Vec::new();
    let e = save_domain(
        &h.hv(),
        id,
        &mut out,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .expect_err("not suspended");
    assert!(
        matches!(
            e,
            SaveError::NotSuspended {
                shutdown: false,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn qemu_logdirty_refusal_fails_setup_and_is_not_undone() {
    let h = TempHost::new("qemu");
    let id = h.create(GuestType::Hvm, SMALL, 7, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.qemu_failure = Some(CallbackFailed { code: -1 });
    let mut out = Vec::new();
    let e =
        save_domain(&h.hv(), id, &mut out, &live(), &mut cb, &RecLog::default()).expect_err("qemu");
    assert!(
        matches!(
            e,
            SaveError::Callback {
                name: "switch_qemu_logdirty",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(cb.qemu_logdirty, vec![true]);
    assert!(out.is_empty(), "nothing is written before setup succeeds");
}

#[test]
fn hvm_save_without_qemu_logdirty_callback_is_refused() {
    let h = TempHost::new("noqemu");
    let id = h.create(GuestType::Hvm, SMALL, 8, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.has_qemu = false;
    let mut out = Vec::new();
    let e = save_domain(
        &h.hv(),
        id,
        &mut out,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .expect_err("missing callback");
    assert!(
        matches!(e, SaveError::MissingCallback("switch_qemu_logdirty")),
        "{e}"
    );
    assert_eq!(cb.suspends, 0);
}

#[test]
fn saving_a_missing_domain_names_it() {
    let h = TempHost::new("nodom");
    let id = h.create(GuestType::Hvm, SMALL, 9, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut out = Vec::new();
    // Xen's getdomaininfo answers with the next domain; the engine checks.
    let e = save_domain(
        &h.hv(),
        id - 1,
        &mut out,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    );
    match e {
        Err(SaveError::NoSuchDomain(d)) => assert_eq!(d, id - 1),
        other => panic!("expected NoSuchDomain, got {other:?}"),
    }
    let e = save_domain(
        &h.hv(),
        id + 1,
        &mut out,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .expect_err("no domain at all");
    assert_eq!(e.errno(), libc::ESRCH);
}

#[test]
fn records_come_in_the_spec_order_for_hvm() {
    let h = TempHost::new("order");
    let id = h.create(GuestType::Hvm, SMALL, 10, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    let log = RecLog::default();
    let mut out = Vec::new();
    let s =
        save_domain(&h.hv(), id, &mut out, &SaveParams::default(), &mut cb, &log).expect("save");
    let (types, end) = record_types(&out, ReaderOptions::default());
    assert_eq!(end, Some(StreamEnd::End));
    let pd = types.iter().filter(|&&t| t == 1).count();
    assert_eq!(pd as u64, s.page_data_records);
    // p2m_size / 1024 batches, rounded up: one PAGE_DATA each, except
    // the batches that are all holes (holes are left out of records).
    let dom = h.domain(id);
    let with_pages = (0..s.p2m_size.div_ceil(1024))
        .filter(|b| (b * 1024..(b + 1) * 1024).any(|p| dom.is_populated(p)))
        .count();
    assert_eq!(s.page_data_records, with_pages as u64);
    let head = &types[..3];
    let tail = &types[types.len() - 4..];
    assert_eq!(head, &[0x11, 0x12, 0x10]);
    assert_eq!(tail, &[0x08, 0x0a, 0x09, 0x00]);
    assert_eq!(s.bytes_written, out.len() as u64);
    assert_eq!(
        s.pages_sent + s.pages_zero,
        h.domain(id).info().unwrap().tot_pages,
        "every populated page is sent once"
    );
    // libxenguest's milestones.
    let progress = log.progress.borrow();
    let singles: Vec<&str> = progress
        .iter()
        .filter(|(_, d, t)| *d == 0 && *t == 0)
        .map(|(w, _, _)| w.as_str())
        .collect();
    for m in [
        "Start of stream",
        "Domain now suspended",
        "End of stream",
        "Complete",
    ] {
        assert!(
            singles.contains(&m),
            "missing progress {m:?} in {singles:?}"
        );
    }
    assert!(progress
        .iter()
        .any(|(w, d, t)| w == "Frames" && d == t && *t == s.p2m_size));
}

#[test]
fn remus_save_sends_checkpoints_until_the_callback_stops_it() {
    let h = TempHost::new("remus");
    let id = h.create(GuestType::Hvm, SMALL, 11, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.checkpoint_answers = [Next::Continue, Next::Continue, STOP].into_iter().collect();
    let mut out = Vec::new();
    let params = SaveParams {
        live: true,
        debug: false,
        stream_type: StreamType::Remus,
        ..SaveParams::default()
    };
    let s = save_domain(&h.hv(), id, &mut out, &params, &mut cb, &RecLog::default())
        .expect("remus save ends successfully");
    assert_eq!(s.checkpoints, 3);
    assert_eq!(cb.suspends, 3);
    let opts = ReaderOptions {
        grammar: GrammarOptions {
            checkpoints: Checkpoints::Accept,
            ..Default::default()
        },
        ..Default::default()
    };
    let (types, end) = record_types(&out, opts);
    assert_eq!(types.iter().filter(|&&t| t == 0x0e).count(), 3);
    assert!(
        !types.contains(&0),
        "no END record in a checkpointed stream"
    );
    assert_eq!(end, Some(StreamEnd::EofAfterCheckpoint));
    assert!(!h.domain(id).logdirty_enabled());
}

#[test]
fn colo_save_without_wait_checkpoint_is_refused() {
    let h = TempHost::new("colo");
    let id = h.create(GuestType::Hvm, SMALL, 12, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.checkpoint_answers = [Next::Continue].into_iter().collect();
    let mut out = Vec::new();
    let params = SaveParams {
        live: true,
        debug: false,
        stream_type: StreamType::Colo,
        ..SaveParams::default()
    };
    // COLO also needs wait_checkpoint, which these callbacks lack.
    let e =
        save_domain(&h.hv(), id, &mut out, &params, &mut cb, &RecLog::default()).expect_err("colo");
    assert!(
        matches!(e, SaveError::MissingCallback("wait_checkpoint")),
        "{e}"
    );
    assert!(out.is_empty());
}

#[test]
fn a_panic_inside_a_callback_still_leaves_log_dirty_off() {
    struct Panicky(ToolstackSave);
    impl SaveCallbacks for Panicky {
        fn has(&self, hook: SaveHook) -> bool {
            self.0.has(hook)
        }
        fn suspend(&mut self) -> Result<(), CallbackFailed> {
            panic!("toolstack bug in suspend");
        }
        fn switch_qemu_logdirty(
            &mut self,
            domid: DomId,
            enable: bool,
        ) -> Result<(), CallbackFailed> {
            self.0.switch_qemu_logdirty(domid, enable)
        }
    }
    let h = TempHost::new("panic");
    let id = h.create(GuestType::Hvm, SMALL, 13, false);
    let mut cb = Panicky(ToolstackSave::new(h.domain(id)));
    let hv = h.hv();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut out = Vec::new();
        save_domain(&hv, id, &mut out, &live(), &mut cb, &RecLog::default())
    }));
    assert!(r.is_err(), "the panic propagates to the caller's boundary");
    assert!(!h.domain(id).logdirty_enabled());
}

/// A stream sink that accepts `room` bytes, then fails like a closed pipe.
struct BrokenPipe {
    room: usize,
}

impl std::io::Write for BrokenPipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stream_that_breaks_mid_save_fails_with_epipe_and_cleans_up() {
    for room in [0, 100, 3 << 20] {
        let h = TempHost::new("epipe");
        let id = h.create(GuestType::Hvm, SMALL, 14, false);
        let mut cb = ToolstackSave::new(h.domain(id));
        let mut out = BrokenPipe { room };
        let e = save_domain(&h.hv(), id, &mut out, &live(), &mut cb, &RecLog::default())
            .expect_err("broken stream");
        assert!(matches!(e, SaveError::Stream(_)), "{room}: {e}");
        assert_eq!(e.errno(), libc::EPIPE, "{room}: {e}");
        assert!(!h.domain(id).logdirty_enabled());
        assert_eq!(cb.qemu_logdirty, vec![true, false]);
    }
}

#[test]
fn stop_and_copy_at_the_first_call_still_sends_everything_live_once() {
    let h = TempHost::new("stop-first");
    let id = h.create(GuestType::Hvm, SMALL, 15, false);
    let hv = ScriptedDirty::new(h.hv(), h.domain(id), &[]);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.policy = Some(Box::new(|_| PolicyDecision::StopAndCopy));
    let mut out = Vec::new();
    let s = save_domain(&hv, id, &mut out, &live(), &mut cb, &RecLog::default()).expect("save");
    assert_eq!(cb.policy_calls, vec![stats(0, 0, s.p2m_size as i64)]);
    assert_eq!(s.precopy_iterations, 1);
    assert_eq!(
        s.pages_sent + s.pages_zero,
        h.domain(id).info().unwrap().tot_pages
    );
    // Only the final CLEAN, after suspend.
    assert_eq!(*hv.cleans.borrow(), vec![(0, true)]);
}
