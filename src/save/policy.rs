//! xcmig's own pre-copy policy: stop when the predicted downtime fits a
//! target.
//!
//! libxenguest's default ([`simple_precopy_policy`])
//! stops after 5 rounds or under 50 dirty pages, whatever the bandwidth and
//! the guest's dirty rate. When the caller gives no `precopy_policy`, xcmig
//! instead measures each round and predicts the stop-and-copy it would cause:
//!
//! * **bandwidth**: stream bytes written per second by the live rounds
//!   (a byte-weighted average that halves the weight of older rounds, so a
//!   round of a few pages barely moves it);
//! * **dirty rate**: pages found dirty by a round's log-dirty CLEAN, over
//!   the time since the previous CLEAN (or since log-dirty was enabled);
//! * **predicted downtime**: like libxenguest, xcmig sends the current dirty
//!   set once more while the guest runs before suspending it, so what is
//!   left for the stop-and-copy is what the guest dirties during that send:
//!   `dirty rate × (dirty pages × page bytes / bandwidth)` pages, copied at
//!   the measured bandwidth, plus a fixed allowance for the final records
//!   and the restorer's completion ([`PrecopySettings::final_overhead`]).
//!
//! After each CLEAN, in this order (see [`TargetedPolicy::after_clean`]):
//!
//! 1. nothing dirty: stop (the downtime is the fixed part alone);
//! 2. iteration or time cap reached: stop (forced), or abort when
//!    [`PrecopySettings::abort_if_not_converging`] is set and the prediction
//!    is over the target;
//! 3. the dirty set shrank to at most 3/4 of the last round's: continue.
//!    The next round sends pages that would otherwise be sent while the
//!    guest is stopped, so it costs only the (smaller) set it leaves behind
//!    in extra bytes, and shortens the downtime by the difference;
//! 4. the prediction fits the target: stop;
//! 5. with auto-converge ([`AutoConverge`]) on, throttle: once the dirty
//!    set has stalled (as in 6), cap the guest's CPU at
//!    [`AutoConverge::initial_share`] and continue; while capped, every
//!    round that gets here lowers the share by [`AutoConverge::step`]
//!    points, down to [`AutoConverge::floor`];
//! 6. the dirty set has not shrunk (by 5% of its smallest size so far) for
//!    [`PrecopySettings::stall_rounds`] rounds (counted afresh after each
//!    throttle step): the guest dirties memory as fast as it is sent; stop
//!    anyway (libxenguest's forced stop), or abort when asked to. With
//!    auto-converge this happens only at the floor;
//! 7. otherwise continue.
//!
//! The dirty rate is a count of distinct pages over an interval, so for a
//! small working set rewritten faster than it is sent it underestimates how
//! fast that set refills over a shorter interval. Step 3 bounds the error:
//! when the prediction is consulted the set no longer shrinks by a quarter,
//! so sending it takes at least about 3/4 of the interval the rate was
//! measured over, and the predicted set is at most about 4/3 too small for
//! the same bandwidth. (The benchmark's busy guest shows the final set up to
//! 1.6× the prediction: the bandwidth also drops from round to round on a
//! loaded machine.)
//!
//! The policy is pure: the engine hands it measurements, so it is tested
//! with synthetic rounds.

use std::fmt;
use std::time::Duration;

use crate::hv::PAGE_SIZE;

/// `struct precopy_stats`, passed by value to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrecopyStats {
    /// Completed pre-copy rounds.
    pub iteration: u32,
    /// Pages counted as written so far (the sum of the dirty counts of
    /// the completed rounds).
    pub total_written: u64,
    /// Pages dirtied since the last round, or -1 if not known yet.
    pub dirty_count: i64,
}

/// What the policy wants next (`XGS_POLICY_*` in C; capi maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDecision {
    /// Abandon the migration.
    Abort,
    /// Another round.
    Continue,
    /// Suspend and send the rest.
    StopAndCopy,
}

/// Rounds after which the default policy stops pre-copying.
pub const SPP_MAX_ITERATIONS: u32 = 5;
/// Dirty count under which the default policy stops pre-copying.
pub const SPP_TARGET_DIRTY_COUNT: i64 = 50;

/// libxenguest's default policy (`simple_precopy_policy`): stop and copy
/// once fewer than 50 pages are dirty or 5 rounds have been done.
pub fn simple_precopy_policy(stats: PrecopyStats) -> PolicyDecision {
    if (stats.dirty_count >= 0 && stats.dirty_count < SPP_TARGET_DIRTY_COUNT)
        || stats.iteration >= SPP_MAX_ITERATIONS
    {
        PolicyDecision::StopAndCopy
    } else {
        PolicyDecision::Continue
    }
}

/// Which policy decides the pre-copy phase when the caller gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyChoice {
    /// xcmig's downtime-targeted policy ([`TargetedPolicy`]).
    #[default]
    Targeted,
    /// libxenguest's `simple_precopy_policy` (5 rounds or under 50 dirty
    /// pages), for comparisons.
    Classic,
}

