//! PV memory model tests: machine frames, the M2P, page types, the guest
//! image, page-table validation, suspend/resume and the digest round trip.

use crate::testutil::TempHost;
use crate::*;

fn pv_cfg(mem: u64, bits: u32, p2m: P2mLayout, empty: bool) -> DomainConfig {
    DomainConfig {
        guest_type: GuestType::Pv,
        memory_bytes: mem,
        vcpus: 2,
        fill: Fill::Mixed,
        seed: 7,
        empty,
        address_size: bits,
        p2m_layout: p2m,
    }
}

fn empty_pv(h: &Host, mem: u64) -> Domain {
    let id = h
        .create_domain(&pv_cfg(mem, 64, P2mLayout::Linear, true))
        .unwrap();
    h.domain(id).unwrap()
}

#[test]
fn populate_gives_random_mfns_in_the_window_and_writes_the_m2p() {
    let t = TempHost::new("pv");
    let d = empty_pv(&t.host, 16 << 20);
    let base = d.info().unwrap().frame_base;
    assert_ne!(base, 0, "window 0 is Xen's");
    let pfns: Vec<u64> = (0..256).collect();
    let mfns = d.populate(&pfns).unwrap();
    assert_eq!(mfns.len(), 256);
    assert!(mfns.iter().all(|&m| (base..base + GFN_LIMIT).contains(&m)));
    assert!(
        mfns.iter()
            .zip(&pfns)
            .filter(|(m, p)| **m == base + **p)
            .count()
            < 4,
        "MFNs are not base + pfn"
    );
    let mut sorted = mfns.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 256, "distinct frames");
    for (&p, &m) in pfns.iter().zip(&mfns) {
        assert_eq!(t.host.m2p_entry(m), p);
        assert_eq!(d.pfn_to_mfn(p), Some(m));
        assert!(d.owns_frame(m));
    }
    assert_eq!(t.host.m2p_entry(base + GFN_LIMIT - 1), INVALID_M2P_ENTRY);
    assert_eq!(t.host.m2p_entry(5), INVALID_M2P_ENTRY);
    assert_eq!(d.info().unwrap().tot_pages, 256);
    // A second populate of a pfn: a new frame, the old one stays owned.
    let again = d.populate(&[3]).unwrap()[0];
    assert_ne!(again, mfns[3]);
    assert!(d.owns_frame(mfns[3]));
    assert_eq!(d.pfn_to_mfn(3), Some(again));
    assert_eq!(d.info().unwrap().tot_pages, 257);
}

#[test]
fn pv_page_types_and_mappings_take_mfns() {
    let t = TempHost::new("pv");
    let d = empty_pv(&t.host, 16 << 20);
    let mfns = d.populate(&[0, 1, 2]).unwrap();
    let shinfo = d.info().unwrap().shared_info_frame;
    let mut q = vec![mfns[0], mfns[1], 0, 1, shinfo, INVALID_FRAME];
    d.page_types(&mut q).unwrap();
    assert_eq!(
        q,
        vec![
            PFINFO_NOTAB,
            PFINFO_NOTAB,
            PFINFO_XTAB,
            PFINFO_XTAB,
            PFINFO_NOTAB,
            PFINFO_XTAB
        ]
    );
    d.write_frame(mfns[1], &[0x5a; 4096]).unwrap();
    let m = d
        .map_frames(&[mfns[1], 1, shinfo], Prot::ReadWrite)
        .unwrap();
    assert_eq!(m.errors(), &[0, -libc::EINVAL, 0]);
    let mut page = vec![0u8; 4096];
    m.read_page(0, &mut page).unwrap();
    assert_eq!(page, vec![0x5a; 4096]);
    m.write_page(2, &[0x11; 4096]).unwrap();
    d.read_frame(shinfo, &mut page).unwrap();
    assert_eq!(page, vec![0x11; 4096]);
    assert!(d.frame_offset(shinfo).is_none());
    assert!(d.frame_offset(mfns[2]).is_some());
}

