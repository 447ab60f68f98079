//! The PV guest's own side: what a PV kernel has in memory once booted
//! (built by `xensim domain create --type pv`), and what it does itself at
//! suspend and when it runs again after a resume or a restore.
//!
//! Pseudo-physical layout of a guest of N pages (pfns `0..N`):
//! * pfn 0: the kernel's variables ([`Kvars`]): where its p2m, page tables
//!   and start_info are, as pfns and virtual addresses (never MFNs), so the
//!   guest finds them again after a restore to other MFNs;
//! * pfn 1: start_info; 2: xenstore ring; 3: console ring; 4..4+V: one GDT
//!   frame per vCPU;
//! * the p2m leaves (guest-width MFN entries), then for the tree layout the
//!   frame-list pages and the frame-list-list page;
//! * the page tables: the root (L4, or the PAE L3), a direct map of RAM
//!   (64-bit: all of it at 0xffff888000000000; 32-bit: up to 768 MiB at
//!   0xc0000000), for the linear layout the tables mapping the p2m at
//!   `P2M_VADDR`, and a few user mappings of RAM pages;
//! * the rest is RAM, filled by `--fill`.
//!
//! Page-table pages, GDT frames and start_info are mapped read-only in the
//! direct map, as Xen requires of frames it types. The root is pinned, and
//! setting each vCPU's context types every table under it.

use crate::domain::{frame_to_cr3, Domain, ShinfoLayout};
use crate::error::{err, Result};
use crate::layout::{mix, page_content, Content, Rng};
use crate::{DomainConfig, MmuextOp, P2mLayout, PAGE_SIZE};

use crate::domain::{PT_ACCESSED, PT_DIRTY, PT_NX, PT_PRESENT, PT_RW, PT_USER};
const KERNEL_TABLE: u64 = PT_PRESENT | PT_RW | PT_ACCESSED | PT_DIRTY;
const USER_TABLE: u64 = KERNEL_TABLE | PT_USER;

/// Magic of the kernel-variables page.
const KVARS_MAGIC: u64 = u64::from_le_bytes(*b"XSIMKVAR");
/// pfn of the kernel-variables page.
pub(crate) const KVARS_PFN: u64 = 0;
pub(crate) const START_INFO_PFN: u64 = 1;
const STORE_PFN: u64 = 2;
const CONSOLE_PFN: u64 = 3;
const GDT_PFN0: u64 = 4;
/// User mappings per guest: RAM pages mapped at `USER_VADDR`.
pub(crate) const USER_PAGES: u64 = 64;
const DIRECT_64: u64 = 0xffff_8880_0000_0000;
const P2M_VADDR_64: u64 = 0xffff_c900_0000_0000;
const USER_VADDR_64: u64 = 0x40_0000;
const DIRECT_32: u64 = 0xc000_0000;
const P2M_VADDR_32: u64 = 0xf200_0000;
const USER_VADDR_32: u64 = 0x0400_0000;
/// Pages a 32-bit guest's direct map covers at most (768 MiB).
const DIRECT_MAX_32: u64 = 384 * 512;

/// The kernel's variables, in guest RAM at [`KVARS_PFN`] (u64 fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Kvars {
    pub bits: u64,
    pub tree: bool,
    pub nr_pages: u64,
    pub leaf0: u64,
    pub leaves: u64,
    pub fl0: u64,
    pub fls: u64,
    pub fll: u64,
    pub root: u64,
    pub pt0: u64,
    pub pts: u64,
    pub p2m_vaddr: u64,
    /// pfn of the first of the [`USER_PAGES`] L1 entries' page (the user L1).
    pub user_l1: u64,
}

