//! Auto-converge's mechanism: cap the guest's CPU through the scheduler
//! (credit or credit2) and put the original cap and weight back however the
//! save ends. The policy ([`super::policy`]) decides the shares; this module
//! only applies them.
//!
//! A [`Throttle`] reads nothing until the first share is applied, so a save
//! that never throttles makes no scheduler call. Once applied, it restores
//! the original parameters when [`Throttle::restore`] is called or, on every
//! other path (an error returned through `?`, a panic unwinding), when it is
//! dropped.

use std::time::{Duration, Instant};

use crate::hv::{DomId, HvError, Hypervisor, SchedCredit, SchedulerKind};
use crate::log::Level;

/// What the guest had before the save touched it.
#[derive(Debug, Clone, Copy)]
struct Original {
    kind: SchedulerKind,
    params: SchedCredit,
}

/// A guest's CPU cap, lowered and restored by auto-converge.
pub(crate) struct Throttle<'a, H: Hypervisor> {
    hv: &'a H,
    domid: DomId,
    vcpus: u32,
    original: Option<Original>,
    /// The cap in force while throttled (`None`: not throttled).
    applied: Option<u16>,
    since: Option<Instant>,
    /// Time spent throttled, summed.
    throttled: Duration,
}

impl<'a, H: Hypervisor> Throttle<'a, H> {
    /// A throttle for `domid` with `vcpus` vCPUs; nothing is read yet.
    pub(crate) fn new(hv: &'a H, domid: DomId, vcpus: u32) -> Self {
        Throttle {
            hv,
            domid,
            vcpus: vcpus.max(1),
            original: None,
            applied: None,
            since: None,
            throttled: Duration::ZERO,
        }
    }

    /// Whether a lowered cap is in force.
    pub(crate) fn is_applied(&self) -> bool {
        self.applied.is_some()
    }

    /// Time the guest has spent throttled so far.
    pub(crate) fn throttled_time(&self) -> Duration {
        self.throttled + self.since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// The original parameters, read once: the scheduler must have a cap.
    fn original(&mut self) -> Result<Original, HvError> {
        if let Some(o) = self.original {
            return Ok(o);
        }
        let kind = self.hv.scheduler()?;
        if !kind.has_cap() {
            return Err(HvError::with_detail(
                "xc_sched_id",
                libc::EOPNOTSUPP,
                format!("the host runs {kind}, which has no per-domain cap"),
            ));
        }
        let params = self.hv.sched_credit(self.domid, kind)?;
        let o = Original { kind, params };
        self.original = Some(o);
        Ok(o)
    }

    /// The cap that leaves the guest `share` percent of the CPU it could
    /// use before: of its own cap if it had one, else of all its vCPUs.
    fn cap_for(&self, o: &Original, share: u8) -> u16 {
        let base = if o.params.cap == 0 {
            100 * u64::from(self.vcpus)
        } else {
            u64::from(o.params.cap)
        };
        let cap = (base * u64::from(share.min(100))).div_ceil(100);
        cap.clamp(1, u64::from(u16::MAX - 1)) as u16
    }

    /// Give the guest `share` percent of its CPU (the weight is left
    /// alone). Returns the cap set and the one before the save.
    pub(crate) fn apply(&mut self, share: u8) -> Result<(u16, SchedCredit), HvError> {
        let o = self.original()?;
        let cap = self.cap_for(&o, share);
        // Weight 0: both schedulers leave the weight as it is.
        self.hv
            .set_sched_credit(self.domid, o.kind, SchedCredit { weight: 0, cap })?;
        self.applied = Some(cap);
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
        Ok((cap, o.params))
    }

    /// Put the original cap and weight back if a lowered cap is in force
    /// (tried twice: a transient failure must not leave the guest slowed).
    /// Returns what was restored and how long the guest was throttled, or
    /// `Ok(None)` when nothing was applied.
    fn restore(&mut self) -> Result<Option<(SchedCredit, Duration)>, HvError> {
        let (Some(o), Some(_)) = (self.original, self.applied) else {
            return Ok(None);
        };
        let first = self.hv.set_sched_credit(self.domid, o.kind, o.params);
        if let Err(e) = first {
            crate::log::message(
                Level::Warn,
                Some(e.errno()),
                &format!(
                    "auto-converge: restoring domain {}'s cap failed ({e}); retrying",
                    self.domid
                ),
            );
            self.hv.set_sched_credit(self.domid, o.kind, o.params)?;
        }
        self.applied = None;
        if let Some(t) = self.since.take() {
            self.throttled += t.elapsed();
        }
        Ok(Some((o.params, self.throttled)))
    }
}

/// One line for the log about a restore that failed for good: what the
/// operator has to put back by hand.
fn restore_failed_message(domid: DomId, kind: Option<SchedulerKind>, e: &HvError) -> String {
    let sched = kind.map_or("the scheduler".to_string(), |k| k.to_string());
    format!(
        "auto-converge: could not restore domain {domid}'s {sched} cap and weight: {e}; \
         the guest stays throttled until they are set again (xl sched-credit2 / sched-credit -d {domid})"
    )
}

impl<H: Hypervisor> Throttle<'_, H> {
    /// Restore the original parameters now if a lowered cap is in force,
    /// logging the outcome, and return the time the guest was throttled.
    /// A restore that fails twice is logged as an error (the save's own
    /// result stands: the stream is complete or has already failed).
    pub(crate) fn finish(&mut self) -> Duration {
        if !self.is_applied() {
            return self.throttled;
        }
        let kind = self.original.map(|o| o.kind);
        match self.restore() {
            Ok(Some((p, t))) => crate::log::message(
                Level::Info,
                None,
                &format!(
                    "auto-converge: restored domain {}'s cap {} and weight {} after {:.1} s throttled",
                    self.domid,
                    p.cap,
                    p.weight,
                    t.as_secs_f64()
                ),
            ),
            Ok(None) => {}
            Err(e) => {
                crate::log::message(
                    Level::Error,
                    Some(e.errno()),
                    &restore_failed_message(self.domid, kind, &e),
                );
                // Reported once; the drop does not try again.
                self.applied = None;
            }
        }
        self.throttled_time()
    }
}

impl<H: Hypervisor> Drop for Throttle<'_, H> {
    fn drop(&mut self) {
        self.finish();
    }
}
