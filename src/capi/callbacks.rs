//! The C callback structs adapted to the engines' callback traits.
//!
//! Return conventions are passed through unchanged (they differ per
//! callback and the engines interpret them as libxenguest does); only the
//! presence of optional callbacks (non-NULL pointers) is translated.

use std::ffi::c_uint;

use super::types::{DataFn, PrecopyStatsC, RestoreCallbacksC, SaveCallbacksC};
use crate::hv::DomId;
use crate::restore::{RestoreCallbacks, RestoreHook};
use crate::save::{PolicyDecision, PrecopyStats, SaveCallbacks, SaveHook};

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

    fn suspend(&mut self) -> i32 {
        match self.cb.suspend {
            // SAFETY: a caller-provided callback, callable with `data`
            // (contract of `new`).
            Some(f) => unsafe { f(self.cb.data) },
            // 0 is the failure value of `suspend`; `save` refuses a NULL
            // suspend before the engine starts, so this is not reached.
            None => 0,
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
                PolicyDecision::from_raw(unsafe { f(c, self.cb.data) })
            }
            None => crate::save::simple_precopy_policy(stats),
        }
    }

    fn postcopy(&mut self) -> i32 {
        // SAFETY: caller-provided callback with its `data` (contract of `new`).
        unsafe { call_data(self.cb.postcopy, self.cb.data) }
    }

    fn checkpoint(&mut self) -> i32 {
        // SAFETY: as above.
        unsafe { call_data(self.cb.checkpoint, self.cb.data) }
    }

    fn wait_checkpoint(&mut self) -> i32 {
        // SAFETY: as above.
        unsafe { call_data(self.cb.wait_checkpoint, self.cb.data) }
    }

    fn switch_qemu_logdirty(&mut self, domid: DomId, enable: bool) -> i32 {
        match self.cb.switch_qemu_logdirty {
            // SAFETY: a caller-provided callback, callable with `data`.
            Some(f) => unsafe { f(domid, c_uint::from(enable), self.cb.data) },
            // The engine only calls hooks that `has` reports; -1 = failure.
            None => -1,
        }
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

    fn static_data_done(&mut self, missing: u32) -> i32 {
        match self.cb.static_data_done {
            // SAFETY: a caller-provided callback, callable with `data`.
            Some(f) => unsafe { f(missing, self.cb.data) },
            // Not provided: nothing to tell, which libxenguest treats as done.
            None => 0,
        }
    }

    fn checkpoint(&mut self) -> i32 {
        // SAFETY: caller-provided callback with its `data` (contract of `new`).
        unsafe { call_data(self.cb.checkpoint, self.cb.data) }
    }

    fn suspend(&mut self) -> i32 {
        // SAFETY: as above.
        unsafe { call_data(self.cb.suspend, self.cb.data) }
    }

    fn postcopy(&mut self) -> i32 {
        // SAFETY: as above.
        unsafe { call_data(self.cb.postcopy, self.cb.data) }
    }

    fn wait_checkpoint(&mut self) -> i32 {
        // SAFETY: as above.
        unsafe { call_data(self.cb.wait_checkpoint, self.cb.data) }
    }

    fn restore_results(&mut self, store_gfn: u64, console_gfn: u64) {
        if let Some(f) = self.cb.restore_results {
            // SAFETY: a caller-provided callback, callable with `data`.
            unsafe { f(store_gfn, console_gfn, self.cb.data) };
        }
    }
}