/// Settings of the pre-copy phase when the caller passes no policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrecopySettings {
    /// Which policy applies.
    pub policy: PolicyChoice,
    /// Longest acceptable stop-and-copy (default 300 ms, as QEMU's and
    /// Cloud Hypervisor's defaults). Zero never fits: pre-copy then ends
    /// only when the dirty set stops shrinking or at a cap.
    pub target_downtime: Duration,
    /// Most live rounds, the first full pass included (default 30). With
    /// rounds that at least halve the dirty set, 20 are enough to empty a
    /// 4 GiB guest's; the cap bounds the bytes resent by a guest that
    /// keeps dirtying just under the bandwidth. At least 1.
    pub max_iterations: u32,
    /// Longest time spent in rounds after the first full pass, or `None`
    /// for no limit (default 60 s). The first pass is not counted: its
    /// length is set by the guest's size and the link, not by convergence.
    pub max_precopy_time: Option<Duration>,
    /// When the guest does not converge (the dirty set stalls, or a cap is
    /// reached) with the predicted downtime over the target: fail the save
    /// ([`SaveError::NotConverging`](super::SaveError::NotConverging))
    /// instead of stopping the guest anyway. Default false.
    pub abort_if_not_converging: bool,
    /// Rounds without the dirty set shrinking that mean it will not
    /// converge (default 2: each further round resends about the same set
    /// without shortening the downtime).
    pub stall_rounds: u32,
    /// Fixed part of the predicted downtime: suspending, the final CLEAN,
    /// the end-of-stream records and the restorer's completion (default
    /// 5 ms, what the benchmark measures for a converged guest on xensim).
    pub final_overhead: Duration,
    /// Throttle the guest's CPU when it does not converge (default off).
    pub auto_converge: AutoConverge,
}

/// Auto-converge: cap the CPU of a guest that dirties memory faster than
/// the stream carries it, so that its dirty rate falls below the
/// bandwidth (QEMU's auto-converge, through Xen's credit/credit2 cap).
///
/// Shares are percentages of the CPU the guest's vCPUs could use before
/// the save (all of them, or its own cap if it had one). The guest runs
/// slower while it is throttled; the original cap and weight are put back
/// when the save ends, however it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoConverge {
    /// Throttle at all (default false).
    pub enabled: bool,
    /// Share left at the first step, 1..=100 (default 50).
    pub initial_share: u8,
    /// Points the share drops by at each further step, at least 1
    /// (default 20).
    pub step: u8,
    /// Lowest share, 1..=initial_share (default 5).
    pub floor: u8,
}

/// Default [`AutoConverge::initial_share`].
pub const DEFAULT_THROTTLE_INITIAL: u8 = 50;
/// Default [`AutoConverge::step`].
pub const DEFAULT_THROTTLE_STEP: u8 = 20;
/// Default [`AutoConverge::floor`].
pub const DEFAULT_THROTTLE_FLOOR: u8 = 5;

impl Default for AutoConverge {
    fn default() -> Self {
        AutoConverge {
            enabled: false,
            initial_share: DEFAULT_THROTTLE_INITIAL,
            step: DEFAULT_THROTTLE_STEP,
            floor: DEFAULT_THROTTLE_FLOOR,
        }
    }
}

impl AutoConverge {
    /// Auto-converge on, with the default shares.
    pub fn on() -> Self {
        AutoConverge {
            enabled: true,
            ..AutoConverge::default()
        }
    }

    /// The settings with shares forced into range: every share 1..=100,
    /// the floor at most the initial share, a step of at least 1.
    pub fn clamped(self) -> Self {
        let initial_share = self.initial_share.clamp(1, 100);
        AutoConverge {
            enabled: self.enabled,
            initial_share,
            step: self.step.max(1),
            floor: self.floor.clamp(1, initial_share),
        }
    }

    /// The share after `current`: `step` points lower, not below the floor.
    fn next(self, current: u8) -> u8 {
        current.saturating_sub(self.step).max(self.floor)
    }
}

/// Default [`PrecopySettings::target_downtime`].
pub const DEFAULT_TARGET_DOWNTIME: Duration = Duration::from_millis(300);
/// Default [`PrecopySettings::max_iterations`].
pub const DEFAULT_MAX_ITERATIONS: u32 = 30;
/// Default [`PrecopySettings::max_precopy_time`].
pub const DEFAULT_MAX_PRECOPY_TIME: Duration = Duration::from_secs(60);
/// Default [`PrecopySettings::stall_rounds`].
pub const DEFAULT_STALL_ROUNDS: u32 = 2;
/// Default [`PrecopySettings::final_overhead`].
pub const DEFAULT_FINAL_OVERHEAD: Duration = Duration::from_millis(5);

