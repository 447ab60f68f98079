//! Guest-physical layout of a newly built guest, like Xen's domain builder
//! and hvmloader leave it, and deterministic page contents.

use crate::error::{err, Result};
use crate::params::*;
use crate::{DomainConfig, Fill, GuestType, GFN_LIMIT, PAGE_SIZE};
use std::ops::Range;

/// `special_pfn(0)` of the domain builder: the 8 special pages are
/// `0xfeff8..=0xfefff`, the 8 ioreq-server pages (HVM with a device model)
/// `0xfeff0..=0xfeff7`.
pub const SPECIAL_PFN_BASE: u64 = 0xff000 - 8;
const IOREQ_SERVER_PFN: u64 = SPECIAL_PFN_BASE - 8;
const NR_IOREQ_SERVER_PAGES: u64 = 8;
/// Special page indices (`SPECIALPAGE_*`).
const SP_PAGING: u64 = 0;
const SP_ACCESS: u64 = 1;
const SP_SHARING: u64 = 2;
const SP_BUFIOREQ: u64 = 3;
const SP_XENSTORE: u64 = 4;
const SP_IOREQ: u64 = 5;
const SP_IDENT_PT: u64 = 6;
const SP_CONSOLE: u64 = 7;
/// Start of the MMIO hole below 4 GiB (libxl's default 256 MiB hole).
const LOWMEM_END_PFN: u64 = 0xf0000;
/// The legacy VGA hole an HVM builder skips.
const VGA_HOLE: Range<u64> = 0xa0..0xc0;
/// RAM above 4 GiB starts here.
const HIGHMEM_START_PFN: u64 = 0x100000;
/// hvmloader's reserved area (ACPI tables, VM86 TSS), populated by hvmloader.
const HVMLOADER_PFN: u64 = 0xfc000;
const HVMLOADER_PAGES: u64 = 16;
/// Extra pages `max_pages` allows above the configured RAM (like libxl's
/// slack for special pages and firmware).
pub(crate) const MAX_PAGES_SLACK: u64 = 1024;

/// What a special page holds when built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// Ordinary RAM: contents follow the fill mode.
    Ram,
    /// A page the builder cleared and nobody has written since.
    Zero,
    /// Ring data of an active ring (xenstore, console, ioreq): random.
    Ring,
    /// The identity-map page table (4 MiB PSE entries).
    IdentPt,
}

/// Where a new guest's pages are and which params point at them.
#[derive(Debug, Clone)]
pub struct MemoryLayout {
    /// RAM ranges (gfns), ascending.
    pub ram: Vec<Range<u64>>,
    /// Other populated pages (firmware area, special pages), ascending.
    pub extra: Vec<u64>,
    /// Params the builder/hvmloader/libxl set: (index, value).
    pub params: Vec<(u32, u64)>,
    pub(crate) extra_content: Vec<Content>,
}