#[test]
fn m2p_mapping_through_domid_xen_is_live() {
    let t = TempHost::new("pv");
    let d = empty_pv(&t.host, 16 << 20);
    let max_mfn = t.host.max_mfn().unwrap();
    let chunks = t.host.m2p_chunk_mfns(usize::MAX).unwrap();
    assert_eq!(chunks.len() as u64, ((max_mfn + 1) * 8).div_ceil(2 << 20));
    assert_eq!(t.host.m2p_chunk_mfns(2).unwrap(), chunks[..2].to_vec());
    let frames: Vec<u64> = chunks
        .iter()
        .flat_map(|&c| (0..512).map(move |j| c + j))
        .collect();
    let m2p = t.host.map_xen_frames(&frames, Prot::Read).unwrap();
    assert!(m2p.all_ok());
    // Populated after the mapping was made: the mapping sees it.
    let mfn = d.populate(&[42]).unwrap()[0];
    assert!(mfn <= max_mfn);
    let mut page = vec![0u8; 4096];
    m2p.read_page((mfn / 512) as usize, &mut page).unwrap();
    let o = (mfn % 512) as usize * 8;
    assert_eq!(u64::from_le_bytes(page[o..o + 8].try_into().unwrap()), 42);
    let compat0 = t.host.compat_m2p_mfn0().unwrap();
    let c = t
        .host
        .map_xen_frames(&[compat0 + mfn / 1024, 77], Prot::Read)
        .unwrap();
    assert_eq!(c.errors()[1], -libc::EINVAL);
    c.read_page(0, &mut page).unwrap();
    let o = (mfn % 1024) as usize * 4;
    assert_eq!(u32::from_le_bytes(page[o..o + 4].try_into().unwrap()), 42);
}

#[test]
fn address_size_switches_to_32_only_without_pages() {
    let t = TempHost::new("pv");
    let d = empty_pv(&t.host, 16 << 20);
    assert_eq!(d.address_size(), 64);
    d.set_address_size(64).unwrap();
    d.set_address_size(32).unwrap();
    assert_eq!(d.address_size(), 32);
    d.set_address_size(32).unwrap();
    assert_eq!(d.set_address_size(64).unwrap_err().errno(), libc::EINVAL);
    let e = empty_pv(&t.host, 16 << 20);
    e.populate(&[0]).unwrap();
    assert_eq!(e.set_address_size(32).unwrap_err().errno(), libc::EACCES);
    let hvm = t
        .host
        .create_domain(&DomainConfig {
            memory_bytes: 2 << 20,
            empty: true,
            ..Default::default()
        })
        .unwrap();
    let hvm = t.host.domain(hvm).unwrap();
    assert_eq!(
        hvm.set_address_size(32).unwrap_err().errno(),
        libc::EOPNOTSUPP
    );
}

#[test]
fn destroying_a_domain_invalidates_its_m2p_entries() {
    let t = TempHost::new("pv");
    let d = empty_pv(&t.host, 16 << 20);
    let mfn = d.populate(&[9]).unwrap()[0];
    assert_eq!(t.host.m2p_entry(mfn), 9);
    t.host.destroy_domain(d.id()).unwrap();
    assert_eq!(t.host.m2p_entry(mfn), INVALID_M2P_ENTRY);
}

use crate::domain::{cr3_to_frame, frame_to_cr3, get_word, put_word, CtxLayout, TYPE_LEVEL_MASK};
use crate::pvguest::{Kvars, StartInfoLayout, START_INFO_PFN};

fn guest(h: &Host, bits: u32, p2m: P2mLayout) -> Domain {
    let id = h
        .create_domain(&pv_cfg(256 << 20, bits, p2m, false))
        .unwrap();
    h.domain(id).unwrap()
}

const SHAPES: [(u32, P2mLayout); 4] = [
    (64, P2mLayout::Linear),
    (64, P2mLayout::Tree),
    (32, P2mLayout::Linear),
    (32, P2mLayout::Tree),
];

fn page(d: &Domain, mfn: u64) -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    d.read_frame(mfn, &mut p).unwrap();
    p
}

