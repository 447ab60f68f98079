//! The host's CPU scheduler as `XEN_DOMCTL_scheduler_op` and
//! `XEN_SYSCTL_sched_id` see it: which scheduler the host runs (credit or
//! credit2, a host setting) and each domain's weight and cap, with Xen
//! 4.17's rules for setting them (`csched_dom_cntl`, `csched2_dom_cntl`,
//! `sched_adjust`). The cap is what a guest workload honours: a capped
//! guest dirties memory at its rate times its share of its vCPUs
//! ([`Domain::cpu_share`]).
//!
//! Every change is appended to the domain's `sched-history` file, so a test
//! can check what a toolstack did to a guest's scheduling during a save.

use crate::domain::{w, Domain, F_SCHED_HISTORY};
use crate::error::{err, Error, Result};
use crate::host::Host;
use crate::DomId;
use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::Ordering::SeqCst;

/// `XEN_SCHEDULER_CREDIT`.
pub const XEN_SCHEDULER_CREDIT: u32 = 5;
/// `XEN_SCHEDULER_CREDIT2`.
pub const XEN_SCHEDULER_CREDIT2: u32 = 6;
/// The weight a domain starts with under both schedulers.
pub const DEFAULT_WEIGHT: u16 = 256;

/// A scheduler a host can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheduler {
    /// The credit scheduler (`sched=credit`).
    Credit,
    /// The credit2 scheduler, Xen 4.17's default.
    #[default]
    Credit2,
}

impl Scheduler {
    /// Its `XEN_SCHEDULER_*` id, what `xc_sched_id` returns.
    pub fn id(self) -> u32 {
        match self {
            Scheduler::Credit => XEN_SCHEDULER_CREDIT,
            Scheduler::Credit2 => XEN_SCHEDULER_CREDIT2,
        }
    }

    /// The scheduler with `XEN_SCHEDULER_*` id `id`.
    pub fn from_id(id: u32) -> Option<Scheduler> {
        match id {
            XEN_SCHEDULER_CREDIT => Some(Scheduler::Credit),
            XEN_SCHEDULER_CREDIT2 => Some(Scheduler::Credit2),
            _ => None,
        }
    }

    /// Its name on Xen's command line (`sched=`).
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Credit => "credit",
            Scheduler::Credit2 => "credit2",
        }
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheduler {
    type Err = Error;
    fn from_str(s: &str) -> Result<Scheduler> {
        match s {
            "credit" => Ok(Scheduler::Credit),
            "credit2" => Ok(Scheduler::Credit2),
            _ => err(
                libc::EINVAL,
                format!("unknown scheduler {s:?} (credit or credit2)"),
            ),
        }
    }
}

/// A domain's parameters under credit and credit2 (`struct
/// xen_domctl_sched_credit{,2}`): the weight, and the cap in percent of one
/// physical CPU (0: no cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedParams {
    /// Relative share when CPUs are contended.
    pub weight: u16,
    /// Most CPU the domain may use, in percent of one CPU; 0 is no cap.
    pub cap: u16,
}

impl Default for SchedParams {
    fn default() -> Self {
        SchedParams {
            weight: DEFAULT_WEIGHT,
            cap: 0,
        }
    }
}

impl SchedParams {
    /// The `ctl` word form: bit 32 set, cap in bits 16..32, weight below
    /// (0, a domain never set, reads as the defaults).
    fn to_word(self) -> u64 {
        1 << 32 | u64::from(self.cap) << 16 | u64::from(self.weight)
    }

    fn from_word(v: u64) -> SchedParams {
        if v >> 32 == 0 {
            return SchedParams::default();
        }
        SchedParams {
            weight: v as u16,
            cap: (v >> 16) as u16,
        }
    }
}

/// One change of a domain's parameters, as recorded in `sched-history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedEvent {
    /// When, in nanoseconds since the Unix epoch.
    pub time_ns: u128,
    /// The scheduler that applied it.
    pub scheduler: Scheduler,
    /// The parameters after the change.
    pub params: SchedParams,
}

impl SchedEvent {
    /// The history line: `<unix ns> <scheduler> weight <w> cap <c>`.
    pub fn to_line(&self) -> String {
        format!(
            "{} {} weight {} cap {}",
            self.time_ns, self.scheduler, self.params.weight, self.params.cap
        )
    }

