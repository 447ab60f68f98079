//! COLO, after a checkpoint's records are applied: complete the stream,
//! report the gfns, resume the secondary, wait for the next checkpoint,
//! suspend it again, and send the primary the pages it dirtied meanwhile.

use super::callbacks::Proceed;
use super::ctx::RestoreCtx;
use super::error::RestoreError;
use super::guest::RestoreGuest;
use crate::hv::Hypervisor;
use crate::log::Level;

/// One COLO checkpoint of the secondary; `Proceed::Failover` when a
/// callback reports the channel broken.
pub(crate) fn checkpoint<H: Hypervisor>(
    ctx: &mut RestoreCtx<'_, H>,
    guest: &mut dyn RestoreGuest<H>,
    p2m_size: u64,
    back: &mut dyn std::io::Write,
) -> Result<Proceed, RestoreError> {
    guest.stream_complete(ctx)?;
    ctx.cb
        .restore_results(ctx.outputs.store_gfn, ctx.outputs.console_gfn);
    for name in ["postcopy", "wait_checkpoint", "suspend"] {
        let answer = match name {
            "postcopy" => ctx.cb.postcopy(),
            "wait_checkpoint" => ctx.cb.wait_checkpoint(),
            _ => ctx.cb.suspend(),
        };
        match answer.map_err(|f| RestoreError::callback(name, f))? {
            Proceed::Continue => {}
            Proceed::Failover => {
                ctx.msg(
                    Level::Info,
                    &format!("{name}(): broken channel, failing over"),
                );
                return Ok(Proceed::Failover);
            }
        }
    }
    let mut bitmap = vec![0u64; p2m_size.div_ceil(64) as usize];
    let r = ctx
        .hv()
        .logdirty_clean(ctx.domid(), &mut bitmap, p2m_size, false)?;
    if r.pages != p2m_size {
        return Err(RestoreError::Record {
            what: "CHECKPOINT",
            msg: format!(
                "log-dirty bitmap covers {} pages, expected {p2m_size}",
                r.pages
            ),
        });
    }
    let pfns: Vec<u64> = (0..p2m_size)
        .filter(|&p| bitmap[(p / 64) as usize] & (1 << (p % 64)) != 0)
        .collect();
    let mut w = crate::stream::Writer::back_channel(back);
    w.write_checkpoint_dirty_pfn_list(&pfns)?;
    w.flush()?;
    Ok(Proceed::Continue)
}
