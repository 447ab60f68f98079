//! Restoring guest memory from PAGE_DATA: populate the frames not yet
//! populated (2 MiB extents for whole aligned runs of 512), map the ones
//! with data read-write, read the pages from the stream straight into them
//! (or, in verify mode, compare). XALLOC entries are populated and get no
//! data, so a zero page elided by the sender reads as zero here as well.

use std::collections::HashMap;

use super::RestoreError;
use crate::hv::{
    pfinfo, DomId, Hypervisor, MappedPages, MappedPagesMut, MAX_BATCH, ORDER_2M, PAGE_SIZE,
};

/// Pfns per chunk of the populated set.
const CHUNK_BITS: u64 = 4096;

/// The set of populated pfns, sparse: memory grows with the populated set,
/// not with the highest pfn a stream names.
#[derive(Debug, Default)]
pub(crate) struct Populated {
    chunks: HashMap<u64, Box<[u64; (CHUNK_BITS / 64) as usize]>>,
    count: u64,
}

impl Populated {
    pub(crate) fn contains(&self, pfn: u64) -> bool {
        let bit = pfn % CHUNK_BITS;
        self.chunks
            .get(&(pfn / CHUNK_BITS))
            .is_some_and(|c| c[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    pub(crate) fn insert(&mut self, pfn: u64) {
        let bit = pfn % CHUNK_BITS;
        let c = self
            .chunks
            .entry(pfn / CHUNK_BITS)
            .or_insert_with(|| Box::new([0; (CHUNK_BITS / 64) as usize]));
        let w = &mut c[(bit / 64) as usize];
        if *w & (1 << (bit % 64)) == 0 {
            *w |= 1 << (bit % 64);
            self.count += 1;
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

/// Counters of the memory restored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryStats {
    pub(crate) pages_written: u64,
    pub(crate) pages_verified: u64,
    pub(crate) verify_mismatches: u64,
}

/// Where the page bytes of a PAGE_DATA record come from: the stream itself
/// ([`crate::stream::PageReader`], read straight into guest memory), or a
/// record held in memory (checkpoint buffering, whole records).
pub(crate) trait PageSource {
    /// Fill `dst` (whole pages) with the next pages of the record.
    fn read_into(&mut self, dst: &mut [u8]) -> Result<(), RestoreError>;
}

impl<R: std::io::Read> PageSource for crate::stream::PageReader<'_, R> {
    fn read_into(&mut self, dst: &mut [u8]) -> Result<(), RestoreError> {
        Ok(self.read_pages(dst)?)
    }
}

/// The pages of a record held in memory, consumed in order.
pub(crate) struct SlicePages<'d> {
    data: &'d [u8],
    off: usize,
}

impl<'d> SlicePages<'d> {
    pub(crate) fn new(data: &'d [u8]) -> Self {
        SlicePages { data, off: 0 }
    }
}

impl PageSource for SlicePages<'_> {
    fn read_into(&mut self, dst: &mut [u8]) -> Result<(), RestoreError> {
        let Some(src) = self.data.get(self.off..self.off + dst.len()) else {
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: format!(
                    "record holds {} bytes of page data, entries need more",
                    self.data.len()
                ),
            });
        };
        dst.copy_from_slice(src);
        self.off += dst.len();
        Ok(())
    }
}

/// Frames per 2 MiB extent.
const EXTENT_2M: u64 = 1 << ORDER_2M;

/// Populate `pfns` (none populated yet, each once): whole aligned runs of
/// 512 consecutive pfns as 2 MiB extents, the rest (and any extent Xen
/// could not allocate whole) as 4 KiB pages.
fn populate<H: Hypervisor>(
    hv: &H,
    domid: DomId,
    pfns: &[u64],
    extents: &mut Vec<u64>,
    small: &mut Vec<u64>,
) -> Result<(), RestoreError> {
    extents.clear();
    small.clear();
    let mut i = 0;
    while i < pfns.len() {
        let p = pfns[i];
        let run = EXTENT_2M as usize;
        if p % EXTENT_2M == 0
            && pfns.len() - i >= run
            && pfns[i..i + run]
                .iter()
                .enumerate()
                .all(|(k, &q)| q == p + k as u64)
        {
            extents.push(p);
            i += run;
        } else {
            small.push(p);
            i += 1;
        }
    }
    if !extents.is_empty() {
        let asked: Vec<u64> = extents.clone();
        let done = hv.populate_physmap_order(domid, extents, ORDER_2M)?;
        if let Some(k) = extents[..done].iter().position(|&f| f == u64::MAX) {
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: format!("populate physmap failed for 2 MiB extent {k} of the batch"),
            });
        }
        for &base in &asked[done..] {
            small.extend(base..base + EXTENT_2M);
        }
    }
    if !small.is_empty() {
        hv.populate_physmap(domid, small)?;
        if let Some(k) = small.iter().position(|&f| f == u64::MAX) {
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: format!("populate physmap failed for entry {k} of the batch"),
            });
        }
    }
    Ok(())
}

