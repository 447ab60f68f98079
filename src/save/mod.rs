//! The save engine: `xc_domain_save()` without the C.
//!
//! [`save_domain`] writes a domain's state to a byte stream as a libxc
//! migration stream (version 3), driving the hypervisor through
//! [`Hypervisor`] and the toolstack through [`SaveCallbacks`], with the same
//! phases, calls, return conventions and statistics as libxenguest 4.17:
//!
//! ```text
//!  domain_info ── setup (p2m size, qemu log-dirty on) ── headers
//!       │
//!  static data (CPUID/MSR policy) ── STATIC_DATA_END
//!       │
//!  ┌─ memory ─────────────────────────────────────────────────────┐
//!  │ non-live: suspend ─ send all pages                           │
//!  │ live:     log-dirty on ─ precopy rounds (policy) ─ suspend   │
//!  │           ─ final CLEAN ─ send dirty ─ [debug: VERIFY pass]  │
//!  │ checkpoint (Remus, after the first): suspend ─ send dirty    │
//!  └──────────────────────────────────────────────────────────────┘
//!       │  domain must read as shut down for suspend
//!  end of checkpoint: X86_TSC_INFO, HVM_PARAMS, HVM_CONTEXT
//!       │  Remus: CHECKPOINT, postcopy, checkpoint → loop
//!  END ── cleanup (always: log-dirty off, qemu log-dirty off)
//! ```
//!
//! Modules: [`precopy`] (the live loop and libxenguest's default policy),
//! [`policy`] (xcmig's downtime-targeted policy), `memory`
//! (dirty bitmap walk, batching, PAGE_DATA), `x86_hvm` (the HVM/PVH
//! records), `out` (record output).

mod bitmap;
mod mapcache;
mod memory;
mod out;
pub mod policy;
pub mod precopy;
mod x86_hvm;

use std::io::Write;

use crate::hv::{DomId, DomainInfo, HvError, Hypervisor, Level, Log};

pub use policy::{PolicyChoice, PrecopySettings};
pub use precopy::{simple_precopy_policy, PolicyDecision, PrecopyStats};

/// `XCFLAGS_LIVE`: live migration (pre-copy over log-dirty).
pub const XCFLAGS_LIVE: u32 = 1 << 0;
/// `XCFLAGS_DEBUG`: send a VERIFY record and all pages again at the end.
pub const XCFLAGS_DEBUG: u32 = 1 << 1;

/// Kind of stream (`xc_stream_type_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamType {
    /// One-shot save or migration.
    #[default]
    Plain,
    /// Remus: checkpointed replication.
    Remus,
    /// COLO: checkpointed replication with a dirty-page back channel.
    Colo,
}

impl StreamType {
    /// From the C enum value (0, 1, 2).
    pub fn from_raw(v: u32) -> Option<Self> {
        match v {
            0 => Some(StreamType::Plain),
            1 => Some(StreamType::Remus),
            2 => Some(StreamType::Colo),
            _ => None,
        }
    }
}

/// What to save and how (the scalar arguments of `xc_domain_save`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaveParams {
    /// `XCFLAGS_LIVE`.
    pub live: bool,
    /// `XCFLAGS_DEBUG`: after a plain live save, send VERIFY and every page
    /// again so that the restorer compares them.
    pub debug: bool,
    /// Plain or checkpointed.
    pub stream_type: StreamType,
    /// How the live pre-copy phase ends when the callbacks have no
    /// `precopy_policy` (a caller's policy is always followed exactly).
    /// The default is xcmig's downtime-targeted policy ([`policy`]).
    pub precopy: PrecopySettings,
}

impl SaveParams {
    /// From `XCFLAGS_*` bits and a stream type.
    pub fn from_flags(flags: u32, stream_type: StreamType) -> Self {
        SaveParams {
            live: flags & XCFLAGS_LIVE != 0,
            debug: flags & XCFLAGS_DEBUG != 0,
            stream_type,
            precopy: PrecopySettings::default(),
        }
    }
}

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

/// The toolstack side of a save (`struct save_callbacks`).
///
/// Return values keep libxenguest's conventions, because they differ per
/// callback and the engine interprets them exactly as libxenguest does.
/// A callback whose [`SaveCallbacks::has`] is false is never called.
pub trait SaveCallbacks {
    /// Whether an optional callback is provided (a non-NULL pointer in C).
    /// `suspend` is always required.
    fn has(&self, hook: SaveHook) -> bool;

    /// Suspend the domain. **0 = failure**, any other value = success; the
    /// domain must then read as shut down for suspend.
    fn suspend(&mut self) -> i32;

