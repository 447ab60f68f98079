//! The x86 PV parts of a save (libxenguest's `save_ops_x86_pv`,
//! `xg_sr_save_x86_pv.c` and `xg_sr_common_x86_pv.c` in 4.17).
//!
//! A PV guest addresses machine frames (MFNs); the stream names pfns. So
//! the save needs the guest's own p2m (pfn -> MFN, in guest memory) and
//! Xen's M2P (MFN -> pfn):
//!
//! ```text
//! setup:   guest width ── map the M2P (32-bit: + compat M2P frame)
//!          ── map shared_info ── find the p2m: linear list (p2m_cr3 != 0:
//!          walk the guest's page tables to p2m_vaddr) or 3-level tree
//!          (frame list list -> frame lists -> leaves) ── map the leaves
//!          ── every leaf in the pseudo-physmap; p2m_size = max_pfn + 1
//! static:  X86_PV_INFO, CPU policy            start: X86_PV_P2M_FRAMES
//! pages:   frame = p2m[pfn] (none: deferred), types by MFN, page tables
//!          normalised (MFN -> pfn, Xen's slots cleared)
//! checks:  linear p2m, live: p2m_generation unchanged
//! end:     X86_TSC_INFO, SHARED_INFO, per online vCPU: BASIC (frames
//!          to pfns), EXTENDED, XSAVE, MSRS
//! ```
//!
//! Reading the p2m: libxenguest keeps a mapping of the leaves and reads
//! entries through it. Guest memory may only be copied whole (see
//! `hv::pages`), so this save keeps the mapping and copies the leaves into
//! a snapshot at the start of every pass over the dirty bitmap (a few
//! hundred KiB for a guest of GiBs). Within a pass the snapshot stands for
//! the guest's p2m; the last pass of each checkpoint starts after suspend,
//! so the pages, page tables and vCPU records of a checkpoint are
//! translated by the suspended guest's p2m. The set of leaf frames is
//! fixed at setup, as libxenguest fixes it (X86_PV_P2M_FRAMES goes once).
//! Remus checkpoints need nothing else: every checkpoint's pass refreshes
//! the snapshot, and its end writes shared_info and the vCPUs anew.
//!
//! What the engine's own data path does for PV:
//! - zero-page elision: ordinary (NOTAB) pages only, as for every guest
//!   type. A page table always goes with its type and data, since the
//!   receiver pins and validates by them; a zero page elided as XALLOC is
//!   populated by either receiver, which libxenguest restores correctly
//!   for PV as for HVM.
//! - the mapping cache: not used (`mapping_hints`). Each batch maps the
//!   MFNs of the snapshot it sends, as libxenguest does: a chunk of a PV
//!   guest is a scatter of machine frames, so a whole-chunk mapping would
//!   pay for every frame in it, sent or not. Page tables are read from the
//!   batch's mapping and normalised from a copy.
//! - the downtime-targeted policy: unchanged; it sees pages as sent.
//!
//! Where this save differs from libxenguest, it refuses what libxenguest
//! would mis-save: a `max_pfn` of 0, a linear p2m whose `p2m_vaddr` is not
//! page aligned or that needs more frames than the host has, and a cr3 or
//! end pfn that does not fit the stream's fields. Its trimming of a linear
//! p2m's trailing shared L1 table counts from the table that maps
//! `p2m_vaddr` (libxenguest's count is only right when that is the first
//! entry of its L2, as in Linux, where both agree).

use std::cell::RefCell;
use std::io::Write;

use super::ctx::Ctx;
use super::error::SaveError;
use super::guest::{Normalised, PageFrames, SaveGuest, INVALID_FRAME};
use super::x86;
use crate::hv::{DomId, Hypervisor, M2pTable, MappedPages, MappingHints, PAGE_SIZE};
use crate::stream::{DomainType, PageType, VcpuKind};
use crate::x86::pv::{
    normalise_table, pte_frame, table_level, GuestWidth, PageTableError, SharedInfo, VcpuContext,
    MAX_GDT_ENTRIES, XEN_VIRT_END_32, XEN_VIRT_END_64, XEN_VIRT_START_32, XEN_VIRT_START_64,
};

