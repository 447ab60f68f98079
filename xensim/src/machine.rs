//! The host's machine frame space, as PV guests see it.
//!
//! Machine frames (MFNs) are host-wide. Each domain owns a window
//! `[w << 24, (w + 1) << 24)`; window 0 belongs to Xen. A PV domain allocates
//! its pages at random inside the first `span` frames of its window (a power
//! of two, at least four times its `max_pages`, so allocation stays cheap).
//!
//! The M2P (`xen_pfn_t` per MFN) and the compat M2P (`u32` per MFN, for
//! 32-bit guests) are sparse host files mapped shared by every process, so a
//! toolstack mapping them through `DOMID_XEN` sees later updates. Entries of a
//! window's span are reset to INVALID when the span is handed out and when its
//! domain dies; [`Machine::m2p`] answers INVALID for frames outside any span.
//! Xen's own frames (window 0) are laid out as follows: the M2P's pages from
//! [`M2P_MFN0`], the compat M2P's pages from [`COMPAT_M2P_MFN0`], one
//! shared_info page per window from [`XENHEAP_MFN0`], and the L3 tables Xen
//! installs in a 64-bit guest's L4 from [`XEN_L3_MFN0`].

use crate::error::Result;
use crate::shm::SharedMap;
use crate::{GFN_LIMIT, PAGE_SIZE};
use std::fs::File;
use std::sync::atomic::Ordering::SeqCst;

/// Most frame windows a host hands out (domain windows are 1..MAX_WINDOWS),
/// so every MFN fits the 32-bit frame fields of a 32-bit PV guest.
pub(crate) const MAX_WINDOWS: u64 = 256;
/// Frames per window.
pub(crate) const WINDOW_FRAMES: u64 = GFN_LIMIT;
/// Bytes of the M2P file (one u64 per MFN of every window).
pub(crate) const M2P_BYTES: u64 = MAX_WINDOWS * WINDOW_FRAMES * 8;
/// Bytes of the compat M2P file (one u32 per MFN).
pub(crate) const COMPAT_M2P_BYTES: u64 = MAX_WINDOWS * WINDOW_FRAMES * 4;
/// First Xen frame holding the M2P (page k of the M2P file is `M2P_MFN0 + k`).
pub const M2P_MFN0: u64 = 0x1000;
/// First Xen frame holding the compat M2P.
pub const COMPAT_M2P_MFN0: u64 = M2P_MFN0 + M2P_BYTES / PAGE_SIZE;
/// Xen frame of window `w`'s shared_info page: `XENHEAP_MFN0 + w`. Below
/// the M2P and below 4 GiB, as Xen allocates shared_info (`MEMF_bits(32)`)
/// so that a 32-bit guest's start_info can hold its address.
pub const XENHEAP_MFN0: u64 = 0x100;
/// Xen's L3 table for L4 slot `s` of every 64-bit guest: `XEN_L3_MFN0 + s`.
pub const XEN_L3_MFN0: u64 = 0xe0_0000;
/// One M2P chunk (`XENMEM_machphys_mfn_list` extent) is 2 MiB.
pub const M2P_CHUNK_BYTES: u64 = 2 << 20;
/// `INVALID_M2P_ENTRY`.
pub const INVALID_M2P_ENTRY: u64 = u64::MAX;
/// Host control words holding each window's span (index = window).
pub(crate) const H_SPAN0: usize = 256;

/// The shared M2P files and the window spans.
pub(crate) struct Machine {
    ctl: SharedMap,
    m2p: SharedMap,
    compat: SharedMap,
}

impl Machine {
    /// Map the host's control file (for the spans) and the two M2P files.
    pub(crate) fn open(ctl: &File, m2p: &File, compat: &File) -> Result<Machine> {
        Ok(Machine {
            ctl: SharedMap::map(ctl, 4096, "host.ctl")?,
            m2p: SharedMap::map(m2p, M2P_BYTES as usize, "m2p")?,
            compat: SharedMap::map(compat, COMPAT_M2P_BYTES as usize, "compat m2p")?,
        })
    }

