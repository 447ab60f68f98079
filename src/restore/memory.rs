//! Restoring guest memory from PAGE_DATA ([`RestoreMemory`]): populate the
//! pfns not yet populated (2 MiB extents for whole aligned runs of 512), map
//! the ones with data read-write at the frames the guest type names
//! ([`PageHooks`]), read the pages from the stream straight into them (or,
//! in verify mode, compare; where the guest type localises a page, through
//! a bounce buffer). XALLOC entries are populated and get no data, so a
//! zero page elided by the sender reads as zero here as well.

use std::collections::HashMap;

use super::error::RestoreError;
use crate::hv::{DomId, Hypervisor, MappedPages, MappedPagesMut, MAX_BATCH, ORDER_2M, PAGE_SIZE};
use crate::log::Level;
use crate::stream::{PageType, PfnEntry};

/// The set of populated pfns, sparse: one 64-bit word per 64 pfns that
/// have any populated, so memory grows with the populated set (at most one
/// word and its map slot per populated pfn, however scattered), never with
/// the highest pfn a stream names.
#[derive(Debug, Default)]
pub(crate) struct Populated {
    words: HashMap<u64, u64>,
    count: u64,
}

impl Populated {
    pub(crate) fn contains(&self, pfn: u64) -> bool {
        self.words
            .get(&(pfn / 64))
            .is_some_and(|w| w & (1 << (pfn % 64)) != 0)
    }

    pub(crate) fn insert(&mut self, pfn: u64) {
        let w = self.words.entry(pfn / 64).or_insert(0);
        if *w & (1 << (pfn % 64)) == 0 {
            *w |= 1 << (pfn % 64);
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

/// A PAGE_DATA record being applied: its entries, and where its page bytes
/// come from: the stream itself ([`crate::stream::PageReader`], read
/// straight into guest memory), or a record held in memory (checkpoint
/// buffering, whole records). The entries are lent, not copied: a record
/// may have millions.
pub(crate) trait PageSource {
    /// The record's pfn/type entries.
    fn entries(&self) -> &[PfnEntry];

    /// Fill `dst` (whole pages) with the next pages of the record.
    fn read_into(&mut self, dst: &mut [u8]) -> Result<(), RestoreError>;
}

impl<R: std::io::Read> PageSource for crate::stream::PageReader<'_, R> {
    fn entries(&self) -> &[PfnEntry] {
        crate::stream::PageReader::entries(self)
    }

    fn read_into(&mut self, dst: &mut [u8]) -> Result<(), RestoreError> {
        Ok(self.read_pages(dst)?)
    }
}

/// A record held in memory: its entries, and its pages consumed in order.
pub(crate) struct SlicePages<'d> {
    entries: &'d [PfnEntry],
    data: &'d [u8],
    off: usize,
}

impl<'d> SlicePages<'d> {
    pub(crate) fn new(entries: &'d [PfnEntry], data: &'d [u8]) -> Self {
        SlicePages {
            entries,
            data,
            off: 0,
        }
    }
}

impl PageSource for SlicePages<'_> {
    fn entries(&self) -> &[PfnEntry] {
        self.entries
    }

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

/// An XCMIG_COMPRESSED_PAGE_DATA record: each page decompressed straight
/// into the destination (guest memory or the bounce buffer), never more
/// than a page at a time.
pub(crate) struct DecompressedPages<'d> {
    rec: crate::stream::CompressedPageData<'d>,
    decompressor: &'d mut crate::stream::PageDecompressor,
    /// The next data page and where its octets start.
    next: usize,
    off: usize,
}

impl<'d> DecompressedPages<'d> {
    pub(crate) fn new(
        rec: crate::stream::CompressedPageData<'d>,
        decompressor: &'d mut crate::stream::PageDecompressor,
    ) -> Self {
        DecompressedPages {
            rec,
            decompressor,
            next: 0,
            off: 0,
        }
    }
}

impl PageSource for DecompressedPages<'_> {
    fn entries(&self) -> &[PfnEntry] {
        self.rec.entries()
    }

    fn read_into(&mut self, dst: &mut [u8]) -> Result<(), RestoreError> {
        let fail = |msg: String| RestoreError::Record {
            what: "XCMIG_COMPRESSED_PAGE_DATA",
            msg,
        };
        for page in dst.chunks_mut(PAGE_SIZE) {
            if self.next >= self.rec.data_pages() {
                return Err(fail(format!(
                    "record holds {} data pages, entries need more",
                    self.rec.data_pages()
                )));
            }
            let n = usize::from(self.rec.size(self.next));
            let src = &self.rec.data()[self.off..self.off + n];
            self.decompressor
                .page(self.rec.compression(), self.next, src, page)
                .map_err(|k| fail(k.to_string()))?;
            self.next += 1;
            self.off += n;
        }
        Ok(())
    }
}