/// Reads guest frames for the p2m walk: the pages of `mfns`, one after the
/// other; `what` names them for errors.
type ReadFrames<'r> = dyn FnMut(&str, &[u64]) -> Result<Vec<u8>, SaveError> + 'r;

/// The guest's p2m as setup found it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct P2mFound {
    /// The highest pfn, after trimming.
    max_pfn: u64,
    /// The MFNs of the leaf frames, in pfn order.
    leaves: Vec<u64>,
}

/// The first `n` guest-width words of `bytes` (a 32-bit guest's `~0`
/// widened to the 64-bit invalid frame), or `None` if `bytes` is short.
fn guest_words(width: GuestWidth, bytes: &[u8], n: usize) -> Option<Vec<u64>> {
    let w = usize::from(width.bytes());
    let bytes = bytes.get(..n.checked_mul(w)?)?;
    Some(
        bytes
            .chunks_exact(w)
            .map(|b| match width {
                GuestWidth::Bits64 => u64::from_le_bytes(b.try_into().expect("8 bytes")),
                GuestWidth::Bits32 => match u32::from_le_bytes(b.try_into().expect("4 bytes")) {
                    u32::MAX => INVALID_FRAME,
                    v => u64::from(v),
                },
            })
            .collect(),
    )
}

fn erange(msg: String) -> SaveError {
    SaveError::guest(libc::ERANGE, msg)
}

/// libxenguest's `map_p2m_tree`: the frame list list at `fll_mfn` names
/// frame lists, which name the leaves. Trailing frame-list-list entries
/// that repeat one frame list are taken to cover no memory and trim
/// `max_pfn`.
fn walk_p2m_tree(
    width: GuestWidth,
    fll_mfn: u64,
    max_pfn: u64,
    max_mfn: u64,
    read: &mut ReadFrames<'_>,
) -> Result<P2mFound, SaveError> {
    let fpp = width.p2m_entries_per_page();
    let mut max_pfn = max_pfn;
    let mut fll_entries = max_pfn / (fpp * fpp) + 1;
    if fll_entries > fpp {
        return Err(erange(format!(
            "max_pfn {max_pfn:#x} too large for p2m tree"
        )));
    }
    if fll_mfn == 0 || fll_mfn > max_mfn {
        return Err(erange(format!(
            "Bad mfn {fll_mfn:#x} for p2m frame list list"
        )));
    }
    let page = read("the p2m frame list list", &[fll_mfn])?;
    let fll = guest_words(width, &page, fll_entries as usize)
        .ok_or_else(|| erange("short read of the p2m frame list list".into()))?;
    let mut last_change = 0;
    for (x, &mfn) in fll.iter().enumerate() {
        if mfn == 0 || mfn > max_mfn {
            return Err(erange(format!(
                "Bad mfn {mfn:#x} at index {x} (of {fll_entries}) in p2m frame list list"
            )));
        }
        if x > 0 && mfn != fll[x - 1] {
            last_change = x as u64;
        }
    }
    let trimmed = (last_change + 1) * fpp * fpp - 1;
    if trimmed < max_pfn {
        max_pfn = trimmed;
        fll_entries = max_pfn / (fpp * fpp) + 1;
    }
    let fl_entries = (max_pfn / fpp + 1) as usize;
    let pages = read("the p2m frame list", &fll[..fll_entries as usize])?;
    let fl = guest_words(width, &pages, fl_entries)
        .ok_or_else(|| erange("short read of the p2m frame list".into()))?;
    for (x, &mfn) in fl.iter().enumerate() {
        if mfn == 0 || mfn > max_mfn {
            return Err(erange(format!(
                "Bad mfn {mfn:#x} at index {x} (of {fl_entries}) in p2m frame list"
            )));
        }
    }
    Ok(P2mFound {
        max_pfn,
        leaves: fl,
    })
}

