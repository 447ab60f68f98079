//! The C callback structs adapted to the engines' callback traits.
//!
//! This is where each callback's integer return convention (they differ
//! per callback in `xenguest.h`) becomes the engines' typed answer, read
//! exactly as libxenguest 4.17 reads it; and where the presence of optional
//! callbacks (non-NULL pointers) is translated.

use std::ffi::c_uint;

use super::types::{DataFn, PrecopyStatsC, RestoreCallbacksC, SaveCallbacksC};
use crate::hv::DomId;
use crate::restore::{MissingStaticData, Proceed, RestoreCallbacks, RestoreHook};
use crate::save::{PolicyDecision, PrecopyStats, SaveCallbacks, SaveHook};
use crate::toolstack::Next;
use crate::toolstack::{CallbackFailed, StreamType};

/// `struct save_callbacks` as [`SaveCallbacks`].
pub struct CSaveCallbacks {
    cb: SaveCallbacksC,
}

impl CSaveCallbacks {
    /// Wrap a copy of the caller's struct.
    ///
    /// # Safety
    /// Every non-NULL function pointer in `cb` must be callable with
    /// `cb.data` for as long as the returned value is used, from this thread.
    pub unsafe fn new(cb: SaveCallbacksC) -> Self {
        CSaveCallbacks { cb }
    }
}

impl SaveCallbacks for CSaveCallbacks {
    fn has(&self, hook: SaveHook) -> bool {
        match hook {
            SaveHook::PrecopyPolicy => self.cb.precopy_policy.is_some(),
            SaveHook::Postcopy => self.cb.postcopy.is_some(),
            SaveHook::Checkpoint => self.cb.checkpoint.is_some(),
            SaveHook::WaitCheckpoint => self.cb.wait_checkpoint.is_some(),
            SaveHook::SwitchQemuLogdirty => self.cb.switch_qemu_logdirty.is_some(),
        }
    }

    fn suspend(&mut self) -> Result<(), CallbackFailed> {
        let rc = match self.cb.suspend {
            // SAFETY: a caller-provided callback, callable with `data`
            // (contract of `new`).
            Some(f) => unsafe { f(self.cb.data) },
            // 0 is the failure value of `suspend`; `save` refuses a NULL
            // suspend before the engine starts, so this is not reached.
            None => 0,
        };
        // `suspend` is the one callback whose 0 means failure.
        if rc == 0 {
            Err(CallbackFailed { code: rc })
        } else {
            Ok(())
        }
    }

    fn precopy_policy(&mut self, stats: PrecopyStats) -> PolicyDecision {
        match self.cb.precopy_policy {
            Some(f) => {
                let c = PrecopyStatsC {
                    iteration: stats.iteration,
                    total_written: stats.total_written,
                    dirty_count: stats.dirty_count,
                };
                // SAFETY: a caller-provided callback, callable with `data`.
                policy_decision_from_raw(unsafe { f(c, self.cb.data) })
            }
            None => crate::save::simple_precopy_policy(stats),
        }
    }

    fn postcopy(&mut self) -> Next {
        // SAFETY: caller-provided callback with its `data` (contract of `new`).
        positive_continues(unsafe { call_data(self.cb.postcopy, self.cb.data) })
    }

    fn checkpoint(&mut self) -> Next {
        // SAFETY: as above.
        positive_continues(unsafe { call_data(self.cb.checkpoint, self.cb.data) })
    }

    fn notify_checkpoint(&mut self) -> Result<(), CallbackFailed> {
        // SAFETY: as above.
        let rc = unsafe { call_data(self.cb.checkpoint, self.cb.data) };
        // COLO reads only 0 as failure (libxenguest's checkpoint loop in
        // `save()`), any other value as done.
        if rc == 0 {
            Err(CallbackFailed { code: rc })
        } else {
            Ok(())
        }
    }

    fn wait_checkpoint(&mut self) -> Next {
        // SAFETY: as above.
        positive_continues(unsafe { call_data(self.cb.wait_checkpoint, self.cb.data) })
    }

    fn switch_qemu_logdirty(&mut self, domid: DomId, enable: bool) -> Result<(), CallbackFailed> {
        let rc = match self.cb.switch_qemu_logdirty {
            // SAFETY: a caller-provided callback, callable with `data`.
            Some(f) => unsafe { f(domid, c_uint::from(enable), self.cb.data) },
            // The engine only calls hooks that `has` reports; -1 = failure.
            None => -1,
        };
        zero_is_success(rc)
    }
}