    /// Frames of window `w` that can be allocated (0 for Xen's window, HVM
    /// domains and windows not handed out).
    pub(crate) fn span(&self, w: u64) -> u64 {
        if w == 0 || w >= MAX_WINDOWS {
            return 0;
        }
        self.ctl.words()[H_SPAN0 + w as usize].load(SeqCst)
    }

    /// Give window `w` a span of `span` frames (0 to retire it), with every
    /// M2P entry of the old and the new span INVALID.
    pub(crate) fn set_span(&self, w: u64, span: u64) {
        if w == 0 || w >= MAX_WINDOWS {
            return;
        }
        let old = self.span(w);
        let base = w * WINDOW_FRAMES;
        let m2p = self.m2p.words();
        let compat = self.compat.words32();
        for mfn in base..base + old.max(span) {
            m2p[mfn as usize].store(INVALID_M2P_ENTRY, SeqCst);
            compat[mfn as usize].store(u32::MAX, SeqCst);
        }
        self.ctl.words()[H_SPAN0 + w as usize].store(span, SeqCst);
    }

    /// Whether `mfn` lies in the allocatable span of a domain window.
    pub(crate) fn in_span(&self, mfn: u64) -> bool {
        let w = mfn / WINDOW_FRAMES;
        w < MAX_WINDOWS && mfn % WINDOW_FRAMES < self.span(w)
    }

    /// The M2P entry of `mfn`: the pfn, or INVALID for frames nobody owns.
    pub(crate) fn m2p(&self, mfn: u64) -> u64 {
        if !self.in_span(mfn) {
            return INVALID_M2P_ENTRY;
        }
        self.m2p.words()[mfn as usize].load(SeqCst)
    }

    /// Set `m2p[mfn] = pfn` in both tables (the compat entry truncated, as
    /// Xen's is, INVALID staying INVALID).
    pub(crate) fn set_m2p(&self, mfn: u64, pfn: u64) {
        if !self.in_span(mfn) {
            return;
        }
        self.m2p.words()[mfn as usize].store(pfn, SeqCst);
        let c = if pfn == INVALID_M2P_ENTRY {
            u32::MAX
        } else {
            pfn as u32
        };
        self.compat.words32()[mfn as usize].store(c, SeqCst);
    }

    /// `XENMEM_maximum_ram_page`: the highest MFN of any handed-out span (the
    /// end of Xen's window when there is none).
    pub(crate) fn max_mfn(&self) -> u64 {
        (1..MAX_WINDOWS)
            .filter_map(|w| {
                let s = self.span(w);
                (s > 0).then(|| w * WINDOW_FRAMES + s - 1)
            })
            .max()
            .unwrap_or(WINDOW_FRAMES - 1)
    }

    /// The M2P and compat M2P files as mappable files with their first Xen
    /// frame, for `DOMID_XEN` mappings.
    pub(crate) fn xen_frame_offset(&self, mfn: u64) -> Option<(usize, u64)> {
        let m2p_pages = M2P_BYTES / PAGE_SIZE;
        let compat_pages = COMPAT_M2P_BYTES / PAGE_SIZE;
        if (M2P_MFN0..M2P_MFN0 + m2p_pages).contains(&mfn) {
            Some((0, (mfn - M2P_MFN0) * PAGE_SIZE))
        } else if (COMPAT_M2P_MFN0..COMPAT_M2P_MFN0 + compat_pages).contains(&mfn) {
            Some((1, (mfn - COMPAT_M2P_MFN0) * PAGE_SIZE))
        } else {
            None
        }
    }
}

/// `M2P_CHUNKS(max_mfn)`: 2 MiB chunks covering entries `0..=max_mfn`.
pub(crate) fn m2p_chunks(max_mfn: u64) -> u64 {
    ((max_mfn + 1) * 8).div_ceil(M2P_CHUNK_BYTES)
}

/// The span a PV domain of `max_pages` pages gets: a power of two of at
/// least four times its pages, between 2^16 frames and the whole window.
pub(crate) fn span_for(max_pages: u64) -> u64 {
    (max_pages.saturating_mul(4))
        .next_power_of_two()
        .clamp(1 << 16, WINDOW_FRAMES)
}