/// Whether `va` is canonical (bits 47..63 all equal).
fn canonical(va: u64) -> bool {
    ((va as i64) >> 47) == ((va as i64) >> 63)
}

/// A virtual address the walk computed within the low 48 (or 32) bits, as
/// the guest writes it: a 64-bit upper-half address sign-extended.
fn full_va(width: GuestWidth, va: u64) -> u64 {
    match width {
        GuestWidth::Bits64 if va & (1 << 47) != 0 => va | 0xffff_0000_0000_0000,
        _ => va,
    }
}

/// libxenguest's `map_p2m_list`: the leaves are the frames that map
/// `p2m_vaddr ..` under the root table `p2m_cr3`, found by walking the
/// guest's page tables one level at a time. At L2, trailing entries that
/// repeat one L1 table are taken to map a shared page of invalid entries
/// and trim `max_pfn`.
fn walk_p2m_list(
    width: GuestWidth,
    p2m_cr3: u64,
    p2m_vaddr: u64,
    max_pfn: u64,
    max_mfn: u64,
    read: &mut ReadFrames<'_>,
) -> Result<P2mFound, SaveError> {
    let root = width
        .cr3_to_frame(p2m_cr3)
        .filter(|&m| m != 0 && m <= max_mfn)
        .ok_or_else(|| erange(format!("Bad p2m_cr3 value {p2m_cr3:#x}")))?;
    if p2m_vaddr % PAGE_SIZE as u64 != 0 {
        return Err(erange(format!(
            "p2m_vaddr {p2m_vaddr:#x} is not page aligned"
        )));
    }
    let fpp = width.p2m_entries_per_page();
    let mut max_pfn = max_pfn;
    let frames = max_pfn / fpp + 1;
    if frames > max_mfn.saturating_add(1) {
        return Err(erange(format!(
            "max_pfn {max_pfn:#x} needs {frames} p2m frames, more than the host has"
        )));
    }
    let end_of = |frames: u64| {
        frames
            .checked_mul(PAGE_SIZE as u64)
            .and_then(|bytes| p2m_vaddr.checked_add(bytes - 1))
    };
    let bad_range = |end: Option<u64>| {
        erange(format!(
            "Bad virtual p2m address range {p2m_vaddr:#x}-{:#x}",
            end.unwrap_or(u64::MAX)
        ))
    };
    let mut p2m_end = end_of(frames).ok_or_else(|| bad_range(None))?;
    let (mask, in_range) = match width {
        GuestWidth::Bits64 => (
            0x0000_ffff_ffff_ffffu64,
            canonical(p2m_vaddr)
                && canonical(p2m_end)
                && !(p2m_vaddr <= XEN_VIRT_END_64 && p2m_end > XEN_VIRT_START_64),
        ),
        GuestWidth::Bits32 => (
            0xffff_ffffu64,
            p2m_end <= 0xffff_ffff
                && !(p2m_vaddr <= XEN_VIRT_END_32 && p2m_end > XEN_VIRT_START_32),
        ),
    };
    if !in_range {
        return Err(bad_range(Some(p2m_end)));
    }

    let mut mfns = vec![root];
    let mut off = 0u64;
    let (mut idx_start, mut idx_end) = (0u64, 0u64);
    for level in (1..=u32::from(width.levels())).rev() {
        let n_pages = (idx_end - idx_start + 1) as usize;
        let tables = read(
            &format!("L{level} page tables of the p2m list"),
            &mfns[..n_pages],
        )?;
        let shift = level * 9 + 3;
        idx_start = ((p2m_vaddr - off) & mask) >> shift;
        idx_end = ((p2m_end - off) & mask) >> shift;
        let mut next = Vec::with_capacity((idx_end - idx_start + 1) as usize);
        let mut run_start = 0;
        for idx in idx_start..=idx_end {
            let va = full_va(width, off + (idx << shift));
            let at = idx as usize * 8;
            let Some(pte) = tables.get(at..at + 8) else {
                return Err(erange(format!(
                    "the L{level} tables of the p2m list end before vaddr {va:#x}"
                )));
            };
            let mfn = pte_frame(u64::from_le_bytes(pte.try_into().expect("8 bytes")));
            if mfn == 0 || mfn > max_mfn {
                return Err(erange(format!(
                    "Bad mfn {mfn:#x} during page table walk for vaddr {va:#x} at level {level} of p2m list"
                )));
            }
            if level == 2 && next.last() != Some(&mfn) {
                run_start = next.len();
            }
            next.push(mfn);
        }
        if level == 2 && run_start > 0 && run_start + 1 < next.len() {
            // The L1 at `run_start` and every one after it is the same
            // table: the p2m ends where it starts.
            let l1_va = off + ((idx_start + run_start as u64) << shift);
            let first_pfn = (l1_va - (p2m_vaddr & mask)) / u64::from(width.bytes());
            if first_pfn > 0 && first_pfn - 1 < max_pfn {
                max_pfn = first_pfn - 1;
                p2m_end = end_of(max_pfn / fpp + 1).ok_or_else(|| bad_range(None))?;
                idx_end = idx_start + run_start as u64;
                next.truncate(run_start + 1);
            }
        }
        mfns = next;
        off = p2m_vaddr & ((mask >> shift) << shift);
    }
    mfns.truncate((idx_end - idx_start + 1) as usize);
    Ok(P2mFound {
        max_pfn,
        leaves: mfns,
    })
}

