//! Auto-converge's mechanism: cap the guest's CPU through the scheduler
//! (credit or credit2) and put the original cap and weight back however the
//! save ends. The policy ([`super::policy`]) decides the shares; this module
//! only applies them.
//!
//! A [`Throttle`] reads nothing until the first share is applied, so a save
//! that never throttles makes no scheduler call. Once applied, it restores
//! the original parameters when [`Throttle::finish`] is called or, on every
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
    /// Since when a lowered cap is in force (`None`: not throttled).
    since: Option<Instant>,
    /// Time spent throttled before `since`.
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
            since: None,
            throttled: Duration::ZERO,
        }
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
    /// alone). Returns the cap set and the parameters before the save.
    pub(crate) fn apply(&mut self, share: u8) -> Result<(u16, SchedCredit), HvError> {
        let o = self.original()?;
        let cap = self.cap_for(&o, share);
        // Weight 0: both schedulers leave the weight as it is.
        self.hv
            .set_sched_credit(self.domid, o.kind, SchedCredit { weight: 0, cap })?;
        self.since.get_or_insert_with(Instant::now);
        Ok((cap, o.params))
    }

    /// Put the original cap and weight back if a lowered cap is in force,
    /// tried twice (a transient failure must not leave the guest slowed),
    /// logging the outcome; returns the time the guest was throttled. A
    /// restore that fails twice is logged as an error naming what to set
    /// by hand, once; the save's own result stands (its stream is complete
    /// or it has already failed).
    pub(crate) fn finish(&mut self) -> Duration {
        let (Some(o), Some(since)) = (self.original, self.since.take()) else {
            return self.throttled;
        };
        self.throttled += since.elapsed();
        let set = || self.hv.set_sched_credit(self.domid, o.kind, o.params);
        let res = set().or_else(|e| {
            crate::log::message(
                Level::Warn,
                Some(e.errno()),
                &format!(
                    "auto-converge: restoring domain {}'s cap failed ({e}); retrying",
                    self.domid
                ),
            );
            set()
        });
        match res {
            Ok(()) => crate::log::message(
                Level::Info,
                None,
                &format!(
                    "auto-converge: restored domain {}'s cap {} and weight {} after {:.1} s throttled",
                    self.domid,
                    o.params.cap,
                    o.params.weight,
                    self.throttled.as_secs_f64()
                ),
            ),
            Err(e) => crate::log::message(
                Level::Error,
                Some(e.errno()),
                &format!(
                    "auto-converge: could not restore domain {d}'s {k} cap {c} and weight {w}: {e}; \
                     the guest stays throttled until they are set again \
                     (xl sched-{k} -d {d} -c {c} -w {w})",
                    d = self.domid,
                    k = o.kind,
                    c = o.params.cap,
                    w = o.params.weight
                ),
            ),
        }
        self.throttled
    }
}

impl<H: Hypervisor> Drop for Throttle<'_, H> {
    fn drop(&mut self) {
        self.finish();
    }
}
