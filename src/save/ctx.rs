//! The state of one save: the domain, the toolstack, the stream being
//! written, the memory-sending state and the figures reported.

use std::io::Write;

use super::batch::{Run, Src};
use super::bitmap::Bitmap;
use super::callbacks::SaveCallbacks;
use super::error::SaveError;
use super::mapcache::MapCache;
use super::out::Out;
use super::params::{SaveParams, SaveSummary};
use super::policy::{PrecopySettings, PrecopyStats};
use crate::hv::{DomId, DomainInfo, Hypervisor, MAX_BATCH};
use crate::log::{Level, Log};
use crate::toolstack::StreamType;

/// State of one save.
pub(crate) struct Ctx<'a, H: Hypervisor, W: Write> {
    pub(crate) hv: &'a H,
    pub(crate) domid: DomId,
    pub(crate) out: Out<'a, W>,
    pub(crate) cb: &'a mut dyn SaveCallbacks,
    pub(crate) log: &'a dyn Log,
    pub(crate) live: bool,
    pub(crate) debug: bool,
    pub(crate) stream_type: StreamType,
    /// How pre-copy ends when the caller gives no policy.
    pub(crate) precopy: PrecopySettings,
    pub(crate) info: DomainInfo,
    pub(crate) mem: Memory,
    /// Guest mappings kept across batches.
    pub(crate) maps: MapCache<'a, H>,
    pub(crate) stats: PrecopyStats,
    pub(crate) summary: SaveSummary,
    /// Current progress prefix (`xc_set_progress_prefix`).
    pub(crate) prefix: Option<String>,
    /// Whether the domain has been suspended (pages sent from then on are
    /// downtime).
    pub(crate) suspended: bool,
    /// Whether the suspend callback was ever called (so that a failed save
    /// can say the guest was never suspended).
    pub(crate) suspend_asked: bool,
    /// When the domain last read as suspended.
    pub(crate) suspended_at: Option<std::time::Instant>,
    /// Whether the verification pass is being sent.
    pub(crate) verifying: bool,
    /// COLO: the secondary's dirty-page reports.
    pub(crate) back: Option<&'a mut dyn std::io::Read>,
}

impl<'a, H: Hypervisor, W: Write> Ctx<'a, H, W> {
    /// A save of `domid` (described by `info`) that has written nothing yet.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        hv: &'a H,
        domid: DomId,
        io: &'a mut W,
        back: Option<&'a mut dyn std::io::Read>,
        params: &SaveParams,
        cb: &'a mut dyn SaveCallbacks,
        log: &'a dyn Log,
        info: DomainInfo,
    ) -> Self {
        Ctx {
            hv,
            domid,
            out: Out::new(io, params.compression),
            cb,
            log,
            live: params.live,
            debug: params.debug,
            stream_type: params.stream_type,
            precopy: params.precopy,
            info,
            mem: Memory::default(),
            maps: MapCache::new(hv.mapping_hints()),
            stats: PrecopyStats::default(),
            summary: SaveSummary::default(),
            prefix: None,
            suspended: false,
            suspend_asked: false,
            suspended_at: None,
            verifying: false,
            back,
        }
    }

    pub(crate) fn msg(&self, level: Level, msg: &str) {
        crate::log::message(level, None, msg);
    }

    pub(crate) fn log_error(&self, e: &SaveError, what: &str) {
        crate::log::message(Level::Error, Some(e.errno()), &format!("{what}: {e}"));
    }

    /// `xc_report_progress_single`.
    pub(crate) fn progress_single(&self, what: &str) {
        self.log.progress(what, 0, 0);
    }

    /// `xc_report_progress_step` under the current prefix.
    pub(crate) fn progress_step(&self, done: u64, total: u64) {
        if let Some(p) = &self.prefix {
            self.log.progress(p, done, total);
        }
    }

    /// Suspend through the callback and confirm the domain reads as shut
    /// down for suspend (libxenguest's `suspend_domain`).
    pub(crate) fn suspend_domain(&mut self) -> Result<(), SaveError> {
        self.suspend_asked = true;
        self.cb
            .suspend()
            .map_err(|f| SaveError::callback("suspend", f))?;
        self.refresh_info()?;
        if !self.info.is_suspended() {
            return Err(SaveError::NotSuspended {
                shutdown: self.info.shutdown,
                reason: self.info.shutdown_reason,
            });
        }
        self.suspended = true;
        self.suspended_at = Some(std::time::Instant::now());
        self.progress_single("Domain now suspended");
        Ok(())
    }

    pub(crate) fn refresh_info(&mut self) -> Result<(), SaveError> {
        let info = self.hv.domain_info(self.domid)?;
        if info.domid != self.domid {
            return Err(SaveError::NoSuchDomain(self.domid));
        }
        self.info = info;
        Ok(())
    }
}

/// Memory-sending state of one save.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    pub(crate) p2m_size: u64,
    /// Pages to send in the current pass.
    pub(crate) dirty: Bitmap,
    /// Pages that could not be sent yet (PV: ballooned or busy pages),
    /// retried after suspend.
    pub(crate) deferred: Bitmap,
    pub(crate) nr_deferred: u64,
    /// Pfns sent with data so far in this stream: they never go as XALLOC.
    pub(crate) sent: Bitmap,
    /// Pfns queued for the next PAGE_DATA record.
    pub(crate) batch: Vec<u64>,
    /// Page types of the batch (scratch).
    pub(crate) types: Vec<u64>,
    /// Frames of the batch mapped for the batch alone (scratch).
    pub(crate) frames: Vec<u64>,
    /// Frames of a chunk to map (scratch).
    pub(crate) chunk_frames: Vec<u64>,
    /// Where each data page of the batch is mapped (scratch).
    pub(crate) places: Vec<(Src, usize)>,
    /// The record's pfns and types (scratch).
    pub(crate) rec_pfns: Vec<u64>,
    pub(crate) rec_types: Vec<u64>,
    /// Runs of consecutive mapped pages to send (scratch).
    pub(crate) runs: Vec<Run>,
    /// Pages copied out of mappings that do not lend their bytes (scratch).
    pub(crate) data: Vec<u8>,
}

impl Memory {
    /// Tracking for a p2m of `p2m_size` pfns: three bitmaps of that many
    /// bits, allocated fallibly (ENOMEM) since the size is Xen's answer.
    pub(crate) fn setup(&mut self, p2m_size: u64) -> Result<(), SaveError> {
        let bitmap = || {
            Bitmap::try_new(p2m_size).ok_or_else(|| {
                SaveError::OutOfMemory(format!("no memory to track a p2m of {p2m_size:#x} pfns"))
            })
        };
        self.p2m_size = p2m_size;
        self.dirty = bitmap()?;
        self.deferred = bitmap()?;
        self.sent = bitmap()?;
        self.nr_deferred = 0;
        self.batch = Vec::with_capacity(MAX_BATCH);
        Ok(())
    }

    pub(crate) fn p2m_size(&self) -> u64 {
        self.p2m_size
    }

    pub(crate) fn dirty_set_all(&mut self) {
        self.dirty.set_all();
    }
}