/// Call an optional `int (*)(void *)` callback; a missing one answers 0,
/// the "stop"/"error" value of every such callback.
///
/// # Safety
/// `f`, if present, must be callable with `data`.
unsafe fn call_data(f: Option<DataFn>, data: *mut std::ffi::c_void) -> i32 {
    match f {
        // SAFETY: per this function's contract.
        Some(f) => unsafe { f(data) },
        None => 0,
    }
}

/// `struct restore_callbacks` as [`RestoreCallbacks`]. A NULL
/// `struct restore_callbacks *` (which `xenguest.h` allows: "non-NULL to
/// receive a callback") is an all-NULL struct.
pub struct CRestoreCallbacks {
    cb: RestoreCallbacksC,
}

impl CRestoreCallbacks {
    /// Wrap a copy of the caller's struct.
    ///
    /// # Safety
    /// Every non-NULL function pointer in `cb` must be callable with
    /// `cb.data` for as long as the returned value is used, from this thread.
    pub unsafe fn new(cb: RestoreCallbacksC) -> Self {
        CRestoreCallbacks { cb }
    }
}

impl RestoreCallbacks for CRestoreCallbacks {
    fn has(&self, hook: RestoreHook) -> bool {
        match hook {
            RestoreHook::StaticDataDone => self.cb.static_data_done.is_some(),
            RestoreHook::Suspend => self.cb.suspend.is_some(),
            RestoreHook::Postcopy => self.cb.postcopy.is_some(),
            RestoreHook::Checkpoint => self.cb.checkpoint.is_some(),
            RestoreHook::WaitCheckpoint => self.cb.wait_checkpoint.is_some(),
            RestoreHook::RestoreResults => self.cb.restore_results.is_some(),
        }
    }

    fn static_data_done(&mut self, missing: MissingStaticData) -> Result<(), CallbackFailed> {
        let Some(f) = self.cb.static_data_done else {
            // Not provided: nothing to tell, which libxenguest treats as done.
            return Ok(());
        };
        let mut bits = 0;
        if missing.cpuid {
            bits |= XGR_SDD_MISSING_CPUID;
        }
        if missing.msr {
            bits |= XGR_SDD_MISSING_MSR;
        }
        // SAFETY: a caller-provided callback, callable with `data`.
        let rc = unsafe { f(bits, self.cb.data) };
        zero_is_success(rc)
    }

    fn checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        // SAFETY: caller-provided callback with its `data` (contract of `new`).
        checkpoint_answer(unsafe { call_data(self.cb.checkpoint, self.cb.data) })
    }

    fn suspend(&mut self) -> Result<Proceed, CallbackFailed> {
        // SAFETY: as above.
        checkpoint_answer(unsafe { call_data(self.cb.suspend, self.cb.data) })
    }

    fn postcopy(&mut self) -> Result<Proceed, CallbackFailed> {
        // SAFETY: as above.
        checkpoint_answer(unsafe { call_data(self.cb.postcopy, self.cb.data) })
    }

    fn wait_checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        // SAFETY: as above.
        checkpoint_answer(unsafe { call_data(self.cb.wait_checkpoint, self.cb.data) })
    }

    fn restore_results(&mut self, store_gfn: u64, console_gfn: u64) {
        if let Some(f) = self.cb.restore_results {
            // SAFETY: a caller-provided callback, callable with `data`.
            unsafe { f(store_gfn, console_gfn, self.cb.data) };
        }
    }
}

/// `XGR_SDD_MISSING_CPUID`: the stream had no X86_CPUID_POLICY.
pub const XGR_SDD_MISSING_CPUID: u32 = 1 << 0;
/// `XGR_SDD_MISSING_MSR`: the stream had no X86_MSR_POLICY.
pub const XGR_SDD_MISSING_MSR: u32 = 1 << 1;
/// `XGR_CHECKPOINT_SUCCESS`: carry on.
pub const XGR_CHECKPOINT_SUCCESS: i32 = 1;
/// `XGR_CHECKPOINT_FAILOVER`: the primary is gone.
pub const XGR_CHECKPOINT_FAILOVER: i32 = 2;