impl Kvars {
    fn to_page(self) -> Vec<u8> {
        let f = [
            KVARS_MAGIC,
            self.bits,
            u64::from(self.tree),
            self.nr_pages,
            self.leaf0,
            self.leaves,
            self.fl0,
            self.fls,
            self.fll,
            self.root,
            self.pt0,
            self.pts,
            self.p2m_vaddr,
            self.user_l1,
        ];
        let mut p = vec![0u8; PAGE_SIZE as usize];
        for (i, v) in f.iter().enumerate() {
            p[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        p
    }

    /// Read the guest's variables (EINVAL if pfn 0 doesn't hold them).
    pub(crate) fn read(d: &Domain) -> Result<Kvars> {
        let mfn = d
            .pfn_to_mfn(KVARS_PFN)
            .ok_or_else(|| crate::Error::new(libc::EINVAL, "guest has no kernel page"))?;
        let mut p = vec![0u8; PAGE_SIZE as usize];
        d.read_frame(mfn, &mut p)?;
        let g = |i: usize| u64::from_le_bytes(p[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        if g(0) != KVARS_MAGIC {
            return err(libc::EINVAL, "pfn 0 is not a xensim PV kernel page");
        }
        Ok(Kvars {
            bits: g(1),
            tree: g(2) != 0,
            nr_pages: g(3),
            leaf0: g(4),
            leaves: g(5),
            fl0: g(6),
            fls: g(7),
            fll: g(8),
            root: g(9),
            pt0: g(10),
            pts: g(11),
            p2m_vaddr: g(12),
            user_l1: g(13),
        })
    }

    /// Entries per p2m page (and per frame-list page).
    pub(crate) fn epp(&self) -> u64 {
        if self.bits == 32 {
            1024
        } else {
            512
        }
    }

    pub(crate) fn word(&self) -> usize {
        if self.bits == 32 {
            4
        } else {
            8
        }
    }

    pub(crate) fn is_leaf(&self, pfn: u64) -> bool {
        (self.leaf0..self.leaf0 + self.leaves).contains(&pfn)
    }

    /// The frame-list and frame-list-list pages (tree layout).
    pub(crate) fn is_frame_list(&self, pfn: u64) -> bool {
        self.tree && ((self.fl0..self.fl0 + self.fls).contains(&pfn) || pfn == self.fll)
    }
}

/// Page tables under construction: pfn -> 512 entries (pfns in frames,
/// translated to MFNs when written).
struct Tables {
    next: u64,
    pages: Vec<(u64, Vec<u64>)>,
}

impl Tables {
    fn alloc(&mut self) -> usize {
        self.pages.push((self.next, vec![0u64; 512]));
        self.next += 1;
        self.pages.len() - 1
    }

    fn pfn(&self, t: usize) -> u64 {
        self.pages[t].0
    }

    /// Map `vaddr` -> `pfn` under root table `root` (levels 4 or 3),
    /// creating intermediate tables.
    fn map(&mut self, root: usize, levels: u32, vaddr: u64, pfn: u64, flags: u64, tbl: u64) {
        let mut t = root;
        for level in (2..=levels).rev() {
            let shift = 12 + 9 * (level - 1);
            let idx = ((vaddr >> shift) & 511) as usize;
            let e = self.pages[t].1[idx];
            t = if e & PT_PRESENT != 0 {
                self.pages
                    .iter()
                    .position(|(p, _)| *p == e >> 12)
                    .unwrap_or(t)
            } else {
                let n = self.alloc();
                // PAE L3 entries carry only PRESENT (Xen refuses RW/USER there).
                let f = if levels == 3 && level == 3 {
                    PT_PRESENT
                } else {
                    tbl
                };
                self.pages[t].1[idx] = (self.pfn(n) << 12) | f;
                n
            };
        }
        let idx = ((vaddr >> 12) & 511) as usize;
        self.pages[t].1[idx] = (pfn << 12) | flags;
    }
}

/// Build a created PV guest's memory image, vCPUs and shared_info.
/// Returns the MFNs of the xenstore and console rings (for the grant table).
pub(crate) fn build(d: &Domain, cfg: &DomainConfig) -> Result<(u64, u64)> {
    let bits = u64::from(cfg.address_size);
    let nr = cfg.memory_bytes / PAGE_SIZE;
    let mfns = d.populate(&(0..nr).collect::<Vec<_>>())?;
    let vcpus = u64::from(cfg.vcpus);
    let epp: u64 = if bits == 32 { 1024 } else { 512 };
    let word = (bits / 8) as usize;
    let tree = cfg.p2m_layout == P2mLayout::Tree;
    let leaf0 = GDT_PFN0 + vcpus;
    let leaves = nr.div_ceil(epp);
    let (fl0, fls) = (leaf0 + leaves, if tree { leaves.div_ceil(epp) } else { 0 });
    let fll = fl0 + fls;
    let pt0 = fll + u64::from(tree);
    let levels = if bits == 32 { 3 } else { 4 };
    let mut t = Tables {
        next: pt0,
        pages: Vec::new(),
    };
    let root = t.alloc();
    let direct = if bits == 32 { DIRECT_32 } else { DIRECT_64 };
    let direct_pages = if bits == 32 {
        nr.min(DIRECT_MAX_32)
    } else {
        nr
    };
    // Reserve the direct map's tables first so that how many there are is
    // known before deciding which pfns they occupy (they are read-only).
    for pfn in (0..direct_pages).step_by(512) {
        t.map(root, levels, direct + pfn * PAGE_SIZE, 0, 0, KERNEL_TABLE);
    }
    let p2m_vaddr = if tree {
        direct + leaf0 * PAGE_SIZE
    } else {
        let v = if bits == 32 {
            P2M_VADDR_32
        } else {
            P2M_VADDR_64
        };
        for k in 0..leaves {
            t.map(
                root,
                levels,
                v + k * PAGE_SIZE,
                leaf0 + k,
                KERNEL_TABLE | PT_NX,
                KERNEL_TABLE,
            );
        }
        v
    };
    let user = if bits == 32 {
        USER_VADDR_32
    } else {
        USER_VADDR_64
    };
    let ram0 = t.next + 8; // past every table (a margin for the user ones)
    let mut rng = Rng::new(mix(cfg.seed, 0, 60));
    for k in 0..USER_PAGES.min(nr.saturating_sub(ram0)) {
        let pfn = ram0 + rng.next_u64() % (nr - ram0);
        t.map(
            root,
            levels,
            user + k * PAGE_SIZE,
            pfn,
            USER_TABLE,
            USER_TABLE,
        );
    }
    let pts = t.next - pt0;
    let pt_end = t.next;
    if t.next > ram0 || ram0 >= nr {
        return err(libc::EINVAL, "memory too small for a PV guest");
    }
    let user_l1 = t.pfn(t.pages.len() - 1);
    let read_only = |pfn: u64| {
        (GDT_PFN0..GDT_PFN0 + vcpus).contains(&pfn)
            || (pt0..pt_end).contains(&pfn)
            || pfn == START_INFO_PFN
    };
    for pfn in 0..direct_pages {
        let f = if read_only(pfn) {
            PT_PRESENT | PT_ACCESSED | PT_NX
        } else {
            KERNEL_TABLE | PT_NX
        };
        t.map(root, levels, direct + pfn * PAGE_SIZE, pfn, f, KERNEL_TABLE);
    }
    let kv = Kvars {
        bits,
        tree,
        nr_pages: nr,
        leaf0,
        leaves,
        fl0,
        fls,
        fll,
        root: t.pfn(root),
        pt0,
        pts,
        p2m_vaddr,
        user_l1,
    };
    let mfn = |pfn: u64| mfns[pfn as usize];
    // Page tables, frames translated to MFNs.
    for (pfn, entries) in &t.pages {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        for (i, &e) in entries.iter().enumerate() {
            if e & PT_PRESENT != 0 {
                let v =
                    (mfn((e & 0x000f_ffff_ffff_f000) >> 12) << 12) | (e & !0x000f_ffff_ffff_f000);
                page[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        d.write_frame(mfn(*pfn), &page)?;
    }
    // The p2m leaves and, for the tree, the frame lists.
    let write_list = |first: u64, vals: &mut dyn Iterator<Item = u64>, count: u64| -> Result<()> {
        let vals: Vec<u64> = vals.collect();
        for k in 0..count {
            let mut page = vec![0xffu8; PAGE_SIZE as usize];
            for (i, v) in vals
                .iter()
                .skip((k * epp) as usize)
                .take(epp as usize)
                .enumerate()
            {
                page[i * word..(i + 1) * word].copy_from_slice(&v.to_le_bytes()[..word]);
            }
            d.write_frame(mfn(first + k), &page)?;
        }
        Ok(())
    };
    write_list(leaf0, &mut mfns.iter().copied(), leaves)?;
    d.write_frame(mfn(KVARS_PFN), &kv.to_page())?;
    let special = |pfn: u64| pfn < pt_end;
    let mut page = vec![0u8; PAGE_SIZE as usize];
    for pfn in 0..nr {
        if special(pfn) && pfn != STORE_PFN && pfn != CONSOLE_PFN {
            continue;
        }
        let c = if special(pfn) {
            Content::Ring
        } else {
            Content::Ram
        };
        if page_content(cfg.fill, cfg.seed, pfn, c, &mut page) {
            d.write_frame(mfn(pfn), &page)?;
        }
    }
    for v in 0..vcpus {
        d.write_frame(mfn(GDT_PFN0 + v), &gdt_page())?;
    }
    write_start_info(
        d,
        &kv,
        mfn(START_INFO_PFN),
        mfn(STORE_PFN),
        mfn(CONSOLE_PFN),
    )?;
    let mut sh = vec![0u8; PAGE_SIZE as usize];
    Rng::new(mix(cfg.seed, 0, 61)).fill(&mut sh[..32 * 64]);
    d.write_shinfo(&sh)?;
    publish_p2m(d, &kv)?;
    let pin = crate::MMUEXT_PIN_L1_TABLE + levels - 1;
    d.mmuext_op(&[MmuextOp {
        cmd: pin,
        arg1: mfn(kv.root),
        arg2: 0,
    }])?;
    for v in 0..cfg.vcpus {
        crate::pvcpu::init_vcpu(d, v, cfg.seed, mfn(kv.root), mfn(GDT_PFN0 + u64::from(v)))?;
    }
    Ok((mfn(STORE_PFN), mfn(CONSOLE_PFN)))
}

/// Linux's GDT: 16 descriptors (flat kernel/user code and data).
fn gdt_page() -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE as usize];
    let descs: [u64; 8] = [
        0,
        0x00cf_9b00_0000_ffff,
        0x00af_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x00cf_fb00_0000_ffff,
        0x00cf_f300_0000_ffff,
        0x00af_fb00_0000_ffff,
        0,
    ];
    for (i, v) in descs.iter().enumerate() {
        p[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    p
}

/// start_info offsets by width: nr_pages, shared_info, flags, store_mfn,
/// store_evtchn, console mfn, console evtchn, pt_base, nr_pt_frames,
/// mfn_list, cmd_line, first_p2m_pfn, nr_p2m_frames.
pub(crate) struct StartInfoLayout {
    pub word: usize,
    pub nr_pages: usize,
    pub shared_info: usize,
    pub flags: usize,
    pub store_mfn: usize,
    pub store_evtchn: usize,
    pub console_mfn: usize,
    pub console_evtchn: usize,
    pub pt_base: usize,
    pub nr_pt_frames: usize,
    pub mfn_list: usize,
    pub cmd_line: usize,
    pub first_p2m_pfn: usize,
    pub nr_p2m_frames: usize,
}

impl StartInfoLayout {
    pub(crate) fn for_bits(bits: u64) -> StartInfoLayout {
        if bits == 32 {
            StartInfoLayout {
                word: 4,
                nr_pages: 32,
                shared_info: 36,
                flags: 40,
                store_mfn: 44,
                store_evtchn: 48,
                console_mfn: 52,
                console_evtchn: 56,
                pt_base: 60,
                nr_pt_frames: 64,
                mfn_list: 68,
                cmd_line: 80,
                first_p2m_pfn: 1104,
                nr_p2m_frames: 1108,
            }
        } else {
            StartInfoLayout {
                word: 8,
                nr_pages: 32,
                shared_info: 40,
                flags: 48,
                store_mfn: 56,
                store_evtchn: 64,
                console_mfn: 72,
                console_evtchn: 80,
                pt_base: 88,
                nr_pt_frames: 96,
                mfn_list: 104,
                cmd_line: 128,
                first_p2m_pfn: 1152,
                nr_p2m_frames: 1160,
            }
        }
    }
}

fn write_start_info(d: &Domain, kv: &Kvars, at: u64, store: u64, console: u64) -> Result<()> {
    let l = StartInfoLayout::for_bits(kv.bits);
    let mut p = vec![0u8; PAGE_SIZE as usize];
    let magic: &[u8] = if kv.bits == 32 {
        b"xen-3.0-x86_32p"
    } else {
        b"xen-3.0-x86_64"
    };
    p[..magic.len()].copy_from_slice(magic);
    let direct = if kv.bits == 32 { DIRECT_32 } else { DIRECT_64 };
    let put = |p: &mut [u8], o: usize, v: u64| {
        p[o..o + l.word].copy_from_slice(&v.to_le_bytes()[..l.word])
    };
    put(&mut p, l.nr_pages, kv.nr_pages);
    put(&mut p, l.shared_info, d.info()?.shared_info_frame << 12);
    put(&mut p, l.store_mfn, store);
    put(&mut p, l.store_evtchn, 1);
    put(&mut p, l.console_mfn, console);
    put(&mut p, l.console_evtchn, 2);
    put(&mut p, l.pt_base, direct + kv.root * PAGE_SIZE);
    put(&mut p, l.nr_pt_frames, kv.pts);
    put(&mut p, l.mfn_list, kv.p2m_vaddr);
    let cmd = b"root=/dev/xvda1 ro console=hvc0";
    p[l.cmd_line..l.cmd_line + cmd.len()].copy_from_slice(cmd);
    put(&mut p, l.first_p2m_pfn, kv.leaf0);
    put(&mut p, l.nr_p2m_frames, kv.leaves);
    d.write_frame(at, &p)
}

/// The guest publishes its p2m in shared_info: `max_pfn`, and either the
/// frame-list tree (rewriting the frame lists with the current MFNs) or
/// `p2m_cr3`/`p2m_vaddr` (the generation is left as it is: the p2m itself
/// did not change).
pub(crate) fn publish_p2m(d: &Domain, kv: &Kvars) -> Result<()> {
    let mfn = |pfn: u64| {
        d.pfn_to_mfn(pfn).ok_or_else(|| {
            crate::Error::new(libc::EINVAL, format!("guest pfn {pfn:#x} has no page"))
        })
    };
    let (epp, word) = (kv.epp(), kv.word());
    let mut sh = d.read_shinfo()?;
    let l = ShinfoLayout::for_bits(kv.bits as u32);
    let put = |sh: &mut [u8], i: usize, v: u64| {
        let o = l.arch_field(i);
        sh[o..o + word].copy_from_slice(&v.to_le_bytes()[..word]);
    };
    put(&mut sh, 0, kv.nr_pages);
    if kv.tree {
        let list = |first: u64,
                    count: u64,
                    of: &mut dyn FnMut(u64) -> Result<u64>,
                    n: u64|
         -> Result<()> {
            for k in 0..count {
                let mut page = vec![0u8; PAGE_SIZE as usize];
                for i in 0..epp.min(n.saturating_sub(k * epp)) {
                    let v = of(k * epp + i)?;
                    page[(i as usize) * word..(i as usize + 1) * word]
                        .copy_from_slice(&v.to_le_bytes()[..word]);
                }
                d.write_frame(mfn(first + k)?, &page)?;
            }
            Ok(())
        };
        list(kv.fl0, kv.fls, &mut |i| mfn(kv.leaf0 + i), kv.leaves)?;
        list(kv.fll, 1, &mut |i| mfn(kv.fl0 + i), kv.fls)?;
        put(&mut sh, 1, mfn(kv.fll)?);
        put(&mut sh, 3, 0);
    } else {
        put(&mut sh, 1, 0);
        put(&mut sh, 3, frame_to_cr3(kv.bits == 32, mfn(kv.root)?));
        put(&mut sh, 4, kv.p2m_vaddr);
    }
    d.write_shinfo(&sh)
}