    /// Decide the next step of the live pre-copy phase. Called only if
    /// `has(PrecopyPolicy)`; otherwise [`SaveParams::precopy`] chooses
    /// (xcmig's downtime-targeted policy, or [`simple_precopy_policy`]).
    fn precopy_policy(&mut self, stats: PrecopyStats) -> PolicyDecision {
        simple_precopy_policy(stats)
    }

    /// Checkpointed streams: resume the guest after a checkpoint was sent.
    /// Positive = continue; zero or negative = stop checkpointing (the save
    /// then ends successfully without an END record).
    fn postcopy(&mut self) -> i32 {
        0
    }

    /// Checkpointed streams: Remus waits for the next checkpoint (positive
    /// = continue, otherwise stop); COLO notifies the secondary (0 = error).
    fn checkpoint(&mut self) -> i32 {
        0
    }

    /// COLO: wait for the secondary (positive = continue, otherwise stop).
    fn wait_checkpoint(&mut self) -> i32 {
        0
    }

    /// HVM: turn qemu's log-dirty tracking on or off. **0 = success.**
    fn switch_qemu_logdirty(&mut self, domid: DomId, enable: bool) -> i32 {
        let _ = (domid, enable);
        -1
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
    /// Pages sent again by the verification pass (`XCFLAGS_DEBUG`).
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
}

/// Why a save failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// A hypervisor call failed.
    #[error("{0}")]
    Hv(#[from] HvError),
    /// Writing the stream failed, or the engine produced a record the
    /// stream layer refused (a bug, reported rather than written).
    #[error("writing the stream: {0}")]
    Stream(#[from] crate::stream::Error),
    /// Reading the COLO back channel failed or it broke a rule.
    #[error("back channel: {0}")]
    BackChannel(String),
    /// The domain does not exist.
    #[error("domain {0} does not exist")]
    NoSuchDomain(DomId),
    /// A callback the stream type or guest type needs was not given.
    #[error("the {0} callback is required for this save")]
    MissingCallback(&'static str),
    /// A callback reported failure.
    #[error("save callback {name}() failed: {rc}")]
    Callback {
        /// Callback name.
        name: &'static str,
        /// What it returned.
        rc: i32,
    },
    /// After `suspend`, the domain does not read as shut down for suspend.
    #[error("domain has not been suspended: shutdown {shutdown}, reason {reason}")]
    NotSuspended {
        /// `dominfo.shutdown`.
        shutdown: bool,
        /// `dominfo.shutdown_reason`.
        reason: u32,
    },
    /// The precopy policy returned ABORT.
    #[error("precopy policy aborted the save")]
    Aborted,
    /// xcmig's pre-copy policy gave up because the guest dirties memory too
    /// fast for the target downtime and
    /// [`PrecopySettings::abort_if_not_converging`] is set.
    #[error("live migration not converging, save aborted: {0}")]
    NotConverging(String),
    /// Xen answered a request inconsistently.
    #[error("{0}")]
    Protocol(String),
    /// The save cannot be done by this implementation (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl SaveError {
    /// The errno the C layer reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            SaveError::Hv(e) => e.errno(),
            SaveError::Stream(e) => match &e.kind {
                crate::stream::ErrorKind::Io { kind, .. }
                    if *kind == std::io::ErrorKind::BrokenPipe =>
                {
                    libc::EPIPE
                }
                _ => libc::EIO,
            },
            SaveError::BackChannel(_) => libc::EIO,
            SaveError::NoSuchDomain(_) => libc::ESRCH,
            SaveError::MissingCallback(_) => libc::EINVAL,
            SaveError::Callback { .. } => libc::EINVAL,
            SaveError::NotSuspended { .. } => libc::EINVAL,
            SaveError::Aborted => libc::ECANCELED,
            SaveError::NotConverging(_) => libc::ECANCELED,
            SaveError::Protocol(_) => libc::EPROTO,
            SaveError::Unsupported(_) => libc::EOPNOTSUPP,
        }
    }
}

/// Save domain `domid` to `io` (the `xc_domain_save` engine).
///
/// On success the stream is complete (plain streams end with an END
/// record; checkpointed streams end when a callback stops them, without
/// END, as libxenguest does). On any outcome log-dirty has been switched
/// off and qemu's log-dirty tracking has been switched back off if it was
/// switched on. COLO streams need [`save_domain_with_back_channel`].
pub fn save_domain<H: Hypervisor, W: Write>(
    hv: &H,
    domid: DomId,
    io: &mut W,
    params: &SaveParams,
    callbacks: &mut dyn SaveCallbacks,
    log: &dyn Log,
) -> Result<SaveSummary, SaveError> {
    save_domain_with_back_channel(hv, domid, io, None, params, callbacks, log)
}

/// [`save_domain`] with the COLO back channel (`recv_fd`): before sending
/// each checkpoint's dirty pages, one CHECKPOINT_DIRTY_PFN_LIST record is
/// read from `back` and the secondary's dirty pages are sent too. Ignored
/// for plain and Remus streams.
pub fn save_domain_with_back_channel<H: Hypervisor, W: Write>(
    hv: &H,
    domid: DomId,
    io: &mut W,
    back: Option<&mut dyn std::io::Read>,
    params: &SaveParams,
    callbacks: &mut dyn SaveCallbacks,
    log: &dyn Log,
) -> Result<SaveSummary, SaveError> {
    let fail = |e: SaveError| {
        log.log(Level::Error, Some(e.errno()), &format!("Save failed: {e}"));
        e
    };
    let info = hv.domain_info(domid).map_err(|e| fail(e.into()))?;
    if info.domid != domid {
        return Err(fail(SaveError::NoSuchDomain(domid)));
    }
    check_callbacks(params, &info, callbacks).map_err(fail)?;
    log.log(
        Level::Debug,
        None,
        &format!(
            "dom {domid}, live {}, debug {}, stream {:?}, hvm {}",
            params.live, params.debug, params.stream_type, info.hvm
        ),
    );
    if !info.hvm {
        return Err(fail(SaveError::Unsupported(
            "PV guests are not supported yet".into(),
        )));
    }
    if params.stream_type == StreamType::Colo && back.is_none() {
        return Err(fail(SaveError::BackChannel(
            "a COLO save needs the back channel (recv_fd)".into(),
        )));
    }

    let mut ctx = Ctx {
        hv,
        domid,
        out: out::Out::new(io),
        cb: callbacks,
        log,
        live: params.live,
        debug: params.debug,
        stream_type: params.stream_type,
        precopy: params.precopy,
        info,
        mem: memory::Memory::default(),
        maps: mapcache::MapCache::new(hv.mapping_hints()),
        stats: PrecopyStats::default(),
        summary: SaveSummary::default(),
        prefix: None,
        suspended: false,
        suspended_at: None,
        verifying: false,
        back: back.map(|b| b as &mut dyn std::io::Read),
    };
    let mut guest = x86_hvm::HvmSave::default();
    let guard = LogDirtyGuard {
        hv,
        domid,
        armed: true,
    };
    let started = std::time::Instant::now();
    let res = run(&mut ctx, &mut guest);
    cleanup(&mut ctx, &mut guest);
    ctx.summary.total_time = started.elapsed();
    guard.disarm();
    match res {
        Ok(()) => {
            ctx.summary.bytes_written = ctx.out.bytes();
            Ok(ctx.summary)
        }
        Err(e) => {
            ctx.log_error(&e, "Save failed");
            Err(e)
        }
    }
}

/// Switches log-dirty off if the save unwinds (a panic caught by the C
/// layer's boundary) before its cleanup ran; the normal paths disarm it.
struct LogDirtyGuard<'a, H: Hypervisor> {
    hv: &'a H,
    domid: DomId,
    armed: bool,
}