/// Frames per 2 MiB extent.
const EXTENT_2M: u64 = 1 << ORDER_2M;

/// Populate `pfns` (none populated yet, each once): whole aligned runs of
/// 512 consecutive pfns as 2 MiB extents where the guest type allows
/// them, the rest (and any extent Xen could not allocate whole) as 4 KiB
/// pages. No pfns, no call.
fn populate<H: Hypervisor>(
    hv: &H,
    domid: DomId,
    pfns: &[u64],
    extents: &mut Vec<u64>,
    small: &mut Vec<u64>,
    asked: &mut Vec<u64>,
    guest: &mut dyn PageHooks,
) -> Result<(), RestoreError> {
    if pfns.is_empty() {
        return Ok(());
    }
    extents.clear();
    small.clear();
    let mut i = 0;
    while i < pfns.len() {
        let p = pfns[i];
        let run = EXTENT_2M as usize;
        if guest.large_extents()
            && p % EXTENT_2M == 0
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
        asked.clear();
        asked.extend_from_slice(extents);
        let done = hv.populate_physmap_order(domid, extents, ORDER_2M)?;
        if let Some(k) = extents[..done].iter().position(|&f| f == u64::MAX) {
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: format!("populate physmap failed for 2 MiB extent {k} of the batch"),
            });
        }
        for (&pfn, &frame) in asked[..done].iter().zip(&extents[..done]) {
            for k in 0..EXTENT_2M {
                guest.populated(pfn + k, frame + k);
            }
        }
        for &base in &asked[done..] {
            small.extend(base..base + EXTENT_2M);
        }
    }
    if !small.is_empty() {
        asked.clear();
        asked.extend_from_slice(small);
        hv.populate_physmap(domid, small)?;
        if let Some(k) = small.iter().position(|&f| f == u64::MAX) {
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: format!("populate physmap failed for entry {k} of the batch"),
            });
        }
        for (&pfn, &frame) in asked.iter().zip(small.iter()) {
            guest.populated(pfn, frame);
        }
    }
    Ok(())
}

/// What the memory path asks of the guest type: where a pfn lives once
/// populated, and how a page's contents are made local (libxenguest's
/// `pfn_to_gfn`/`set_gfn` and `localise_page` restore ops).
pub(crate) trait PageHooks {
    /// Check that a PAGE_DATA entry's pfn is one the guest can have
    /// (libxenguest's `pfn_is_valid`), before anything of the record is
    /// applied.
    fn check_pfn(&self, pfn: u64) -> Result<(), RestoreError> {
        let _ = pfn;
        Ok(())
    }

    /// Whether whole aligned runs of 512 pfns may be populated as 2 MiB
    /// extents. A guest type whose frames come back one by one (PV: each
    /// populated pfn gets its own MFN, as libxenguest populates them)
    /// says no.
    fn large_extents(&self) -> bool {
        true
    }

    /// A PAGE_DATA entry of type `t` for `pfn` (populated if its type
    /// needs it), before its page is written: the type the guest type
    /// records (libxenguest's `set_page_type`).
    fn page_type(&mut self, pfn: u64, t: PageType) {
        let _ = (pfn, t);
    }

    /// Populating gave `pfn` the frame `frame` (the same number for HVM;
    /// an MFN the guest type records in its p2m for PV).
    fn populated(&mut self, pfn: u64, frame: u64) {
        let _ = (pfn, frame);
    }

    /// The frame to map for `pfn`, which is populated.
    fn pfn_to_frame(&self, pfn: u64) -> u64;

    /// Whether pages of type `t` must be rewritten before they enter the
    /// guest (PV page tables name pfns in the stream, frames in memory).
    fn needs_localise(&self, t: PageType) -> bool {
        let _ = t;
        false
    }

    /// The pfns that `page` (of type `t`, to be localised) refers to and
    /// that have no frame yet, appended to `out`: the memory path
    /// populates them before [`PageHooks::localise_page`] (libxenguest
    /// populates the frames a page table names before it localises it).
    /// A reference the guest cannot have is an error.
    fn unpopulated_references(
        &self,
        t: PageType,
        page: &[u8; PAGE_SIZE],
        out: &mut Vec<u64>,
    ) -> Result<(), RestoreError> {
        let _ = (t, page, out);
        Ok(())
    }

