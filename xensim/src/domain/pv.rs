//! PV memory: machine frames owned by the domain, populate with random MFNs
//! and M2P updates, the physmap (pfn -> MFN as populated), page-type bytes,
//! the shared_info xenheap page and the guest's address size.

use super::{w, Domain};
use crate::error::{err, Error, Result};
use crate::layout::mix;
use crate::machine::{Machine, WINDOW_FRAMES, XENHEAP_MFN0};
use crate::{GuestType, GFN_LIMIT, PAGE_SIZE};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::SeqCst;

/// Bytes of the physmap file: one u64 per pfn.
pub(crate) const PHYSMAP_BYTES: usize = (GFN_LIMIT * 8) as usize;

/// Page-type byte: the table level (1..=4), 0 for none.
pub(crate) const TYPE_LEVEL_MASK: u8 = 0x7;
/// Page-type byte: pinned.
pub(crate) const TYPE_PINNED: u8 = 0x80;

/// Offsets of `shared_info.arch` and the event-channel arrays by width.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShinfoLayout {
    /// Bytes of a guest `unsigned long`.
    pub word: usize,
    /// `evtchn_mask[]` (with its size: what a restore sets; the simulated
    /// restore of the tests uses them).
    #[cfg_attr(not(test), allow(dead_code))]
    pub evtchn_mask: usize,
    /// Bytes of each of the two arrays.
    #[cfg_attr(not(test), allow(dead_code))]
    pub evtchn_bytes: usize,
    /// `arch.max_pfn`; `pfn_to_mfn_frame_list_list`, `nmi_reason`, `p2m_cr3`,
    /// `p2m_vaddr`, `p2m_generation` follow, one word each.
    pub arch: usize,
    /// Offset of `evtchn_pending_sel` in a 64-byte `vcpu_info`.
    pub pending_sel: usize,
}

impl ShinfoLayout {
    /// The layout of `shared_info_x86_64` or `shared_info_x86_32`.
    pub(crate) fn for_bits(bits: u32) -> ShinfoLayout {
        if bits == 32 {
            ShinfoLayout {
                word: 4,
                evtchn_mask: 2176,
                evtchn_bytes: 128,
                arch: 2316,
                pending_sel: 4,
            }
        } else {
            ShinfoLayout {
                word: 8,
                evtchn_mask: 2560,
                evtchn_bytes: 512,
                arch: 3088,
                pending_sel: 8,
            }
        }
    }

    /// Offset of arch field `i` (0 max_pfn, 1 fll, 2 nmi_reason, 3 p2m_cr3,
    /// 4 p2m_vaddr, 5 p2m_generation).
    pub(crate) fn arch_field(&self, i: usize) -> usize {
        self.arch + i * self.word
    }
}

/// `shared_info.arch` field indices.
pub(crate) const ARCH_MAX_PFN: usize = 0;
pub(crate) const ARCH_FLL: usize = 1;
pub(crate) const ARCH_P2M_CR3: usize = 3;

/// Read a little-endian word of `width` bytes (4 or 8) at `off`.
pub(crate) fn get_word(b: &[u8], off: usize, width: usize) -> u64 {
    let mut a = [0u8; 8];
    a[..width].copy_from_slice(&b[off..off + width]);
    u64::from_le_bytes(a)
}

