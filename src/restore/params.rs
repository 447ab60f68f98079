//! What a restore is given and what it hands back.

use crate::toolstack::StreamType;

/// Default of [`RestoreParams::checkpoint_buffer_limit`]: 1 GiB. A Remus
/// or COLO checkpoint carries the pages dirtied in one checkpoint interval
/// (libxl's default is 200 ms): 1 GiB holds one at 40 Gbit/s, or every page
/// of a 1 GiB guest, and is what a dom0 sized for such guests can spare
/// (`docs/memory.md`).
pub const DEFAULT_CHECKPOINT_BUFFER_LIMIT: u64 = 1 << 30;

/// The scalar arguments of `xc_domain_restore`, and the restore's own
/// limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Most bytes of records a checkpointed stream may hold back between
    /// two CHECKPOINTs (page data, pfn entries, blobs, and a fixed cost per
    /// record). A checkpoint that needs more ends the restore with
    /// [`RestoreError::CheckpointBufferFull`](super::RestoreError) rather
    /// than failing over: the primary is still alive, so the secondary
    /// gives up and the primary runs on unprotected.
    pub checkpoint_buffer_limit: u64,
}

impl Default for RestoreParams {
    fn default() -> Self {
        RestoreParams {
            store_evtchn: 0,
            store_domid: 0,
            console_evtchn: 0,
            console_domid: 0,
            stream_type: StreamType::default(),
            checkpoint_buffer_limit: DEFAULT_CHECKPOINT_BUFFER_LIMIT,
        }
    }
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
