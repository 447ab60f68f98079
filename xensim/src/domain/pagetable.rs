//! PV page tables as Xen types them: validation of L1..L4 tables reachable
//! from a root (recursively, as `get_page_type` does), Xen's own slots
//! written into a table when it is validated, pinning (`mmuext_op`) and the
//! guest's page-table updates (`mmu_update`).
//!
//! Types are one byte per frame (level 1..=4, pinned bit). As in Xen, a type
//! stays on the frame until the frame is retyped: `getpageframeinfo3` reports
//! it whether or not a reference is still held. A frame already typed at
//! the wanted level is not walked again (Xen's PGT_validated).

use super::pv::{TYPE_LEVEL_MASK, TYPE_PINNED};
use super::Domain;
use crate::error::{err, Error, Result};
use crate::machine::{COMPAT_M2P_MFN0, XEN_L3_MFN0};
use crate::PAGE_SIZE;

/// `_PAGE_PRESENT`.
pub(crate) const PT_PRESENT: u64 = 1 << 0;
/// `_PAGE_RW`.
pub(crate) const PT_RW: u64 = 1 << 1;
/// `_PAGE_USER`.
pub(crate) const PT_USER: u64 = 1 << 2;
/// `_PAGE_ACCESSED`.
pub(crate) const PT_ACCESSED: u64 = 1 << 5;
/// `_PAGE_DIRTY`.
pub(crate) const PT_DIRTY: u64 = 1 << 6;
/// `_PAGE_PSE` (a superpage above L1).
pub(crate) const PT_PSE: u64 = 1 << 7;
/// `_PAGE_NX`.
pub(crate) const PT_NX: u64 = 1 << 63;
/// The frame bits of a PTE.
pub(crate) const PT_FRAME_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Xen's slots of a 64-bit guest's L4 (`ROOT_PAGETABLE_{FIRST,LAST}_XEN_SLOT`).
pub(crate) const L4_XEN_SLOTS: std::ops::RangeInclusive<usize> = 256..=271;
/// The L4 slot where Xen maps the L4 onto itself (`LINEAR_PT_VIRT_START`).
const L4_LINEAR_SLOT: usize = 258;
/// A 32-bit guest's L2 slots that Xen fills with the compat M2P, in the L2
/// that an L3's slot 3 points at (`HYPERVISOR_VIRT_START` 0xf5800000 up).
pub(crate) const PAE_L2_XEN_SLOTS: std::ops::RangeInclusive<usize> = 428..=511;

/// `MMUEXT_PIN_L1_TABLE` (L2, L3, L4 follow: 1, 2, 3).
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// `MMUEXT_PIN_L4_TABLE`.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// `MMUEXT_UNPIN_TABLE`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// `MMUEXT_TLB_FLUSH_LOCAL`; this through `MMUEXT_FLUSH_CACHE` (12) are
/// accepted and do nothing (the simulator has no TLBs or caches).
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// `MMUEXT_FLUSH_CACHE`.
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
/// `MMU_NORMAL_PT_UPDATE`: `ptr` is the machine address of a PTE.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `MMU_MACHPHYS_UPDATE`: `ptr` is `mfn << 12 | 1`, `val` the pfn.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// `MMU_PT_UPDATE_PRESERVE_AD`: a normal update keeping accessed/dirty.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;

/// One `struct mmuext_op`: `cmd`, `arg1` (an MFN for the pin ops), `arg2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmuextOp {
    /// `MMUEXT_*`.
    pub cmd: u32,
    /// `arg1.mfn` / `arg1.linear_addr`.
    pub arg1: u64,
    /// `arg2`.
    pub arg2: u64,
}

/// The frame a PTE names.
pub(crate) fn pte_frame(pte: u64) -> u64 {
    (pte & PT_FRAME_MASK) >> 12
}

