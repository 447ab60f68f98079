//! The live pre-copy phase and its policy.
//!
//! The policy is consulted exactly where libxenguest 4.17 consults it
//! (`send_memory_live`), with the same statistics:
//!
//! ```text
//! stats = {iteration 0, total_written 0, dirty_count p2m_size}
//! loop:
//!     d = policy(stats)                               ── call A
//!     if Xen's last dirty count > 0 and d != ABORT: send the dirty set
//!     if d != CONTINUE: stop
//!     stats.iteration = number of A calls so far
//!     stats.total_written += stats.dirty_count
//!     stats.dirty_count = -1
//!     d = policy(stats)                               ── call B
//!     if d != CONTINUE: stop
//!     CLEAN the log-dirty bitmap; stats.dirty_count = Xen's dirty count
//! ABORT fails the save; otherwise suspend and send the rest.
//! ```
//!
//! So even a STOP_AND_COPY from call A sends the current dirty set once
//! more while the guest runs.
//!
//! When the caller gives no policy, xcmig's downtime-targeted policy
//! ([`super::policy`]) answers both calls instead of libxenguest's default
//! (unless [`PrecopySettings::policy`](super::PrecopySettings::policy) selects the
//! classic one): it decides at call A from the rounds it measured here
//! (bytes and time of each send, Xen's dirty count and the time between
//! CLEANs) and answers CONTINUE at call B. The statistics and call points
//! stay libxenguest's, so the summary's `policy_calls` reads the same.

use std::io::Write;
use std::time::{Duration, Instant};

use super::callbacks::SaveHook;
use super::ctx::Ctx;
use super::error::SaveError;
use super::guest::PageFrames;
use super::memory;
use super::policy::{
    simple_precopy_policy, PolicyChoice, PolicyDecision, PrecopyStats, Reason, RoundMeasure,
    TargetedPolicy, Verdict,
};
use super::throttle::Throttle;
use crate::hv::Hypervisor;
use crate::log::Level;

/// Who decides the pre-copy phase of this save.
enum Decider {
    /// The caller's `precopy_policy`, or libxenguest's default when the
    /// caller chose the classic policy: both see only [`PrecopyStats`].
    Stats,
    /// xcmig's downtime-targeted policy, fed with measurements.
    Targeted(Box<TargetedPolicy>),
}

/// A decision of the policy on the current statistics, recorded in the
/// summary. `verdict` is the targeted policy's answer when it decides.
fn record<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    verdict: Option<Verdict>,
) -> PolicyDecision {
    let stats = ctx.stats;
    let d = match verdict {
        Some(v) => v.decision,
        None if ctx.cb.has(SaveHook::PrecopyPolicy) => ctx.cb.precopy_policy(stats),
        None => simple_precopy_policy(stats),
    };
    ctx.summary.policy_calls.push((stats, d));
    d
}