impl MemoryLayout {
    /// The layout for `cfg` (ignores `cfg.empty`).
    pub fn for_config(cfg: &DomainConfig) -> Result<MemoryLayout> {
        if cfg.memory_bytes % PAGE_SIZE != 0 || cfg.memory_bytes < (1 << 20) {
            return err(
                libc::EINVAL,
                "memory must be a multiple of 4 KiB and at least 1 MiB",
            );
        }
        let pages = cfg.memory_bytes / PAGE_SIZE;
        let hvm = match cfg.guest_type {
            GuestType::Hvm => true,
            GuestType::Pvh => false,
            // A PV guest's pfns are just 0..pages: no holes, no special
            // pages, no params (its rings are found through start_info).
            GuestType::Pv => {
                if pages > GFN_LIMIT / 2 {
                    return err(
                        libc::EINVAL,
                        "memory too large for the simulated address space",
                    );
                }
                // One RAM range (a list of one range, not a list of pfns).
                #[allow(clippy::single_range_in_vec_init)]
                let ram = vec![0..pages];
                return Ok(MemoryLayout {
                    ram,
                    extra: Vec::new(),
                    params: Vec::new(),
                    extra_content: Vec::new(),
                });
            }
        };
        let mut ram = Vec::new();
        let low_capacity = if hvm {
            LOWMEM_END_PFN - (VGA_HOLE.end - VGA_HOLE.start)
        } else {
            LOWMEM_END_PFN
        };
        let low = pages.min(low_capacity);
        if hvm {
            ram.push(0..low.min(VGA_HOLE.start));
            if low > VGA_HOLE.start {
                ram.push(VGA_HOLE.end..VGA_HOLE.end + (low - VGA_HOLE.start));
            }
        } else {
            ram.push(0..low);
        }
        let high = pages - low;
        if high > 0 {
            if HIGHMEM_START_PFN + high > GFN_LIMIT {
                return err(
                    libc::EINVAL,
                    "memory too large for the simulated address space",
                );
            }
            ram.push(HIGHMEM_START_PFN..HIGHMEM_START_PFN + high);
        }
        let sp = |i: u64| SPECIAL_PFN_BASE + i;
        let mut extra = Vec::new();
        let mut extra_content = Vec::new();
        if hvm {
            for i in 0..HVMLOADER_PAGES {
                extra.push(HVMLOADER_PFN + i);
                extra_content.push(Content::Ram);
            }
            for i in 0..NR_IOREQ_SERVER_PAGES {
                extra.push(IOREQ_SERVER_PFN + i);
                extra_content.push(Content::Zero);
            }
        }
        for i in 0..8 {
            extra.push(sp(i));
            extra_content.push(match i {
                SP_BUFIOREQ | SP_XENSTORE | SP_IOREQ | SP_CONSOLE => Content::Ring,
                SP_IDENT_PT => Content::IdentPt,
                _ => Content::Zero,
            });
        }
        let mut params = vec![
            (HVM_PARAM_STORE_PFN, sp(SP_XENSTORE)),
            (HVM_PARAM_BUFIOREQ_PFN, sp(SP_BUFIOREQ)),
            (HVM_PARAM_IOREQ_PFN, sp(SP_IOREQ)),
            (HVM_PARAM_CONSOLE_PFN, sp(SP_CONSOLE)),
            (HVM_PARAM_PAGING_RING_PFN, sp(SP_PAGING)),
            (HVM_PARAM_MONITOR_RING_PFN, sp(SP_ACCESS)),
            (HVM_PARAM_SHARING_RING_PFN, sp(SP_SHARING)),
            (HVM_PARAM_IDENT_PT, sp(SP_IDENT_PT) << 12),
            (HVM_PARAM_STORE_EVTCHN, 1),
            (HVM_PARAM_CONSOLE_EVTCHN, 2),
            (HVM_PARAM_TIMER_MODE, 1),
            (HVM_PARAM_VPT_ALIGN, 1),
        ];
        if hvm {
            params.extend([
                (HVM_PARAM_IOREQ_SERVER_PFN, IOREQ_SERVER_PFN),
                (HVM_PARAM_NR_IOREQ_SERVER_PAGES, NR_IOREQ_SERVER_PAGES),
                (HVM_PARAM_HPET_ENABLED, 1),
                (HVM_PARAM_ACPI_IOPORTS_LOCATION, 1),
                // hvmloader's VM86 TSS in its reserved area, 128 bytes.
                (
                    HVM_PARAM_VM86_TSS_SIZED,
                    (128 << 32) | ((HVMLOADER_PFN + HVMLOADER_PAGES - 1) << 12),
                ),
                // A PV-driver-aware guest registers a vector callback.
                (HVM_PARAM_CALLBACK_IRQ, (2 << 56) | 0xf3),
            ]);
        }
        Ok(MemoryLayout {
            ram,
            extra,
            params,
            extra_content,
        })
    }

    /// Number of RAM pages.
    pub fn ram_pages(&self) -> u64 {
        self.ram.iter().map(|r| r.end - r.start).sum()
    }

    /// Every populated gfn in ascending order (RAM then extras, merged).
    pub fn populated_gfns(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.ram.iter().flat_map(|r| r.clone()).collect();
        v.extend(&self.extra);
        v.sort_unstable();
        v
    }
}