/// The pseudo-physical map: which MFNs are the guest's, by the M2P and
/// the p2m agreeing (libxenguest's `mfn_in_pseudophysmap`).
struct PseudoPhys<'m> {
    m2p: &'m dyn M2pTable,
    p2m: &'m [u64],
    max_pfn: u64,
}

impl PseudoPhys<'_> {
    /// The pfn of `mfn`, if `mfn <= max_mfn`, `m2p[mfn] <= max_pfn` and
    /// `p2m[m2p[mfn]] == mfn`.
    fn pfn_of(&self, mfn: u64) -> Option<u64> {
        if mfn > self.m2p.max_mfn() {
            return None;
        }
        let pfn = self.m2p.entry(mfn)?;
        (pfn <= self.max_pfn && self.p2m.get(pfn as usize) == Some(&mfn)).then_some(pfn)
    }

    /// What the two tables say of `mfn`, for an error message
    /// (libxenguest's `dump_bad_pseudophysmap_entry`).
    fn describe(&self, mfn: u64) -> String {
        let mut s = format!("mfn {mfn:#x}, max {:#x}", self.m2p.max_mfn());
        if let Some(pfn) = self.m2p.entry(mfn) {
            s += &format!("; m2p[{mfn:#x}] = {pfn:#x}, max_pfn {:#x}", self.max_pfn);
            if let Some(back) = self.p2m.get(pfn as usize).filter(|_| pfn <= self.max_pfn) {
                s += &format!("; p2m[{pfn:#x}] = {back:#x}");
            }
        }
        s
    }

    /// The pfn of `mfn`, or ERANGE naming `what` holds it.
    fn pfn_for(&self, mfn: u64, what: impl FnOnce() -> String) -> Result<u64, SaveError> {
        self.pfn_of(mfn)
            .ok_or_else(|| erange(format!("Bad mfn for {}: {}", what(), self.describe(mfn))))
    }
}

