//! The save engine: `xc_domain_save()` without the C.
//!
//! [`save_domain`] writes a domain's state to a byte stream as a libxc
//! migration stream (version 3), driving the hypervisor through
//! [`Hypervisor`] and the toolstack through [`SaveCallbacks`], with the same
//! phases, calls, return conventions and statistics as libxenguest 4.17:
//!
//! ```text
//!  domain_info ── setup (HVM: p2m size, qemu log-dirty on; PV: width,
//!       │         M2P, shared_info, the guest's p2m) ── headers
//!  static data ([PV: X86_PV_INFO,] CPUID/MSR policy) ── STATIC_DATA_END
//!       │  PV: X86_PV_P2M_FRAMES
//!  ┌─ memory ─────────────────────────────────────────────────────┐
//!  │ non-live: suspend ─ send all pages                           │
//!  │ live:     log-dirty on ─ precopy rounds (policy) ─ suspend   │
//!  │           ─ final CLEAN ─ send dirty ─ [debug: VERIFY pass]  │
//!  │ checkpoint (Remus, after the first): suspend ─ send dirty    │
//!  └──────────────────────────────────────────────────────────────┘
//!       │  domain must read as shut down for suspend
//!  end of checkpoint: HVM: X86_TSC_INFO, HVM_PARAMS, HVM_CONTEXT;
//!                     PV: X86_TSC_INFO, SHARED_INFO, X86_PV_VCPU_*
//!       │  Remus: CHECKPOINT, postcopy, checkpoint → loop
//!  END ── cleanup (always: log-dirty off, qemu log-dirty off)
//! ```
//!
//! Modules, top down (none imports one above it):
//! - `checkpoint` (the checkpoint loop) → `live` (the memory phases:
//!   non-live, live, suspended rounds, verify, COLO merge) → `precopy` (the
//!   live pre-copy loop at libxenguest's call points) → `memory` (the
//!   mechanism: dirty bitmap walk, batches, PAGE_DATA) → `mapcache`,
//!   `batch`, `bitmap`, `out` (record output);
//! - `guest` (the guest-type seam, libxenguest's `save_ops`), `x86` (the
//!   records every x86 guest writes), `x86_hvm` (HVM/PVH) and `x86_pv`
//!   (PV);
//! - [`policy`] (pure: the policy types, libxenguest's default and xcmig's
//!   downtime-targeted policy); `ctx` (the state of one save), `params`,
//!   `callbacks`, `error`.

mod batch;
mod bitmap;
mod callbacks;
mod checkpoint;
mod compress;
mod compress_auto;
mod ctx;
mod error;
mod guest;
mod live;
mod mapcache;
mod memory;
mod out;
mod params;
pub mod policy;
mod precopy;
mod throttle;
mod x86;
mod x86_hvm;
mod x86_pv;

use std::io::Write;

use crate::hv::{DomId, DomainInfo, HvError, Hypervisor};
use crate::log::{Level, Log};
use crate::toolstack::StreamType;

pub use callbacks::{SaveCallbacks, SaveHook};
pub use error::SaveError;
pub use params::{CompressMode, CompressionSettings, SaveParams, SaveSummary};
pub use policy::{
    simple_precopy_policy, AutoConverge, PolicyChoice, PolicyDecision, PrecopySettings,
    PrecopyStats,
};

use ctx::Ctx;
use guest::SaveGuest;

