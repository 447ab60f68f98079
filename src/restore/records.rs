//! Applying records: the common ones here (END, PAGE_DATA, VERIFY,
//! STATIC_DATA_END, optional records), the rest handed to the guest type.

use std::io::Read;

use super::ctx::RestoreCtx;
use super::error::RestoreError;
use super::guest::RestoreGuest;
use super::memory::{DecompressedPages, PageSource, SlicePages};
use crate::hv::Hypervisor;
use crate::log::Level;
use crate::stream::{PageReader, Record};

/// Apply one record.
pub(crate) fn apply_record<H: Hypervisor>(
    ctx: &mut RestoreCtx<'_, H>,
    guest: &mut dyn RestoreGuest<H>,
    rec: &Record<'_>,
) -> Result<(), RestoreError> {
    match rec {
        Record::End => Ok(()),
        Record::PageData(pd) => {
            page_data(ctx, guest, &mut SlicePages::new(pd.entries(), pd.data()))
        }
        Record::CompressedPageData(c) => {
            // Taken out so the source can borrow it while ctx is lent.
            let mut d = std::mem::take(&mut ctx.decompressor);
            let res = page_data(ctx, guest, &mut DecompressedPages::new(*c, &mut d));
            ctx.decompressor = d;
            res
        }
        Record::Verify => {
            ctx.msg(Level::Detail, "Verify mode enabled");
            ctx.verify = true;
            Ok(())
        }
        Record::StaticDataEnd => static_data_end(ctx, guest),
        // A v2 stream has no STATIC_DATA_END: for PV it ends at the p2m
        // frames (libxenguest infers it there, as at the first PAGE_DATA).
        Record::X86PvP2mFrames(_) => {
            if ctx.v2 && !ctx.static_data_ended {
                static_data_end(ctx, guest)?;
            }
            guest.process_record(ctx, rec)
        }
        Record::Optional { record_type, .. } => {
            ctx.msg(
                Level::Detail,
                &format!("Ignoring optional record {record_type}"),
            );
            Ok(())
        }
        other => guest.process_record(ctx, other),
    }
}

/// Apply a PAGE_DATA record whose pages are still in the stream: they are
/// read straight into guest memory.
pub(crate) fn apply_pages<H: Hypervisor, R: Read>(
    ctx: &mut RestoreCtx<'_, H>,
    guest: &mut dyn RestoreGuest<H>,
    pages: &mut PageReader<'_, R>,
) -> Result<(), RestoreError> {
    page_data(ctx, guest, pages)
}

fn page_data<H: Hypervisor>(
    ctx: &mut RestoreCtx<'_, H>,
    guest: &mut dyn RestoreGuest<H>,
    pages: &mut dyn PageSource,
) -> Result<(), RestoreError> {
    if ctx.v2 && !ctx.static_data_ended {
        static_data_end(ctx, guest)?;
    }
    if !ctx.static_data_ended {
        return Err(RestoreError::Record {
            what: "PAGE_DATA",
            msg: "no STATIC_DATA_END seen".into(),
        });
    }
    ctx.memory
        .apply_page_data(&ctx.target, guest.page_hooks(), ctx.verify, pages)?;
    ctx.outputs.page_data_records += 1;
    Ok(())
}

/// STATIC_DATA_END (or, in a v2 stream, the record that implies it): the
/// guest type applies its static data, then the toolstack is told which
/// parts were missing.
fn static_data_end<H: Hypervisor>(
    ctx: &mut RestoreCtx<'_, H>,
    guest: &mut dyn RestoreGuest<H>,
) -> Result<(), RestoreError> {
    if ctx.static_data_ended {
        return Err(RestoreError::Record {
            what: "STATIC_DATA_END",
            msg: "multiple STATIC_DATA_END records found".into(),
        });
    }
    ctx.static_data_ended = true;
    let missing = guest.static_data_complete(ctx)?;
    if ctx.cb.has(super::callbacks::RestoreHook::StaticDataDone) {
        ctx.cb
            .static_data_done(missing)
            .map_err(|f| RestoreError::callback("static_data_done", f))?;
    }
    Ok(())
}
