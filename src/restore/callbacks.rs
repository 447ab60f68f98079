//! The toolstack side of a restore (`struct restore_callbacks`), typed.

use crate::toolstack::CallbackFailed;

/// The optional members of `struct restore_callbacks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreHook {
    /// `static_data_done`.
    StaticDataDone,
    /// `suspend`.
    Suspend,
    /// `postcopy`.
    Postcopy,
    /// `checkpoint`.
    Checkpoint,
    /// `wait_checkpoint`.
    WaitCheckpoint,
    /// `restore_results`.
    RestoreResults,
}

/// Which CPU policy records the stream lacked, as `static_data_done` is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MissingStaticData {
    /// No X86_CPUID_POLICY record.
    pub cpuid: bool,
    /// No X86_MSR_POLICY record.
    pub msr: bool,
}

/// What a checkpointed restore's callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proceed {
    /// Carry on with the stream.
    Continue,
    /// The primary is gone: run from the last complete checkpoint.
    Failover,
}

/// The toolstack side of a restore (`struct restore_callbacks`). A
/// callback whose [`RestoreCallbacks::has`] is false is never called.
pub trait RestoreCallbacks {
    /// Whether an optional callback is provided (a non-NULL pointer in C).
    fn has(&self, hook: RestoreHook) -> bool;

    /// Static data is complete (STATIC_DATA_END seen or inferred);
    /// `missing` says which CPU policy records the stream lacked.
    fn static_data_done(&mut self, missing: MissingStaticData) -> Result<(), CallbackFailed> {
        let _ = missing;
        Ok(())
    }

    /// Checkpointed streams: a CHECKPOINT record arrived.
    fn checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        Err(CallbackFailed { code: 0 })
    }

    /// COLO: suspend the secondary.
    fn suspend(&mut self) -> Result<Proceed, CallbackFailed> {
        Err(CallbackFailed { code: 0 })
    }

    /// COLO: resume the secondary.
    fn postcopy(&mut self) -> Result<Proceed, CallbackFailed> {
        Err(CallbackFailed { code: 0 })
    }

    /// COLO: wait for the next checkpoint.
    fn wait_checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        Err(CallbackFailed { code: 0 })
    }

    /// COLO: report the store and console gfns before the restore returns.
    fn restore_results(&mut self, store_gfn: u64, console_gfn: u64) {
        let _ = (store_gfn, console_gfn);
    }
}