fn guest_p2m(d: &Domain, kv: &Kvars) -> Vec<u64> {
    let w = kv.word();
    let mut v = Vec::new();
    for k in 0..kv.leaves {
        let p = page(d, d.pfn_to_mfn(kv.leaf0 + k).unwrap());
        v.extend((0..4096 / w).map(|i| get_word(&p, i * w, w)));
    }
    v.truncate(kv.nr_pages as usize);
    v
}

#[test]
fn created_pv_guests_are_self_consistent_at_both_widths_and_layouts() {
    let t = TempHost::new("pv");
    for (bits, layout) in SHAPES {
        let start = std::time::Instant::now();
        let d = guest(&t.host, bits, layout);
        assert!(
            start.elapsed().as_secs() < 5,
            "256 MiB PV guest built quickly"
        );
        assert_eq!(d.address_size(), bits);
        let kv = Kvars::read(&d).unwrap();
        let base = d.info().unwrap().frame_base;
        let p2m = guest_p2m(&d, &kv);
        let mut linear = 0;
        for (pfn, &mfn) in p2m.iter().enumerate() {
            assert_eq!(t.host.m2p_entry(mfn), pfn as u64, "m2p[p2m[{pfn}]]");
            assert_eq!(d.pfn_to_mfn(pfn as u64), Some(mfn));
            linear += u64::from(mfn == base + pfn as u64);
        }
        assert!(linear < 16, "MFNs are not base + pfn");
        assert_eq!(d.max_gpfn(), kv.nr_pages - 1);
        // Every table is typed, and names only the domain's frames.
        let levels = if bits == 32 { 3 } else { 4 };
        let mut typed = 0;
        for pfn in 0..kv.nr_pages {
            let mfn = p2m[pfn as usize];
            let ty = d.frame_type(mfn) & TYPE_LEVEL_MASK;
            let is_pt = (kv.pt0..kv.pt0 + kv.pts).contains(&pfn);
            assert_eq!(ty != 0, is_pt, "pfn {pfn:#x} typed iff a page table");
            if ty == 0 {
                continue;
            }
            typed += 1;
            let p = page(&d, mfn);
            for i in 0..512 {
                let e = get_word(&p, i * 8, 8);
                let xen = (ty == 4 && (256..272).contains(&i))
                    || (bits == 32 && ty == 3 && i >= 4)
                    || (bits == 32
                        && ty == 2
                        && i >= 428
                        && get_word(&p, 428 * 8, 8) & 1 != 0
                        && (get_word(&p, 428 * 8, 8) >> 12) & 0xff_ffff_ffff == COMPAT_M2P_MFN0);
                if e & 1 != 0 && !xen {
                    assert!(d.owns_frame((e >> 12) & 0xff_ffff_ffff), "PTE {e:#x}");
                }
            }
        }
        assert_eq!(typed, kv.pts);
        let mut q = [p2m[kv.root as usize]];
        d.page_types(&mut q).unwrap();
        assert_eq!(q[0], ((levels as u64) << 28) | PFINFO_LPINTAB);
        // shared_info publishes the p2m.
        let si = d.info().unwrap().shared_info_frame;
        let sh = page(&d, si);
        let l = crate::domain::ShinfoLayout::for_bits(bits);
        let w = l.word;
        assert_eq!(get_word(&sh, l.arch_field(0), w), kv.nr_pages);
        if layout == P2mLayout::Linear {
            let cr3 = get_word(&sh, l.arch_field(3), w);
            assert_eq!(cr3_to_frame(bits == 32, cr3), p2m[kv.root as usize]);
            assert_eq!(get_word(&sh, l.arch_field(4), w), kv.p2m_vaddr);
        } else {
            let fll = get_word(&sh, l.arch_field(1), w);
            let fl = get_word(&page(&d, fll), 0, w);
            assert_eq!(get_word(&page(&d, fl), 0, w), p2m[kv.leaf0 as usize]);
        }
        // start_info names shared_info by its machine address, which fits
        // a 32-bit guest's word (Xen allocates it below 4 GiB).
        let l = StartInfoLayout::for_bits(u64::from(bits));
        let start_info = page(&d, p2m[START_INFO_PFN as usize]);
        assert_eq!(get_word(&start_info, l.shared_info, l.word), si << 12);
        // vCPUs: cr3 names the pinned root.
        let c = d.vcpu_context(1).unwrap();
        let cl = CtxLayout::for_bits(bits);
        assert_eq!(c.len(), cl.size);
        assert_eq!(cl.cr3_frame(&c), p2m[kv.root as usize]);
        assert_ne!(cl.get(&c, cl.flags) & 0x20, 0, "VGCF_online");
        t.host.destroy_domain(d.id()).unwrap();
    }
}

