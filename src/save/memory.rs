//! Sending guest memory: walking the dirty bitmap, batching up to 1024
//! pfns, querying page types, mapping, and writing PAGE_DATA records.

use std::io::Write;

use super::bitmap::Bitmap;
use super::{precopy, Ctx, SaveError, StreamType};
use crate::hv::{pfinfo, Hypervisor, Level, LogDirtyReport, MappedPages, MAX_BATCH, PAGE_SIZE};

/// Memory-sending state of one save.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    p2m_size: u64,
    /// Pages to send in the current pass.
    dirty: Bitmap,
    /// Pages that could not be sent yet (PV: ballooned or busy pages),
    /// retried after suspend.
    deferred: Bitmap,
    nr_deferred: u64,
    /// Pfns queued for the next PAGE_DATA record.
    batch: Vec<u64>,
    /// Page types of the batch (scratch).
    types: Vec<u64>,
    /// Frames with data in the batch (scratch).
    frames: Vec<u64>,
    /// Page contents of the batch (scratch, up to 4 MiB).
    data: Vec<u8>,
}

impl Memory {
    pub(crate) fn setup(&mut self, p2m_size: u64) {
        self.p2m_size = p2m_size;
        self.dirty = Bitmap::new(p2m_size);
        self.deferred = Bitmap::new(p2m_size);
        self.nr_deferred = 0;
        self.batch = Vec::with_capacity(MAX_BATCH);
    }

    pub(crate) fn p2m_size(&self) -> u64 {
        self.p2m_size
    }

    pub(crate) fn dirty_set_all(&mut self) {
        self.dirty.set_all();
    }
}

/// `xc_logdirty_control(CLEAN)` into the dirty bitmap, checking that Xen
/// covered the whole p2m.
pub(crate) fn logdirty_clean<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    final_pass: bool,
) -> Result<LogDirtyReport, SaveError> {
    let pages = ctx.mem.p2m_size;
    let report = ctx
        .hv
        .logdirty_clean(ctx.domid, ctx.mem.dirty.words_mut(), pages, final_pass)?;
    ctx.mem.dirty.trim();
    if report.pages != pages {
        return Err(SaveError::Protocol(format!(
            "Failed to retrieve logdirty bitmap: Xen covered {} pages, expected {pages}",
            report.pages
        )));
    }
    Ok(report)
}

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
            ctx.log.log(
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
) -> Result<(), SaveError> {
    enable_logdirty(ctx)?;
    precopy::send_memory_live(ctx)?;
    suspend_and_send_dirty(ctx)?;
    if ctx.debug && ctx.stream_type == StreamType::Plain {
        verify_frames(ctx)?;
    }
    Ok(())
}

/// Non-live memory phase: suspend first, then send every page.
pub(crate) fn send_domain_memory_nonlive<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
) -> Result<(), SaveError> {
    ctx.suspend_domain()?;
    ctx.prefix = Some("Frames".to_string());
    let res = send_all_pages(ctx);
    ctx.prefix = None;
    res
}

/// Suspend, take the final dirty bitmap, and send it with the deferred
/// pages (the last round of a live save; every round of a checkpointed
/// one after the first).
pub(crate) fn suspend_and_send_dirty<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
) -> Result<(), SaveError> {
    let res = suspend_and_send_dirty_inner(ctx);
    ctx.prefix = None;
    res
}

fn suspend_and_send_dirty_inner<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
) -> Result<(), SaveError> {
    ctx.suspend_domain()?;
    let report = logdirty_clean(ctx, true)?;
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
    send_dirty_pages(ctx, entries)?;
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
    }
    Ok(())
}

/// Debug mode: a VERIFY record, every page again, and a PEEK whose
/// statistics are logged.
fn verify_frames<H: Hypervisor, W: Write>(ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
    ctx.msg(Level::Debug, "Enabling verify mode");
    ctx.out.verify()?;
    ctx.prefix = Some("Frames verify".to_string());
    ctx.verifying = true;
    let res = send_all_pages(ctx);
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
        Level::Debug,
        &format!(
            "  Further stats: faults {}, dirty {}",
            report.fault_count, report.dirty_count
        ),
    );
    Ok(())
}