/// An X86_PV_VCPU_BASIC body from vCPU `vcpu`'s context as Xen gives it:
/// vCPU 0's start_info frame (the suspend record), the GDT frames, cr3
/// and a 64-bit guest's user page table (cr1) become pfns.
fn vcpu_basic_for_stream(
    width: GuestWidth,
    vcpu: u32,
    raw: Vec<u8>,
    pp: &PseudoPhys<'_>,
) -> Result<Vec<u8>, SaveError> {
    let mut c = VcpuContext::new(width, raw).map_err(|e| {
        SaveError::Protocol(format!(
            "Xen's context of vcpu{vcpu} has the wrong size: {e}"
        ))
    })?;
    if vcpu == 0 {
        let pfn = pp.pfn_for(c.start_info_reg(), || {
            "the suspend record (vcpu0's start_info)".into()
        })?;
        c.set_start_info_reg(pfn);
    }
    let Some(gdt_frames) = c.gdt_frame_count() else {
        return Err(erange(format!(
            "GDT entry count ({}) of vcpu{vcpu} out of range (max {MAX_GDT_ENTRIES})",
            c.gdt_ents()
        )));
    };
    for i in 0..gdt_frames {
        let pfn = pp.pfn_for(c.gdt_frame(i), || format!("frame {i} of vcpu{vcpu}'s GDT"))?;
        c.set_gdt_frame(i, pfn);
    }
    let cr3 = c.ctrlreg(3);
    let mfn = width.cr3_to_frame(cr3).unwrap_or(INVALID_FRAME);
    let pfn = pp.pfn_for(mfn, || format!("vcpu{vcpu}'s cr3 ({cr3:#x})"))?;
    let Some(cr3) = width.frame_to_cr3(pfn) else {
        return Err(erange(format!(
            "vcpu{vcpu}'s cr3 pfn {pfn:#x} does not fit a {width} cr3"
        )));
    };
    c.set_ctrlreg(3, cr3);
    if width == GuestWidth::Bits64 && c.ctrlreg(1) != 0 {
        let cr1 = c.ctrlreg(1);
        let pfn = pp.pfn_for(cr1 >> 12, || format!("vcpu{vcpu}'s cr1 ({cr1:#x})"))?;
        c.set_ctrlreg(1, 1 | (pfn << 12));
    }
    Ok(c.into_inner())
}

/// What setup found and mapped, kept until cleanup.
struct PvState<'a, H: Hypervisor + 'a> {
    width: GuestWidth,
    /// The compat M2P's first frame (32-bit guests), which marks Xen's
    /// part of their L2 tables.
    compat_m2p_mfn0: u64,
    m2p: Box<dyn M2pTable + 'a>,
    shinfo: H::ReadMapping<'a>,
    /// The p2m's leaf frames, mapped for the whole save.
    leaves: H::ReadMapping<'a>,
    /// Their pfns (X86_PV_P2M_FRAMES).
    leaf_pfns: Vec<u64>,
    max_pfn: u64,
    /// `p2m[pfn]` for `pfn <= max_pfn`, as of the current pass.
    p2m: RefCell<Vec<u64>>,
    /// Linear p2m: `p2m_generation` at setup.
    generation: Option<u64>,
}

impl<H: Hypervisor> PvState<'_, H> {
    /// The p2m entries the leaf mapping holds now.
    fn read_p2m(&self) -> Result<Vec<u64>, SaveError> {
        read_p2m(self.width, &self.leaves, self.max_pfn)
    }

    fn shared_info_page(&self) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        self.shinfo.read_page(0, &mut page);
        page
    }

    fn pseudo_phys<'m>(&'m self, p2m: &'m [u64]) -> PseudoPhys<'m> {
        PseudoPhys {
            m2p: &*self.m2p,
            p2m,
            max_pfn: self.max_pfn,
        }
    }
}

/// `p2m[0..=max_pfn]` from the mapped leaves.
fn read_p2m<M: MappedPages>(
    width: GuestWidth,
    leaves: &M,
    max_pfn: u64,
) -> Result<Vec<u64>, SaveError> {
    let n = max_pfn as usize + 1;
    let per = width.p2m_entries_per_page() as usize;
    let mut p2m = Vec::with_capacity(n);
    let mut page = [0u8; PAGE_SIZE];
    for i in 0..leaves.count() {
        if p2m.len() >= n {
            break;
        }
        leaves.read_page(i, &mut page);
        let words = guest_words(width, &page, per.min(n - p2m.len())).unwrap_or_default();
        p2m.extend(words);
    }
    if p2m.len() != n {
        return Err(SaveError::Protocol(format!(
            "the p2m leaves hold {} entries, not {n}",
            p2m.len()
        )));
    }
    Ok(p2m)
}

