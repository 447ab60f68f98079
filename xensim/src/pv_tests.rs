//! PV memory model tests: machine frames, the M2P, page types, the guest
//! image, page-table validation, suspend/resume and the digest round trip.

use crate::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct TempHost {
    dir: PathBuf,
    host: Host,
}

impl TempHost {
    fn new() -> TempHost {
        let dir = std::env::temp_dir().join(format!(
            "xensim-pv-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let host = Host::open(&dir).expect("open host");
        TempHost { dir, host }
    }
}

impl Drop for TempHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
    let t = TempHost::new();
    let d = empty_pv(&t.host, 16 << 20);
    let base = d.info().unwrap().frame_base;
    assert_ne!(base, 0, "window 0 is Xen's");
    let pfns: Vec<u64> = (0..256).collect();
    let mfns = d.populate(&pfns).unwrap();
    assert_eq!(mfns.len(), 256);
    assert!(mfns.iter().all(|&m| (base..base + GFN_LIMIT).contains(&m)));
    assert!(
        mfns.iter().zip(&pfns).filter(|(m, p)| **m == base + **p).count() < 4,
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
    let t = TempHost::new();
    let d = empty_pv(&t.host, 16 << 20);
    let mfns = d.populate(&[0, 1, 2]).unwrap();
    let shinfo = d.info().unwrap().shared_info_frame;
    let mut q = vec![mfns[0], mfns[1], 0, 1, shinfo, INVALID_FRAME];
    d.page_types(&mut q).unwrap();
    assert_eq!(
        q,
        vec![PFINFO_NOTAB, PFINFO_NOTAB, PFINFO_XTAB, PFINFO_XTAB, PFINFO_NOTAB, PFINFO_XTAB]
    );
    d.write_frame(mfns[1], &[0x5a; 4096]).unwrap();
    let m = d.map_frames(&[mfns[1], 1, shinfo], Prot::ReadWrite).unwrap();
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
    let t = TempHost::new();
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
    let t = TempHost::new();
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
    assert_eq!(hvm.set_address_size(32).unwrap_err().errno(), libc::EOPNOTSUPP);
}

#[test]
fn destroying_a_domain_invalidates_its_m2p_entries() {
    let t = TempHost::new();
    let d = empty_pv(&t.host, 16 << 20);
    let mfn = d.populate(&[9]).unwrap()[0];
    assert_eq!(t.host.m2p_entry(mfn), 9);
    t.host.destroy_domain(d.id()).unwrap();
    assert_eq!(t.host.m2p_entry(mfn), INVALID_M2P_ENTRY);
}
