//! Sending guest memory: walking the dirty bitmap, batching up to 1024
//! pfns, querying page types, mapping, and writing PAGE_DATA records.
//!
//! The data path, beyond what libxenguest does:
//! * mappings come from [`MapCache`]: whole 64 MiB chunks mapped once and
//!   kept across batches (and across passes where the backend allows),
//!   instead of one map/unmap per batch;
//! * the record is written straight from the mappings (one slice per run
//!   of consecutive pages), without copying pages into a buffer first;
//! * a page that reads as all zeros and has never been sent in this stream
//!   goes as XALLOC without data: a receiver (libxenguest's or ours)
//!   populates it, and Xen hands out zeroed pages. Once a pfn has been
//!   sent with data, it always carries data, because a receiver does not
//!   touch the contents of a populated pfn on XALLOC;
//! * holes (XTAB) are left out of the records: receivers ignore them.
//!
//! Batches stay within libxenguest's limits (at most 1024 pfns, so a
//! record is at most 4 MiB + 8 KiB, far below the 128 MiB record limit).

use std::io::{IoSlice, Write};

use super::bitmap::Bitmap;
use super::mapcache::CHUNK_PAGES;
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
    /// Pfns sent with data so far in this stream: they never go as XALLOC.
    sent: Bitmap,
    /// Pfns queued for the next PAGE_DATA record.
    batch: Vec<u64>,
    /// Page types of the batch (scratch).
    types: Vec<u64>,
    /// Frames of the batch mapped for the batch alone (scratch).
    frames: Vec<u64>,
    /// Frames of a chunk to map (scratch).
    chunk_frames: Vec<u64>,
    /// Where each data page of the batch is mapped (scratch).
    places: Vec<(Src, usize)>,
    /// The record's pfns and types (scratch).
    rec_pfns: Vec<u64>,
    rec_types: Vec<u64>,
    /// Runs of consecutive mapped pages to send (scratch).
    runs: Vec<Run>,
    /// Pages copied out of mappings that do not lend their bytes (scratch).
    data: Vec<u8>,
}

impl Memory {
    pub(crate) fn setup(&mut self, p2m_size: u64) {
        self.p2m_size = p2m_size;
        self.dirty = Bitmap::new(p2m_size);
        self.deferred = Bitmap::new(p2m_size);
        self.sent = Bitmap::new(p2m_size);
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
        // The secondary ran and may have written the page: it must get
        // data even if it is zero here and was never sent.
        ctx.mem.sent.set(pfn);
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
    ctx.maps.begin_pass();
    let res = (|| {
        for pfn in dirty.iter_ones() {
            if ctx.mem.batch.len() == MAX_BATCH {
                flush_batch(ctx, &dirty)?;
            }
            ctx.mem.batch.push(pfn);
            if written % 1024 == 0 {
                ctx.progress_step(written, entries);
            }
            written += 1;
        }
        flush_batch(ctx, &dirty)
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

fn flush_batch<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    dirty: &Bitmap,
) -> Result<(), SaveError> {
    if ctx.mem.batch.is_empty() {
        return Ok(());
    }
    let res = write_batch(ctx, dirty);
    ctx.mem.batch.clear();
    res
}

/// Where the page of a data-bearing entry of the batch is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// In the cached mapping of this chunk.
    Chunk(u64),
    /// In the batch's own mapping of the frames not in a cached chunk.
    Batch,
}

/// Consecutive pages of one mapping, sent as one slice.
#[derive(Debug, Clone, Copy)]
struct Run {
    src: Src,
    first: usize,
    n: usize,
}

/// One PAGE_DATA record for the queued pfns: types; the pages with data
/// found in the cached chunk mappings or mapped for this batch; zero pages
/// never sent before turned into XALLOC; holes left out; the record
/// written straight from the mappings.
fn write_batch<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    dirty: &Bitmap,
) -> Result<(), SaveError> {
    let hv = ctx.hv;
    let domid = ctx.domid;
    let p2m_size = ctx.mem.p2m_size;
    let mem = &mut ctx.mem;
    let n = mem.batch.len();
    // HVM: pfn == gfn. (PV will translate through the p2m here.)
    mem.types.clear();
    mem.types.extend_from_slice(&mem.batch);
    hv.page_types(domid, &mut mem.types)?;
    for i in 0..n {
        let t = mem.types[i];
        if !u32::try_from(t).is_ok_and(pfinfo::is_known) {
            return Err(SaveError::Protocol(format!(
                "Unknown type {t:#x} for pfn {:#x}",
                mem.batch[i]
            )));
        }
    }

    // Where each data page is: a cached chunk, or this batch's mapping.
    ctx.maps.begin_batch();
    mem.places.clear();
    mem.frames.clear();
    let mut sparse_chunk = None;
    for i in 0..n {
        if !pfinfo::has_data(mem.types[i] as u32) {
            continue;
        }
        let pfn = mem.batch[i];
        let chunk = pfn / CHUNK_PAGES;
        let slot = (pfn % CHUNK_PAGES) as usize;
        let mut cached = ctx.maps.touch(chunk);
        if cached && !ctx.maps.slot_ok(chunk, slot) {
            // Populated after the chunk was mapped: map it again.
            ctx.maps.forget(chunk);
            cached = false;
        }
        if !cached && sparse_chunk != Some(chunk) {
            let first = chunk * CHUNK_PAGES;
            let dense = ctx
                .maps
                .worth_mapping(dirty.count_range(first, first + CHUNK_PAGES));
            cached = dense
                && ctx
                    .maps
                    .map_chunk(hv, domid, chunk, p2m_size, &mut mem.chunk_frames)?;
            if !cached {
                sparse_chunk = Some(chunk);
            }
        }
        if cached {
            mem.places.push((Src::Chunk(chunk), slot));
        } else {
            mem.places.push((Src::Batch, mem.frames.len()));
            mem.frames.push(pfn);
        }
    }
    let batch_map = if mem.frames.is_empty() {
        None
    } else {
        Some(hv.map_read(domid, &mem.frames)?)
    };
    let maps = &ctx.maps;
    let map_of = |src: Src| -> Option<&H::ReadMapping<'_>> {
        match src {
            Src::Chunk(c) => maps.get(c),
            Src::Batch => batch_map.as_ref(),
        }
    };

