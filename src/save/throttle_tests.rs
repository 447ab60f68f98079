//! Auto-converge inside the save engine, over a temporary xensim host with
//! a scripted guest ([`ScriptedDirty`]: the same number of pages dirty
//! before every CLEAN, whatever the cap, so the policy's path is
//! deterministic) and a zero downtime target (never met, so the guest only
//! stops when the dirty set stalls). What is checked is the scheduler
//! traffic: the caps applied, in order, and the caps and weights after the
//! save, on every way it ends.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use xensim::{FaultMode, FaultRule, GuestType, SchedParams, Scheduler};

use crate::hv::DomId;
use crate::save::policy::AutoConverge;
use crate::save::testutil::{RecLog, ScriptedDirty, TempHost, ToolstackSave};
use crate::save::{
    save_domain, simple_precopy_policy, PrecopySettings, SaveCallbacks, SaveError, SaveHook,
    SaveParams, SaveSummary,
};
use crate::toolstack::CallbackFailed;

const GUEST: u64 = 64 << 20;
/// Pages the guest dirties before every CLEAN: always the same, so the set
/// never shrinks.
const STUCK: [u32; 16] = [3000; 16];

fn settings(auto_converge: AutoConverge, abort: bool) -> SaveParams {
    SaveParams {
        live: true,
        precopy: PrecopySettings {
            target_downtime: Duration::ZERO,
            abort_if_not_converging: abort,
            auto_converge,
            ..PrecopySettings::default()
        },
        ..SaveParams::default()
    }
}

/// A host running `sched` with one 2-vCPU HVM guest, its parameters set to
/// `start` first when given.
fn guest(tag: &str, sched: Scheduler, start: Option<SchedParams>) -> (TempHost, DomId) {
    let h = TempHost::new(tag);
    h.host.set_scheduler(sched).expect("choose the scheduler");
    let id = h.create(GuestType::Hvm, GUEST, 7, false);
    if let Some(p) = start {
        h.host
            .sched_putinfo(id, sched.id(), p)
            .expect("initial parameters");
    }
    (h, id)
}

/// The caps in the domain's history, in order.
fn caps(h: &TempHost, id: DomId) -> Vec<u16> {
    h.domain(id)
        .sched_history()
        .expect("history")
        .iter()
        .map(|e| e.params.cap)
        .collect()
}

fn save(
    h: &TempHost,
    id: DomId,
    params: &SaveParams,
    cb: &mut dyn SaveCallbacks,
    log: &RecLog,
) -> Result<SaveSummary, SaveError> {
    let hv = ScriptedDirty::new(h.hv(), h.domain(id), &STUCK);
    save_domain(&hv, id, &mut Vec::new(), params, cb, log)
}

#[test]
fn a_stalled_guest_is_capped_step_by_step_down_to_the_floor_and_restored_after_the_save() {
    let (h, id) = guest("ac-steps", Scheduler::Credit2, None);
    let mut cb = ToolstackSave::new(h.domain(id));
    let log = RecLog::default();
    let sum = save(&h, id, &settings(AutoConverge::on(), false), &mut cb, &log)
        .unwrap_or_else(|e| panic!("save: {e}: {:#?}", log.lines.borrow()));
    // 50%, then 20 points lower each round, never below 5%.
    assert_eq!(sum.throttle_shares, vec![50, 30, 10, 5]);
    // Two vCPUs: a share of s% is a cap of 2s; then the original (none).
    assert_eq!(caps(&h, id), vec![100, 60, 20, 10, 0]);
    assert_eq!(h.domain(id).sched_params(), SchedParams::default());
    assert!(sum.throttled_time > Duration::ZERO, "{sum:?}");
    // At the floor the stall rule applies again: two more rounds.
    assert_eq!(sum.precopy_iterations, 9, "{sum:?}");
    assert_eq!(cb.suspends, 1);
    let lines = log.lines.borrow();
    let steps = lines
        .iter()
        .filter(|l| l.1.contains("auto-converge: round"))
        .count();
    assert_eq!(steps, 4, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.1.contains("auto-converge: restored domain")),
        "{lines:#?}"
    );
}

#[test]
fn without_the_setting_the_scheduler_is_never_touched() {
    let (h, id) = guest("ac-off", Scheduler::Credit2, None);
    let mut cb = ToolstackSave::new(h.domain(id));
    let sum = save(
        &h,
        id,
        &settings(AutoConverge::default(), false),
        &mut cb,
        &RecLog::default(),
    )
    .expect("save");
    assert!(sum.throttle_shares.is_empty());
    assert_eq!(sum.throttled_time, Duration::ZERO);
    assert!(caps(&h, id).is_empty());
    // The forced stop after the stall: the first pass and two more.
    assert_eq!(sum.precopy_iterations, 4, "{sum:?}");
}

#[test]
fn the_callers_own_precopy_policy_is_never_throttled() {
    let (h, id) = guest("ac-caller", Scheduler::Credit2, None);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.policy = Some(Box::new(simple_precopy_policy));
    let log = RecLog::default();
    let sum = save(&h, id, &settings(AutoConverge::on(), false), &mut cb, &log).expect("save");
    assert!(sum.throttle_shares.is_empty());
    assert!(caps(&h, id).is_empty());
    assert!(
        log.lines.borrow().iter().any(|l| l
            .1
            .contains("auto-converge is off: the caller's precopy_policy decides")),
        "{:#?}",
        log.lines.borrow()
    );
}

