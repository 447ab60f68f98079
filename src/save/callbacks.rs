//! The toolstack side of a save (`struct save_callbacks`), typed.

use super::policy::{simple_precopy_policy, PolicyDecision, PrecopyStats};
use crate::hv::DomId;
use crate::toolstack::{CallbackFailed, Next};

/// The optional members of `struct save_callbacks`; see [`SaveCallbacks::has`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveHook {
    /// `precopy_policy`.
    PrecopyPolicy,
    /// `postcopy`.
    Postcopy,
    /// `checkpoint`.
    Checkpoint,
    /// `wait_checkpoint`.
    WaitCheckpoint,
    /// `switch_qemu_logdirty`.
    SwitchQemuLogdirty,
}

/// The toolstack side of a save (`struct save_callbacks`). A callback
/// whose [`SaveCallbacks::has`] is false is never called.
pub trait SaveCallbacks {
    /// Whether an optional callback is provided (a non-NULL pointer in C).
    /// `suspend` is always required.
    fn has(&self, hook: SaveHook) -> bool;

    /// Suspend the domain; on success the domain must then read as shut
    /// down for suspend.
    fn suspend(&mut self) -> Result<(), CallbackFailed>;

    /// Decide the next step of the live pre-copy phase. Called only if
    /// `has(PrecopyPolicy)`; otherwise [`SaveParams::precopy`](super::SaveParams::precopy)
    /// chooses (xcmig's downtime-targeted policy, or [`simple_precopy_policy`]).
    fn precopy_policy(&mut self, stats: PrecopyStats) -> PolicyDecision {
        simple_precopy_policy(stats)
    }

    /// Checkpointed streams: resume the guest after a checkpoint was sent.
    /// [`Next::Stop`] ends checkpointing (the save then ends successfully
    /// without an END record).
    fn postcopy(&mut self) -> Next {
        Next::Stop { code: 0 }
    }

    /// Remus: wait for the next checkpoint (the `checkpoint` callback).
    fn checkpoint(&mut self) -> Next {
        Next::Stop { code: 0 }
    }

    /// COLO: tell the secondary that a checkpoint was sent (the same
    /// `checkpoint` callback as [`SaveCallbacks::checkpoint`], which a COLO
    /// save reads as succeeding or failing instead).
    /// The default takes [`SaveCallbacks::checkpoint`]'s answer: a stop
    /// is a failure.
    fn notify_checkpoint(&mut self) -> Result<(), CallbackFailed> {
        match self.checkpoint() {
            Next::Continue => Ok(()),
            Next::Stop { code } => Err(CallbackFailed { code }),
        }
    }

    /// COLO: wait for the secondary.
    fn wait_checkpoint(&mut self) -> Next {
        Next::Stop { code: 0 }
    }

    /// HVM: turn qemu's log-dirty tracking on or off.
    fn switch_qemu_logdirty(&mut self, domid: DomId, enable: bool) -> Result<(), CallbackFailed> {
        let _ = (domid, enable);
        Err(CallbackFailed { code: -1 })
    }
}