/// A small, fast, deterministic generator (wyrand).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Mix a seed with a gfn and a domain of use into an independent stream seed.
pub(crate) fn mix(seed: u64, gfn: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(gfn.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fill `buf` (one page) with the built content of `gfn`; returns false if
/// the page is all zero (and leaves `buf` untouched).
pub(crate) fn page_content(
    fill: Fill,
    seed: u64,
    gfn: u64,
    content: Content,
    buf: &mut [u8],
) -> bool {
    match content {
        Content::Zero => false,
        Content::IdentPt => {
            for (i, c) in buf.chunks_exact_mut(4).enumerate() {
                let e = ((i as u32) << 22) | 0xe7;
                c.copy_from_slice(&e.to_le_bytes());
            }
            true
        }
        Content::Ring => {
            Rng::new(mix(seed, gfn, 2)).fill(buf);
            true
        }
        Content::Ram => {
            let nonzero = match fill {
                Fill::Zero => false,
                Fill::Random => true,
                Fill::Mixed => mix(seed, gfn, 1) & 1 == 1,
                Fill::Realistic => {
                    let kind = crate::realistic::page_kind(seed, gfn);
                    if kind == crate::realistic::PageKind::Zero {
                        return false;
                    }
                    crate::realistic::fill_page(kind, mix(seed, gfn, 4), buf);
                    return true;
                }
            };
            if nonzero {
                Rng::new(mix(seed, gfn, 3)).fill(buf);
            }
            nonzero
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(t: GuestType, mem: u64) -> DomainConfig {
        DomainConfig {
            guest_type: t,
            memory_bytes: mem,
            ..Default::default()
        }
    }

    #[test]
    fn hvm_layout_skips_vga_hole_and_keeps_ram_below_mmio_hole() {
        let l = MemoryLayout::for_config(&cfg(GuestType::Hvm, 256 << 20)).unwrap();
        assert_eq!(l.ram_pages(), 65536);
        assert_eq!(l.ram[0], 0..0xa0);
        assert_eq!(l.ram[1].start, 0xc0);
        assert!(l.populated_gfns().contains(&0xfefff));
        assert!(l.populated_gfns().contains(&0xfeff0));
        assert!(!l.populated_gfns().contains(&0xa5));
    }

    #[test]
    fn big_hvm_guest_gets_ram_above_4g() {
        let l = MemoryLayout::for_config(&cfg(GuestType::Hvm, 4 << 30)).unwrap();
        assert_eq!(l.ram_pages(), 1 << 20);
        let last = l.ram.last().unwrap();
        assert_eq!(last.start, 0x100000);
    }

    #[test]
    fn pvh_layout_has_no_ioreq_server_pages() {
        let l = MemoryLayout::for_config(&cfg(GuestType::Pvh, 256 << 20)).unwrap();
        let g = l.populated_gfns();
        assert!(!g.contains(&0xfeff0));
        assert!(g.contains(&0xfeff8));
        assert!(!l
            .params
            .iter()
            .any(|(i, _)| *i == HVM_PARAM_IOREQ_SERVER_PFN));
    }

    #[test]
    fn pv_layout_is_pfns_from_zero_without_special_pages() {
        let l = MemoryLayout::for_config(&cfg(GuestType::Pv, 256 << 20)).unwrap();
        assert_eq!(l.ram, vec![0..65536]);
        assert!(l.extra.is_empty() && l.params.is_empty());
    }

    #[test]
    fn mixed_fill_is_about_half_zero_and_deterministic() {
        let mut buf = vec![0u8; 4096];
        let n = (0..1000)
            .filter(|&g| page_content(Fill::Mixed, 7, g, Content::Ram, &mut buf))
            .count();
        assert!((400..600).contains(&n), "{n}");
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        page_content(Fill::Random, 7, 5, Content::Ram, &mut a);
        page_content(Fill::Random, 7, 5, Content::Ram, &mut b);
        assert_eq!(a, b);
        page_content(Fill::Random, 8, 5, Content::Ram, &mut b);
        assert_ne!(a, b);
    }
}
