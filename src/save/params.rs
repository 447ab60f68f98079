//! What a save is asked to do and what it reports.

use super::policy::{PolicyDecision, PrecopySettings, PrecopyStats};
use crate::toolstack::StreamType;

/// What to save and how (the scalar arguments of `xc_domain_save`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaveParams {
    /// Live migration: pre-copy rounds over log-dirty while the guest
    /// runs, then suspend and send the rest.
    pub live: bool,
    /// Debug: after a plain live save, send VERIFY and every page again so
    /// that the restorer compares them.
    pub debug: bool,
    /// Plain or checkpointed.
    pub stream_type: StreamType,
    /// How the live pre-copy phase ends when the callbacks have no
    /// `precopy_policy` (a caller's policy is always followed exactly).
    /// The default is xcmig's downtime-targeted policy
    /// ([`TargetedPolicy`](super::policy::TargetedPolicy)).
    pub precopy: PrecopySettings,
    /// Whether page data goes compressed (xcmig's extension record, which
    /// only xcmig restores); off by default.
    pub compression: CompressionSettings,
}

/// Which compressor a save uses for its page data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressMode {
    /// Standard PAGE_DATA only.
    #[default]
    Off,
    /// LZ4 for every batch.
    Lz4,
    /// zstd at `level` (1..=19) for every batch.
    Zstd {
        /// zstd's compression level.
        level: i32,
    },
    /// LZ4 while compressing measurably moves pages faster than sending
    /// them whole (a link slower than the workers), otherwise standard
    /// PAGE_DATA: both are measured in short probes, the faster one runs
    /// in windows that grow while probes confirm it.
    Auto,
}

/// Page compression of a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompressionSettings {
    /// The compressor, or off.
    pub mode: CompressMode,
    /// Worker threads; 0 means the cores available to the process.
    pub threads: usize,
}

impl CompressionSettings {
    /// The worker threads this resolves to (at least one).
    pub fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Figures from a finished save, for reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaveSummary {
    /// p2m size (pfns spanned by the save loop).
    pub p2m_size: u64,
    /// Live rounds sent before suspending (0 for a non-live save): the
    /// number of times the dirty set was sent while the guest ran.
    pub precopy_iterations: u32,
    /// Pages (with data) sent, all rounds and checkpoints included.
    pub pages_sent: u64,
    /// Zero pages never sent before, sent as XALLOC without data (not
    /// counted in `pages_sent`).
    pub pages_zero: u64,
    /// Pages sent after the domain was suspended (the downtime copy),
    /// the verification pass excluded.
    pub pages_sent_suspended: u64,
    /// Pages sent again by the verification pass ([`SaveParams::debug`]).
    pub pages_sent_verify: u64,
    /// PAGE_DATA records written.
    pub page_data_records: u64,
    /// Bytes written to the stream.
    pub bytes_written: u64,
    /// Checkpoints taken (checkpointed streams).
    pub checkpoints: u32,
    /// Plain streams: time from the successful suspend to the end of the
    /// stream, i.e. how long the guest was stopped for this save (its
    /// downtime, less the restorer's share). Zero for checkpointed streams.
    pub suspended_time: std::time::Duration,
    /// Time the whole save took.
    pub total_time: std::time::Duration,
    /// Every decision of the precopy policy, with the statistics it saw.
    pub policy_calls: Vec<(PrecopyStats, PolicyDecision)>,
    /// Auto-converge: the CPU shares (percent) the guest was capped at, in
    /// order; empty when it was never throttled.
    pub throttle_shares: Vec<u8>,
    /// Auto-converge: how long the guest ran with a lowered cap.
    pub throttled_time: std::time::Duration,
    /// XCMIG_COMPRESSED_PAGE_DATA records written.
    pub compressed_records: u64,
    /// Pages with data those records carried.
    pub compressed_pages: u64,
    /// Stream octets of those pages (their size entries and data).
    pub compressed_bytes: u64,
}
