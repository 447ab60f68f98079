//! Restoring guest memory from PAGE_DATA: populate the frames not yet
//! populated, map the ones with data read-write, copy (or, in verify mode,
//! compare) the pages.

use std::collections::HashMap;

use super::RestoreError;
use crate::hv::{pfinfo, DomId, Hypervisor, MappedPages, MappedPagesMut, MAX_BATCH, PAGE_SIZE};

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

/// One PAGE_DATA record's worth of pages: `entries` are (pfn, PFINFO
/// type) pairs, `data` holds one page per entry whose type carries data,
/// in order. Processed in chunks of at most [`MAX_BATCH`] entries.
#[allow(clippy::too_many_arguments)]
pub(crate) fn process_page_data<H: Hypervisor>(
    hv: &H,
    domid: DomId,
    populated: &mut Populated,
    stats: &mut MemoryStats,
    verify: bool,
    entries: &[(u64, u32)],
    data: &[u8],
    log: &dyn crate::hv::Log,
) -> Result<(), RestoreError> {
    let mut data_off = 0usize;
    let mut to_populate = Vec::with_capacity(MAX_BATCH);
    let mut frames = Vec::with_capacity(MAX_BATCH);
    let mut chunk_pfns = Vec::with_capacity(MAX_BATCH);
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
            hv.populate_physmap(domid, &mut to_populate)?;
            if let Some(i) = to_populate.iter().position(|&f| f == u64::MAX) {
                return Err(RestoreError::Record {
                    what: "PAGE_DATA",
                    msg: format!("populate physmap failed for entry {i} of the batch"),
                });
            }
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
        let bytes = frames.len() * PAGE_SIZE;
        let Some(pages) = data.get(data_off..data_off + bytes) else {
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: format!(
                    "record holds {} bytes of page data, entries need more",
                    data.len()
                ),
            });
        };
        data_off += bytes;

        let mut map = hv.map_write(domid, &frames)?;
        let mut cmp = [0u8; PAGE_SIZE];
        for (j, page) in pages.chunks_exact(PAGE_SIZE).enumerate() {
            let err = map.error(j);
            let (pfn, t) = chunk_pfns[j];
            if err != 0 {
                return Err(RestoreError::Record {
                    what: "PAGE_DATA",
                    msg: format!(
                        "mapping pfn {pfn:#x} (type {:#x}) failed with {err}",
                        t >> pfinfo::LTAB_SHIFT
                    ),
                });
            }
            let page: &[u8; PAGE_SIZE] = page.try_into().map_err(|_| RestoreError::Record {
                what: "PAGE_DATA",
                msg: "page data not a multiple of 4096 bytes".into(),
            })?;
            if verify {
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
