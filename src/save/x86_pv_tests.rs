//! The pure parts of the PV save: the p2m walks over a small in-memory
//! set of guest frames, the pseudo-physmap test and the vCPU conversions.

use std::collections::HashMap;

use super::*;
use crate::x86::pv::{pte_with_frame, PTE_PRESENT};

/// Guest frames by MFN.
#[derive(Default)]
struct Frames(HashMap<u64, Vec<u8>>);

impl Frames {
    fn page(&mut self, mfn: u64) -> &mut Vec<u8> {
        self.0.entry(mfn).or_insert_with(|| vec![0u8; PAGE_SIZE])
    }

    /// Guest-width words from entry `at` of frame `mfn`.
    fn words(&mut self, width: GuestWidth, mfn: u64, at: usize, words: &[u64]) {
        let w = usize::from(width.bytes());
        let page = self.page(mfn);
        for (i, v) in words.iter().enumerate() {
            let o = (at + i) * w;
            match width {
                GuestWidth::Bits64 => page[o..o + 8].copy_from_slice(&v.to_le_bytes()),
                GuestWidth::Bits32 => page[o..o + 4].copy_from_slice(&(*v as u32).to_le_bytes()),
            }
        }
    }

    fn pte(&mut self, mfn: u64, index: u64, target: u64) {
        let pte = pte_with_frame(PTE_PRESENT | 0x62, target);
        let o = index as usize * 8;
        self.page(mfn)[o..o + 8].copy_from_slice(&pte.to_le_bytes());
    }

    fn reader(&self) -> impl FnMut(&str, &[u64]) -> Result<Vec<u8>, SaveError> + '_ {
        |what, mfns| {
            let mut out = Vec::new();
            for m in mfns {
                let Some(p) = self.0.get(m) else {
                    return Err(SaveError::Protocol(format!("{what}: no frame {m:#x}")));
                };
                out.extend_from_slice(p);
            }
            Ok(out)
        }
    }
}

/// Page tables mapping `leaves` at `vaddr` under a root at `root`, new
/// tables taken from `next` on.
fn map_linear(
    f: &mut Frames,
    width: GuestWidth,
    root: u64,
    vaddr: u64,
    leaves: &[u64],
    mut next: u64,
) {
    f.page(root);
    let mut tables: HashMap<(u32, u64), u64> = HashMap::new();
    for (i, &leaf) in leaves.iter().enumerate() {
        let va = vaddr + (i * PAGE_SIZE) as u64;
        let mut table = root;
        for level in (2..=u32::from(width.levels())).rev() {
            let shift = level * 9 + 3;
            let key = (level, va >> shift);
            let child = *tables.entry(key).or_insert_with(|| {
                next += 1;
                next
            });
            f.pte(table, (va >> shift) & 511, child);
            table = child;
        }
        f.pte(table, (va >> 12) & 511, leaf);
    }
}

#[test]
fn a_64_bit_tree_names_its_leaves_through_the_frame_lists() {
    let w = GuestWidth::Bits64;
    let mut f = Frames::default();
    f.words(w, 10, 0, &[11]);
    f.words(w, 11, 0, &[100, 101, 102]);
    let found = walk_p2m_tree(w, 10, 1199, 1 << 20, &mut f.reader()).unwrap();
    assert_eq!(
        found,
        P2mFound {
            max_pfn: 1199,
            leaves: vec![100, 101, 102]
        }
    );
}

#[test]
fn a_tree_whose_last_frame_lists_repeat_is_trimmed_to_the_last_distinct_one() {
    let w = GuestWidth::Bits32;
    let fpp = 1024u64;
    let mut f = Frames::default();
    f.words(w, 10, 0, &[11, 12, 12]);
    let leaves: Vec<u64> = (0..2 * fpp).map(|i| 5000 + i).collect();
    f.words(w, 11, 0, &leaves[..1024]);
    f.words(w, 12, 0, &leaves[1024..]);
    let found = walk_p2m_tree(w, 10, 3 * fpp * fpp - 1, 1 << 20, &mut f.reader()).unwrap();
    assert_eq!(found.max_pfn, 2 * fpp * fpp - 1);
    assert_eq!(found.leaves, leaves);
}

