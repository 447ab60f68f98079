//! What a restore is given and what it hands back.

use crate::toolstack::StreamType;

/// The scalar arguments of `xc_domain_restore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreParams {
    /// Event channel of the xenstore ring (set as HVM_PARAM_STORE_EVTCHN).
    pub store_evtchn: u32,
    /// Domain running xenstored (granted the store page).
    pub store_domid: u32,
    /// Event channel of the console ring (HVM_PARAM_CONSOLE_EVTCHN).
    pub console_evtchn: u32,
    /// Domain running the console backend (granted the console page).
    pub console_domid: u32,
    /// Plain or checkpointed.
    pub stream_type: StreamType,
}

/// What a successful restore hands back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOutputs {
    /// gfn of the xenstore page (`*store_mfn`), 0 if the stream named none.
    pub store_gfn: u64,
    /// gfn of the console page (`*console_gfn`), 0 if the stream named none.
    pub console_gfn: u64,
    /// Stream version read (2 or 3).
    pub stream_version: u32,
    /// Records processed, END included.
    pub records: u64,
    /// PAGE_DATA records processed.
    pub page_data_records: u64,
    /// Pages written into the guest.
    pub pages_written: u64,
    /// Pages compared in verify mode, and how many differed.
    pub pages_verified: u64,
    /// Pages that differed in verify mode (logged, not fatal, as in libxenguest).
    pub verify_mismatches: u64,
    /// Frames populated.
    pub pages_populated: u64,
    /// CHECKPOINT records applied (checkpointed streams).
    pub checkpoints: u64,
    /// Stream warnings (tolerated oddities), one line each.
    pub warnings: Vec<String>,
}