/// Per-save PV state.
pub(crate) struct PvSave<'a, H: Hypervisor + 'a> {
    hv: &'a H,
    domid: DomId,
    state: Option<PvState<'a, H>>,
}

impl<'a, H: Hypervisor + 'a> PvSave<'a, H> {
    /// The PV part of a save of `domid` through `hv`.
    pub(crate) fn new(hv: &'a H, domid: DomId) -> Self {
        PvSave {
            hv,
            domid,
            state: None,
        }
    }

    fn state(&self) -> Result<&PvState<'a, H>, SaveError> {
        self.state
            .as_ref()
            .ok_or_else(|| SaveError::Protocol("the PV save has not been set up".into()))
    }

    /// Map `mfns` of the guest and copy them out (the p2m walk's reads).
    fn read_frames(&self, what: &str, mfns: &[u64]) -> Result<Vec<u8>, SaveError> {
        let map = self.hv.map_read(self.domid, mfns)?;
        let mut out = vec![0u8; mfns.len() * PAGE_SIZE];
        for (i, &mfn) in mfns.iter().enumerate() {
            let e = map.error(i);
            if e != 0 {
                return Err(SaveError::guest(
                    if e < 0 { -e } else { libc::EFAULT },
                    format!("Failed to map {what}: mfn {mfn:#x} (error {e})"),
                ));
            }
            let dst: &mut [u8; PAGE_SIZE] = (&mut out[i * PAGE_SIZE..(i + 1) * PAGE_SIZE])
                .try_into()
                .expect("a page");
            map.read_page(i, dst);
        }
        Ok(out)
    }

    fn set_up(&self, shared_info_frame: u64) -> Result<PvState<'a, H>, SaveError> {
        let (hv, domid) = (self.hv, self.domid);
        let bits = hv.pv_address_size(domid)?;
        let width = GuestWidth::from_bits(bits).ok_or_else(|| {
            SaveError::Protocol(format!("Xen reports a guest width of {bits} bits"))
        })?;
        let m2p = hv.map_m2p()?;
        let max_mfn = m2p.max_mfn();
        let compat_m2p_mfn0 = match width {
            GuestWidth::Bits32 => hv.compat_m2p_mfn0()?,
            GuestWidth::Bits64 => 0,
        };

        let shinfo = hv.map_read(domid, &[shared_info_frame])?;
        if shinfo.error(0) != 0 {
            return Err(SaveError::guest(
                libc::EFAULT,
                format!(
                    "Failed to map shared info frame at mfn {shared_info_frame:#x} (error {})",
                    shinfo.error(0)
                ),
            ));
        }
        let mut page = [0u8; PAGE_SIZE];
        shinfo.read_page(0, &mut page);
        let si = SharedInfo::new(width, &page[..]).expect("a page holds shared_info");
        let Some(max_pfn) = si.max_pfn().checked_sub(1) else {
            return Err(erange("shared_info's max_pfn is 0: no p2m".into()));
        };
        let p2m_cr3 = si.p2m_cr3();
        let mut read = |what: &str, mfns: &[u64]| self.read_frames(what, mfns);
        let (found, generation) = if p2m_cr3 != 0 {
            let generation = si.p2m_generation();
            let found = walk_p2m_list(width, p2m_cr3, si.p2m_vaddr(), max_pfn, max_mfn, &mut read)?;
            (found, Some(generation))
        } else {
            let found = walk_p2m_tree(width, si.frame_list_list(), max_pfn, max_mfn, &mut read)?;
            (found, None)
        };
        crate::log::message(
            crate::log::Level::Detail,
            None,
            &format!(
                "{width} PV guest, {} p2m, max_pfn {:#x}, p2m_frames {}",
                if generation.is_some() {
                    "linear"
                } else {
                    "tree"
                },
                found.max_pfn,
                found.leaves.len()
            ),
        );

        let leaves = hv.map_read(domid, &found.leaves)?;
        for (x, &mfn) in found.leaves.iter().enumerate() {
            if leaves.error(x) != 0 {
                return Err(SaveError::guest(
                    libc::EFAULT,
                    format!(
                        "Failed to map p2m frames: p2m_frame_list[{x}] = mfn {mfn:#x} (error {})",
                        leaves.error(x)
                    ),
                ));
            }
        }
        let p2m = read_p2m(width, &leaves, found.max_pfn)?;
        let pp = PseudoPhys {
            m2p: &*m2p,
            p2m: &p2m,
            max_pfn: found.max_pfn,
        };
        let leaf_pfns = found
            .leaves
            .iter()
            .enumerate()
            .map(|(x, &mfn)| pp.pfn_for(mfn, || format!("p2m_frame_list[{x}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PvState {
            width,
            compat_m2p_mfn0,
            m2p,
            shinfo,
            leaves,
            leaf_pfns,
            max_pfn: found.max_pfn,
            p2m: RefCell::new(p2m),
            generation,
        })
    }
}