/// One PAGE_DATA record's worth of pages: `entries` are (pfn, PFINFO
/// type) pairs, `pages` yields one page per entry whose type carries data,
/// in order. Processed in chunks of at most [`MAX_BATCH`] entries: the
/// frames not populated yet are populated (2 MiB extents where whole
/// aligned runs arrive), the ones with data mapped read-write, and the
/// page bytes read straight into the mapping (compared instead, in verify
/// mode).
#[allow(clippy::too_many_arguments)]
pub(crate) fn process_page_data<H: Hypervisor>(
    hv: &H,
    domid: DomId,
    populated: &mut Populated,
    stats: &mut MemoryStats,
    verify: bool,
    entries: &[(u64, u32)],
    pages: &mut dyn PageSource,
    log: &dyn crate::hv::Log,
) -> Result<(), RestoreError> {
    let mut to_populate = Vec::with_capacity(MAX_BATCH);
    let mut extents = Vec::new();
    let mut small = Vec::with_capacity(MAX_BATCH);
    let mut frames = Vec::with_capacity(MAX_BATCH);
    let mut chunk_pfns = Vec::with_capacity(MAX_BATCH);
    let mut bounce: Vec<u8> = Vec::new();
    for chunk in entries.chunks(MAX_BATCH) {
        // Populate what this chunk needs and is not populated yet. Pfns are
        // marked first, as libxenguest does, so that one named twice in a
        // chunk is populated once; a failure ends the restore anyway.
        to_populate.clear();
        for &(pfn, t) in chunk {
            if pfinfo::needs_populate(t) && !populated.contains(pfn) {
                populated.insert(pfn);
                to_populate.push(pfn);
            }
        }
        if !to_populate.is_empty() {
            populate(hv, domid, &to_populate, &mut extents, &mut small)?;
        }

        // HVM: the frame to map is the pfn itself.
        frames.clear();
        chunk_pfns.clear();
        for &(pfn, t) in chunk {
            if pfinfo::has_data(t) {
                frames.push(pfn);
                chunk_pfns.push((pfn, t));
            }
        }
        if frames.is_empty() {
            continue;
        }
        let mut map = hv.map_write(domid, &frames)?;
        if let Some(j) = (0..frames.len()).find(|&j| map.error(j) != 0) {
            let (pfn, t) = chunk_pfns[j];
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: format!(
                    "mapping pfn {pfn:#x} (type {:#x}) failed with {}",
                    t >> pfinfo::LTAB_SHIFT,
                    map.error(j)
                ),
            });
        }
        let n = frames.len();
        if !verify {
            if let Some(dst) = map.pages_mut(0, n) {
                // Straight from the stream into guest memory.
                pages.read_into(dst)?;
                stats.pages_written += n as u64;
                continue;
            }
        }
        bounce.resize(n * PAGE_SIZE, 0);
        pages.read_into(&mut bounce)?;
        let mut cmp = [0u8; PAGE_SIZE];
        for (j, page) in bounce.chunks_exact(PAGE_SIZE).enumerate() {
            let page: &[u8; PAGE_SIZE] = page.try_into().map_err(|_| RestoreError::Record {
                what: "PAGE_DATA",
                msg: "page data not a multiple of 4096 bytes".into(),
            })?;
            if verify {
                let (pfn, t) = chunk_pfns[j];
                map.read_page(j, &mut cmp);
                stats.pages_verified += 1;
                if &cmp != page {
                    stats.verify_mismatches += 1;
                    log.log(
                        crate::hv::Level::Error,
                        None,
                        &format!(
                            "verify pfn {pfn:#x} failed (type {:#x})",
                            t >> pfinfo::LTAB_SHIFT
                        ),
                    );
                }
            } else {
                map.write_page(j, page);
                stats.pages_written += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populated_set_is_sparse_and_counts_each_pfn_once() {
        let mut p = Populated::default();
        assert!(!p.contains(5));
        p.insert(5);
        p.insert(5);
        p.insert((1 << 51) + 3);
        assert!(p.contains(5) && p.contains((1 << 51) + 3));
        assert!(!p.contains(6) && !p.contains(1 << 51));
        assert_eq!(p.count(), 2);
        assert_eq!(p.chunks.len(), 2);
    }
}