#[test]
fn a_tree_with_a_frame_outside_the_host_is_refused_naming_the_entry() {
    let w = GuestWidth::Bits64;
    let mut f = Frames::default();
    f.words(w, 10, 0, &[11]);
    f.words(w, 11, 0, &[100, 0]);
    let e = walk_p2m_tree(w, 10, 1000, 1 << 20, &mut f.reader()).unwrap_err();
    assert_eq!(e.errno(), libc::ERANGE);
    assert_eq!(
        e.to_string(),
        "Bad mfn 0x0 at index 1 (of 2) in p2m frame list"
    );
    let e = walk_p2m_tree(w, 1 << 21, 1000, 1 << 20, &mut f.reader()).unwrap_err();
    assert!(e.to_string().contains("frame list list"), "{e}");
    // A 32-bit ~0 is the invalid frame, beyond any host.
    let w = GuestWidth::Bits32;
    f.words(w, 20, 0, &[0xffff_ffff]);
    let e = walk_p2m_tree(w, 20, 10, 1 << 20, &mut f.reader()).unwrap_err();
    assert!(e.to_string().contains("0xffffffffffffffff"), "{e}");
    let e = walk_p2m_tree(w, 20, 1025 * 1024 * 1024, 1 << 20, &mut f.reader()).unwrap_err();
    assert!(e.to_string().contains("too large for p2m tree"), "{e}");
}

#[test]
fn a_64_bit_linear_p2m_is_found_by_walking_four_levels_from_p2m_cr3() {
    let w = GuestWidth::Bits64;
    let mut f = Frames::default();
    let vaddr = 0xffff_c900_0000_0000;
    let leaves: Vec<u64> = (0..3).map(|i| 700 + i).collect();
    map_linear(&mut f, w, 50, vaddr, &leaves, 60);
    let cr3 = w.frame_to_cr3(50).unwrap();
    let found = walk_p2m_list(w, cr3, vaddr, 3 * 512 - 1, 1 << 20, &mut f.reader()).unwrap();
    assert_eq!(found.leaves, leaves);
    assert_eq!(found.max_pfn, 3 * 512 - 1);
    // A p2m that starts mid-table and crosses into the next L1 table.
    let vaddr = 0xffff_c900_0000_0000 + 510 * PAGE_SIZE as u64;
    let mut f = Frames::default();
    map_linear(&mut f, w, 50, vaddr, &leaves, 60);
    let found = walk_p2m_list(w, cr3, vaddr, 3 * 512 - 1, 1 << 20, &mut f.reader()).unwrap();
    assert_eq!(found.leaves, leaves);
}

#[test]
fn a_32_bit_linear_p2m_is_walked_over_pae_tables_from_an_extended_cr3() {
    let w = GuestWidth::Bits32;
    let mut f = Frames::default();
    let vaddr = 0x4000_0000 - 2 * PAGE_SIZE as u64;
    let leaves: Vec<u64> = (0..5).map(|i| 0x10_0000 + i).collect();
    let root = 0x12_3456;
    map_linear(&mut f, w, root, vaddr, &leaves, 0x20_0000);
    let cr3 = w.frame_to_cr3(root).unwrap();
    assert_ne!(cr3 >> 12, root, "the extended format folds the frame");
    let found = walk_p2m_list(w, cr3, vaddr, 5 * 1024 - 1, 1 << 24, &mut f.reader()).unwrap();
    assert_eq!(found.leaves, leaves);
}

#[test]
fn a_linear_p2m_whose_last_l1_tables_repeat_ends_before_them() {
    // Four L1 tables' worth of p2m (4 x 512 leaves), the last two L2
    // entries the same table, as a guest maps a shared page of invalid
    // entries.
    let w = GuestWidth::Bits64;
    let vaddr = 0xffff_c900_0000_0000u64;
    let mut f = Frames::default();
    let leaves: Vec<u64> = (0..1024).map(|i| 10_000 + i).collect();
    map_linear(&mut f, w, 50, vaddr, &leaves, 60);
    // map_linear made L4 50 -> L3 61 -> L2 62 -> L1 63, 64.
    for i in 0..512 {
        f.pte(65, i, 9999);
    }
    f.pte(62, 2, 65);
    f.pte(62, 3, 65);
    let cr3 = w.frame_to_cr3(50).unwrap();
    let max_pfn = 4 * 512 * 512 - 1;
    let found = walk_p2m_list(w, cr3, vaddr, max_pfn, 1 << 20, &mut f.reader()).unwrap();
    assert_eq!(found.max_pfn, 2 * 512 * 512 - 1);
    assert_eq!(found.leaves, leaves);
}