#[test]
fn abort_if_not_converging_aborts_only_after_the_floor_and_restores_the_cap() {
    let (h, id) = guest("ac-abort", Scheduler::Credit2, None);
    let mut cb = ToolstackSave::new(h.domain(id));
    let e = save(
        &h,
        id,
        &settings(AutoConverge::on(), true),
        &mut cb,
        &RecLog::default(),
    )
    .expect_err("the guest never converges");
    assert!(matches!(e, SaveError::NotConverging(_)), "{e}");
    assert_eq!(caps(&h, id), vec![100, 60, 20, 10, 0]);
    assert_eq!(h.domain(id).sched_params(), SchedParams::default());
    assert_eq!(cb.suspends, 0, "the guest was never suspended");
}

#[test]
fn a_failure_while_throttled_restores_the_cap() {
    let (h, id) = guest("ac-fail", Scheduler::Credit2, None);
    // The 5th CLEAN fails: after the caps of 50% and 30% were applied.
    h.host
        .set_faults(&[FaultRule {
            call: "xc_logdirty_control".into(),
            errno: libc::EIO,
            start: 5,
            mode: FaultMode::Once,
        }])
        .unwrap();
    let mut cb = ToolstackSave::new(h.domain(id));
    let e = save(
        &h,
        id,
        &settings(AutoConverge::on(), false),
        &mut cb,
        &RecLog::default(),
    )
    .expect_err("injected CLEAN failure");
    assert_eq!(e.errno(), libc::EIO, "{e}");
    assert_eq!(caps(&h, id), vec![100, 60, 0]);
    assert_eq!(h.domain(id).sched_params(), SchedParams::default());
}

#[test]
fn a_failed_cap_change_ends_throttling_and_the_save_goes_on() {
    let (h, id) = guest("ac-setfail", Scheduler::Credit2, None);
    h.host
        .set_faults(&[FaultRule {
            call: "xc_sched_credit2_domain_set".into(),
            errno: libc::EPERM,
            start: 1,
            mode: FaultMode::Once,
        }])
        .unwrap();
    let mut cb = ToolstackSave::new(h.domain(id));
    let log = RecLog::default();
    let sum = save(&h, id, &settings(AutoConverge::on(), false), &mut cb, &log).expect("save");
    assert!(sum.throttle_shares.is_empty());
    assert!(caps(&h, id).is_empty());
    // The round the throttle was asked for is sent, then the forced stop.
    assert_eq!(sum.precopy_iterations, 5, "{sum:?}");
    assert!(
        log.lines
            .borrow()
            .iter()
            .any(|l| l.1.contains("going on without throttling")),
        "{:#?}",
        log.lines.borrow()
    );
}

#[test]
fn a_failed_restore_is_retried() {
    let (h, id) = guest("ac-retry", Scheduler::Credit2, None);
    // Calls 1-4 lower the cap; the 5th, the restore, fails once.
    h.host
        .set_faults(&[FaultRule {
            call: "xc_sched_credit2_domain_set".into(),
            errno: libc::EAGAIN,
            start: 5,
            mode: FaultMode::Once,
        }])
        .unwrap();
    let mut cb = ToolstackSave::new(h.domain(id));
    let sum = save(
        &h,
        id,
        &settings(AutoConverge::on(), false),
        &mut cb,
        &RecLog::default(),
    )
    .expect("save");
    assert_eq!(sum.throttle_shares.len(), 4);
    assert_eq!(caps(&h, id), vec![100, 60, 20, 10, 0]);
    assert_eq!(h.domain(id).sched_params(), SchedParams::default());
}

/// Callbacks whose suspend panics (a toolstack bug unwinding through the
/// save).
struct PanicOnSuspend(ToolstackSave);

impl SaveCallbacks for PanicOnSuspend {
    fn has(&self, hook: SaveHook) -> bool {
        self.0.has(hook)
    }
    fn suspend(&mut self) -> Result<(), CallbackFailed> {
        panic!("suspend callback panicked");
    }
    fn switch_qemu_logdirty(&mut self, domid: DomId, enable: bool) -> Result<(), CallbackFailed> {
        self.0.switch_qemu_logdirty(domid, enable)
    }
}

#[test]
fn a_panic_while_throttled_restores_the_cap() {
    let (h, id) = guest("ac-panic", Scheduler::Credit2, None);
    let mut cb = PanicOnSuspend(ToolstackSave::new(h.domain(id)));
    let r = catch_unwind(AssertUnwindSafe(|| {
        save(
            &h,
            id,
            &settings(AutoConverge::on(), false),
            &mut cb,
            &RecLog::default(),
        )
    }));
    assert!(r.is_err(), "the panic unwinds out of the save");
    assert_eq!(caps(&h, id), vec![100, 60, 20, 10, 0]);
    assert_eq!(h.domain(id).sched_params(), SchedParams::default());
}

#[test]
fn under_credit_a_guest_with_its_own_cap_is_throttled_from_it_and_gets_it_back() {
    let start = SchedParams {
        weight: 512,
        cap: 80,
    };
    let (h, id) = guest("ac-credit", Scheduler::Credit, Some(start));
    let mut cb = ToolstackSave::new(h.domain(id));
    let ac = AutoConverge {
        enabled: true,
        initial_share: 60,
        step: 25,
        floor: 10,
    };
    let sum = save(&h, id, &settings(ac, false), &mut cb, &RecLog::default()).expect("save");
    assert_eq!(sum.throttle_shares, vec![60, 35, 10]);
    // Shares of its own cap of 80 (rounded up), then the cap it had.
    assert_eq!(caps(&h, id), vec![80, 48, 28, 8, 80]);
    let history = h.domain(id).sched_history().unwrap();
    assert!(history.iter().all(|e| e.scheduler == Scheduler::Credit));
    assert!(history.iter().all(|e| e.params.weight == 512));
    assert_eq!(h.domain(id).sched_params(), start);
}