fn read_table(d: &Domain, mfn: u64) -> Result<Vec<u64>> {
    let mut b = vec![0u8; PAGE_SIZE as usize];
    d.read_frame(mfn, &mut b)?;
    Ok(b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

fn write_entry(d: &Domain, mfn: u64, idx: usize, v: u64) -> Result<()> {
    let (file, off) = d
        .frame_source(mfn)
        .ok_or_else(|| Error::new(libc::EINVAL, format!("frame {mfn:#x} not the domain's")))?;
    use std::os::unix::fs::FileExt;
    file.write_all_at(&v.to_le_bytes(), off + idx as u64 * 8)
        .map_err(|e| Error::io("writing a page table", e))
}

/// Frames newly typed by one validation, untyped again if it fails.
struct Typing<'a> {
    d: &'a Domain,
    typed: Vec<u64>,
}

impl Typing<'_> {
    /// Whether slot `i` of a table at `level` is the guest's (not Xen's).
    fn guest_slot(&self, level: u8, i: usize, pae_xen_l2: bool) -> bool {
        let bits32 = self.d.address_size() == 32;
        match level {
            4 => !L4_XEN_SLOTS.contains(&i),
            3 if bits32 => i < 4,
            2 if pae_xen_l2 => !PAE_L2_XEN_SLOTS.contains(&i),
            _ => true,
        }
    }

    /// Give `mfn` the type of a table at `level`, validating what it
    /// references first time round. `pae_xen_l2`: the L2 an L3's slot 3
    /// names in a 32-bit guest, which gets Xen's compat M2P slots.
    fn get_type(&mut self, mfn: u64, level: u8, pae_xen_l2: bool) -> Result<()> {
        if !self.d.owns_frame(mfn) {
            return err(
                libc::EINVAL,
                format!("L{level} table {mfn:#x} is not a frame of the domain"),
            );
        }
        let cur = self.d.frame_type(mfn) & TYPE_LEVEL_MASK;
        if cur == level {
            return Ok(());
        }
        if cur != 0 {
            return err(
                libc::EINVAL,
                format!("frame {mfn:#x} is an L{cur} table, wanted as L{level}"),
            );
        }
        let keep = self.d.frame_type(mfn) & TYPE_PINNED;
        self.d.set_frame_type(mfn, level | keep);
        self.typed.push(mfn);
        let table = read_table(self.d, mfn)?;
        for (i, &e) in table.iter().enumerate() {
            if !self.guest_slot(level, i, pae_xen_l2) || e & PT_PRESENT == 0 {
                continue;
            }
            self.check_entry(level, i, e)?;
        }
        self.write_xen_slots(mfn, level, pae_xen_l2)
    }

    /// Validate one present guest entry of a table at `level`, slot `i`.
    fn check_entry(&mut self, level: u8, i: usize, e: u64) -> Result<()> {
        let target = pte_frame(e);
        if level == 1 {
            if !self.d.owns_frame(target) {
                return err(
                    libc::EINVAL,
                    format!("L1 entry {i} maps frame {target:#x}, not the domain's"),
                );
            }
            let t = self.d.frame_type(target) & TYPE_LEVEL_MASK;
            if e & PT_RW != 0 && t != 0 {
                return err(
                    libc::EINVAL,
                    format!("L1 entry {i} maps L{t} table {target:#x} writable"),
                );
            }
            return Ok(());
        }
        if e & PT_PSE != 0 {
            return err(
                libc::EINVAL,
                format!("L{level} entry {i} is a superpage (PV has none)"),
            );
        }
        let xen_l2 = level == 3 && self.d.address_size() == 32 && i == 3;
        self.get_type(target, level - 1, xen_l2)
    }

    fn write_xen_slots(&self, mfn: u64, level: u8, pae_xen_l2: bool) -> Result<()> {
        let flags = PT_PRESENT | PT_RW | PT_ACCESSED | PT_DIRTY;
        if level == 4 && self.d.address_size() == 64 {
            for s in L4_XEN_SLOTS {
                let frame = if s == L4_LINEAR_SLOT {
                    mfn
                } else {
                    XEN_L3_MFN0 + s as u64
                };
                write_entry(self.d, mfn, s, (frame << 12) | flags)?;
            }
        }
        if level == 2 && pae_xen_l2 {
            for s in PAE_L2_XEN_SLOTS {
                let frame = COMPAT_M2P_MFN0 + (s - PAE_L2_XEN_SLOTS.start()) as u64 * 512;
                write_entry(
                    self.d,
                    mfn,
                    s,
                    (frame << 12) | PT_PRESENT | PT_ACCESSED | PT_PSE,
                )?;
            }
        }
        Ok(())
    }

    fn undo(&self) {
        for &m in &self.typed {
            let pinned = self.d.frame_type(m) & TYPE_PINNED;
            self.d.set_frame_type(m, pinned);
        }
    }
}

impl Domain {
    /// Page-table levels of the guest: 4 (64-bit) or 3 (32-bit PAE).
    pub fn pt_levels(&self) -> u8 {
        if self.address_size() == 32 {
            3
        } else {
            4
        }
    }

    /// Type `mfn` as a table at `level` (validating it and everything under
    /// it that isn't typed yet); on failure nothing stays newly typed.
    pub(crate) fn validate_table(&self, mfn: u64, level: u8) -> Result<()> {
        let mut t = Typing {
            d: self,
            typed: Vec::new(),
        };
        let r = t.get_type(mfn, level, false);
        if r.is_err() {
            t.undo();
        }
        r
    }

