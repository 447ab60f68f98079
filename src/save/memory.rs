//! Sending guest memory: walking the dirty bitmap, batching up to 1024
//! pfns, querying page types, mapping, and writing PAGE_DATA records.
//!
//! The data path, beyond what libxenguest does:
//! * mappings come from [`MapCache`]: whole 64 MiB chunks mapped once and
//!   kept across batches (and across passes where the backend allows),
//!   instead of one map/unmap per batch;
//! * the record is written straight from the mappings (one slice per run
//!   of consecutive pages), without copying pages into a buffer first;
//! * an ordinary page (NOTAB; a page table keeps its type) that reads as
//!   all zeros and has never been sent in this stream
//!   goes as XALLOC without data: a receiver (libxenguest's or ours)
//!   populates it, and Xen hands out zeroed pages. Once a pfn has been
//!   sent with data, it always carries data, because a receiver does not
//!   touch the contents of a populated pfn on XALLOC;
//! * holes (XTAB) are left out of the records: receivers ignore them.
//!
//! Batches stay within libxenguest's limits (at most 1024 pfns, so a
//! record is at most 4 MiB + 8 KiB, far below the 128 MiB record limit).

use std::io::{IoSlice, Write};

use super::batch::{Run, Src};
use super::bitmap::Bitmap;
use super::ctx::Ctx;
use super::error::SaveError;
use super::guest::{Normalised, PageFrames, INVALID_FRAME};
use super::mapcache::CHUNK_PAGES;
use crate::hv::{pfinfo, Hypervisor, LogDirtyReport, MappedPages, MAX_BATCH, PAGE_SIZE};
use crate::log::Level;
use crate::stream::PageType;

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

/// Mark every pfn dirty and send them all.
pub(crate) fn send_all_pages<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
) -> Result<(), SaveError> {
    ctx.mem.dirty.set_all();
    let n = ctx.mem.p2m_size;
    send_dirty_pages(ctx, frames, n)
}

/// Send the pfns set in the dirty bitmap, in ascending order, in batches.
/// `entries` is the expected count, used for progress as libxenguest does
/// (a step every 1024 pfns queued, and one at the end).
pub(crate) fn send_dirty_pages<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
    entries: u64,
) -> Result<(), SaveError> {
    let mut written: u64 = 0;
    let frames_moved = frames.begin_pass()?;
    ctx.out.new_round();
    // The bitmap is taken out so that the batch writer can borrow ctx.
    let dirty = std::mem::take(&mut ctx.mem.dirty);
    ctx.maps.begin_pass(frames_moved);
    let res = (|| -> Result<(), SaveError> {
        for pfn in dirty.iter_ones() {
            if ctx.mem.batch.len() == MAX_BATCH {
                flush_batch(ctx, frames, &dirty)?;
            }
            ctx.mem.batch.push(pfn);
            if written % 1024 == 0 {
                ctx.progress_step(written, entries);
            }
            written += 1;
        }
        flush_batch(ctx, frames, &dirty)?;
        // The round's batches are all in the stream before it is measured.
        ctx.out.drain()?;
        Ok(())
    })();
    ctx.mem.dirty = dirty;
    res?;
    if written > entries {
        ctx.msg(
            Level::Detail,
            "Bitmap contained more entries than expected...",
        );
    }
    ctx.progress_step(entries, entries);
    frames.check_vm_state(ctx.live)
}

fn flush_batch<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    frames: &dyn PageFrames,
    dirty: &Bitmap,
) -> Result<(), SaveError> {
    if ctx.mem.batch.is_empty() {
        return Ok(());
    }
    let res = write_batch(ctx, frames, dirty);
    ctx.mem.batch.clear();
    if let Some(v) = ctx.out.take_auto_verdict() {
        log_auto_verdict(ctx, &v);
    }
    res
}

/// `auto` changed its mind: say why, at info level.
fn log_auto_verdict<H: Hypervisor, W: Write>(
    ctx: &Ctx<'_, H, W>,
    v: &super::compress_auto::AutoVerdict,
) {
    let mib = |r: Option<f64>| r.map_or("?".to_string(), |r| format!("{:.0}", r / 1048576.0));
    ctx.msg(
        Level::Info,
        &format!(
            "compression auto: pages move at {} MiB/s uncompressed, {} MiB/s with lz4 at {}x: {}",
            mib(v.plain),
            mib(v.packed),
            v.ratio.map_or("?".to_string(), |r| format!("{r:.2}")),
            if v.compress {
                "compressing"
            } else {
                "sending uncompressed"
            }
        ),
    );
}

