//! Guest memory: the populated bitmap, populate and page types, frame
//! access and foreign mappings of the `mem` file, and the grant frame.

use super::pv::{get_word, ARCH_MAX_PFN, TYPE_LEVEL_MASK, TYPE_PINNED};
use super::{w, Domain};
use crate::error::{err, Error, Result};
use crate::foreign::{ForeignMapping, Prot};
use crate::shm::punch_hole;
use crate::{
    GFN_LIMIT, INVALID_FRAME, MAX_PFINFO_BATCH, PAGE_SIZE, PFINFO_LPINTAB, PFINFO_NOTAB,
    PFINFO_XTAB,
};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

impl Domain {
    /// `XENMEM_maximum_gpfn`: the highest gfn ever populated (0 if none).
    /// PV: `(shared_info.arch.max_pfn ?: 1) - 1`, as Xen answers for PV.
    pub fn max_gpfn(&self) -> u64 {
        if self.is_pv() {
            let l = self.shinfo_layout();
            let max_pfn = self
                .read_shinfo()
                .map(|b| get_word(&b, l.arch_field(ARCH_MAX_PFN), l.word))
                .unwrap_or(0);
            return max_pfn.max(1) - 1;
        }
        self.ctl(w::MAX_GPFN).load(SeqCst)
    }

    /// The highest pfn (gfn) that ever had a page, for scans of the
    /// pfn-indexed bitmaps (0 if none).
    pub(crate) fn highest_pfn(&self) -> u64 {
        if self.is_pv() {
            self.pfn_end().saturating_sub(1)
        } else {
            self.ctl(w::MAX_GPFN).load(SeqCst)
        }
    }

    /// Whether `gfn` currently has a page.
    pub fn is_populated(&self, gfn: u64) -> bool {
        gfn < GFN_LIMIT
            && self.i.populated.words()[(gfn / 64) as usize].load(SeqCst) & (1 << (gfn % 64)) != 0
    }

    pub(crate) fn populated_words(&self) -> &[AtomicU64] {
        self.i.populated.words()
    }

    pub(crate) fn mem_file(&self) -> &File {
        &self.i.mem
    }

    /// Mark `gfn` populated without touching contents (domain build).
    pub(crate) fn set_populated(&self, gfn: u64) -> bool {
        let bit = 1u64 << (gfn % 64);
        let old = self.i.populated.words()[(gfn / 64) as usize].fetch_or(bit, SeqCst);
        self.ctl(w::TOT_PAGES).fetch_add(1, SeqCst);
        self.ctl(w::MAX_GPFN).fetch_max(gfn, SeqCst);
        old & bit != 0
    }

    /// `getpageframeinfo3`: rewrite each frame with its `XEN_DOMCTL_PFINFO_*`
    /// type in place. HVM/PVH frames are gfns: NOTAB for populated RAM
    /// (special pages included), XTAB for holes, out-of-range and
    /// `INVALID_FRAME`. PV frames are MFNs: L1TAB..L4TAB (with LPINTAB when
    /// pinned) or NOTAB for frames the domain owns (its shared_info page is
    /// NOTAB), XTAB for every other frame. More than [`MAX_PFINFO_BATCH`]
    /// entries: E2BIG.
    pub fn page_types(&self, frames: &mut [u64]) -> Result<()> {
        self.require_alive()?;
        if frames.len() > MAX_PFINFO_BATCH {
            return err(
                libc::E2BIG,
                format!("{} frames in one type query (max 1024)", frames.len()),
            );
        }
        if self.is_pv() {
            for f in frames.iter_mut() {
                *f = if self.frame_index(*f).is_some() {
                    let t = self.frame_type(*f);
                    let mut v = u64::from(t & TYPE_LEVEL_MASK) << 28;
                    if t & TYPE_PINNED != 0 {
                        v |= PFINFO_LPINTAB;
                    }
                    v
                } else if *f == self.shared_info_frame() {
                    PFINFO_NOTAB
                } else {
                    PFINFO_XTAB
                };
            }
            return Ok(());
        }
        for f in frames.iter_mut() {
            *f = if *f != INVALID_FRAME && self.is_populated(*f) {
                PFINFO_NOTAB
            } else {
                PFINFO_XTAB
            };
        }
        Ok(())
    }

    /// `XENMEM_populate_physmap` (order 0): give each gfn a fresh, zeroed
    /// page and return the frames (the gfns themselves for HVM/PVH; for PV
    /// random MFNs of the domain's window, with `m2p[mfn] = pfn`). A gfn
    /// that already has a page gets a new zero page; as in Xen the old page
    /// stays allocated to the domain (counted in tot_pages) until it dies.
    /// Stops at the first failure (ENOMEM over `max_pages`, EINVAL for a gfn
    /// outside the address space); earlier gfns stay populated.
    pub fn populate(&self, gfns: &[u64]) -> Result<Vec<u64>> {
        let (done, e) = self.populate_partial(gfns);
        match e {
            None => Ok(done),
            Some(e) => Err(e),
        }
    }