    /// Parse a history line.
    pub fn parse(line: &str) -> Result<SchedEvent> {
        let bad = || Error::new(libc::EINVAL, format!("bad sched-history line {line:?}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 6 || f[2] != "weight" || f[4] != "cap" {
            return Err(bad());
        }
        Ok(SchedEvent {
            time_ns: f[0].parse().map_err(|_| bad())?,
            scheduler: f[1].parse()?,
            params: SchedParams {
                weight: f[3].parse().map_err(|_| bad())?,
                cap: f[5].parse().map_err(|_| bad())?,
            },
        })
    }
}

/// The parameters after a `putinfo` of `req` onto `cur` under `sched`, for
/// a domain of `vcpus` vCPUs, and Xen's error if it fails.
///
/// Both schedulers leave the weight alone when `req.weight` is 0. Credit
/// leaves the cap alone when `req.cap` is 0xffff and otherwise sets it (0
/// removes it); credit2 removes the cap when `req.cap` is 0 and refuses
/// one above 100 per vCPU with EINVAL. As in Xen's `csched2_dom_cntl`, the
/// weight is applied before the cap is checked, so a refused cap still
/// leaves the new weight in force.
pub fn apply_putinfo(
    sched: Scheduler,
    cur: SchedParams,
    req: SchedParams,
    vcpus: u32,
) -> (SchedParams, Option<Error>) {
    let mut out = cur;
    if req.weight != 0 {
        out.weight = req.weight;
    }
    match sched {
        Scheduler::Credit if req.cap != u16::MAX => out.cap = req.cap,
        Scheduler::Credit => {}
        Scheduler::Credit2 if u32::from(req.cap) > 100 * vcpus => {
            let e = Error::new(
                libc::EINVAL,
                format!("credit2: cap {} over 100 per vCPU ({vcpus} vCPUs)", req.cap),
            );
            return (out, Some(e));
        }
        Scheduler::Credit2 => out.cap = req.cap,
    }
    (out, None)
}

impl Domain {
    /// The domain's weight and cap.
    pub fn sched_params(&self) -> SchedParams {
        SchedParams::from_word(self.ctl(w::SCHED).load(SeqCst))
    }

    /// The share of its vCPUs' time the cap leaves the domain, in (0, 1]:
    /// `cap / (100 × vCPUs)`, 1 without a cap. A workload dirties memory at
    /// its rate times this share.
    pub fn cpu_share(&self) -> f64 {
        let cap = self.sched_params().cap;
        if cap == 0 {
            return 1.0;
        }
        (f64::from(cap) / (100.0 * f64::from(self.vcpus().max(1)))).min(1.0)
    }

    /// Every change of the domain's parameters, oldest first.
    pub fn sched_history(&self) -> Result<Vec<SchedEvent>> {
        let path = self.dir().join(F_SCHED_HISTORY);
        match std::fs::read_to_string(&path) {
            Ok(s) => s.lines().map(SchedEvent::parse).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    /// Apply a `putinfo` under `sched` ([`apply_putinfo`]), record any
    /// change, and return the parameters in force or Xen's error.
    pub(crate) fn sched_putinfo(&self, sched: Scheduler, req: SchedParams) -> Result<SchedParams> {
        self.require_alive()?;
        let _g = self.locked()?;
        let cur = self.sched_params();
        let (new, refused) = apply_putinfo(sched, cur, req, self.vcpus());
        if new != cur || refused.is_none() {
            self.record_sched(sched, new)?;
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(new),
        }
    }

    /// Store `new` and append it to the history.
    fn record_sched(&self, sched: Scheduler, new: SchedParams) -> Result<()> {
        self.ctl(w::SCHED).store(new.to_word(), SeqCst);
        let event = SchedEvent {
            time_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_nanos()),
            scheduler: sched,
            params: new,
        };
        let path = self.dir().join(F_SCHED_HISTORY);
        // One write of the whole line to a file opened O_APPEND: lines from
        // several processes never interleave.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{}\n", event.to_line()).as_bytes()))
            .map_err(|e| Error::io(path.display(), e))
    }
}

impl Host {
    /// The scheduler the host runs (credit2 unless set).
    pub fn scheduler(&self) -> Scheduler {
        Scheduler::from_id(self.ctl_word(crate::host::H_SCHEDULER).load(SeqCst) as u32)
            .unwrap_or_default()
    }

    /// Choose the host's scheduler, as Xen's `sched=` does at boot: EBUSY
    /// once the host has domains (their parameters belong to the scheduler
    /// they were created under).
    pub fn set_scheduler(&self, sched: Scheduler) -> Result<()> {
        if self.scheduler() == sched {
            return Ok(());
        }
        if !self.domain_ids()?.is_empty() {
            return err(
                libc::EBUSY,
                format!(
                    "the host has domains: its scheduler stays {}",
                    self.scheduler()
                ),
            );
        }
        self.ctl_word(crate::host::H_SCHEDULER)
            .store(u64::from(sched.id()), SeqCst);
        Ok(())
    }