    /// Rewrite `page` (of type `t`, as read from the stream) for this
    /// host. Called only where [`PageHooks::needs_localise`] said so, once
    /// the pfns [`PageHooks::unpopulated_references`] named are populated.
    fn localise_page(
        &mut self,
        t: PageType,
        page: &mut [u8; PAGE_SIZE],
    ) -> Result<(), RestoreError> {
        let _ = (t, page);
        Ok(())
    }
}

/// The domain a restore writes into.
pub(crate) struct Target<'a, H> {
    pub(crate) hv: &'a H,
    pub(crate) domid: DomId,
}

/// Guest memory as the restore builds it: which pfns are populated, what
/// was written, and the scratch buffers of the page path.
#[derive(Debug, Default)]
pub(crate) struct RestoreMemory {
    populated: Populated,
    stats: MemoryStats,
    to_populate: Vec<u64>,
    extents: Vec<u64>,
    small: Vec<u64>,
    asked: Vec<u64>,
    frames: Vec<u64>,
    data_entries: Vec<PfnEntry>,
    /// The entries of the batch being applied (at most [`MAX_BATCH`]).
    batch: Vec<PfnEntry>,
    bounce: Vec<u8>,
    references: Vec<u64>,
}

impl RestoreMemory {
    /// Counters of the memory restored so far.
    pub(crate) fn stats(&self) -> MemoryStats {
        self.stats
    }

    /// Frames populated so far.
    pub(crate) fn populated_count(&self) -> u64 {
        self.populated.count()
    }

    /// One PAGE_DATA record's worth of pages: `pages` lends its entries
    /// and yields one page per entry whose type carries data, in order. Processed in chunks of at
    /// most [`MAX_BATCH`] entries: the pfns not populated yet are populated
    /// (2 MiB extents where whole aligned runs arrive), the ones with data
    /// mapped read-write at the frames `guest` names, and the page bytes
    /// read straight into the mapping, or through a bounce buffer where
    /// the guest localises them or `verify` asks for a comparison.
    pub(crate) fn apply_page_data<H: Hypervisor>(
        &mut self,
        target: &Target<'_, H>,
        guest: &mut dyn PageHooks,
        verify: bool,
        pages: &mut dyn PageSource,
    ) -> Result<(), RestoreError> {
        for e in pages.entries() {
            guest.check_pfn(e.pfn)?;
        }
        // Each batch's entries are copied out (at most MAX_BATCH of them)
        // because the source lends them only between reads.
        let mut batch = std::mem::take(&mut self.batch);
        let n = pages.entries().len();
        let mut res = Ok(());
        for start in (0..n).step_by(MAX_BATCH) {
            batch.clear();
            batch.extend_from_slice(&pages.entries()[start..n.min(start + MAX_BATCH)]);
            res = self.apply_chunk(target, guest, verify, &batch, pages);
            if res.is_err() {
                break;
            }
        }
        self.batch = batch;
        res
    }

    fn apply_chunk<H: Hypervisor>(
        &mut self,
        target: &Target<'_, H>,
        guest: &mut dyn PageHooks,
        verify: bool,
        chunk: &[PfnEntry],
        pages: &mut dyn PageSource,
    ) -> Result<(), RestoreError> {
        let (hv, domid) = (target.hv, target.domid);
        // Populate what this chunk needs and is not populated yet. Pfns are
        // marked first, as libxenguest does, so that one named twice in a
        // chunk is populated once; a failure ends the restore anyway.
        self.to_populate.clear();
        for e in chunk {
            if needs_populate(e.page_type) && !self.populated.contains(e.pfn) {
                self.populated.insert(e.pfn);
                self.to_populate.push(e.pfn);
            }
        }
        populate(
            hv,
            domid,
            &self.to_populate,
            &mut self.extents,
            &mut self.small,
            &mut self.asked,
            guest,
        )?;

        self.frames.clear();
        self.data_entries.clear();
        for e in chunk {
            guest.page_type(e.pfn, e.page_type);
            if e.page_type.has_data() {
                self.frames.push(guest.pfn_to_frame(e.pfn));
                self.data_entries.push(*e);
            }
        }
        if self.frames.is_empty() {
            return Ok(());
        }
        let mut map = hv.map_write(domid, &self.frames)?;
        if let Some(j) = (0..self.frames.len()).find(|&j| map.error(j) != 0) {
            let e = self.data_entries[j];
            return Err(RestoreError::Record {
                what: "PAGE_DATA",
                msg: format!(
                    "mapping pfn {:#x} (type {:#x}) failed with {}",
                    e.pfn,
                    e.page_type.bits(),
                    map.error(j)
                ),
            });
        }
        let n = self.frames.len();
        let localise = self
            .data_entries
            .iter()
            .any(|e| guest.needs_localise(e.page_type));
        if !verify && !localise {
            if let Some(dst) = map.pages_mut(0, n) {
                // Straight from the stream into guest memory.
                pages.read_into(dst)?;
                self.stats.pages_written += n as u64;
                return Ok(());
            }
        }
        self.bounce.resize(n * PAGE_SIZE, 0);
        pages.read_into(&mut self.bounce)?;
        let mut cmp = [0u8; PAGE_SIZE];
        for (j, page) in self.bounce.chunks_exact_mut(PAGE_SIZE).enumerate() {
            let page: &mut [u8; PAGE_SIZE] = page.try_into().map_err(|_| RestoreError::Record {
                what: "PAGE_DATA",
                msg: "page data not a multiple of 4096 bytes".into(),
            })?;
            let e = self.data_entries[j];
            if guest.needs_localise(e.page_type) {
                self.references.clear();
                guest.unpopulated_references(e.page_type, page, &mut self.references)?;
                self.to_populate.clear();
                for &pfn in &self.references {
                    if !self.populated.contains(pfn) {
                        self.populated.insert(pfn);
                        self.to_populate.push(pfn);
                    }
                }
                populate(
                    hv,
                    domid,
                    &self.to_populate,
                    &mut self.extents,
                    &mut self.small,
                    &mut self.asked,
                    guest,
                )?;
                guest.localise_page(e.page_type, page)?;
            }
            if verify {
                map.read_page(j, &mut cmp);
                self.stats.pages_verified += 1;
                if &cmp != page {
                    self.stats.verify_mismatches += 1;
                    crate::log::message(
                        Level::Error,
                        None,
                        &format!(
                            "verify pfn {:#x} failed (type {:#x})",
                            e.pfn,
                            e.page_type.bits()
                        ),
                    );
                }
            } else {
                map.write_page(j, page);
                self.stats.pages_written += 1;
            }
        }
        Ok(())
    }
}