/// Callbacks whose 0 means success (`switch_qemu_logdirty`,
/// `static_data_done`).
fn zero_is_success(rc: i32) -> Result<(), CallbackFailed> {
    if rc == 0 {
        Ok(())
    } else {
        Err(CallbackFailed { code: rc })
    }
}

/// The restore side's checkpoint callbacks (`checkpoint`, and COLO's
/// `suspend`, `postcopy`, `wait_checkpoint`): `XGR_CHECKPOINT_SUCCESS`,
/// `XGR_CHECKPOINT_FAILOVER`, anything else an error.
fn checkpoint_answer(rc: i32) -> Result<Proceed, CallbackFailed> {
    match rc {
        XGR_CHECKPOINT_SUCCESS => Ok(Proceed::Continue),
        XGR_CHECKPOINT_FAILOVER => Ok(Proceed::Failover),
        code => Err(CallbackFailed { code }),
    }
}

/// `xc_stream_type_t` (0 plain, 1 Remus, 2 COLO).
pub fn stream_type_from_raw(v: u32) -> Option<StreamType> {
    match v {
        0 => Some(StreamType::Plain),
        1 => Some(StreamType::Remus),
        2 => Some(StreamType::Colo),
        _ => None,
    }
}

/// The save side's checkpoint callbacks (`postcopy`, Remus's `checkpoint`,
/// `wait_checkpoint`): positive continues, anything else stops.
fn positive_continues(rc: i32) -> Next {
    if rc > 0 {
        Next::Continue
    } else {
        Next::Stop { code: rc }
    }
}

/// A C `precopy_policy`'s return value, read as libxenguest reads it:
/// `XGS_POLICY_ABORT` (-1), `XGS_POLICY_CONTINUE_PRECOPY` (0), and anything
/// else stops the pre-copy phase (`XGS_POLICY_STOP_AND_COPY` is 1).
pub fn policy_decision_from_raw(v: i32) -> PolicyDecision {
    match v {
        -1 => PolicyDecision::Abort,
        0 => PolicyDecision::Continue,
        _ => PolicyDecision::StopAndCopy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `XGS_POLICY_*` value of a decision.
    fn policy_decision_to_raw(d: PolicyDecision) -> i32 {
        match d {
            PolicyDecision::Abort => -1,
            PolicyDecision::Continue => 0,
            PolicyDecision::StopAndCopy => 1,
        }
    }

    #[test]
    fn raw_policy_values_read_as_libxenguest_reads_them() {
        assert_eq!(policy_decision_from_raw(-1), PolicyDecision::Abort);
        assert_eq!(policy_decision_from_raw(0), PolicyDecision::Continue);
        assert_eq!(policy_decision_from_raw(1), PolicyDecision::StopAndCopy);
        assert_eq!(policy_decision_from_raw(7), PolicyDecision::StopAndCopy);
        assert_eq!(policy_decision_from_raw(-2), PolicyDecision::StopAndCopy);
        for d in [
            PolicyDecision::Abort,
            PolicyDecision::Continue,
            PolicyDecision::StopAndCopy,
        ] {
            assert_eq!(policy_decision_from_raw(policy_decision_to_raw(d)), d);
        }
    }

    #[test]
    fn checkpoint_answers_read_as_libxenguest_reads_them() {
        assert_eq!(checkpoint_answer(1), Ok(Proceed::Continue));
        assert_eq!(checkpoint_answer(2), Ok(Proceed::Failover));
        assert_eq!(checkpoint_answer(0), Err(CallbackFailed { code: 0 }));
        assert_eq!(checkpoint_answer(-1), Err(CallbackFailed { code: -1 }));
        assert_eq!(positive_continues(1), Next::Continue);
        assert_eq!(positive_continues(5), Next::Continue);
        assert_eq!(positive_continues(0), Next::Stop { code: 0 });
        assert_eq!(positive_continues(-3), Next::Stop { code: -3 });
        assert_eq!(zero_is_success(0), Ok(()));
        assert_eq!(zero_is_success(1), Err(CallbackFailed { code: 1 }));
        assert_eq!(stream_type_from_raw(2), Some(StreamType::Colo));
        assert_eq!(stream_type_from_raw(3), None);
    }
}
