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

use std::io::Write;

use super::{memory, Ctx, SaveError};
use crate::hv::{Hypervisor, Level};

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

/// What the policy wants next (`XGS_POLICY_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDecision {
    /// `XGS_POLICY_ABORT` (-1): abandon the migration.
    Abort,
    /// `XGS_POLICY_CONTINUE_PRECOPY` (0): another round.
    Continue,
    /// `XGS_POLICY_STOP_AND_COPY` (1): suspend and send the rest.
    StopAndCopy,
}

impl PolicyDecision {
    /// From a C policy's return value, read as libxenguest reads it: -1 is
    /// ABORT, 0 is CONTINUE, anything else stops the pre-copy phase.
    pub fn from_raw(v: i32) -> Self {
        match v {
            -1 => PolicyDecision::Abort,
            0 => PolicyDecision::Continue,
            _ => PolicyDecision::StopAndCopy,
        }
    }

    /// The C value.
    pub fn to_raw(self) -> i32 {
        match self {
            PolicyDecision::Abort => -1,
            PolicyDecision::Continue => 0,
            PolicyDecision::StopAndCopy => 1,
        }
    }
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

fn decide<H: Hypervisor, W: Write>(ctx: &mut Ctx<'_, H, W>) -> PolicyDecision {
    let stats = ctx.stats;
    let d = if ctx.cb.has(super::SaveHook::PrecopyPolicy) {
        ctx.cb.precopy_policy(stats)
    } else {
        simple_precopy_policy(stats)
    };
    ctx.summary.policy_calls.push((stats, d));
    d
}

/// Send memory while the guest runs (libxenguest's `send_memory_live`).
/// Log-dirty is already enabled; on return the caller suspends.
pub(crate) fn send_memory_live<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
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
    let res = precopy_rounds(ctx, &mut xen_dirty);
    ctx.prefix = None;
    res
}

fn precopy_rounds<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    xen_dirty: &mut u64,
) -> Result<(), SaveError> {
    let mut rounds: u32 = 0;
    let decision = loop {
        let d = decide(ctx);
        rounds += 1;

        if *xen_dirty > 0 && d != PolicyDecision::Abort {
            ctx.prefix = Some(format!("Frames iteration {}", ctx.stats.iteration));
            memory::send_dirty_pages(ctx, *xen_dirty)?;
            ctx.summary.precopy_iterations += 1;
        }
        if d != PolicyDecision::Continue {
            break d;
        }

        ctx.stats.iteration = rounds;
        // dirty_count is never -1 here: it was set by the CLEAN below or
        // is the initial p2m size.
        ctx.stats.total_written += ctx.stats.dirty_count.max(0) as u64;
        ctx.stats.dirty_count = -1;

        let d = decide(ctx);
        if d != PolicyDecision::Continue {
            break d;
        }

        let report = memory::logdirty_clean(ctx, false)?;
        *xen_dirty = u64::from(report.dirty_count);
        ctx.stats.dirty_count = i64::from(report.dirty_count);
    };
    if decision == PolicyDecision::Abort {
        ctx.msg(Level::Error, "Abort precopy loop");
        return Err(SaveError::Aborted);
    }
    Ok(())
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

    #[test]
    fn raw_policy_values_read_as_libxenguest_reads_them() {
        assert_eq!(PolicyDecision::from_raw(-1), PolicyDecision::Abort);
        assert_eq!(PolicyDecision::from_raw(0), PolicyDecision::Continue);
        assert_eq!(PolicyDecision::from_raw(1), PolicyDecision::StopAndCopy);
        assert_eq!(PolicyDecision::from_raw(7), PolicyDecision::StopAndCopy);
        assert_eq!(PolicyDecision::from_raw(-2), PolicyDecision::StopAndCopy);
        for d in [
            PolicyDecision::Abort,
            PolicyDecision::Continue,
            PolicyDecision::StopAndCopy,
        ] {
            assert_eq!(PolicyDecision::from_raw(d.to_raw()), d);
        }
    }
}