impl Default for PrecopySettings {
    fn default() -> Self {
        PrecopySettings {
            policy: PolicyChoice::Targeted,
            target_downtime: DEFAULT_TARGET_DOWNTIME,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            max_precopy_time: Some(DEFAULT_MAX_PRECOPY_TIME),
            abort_if_not_converging: false,
            stall_rounds: DEFAULT_STALL_ROUNDS,
            final_overhead: DEFAULT_FINAL_OVERHEAD,
            auto_converge: AutoConverge::default(),
        }
    }
}

impl PrecopySettings {
    /// libxenguest's classic policy.
    pub fn classic() -> Self {
        PrecopySettings {
            policy: PolicyChoice::Classic,
            ..PrecopySettings::default()
        }
    }
}

/// Stream bytes one dirty page costs: its data and its PAGE_DATA entry.
const PAGE_BYTES: f64 = (PAGE_SIZE + 8) as f64;

/// While each round leaves at most this fraction of the last round's dirty
/// set, pre-copy goes on even when the prediction fits: another round costs
/// the set it leaves behind and saves the difference from the downtime.
const CONVERGING_RATIO: f64 = 0.75;

/// A round counts as progress when it shrinks the dirty set by this
/// fraction of its smallest size so far.
const PROGRESS_FRACTION: f64 = 0.05;

/// What one live round did, as the engine measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundMeasure {
    /// Stream bytes the round wrote.
    pub bytes: u64,
    /// Pages with data the round sent (0 when not counted: a page is then
    /// taken to cost 4096 + 8 octets).
    pub pages: u64,
    /// How long sending took.
    pub send_time: Duration,
    /// Pages Xen reported dirty at the CLEAN that ended the round.
    pub dirty_count: u64,
    /// Time from the previous CLEAN (or log-dirty enable) to this one.
    pub interval: Duration,
    /// Time spent after the first full pass, up to this CLEAN.
    pub since_first_pass: Duration,
}

/// The figures behind a decision, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Bandwidth estimate, bytes per second.
    pub bandwidth: f64,
    /// Pages dirtied per second during the last round.
    pub dirty_rate: f64,
    /// Pages predicted to be left for the stop-and-copy if it stops now.
    pub final_pages: u64,
    /// Predicted downtime if it stops now.
    pub downtime: Duration,
}

/// Why the policy decided what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The first full pass is always sent.
    FirstPass,
    /// The policy decides after each CLEAN only.
    BetweenRounds,
    /// No page was dirtied during the last round.
    NothingDirty,
    /// The dirty set shrank to at most 3/4: another round is cheap.
    Converging,
    /// The predicted downtime fits the target.
    Fits,
    /// Still over the target, still shrinking.
    OverTarget,
    /// The iteration cap was reached.
    IterationCap,
    /// The time cap was reached.
    TimeCap,
    /// The dirty set stopped shrinking with the prediction over target.
    NotConverging,
    /// Auto-converge: the guest's CPU share is lowered for the next round.
    Throttling,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::FirstPass => "first full pass",
            Reason::BetweenRounds => "decided after each CLEAN",
            Reason::NothingDirty => "nothing dirty",
            Reason::Converging => "dirty set shrinking by a quarter or more",
            Reason::Fits => "predicted downtime fits the target",
            Reason::OverTarget => "predicted downtime over the target, dirty set shrinking",
            Reason::IterationCap => "iteration cap reached",
            Reason::TimeCap => "time cap reached",
            Reason::NotConverging => {
                "dirty set stopped shrinking, predicted downtime over the target"
            }
            Reason::Throttling => "not converging: lowering the guest's CPU share",
        })
    }
}

/// One decision with its reason and figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// What the engine should do.
    pub decision: PolicyDecision,
    /// Why.
    pub reason: Reason,
    /// The figures, when a round has been measured.
    pub estimate: Option<Estimate>,
    /// Auto-converge: the CPU share (percent) to give the guest before the
    /// next round is sent, when it changes.
    pub throttle: Option<u8>,
}

impl Verdict {
    fn new(decision: PolicyDecision, reason: Reason, estimate: Option<Estimate>) -> Self {
        Verdict {
            decision,
            reason,
            estimate,
            throttle: None,
        }
    }
}

/// The downtime-targeted policy's state over one save.
#[derive(Debug, Clone)]
pub struct TargetedPolicy {
    settings: PrecopySettings,
    p2m_size: u64,
    /// Decayed sums behind the bandwidth estimate.
    acc_bytes: f64,
    acc_secs: f64,
    /// Stream octets a dirty page costs, as the last round measured them
    /// (less than a page when compressed).
    page_bytes: f64,
    /// Live rounds sent so far.
    rounds: u32,
    /// Size of the dirty set sent by the last round.
    last_set: u64,
    /// Smallest dirty set so far, and rounds since it last shrank.
    best: u64,
    stalled: u32,
    /// The guest's CPU share while auto-converge throttles it.
    share: Option<u8>,
}