/// Whether the restorer must populate a pfn of type `t`: data pages and
/// XALLOC (BROKEN and XTAB are left alone).
fn needs_populate(t: PageType) -> bool {
    t.has_data() || t == PageType::XAlloc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::save::testutil::TempHost;

    /// A guest type whose pfn `p` (of 32) lives at frame `31 - p`, and
    /// which inverts every byte of a page on its way in.
    #[derive(Default)]
    struct Reversed {
        populated: Vec<(u64, u64)>,
    }

    impl PageHooks for Reversed {
        fn populated(&mut self, pfn: u64, frame: u64) {
            self.populated.push((pfn, frame));
        }
        fn pfn_to_frame(&self, pfn: u64) -> u64 {
            31 - pfn
        }
        fn needs_localise(&self, t: PageType) -> bool {
            t == PageType::NoTab
        }
        fn localise_page(
            &mut self,
            t: PageType,
            page: &mut [u8; PAGE_SIZE],
        ) -> Result<(), RestoreError> {
            assert_eq!(t, PageType::NoTab);
            page.iter_mut().for_each(|b| *b = !*b);
            Ok(())
        }
    }

    #[test]
    fn pages_go_to_the_frames_the_guest_type_names_localised() {
        let h = TempHost::new("restore-seam");
        let id = h.create(xensim::GuestType::Hvm, 4 << 20, 0, true);
        let hv = h.hv();
        let target = Target { hv: &hv, domid: id };
        let entries: Vec<PfnEntry> = (0..32).map(|p| PfnEntry::new(p, PageType::NoTab)).collect();
        let data: Vec<u8> = (0..32u8)
            .flat_map(|p| std::iter::repeat(p).take(PAGE_SIZE))
            .collect();
        let mut guest = Reversed::default();
        let mut mem = RestoreMemory::default();
        mem.apply_page_data(
            &target,
            &mut guest,
            false,
            &mut SlicePages::new(&entries, &data),
        )
        .expect("page data");
        // xensim populates HVM gfns in place: each pfn got its own number.
        assert_eq!(guest.populated, (0..32).map(|p| (p, p)).collect::<Vec<_>>());
        let dom = h.domain(id);
        let mut page = [0u8; PAGE_SIZE];
        for p in 0..32u8 {
            dom.read_frame(31 - u64::from(p), &mut page)
                .expect("read frame");
            assert!(page.iter().all(|&b| b == !p), "pfn {p}");
        }
        assert_eq!(mem.stats().pages_written, 32);
        assert_eq!(mem.populated_count(), 32);
    }

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
        assert_eq!(p.words.len(), 2);
        // Scattered pfns cost one word each, not a chunk each.
        for k in 0..1000u64 {
            p.insert(k << 33);
        }
        assert_eq!(p.words.len(), 1001);
    }
}