/// Send memory while the guest runs (libxenguest's `send_memory_live`).
/// Log-dirty is already enabled; on return the caller suspends.
///
/// With auto-converge on and xcmig's policy deciding, `throttle` caps the
/// guest's CPU when the policy asks; the caller restores it after the
/// suspend (or its drop does, on any other way out).
pub(crate) fn send_memory_live<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
    throttle: &mut Throttle<'_, H>,
) -> Result<(), SaveError> {
    let p2m_size = ctx.mem.p2m_size();
    ctx.stats = PrecopyStats {
        iteration: 0,
        total_written: 0,
        dirty_count: p2m_size as i64,
    };
    // Xen's count from the last CLEAN; the first round sends everything.
    let mut xen_dirty = p2m_size;
    ctx.mem.dirty_set_all();
    let mut decider = if ctx.cb.has(SaveHook::PrecopyPolicy)
        || ctx.precopy.policy == PolicyChoice::Classic
    {
        if ctx.precopy.auto_converge.enabled {
            let who = if ctx.cb.has(SaveHook::PrecopyPolicy) {
                "the caller's precopy_policy"
            } else {
                "the classic policy"
            };
            ctx.msg(
                Level::Detail,
                &format!("precopy: auto-converge is off: {who} decides this save"),
            );
        }
        Decider::Stats
    } else {
        let s = ctx.precopy;
        ctx.msg(
            Level::Detail,
            &format!(
                "precopy: downtime-targeted policy: target {} ms, at most {} rounds, {}, {} if not converging",
                s.target_downtime.as_millis(),
                s.max_iterations,
                s.max_precopy_time.map_or("no time cap".to_string(), |t| format!(
                    "{} s after the first pass",
                    t.as_secs_f64()
                )),
                if s.abort_if_not_converging { "abort" } else { "stop and copy" }
            ),
        );
        let policy = TargetedPolicy::new(s, p2m_size);
        let a = policy.settings().auto_converge;
        if a.enabled {
            ctx.msg(
                Level::Detail,
                &format!(
                    "precopy: auto-converge: when not converging, cap the guest's CPU at {}%, then {} points lower each round, down to {}%",
                    a.initial_share, a.step, a.floor
                ),
            );
        }
        Decider::Targeted(Box::new(policy))
    };
    let res = precopy_rounds(ctx, frames, &mut xen_dirty, &mut decider, throttle);
    ctx.prefix = None;
    res
}

/// Auto-converge's step: cap the guest at `share` percent before the next
/// round. A scheduler that cannot (no cap, a failed call) ends throttling
/// for this save, with a warning; the migration goes on without it.
fn apply_throttle<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    throttle: &mut Throttle<'_, H>,
    policy: &mut TargetedPolicy,
    share: u8,
    round: u32,
    dirty: u64,
) {
    match throttle.apply(share) {
        Ok((cap, before)) => {
            ctx.summary.throttle_shares.push(share);
            ctx.msg(
                Level::Info,
                &format!(
                    "auto-converge: round {round}: {dirty} pages dirty and not converging: \
                     domain {} capped at {share}% of its CPU (cap {cap}, {} before the save)",
                    ctx.domid,
                    if before.cap == 0 {
                        "none".to_string()
                    } else {
                        before.cap.to_string()
                    }
                ),
            );
        }
        Err(e) => {
            policy.disable_throttling();
            crate::log::message(
                Level::Warn,
                Some(e.errno()),
                &format!(
                    "auto-converge: cannot cap domain {}'s CPU ({e}); going on without throttling",
                    ctx.domid
                ),
            );
        }
    }
}