impl<H: Hypervisor> LogDirtyGuard<'_, H> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<H: Hypervisor> Drop for LogDirtyGuard<'_, H> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.hv.logdirty_off(self.domid);
        }
    }
}

/// libxenguest asserts on these; we refuse instead.
fn check_callbacks(
    params: &SaveParams,
    info: &DomainInfo,
    cb: &dyn SaveCallbacks,
) -> Result<(), SaveError> {
    let need = |hook: SaveHook, name: &'static str| {
        if cb.has(hook) {
            Ok(())
        } else {
            Err(SaveError::MissingCallback(name))
        }
    };
    if params.stream_type == StreamType::Colo {
        need(SaveHook::WaitCheckpoint, "wait_checkpoint")?;
    }
    if params.stream_type != StreamType::Plain {
        need(SaveHook::Checkpoint, "checkpoint")?;
        need(SaveHook::Postcopy, "postcopy")?;
    }
    if info.hvm {
        need(SaveHook::SwitchQemuLogdirty, "switch_qemu_logdirty")?;
    }
    Ok(())
}

/// State of one save.
pub(crate) struct Ctx<'a, H: Hypervisor, W: Write> {
    pub(crate) hv: &'a H,
    pub(crate) domid: DomId,
    pub(crate) out: out::Out<'a, W>,
    pub(crate) cb: &'a mut dyn SaveCallbacks,
    pub(crate) log: &'a dyn Log,
    pub(crate) live: bool,
    pub(crate) debug: bool,
    pub(crate) stream_type: StreamType,
    /// How pre-copy ends when the caller gives no policy.
    pub(crate) precopy: PrecopySettings,
    pub(crate) info: DomainInfo,
    pub(crate) mem: memory::Memory,
    /// Guest mappings kept across batches.
    pub(crate) maps: mapcache::MapCache<'a, H>,
    pub(crate) stats: PrecopyStats,
    pub(crate) summary: SaveSummary,
    /// Current progress prefix (`xc_set_progress_prefix`).
    pub(crate) prefix: Option<String>,
    /// Whether the domain has been suspended (pages sent from then on are
    /// downtime).
    pub(crate) suspended: bool,
    /// When the domain last read as suspended.
    pub(crate) suspended_at: Option<std::time::Instant>,
    /// Whether the verification pass is being sent.
    pub(crate) verifying: bool,
    /// COLO: the secondary's dirty-page reports.
    pub(crate) back: Option<&'a mut dyn std::io::Read>,
}