impl TargetedPolicy {
    /// A policy for a save over `p2m_size` pfns (the first round's set);
    /// auto-converge's shares are forced into range
    /// ([`AutoConverge::clamped`]).
    pub fn new(mut settings: PrecopySettings, p2m_size: u64) -> Self {
        settings.auto_converge = settings.auto_converge.clamped();
        TargetedPolicy {
            settings,
            p2m_size,
            acc_bytes: 0.0,
            acc_secs: 0.0,
            page_bytes: PAGE_BYTES,
            rounds: 0,
            last_set: p2m_size,
            best: p2m_size,
            stalled: 0,
            share: None,
        }
    }

    /// The CPU share auto-converge gives the guest now, if it throttles.
    pub fn share(&self) -> Option<u8> {
        self.share
    }

    /// Auto-converge cannot throttle this guest (the scheduler has no cap,
    /// or setting it failed): go on as without it. The stall that called
    /// for the throttle still counts, so the next round that does not make
    /// progress ends pre-copy.
    pub fn disable_throttling(&mut self) {
        self.settings.auto_converge.enabled = false;
        self.share = None;
        self.stalled = self.stalled.max(self.settings.stall_rounds.max(1));
    }

    /// The settings in force.
    pub fn settings(&self) -> &PrecopySettings {
        &self.settings
    }

    /// Before the first round (libxenguest's first call, with the whole
    /// p2m as the dirty count): always send the first full pass, unless
    /// the cap allows one round only.
    pub fn first(&mut self) -> Verdict {
        if self.settings.max_iterations <= 1 {
            self.rounds = 1;
            return Verdict::new(PolicyDecision::StopAndCopy, Reason::IterationCap, None);
        }
        self.rounds = 1;
        Verdict::new(PolicyDecision::Continue, Reason::FirstPass, None)
    }

    /// Between sending a round and its CLEAN (libxenguest's second call,
    /// with an unknown dirty count): the policy decides after CLEANs only.
    pub fn between(&self) -> Verdict {
        Verdict::new(PolicyDecision::Continue, Reason::BetweenRounds, None)
    }

    /// Bandwidth estimate in bytes per second, if a round was measured.
    pub fn bandwidth(&self) -> Option<f64> {
        (self.acc_secs > 0.0 && self.acc_bytes > 0.0).then(|| self.acc_bytes / self.acc_secs)
    }

    /// After a round's CLEAN: decide whether the current dirty set is sent
    /// as another round that continues pre-copy, or as the last live round
    /// before the suspend (STOP_AND_COPY), or not at all (ABORT).
    pub fn after_clean(&mut self, m: &RoundMeasure) -> Verdict {
        let s = self.settings;
        // A round's time is at least a microsecond: a clock too coarse to
        // see it must not make the bandwidth infinite.
        let secs = m.send_time.as_secs_f64().max(1e-6);
        self.acc_bytes = self.acc_bytes / 2.0 + m.bytes as f64;
        self.acc_secs = self.acc_secs / 2.0 + secs;
        if m.pages > 0 && m.bytes > 0 {
            // The bytes actually sent: compressed pages cost less; record
            // headers and entries never make a page dearer than a whole one.
            self.page_bytes = (m.bytes as f64 / m.pages as f64).min(PAGE_BYTES);
        }
        let est = self.estimate(m);

        let d = m.dirty_count;
        let converging = (d as f64) <= self.last_set as f64 * CONVERGING_RATIO;
        self.last_set = d;
        if (d as f64) < self.best as f64 * (1.0 - PROGRESS_FRACTION) {
            self.best = d;
            self.stalled = 0;
        } else {
            self.stalled += 1;
        }
        let fits = est.downtime <= s.target_downtime;
        // This decision sends the current set: one more live round.
        self.rounds += 1;

        let stop = |reason| Verdict::new(PolicyDecision::StopAndCopy, reason, Some(est));
        let give_up = |reason| {
            if s.abort_if_not_converging && !fits {
                Verdict::new(PolicyDecision::Abort, reason, Some(est))
            } else {
                stop(reason)
            }
        };
        if d == 0 {
            return stop(Reason::NothingDirty);
        }
        if self.rounds >= s.max_iterations {
            return give_up(Reason::IterationCap);
        }
        if s.max_precopy_time.is_some_and(|t| m.since_first_pass >= t) {
            return give_up(Reason::TimeCap);
        }
        if converging {
            return Verdict::new(PolicyDecision::Continue, Reason::Converging, Some(est));
        }
        if fits {
            return stop(Reason::Fits);
        }
        let ac = s.auto_converge;
        let stalled = self.stalled >= s.stall_rounds.max(1);
        let throttle = match self.share {
            _ if !ac.enabled => None,
            Some(cur) if cur > ac.floor => Some(ac.next(cur)),
            None if stalled => Some(ac.initial_share),
            _ => None,
        };
        if let Some(share) = throttle {
            self.share = Some(share);
            // A lower share changes the guest's rate: count the stall
            // afresh from here.
            self.stalled = 0;
            self.best = d;
            let mut v = Verdict::new(PolicyDecision::Continue, Reason::Throttling, Some(est));
            v.throttle = Some(share);
            return v;
        }
        if stalled {
            return give_up(Reason::NotConverging);
        }
        Verdict::new(PolicyDecision::Continue, Reason::OverTarget, Some(est))
    }