#[test]
fn a_linear_p2m_in_xens_range_or_with_a_bad_entry_is_refused() {
    let w = GuestWidth::Bits64;
    let mut f = Frames::default();
    let cr3 = w.frame_to_cr3(50).unwrap();
    map_linear(&mut f, w, 50, XEN_VIRT_START_64, &[7], 60);
    let e = walk_p2m_list(w, cr3, XEN_VIRT_START_64, 100, 1 << 20, &mut f.reader()).unwrap_err();
    assert!(
        e.to_string().starts_with("Bad virtual p2m address range"),
        "{e}"
    );
    assert_eq!(e.errno(), libc::ERANGE);
    let e =
        walk_p2m_list(w, cr3, 0x0000_8000_0000_0000, 100, 1 << 20, &mut f.reader()).unwrap_err();
    assert!(
        e.to_string().starts_with("Bad virtual p2m address range"),
        "{e}"
    );

    let vaddr = 0xffff_c900_0000_0000;
    let mut f = Frames::default();
    map_linear(&mut f, w, 50, vaddr, &[1 << 30], 60);
    let e = walk_p2m_list(w, cr3, vaddr, 100, 1 << 20, &mut f.reader()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Bad mfn 0x40000000 during page table walk for vaddr {vaddr:#x} at level 1 of p2m list"
        )
    );
    let e = walk_p2m_list(
        w,
        w.frame_to_cr3(1 << 21).unwrap(),
        vaddr,
        100,
        1 << 20,
        &mut f.reader(),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("Bad p2m_cr3 value"), "{e}");
    let e = walk_p2m_list(w, cr3, vaddr + 8, 100, 1 << 20, &mut f.reader()).unwrap_err();
    assert!(e.to_string().contains("not page aligned"), "{e}");
}

/// An M2P over a map, every other frame invalid.
struct FakeM2p {
    max_mfn: u64,
    entries: HashMap<u64, u64>,
}

impl M2pTable for FakeM2p {
    fn max_mfn(&self) -> u64 {
        self.max_mfn
    }
    fn entry(&self, mfn: u64) -> Option<u64> {
        (mfn <= self.max_mfn).then(|| self.entries.get(&mfn).copied().unwrap_or(u64::MAX))
    }
}

/// A guest of 16 pfns whose pfn p lives at MFN 0x1000 + 3p.
fn guest16() -> (FakeM2p, Vec<u64>) {
    let p2m: Vec<u64> = (0..16).map(|p| 0x1000 + 3 * p).collect();
    let entries = p2m
        .iter()
        .enumerate()
        .map(|(p, &m)| (m, p as u64))
        .collect();
    (
        FakeM2p {
            max_mfn: 0x10_0000,
            entries,
        },
        p2m,
    )
}

#[test]
fn an_mfn_is_the_guests_only_when_the_m2p_and_the_p2m_agree() {
    let (mut m2p, mut p2m) = guest16();
    m2p.entries.insert(0x5000, 3); // m2p says pfn 3, p2m[3] disagrees
    m2p.entries.insert(0x5001, 99); // beyond max_pfn
    p2m[4] = 0x6000; // p2m names a frame whose m2p is invalid
    let pp = PseudoPhys {
        m2p: &m2p,
        p2m: &p2m,
        max_pfn: 15,
    };
    assert_eq!(pp.pfn_of(0x1000 + 3 * 7), Some(7));
    for mfn in [0x5000, 0x5001, 0x6000, 0x1000 + 3 * 4, 0x20_0000, u64::MAX] {
        assert_eq!(pp.pfn_of(mfn), None, "{mfn:#x}");
    }
    assert_eq!(
        pp.describe(0x5000),
        "mfn 0x5000, max 0x100000; m2p[0x5000] = 0x3, max_pfn 0xf; p2m[0x3] = 0x1009"
    );
    let e = pp.pfn_for(0x5001, || "vcpu1's cr3".into()).unwrap_err();
    assert_eq!(e.errno(), libc::ERANGE);
    assert!(
        e.to_string()
            .starts_with("Bad mfn for vcpu1's cr3: mfn 0x5001"),
        "{e}"
    );
}

