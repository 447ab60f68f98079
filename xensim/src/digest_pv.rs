//! The PV part of the digest: the guest's pseudo-physical view, so a guest
//! restored to other MFNs digests as its source did at suspend.
//!
//! * `memory` — for every pfn with a page: the pfn, its page type (level and
//!   pinned bit) and its contents, with
//!   * page tables: each present entry's frame turned back into a pfn through
//!     the M2P, and Xen's slots (64-bit L4 256–271; 32-bit L3 4–511, and the
//!     L2 compat-M2P slots 428–511) left out: Xen writes them on validation;
//!   * p2m leaves: each MFN turned back into a pfn;
//!   * the frame-list and frame-list-list pages of a tree p2m left out: a
//!     restore copies them as they were (source MFNs) and the guest rebuilds
//!     them when it runs;
//!   * start_info: store/console frames as pfns; `nr_pages`, `shared_info`,
//!     `flags` and both event channels left out (restore rewrites them from
//!     its own arguments);
//! * `shared-info` — the 32 `vcpu_info`s without `evtchn_pending_sel`, and
//!   `arch.max_pfn`, `nmi_reason`, `p2m_vaddr`, `p2m_generation`; not the
//!   event-channel arrays (restore clears pending and masks all), the wall
//!   clock (Xen's), `pfn_to_mfn_frame_list_list` (restore zeroes it) or
//!   `p2m_cr3` (the source's frame until the guest runs again);
//! * `vcpus` — per vCPU: up or down, the context with cr3, GDT frames and
//!   vCPU 0's rdx/edx (start_info) as pfns, the extended context, xsave
//!   state and MSRs.

use crate::digest::hex;
use crate::domain::{
    frame_to_cr3, get_word, pte_frame, put_word, CtxLayout, Domain, ShinfoLayout, ARCH_FLL,
    ARCH_P2M_CR3, L4_XEN_SLOTS, PAE_L2_XEN_SLOTS, PT_FRAME_MASK, PT_PRESENT, TYPE_LEVEL_MASK,
};
use crate::error::Result;
use crate::pvguest::{Kvars, StartInfoLayout, START_INFO_PFN};
use crate::{COMPAT_M2P_MFN0, PAGE_SIZE};
use sha2::{Digest, Sha256};

/// A frame as the guest's pseudo-physical view names it: its pfn when the
/// domain owns it, else itself.
fn to_pfn(d: &Domain, frame: u64) -> u64 {
    d.mfn_to_pfn(frame).unwrap_or(frame)
}

fn localise_table(d: &Domain, level: u8, page: &mut [u8]) {
    let bits32 = d.address_size() == 32;
    let xen_l2 = level == 2
        && bits32
        && pte_frame(get_word(page, *PAE_L2_XEN_SLOTS.start() * 8, 8)) == COMPAT_M2P_MFN0;
    for i in 0..512 {
        let xen = match level {
            4 => !bits32 && L4_XEN_SLOTS.contains(&i),
            3 => bits32 && i >= 4,
            2 => xen_l2 && PAE_L2_XEN_SLOTS.contains(&i),
            _ => false,
        };
        let e = get_word(page, i * 8, 8);
        let v = if xen {
            0
        } else if e & PT_PRESENT != 0 {
            (to_pfn(d, pte_frame(e)) << 12) | (e & !PT_FRAME_MASK)
        } else {
            e
        };
        put_word(page, i * 8, 8, v);
    }
}

/// The `memory` component and the number of pages hashed.
pub(crate) fn memory(d: &Domain) -> Result<(String, u64)> {
    let kv = Kvars::read(d).ok();
    let mut h = Sha256::new();
    let mut page = vec![0u8; PAGE_SIZE as usize];
    let mut pages = 0;
    for pfn in 0..=d.highest_pfn() {
        let Some(mfn) = d.pfn_to_mfn(pfn) else {
            continue;
        };
        pages += 1;
        let t = d.frame_type(mfn);
        h.update(pfn.to_le_bytes());
        h.update([t]);
        d.read_frame(mfn, &mut page)?;
        let level = t & TYPE_LEVEL_MASK;
        if level != 0 {
            localise_table(d, level, &mut page);
        } else if let Some(kv) = &kv {
            let word = kv.word();
            if kv.is_leaf(pfn) {
                for i in 0..PAGE_SIZE as usize / word {
                    let m = get_word(&page, i * word, word);
                    if let Some(p) = d.mfn_to_pfn(m) {
                        put_word(&mut page, i * word, word, p);
                    }
                }
            } else if kv.is_frame_list(pfn) {
                h.update(b"frame-list-rebuilt-by-the-guest");
                continue;
            } else if pfn == START_INFO_PFN {
                let l = StartInfoLayout::for_bits(kv.bits);
                for o in [l.store_mfn, l.console_mfn] {
                    let v = get_word(&page, o, l.word);
                    put_word(&mut page, o, l.word, to_pfn(d, v));
                }
                for o in [
                    l.nr_pages,
                    l.shared_info,
                    l.flags,
                    l.store_evtchn,
                    l.console_evtchn,
                ] {
                    put_word(&mut page, o, l.word, 0);
                }
            }
        }
        h.update(&page);
    }
    Ok((hex(&h.finalize()), pages))
}

/// The `shared-info` component.
pub(crate) fn shared_info(d: &Domain) -> Result<String> {
    let mut sh = d.read_shinfo()?;
    let l = ShinfoLayout::for_bits(d.address_size());
    let mut h = Sha256::new();
    for v in 0..32 {
        put_word(&mut sh, v * 64 + l.pending_sel, l.word, 0);
    }
    h.update(&sh[..32 * 64]);
    for f in 0..6 {
        if f != ARCH_FLL && f != ARCH_P2M_CR3 {
            h.update(get_word(&sh, l.arch_field(f), l.word).to_le_bytes());
        }
    }
    Ok(hex(&h.finalize()))
}

/// The `vcpus` component.
pub(crate) fn vcpus(d: &Domain) -> Result<String> {
    let bits32 = d.address_size() == 32;
    let l = CtxLayout::for_bits(d.address_size());
    let mut h = Sha256::new();
    for v in 0..d.vcpus() {
        if !d.vcpu_online(v) {
            h.update(b"down");
            continue;
        }
        let mut c = d.vcpu_context(v)?;
        let cr3 = l.ctrlreg + 3 * l.word;
        let root = to_pfn(d, l.cr3_frame(&c));
        l.put(&mut c, cr3, frame_to_cr3(bits32, root));
        for i in 0..l.get(&c, l.gdt_ents).div_ceil(512).min(16) as usize {
            let o = l.gdt_frames + i * l.word;
            let f = l.get(&c, o);
            l.put(&mut c, o, to_pfn(d, f));
        }
        if v == 0 {
            let rdx = l.get(&c, l.rdx);
            l.put(&mut c, l.rdx, to_pfn(d, rdx));
        }
        h.update(&c);
        h.update(d.ext_vcpu_context(v)?);
        h.update(d.vcpu_xsave(v)?);
        for (i, val) in d.vcpu_msrs(v)? {
            h.update(i.to_le_bytes());
            h.update(val.to_le_bytes());
        }
    }
    Ok(hex(&h.finalize()))
}