#[test]
fn pin_unpin_mmu_update_and_setcontext_validate_as_xen() {
    let t = TempHost::new("pv");
    let d = guest(&t.host, 64, P2mLayout::Linear);
    let kv = Kvars::read(&d).unwrap();
    let mfn = |pfn: u64| d.pfn_to_mfn(pfn).unwrap();
    let root = mfn(kv.root);
    let pin = |cmd: u32, m: u64| {
        d.mmuext_op(&[MmuextOp {
            cmd,
            arg1: m,
            arg2: 0,
        }])
    };
    assert_eq!(
        pin(MMUEXT_PIN_L4_TABLE, root).unwrap_err().errno(),
        libc::EINVAL
    );
    pin(MMUEXT_UNPIN_TABLE, root).unwrap();
    assert_eq!(
        pin(MMUEXT_UNPIN_TABLE, root).unwrap_err().errno(),
        libc::EINVAL
    );
    pin(MMUEXT_PIN_L4_TABLE, root).unwrap();
    assert_eq!(
        pin(MMUEXT_PIN_L1_TABLE, 7).unwrap_err().errno(),
        libc::EINVAL
    );
    // A RAM page of random bytes doesn't validate as an L1, and stays untyped.
    let ram = (kv.pt0 + kv.pts + 10..kv.nr_pages)
        .map(mfn)
        .find(|&m| page(&d, m).iter().any(|&b| b != 0))
        .unwrap();
    assert_eq!(
        pin(MMUEXT_PIN_L1_TABLE, ram).unwrap_err().errno(),
        libc::EINVAL
    );
    assert_eq!(d.frame_type(ram), 0);
    // The L4 as an L3: type conflict.
    assert_eq!(
        pin(MMUEXT_PIN_L1_TABLE + 2, root).unwrap_err().errno(),
        libc::EINVAL
    );
    // mmu_update: only in page tables, never Xen's slots, entries validated.
    assert_eq!(
        d.mmu_update(&[(ram << 12, 0)]).unwrap_err().errno(),
        libc::EINVAL
    );
    assert_eq!(
        d.mmu_update(&[((root << 12) + 257 * 8, 0)])
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    let l1 = mfn(kv.user_l1);
    let e = get_word(&page(&d, l1), 0, 8);
    assert_eq!(
        d.mmu_update(&[(l1 << 12, (7 << 12) | 0x67)])
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    assert_eq!(
        d.mmu_update(&[(l1 << 12, (root << 12) | 0x67)])
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    d.mmu_update(&[(l1 << 12, e & !0x60)]).unwrap();
    assert_eq!(get_word(&page(&d, l1), 0, 8), e & !0x60);
    d.mmu_update(&[((ram << 12) | 1, 0x1234)]).unwrap();
    assert_eq!(t.host.m2p_entry(ram), 0x1234);
    // setcontext: size, cr3 and GDT checks.
    let c = d.vcpu_context(0).unwrap();
    let cl = CtxLayout::for_bits(64);
    assert_eq!(
        d.set_vcpu_context(0, &c[..2800]).unwrap_err().errno(),
        libc::EINVAL
    );
    let mut bad = c.clone();
    cl.put(&mut bad, cl.ctrlreg + 24, frame_to_cr3(false, ram));
    assert_eq!(
        d.set_vcpu_context(0, &bad).unwrap_err().errno(),
        libc::EINVAL
    );
    let mut bad = c.clone();
    cl.put(&mut bad, cl.gdt_frames, 5);
    assert_eq!(
        d.set_vcpu_context(0, &bad).unwrap_err().errno(),
        libc::EINVAL
    );
    assert_eq!(d.set_vcpu_context(9, &c).unwrap_err().errno(), libc::ESRCH);
    d.set_vcpu_context(0, &c).unwrap();
    let d32 = guest(&t.host, 32, P2mLayout::Tree);
    let r32 = d32.pfn_to_mfn(Kvars::read(&d32).unwrap().root).unwrap();
    let e = d32.mmuext_op(&[MmuextOp {
        cmd: MMUEXT_PIN_L4_TABLE,
        arg1: r32,
        arg2: 0,
    }]);
    assert_eq!(e.unwrap_err().errno(), libc::EINVAL);
}

#[test]
fn suspend_canonicalises_start_info_and_resume_undoes_it() {
    let t = TempHost::new("pv");
    for bits in [64, 32] {
        let d = guest(&t.host, bits, P2mLayout::Linear);
        let si = d.pfn_to_mfn(START_INFO_PFN).unwrap();
        let l = StartInfoLayout::for_bits(u64::from(bits));
        let before = page(&d, si);
        let store = get_word(&before, l.store_mfn, l.word);
        assert!(d.owns_frame(store));
        d.shutdown(SHUTDOWN_SUSPEND).unwrap();
        let p = page(&d, si);
        assert_eq!(get_word(&p, l.store_mfn, l.word), 2);
        assert_eq!(get_word(&p, l.console_mfn, l.word), 3);
        let cl = CtxLayout::for_bits(bits);
        assert_eq!(cl.get(&d.vcpu_context(0).unwrap(), cl.rdx), si);
        d.resume().unwrap();
        assert_eq!(page(&d, si), before);
    }
}

/// What libxenguest's restore does, through the API: populate the source's
/// pfns in an empty domain, copy the pages with page tables and the p2m
/// localised to the new MFNs, rewrite shared_info and start_info, set the
/// vCPU contexts, then pin what the source had pinned.
fn simulated_restore(src: &Domain, host: &Host) -> Domain {
    let id = host
        .create_domain(&pv_cfg(256 << 20, 64, P2mLayout::Linear, true))
        .unwrap();
    let dst = host.domain(id).unwrap();
    if src.address_size() == 32 {
        dst.set_address_size(32).unwrap();
    }
    let bits32 = src.address_size() == 32;
    let pfns: Vec<u64> = (0..=src.highest_pfn())
        .filter(|&p| src.pfn_to_mfn(p).is_some())
        .collect();
    let new = dst.populate(&pfns).unwrap();
    let local = |old: u64| -> u64 {
        let pfn = src
            .mfn_to_pfn(old)
            .expect("source frame in the pseudo-physmap");
        dst.pfn_to_mfn(pfn).unwrap()
    };
    let kv = Kvars::read(src).unwrap();
    for (&pfn, &nm) in pfns.iter().zip(&new) {
        let om = src.pfn_to_mfn(pfn).unwrap();
        let mut p = page(src, om);
        let level = src.frame_type(om) & TYPE_LEVEL_MASK;
        if level != 0 {
            let compat_l2 = (get_word(&p, 428 * 8, 8) >> 12) & 0xff_ffff_ffff == COMPAT_M2P_MFN0;
            for i in 0..512 {
                let xen = (level == 4 && (256..272).contains(&i))
                    || (bits32 && level == 3 && i >= 4)
                    || (bits32 && level == 2 && i >= 428 && compat_l2);
                let e = get_word(&p, i * 8, 8);
                let v = if xen {
                    0
                } else if e & 1 != 0 {
                    (local((e >> 12) & 0xff_ffff_ffff) << 12) | (e & !0x000f_ffff_ffff_f000)
                } else {
                    e
                };
                put_word(&mut p, i * 8, 8, v);
            }
        }
        dst.write_frame(nm, &p).unwrap();
    }
    // update_guest_p2m: the leaves with the new MFNs.
    let w = kv.word();
    for k in 0..kv.leaves {
        let mut p = vec![0xffu8; 4096];
        for i in 0..4096 / w {
            let pfn = k * (4096 / w as u64) + i as u64;
            if let Some(m) = dst.pfn_to_mfn(pfn) {
                put_word(&mut p, i * w, w, m);
            }
        }
        dst.write_frame(dst.pfn_to_mfn(kv.leaf0 + k).unwrap(), &p)
            .unwrap();
    }
    // SHARED_INFO.
    let sl = crate::domain::ShinfoLayout::for_bits(src.address_size());
    let ssh = page(src, src.info().unwrap().shared_info_frame);
    let mut sh = vec![0u8; 4096];
    sh[..2048].copy_from_slice(&ssh[..2048]);
    sh[sl.arch..sl.arch + 6 * sl.word].copy_from_slice(&ssh[sl.arch..sl.arch + 6 * sl.word]);
    put_word(&mut sh, sl.arch_field(1), sl.word, 0);
    for b in &mut sh[sl.evtchn_mask..sl.evtchn_mask + sl.evtchn_bytes] {
        *b = 0xff;
    }
    dst.write_frame(dst.info().unwrap().shared_info_frame, &sh)
        .unwrap();
    // vCPUs, start_info through vCPU 0's rdx.
    let cl = CtxLayout::for_bits(src.address_size());
    for v in 0..src.vcpus() {
        let mut c = src.vcpu_context(v).unwrap();
        if v == 0 {
            let si = local(cl.get(&c, cl.rdx));
            cl.put(&mut c, cl.rdx, si);
            let l = StartInfoLayout::for_bits(u64::from(src.address_size()));
            let mut p = page(&dst, si);
            for o in [l.store_mfn, l.console_mfn] {
                let pfn = get_word(&p, o, l.word);
                put_word(&mut p, o, l.word, dst.pfn_to_mfn(pfn).unwrap());
            }
            put_word(&mut p, l.store_evtchn, l.word, 9);
            put_word(
                &mut p,
                l.shared_info,
                l.word,
                dst.info().unwrap().shared_info_frame << 12,
            );
            dst.write_frame(si, &p).unwrap();
        }
        let cr3 = cl.ctrlreg + 3 * cl.word;
        let root = local(cr3_to_frame(bits32, cl.get(&c, cr3)));
        cl.put(&mut c, cr3, frame_to_cr3(bits32, root));
        let g = cl.get(&c, cl.gdt_frames);
        cl.put(&mut c, cl.gdt_frames, local(g));
        dst.set_vcpu_context(v, &c).unwrap();
        dst.set_ext_vcpu_context(v, &src.ext_vcpu_context(v).unwrap())
            .unwrap();
        dst.set_vcpu_xsave(v, &src.vcpu_xsave(v).unwrap()).unwrap();
        dst.set_vcpu_msrs(v, &src.vcpu_msrs(v).unwrap()).unwrap();
    }
    for &pfn in &pfns {
        let t = src.frame_type(src.pfn_to_mfn(pfn).unwrap());
        if t & 0x80 != 0 {
            let op = MmuextOp {
                cmd: u32::from(t & 7) - 1,
                arg1: dst.pfn_to_mfn(pfn).unwrap(),
                arg2: 0,
            };
            dst.mmuext_op(&[op]).unwrap();
        }
    }
    let ts = src.tsc_info().unwrap();
    dst.set_tsc_info(ts).unwrap();
    dst.set_cpu_policy(&src.cpu_policy().unwrap()).unwrap();
    dst
}

#[test]
fn a_pv_guest_restored_to_other_mfns_digests_equal_and_saves_again() {
    for (bits, layout) in SHAPES {
        let (a, b, c) = (
            TempHost::new("pv"),
            TempHost::new("pv"),
            TempHost::new("pv"),
        );
        // Different window use on each host, so MFNs differ.
        empty_pv(&b.host, 16 << 20);
        empty_pv(&c.host, 16 << 20);
        empty_pv(&c.host, 16 << 20);
        let src = guest(&a.host, bits, layout);
        src.shutdown(SHUTDOWN_SUSPEND).unwrap();
        let want = src.digest_report().unwrap();
        let dst = simulated_restore(&src, &b.host);
        assert_ne!(dst.pfn_to_mfn(0), src.pfn_to_mfn(0));
        assert_eq!(
            dst.digest_report().unwrap(),
            want,
            "{bits} {layout:?} before it runs"
        );
        dst.unpause().unwrap();
        assert_eq!(
            dst.digest().unwrap(),
            want.total,
            "{bits} {layout:?} after it ran"
        );
        // Its p2m references now name its own frames: it can be saved again.
        dst.shutdown(SHUTDOWN_SUSPEND).unwrap();
        let third = simulated_restore(&dst, &c.host);
        third.unpause().unwrap();
        assert_eq!(
            third.digest().unwrap(),
            want.total,
            "{bits} {layout:?} twice"
        );
        let kv = Kvars::read(&third).unwrap();
        let sl = crate::domain::ShinfoLayout::for_bits(bits);
        let sh = page(&third, third.info().unwrap().shared_info_frame);
        if layout == P2mLayout::Tree {
            let fll = get_word(&sh, sl.arch_field(1), sl.word);
            assert!(third.owns_frame(fll));
            let fl = get_word(&page(&third, fll), 0, sl.word);
            assert_eq!(
                get_word(&page(&third, fl), 0, sl.word),
                third.pfn_to_mfn(kv.leaf0).unwrap()
            );
        } else {
            let cr3 = get_word(&sh, sl.arch_field(3), sl.word);
            assert_eq!(
                cr3_to_frame(bits == 32, cr3),
                third.pfn_to_mfn(kv.root).unwrap()
            );
        }
    }
}

#[test]
fn the_workload_dirties_pv_memory_through_the_p2m_including_page_tables() {
    let t = TempHost::new("pv");
    let d = guest(&t.host, 64, P2mLayout::Linear);
    let kv = Kvars::read(&d).unwrap();
    let gen_before = page(&d, d.info().unwrap().shared_info_frame);
    d.logdirty_enable().unwrap();
    // Run in short slices until enough pages are written for the page-table
    // write (every 16th) to have happened, however loaded the machine is:
    // how fast the workload writes is the benchmark's business, not this
    // test's.
    let mut written = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while written < 64 && std::time::Instant::now() < deadline {
        let stats = workload::run(
            &d,
            &workload::RunOptions {
                dirty_rate_bytes: 64 << 20,
                working_set_bytes: 8 << 20,
                seed: 1 + written,
                max_duration: Some(std::time::Duration::from_millis(300)),
                follow: false,
                pattern: workload::Pattern::Random,
            },
        )
        .unwrap();
        written += stats.pages_written;
    }
    assert!(written >= 64, "the workload wrote {written} pages in 60 s");
    let mut bm = vec![0u8; (kv.nr_pages / 8) as usize];
    d.logdirty_op(LogDirtyOp::Peek, Some(&mut bm), kv.nr_pages, false)
        .unwrap();
    let dirty = |p: u64| bm[(p / 8) as usize] & (1 << (p % 8)) != 0;
    assert!(
        dirty(kv.user_l1),
        "the user L1 is dirtied through mmu_update"
    );
    assert!(
        (0..kv.pt0).all(|p| !dirty(p)),
        "kernel structures are not written"
    );
    // The p2m and its publication are untouched; the tables still validate.
    assert_eq!(page(&d, d.info().unwrap().shared_info_frame), gen_before);
    let root = d.pfn_to_mfn(kv.root).unwrap();
    d.mmuext_op(&[MmuextOp {
        cmd: MMUEXT_UNPIN_TABLE,
        arg1: root,
        arg2: 0,
    }])
    .unwrap();
    d.mmuext_op(&[MmuextOp {
        cmd: MMUEXT_PIN_L4_TABLE,
        arg1: root,
        arg2: 0,
    }])
    .unwrap();
}
