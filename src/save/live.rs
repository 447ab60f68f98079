//! The memory phases of a save, above the memory mechanism (`memory.rs`):
//! non-live (suspend, send everything), live (log-dirty, pre-copy rounds,
//! suspend, the rest, and in debug mode a verification pass), and the
//! suspended rounds of checkpointed streams, with COLO's merge of the
//! secondary's dirty pages.

use std::io::Write;

use super::ctx::Ctx;
use super::error::SaveError;
use super::guest::PageFrames;
use super::throttle::Throttle;
use super::{memory, precopy};
use crate::hv::Hypervisor;
use crate::log::Level;
use crate::toolstack::StreamType;

/// `enable_logdirty`: if ENABLE fails (log-dirty may already be on for
/// VRAM tracking), switch it OFF and ENABLE again.
fn enable_logdirty<H: Hypervisor, W: Write>(ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
    let first = match ctx.hv.logdirty_enable(ctx.domid) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let second = ctx
        .hv
        .logdirty_off(ctx.domid)
        .and_then(|()| ctx.hv.logdirty_enable(ctx.domid));
    match second {
        Ok(()) => Ok(()),
        Err(e) => {
            crate::log::message(
                Level::Error,
                Some(e.errno()),
                &format!("Failed to enable logdirty: first attempt: {first}; retry: {e}"),
            );
            Err(e.into())
        }
    }
}

/// Live memory phase: log-dirty on, pre-copy rounds, suspend, final copy,
/// and in debug mode the verification pass.
pub(crate) fn send_domain_memory_live<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
) -> Result<(), SaveError> {
    enable_logdirty(ctx)?;
    // Auto-converge's cap, restored once the guest is suspended (or, on
    // an error or a panic, when this is dropped).
    let vcpus = ctx.info.max_vcpu_id + 1;
    let mut throttle = Throttle::new(ctx.hv, ctx.domid, vcpus);
    precopy::send_memory_live(ctx, frames, &mut throttle)?;
    ctx.suspend_domain()?;
    // The guest no longer runs: its cap has done its work.
    ctx.summary.throttled_time = throttle.finish();
    send_dirty_suspended(ctx, frames)?;
    if ctx.debug && ctx.stream_type == StreamType::Plain {
        verify_frames(ctx, frames)?;
    }
    Ok(())
}

/// Non-live memory phase: suspend first, then send every page.
pub(crate) fn send_domain_memory_nonlive<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
) -> Result<(), SaveError> {
    ctx.suspend_domain()?;
    ctx.prefix = Some("Frames".to_string());
    let res = memory::send_all_pages(ctx, frames);
    ctx.prefix = None;
    res
}

/// Suspend, take the final dirty bitmap, and send it with the deferred
/// pages (the last round of a live save; every round of a checkpointed
/// one after the first).
pub(crate) fn suspend_and_send_dirty<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
) -> Result<(), SaveError> {
    ctx.suspend_domain()?;
    send_dirty_suspended(ctx, frames)
}

/// The part of [`suspend_and_send_dirty`] after the suspend.
fn send_dirty_suspended<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
) -> Result<(), SaveError> {
    let res = send_dirty_suspended_inner(ctx, frames);
    ctx.prefix = None;
    res
}

fn send_dirty_suspended_inner<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
) -> Result<(), SaveError> {
    let report = memory::logdirty_clean(ctx, true)?;
    ctx.prefix = Some(if ctx.live {
        format!("Frames iteration {}", ctx.stats.iteration)
    } else {
        "Checkpointed save".to_string()
    });
    let deferred = std::mem::take(&mut ctx.mem.deferred);
    ctx.mem.dirty.or_with(&deferred);
    ctx.mem.deferred = deferred;
    if !ctx.live && ctx.stream_type == StreamType::Colo {
        merge_secondary_dirty(ctx)?;
    }
    let entries = u64::from(report.dirty_count) + ctx.mem.nr_deferred;
    memory::send_dirty_pages(ctx, frames, entries)?;
    ctx.mem.deferred.clear_all();
    ctx.mem.nr_deferred = 0;
    Ok(())
}

/// COLO: read the secondary's CHECKPOINT_DIRTY_PFN_LIST from the back
/// channel and add its pfns to this round's dirty set.
fn merge_secondary_dirty<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
) -> Result<(), SaveError> {
    let p2m_size = ctx.mem.p2m_size;
    let Some(back) = ctx.back.as_mut() else {
        return Err(SaveError::BackChannel("no back channel".into()));
    };
    let mut r = crate::stream::BackChannelReader::new(&mut **back, crate::stream::Endian::Little);
    let rec = r
        .next_record()
        .map_err(|e| SaveError::BackChannel(format!("reading the secondary's dirty pages: {e}")))?;
    let Some(crate::stream::Record::CheckpointDirtyPfnList(pfns)) = rec else {
        return Err(SaveError::BackChannel(format!(
            "expected a CHECKPOINT_DIRTY_PFN_LIST record, got {}",
            rec.map_or("end of channel".to_string(), |r| r
                .record_type()
                .to_string())
        )));
    };
    for pfn in pfns.iter() {
        if pfn >= p2m_size {
            return Err(SaveError::BackChannel(format!(
                "secondary reports pfn {pfn:#x} beyond the p2m size {p2m_size:#x}"
            )));
        }
        ctx.mem.dirty.set(pfn);
        // The secondary ran and may have written the page: it must get
        // data even if it is zero here and was never sent.
        ctx.mem.sent.set(pfn);
    }
    Ok(())
}

/// Debug mode: a VERIFY record, every page again, and a PEEK whose
/// statistics are logged.
fn verify_frames<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
) -> Result<(), SaveError> {
    ctx.msg(Level::Detail, "Enabling verify mode");
    ctx.out.verify()?;
    ctx.prefix = Some("Frames verify".to_string());
    ctx.verifying = true;
    let res = memory::send_all_pages(ctx, frames);
    ctx.verifying = false;
    ctx.prefix = None;
    res?;
    let pages = ctx.mem.p2m_size;
    let report = ctx
        .hv
        .logdirty_peek(ctx.domid, ctx.mem.dirty.words_mut(), pages)?;
    ctx.mem.dirty.trim();
    if report.pages != pages {
        return Err(SaveError::Protocol(format!(
            "Failed to retrieve logdirty bitmap: Xen covered {} pages, expected {pages}",
            report.pages
        )));
    }
    ctx.msg(
        Level::Detail,
        &format!(
            "  Further stats: faults {}, dirty {}",
            report.fault_count, report.dirty_count
        ),
    );
    Ok(())
}
