//! Guest mappings kept across batches (and, where the backend allows,
//! across passes) instead of one map/unmap per 1024-page batch.
//!
//! The p2m is cut into aligned chunks of [`CHUNK_PAGES`] frames. A chunk is
//! mapped whole, once, when a batch first needs one of its pages and the
//! pass will need many of them (or its mapping can be kept for the next
//! passes); batches that need only a few pages of a chunk map just those
//! pages for the batch, as libxenguest does. Mapped chunks stay in the
//! cache, up to the backend's budget ([`MappingHints::max_cached_pages`]),
//! least recently used first out, and are all unmapped when the cache is
//! dropped or cleared, so every exit path of a save unmaps them.
//!
//! Whether a mapping can outlive a pass depends on the backend
//! ([`MappingHints::follows_p2m`]): on Xen a foreign mapping holds the
//! page it was made of, so once the guest has run and may have changed its
//! p2m (ballooning), a mapping made before may show a page the guest no
//! longer has there. The engine therefore drops every mapping at the start
//! of each pass unless the backend's mappings follow the p2m.

use std::collections::HashMap;

use crate::hv::{DomId, HvResult, Hypervisor, MappedPages, MappingHints};

/// Frames per chunk: 64 MiB of guest memory.
pub(crate) const CHUNK_PAGES: u64 = 16 * 1024;

/// A chunk is mapped whole when at least this share (1/n) of its frames is
/// to be sent in the current pass.
const DENSE_SHARE: u64 = 4;

struct Entry<M> {
    map: M,
    last_use: u64,
}

/// The chunk mappings of one save.
pub(crate) struct MapCache<'a, H: Hypervisor + 'a> {
    entries: HashMap<u64, Entry<H::ReadMapping<'a>>>,
    hints: MappingHints,
    max_chunks: usize,
    tick: u64,
    /// Map calls made for whole chunks.
    pub(crate) chunk_maps: u64,
}

impl<'a, H: Hypervisor + 'a> MapCache<'a, H> {
    /// An empty cache for a backend with `hints`.
    pub(crate) fn new(hints: MappingHints) -> Self {
        MapCache {
            entries: HashMap::new(),
            hints,
            max_chunks: (hints.max_cached_pages as u64 / CHUNK_PAGES) as usize,
            tick: 0,
            chunk_maps: 0,
        }
    }

    /// Start of a pass over the dirty set: forget mappings that the guest
    /// may have invalidated since they were made (all of them when the
    /// guest type says the frames behind its pfns may have moved, as a PV
    /// guest's p2m can: a mapping of machine frames follows no p2m).
    pub(crate) fn begin_pass(&mut self, frames_moved: bool) {
        if frames_moved || !self.hints.follows_p2m {
            self.clear();
        }
    }

    /// Unmap everything.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Start of a batch: chunks used from now on are pinned until the next
    /// call (never evicted while the batch borrows them).
    pub(crate) fn begin_batch(&mut self) {
        self.tick += 1;
    }

    /// The mapping of chunk `chunk`, if cached (marks it used).
    pub(crate) fn touch(&mut self, chunk: u64) -> bool {
        match self.entries.get_mut(&chunk) {
            Some(e) => {
                e.last_use = self.tick;
                true
            }
            None => false,
        }
    }

    /// Whether a chunk that is not cached should be mapped whole, given how
    /// many of its frames the pass still has to send.
    pub(crate) fn worth_mapping(&self, dirty_in_chunk: u64) -> bool {
        self.max_chunks > 0
            && (self.hints.follows_p2m || dirty_in_chunk * DENSE_SHARE >= CHUNK_PAGES)
    }

    /// Map chunk `chunk` whole (`frames`: the frames behind its pfns
    /// `chunk * CHUNK_PAGES ..` below the p2m size, in order), evicting the least recently used chunk not used by the
    /// current batch if the budget is full. Returns false, mapping nothing,
    /// when every cached chunk is in use by this batch.
    pub(crate) fn map_chunk(
        &mut self,
        hv: &'a H,
        domid: DomId,
        chunk: u64,
        frames: &[u64],
    ) -> HvResult<bool> {
        self.entries.remove(&chunk);
        if self.entries.len() >= self.max_chunks {
            let victim = self
                .entries
                .iter()
                .filter(|(_, e)| e.last_use != self.tick)
                .min_by_key(|(_, e)| e.last_use)
                .map(|(&c, _)| c);
            match victim {
                Some(c) => {
                    self.entries.remove(&c);
                }
                None => return Ok(false),
            }
        }
        let map = hv.map_read(domid, frames)?;
        self.chunk_maps += 1;
        self.entries.insert(
            chunk,
            Entry {
                map,
                last_use: self.tick,
            },
        );
        Ok(true)
    }

    /// Drop chunk `chunk`'s mapping (a frame it needs was not mapped).
    pub(crate) fn forget(&mut self, chunk: u64) {
        self.entries.remove(&chunk);
    }

    /// The mapping of a cached chunk; slot `pfn % CHUNK_PAGES` is `pfn`.
    pub(crate) fn get(&self, chunk: u64) -> Option<&H::ReadMapping<'a>> {
        self.entries.get(&chunk).map(|e| &e.map)
    }

    /// Whether slot `slot` of cached chunk `chunk` is mapped.
    pub(crate) fn slot_ok(&self, chunk: u64, slot: usize) -> bool {
        self.get(chunk)
            .is_some_and(|m| slot < m.count() && m.error(slot) == 0)
    }
}