    /// Like [`Domain::populate`], returning what was done before a failure
    /// (what `XENMEM_populate_physmap` reports as its extent count).
    pub fn populate_partial(&self, gfns: &[u64]) -> (Vec<u64>, Option<Error>) {
        let mut done = Vec::with_capacity(gfns.len());
        if let Err(e) = self.require_alive() {
            return (done, Some(e));
        }
        for &g in gfns {
            if g >= GFN_LIMIT {
                let e = Error::new(
                    libc::EINVAL,
                    format!("gfn {g:#x} beyond the guest address space"),
                );
                return (done, Some(e));
            }
            if self.ctl(w::TOT_PAGES).load(SeqCst) >= self.i.conf.max_pages {
                let e = Error::new(
                    libc::ENOMEM,
                    format!(
                        "populate: domain {} at max_pages {}",
                        self.i.id, self.i.conf.max_pages
                    ),
                );
                return (done, Some(e));
            }
            if self.is_pv() {
                match self.pv_populate_one(g) {
                    Ok(mfn) => done.push(mfn),
                    Err(e) => return (done, Some(e)),
                }
                continue;
            }
            if self.set_populated(g) {
                if let Err(e) = punch_hole(&self.i.mem, g * PAGE_SIZE, PAGE_SIZE) {
                    return (done, Some(e));
                }
            }
            done.push(g);
        }
        (done, None)
    }

    /// The file that holds guest memory; see [`Domain::frame_offset`].
    pub fn memory_file(&self) -> &File {
        &self.i.mem
    }

    /// Offset in [`Domain::memory_file`] of a populated frame (the value a
    /// toolstack maps: a gfn for HVM/PVH, an owned MFN for PV), or None for
    /// holes and invalid frames. Map it `MAP_SHARED` to access the page. (A
    /// PV shared_info page is not in that file: use [`Domain::map_frames`].)
    pub fn frame_offset(&self, frame: u64) -> Option<u64> {
        if self.is_pv() {
            return self.frame_index(frame).map(|i| i * PAGE_SIZE);
        }
        (frame != INVALID_FRAME && self.is_populated(frame)).then(|| frame * PAGE_SIZE)
    }

    /// Foreign-map `frames` (one `mmap` per contiguous run). Unpopulated or
    /// invalid frames leave their slot unmapped with error `-EINVAL`.
    pub fn map_frames(&self, frames: &[u64], prot: Prot) -> Result<ForeignMapping> {
        self.require_alive()?;
        let srcs: Vec<_> = frames.iter().map(|&f| self.frame_source(f)).collect();
        ForeignMapping::map_sources(&srcs, prot, libc::EINVAL)
    }

    /// Read a populated frame (toolstack access; no log-dirty effect).
    pub fn read_frame(&self, frame: u64, out: &mut [u8]) -> Result<()> {
        let (file, off) = self
            .frame_source(frame)
            .ok_or_else(|| Error::new(libc::EINVAL, format!("frame {frame:#x} not populated")))?;
        let n = out.len().min(PAGE_SIZE as usize);
        file.read_exact_at(&mut out[..n], off)
            .map_err(|e| Error::io("reading guest memory", e))
    }

    /// Read `out.len()` bytes at `offset` of a frame (no log-dirty effect).
    pub(crate) fn read_frame_at(&self, frame: u64, offset: u64, out: &mut [u8]) -> Result<()> {
        let (file, off) = self
            .frame_source(frame)
            .ok_or_else(|| Error::new(libc::EINVAL, format!("frame {frame:#x} not populated")))?;
        file.read_exact_at(out, off + offset)
            .map_err(|e| Error::io("reading guest memory", e))
    }

    /// Write a populated frame (toolstack access: does NOT mark it dirty,
    /// as dom0's foreign writes don't go through the guest's log-dirty).
    pub fn write_frame(&self, frame: u64, data: &[u8]) -> Result<()> {
        let (file, off) = self
            .frame_source(frame)
            .ok_or_else(|| Error::new(libc::EINVAL, format!("frame {frame:#x} not populated")))?;
        let n = data.len().min(PAGE_SIZE as usize);
        file.write_all_at(&data[..n], off)
            .map_err(|e| Error::io("writing guest memory", e))
    }

    /// Zero `count` frames from `first` (`xc_clear_domain_pages`); EINVAL,
    /// with nothing changed, if any of them is not populated.
    pub fn clear_frames(&self, first: u64, count: u64) -> Result<()> {
        self.require_alive()?;
        let end = first
            .checked_add(count)
            .ok_or_else(|| Error::new(libc::EINVAL, "frame range overflows"))?;
        if self.is_pv() {
            if let Some(f) = (first..end).find(|&f| self.frame_index(f).is_none()) {
                return err(libc::EINVAL, format!("frame {f:#x} not the domain's"));
            }
            for f in first..end {
                if let Some(i) = self.frame_index(f) {
                    punch_hole(&self.i.mem, i * PAGE_SIZE, PAGE_SIZE)?;
                }
            }
            return Ok(());
        }
        if let Some(f) = (first..end).find(|&f| !self.is_populated(f)) {
            return err(libc::EINVAL, format!("frame {f:#x} not populated"));
        }
        punch_hole(&self.i.mem, first * PAGE_SIZE, count * PAGE_SIZE)
    }

    /// Grant table frame 0 (shared v1 entries): the file and the offset of
    /// the page in it. Map it `MAP_SHARED` (`XENMEM_acquire_resource`).
    pub fn grant_frame(&self) -> (&File, u64) {
        (&self.i.grant, 0)
    }

    /// Map grant frame 0 (`xenforeignmemory_map_resource`, grant table,
    /// shared, frame 0, one frame).
    pub fn map_grant_frame(&self, prot: Prot) -> Result<ForeignMapping> {
        self.require_alive()?;
        ForeignMapping::map(&self.i.grant, &[Some(0)], prot, libc::EINVAL)
    }

    /// Grant entries v1 of frame 0 as `(flags, domid, frame)`.
    pub fn grant_entries(&self) -> Result<Vec<(u16, u16, u32)>> {
        let mut b = vec![0u8; PAGE_SIZE as usize];
        self.i
            .grant
            .read_exact_at(&mut b, 0)
            .map_err(|e| Error::io("reading grant frame", e))?;
        Ok(b.chunks_exact(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect())
    }
}