/// One PAGE_DATA record for the queued pfns: types; the pages with data
/// found in the cached chunk mappings or mapped for this batch; zero pages
/// never sent before turned into XALLOC; holes left out; the record
/// written straight from the mappings.
fn write_batch<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
    guest: &dyn PageFrames,
    dirty: &Bitmap,
) -> Result<(), SaveError> {
    let hv = ctx.hv;
    let domid = ctx.domid;
    let p2m_size = ctx.mem.p2m_size;
    let mem = &mut ctx.mem;
    let n = mem.batch.len();
    // The guest type names the frame behind each pfn (HVM: the pfn).
    mem.types.clear();
    mem.types
        .extend(mem.batch.iter().map(|&pfn| guest.pfn_to_frame(pfn)));
    // A pfn with no frame (a PV guest's ballooned page) is tried again in
    // the final pass; Xen types the invalid frame XTAB meanwhile.
    for (&pfn, &frame) in mem.batch.iter().zip(&mem.types) {
        if frame == INVALID_FRAME {
            mem.deferred.set(pfn);
            mem.nr_deferred += 1;
        }
    }
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
            cached = dense && {
                let first = chunk * CHUNK_PAGES;
                let end = (first + CHUNK_PAGES).min(p2m_size);
                mem.chunk_frames.clear();
                mem.chunk_frames
                    .extend((first..end).map(|pfn| guest.pfn_to_frame(pfn)));
                ctx.maps.map_chunk(hv, domid, chunk, &mem.chunk_frames)?
            };
            if !cached {
                sparse_chunk = Some(chunk);
            }
        }
        if cached {
            mem.places.push((Src::Chunk(chunk), slot));
        } else {
            mem.places.push((Src::Batch, mem.frames.len()));
            mem.frames.push(guest.pfn_to_frame(pfn));
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
                "Mapping of pfn {pfn:#x} (frame {:#x}) failed {err}",
                guest.pfn_to_frame(pfn)
            )));
        };
        // A page never sent that reads as zero goes without data: the
        // receiver populates it and Xen hands out zeroed pages. Once a
        // pfn has carried data it always does, or a receiver would keep
        // its old contents. The verification pass sends everything. Only
        // ordinary pages: a page table's type must reach the receiver,
        // which pins and validates by it.
        if !ctx.verifying
            && t == u64::from(pfinfo::NOTAB)
            && !mem.sent.test(pfn)
            && map.is_zero(slot)
        {
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
        // A page the guest type rewrites goes through a copy, alone.
        let normalise = Some(page_type(t)).filter(|&pt| guest.needs_normalise(pt));
        match mem.runs.last_mut() {
            Some(r)
                if normalise.is_none()
                    && r.normalise.is_none()
                    && r.src == src
                    && r.first + r.n == slot =>
            {
                r.n += 1
            }
            _ => mem.runs.push(Run {
                src,
                first: slot,
                n: 1,
                copy: false,
                normalise,
                entry: mem.rec_pfns.len() - 1,
                deferred: false,
            }),
        }
    }
    if mem.rec_pfns.is_empty() {
        return Ok(());
    }

    // Pages of mappings that cannot lend their bytes, and pages the guest
    // type normalises, are copied out.
    // Decided per whole run: a mapping may lend single pages but not a
    // run that is not contiguous in memory.
    for r in mem.runs.iter_mut() {
        r.copy = r.normalise.is_some()
            || map_of(r.src).map_or(true, |m| m.pages(r.first, r.n).is_none());
    }
    let copied: usize = mem.runs.iter().filter(|r| r.copy).map(|r| r.n).sum();
    mem.data.resize(copied * PAGE_SIZE, 0);
    let mut off = 0;
    let paused = ctx.info.paused;
    let mut nr_deferred = 0;
    for r in mem.runs.iter_mut().filter(|r| r.copy) {
        // Every run's mapping was checked when its first page was placed.
        let Some(m) = map_of(r.src) else {
            return Err(SaveError::Protocol(format!(
                "the mapping of pages {}..{} is gone",
                r.first,
                r.first + r.n
            )));
        };
        for k in 0..r.n {
            let dst: &mut [u8; PAGE_SIZE] = (&mut mem.data[off..off + PAGE_SIZE])
                .try_into()
                .expect("slice of PAGE_SIZE");
            m.read_page(r.first + k, dst);
            off += PAGE_SIZE;
        }
        if let Some(t) = r.normalise {
            let dst: &mut [u8; PAGE_SIZE] = (&mut mem.data[off - PAGE_SIZE..off])
                .try_into()
                .expect("slice of PAGE_SIZE");
            let pfn = mem.rec_pfns[r.entry];
            if guest.normalise_page(pfn, t, dst, paused)? == Normalised::Deferred {
                r.deferred = true;
                nr_deferred += 1;
            }
        }
    }
    if nr_deferred > 0 {
        // Deferred pages leave the record (a receiver would ignore them as
        // the XTAB entries libxenguest writes) and go again in the final
        // pass. Their `sent` bit stays: a page table is never elided, and
        // a page sent with data before must keep getting data.
        let mut gone = vec![false; mem.rec_pfns.len()];
        for r in mem.runs.iter().filter(|r| r.deferred) {
            let pfn = mem.rec_pfns[r.entry];
            gone[r.entry] = true;
            mem.deferred.set(pfn);
            mem.nr_deferred += 1;
        }
        let mut k = 0;
        mem.rec_pfns.retain(|_| {
            k += 1;
            !gone[k - 1]
        });
        let mut k = 0;
        mem.rec_types.retain(|_| {
            k += 1;
            !gone[k - 1]
        });
        if mem.rec_pfns.is_empty() {
            return Ok(());
        }
    }
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(mem.runs.len());
    let mut off = 0;
    for r in &mem.runs {
        if r.deferred {
            off += PAGE_SIZE;
        } else if r.copy {
            slices.push(IoSlice::new(&mem.data[off..off + r.n * PAGE_SIZE]));
            off += r.n * PAGE_SIZE;
        } else {
            let Some(s) = map_of(r.src).and_then(|m| m.pages(r.first, r.n)) else {
                return Err(SaveError::Protocol(format!(
                    "a mapping stopped lending pages {}..{} it lent before",
                    r.first,
                    r.first + r.n
                )));
            };
            slices.push(s.io_slice());
        }
    }
    let nr_pages: usize = mem.runs.iter().filter(|r| !r.deferred).map(|r| r.n).sum();
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

/// The page type of a known `XEN_DOMCTL_PFINFO_*` value.
fn page_type(t: u64) -> PageType {
    u32::try_from(t)
        .ok()
        .and_then(PageType::from_domctl_value)
        .unwrap_or(PageType::XTab)
}