impl<H: Hypervisor, W: Write> Ctx<'_, H, W> {
    pub(crate) fn msg(&self, level: Level, msg: &str) {
        self.log.log(level, None, msg);
    }

    fn log_error(&self, e: &SaveError, what: &str) {
        self.log
            .log(Level::Error, Some(e.errno()), &format!("{what}: {e}"));
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
        let rc = self.cb.suspend();
        if rc == 0 {
            return Err(SaveError::Callback {
                name: "suspend",
                rc,
            });
        }
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

    fn refresh_info(&mut self) -> Result<(), SaveError> {
        let info = self.hv.domain_info(self.domid)?;
        if info.domid != self.domid {
            return Err(SaveError::NoSuchDomain(self.domid));
        }
        self.info = info;
        Ok(())
    }
}

/// Everything between setup and cleanup (libxenguest's `save()`).
fn run<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    guest: &mut x86_hvm::HvmSave,
) -> Result<(), SaveError> {
    ctx.msg(
        Level::Info,
        &format!("Saving domain {}, type x86 HVM", ctx.domid),
    );
    guest.setup(ctx)?;
    ctx.mem.setup(ctx.summary.p2m_size);

    ctx.progress_single("Start of stream");
    let (major, minor) = ctx.hv.xen_version()?;
    ctx.out
        .headers(crate::stream::DomainType::X86Hvm, major, minor)?;
    guest.static_data(ctx)?;
    ctx.out.static_data_end()?;

    loop {
        if ctx.live {
            memory::send_domain_memory_live(ctx)?;
        } else if ctx.stream_type != StreamType::Plain {
            memory::suspend_and_send_dirty(ctx)?;
        } else {
            memory::send_domain_memory_nonlive(ctx)?;
        }

        if !ctx.info.is_suspended() {
            return Err(SaveError::NotSuspended {
                shutdown: ctx.info.shutdown,
                reason: ctx.info.shutdown_reason,
            });
        }

        guest.end_of_checkpoint(ctx)?;

        if ctx.stream_type == StreamType::Plain {
            break;
        }
        // Checkpointed: the first round was live, the following ones copy
        // the dirty set of a suspended guest.
        ctx.live = false;
        ctx.out.checkpoint()?;
        // The checkpoint must reach the other side before the callbacks
        // wait on it (a buffered writer would hold it back).
        ctx.out.flush()?;
        ctx.summary.checkpoints += 1;
        let colo = ctx.stream_type == StreamType::Colo;
        if colo {
            let rc = ctx.cb.checkpoint();
            if rc == 0 {
                return Err(SaveError::Callback {
                    name: "checkpoint",
                    rc,
                });
            }
        }
        let rc = ctx.cb.postcopy();
        if rc <= 0 {
            ctx.msg(
                Level::Info,
                &format!("postcopy() returned {rc}: checkpointing stopped"),
            );
            return Ok(());
        }
        let (name, rc) = if colo {
            ("wait_checkpoint", ctx.cb.wait_checkpoint())
        } else {
            ("checkpoint", ctx.cb.checkpoint())
        };
        if rc <= 0 {
            ctx.msg(
                Level::Info,
                &format!("{name}() returned {rc}: checkpointing stopped"),
            );
            return Ok(());
        }
        ctx.suspended = false;
    }

    ctx.progress_single("End of stream");
    ctx.out.end()?;
    ctx.out.flush()?;
    ctx.progress_single("Complete");
    if let Some(t) = ctx.suspended_at {
        ctx.summary.suspended_time = t.elapsed();
    }
    Ok(())
}

/// Always run, also after errors: log-dirty off, then the guest type's
/// cleanup (qemu log-dirty off).
fn cleanup<H: Hypervisor, W: Write>(ctx: &mut Ctx<'_, H, W>, guest: &mut x86_hvm::HvmSave) {
    // libxenguest ignores the result of this call too: OFF is accepted in
    // any state, and a failure here must not hide the save's own result.
    if let Err(e) = ctx.hv.logdirty_off(ctx.domid) {
        ctx.log
            .log(Level::Warn, Some(e.errno()), &format!("log-dirty off: {e}"));
    }
    if let Err(e) = guest.cleanup(ctx) {
        ctx.log_error(&e, "Failed to clean up");
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