impl<H: Hypervisor> PageFrames for PvSave<'_, H> {
    /// `p2m[pfn]`; [`INVALID_FRAME`] for a pfn without a frame.
    fn pfn_to_frame(&self, pfn: u64) -> u64 {
        let Some(st) = &self.state else {
            return INVALID_FRAME;
        };
        let p2m = st.p2m.borrow();
        p2m.get(pfn as usize).copied().unwrap_or(INVALID_FRAME)
    }

    /// The p2m snapshot, taken again.
    fn begin_pass(&self) -> Result<bool, SaveError> {
        let st = self.state()?;
        let now = st.read_p2m()?;
        let mut p2m = st.p2m.borrow_mut();
        let moved = *p2m != now;
        *p2m = now;
        Ok(moved)
    }

    /// A linear p2m must keep its generation during the live part.
    fn check_vm_state(&self, live: bool) -> Result<(), SaveError> {
        let st = self.state()?;
        let Some(at_setup) = st.generation.filter(|_| live) else {
            return Ok(());
        };
        let page = st.shared_info_page();
        let now = SharedInfo::new(st.width, &page[..])
            .expect("a page holds shared_info")
            .p2m_generation();
        if now != at_setup {
            return Err(SaveError::guest(
                libc::EBUSY,
                format!(
                    "p2m generation count changed ({at_setup} at setup, now {now}): the guest changed its p2m during the live save. Migration aborted."
                ),
            ));
        }
        Ok(())
    }

    fn needs_normalise(&self, t: PageType) -> bool {
        table_level(t).is_some()
    }

    /// Page tables: MFNs to pfns, Xen's entries cleared. An MFN outside
    /// the pseudo-physmap defers the page while the domain is not paused
    /// and fails the save once it is; a superpage always fails.
    fn normalise_page(
        &self,
        pfn: u64,
        t: PageType,
        page: &mut [u8; PAGE_SIZE],
        paused: bool,
    ) -> Result<Normalised, SaveError> {
        let Some(level) = table_level(t) else {
            return Ok(Normalised::Ready);
        };
        let st = self.state()?;
        let p2m = st.p2m.borrow();
        let pp = st.pseudo_phys(&p2m);
        match normalise_table(st.width, level, page, st.compat_m2p_mfn0, |m| pp.pfn_of(m)) {
            Ok(()) => Ok(Normalised::Ready),
            Err(PageTableError::FrameOutsideGuest { .. }) if !paused => Ok(Normalised::Deferred),
            Err(e @ PageTableError::FrameOutsideGuest { frame, .. }) => Err(erange(format!(
                "page table at pfn {pfn:#x}: {e} ({})",
                pp.describe(frame)
            ))),
            Err(e @ PageTableError::Superpage { .. }) => Err(SaveError::guest(
                libc::E2BIG,
                format!("page table at pfn {pfn:#x}: {e}"),
            )),
            Err(e @ PageTableError::L4In32BitGuest) => Err(SaveError::guest(
                libc::EINVAL,
                format!("page table at pfn {pfn:#x}: {e}"),
            )),
        }
    }
}