    fn estimate(&self, m: &RoundMeasure) -> Estimate {
        let bandwidth = self.bandwidth().unwrap_or(f64::MIN_POSITIVE);
        let interval = m.interval.as_secs_f64().max(1e-6);
        let dirty_rate = m.dirty_count as f64 / interval;
        let send_secs = m.dirty_count as f64 * self.page_bytes / bandwidth;
        let final_pages = (dirty_rate * send_secs)
            .ceil()
            .min(self.p2m_size as f64)
            .max(0.0) as u64;
        let copy_secs = final_pages as f64 * self.page_bytes / bandwidth;
        // Saturate rather than panic on absurd figures.
        let copy = Duration::try_from_secs_f64(copy_secs).unwrap_or(Duration::MAX);
        Estimate {
            bandwidth,
            dirty_rate,
            final_pages,
            downtime: copy.saturating_add(self.settings.final_overhead),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_stops_under_fifty_dirty_or_at_five_rounds() {
        let s = |iteration, dirty_count| PrecopyStats {
            iteration,
            total_written: 0,
            dirty_count,
        };
        assert_eq!(simple_precopy_policy(s(0, 1000)), PolicyDecision::Continue);
        assert_eq!(simple_precopy_policy(s(0, 50)), PolicyDecision::Continue);
        assert_eq!(simple_precopy_policy(s(0, 49)), PolicyDecision::StopAndCopy);
        assert_eq!(simple_precopy_policy(s(0, 0)), PolicyDecision::StopAndCopy);
        assert_eq!(simple_precopy_policy(s(4, -1)), PolicyDecision::Continue);
        assert_eq!(simple_precopy_policy(s(5, -1)), PolicyDecision::StopAndCopy);
        assert_eq!(
            simple_precopy_policy(s(5, 1000)),
            PolicyDecision::StopAndCopy
        );
    }

    const MIB: f64 = 1048576.0;

    /// A round that sent `set` pages at `mib_s` MiB/s while the guest
    /// dirtied `dirty` pages, `since` seconds after the first pass.
    fn round(set: u64, mib_s: f64, dirty: u64, since: f64) -> RoundMeasure {
        let bytes = (set as f64 * PAGE_BYTES) as u64;
        let send = Duration::from_secs_f64(bytes as f64 / (mib_s * MIB));
        RoundMeasure {
            bytes,
            pages: 0,
            send_time: send,
            dirty_count: dirty,
            interval: send + Duration::from_millis(1),
            since_first_pass: Duration::from_secs_f64(since),
        }
    }

    /// Feed rounds whose dirty counts follow `dirties`; returns the
    /// verdicts up to and including the first that does not continue.
    fn run(settings: PrecopySettings, p2m: u64, mib_s: f64, dirties: &[u64]) -> Vec<Verdict> {
        let mut p = TargetedPolicy::new(settings, p2m);
        let mut out = vec![p.first()];
        let mut set = p2m;
        let mut since = 0.0;
        for &d in dirties {
            if out.last().unwrap().decision != PolicyDecision::Continue {
                break;
            }
            let mut m = round(set, mib_s, d, 0.0);
            if set != p2m {
                since += m.interval.as_secs_f64();
                m.since_first_pass = Duration::from_secs_f64(since);
            }
            out.push(p.after_clean(&m));
            set = d;
        }
        out
    }

    fn last(v: &[Verdict]) -> (PolicyDecision, Reason) {
        let l = v.last().unwrap();
        (l.decision, l.reason)
    }

    #[test]
    fn first_pass_is_always_sent_unless_the_cap_is_one_round() {
        let mut p = TargetedPolicy::new(PrecopySettings::default(), 1000);
        assert_eq!(p.first().decision, PolicyDecision::Continue);
        assert_eq!(p.between().decision, PolicyDecision::Continue);
        let one = PrecopySettings {
            max_iterations: 1,
            ..PrecopySettings::default()
        };
        let v = TargetedPolicy::new(one, 1000).first();
        assert_eq!(
            (v.decision, v.reason),
            (PolicyDecision::StopAndCopy, Reason::IterationCap)
        );
    }

    #[test]
    fn prediction_is_the_pages_dirtied_while_the_set_is_sent_again() {
        let mut p = TargetedPolicy::new(PrecopySettings::default(), 1 << 20);
        // First pass: 1 GiB worth of pages at 100 MiB/s; 20000 pages
        // dirtied over 10 s, i.e. 2000 pages/s.
        let bytes = (262144.0 * PAGE_BYTES) as u64;
        let m = RoundMeasure {
            bytes,
            pages: 0,
            send_time: Duration::from_secs_f64(bytes as f64 / (100.0 * MIB)),
            dirty_count: 20000,
            interval: Duration::from_secs(10),
            since_first_pass: Duration::ZERO,
        };
        p.first();
        let v = p.after_clean(&m);
        let e = v.estimate.unwrap();
        assert!((e.bandwidth / MIB - 100.0).abs() < 0.01, "{e:?}");
        assert!((e.dirty_rate - 2000.0).abs() < 1e-6, "{e:?}");
        // Sending 20000 pages at 100 MiB/s takes 0.78 s: 1563 pages dirty.
        let send = 20000.0 * PAGE_BYTES / (100.0 * MIB);
        assert_eq!(e.final_pages, (2000.0 * send).ceil() as u64);
        let copy = e.final_pages as f64 * PAGE_BYTES / (100.0 * MIB);
        let want = copy + 0.005;
        assert!(
            (e.downtime.as_secs_f64() - want).abs() < 1e-6,
            "{e:?} vs {want}"
        );
        // 61 ms fits 300 ms, but the set shrank 13-fold: one more round.
        assert_eq!(v.reason, Reason::Converging);
    }

    #[test]
    fn compressed_rounds_predict_from_the_bytes_actually_sent() {
        // The same round as above, its 262144 pages compressed to a third.
        let whole = (262144.0 * PAGE_BYTES) as u64;
        let bytes = whole / 3;
        let m = |pages| RoundMeasure {
            bytes,
            pages,
            send_time: Duration::from_secs_f64(bytes as f64 / (100.0 * MIB)),
            dirty_count: 20000,
            interval: Duration::from_secs(10),
            since_first_pass: Duration::ZERO,
        };
        let mut counted = TargetedPolicy::new(PrecopySettings::default(), 1 << 20);
        counted.first();
        let e = counted.after_clean(&m(262144)).estimate.unwrap();
        let mut uncounted = TargetedPolicy::new(PrecopySettings::default(), 1 << 20);
        uncounted.first();
        let u = uncounted.after_clean(&m(0)).estimate.unwrap();
        // A page costs a third of its size: a third of the send time, so a
        // third of the pages dirtied meanwhile, and a ninth of the copy.
        let per_page = bytes as f64 / 262144.0;
        let send = 20000.0 * per_page / (100.0 * MIB);
        assert_eq!(e.final_pages, (2000.0 * send).ceil() as u64);
        assert!(e.final_pages * 2 < u.final_pages, "{e:?} vs {u:?}");
        let copy = e.final_pages as f64 * per_page / (100.0 * MIB);
        assert!((e.downtime.as_secs_f64() - (copy + 0.005)).abs() < 1e-6);
        // Records never make a page dearer than a whole one.
        let mut p = TargetedPolicy::new(PrecopySettings::default(), 1 << 20);
        p.first();
        let big = RoundMeasure {
            bytes: whole * 2,
            pages: 262144,
            ..m(0)
        };
        let b = p.after_clean(&big).estimate.unwrap();
        let send = 20000.0 * PAGE_BYTES / b.bandwidth;
        assert_eq!(b.final_pages, (2000.0 * send).ceil() as u64);
    }

    #[test]
    fn converging_workload_stops_once_the_set_stops_shrinking_fast_and_the_prediction_fits() {
        let p2m = 262144;
        // 100 MiB/s; the set shrinks fast, then levels off at ~3000 pages,
        // whose stop-and-copy fits 300 ms easily.
        let v = run(
            PrecopySettings::default(),
            p2m,
            100.0,
            &[40000, 9000, 3200, 3000, 2900, 2800],
        );
        let decisions: Vec<Reason> = v.iter().map(|v| v.reason).collect();
        assert_eq!(
            decisions,
            vec![
                Reason::FirstPass,
                Reason::Converging,
                Reason::Converging,
                Reason::Converging,
                Reason::Fits
            ]
        );
        assert_eq!(last(&v).0, PolicyDecision::StopAndCopy);
        let e = v.last().unwrap().estimate.unwrap();
        assert!(e.downtime <= DEFAULT_TARGET_DOWNTIME, "{e:?}");
    }

    #[test]
    fn a_tighter_target_keeps_a_slowly_shrinking_guest_in_precopy() {
        let p2m = 262144;
        // At 20 MiB/s, over 15000 dirty pages take seconds to copy: no fit
        // at 300 ms while the set keeps shrinking by more than 5% a round,
        // though never by a quarter.
        let dirties = [40000, 34000, 29000, 25000, 21500, 18500, 16000];
        let v = run(PrecopySettings::default(), p2m, 20.0, &dirties);
        assert!(
            v[2..].iter().all(|v| v.reason == Reason::OverTarget),
            "{v:?}"
        );
        assert_eq!(v.len(), dirties.len() + 1);
        assert_eq!(last(&v).0, PolicyDecision::Continue);
        // A generous target lets it stop as soon as fast shrinking stops.
        let relaxed = PrecopySettings {
            target_downtime: Duration::from_secs(100),
            ..PrecopySettings::default()
        };
        let v = run(relaxed, p2m, 20.0, &dirties);
        assert_eq!(last(&v), (PolicyDecision::StopAndCopy, Reason::Fits));
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn nothing_dirty_stops_at_once() {
        let v = run(PrecopySettings::default(), 4096, 100.0, &[0]);
        assert_eq!(
            last(&v),
            (PolicyDecision::StopAndCopy, Reason::NothingDirty)
        );
    }

    #[test]
    fn non_converging_workload_is_forced_to_stop_after_the_stall_rounds() {
        // 20 MiB/s against a guest that redirties 50000 pages every round:
        // about 10 s of stop-and-copy, never near 300 ms.
        let v = run(PrecopySettings::default(), 262144, 20.0, &[50000; 20]);
        // Round 1 shrinks the set (from the whole p2m); rounds 2 and 3 do
        // not.
        assert_eq!(v.len(), 4, "{v:?}");
        assert_eq!(
            last(&v),
            (PolicyDecision::StopAndCopy, Reason::NotConverging)
        );
        assert!(v.last().unwrap().estimate.unwrap().downtime > DEFAULT_TARGET_DOWNTIME);
    }

    #[test]
    fn non_converging_workload_aborts_when_asked_to() {
        let s = PrecopySettings {
            abort_if_not_converging: true,
            ..PrecopySettings::default()
        };
        let v = run(s, 262144, 20.0, &[50000; 20]);
        assert_eq!(last(&v), (PolicyDecision::Abort, Reason::NotConverging));
    }

    #[test]
    fn abort_option_does_not_abort_a_guest_whose_prediction_fits() {
        let s = PrecopySettings {
            abort_if_not_converging: true,
            max_iterations: 3,
            ..PrecopySettings::default()
        };
        // 1000 pages redirtied each round at 100 MiB/s: 40 ms.
        let v = run(s, 262144, 100.0, &[1000; 10]);
        assert_eq!(last(&v).0, PolicyDecision::StopAndCopy);
    }

    #[test]
    fn iteration_cap_counts_live_rounds_including_the_first_pass() {
        let s = PrecopySettings {
            max_iterations: 4,
            stall_rounds: 100,
            max_precopy_time: None,
            ..PrecopySettings::default()
        };
        // Shrinking by 10% a round, never fitting: only the cap stops it.
        let dirties: Vec<u64> = (0..20).map(|i| 200000 - i * 10000).collect();
        let v = run(s, 262144, 10.0, &dirties);
        // first (round 1 sent), then after CLEANs 1, 2 and 3: the third
        // decision sends round 4 and stops there.
        assert_eq!(v.len(), 4, "{v:?}");
        assert_eq!(
            last(&v),
            (PolicyDecision::StopAndCopy, Reason::IterationCap)
        );
        let aborting = PrecopySettings {
            abort_if_not_converging: true,
            ..s
        };
        let v = run(aborting, 262144, 10.0, &dirties);
        assert_eq!(last(&v), (PolicyDecision::Abort, Reason::IterationCap));
    }

    #[test]
    fn time_cap_counts_from_the_end_of_the_first_pass() {
        let s = PrecopySettings {
            max_precopy_time: Some(Duration::from_secs(5)),
            stall_rounds: 100,
            ..PrecopySettings::default()
        };
        let mut p = TargetedPolicy::new(s, 262144);
        p.first();
        // The first pass itself took a minute: not counted.
        let mut m = round(262144, 10.0, 200000, 0.0);
        assert!(m.send_time > Duration::from_secs(60));
        assert_eq!(p.after_clean(&m).reason, Reason::OverTarget);
        m = round(200000, 10.0, 190000, 4.9);
        assert_eq!(p.after_clean(&m).reason, Reason::OverTarget);
        m = round(190000, 10.0, 180000, 5.0);
        assert_eq!(
            p.after_clean(&m).decision,
            PolicyDecision::StopAndCopy,
            "5 s after the first pass"
        );
        let unlimited = PrecopySettings {
            max_precopy_time: None,
            ..s
        };
        let mut p = TargetedPolicy::new(unlimited, 262144);
        p.first();
        m.since_first_pass = Duration::from_secs(1 << 20);
        m.dirty_count = 250000;
        assert_eq!(p.after_clean(&m).decision, PolicyDecision::Continue);
    }

    #[test]
    fn zero_target_never_fits() {
        let s = PrecopySettings {
            target_downtime: Duration::ZERO,
            ..PrecopySettings::default()
        };
        let v = run(s, 262144, 1000.0, &[10, 9, 9, 9, 9, 9]);
        assert_eq!(
            last(&v),
            (PolicyDecision::StopAndCopy, Reason::NotConverging)
        );
    }

    #[test]
    fn a_tiny_round_barely_moves_the_bandwidth_estimate() {
        let mut p = TargetedPolicy::new(PrecopySettings::default(), 262144);
        p.first();
        p.after_clean(&round(262144, 100.0, 1000, 0.0));
        // 3 pages that took 10 ms (per-round fixed costs).
        let m = RoundMeasure {
            bytes: (3.0 * PAGE_BYTES) as u64,
            pages: 0,
            send_time: Duration::from_millis(10),
            dirty_count: 3,
            interval: Duration::from_millis(11),
            since_first_pass: Duration::from_millis(11),
        };
        p.after_clean(&m);
        let bw = p.bandwidth().unwrap() / MIB;
        assert!(bw > 99.0, "{bw}");
    }

    fn with_auto_converge(ac: AutoConverge) -> PrecopySettings {
        PrecopySettings {
            auto_converge: ac,
            ..PrecopySettings::default()
        }
    }

    #[test]
    fn auto_converge_throttles_after_the_stall_and_steps_down_to_the_floor() {
        let v = run(
            with_auto_converge(AutoConverge::on()),
            262144,
            100.0,
            &[50000; 20],
        );
        let steps: Vec<(Reason, Option<u8>)> = v.iter().map(|v| (v.reason, v.throttle)).collect();
        use Reason::*;
        assert_eq!(
            steps,
            vec![
                (FirstPass, None),
                (Converging, None),
                (OverTarget, None),
                (Throttling, Some(50)),
                (Throttling, Some(30)),
                (Throttling, Some(10)),
                (Throttling, Some(5)),
                // At the floor the stall is counted afresh.
                (OverTarget, None),
                (NotConverging, None),
            ]
        );
        assert_eq!(last(&v).0, PolicyDecision::StopAndCopy);
    }

    #[test]
    fn without_auto_converge_no_verdict_throttles() {
        for dirties in [[50000u64; 20], [1000; 20]] {
            let v = run(PrecopySettings::default(), 262144, 20.0, &dirties);
            assert!(v.iter().all(|v| v.throttle.is_none()), "{v:?}");
        }
    }

    #[test]
    fn a_throttled_guest_that_converges_keeps_its_share() {
        // After the first cap the set shrinks by more than a quarter each
        // round: no further step, and pre-copy ends when it fits.
        let dirties = [50000, 50000, 50000, 20000, 8000, 3000, 1000, 900];
        let v = run(
            with_auto_converge(AutoConverge::on()),
            262144,
            20.0,
            &dirties,
        );
        let shares: Vec<u8> = v.iter().filter_map(|v| v.throttle).collect();
        assert_eq!(shares, vec![50]);
        assert_eq!(last(&v), (PolicyDecision::StopAndCopy, Reason::Fits));
    }

    #[test]
    fn abort_comes_only_after_the_floor_did_not_help() {
        let s = PrecopySettings {
            abort_if_not_converging: true,
            ..with_auto_converge(AutoConverge::on())
        };
        let v = run(s, 262144, 100.0, &[50000; 20]);
        let shares: Vec<u8> = v.iter().filter_map(|v| v.throttle).collect();
        assert_eq!(shares, vec![50, 30, 10, 5]);
        assert_eq!(last(&v), (PolicyDecision::Abort, Reason::NotConverging));
    }

    #[test]
    fn disabling_throttling_keeps_the_stall_that_asked_for_it() {
        let mut p = TargetedPolicy::new(with_auto_converge(AutoConverge::on()), 262144);
        p.first();
        let mut set = 262144;
        let mut verdicts = Vec::new();
        for _ in 0..3 {
            verdicts.push(p.after_clean(&round(set, 20.0, 50000, 1.0)));
            set = 50000;
        }
        assert_eq!(verdicts[2].throttle, Some(50));
        p.disable_throttling();
        assert_eq!(p.share(), None);
        let v = p.after_clean(&round(set, 20.0, 50000, 2.0));
        assert_eq!(
            (v.decision, v.reason),
            (PolicyDecision::StopAndCopy, Reason::NotConverging)
        );
    }

    #[test]
    fn auto_converge_shares_are_clamped_into_range() {
        let a = AutoConverge {
            enabled: true,
            initial_share: 0,
            step: 0,
            floor: 200,
        }
        .clamped();
        assert_eq!((a.initial_share, a.step, a.floor), (1, 1, 1));
        let b = AutoConverge {
            enabled: true,
            initial_share: 250,
            step: 30,
            floor: 20,
        }
        .clamped();
        assert_eq!((b.initial_share, b.step, b.floor), (100, 30, 20));
        assert_eq!(b.next(100), 70);
        assert_eq!(b.next(40), 20);
        assert_eq!(b.next(20), 20);
    }

    #[test]
    fn absurd_measurements_do_not_panic() {
        let mut p = TargetedPolicy::new(PrecopySettings::default(), u64::MAX);
        p.first();
        let m = RoundMeasure {
            bytes: 0,
            pages: 0,
            send_time: Duration::ZERO,
            dirty_count: u64::MAX,
            interval: Duration::ZERO,
            since_first_pass: Duration::MAX,
        };
        let v = p.after_clean(&m);
        assert_ne!(v.decision, PolicyDecision::Continue);
    }
}

#[cfg(test)]
#[path = "policy_engine_tests.rs"]
mod engine_tests;