fn precopy_rounds<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
    xen_dirty: &mut u64,
    decider: &mut Decider,
    throttle: &mut Throttle<'_, H>,
) -> Result<(), SaveError> {
    let mut rounds: u32 = 0;
    // Log-dirty was enabled just before: the first interval starts now.
    let mut last_clean = Instant::now();
    // Time between the last two CLEANs (the first: since enabling).
    let mut interval = Duration::ZERO;
    let mut first_pass_end: Option<Instant> = None;
    // Bytes and time of the last round sent.
    let mut sent = (0u64, Duration::ZERO, 0u64);
    let mut last_verdict: Option<Verdict>;
    let decision = loop {
        let verdict = match decider {
            Decider::Stats => None,
            Decider::Targeted(p) if rounds == 0 => Some(p.first()),
            Decider::Targeted(p) => {
                let now = Instant::now();
                let m = RoundMeasure {
                    bytes: sent.0,
                    pages: sent.2,
                    send_time: sent.1,
                    dirty_count: *xen_dirty,
                    interval,
                    since_first_pass: first_pass_end
                        .map_or(Duration::ZERO, |t| now.duration_since(t)),
                };
                let v = p.after_clean(&m);
                log_round(ctx, rounds, &m, &v);
                if let Some(share) = v.throttle {
                    apply_throttle(ctx, throttle, p, share, rounds, *xen_dirty);
                }
                Some(v)
            }
        };
        last_verdict = verdict;
        let d = record(ctx, verdict);
        rounds += 1;

        if *xen_dirty > 0 && d != PolicyDecision::Abort {
            ctx.prefix = Some(format!("Frames iteration {}", ctx.stats.iteration));
            let (b0, t0, p0) = (ctx.out.bytes(), Instant::now(), ctx.summary.pages_sent);
            memory::send_dirty_pages(ctx, frames, *xen_dirty)?;
            sent = (
                ctx.out.bytes().saturating_sub(b0),
                t0.elapsed(),
                ctx.summary.pages_sent - p0,
            );
            ctx.summary.precopy_iterations += 1;
        } else {
            sent = (0, Duration::ZERO, 0);
        }
        if first_pass_end.is_none() {
            first_pass_end = Some(Instant::now());
        }
        if d != PolicyDecision::Continue {
            break d;
        }

        ctx.stats.iteration = rounds;
        // dirty_count is never -1 here: it was set by the CLEAN below or
        // is the initial p2m size.
        ctx.stats.total_written += ctx.stats.dirty_count.max(0) as u64;
        ctx.stats.dirty_count = -1;

        let verdict = match decider {
            Decider::Stats => None,
            Decider::Targeted(p) => Some(p.between()),
        };
        let d = record(ctx, verdict);
        if d != PolicyDecision::Continue {
            break d;
        }

        let report = memory::logdirty_clean(ctx, false)?;
        let now = Instant::now();
        interval = now.duration_since(last_clean);
        last_clean = now;
        *xen_dirty = u64::from(report.dirty_count);
        ctx.stats.dirty_count = i64::from(report.dirty_count);
    };
    if decision == PolicyDecision::Abort {
        if let Some(v) = last_verdict {
            let e = v.estimate.map_or(String::new(), |e| {
                format!(
                    ": predicted downtime {:.1} ms, target {} ms",
                    e.downtime.as_secs_f64() * 1e3,
                    ctx.precopy.target_downtime.as_millis()
                )
            });
            return Err(SaveError::NotConverging(format!(
                "{} after {} rounds ({} dirty pages){e}",
                v.reason, ctx.summary.precopy_iterations, *xen_dirty
            )));
        }
        ctx.msg(Level::Error, "Abort precopy loop");
        return Err(SaveError::Aborted);
    }
    if let Some(v) = last_verdict {
        let level = match v.reason {
            Reason::NotConverging | Reason::IterationCap | Reason::TimeCap
                if v.estimate
                    .is_some_and(|e| e.downtime > ctx.precopy.target_downtime) =>
            {
                Level::Warn
            }
            _ => Level::Info,
        };
        let e = v.estimate.map_or(String::new(), |e| {
            format!(
                ", predicted downtime {:.1} ms (target {} ms)",
                e.downtime.as_secs_f64() * 1e3,
                ctx.precopy.target_downtime.as_millis()
            )
        });
        ctx.msg(
            level,
            &format!(
                "precopy: stop and copy after {} rounds: {}{e}",
                ctx.summary.precopy_iterations, v.reason
            ),
        );
    }
    Ok(())
}

/// One line per round at detail level: what was measured, what was
/// predicted, what was decided.
fn log_round<H: Hypervisor, W: Write>(
    ctx: &Ctx<'_, H, W>,
    round: u32,
    m: &RoundMeasure,
    v: &Verdict,
) {
    let Some(e) = v.estimate else { return };
    ctx.msg(
        Level::Detail,
        &format!(
            "precopy round {round}: sent {} bytes in {:.1} ms, bandwidth {:.1} MiB/s; \
             {} pages dirtied in {:.1} ms ({:.0} pages/s); predicted final set {} pages, \
             downtime {:.1} ms (target {} ms): {:?} ({})",
            m.bytes,
            m.send_time.as_secs_f64() * 1e3,
            e.bandwidth / 1048576.0,
            m.dirty_count,
            m.interval.as_secs_f64() * 1e3,
            e.dirty_rate,
            e.final_pages,
            e.downtime.as_secs_f64() * 1e3,
            ctx.precopy.target_downtime.as_millis(),
            v.decision,
            v.reason
        ),
    );
}