impl<'a, H: Hypervisor + 'a, W: Write> SaveGuest<H, W> for PvSave<'a, H> {
    fn name(&self) -> &'static str {
        "x86 PV"
    }

    fn domain_type(&self) -> DomainType {
        DomainType::X86Pv
    }

    fn frames(&self) -> &dyn PageFrames {
        self
    }

    /// Width, M2P, shared_info and the p2m; `p2m_size = max_pfn + 1`.
    fn setup(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        let st = self.set_up(ctx.info.shared_info_frame)?;
        ctx.summary.p2m_size = st.max_pfn + 1;
        self.state = Some(st);
        Ok(())
    }

    /// None of the backend's chunk mappings for a PV guest.
    fn mapping_hints(&self, hints: MappingHints) -> MappingHints {
        let _ = hints;
        // No chunk mappings: a chunk of a PV guest is a scatter of machine
        // frames, so mapping it whole costs work for every frame in it,
        // clean ones included (a PTE each under privcmd, an mmap each on
        // xensim), where a batch maps only the frames it sends, as
        // libxenguest's do.
        MappingHints {
            follows_p2m: false,
            max_cached_pages: 0,
        }
    }

    /// X86_PV_INFO, then the CPU policy records.
    fn static_data(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        ctx.out.x86_pv_info(self.state()?.width)?;
        x86::write_cpu_policy(ctx)
    }

    /// X86_PV_P2M_FRAMES: pfns `0..=max_pfn` live in the frames listed.
    fn start_of_stream(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        let st = self.state()?;
        let end = u32::try_from(st.max_pfn).map_err(|_| {
            erange(format!(
                "max_pfn {:#x} does not fit X86_PV_P2M_FRAMES",
                st.max_pfn
            ))
        })?;
        ctx.out.x86_pv_p2m_frames(end, &st.leaf_pfns)?;
        Ok(())
    }

    /// X86_TSC_INFO, SHARED_INFO, then each online vCPU's records.
    fn end_of_checkpoint(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        x86::write_tsc_info(ctx)?;
        let st = self.state()?;
        ctx.out.shared_info(&st.shared_info_page())?;
        let (hv, domid) = (self.hv, self.domid);
        let p2m = st.p2m.borrow();
        let pp = st.pseudo_phys(&p2m);
        for vcpu in 0..=ctx.info.max_vcpu_id {
            if !hv.vcpu_online(domid, vcpu)? {
                continue;
            }
            let raw = hv.vcpu_context(domid, vcpu, st.width)?;
            let basic = vcpu_basic_for_stream(st.width, vcpu, raw, &pp)?;
            ctx.out.x86_pv_vcpu(VcpuKind::Basic, vcpu, &basic)?;
            let ext = hv.ext_vcpu_context(domid, vcpu)?;
            if !ext.is_empty() {
                ctx.out.x86_pv_vcpu(VcpuKind::Extended, vcpu, &ext)?;
            }
            if let Some(xsave) = hv.vcpu_xsave(domid, vcpu)?.filter(|x| !x.is_empty()) {
                ctx.out.x86_pv_vcpu(VcpuKind::Xsave, vcpu, &xsave)?;
            }
            let msrs = hv.vcpu_msrs(domid, vcpu)?;
            if !msrs.is_empty() {
                ctx.out.x86_pv_vcpu_msrs(vcpu, &msrs)?;
            }
        }
        Ok(())
    }

    /// Unmap the p2m, shared_info and the M2P.
    fn cleanup(&mut self, _ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        self.state = None;
        Ok(())
    }
}

#[cfg(test)]
#[path = "x86_pv_tests.rs"]
mod tests;
