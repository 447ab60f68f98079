//! The checkpoint loop of a save (libxenguest's `save()` after the static
//! data): each checkpoint's memory, the guest type's records, and for
//! Remus and COLO streams the CHECKPOINT record and the callbacks that say
//! whether another checkpoint follows.

use std::io::Write;

use super::ctx::Ctx;
use super::error::SaveError;
use super::guest::SaveGuest;
use super::live;
use crate::hv::Hypervisor;
use crate::log::Level;
use crate::toolstack::{Next, StreamType};

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// A plain stream is complete: END follows.
    Plain,
    /// A callback stopped checkpointing: the stream ends without END.
    Stopped,
}

/// Send checkpoints until the stream is complete or a callback stops it.
pub(crate) fn send_checkpoints<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    guest: &mut dyn SaveGuest<H, W>,
) -> Result<Ended, SaveError> {
    loop {
        guest.start_of_checkpoint(ctx)?;
        guest.frames().check_vm_state(ctx.live)?;
        if ctx.live {
            live::send_domain_memory_live(ctx, guest.frames())?;
        } else if ctx.stream_type.is_checkpointed() {
            live::suspend_and_send_dirty(ctx, guest.frames())?;
        } else {
            live::send_domain_memory_nonlive(ctx, guest.frames())?;
        }

        if !ctx.info.is_suspended() {
            return Err(SaveError::NotSuspended {
                shutdown: ctx.info.shutdown,
                reason: ctx.info.shutdown_reason,
            });
        }

        guest.end_of_checkpoint(ctx)?;

        if ctx.stream_type == StreamType::Plain {
            return Ok(Ended::Plain);
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
            ctx.cb
                .notify_checkpoint()
                .map_err(|f| SaveError::callback("checkpoint", f))?;
        }
        if let Next::Stop { code } = ctx.cb.postcopy() {
            ctx.msg(
                Level::Info,
                &format!("postcopy() returned {code}: checkpointing stopped"),
            );
            return Ok(Ended::Stopped);
        }
        let (name, next) = if colo {
            ("wait_checkpoint", ctx.cb.wait_checkpoint())
        } else {
            ("checkpoint", ctx.cb.checkpoint())
        };
        if let Next::Stop { code } = next {
            ctx.msg(
                Level::Info,
                &format!("{name}() returned {code}: checkpointing stopped"),
            );
            return Ok(Ended::Stopped);
        }
        ctx.suspended = false;
    }
}