/// Write a little-endian word of `width` bytes (4 or 8) at `off`.
pub(crate) fn put_word(b: &mut [u8], off: usize, width: usize, v: u64) {
    b[off..off + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

impl Domain {
    /// True for PV domains.
    pub fn is_pv(&self) -> bool {
        self.guest_type() == GuestType::Pv
    }

    pub(crate) fn machine(&self) -> &Machine {
        &self.i.machine
    }

    fn window(&self) -> u64 {
        self.i.conf.frame_base / WINDOW_FRAMES
    }

    /// Index in the domain's window of an MFN it owns.
    pub(crate) fn frame_index(&self, mfn: u64) -> Option<u64> {
        let idx = mfn.checked_sub(self.i.conf.frame_base)?;
        if idx >= WINDOW_FRAMES {
            return None;
        }
        let word = self.i.frames.words()[(idx / 64) as usize].load(SeqCst);
        (word & (1 << (idx % 64)) != 0).then_some(idx)
    }

    /// Whether the PV domain owns machine frame `mfn` (a RAM page populate
    /// gave it; not its shared_info page).
    pub fn owns_frame(&self, mfn: u64) -> bool {
        self.is_pv() && self.frame_index(mfn).is_some()
    }

    /// PV: the MFN populate last gave `pfn`.
    pub fn pfn_to_mfn(&self, pfn: u64) -> Option<u64> {
        (self.is_pv() && self.is_populated(pfn))
            .then(|| self.i.physmap.words()[pfn as usize].load(SeqCst))
    }

    /// PV: the pfn of an owned MFN, from the M2P.
    pub fn mfn_to_pfn(&self, mfn: u64) -> Option<u64> {
        self.frame_index(mfn)?;
        let pfn = self.machine().m2p(mfn);
        (pfn < GFN_LIMIT).then_some(pfn)
    }

    /// The shared_info MFN (PV), else `u64::MAX`.
    pub(crate) fn shared_info_frame(&self) -> u64 {
        if self.is_pv() {
            XENHEAP_MFN0 + self.window()
        } else {
            u64::MAX
        }
    }

    /// Highest pfn ever populated plus one (PV), for scans.
    pub(crate) fn pfn_end(&self) -> u64 {
        self.ctl(w::PFN_END).load(SeqCst)
    }

    /// PV populate of one pfn: a fresh zero frame at a random free index of
    /// the window's span, `m2p[mfn] = pfn`, physmap updated. A pfn that had a
    /// page gets a new one; the old frame stays the domain's (and counted),
    /// with its M2P entry unchanged, as Xen's PV physmap does.
    pub(crate) fn pv_populate_one(&self, pfn: u64) -> Result<u64> {
        let span = self.machine().span(self.window());
        if span == 0 {
            return err(libc::ENOMEM, "domain has no machine frames");
        }
        let words = self.i.frames.words();
        let mut idx;
        loop {
            let n = self.ctl(w::ALLOC_COUNT).fetch_add(1, SeqCst);
            idx = mix(u64::from(self.id()) ^ self.i.conf.frame_base, n, 50) % span;
            let bit = 1u64 << (idx % 64);
            if words[(idx / 64) as usize].fetch_or(bit, SeqCst) & bit == 0 {
                break;
            }
        }
        let mfn = self.i.conf.frame_base + idx;
        self.i.types.bytes()[idx as usize].store(0, SeqCst);
        self.machine().set_m2p(mfn, pfn);
        self.i.physmap.words()[pfn as usize].store(mfn, SeqCst);
        let bit = 1u64 << (pfn % 64);
        self.populated_words()[(pfn / 64) as usize].fetch_or(bit, SeqCst);
        self.ctl(w::TOT_PAGES).fetch_add(1, SeqCst);
        self.ctl(w::PFN_END).fetch_max(pfn + 1, SeqCst);
        Ok(mfn)
    }

    /// The page-type byte of an owned frame (0 for others).
    pub(crate) fn frame_type(&self, mfn: u64) -> u8 {
        self.frame_index(mfn)
            .map_or(0, |i| self.i.types.bytes()[i as usize].load(SeqCst))
    }

    pub(crate) fn set_frame_type(&self, mfn: u64, t: u8) {
        if let Some(i) = self.frame_index(mfn) {
            self.i.types.bytes()[i as usize].store(t, SeqCst);
        }
    }

    /// Where a frame the toolstack names lives: guest RAM in `mem` or the
    /// shared_info page in its own file. None for frames the domain can't
    /// map (holes, other domains' frames).
    pub(crate) fn frame_source(&self, frame: u64) -> Option<(&File, u64)> {
        if !self.is_pv() {
            return self.frame_offset(frame).map(|o| (&self.i.mem, o));
        }
        if frame == self.shared_info_frame() {
            return Some((&self.i.shinfo, 0));
        }
        self.frame_index(frame)
            .map(|i| (&self.i.mem, i * PAGE_SIZE))
    }

    /// The guest width in bits: 64 or 32 for PV, 64 for HVM/PVH.
    pub fn address_size(&self) -> u32 {
        match self.ctl(w::ADDRESS_SIZE).load(SeqCst) {
            32 if self.is_pv() => 32,
            _ => 64,
        }
    }

    /// `XEN_DOMCTL_set_address_size`, as Xen: HVM/PVH EOPNOTSUPP; the
    /// current width succeeds unchanged; 64 -> 32 is `switch_compat`, EACCES
    /// once the domain has pages; anything else (32 -> 64, other sizes) EINVAL.
    pub fn set_address_size(&self, bits: u32) -> Result<()> {
        self.require_alive()?;
        if !self.is_pv() {
            return err(libc::EOPNOTSUPP, "address size of a non-PV domain");
        }
        if bits == self.address_size() {
            return Ok(());
        }
        if bits != 32 {
            return err(libc::EINVAL, format!("address size {bits}"));
        }
        if self.ctl(w::TOT_PAGES).load(SeqCst) != 0 {
            return err(
                libc::EACCES,
                "address size can only change while the domain has no pages",
            );
        }
        self.ctl(w::ADDRESS_SIZE).store(u64::from(bits), SeqCst);
        Ok(())
    }

    /// The shared_info page (PV).
    pub(crate) fn read_shinfo(&self) -> Result<Vec<u8>> {
        let mut b = vec![0u8; PAGE_SIZE as usize];
        self.i
            .shinfo
            .read_exact_at(&mut b, 0)
            .map_err(|e| Error::io("reading shared_info", e))?;
        Ok(b)
    }

    pub(crate) fn write_shinfo(&self, b: &[u8]) -> Result<()> {
        self.i
            .shinfo
            .write_all_at(&b[..PAGE_SIZE as usize], 0)
            .map_err(|e| Error::io("writing shared_info", e))
    }

    /// The shared_info layout of the current width.
    pub(crate) fn shinfo_layout(&self) -> ShinfoLayout {
        ShinfoLayout::for_bits(self.address_size())
    }
}