    /// `HYPERVISOR_mmuext_op` (`xc_mmuext_op`): the ops in order, stopping at
    /// the first failure (earlier ones stay done). PIN_L1..L4 validate and
    /// type the table and what it references, then pin it: EINVAL when the
    /// table or an entry under it doesn't validate, when the frame isn't the
    /// domain's, when it is pinned already, or for PIN_L4 on a 32-bit guest.
    /// UNPIN: EINVAL unless pinned. TLB and cache flushes do nothing;
    /// other commands give ENOSYS.
    pub fn mmuext_op(&self, ops: &[MmuextOp]) -> Result<()> {
        self.require_alive()?;
        if !self.is_pv() {
            return err(libc::EINVAL, "mmuext_op on a non-PV domain");
        }
        for op in ops {
            match op.cmd {
                c @ MMUEXT_PIN_L1_TABLE..=MMUEXT_PIN_L4_TABLE => {
                    let level = (c + 1) as u8;
                    if level > self.pt_levels() {
                        return err(
                            libc::EINVAL,
                            format!("PIN_L{level}_TABLE on a {}-level guest", self.pt_levels()),
                        );
                    }
                    if self.frame_type(op.arg1) & TYPE_PINNED != 0 {
                        return err(libc::EINVAL, format!("frame {:#x} already pinned", op.arg1));
                    }
                    self.validate_table(op.arg1, level)?;
                    let t = self.frame_type(op.arg1);
                    self.set_frame_type(op.arg1, t | TYPE_PINNED);
                }
                MMUEXT_UNPIN_TABLE => {
                    let t = self.frame_type(op.arg1);
                    if !self.owns_frame(op.arg1) || t & TYPE_PINNED == 0 {
                        return err(libc::EINVAL, format!("frame {:#x} is not pinned", op.arg1));
                    }
                    self.set_frame_type(op.arg1, t & !TYPE_PINNED);
                }
                MMUEXT_TLB_FLUSH_LOCAL..=MMUEXT_FLUSH_CACHE => {}
                c => return err(libc::ENOSYS, format!("mmuext_op command {c}")),
            }
        }
        Ok(())
    }

    /// `HYPERVISOR_mmu_update`, the guest's own page-table writes:
    /// NORMAL_PT_UPDATE / PT_UPDATE_PRESERVE_AD write the PTE at machine
    /// address `ptr` (in a frame typed as a table; EINVAL otherwise, and for
    /// Xen's slots) after validating the new entry at that level;
    /// MACHPHYS_UPDATE sets `m2p[ptr >> 12] = val` for a frame the domain
    /// owns. Stops at the first failure.
    pub fn mmu_update(&self, reqs: &[(u64, u64)]) -> Result<()> {
        self.require_alive()?;
        if !self.is_pv() {
            return err(libc::EINVAL, "mmu_update on a non-PV domain");
        }
        for &(ptr, val) in reqs {
            let mfn = ptr >> 12;
            match ptr & 3 {
                MMU_MACHPHYS_UPDATE => {
                    if !self.owns_frame(mfn) {
                        return err(libc::EINVAL, format!("M2P update of frame {mfn:#x}"));
                    }
                    self.machine().set_m2p(mfn, val);
                }
                MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_PRESERVE_AD => {
                    let level = self.frame_type(mfn) & TYPE_LEVEL_MASK;
                    if !self.owns_frame(mfn) || level == 0 {
                        return err(
                            libc::EINVAL,
                            format!("PT update in frame {mfn:#x}, not a page table"),
                        );
                    }
                    let idx = ((ptr & (PAGE_SIZE - 1)) / 8) as usize;
                    let mut t = Typing {
                        d: self,
                        typed: Vec::new(),
                    };
                    let old = read_table(self, mfn)?[idx];
                    let xen_l2 = level == 2 && self.is_pae_xen_l2(mfn)?;
                    if !t.guest_slot(level, idx, xen_l2) {
                        return err(libc::EINVAL, format!("PT update of Xen's slot {idx}"));
                    }
                    let mut new = val;
                    if ptr & 3 == MMU_PT_UPDATE_PRESERVE_AD {
                        new |= old & (PT_ACCESSED | PT_DIRTY);
                    }
                    if new & PT_PRESENT != 0 {
                        if let Err(e) = t.check_entry(level, idx, new) {
                            t.undo();
                            return Err(e);
                        }
                    }
                    write_entry(self, mfn, idx, new)?;
                }
                _ => return err(libc::ENOSYS, format!("mmu_update command {}", ptr & 3)),
            }
        }
        Ok(())
    }

    /// Whether an L2 of a 32-bit guest carries Xen's compat M2P slots.
    fn is_pae_xen_l2(&self, mfn: u64) -> Result<bool> {
        if self.address_size() != 32 {
            return Ok(false);
        }
        let e = read_table(self, mfn)?[*PAE_L2_XEN_SLOTS.start()];
        Ok(e & PT_PRESENT != 0 && pte_frame(e) == COMPAT_M2P_MFN0)
    }
}