    /// `XEN_DOMCTL_scheduler_op` with `XEN_DOMCTL_SCHEDOP_getinfo`: EINVAL
    /// when `sched_id` is not the host's scheduler.
    pub fn sched_getinfo(&self, domid: DomId, sched_id: u32) -> Result<SchedParams> {
        self.check_sched_id(sched_id)?;
        let d = self.domain(domid)?;
        d.require_alive()?;
        Ok(d.sched_params())
    }

    /// `XEN_DOMCTL_scheduler_op` with `XEN_DOMCTL_SCHEDOP_putinfo`
    /// ([`apply_putinfo`]): EINVAL when `sched_id` is not the host's
    /// scheduler. Returns the parameters in force.
    pub fn sched_putinfo(
        &self,
        domid: DomId,
        sched_id: u32,
        req: SchedParams,
    ) -> Result<SchedParams> {
        let sched = self.check_sched_id(sched_id)?;
        self.domain(domid)?.sched_putinfo(sched, req)
    }

    fn check_sched_id(&self, sched_id: u32) -> Result<Scheduler> {
        let sched = self.scheduler();
        if sched.id() != sched_id {
            return err(
                libc::EINVAL,
                format!(
                    "scheduler id {sched_id}: the host runs {sched} ({})",
                    sched.id()
                ),
            );
        }
        Ok(sched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(weight: u16, cap: u16) -> SchedParams {
        SchedParams { weight, cap }
    }

    #[test]
    fn credit_keeps_the_cap_on_0xffff_and_the_weight_on_zero() {
        let cur = p(256, 50);
        let ok = |req| {
            let (out, e) = apply_putinfo(Scheduler::Credit, cur, req, 1);
            assert!(e.is_none(), "{e:?}");
            out
        };
        assert_eq!(ok(p(0, u16::MAX)), cur);
        assert_eq!(ok(p(512, 0)), p(512, 0));
        // Credit has no upper bound on the cap.
        assert_eq!(ok(p(0, 400)), p(256, 400));
    }

    #[test]
    fn credit2_refuses_a_cap_over_100_per_vcpu_and_clears_it_on_zero() {
        let cur = p(256, 50);
        let put = |req| apply_putinfo(Scheduler::Credit2, cur, req, 2);
        assert_eq!(put(p(0, 0)).0, p(256, 0));
        assert_eq!(put(p(0, 200)).0, p(256, 200));
        let (out, e) = put(p(0, 201));
        assert_eq!(e.map(|e| e.errno()), Some(libc::EINVAL));
        assert_eq!(out, cur);
        // The weight goes in before the cap is refused, as in Xen.
        let (out, e) = put(p(512, 201));
        assert!(e.is_some());
        assert_eq!(out, p(512, 50));
    }

    #[test]
    fn params_word_round_trips_and_zero_reads_as_the_defaults() {
        assert_eq!(SchedParams::from_word(0), SchedParams::default());
        for q in [p(1, 0), p(256, 25), p(u16::MAX, u16::MAX), p(7, 0)] {
            assert_eq!(SchedParams::from_word(q.to_word()), q);
        }
    }

    #[test]
    fn history_lines_round_trip() {
        let e = SchedEvent {
            time_ns: 1_700_000_000_123_456_789,
            scheduler: Scheduler::Credit,
            params: p(256, 25),
        };
        assert_eq!(SchedEvent::parse(&e.to_line()).unwrap(), e);
        assert!(SchedEvent::parse("1 credit weight x cap 2").is_err());
        assert!(SchedEvent::parse("1 rtds weight 1 cap 2").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_history_event_round_trips_through_its_line(
            time_ns in proptest::prelude::any::<u128>(),
            credit2 in proptest::prelude::any::<bool>(),
            weight in proptest::prelude::any::<u16>(),
            cap in proptest::prelude::any::<u16>(),
        ) {
            let e = SchedEvent {
                time_ns,
                scheduler: if credit2 { Scheduler::Credit2 } else { Scheduler::Credit },
                params: p(weight, cap),
            };
            proptest::prop_assert_eq!(SchedEvent::parse(&e.to_line()).unwrap(), e);
        }

        #[test]
        fn parsing_any_line_never_panics(line in ".{0,80}") {
            let _ = SchedEvent::parse(&line);
        }
    }
}