#[test]
fn vcpu_frames_go_out_as_pfns_at_both_widths() {
    let (m2p, p2m) = guest16();
    let pp = PseudoPhys {
        m2p: &m2p,
        p2m: &p2m,
        max_pfn: 15,
    };
    let mfn = |p: u64| 0x1000 + 3 * p;

    let w = GuestWidth::Bits64;
    let mut c = VcpuContext::new(w, vec![0u8; w.vcpu_context_size()]).unwrap();
    c.set_start_info_reg(mfn(2));
    c.set_gdt_frame(0, mfn(5));
    c.set_gdt_frame(1, mfn(6));
    c.set_gdt_frame(2, 0xdead); // beyond gdt_ents: left alone
    let raw = c.into_inner();
    let mut raw = raw;
    raw[4960..4968].copy_from_slice(&600u64.to_le_bytes()); // 2 frames
    let mut c = VcpuContext::new(w, raw).unwrap();
    c.set_ctrlreg(3, w.frame_to_cr3(mfn(9)).unwrap());
    c.set_ctrlreg(1, mfn(10) << 12);
    let raw = c.into_inner();

    let out = vcpu_basic_for_stream(w, 0, raw.clone(), &pp).unwrap();
    let c = VcpuContext::new(w, &out[..]).unwrap();
    assert_eq!(c.start_info_reg(), 2);
    assert_eq!(
        (c.gdt_frame(0), c.gdt_frame(1), c.gdt_frame(2)),
        (5, 6, 0xdead)
    );
    assert_eq!(c.ctrlreg(3), 9 << 12);
    assert_eq!(c.ctrlreg(1), 1 | (10 << 12));
    // Only vCPU 0 carries the suspend record.
    let out = vcpu_basic_for_stream(w, 1, raw, &pp).unwrap();
    assert_eq!(
        VcpuContext::new(w, &out[..]).unwrap().start_info_reg(),
        mfn(2)
    );

    let w = GuestWidth::Bits32;
    let mut c = VcpuContext::new(w, vec![0u8; w.vcpu_context_size()]).unwrap();
    c.set_ctrlreg(3, w.frame_to_cr3(mfn(11)).unwrap());
    c.set_ctrlreg(1, 0x1234_5000); // a 32-bit guest's cr1 is not converted
    let out = vcpu_basic_for_stream(w, 1, c.into_inner(), &pp).unwrap();
    let c = VcpuContext::new(w, &out[..]).unwrap();
    assert_eq!(c.ctrlreg(3), w.frame_to_cr3(11).unwrap());
    assert_eq!(c.ctrlreg(1), 0x1234_5000);
}

#[test]
fn a_vcpu_frame_outside_the_guest_fails_naming_the_vcpu_and_the_register() {
    let (m2p, p2m) = guest16();
    let pp = PseudoPhys {
        m2p: &m2p,
        p2m: &p2m,
        max_pfn: 15,
    };
    let w = GuestWidth::Bits64;
    let c = VcpuContext::new(w, vec![0u8; w.vcpu_context_size()]).unwrap();
    let mut raw = c.into_inner();
    raw[4984 + 24..4984 + 32].copy_from_slice(&(0x7777u64 << 12).to_le_bytes());
    let e = vcpu_basic_for_stream(w, 3, raw.clone(), &pp).unwrap_err();
    assert_eq!(e.errno(), libc::ERANGE);
    assert!(e.to_string().starts_with("Bad mfn for vcpu3's cr3"), "{e}");
    let e = vcpu_basic_for_stream(w, 0, raw.clone(), &pp).unwrap_err();
    assert!(e.to_string().contains("suspend record"), "{e}");
    raw[4960..4968].copy_from_slice(&(MAX_GDT_ENTRIES + 1).to_le_bytes());
    let e = vcpu_basic_for_stream(w, 2, raw, &pp).unwrap_err();
    assert!(
        e.to_string().starts_with("GDT entry count (7169) of vcpu2"),
        "{e}"
    );
    let e = vcpu_basic_for_stream(w, 2, vec![0u8; 2800], &pp).unwrap_err();
    assert!(e.to_string().contains("vcpu2"), "{e}");
}

#[test]
fn a_32_bit_guests_invalid_p2m_entry_widens_to_the_invalid_frame() {
    let mut page = vec![0u8; 12];
    page[..4].copy_from_slice(&7u32.to_le_bytes());
    page[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    page[8..].copy_from_slice(&0xffff_fffeu32.to_le_bytes());
    assert_eq!(
        guest_words(GuestWidth::Bits32, &page, 3),
        Some(vec![7, INVALID_FRAME, 0xffff_fffe])
    );
    assert_eq!(guest_words(GuestWidth::Bits64, &page, 2), None, "short");
}