/// Save domain `domid` to `io` (the `xc_domain_save` engine).
///
/// On success the stream is complete (plain streams end with an END
/// record; checkpointed streams end when a callback stops them, without
/// END, as libxenguest does). On any outcome log-dirty has been switched
/// off and qemu's log-dirty tracking has been switched back off if it was
/// switched on. COLO streams need [`save_domain_with_back_channel`].
///
/// `log` receives the progress reports (`xtl_progress`). Messages go
/// through the `log` facade: to the program's logger, or, where the
/// library's own logger is installed, to this thread's sink
/// ([`crate::log`]).
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
        crate::log::message(Level::Error, Some(e.errno()), &format!("Save failed: {e}"));
        e
    };
    let info = hv.domain_info(domid).map_err(|e| fail(e.into()))?;
    if info.domid != domid {
        return Err(fail(SaveError::NoSuchDomain(domid)));
    }
    check_callbacks(params, &info, callbacks).map_err(fail)?;
    crate::log::message(
        Level::Detail,
        None,
        &format!(
            "dom {domid}, live {}, debug {}, hvm {}, stream_type {}",
            u8::from(params.live),
            u8::from(params.debug),
            u8::from(info.hvm),
            params.stream_type
        ),
    );
    // The one place that knows every guest type.
    let mut guest: Box<dyn SaveGuest<H, W> + '_> = if info.hvm {
        Box::new(x86_hvm::HvmSave::default())
    } else {
        Box::new(x86_pv::PvSave::new(hv, domid))
    };
    if params.stream_type == StreamType::Colo && back.is_none() {
        return Err(fail(SaveError::BackChannel(
            "a COLO save needs the back channel (recv_fd)".into(),
        )));
    }

    let back = back.map(|b| b as &mut dyn std::io::Read);
    let mut ctx = Ctx::new(hv, domid, io, back, params, callbacks, log, info);
    let guard = LogDirtyGuard {
        hv,
        domid,
        armed: true,
    };
    let started = std::time::Instant::now();
    let res = run(&mut ctx, &mut *guest);
    let off = cleanup(&mut ctx, &mut *guest);
    // A save whose stream is complete still fails if it leaves the guest
    // in log-dirty mode; an earlier error stays the one reported.
    let res = res.and(off.map_err(SaveError::from));
    ctx.summary.total_time = started.elapsed();
    guard.disarm();
    match res {
        Ok(()) => {
            ctx.summary.bytes_written = ctx.out.bytes();
            let t = ctx.out.compression_totals();
            ctx.summary.compressed_records = t.records;
            ctx.summary.compressed_pages = t.pages;
            ctx.summary.compressed_bytes = t.bytes;
            Ok(ctx.summary)
        }
        Err(e) => {
            // Tell the toolstack what it has to do with the guest now.
            let state = if ctx.suspended {
                format!(
                    "; domain {} is left suspended and can be resumed",
                    ctx.domid
                )
            } else if !ctx.suspend_asked {
                format!("; domain {} was not suspended", ctx.domid)
            } else {
                String::new()
            };
            crate::log::message(
                Level::Error,
                Some(e.errno()),
                &format!("Save failed: {e}{state}"),
            );
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

/// Everything between setup and cleanup (libxenguest's `save()`).
fn run<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    guest: &mut dyn SaveGuest<H, W>,
) -> Result<(), SaveError> {
    ctx.msg(
        Level::Info,
        &format!("Saving domain {}, type {}", ctx.domid, guest.name()),
    );
    guest.setup(ctx)?;
    ctx.mem.setup(ctx.summary.p2m_size)?;
    ctx.maps = mapcache::MapCache::new(guest.mapping_hints(ctx.hv.mapping_hints()));

    ctx.progress_single("Start of stream");
    let (major, minor) = ctx.hv.xen_version()?;
    ctx.out.headers(guest.domain_type(), major, minor)?;
    if let Some((c, threads, auto)) = ctx.out.compression() {
        let how = if auto {
            "auto: LZ4 while the link is slower than compression"
        } else {
            c.name()
        };
        ctx.msg(
            Level::Info,
            &format!(
                "compressing page data ({how}) on {threads} threads: only xcmig restores this stream"
            ),
        );
    }
    guest.static_data(ctx)?;
    ctx.out.static_data_end()?;
    guest.start_of_stream(ctx)?;

    if checkpoint::send_checkpoints(ctx, guest)? == checkpoint::Ended::Stopped {
        return Ok(());
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
/// cleanup (qemu log-dirty off). Returns the error of switching log-dirty
/// off when a retry failed too.
fn cleanup<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    guest: &mut dyn SaveGuest<H, W>,
) -> Result<(), HvError> {
    // libxenguest ignores the result of this call and so can leave the
    // guest in log-dirty mode after one failed hypercall; OFF is accepted
    // in any state, so a failure is tried once more, and only a second one
    // is reported (to the caller, which fails a save that had succeeded).
    let off = ctx
        .hv
        .logdirty_off(ctx.domid)
        .or_else(|_| ctx.hv.logdirty_off(ctx.domid));
    if let Err(e) = guest.cleanup(ctx) {
        ctx.log_error(&e, "Failed to clean up");
    }
    off
}

#[cfg(test)]
mod compress_tests;
#[cfg(test)]
mod pv_tests;
#[cfg(test)]
mod seam_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
#[cfg(test)]
mod throttle_tests;