/// Mark every pfn dirty and send them all.
pub(crate) fn send_all_pages<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
) -> Result<(), SaveError> {
    ctx.mem.dirty.set_all();
    let n = ctx.mem.p2m_size;
    send_dirty_pages(ctx, n)
}

/// Send the pfns set in the dirty bitmap, in ascending order, in batches.
/// `entries` is the expected count, used for progress as libxenguest does
/// (a step every 1024 pfns queued, and one at the end).
pub(crate) fn send_dirty_pages<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    entries: u64,
) -> Result<(), SaveError> {
    let mut written: u64 = 0;
    // The bitmap is taken out so that the batch writer can borrow ctx.
    let dirty = std::mem::take(&mut ctx.mem.dirty);
    let res = (|| {
        for pfn in dirty.iter_ones() {
            add_to_batch(ctx, pfn)?;
            if written % 1024 == 0 {
                ctx.progress_step(written, entries);
            }
            written += 1;
        }
        flush_batch(ctx)
    })();
    ctx.mem.dirty = dirty;
    res?;
    if written > entries {
        ctx.msg(
            Level::Debug,
            "Bitmap contained more entries than expected...",
        );
    }
    ctx.progress_step(entries, entries);
    Ok(())
}

fn add_to_batch<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    pfn: u64,
) -> Result<(), SaveError> {
    if ctx.mem.batch.len() == MAX_BATCH {
        flush_batch(ctx)?;
    }
    ctx.mem.batch.push(pfn);
    Ok(())
}

fn flush_batch<H: Hypervisor, W: Write>(ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
    if ctx.mem.batch.is_empty() {
        return Ok(());
    }
    write_batch(ctx)?;
    ctx.mem.batch.clear();
    Ok(())
}

/// One PAGE_DATA record for the queued pfns: types, a read-only mapping of
/// the pages that carry data, a copy of them, the record.
fn write_batch<H: Hypervisor, W: Write>(ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
    let mem = &mut ctx.mem;
    let n = mem.batch.len();
    // HVM: pfn == gfn. (PV will translate through the p2m here.)
    mem.types.clear();
    mem.types.extend_from_slice(&mem.batch);
    ctx.hv.page_types(ctx.domid, &mut mem.types)?;

    mem.frames.clear();
    for i in 0..n {
        let t = mem.types[i];
        let t32 = u32::try_from(t).ok().filter(|t| pfinfo::is_known(*t));
        let Some(t32) = t32 else {
            return Err(SaveError::Protocol(format!(
                "Unknown type {t:#x} for pfn {:#x}",
                mem.batch[i]
            )));
        };
        if pfinfo::has_data(t32) {
            mem.frames.push(mem.batch[i]);
        }
    }

    let nr_pages = mem.frames.len();
    mem.data.resize(nr_pages * PAGE_SIZE, 0);
    if nr_pages > 0 {
        let map = ctx.hv.map_read(ctx.domid, &mem.frames)?;
        let mut p = 0;
        for i in 0..n {
            if !pfinfo::has_data(mem.types[i] as u32) {
                continue;
            }
            let err = map.error(p);
            if err != 0 {
                return Err(SaveError::Protocol(format!(
                    "Mapping of pfn {:#x} (gfn {:#x}) failed {err}",
                    mem.batch[i], mem.frames[p]
                )));
            }
            let dst: &mut [u8; PAGE_SIZE] = (&mut mem.data[p * PAGE_SIZE..(p + 1) * PAGE_SIZE])
                .try_into()
                .expect("slice of PAGE_SIZE");
            map.read_page(p, dst);
            p += 1;
        }
        // The mapping is dropped (unmapped) here, before writing, as
        // libxenguest unmaps after writev; the copy makes the order free.
    }

    ctx.out
        .page_data(&mem.batch, &mem.types, &mem.data[..nr_pages * PAGE_SIZE])?;
    ctx.summary.page_data_records += 1;
    ctx.summary.pages_sent += nr_pages as u64;
    if ctx.verifying {
        ctx.summary.pages_sent_verify += nr_pages as u64;
    } else if ctx.suspended {
        ctx.summary.pages_sent_suspended += nr_pages as u64;
    }
    Ok(())
}