    // The record's entries and the runs of pages carrying data.
    mem.rec_pfns.clear();
    mem.rec_types.clear();
    mem.runs.clear();
    let mut d = 0;
    let mut zero = 0u64;
    for i in 0..n {
        let pfn = mem.batch[i];
        let t = mem.types[i];
        if t == u64::from(pfinfo::XTAB) {
            // A hole: a receiver does nothing with it, so it is left out.
            continue;
        }
        if !pfinfo::has_data(t as u32) {
            mem.rec_pfns.push(pfn);
            mem.rec_types.push(t);
            continue;
        }
        let (src, slot) = mem.places[d];
        d += 1;
        let Some(map) = map_of(src).filter(|m| m.error(slot) == 0) else {
            let err = map_of(src).map_or(-libc::EINVAL, |m| m.error(slot));
            return Err(SaveError::Protocol(format!(
                "Mapping of pfn {pfn:#x} (gfn {pfn:#x}) failed {err}"
            )));
        };
        // A page never sent that reads as zero goes without data: the
        // receiver populates it and Xen hands out zeroed pages. Once a
        // pfn has carried data it always does, or a receiver would keep
        // its old contents. The verification pass sends everything.
        if !ctx.verifying && !mem.sent.test(pfn) && map.is_zero(slot) {
            mem.rec_pfns.push(pfn);
            mem.rec_types.push(u64::from(pfinfo::XALLOC));
            zero += 1;
            continue;
        }
        if !ctx.verifying {
            mem.sent.set(pfn);
        }
        mem.rec_pfns.push(pfn);
        mem.rec_types.push(t);
        match mem.runs.last_mut() {
            Some(r) if r.src == src && r.first + r.n == slot => r.n += 1,
            _ => mem.runs.push(Run {
                src,
                first: slot,
                n: 1,
            }),
        }
    }
    if mem.rec_pfns.is_empty() {
        return Ok(());
    }

    // Pages of mappings that cannot lend their bytes are copied out.
    let copied: usize = mem
        .runs
        .iter()
        .filter(|r| map_of(r.src).is_some_and(|m| m.pages(r.first, r.n).is_none()))
        .map(|r| r.n)
        .sum();
    mem.data.resize(copied * PAGE_SIZE, 0);
    let mut off = 0;
    for r in &mem.runs {
        let Some(m) = map_of(r.src) else { continue };
        if m.pages(r.first, r.n).is_none() {
            for k in 0..r.n {
                let dst: &mut [u8; PAGE_SIZE] = (&mut mem.data[off..off + PAGE_SIZE])
                    .try_into()
                    .expect("slice of PAGE_SIZE");
                m.read_page(r.first + k, dst);
                off += PAGE_SIZE;
            }
        }
    }
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(mem.runs.len());
    let mut off = 0;
    for r in &mem.runs {
        match map_of(r.src).and_then(|m| m.pages(r.first, r.n)) {
            Some(s) => slices.push(s.io_slice()),
            None => {
                slices.push(IoSlice::new(&mem.data[off..off + r.n * PAGE_SIZE]));
                off += r.n * PAGE_SIZE;
            }
        }
    }
    let nr_pages: usize = mem.runs.iter().map(|r| r.n).sum();
    ctx.out
        .page_data_slices(&mem.rec_pfns, &mem.rec_types, &slices)?;
    drop(slices);
    drop(batch_map);

    ctx.summary.page_data_records += 1;
    ctx.summary.pages_sent += nr_pages as u64;
    ctx.summary.pages_zero += zero;
    if ctx.verifying {
        ctx.summary.pages_sent_verify += nr_pages as u64;
    } else if ctx.suspended {
        ctx.summary.pages_sent_suspended += nr_pages as u64;
    }
    Ok(())
}

#[cfg(test)]
#[path = "datapath_tests.rs"]
mod datapath_tests;
