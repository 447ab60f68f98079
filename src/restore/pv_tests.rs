//! The PV restore over a stand-in PV host: an empty xensim HVM domain
//! whose frames the stand-in hands out as scattered machine frames (MFNs)
//! with its own M2P, recording the vCPU state, pins and address-size
//! changes the restore asks for. It checks the engine's side of the
//! contract (frames converted through the p2m and M2P, start_info,
//! shared_info and the guest p2m rewritten, pins, outputs) and every
//! hostile PV stream libxenguest refuses, until hv::sim plays `X86Pv`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use xensim::GuestType;

use super::*;
use crate::hv::sim::{SimHypervisor, SimMapping};
use crate::hv::{
    CpuPolicy, DomainCtl, DomainInfo, GrantEntry, GrantTable, GuestMemory, HvError, HvResult,
    LogDirty, LogDirtyReport, M2pTable, MappedPages, MsrEntry, TscInfo, X86Cpu, X86Hvm, X86Pv,
    PAGE_SIZE,
};
use crate::save::testutil::{TempHost, ToolstackRestore};
use crate::stream::{
    DomainHeader, DomainType, PageType, PfnEntry, Record, VcpuKind, Writer, WriterOptions,
    X86PvInfo,
};
use crate::x86::pv::{self, GuestWidth, SharedInfo, StartInfoLayout, VcpuContext, VGCF_ONLINE};

/// The stand-in's machine frames: inner gfn `g` is MFN `MFN_BASE + 3g + 1`,
/// so no MFN equals the pfn behind it.
const MFN_BASE: u64 = 0x4_0000;
/// Inner gfns of the 4 MiB domain.
const INNER_GFNS: u64 = 1024;
/// The inner gfn holding shared_info (outside the guest's p2m, as Xen's
/// xenheap frame).
const SHINFO_GFN: u64 = 0;
/// An inner gfn never populated: where unknown MFNs are mapped, so that
/// the mapping reports them per slot.
const NO_GFN: u64 = INNER_GFNS - 1;

fn mfn_of_gfn(g: u64) -> u64 {
    MFN_BASE + 3 * g + 1
}

#[derive(Default)]
struct PvState {
    address_size: u32,
    next_gfn: u64,
    /// mfn -> pfn (what populate wrote) and mfn -> inner gfn.
    m2p: HashMap<u64, u64>,
    gfn: HashMap<u64, u64>,
    set_address_size: Vec<u32>,
    contexts: Vec<(u32, Vec<u8>)>,
    ext: Vec<(u32, Vec<u8>)>,
    xsave: Vec<(u32, Vec<u8>)>,
    msrs: Vec<(u32, Vec<MsrEntry>)>,
    pins: Vec<Vec<(u8, u64)>>,
    grants: Vec<(bool, Vec<GrantEntry>)>,
}

struct PvHost {
    inner: SimHypervisor,
    st: Mutex<PvState>,
}

impl PvHost {
    fn new(inner: SimHypervisor, domid: DomId) -> PvHost {
        inner
            .populate_physmap(domid, &mut [SHINFO_GFN])
            .expect("shared_info frame");
        PvHost {
            inner,
            st: Mutex::new(PvState {
                address_size: 64,
                next_gfn: SHINFO_GFN + 1,
                gfn: HashMap::from([(mfn_of_gfn(SHINFO_GFN), SHINFO_GFN)]),
                ..PvState::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PvState> {
        self.st.lock().expect("stand-in state")
    }

    fn gfns(&self, mfns: &[u64]) -> Vec<u64> {
        let st = self.state();
        mfns.iter()
            .map(|m| st.gfn.get(m).copied().unwrap_or(NO_GFN))
            .collect()
    }

    /// The page at `mfn`, as the guest would see it.
    fn page(&self, domid: DomId, mfn: u64) -> [u8; PAGE_SIZE] {
        let map = self.map_read(domid, &[mfn]).expect("map");
        assert_eq!(map.error(0), 0, "mfn {mfn:#x} mapped");
        let mut p = [0u8; PAGE_SIZE];
        map.read_page(0, &mut p);
        p
    }

    /// The MFN populate gave `pfn`.
    fn mfn_of(&self, pfn: u64) -> u64 {
        let st = self.state();
        let hits: Vec<u64> = st
            .m2p
            .iter()
            .filter(|(_, &p)| p == pfn)
            .map(|(&m, _)| m)
            .collect();
        assert_eq!(hits.len(), 1, "pfn {pfn:#x} populated once");
        hits[0]
    }
}

struct StandInM2p<'a>(&'a PvHost);

impl M2pTable for StandInM2p<'_> {
    fn max_mfn(&self) -> u64 {
        mfn_of_gfn(INNER_GFNS)
    }
    fn entry(&self, mfn: u64) -> Option<u64> {
        (mfn <= self.max_mfn()).then(|| self.0.state().m2p.get(&mfn).copied().unwrap_or(u64::MAX))
    }
}

fn not_here(op: &'static str) -> HvError {
    HvError::with_detail(op, libc::EOPNOTSUPP, "not a PV restore's call")
}

impl DomainCtl for PvHost {
    fn xen_version(&self) -> HvResult<(u16, u16)> {
        self.inner.xen_version()
    }
    fn domain_info(&self, domid: DomId) -> HvResult<DomainInfo> {
        let mut info = self.inner.domain_info(domid)?;
        info.hvm = false;
        info.shared_info_frame = mfn_of_gfn(SHINFO_GFN);
        Ok(info)
    }
    fn nr_gpfns(&self, domid: DomId) -> HvResult<u64> {
        self.inner.nr_gpfns(domid)
    }
}

impl GuestMemory for PvHost {
    type ReadMapping<'a> = SimMapping;
    type WriteMapping<'a> = SimMapping;

    fn page_types(&self, _domid: DomId, _frames: &mut [u64]) -> HvResult<()> {
        Err(not_here("xc_get_pfn_type_batch"))
    }
    fn map_read(&self, domid: DomId, frames: &[u64]) -> HvResult<SimMapping> {
        self.inner.map_read(domid, &self.gfns(frames))
    }
    fn map_write(&self, domid: DomId, frames: &[u64]) -> HvResult<SimMapping> {
        self.inner.map_write(domid, &self.gfns(frames))
    }
    fn populate_physmap(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        for f in frames.iter_mut() {
            let g = {
                let mut st = self.state();
                let g = st.next_gfn;
                assert!(g < NO_GFN, "stand-in out of frames");
                st.next_gfn += 1;
                g
            };
            self.inner.populate_physmap(domid, &mut [g])?;
            let mfn = mfn_of_gfn(g);
            let mut st = self.state();
            st.m2p.insert(mfn, *f);
            st.gfn.insert(mfn, g);
            *f = mfn;
        }
        Ok(())
    }
    fn clear_pages(&self, _domid: DomId, _gfn: u64, _count: u64) -> HvResult<()> {
        Err(not_here("xc_clear_domain_pages"))
    }
}

impl LogDirty for PvHost {
    fn logdirty_enable(&self, domid: DomId) -> HvResult<()> {
        self.inner.logdirty_enable(domid)
    }
    fn logdirty_off(&self, domid: DomId) -> HvResult<()> {
        self.inner.logdirty_off(domid)
    }
    fn logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
        final_pass: bool,
    ) -> HvResult<LogDirtyReport> {
        self.inner.logdirty_clean(domid, bitmap, pages, final_pass)
    }
    fn logdirty_peek(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport> {
        self.inner.logdirty_peek(domid, bitmap, pages)
    }
}

impl GrantTable for PvHost {
    fn seed_grant_table(&self, _domid: DomId, hvm: bool, entries: &[GrantEntry]) -> HvResult<()> {
        self.state().grants.push((hvm, entries.to_vec()));
        Ok(())
    }
}

impl X86Cpu for PvHost {
    fn tsc_info(&self, domid: DomId) -> HvResult<TscInfo> {
        self.inner.tsc_info(domid)
    }
    fn set_tsc_info(&self, domid: DomId, tsc: &TscInfo) -> HvResult<()> {
        self.inner.set_tsc_info(domid, tsc)
    }
    fn cpu_policy(&self, domid: DomId) -> HvResult<CpuPolicy> {
        self.inner.cpu_policy(domid)
    }
    fn set_cpu_policy(&self, domid: DomId, policy: &CpuPolicy) -> HvResult<()> {
        self.inner.set_cpu_policy(domid, policy)
    }
}

impl X86Hvm for PvHost {
    fn hvm_context(&self, _domid: DomId) -> HvResult<Vec<u8>> {
        Err(not_here("xc_domain_hvm_getcontext"))
    }
    fn set_hvm_context(&self, _domid: DomId, _blob: &[u8]) -> HvResult<()> {
        Err(not_here("xc_domain_hvm_setcontext"))
    }
    fn hvm_param(&self, _domid: DomId, _index: u32) -> HvResult<u64> {
        Err(not_here("xc_hvm_param_get"))
    }
    fn set_hvm_param(&self, _domid: DomId, _index: u32, _value: u64) -> HvResult<()> {
        Err(not_here("xc_hvm_param_set"))
    }
}

impl X86Pv for PvHost {
    fn pv_address_size(&self, _domid: DomId) -> HvResult<u32> {
        Ok(self.state().address_size)
    }
    fn set_pv_address_size(&self, _domid: DomId, bits: u32) -> HvResult<()> {
        let mut st = self.state();
        st.set_address_size.push(bits);
        // Xen's switch_compat: only while the domain has no memory.
        if bits != st.address_size && !st.m2p.is_empty() {
            return Err(HvError::with_detail(
                "XEN_DOMCTL_set_address_size",
                libc::EACCES,
                "the domain has memory",
            ));
        }
        st.address_size = bits;
        Ok(())
    }
    fn map_m2p(&self) -> HvResult<Box<dyn M2pTable + '_>> {
        Ok(Box::new(StandInM2p(self)))
    }
    fn set_vcpu_context(&self, _domid: DomId, vcpu: u32, context: &[u8]) -> HvResult<()> {
        self.state().contexts.push((vcpu, context.to_vec()));
        Ok(())
    }
    fn set_ext_vcpu_context(&self, _domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        self.state().ext.push((vcpu, blob.to_vec()));
        Ok(())
    }
    fn set_vcpu_xsave(&self, _domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        self.state().xsave.push((vcpu, blob.to_vec()));
        Ok(())
    }
    fn set_vcpu_msrs(&self, _domid: DomId, vcpu: u32, msrs: &[MsrEntry]) -> HvResult<()> {
        self.state().msrs.push((vcpu, msrs.to_vec()));
        Ok(())
    }
    fn pin_page_tables(&self, _domid: DomId, pins: &[(u8, u64)]) -> HvResult<()> {
        self.state().pins.push(pins.to_vec());
        Ok(())
    }
}

/// Pfns of the test guest (max_pfn 63).
const PFNS: u64 = 64;
/// Its start_info, store and console pages, GDT frame and p2m frame.
const START_INFO: u64 = 4;
const STORE: u64 = 5;
const CONSOLE: u64 = 6;
const GDT: u64 = 7;
const P2M_FRAME: u64 = 8;
/// Named by the L1 table but never sent: the restore populates it while
/// localising the table.
const UNSENT: u64 = 40;
/// Entry flags of a present, writable, accessed page.
const FLAGS: u64 = 0x67;

/// A small PV guest as a stream carries it, which tests bend.
struct PvGuest {
    width: GuestWidth,
    pages: BTreeMap<u64, (PageType, [u8; PAGE_SIZE])>,
    vcpu0: Vec<u8>,
    end_pfn: u32,
    p2m_frames: Vec<u64>,
    /// Records after vCPU 0's basic one.
    vcpu_records: Vec<(VcpuKind, u32, Vec<u8>)>,
    shared_info: [u8; PAGE_SIZE],
}

fn table_page(entries: &[(usize, u64)]) -> [u8; PAGE_SIZE] {
    let mut t = [0u64; pv::PTES_PER_PAGE];
    for &(i, pte) in entries {
        t[i] = pte;
    }
    let mut p = [0u8; PAGE_SIZE];
    pv::write_table(&t, &mut p);
    p
}

fn pte(pfn: u64) -> u64 {
    pv::pte_with_frame(FLAGS, pfn)
}

impl PvGuest {
    fn new(width: GuestWidth) -> PvGuest {
        let mut pages = BTreeMap::new();
        for pfn in 0..PFNS {
            if pfn != UNSENT {
                pages.insert(pfn, (PageType::NoTab, [pfn as u8; PAGE_SIZE]));
            }
        }
        // The page tables: the root at pfn 0 (pinned), then L3 (64-bit
        // only) at 1, L2 at 2, L1 at 3 mapping pfns 10..30 and the unsent
        // one; a non-present entry keeps its bits.
        let mut l1: Vec<(usize, u64)> = (0..20).map(|i| (i, pte(10 + i as u64))).collect();
        l1.push((100, pte(UNSENT)));
        l1.push((101, pv::pte_with_frame(0x62, 0xf_ffff)));
        pages.insert(3, (PageType::L1Tab, table_page(&l1)));
        pages.insert(2, (PageType::L2Tab, table_page(&[(0, pte(3))])));
        match width {
            GuestWidth::Bits64 => {
                pages.insert(1, (PageType::L3Tab, table_page(&[(0, pte(2))])));
                pages.insert(
                    0,
                    (
                        PageType::L4TabPin,
                        table_page(&[(0, pte(1)), (511, pte(1))]),
                    ),
                );
            }
            GuestWidth::Bits32 => {
                pages.insert(
                    0,
                    (PageType::L3TabPin, table_page(&[(0, pte(2)), (3, pte(2))])),
                );
            }
        }
        // start_info as a suspended guest leaves it: store and console as
        // pfns.
        let mut si = [0u8; PAGE_SIZE];
        si[..12].copy_from_slice(b"xen-3.0-x86_");
        let l = StartInfoLayout::of(width);
        width.write_word(&mut si, l.store_mfn, STORE);
        width.write_word(&mut si, l.console_mfn, CONSOLE);
        pv::write_u32(&mut si, l.flags, 0x7);
        pages.insert(START_INFO, (PageType::NoTab, si));

        let mut vcpu0 = vec![0u8; width.vcpu_context_size()];
        {
            let mut c = VcpuContext::new(width, &mut vcpu0[..]).unwrap();
            c.set_start_info_reg(START_INFO);
            let gdt_ents_off = match width {
                GuestWidth::Bits64 => 4960,
                GuestWidth::Bits32 => 2704,
            };
            c.set_gdt_frame(0, GDT);
            c.set_ctrlreg(3, width.frame_to_cr3(0).unwrap());
            if width == GuestWidth::Bits64 {
                c.set_ctrlreg(1, 1);
            }
            vcpu0[gdt_ents_off] = 16;
        }
        let mut shared_info = [0x5au8; PAGE_SIZE];
        {
            let l = crate::x86::pv::SharedInfoLayout::of(width);
            width.write_word(&mut shared_info, l.arch, PFNS);
        }
        PvGuest {
            width,
            pages,
            vcpu0,
            end_pfn: (PFNS - 1) as u32,
            p2m_frames: vec![P2M_FRAME],
            vcpu_records: vec![
                (VcpuKind::Extended, 0, vec![0x11; 64]),
                (VcpuKind::Xsave, 0, vec![0x22; 64]),
                (VcpuKind::Msrs, 0, {
                    let mut m = Vec::new();
                    m.extend_from_slice(&0xc000_0103u32.to_le_bytes());
                    m.extend_from_slice(&0u32.to_le_bytes());
                    m.extend_from_slice(&9u64.to_le_bytes());
                    m
                }),
            ],
            shared_info,
        }
    }

    fn vcpu0(&mut self) -> VcpuContext<&mut [u8]> {
        VcpuContext::new(self.width, &mut self.vcpu0[..]).unwrap()
    }

    fn table(&mut self, pfn: u64) -> &mut [u8; PAGE_SIZE] {
        &mut self.pages.get_mut(&pfn).expect("table").1
    }

    /// The stream, records in libxenguest's order. The writer's grammar
    /// is off so that tests can send what a sender must not.
    fn stream(&self) -> Vec<u8> {
        self.stream_with(|w| w.write_end().unwrap())
    }

    /// The records of the guest, then `tail` (END, or checkpoints).
    fn stream_with(&self, tail: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::with_options(
            &mut out,
            &DomainHeader::new(DomainType::X86Pv, 4, 17),
            WriterOptions {
                check_grammar: false,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        w.write_x86_pv_info(&X86PvInfo::new(self.width)).unwrap();
        w.write_static_data_end().unwrap();
        w.write_x86_pv_p2m_frames(0, self.end_pfn, &self.p2m_frames)
            .unwrap();
        let entries: Vec<PfnEntry> = self
            .pages
            .iter()
            .map(|(&pfn, (t, _))| PfnEntry::new(pfn, *t))
            .collect();
        let data: Vec<&[u8]> = self.pages.values().map(|(_, p)| &p[..]).collect();
        w.write_page_data(&entries, &data).unwrap();
        self.end_of_checkpoint(&mut w);
        tail(&mut w);
        drop(w);
        out
    }

    /// What libxenguest sends at the end of each checkpoint: TSC,
    /// SHARED_INFO and the vCPU records.
    fn end_of_checkpoint(&self, w: &mut Writer<&mut Vec<u8>>) {
        w.write_x86_tsc_info(&TscInfo::default()).unwrap();
        w.write_shared_info(&self.shared_info).unwrap();
        w.write_x86_pv_vcpu(VcpuKind::Basic, 0, &self.vcpu0)
            .unwrap();
        for (kind, id, blob) in &self.vcpu_records {
            w.write_x86_pv_vcpu(*kind, *id, blob).unwrap();
        }
    }
}

type PvRestoreRun = (
    Result<RestoreOutputs, RestoreError>,
    PvHost,
    DomId,
    TempHost,
);

/// Restores `stream` into a fresh stand-in PV domain, `pages_first`
/// populating one frame before the restore starts.
fn restore_pv(stream: &[u8], pages_first: bool) -> PvRestoreRun {
    restore_pv_with(
        stream,
        pages_first,
        StreamType::Plain,
        &mut ToolstackRestore::default(),
    )
}

fn restore_pv_with(
    stream: &[u8],
    pages_first: bool,
    stream_type: StreamType,
    cb: &mut dyn RestoreCallbacks,
) -> PvRestoreRun {
    let h = TempHost::new("pv");
    let id = h.create(GuestType::Hvm, INNER_GFNS * PAGE_SIZE as u64, 0, true);
    let hv = PvHost::new(h.hv(), id);
    if pages_first {
        hv.populate_physmap(id, &mut [0]).unwrap();
    }
    let mut input = stream;
    let params = RestoreParams {
        store_evtchn: 5,
        store_domid: 0,
        console_evtchn: 6,
        console_domid: 0,
        stream_type,
    };
    let r = if stream_type == StreamType::Colo {
        hv.logdirty_enable(id).expect("log-dirty on the secondary");
        let mut back = Vec::new();
        restore_domain_with_back_channel(&hv, id, &mut input, Some(&mut back), &params, cb)
    } else {
        restore_domain(&hv, id, &mut input, &params, cb)
    };
    (r, hv, id, h)
}

fn restores_a_pv_guest(width: GuestWidth) {
    let guest = PvGuest::new(width);
    let (r, hv, id, _h) = restore_pv(&guest.stream(), false);
    let out = r.expect("restore");
    let mfns: Vec<u64> = (0..PFNS).map(|p| hv.mfn_of(p)).collect();
    let mfn = |p: u64| mfns[p as usize];
    let st_bits = hv.state().set_address_size.clone();
    assert_eq!(
        st_bits,
        if width == GuestWidth::Bits32 {
            vec![32]
        } else {
            vec![]
        },
        "address size switched only for a 32-bit stream"
    );

    // Every data page landed at its pfn's MFN; tables name MFNs, the
    // unsent pfn named by the L1 was populated, non-present entries kept.
    for (&pfn, (t, page)) in &guest.pages {
        let got = hv.page(id, mfn(pfn));
        if pv::table_level(*t).is_none() && pfn != START_INFO && pfn != P2M_FRAME {
            assert_eq!(&got, page, "pfn {pfn}");
        }
    }
    let l1 = pv::read_table(&hv.page(id, mfn(3)));
    for (i, &e) in l1.iter().take(20).enumerate() {
        assert_eq!(e, pte(mfn(10 + i as u64)), "L1[{i}]");
    }
    assert_eq!(l1[100], pte(mfn(UNSENT)));
    assert_eq!(l1[101], pv::pte_with_frame(0x62, 0xf_ffff));
    let root = pv::read_table(&hv.page(id, mfn(0)));
    assert_eq!(
        root[0],
        pte(mfn(if width == GuestWidth::Bits64 { 1 } else { 2 }))
    );

    // vCPU 0: online, start_info, GDT and cr3 (and a 64-bit cr1) as MFNs.
    let st = hv.state();
    assert_eq!(st.contexts.len(), 1, "one vCPU had a context");
    let (vid, ctx) = &st.contexts[0];
    assert_eq!(*vid, 0);
    let c = VcpuContext::new(width, &ctx[..]).unwrap();
    assert_ne!(c.flags() & VGCF_ONLINE, 0);
    assert_eq!(c.start_info_reg(), mfn(START_INFO));
    assert_eq!(c.gdt_frame(0), mfn(GDT));
    assert_eq!(width.cr3_to_frame(c.ctrlreg(3)), Some(mfn(0)));
    if width == GuestWidth::Bits64 {
        assert_eq!(c.ctrlreg(1), mfn(0) << 12);
    }
    assert_eq!(st.ext, vec![(0, vec![0x11; 64])]);
    assert_eq!(st.xsave, vec![(0, vec![0x22; 64])]);
    assert_eq!(
        st.msrs,
        vec![(
            0,
            vec![MsrEntry {
                idx: 0xc000_0103,
                flags: 0,
                val: 9
            }]
        )]
    );
    // Only the pinned root, once.
    let level = width.levels();
    assert_eq!(st.pins, vec![vec![(level, mfn(0))]]);
    // Grant entries at the MFNs, as a PV guest's.
    assert_eq!(st.grants.len(), 1);
    let (hvm, grants) = &st.grants[0];
    assert!(!hvm);
    assert_eq!(grants[0].frame as u64, mfn(CONSOLE));
    assert_eq!(grants[1].frame as u64, mfn(STORE));
    drop(st);

    // start_info: store and console as MFNs with the new event channels.
    let si = hv.page(id, mfn(START_INFO));
    let l = StartInfoLayout::of(width);
    assert_eq!(width.read_word(&si, l.store_mfn), mfn(STORE));
    assert_eq!(width.read_word(&si, l.console_mfn), mfn(CONSOLE));
    assert_eq!(pv::read_u32(&si, l.store_evtchn), 5);
    assert_eq!(pv::read_u32(&si, l.console_evtchn), 6);
    assert_eq!(width.read_word(&si, l.nr_pages), PFNS);
    assert_eq!(
        width.read_word(&si, l.shared_info),
        mfn_of_gfn(SHINFO_GFN) << 12
    );
    assert_eq!(pv::read_u32(&si, l.flags), 0);
    assert_eq!((out.store_gfn, out.console_gfn), (mfn(STORE), mfn(CONSOLE)));

    // The guest's p2m frame holds every pfn's MFN, in the guest's width.
    let p2m = hv.page(id, mfn(P2M_FRAME));
    let w = usize::from(width.bytes());
    for pfn in 0..PFNS {
        let mut b = [0u8; 8];
        b[..w].copy_from_slice(&p2m[pfn as usize * w..(pfn as usize + 1) * w]);
        assert_eq!(u64::from_le_bytes(b), mfn(pfn), "p2m[{pfn}]");
    }

    // shared_info: no frame list, events masked, arch kept.
    let sh = hv.page(id, mfn_of_gfn(SHINFO_GFN));
    let info = SharedInfo::new(width, &sh[..]).unwrap();
    assert_eq!(info.frame_list_list(), 0);
    assert_eq!(info.max_pfn(), PFNS);
    let l = *info.layout();
    assert!(sh[l.evtchn_mask..l.evtchn_mask + l.evtchn_bitmap_len]
        .iter()
        .all(|&b| b == 0xff));
}

#[test]
fn a_64_bit_pv_stream_restores_with_every_frame_named_by_its_mfn() {
    restores_a_pv_guest(GuestWidth::Bits64);
}

#[test]
fn a_32_bit_pv_stream_switches_the_domain_and_restores_with_every_frame_named_by_its_mfn() {
    restores_a_pv_guest(GuestWidth::Bits32);
}

/// A stream's bytes with one record replaced: `f` writes replacements
/// (returning true) or leaves the record to be copied.
fn rewrite_pv(
    stream: &[u8],
    mut f: impl FnMut(&Record<'_>, &mut Writer<&mut Vec<u8>>) -> bool,
) -> Vec<u8> {
    let mut r = stream::Reader::new(stream).expect("valid input");
    let dh = *r.domain_header();
    let mut out = Vec::new();
    {
        let mut w = Writer::with_options(
            &mut out,
            &dh,
            WriterOptions {
                check_grammar: false,
                ..WriterOptions::default()
            },
        )
        .expect("headers");
        while let Some(rec) = r.next_record().expect("record") {
            if !f(&rec, &mut w) {
                w.write_record(&rec).expect("copy record");
            }
        }
    }
    out
}

#[test]
fn hostile_pv_streams_each_stop_the_restore_naming_the_problem() {
    use crate::stream::RecordType;
    let w64 = GuestWidth::Bits64;
    let good = PvGuest::new(w64);
    let bent = |f: &dyn Fn(&mut PvGuest)| {
        let mut g = PvGuest::new(w64);
        f(&mut g);
        g.stream()
    };
    let bent32 = |f: &dyn Fn(&mut PvGuest)| {
        let mut g = PvGuest::new(GuestWidth::Bits32);
        f(&mut g);
        g.stream()
    };
    let good_stream = good.stream();
    // (name, stream, pages populated before the restore, message, errno)
    let mut cases: Vec<(&str, Vec<u8>, bool, &str, i32)> = vec![
        (
            "PTE pointing outside the guest",
            bent(&|g| {
                let t = g.table(3);
                t[8 * 7..8 * 8].copy_from_slice(&pte(0x1000).to_le_bytes());
            }),
            false,
            "L1[7] = 0x0000000001000067 names pfn 0x1000, beyond max_pfn 0x3f",
            libc::ERANGE,
        ),
        (
            "L4 with a Xen slot filled",
            bent(&|g| {
                let t = g.table(0);
                t[8 * 256..8 * 257].copy_from_slice(&pte(1).to_le_bytes());
            }),
            false,
            "L4[256] = 0x0000000000001067 is one of Xen's slots",
            libc::EINVAL,
        ),
        (
            "L2 mapping a superpage",
            bent(&|g| {
                let t = g.table(2);
                t[8 * 5..8 * 6].copy_from_slice(&(pte(8) | pv::PTE_PSE).to_le_bytes());
            }),
            false,
            "L2TAB page table: cannot migrate superpage (L2[5] = 0x00000000000080e7)",
            libc::EINVAL,
        ),
        (
            "32-bit L3 with a Xen slot filled",
            bent32(&|g| {
                let t = g.table(0);
                t[8 * 4..8 * 5].copy_from_slice(&pte(2).to_le_bytes());
            }),
            false,
            "L3[4] = 0x0000000000002067 is one of Xen's slots",
            libc::EINVAL,
        ),
        (
            "L4 table in a 32-bit stream",
            bent32(&|g| g.pages.get_mut(&0).unwrap().0 = PageType::L4TabPin),
            false,
            "L4 page table in a 32-bit guest",
            libc::EINVAL,
        ),
        (
            "GDT frame outside the guest",
            bent(&|g| g.vcpu0().set_gdt_frame(0, 0x5000)),
            false,
            "vcpu 0: GDT frame 0 (pfn 0x5000) out of range",
            libc::ERANGE,
        ),
        (
            "GDT frame on a page table",
            bent(&|g| g.vcpu0().set_gdt_frame(0, 3)),
            false,
            "vcpu 0: GDT frame 0 (pfn 0x3) has bad type L1TAB, expected NOTAB",
            libc::EINVAL,
        ),
        (
            "cr3 outside the guest",
            bent(&|g| g.vcpu0().set_ctrlreg(3, 0x7000 << 12)),
            false,
            "vcpu 0: cr3 (pfn 0x7000) out of range",
            libc::ERANGE,
        ),
        (
            "cr3 on an ordinary page",
            bent(&|g| g.vcpu0().set_ctrlreg(3, 12 << 12)),
            false,
            "vcpu 0: cr3 (pfn 0xc) has bad type NOTAB, expected L4TAB",
            libc::EINVAL,
        ),
        (
            "cr3 on an L2",
            bent(&|g| g.vcpu0().set_ctrlreg(3, 2 << 12)),
            false,
            "has bad type L2TAB, expected L4TAB",
            libc::EINVAL,
        ),
        (
            "cr1 outside the guest",
            bent(&|g| g.vcpu0().set_ctrlreg(1, (0x6000 << 12) | 1)),
            false,
            "vcpu 0: cr1 (pfn 0x6000) out of range",
            libc::ERANGE,
        ),
        (
            "start_info outside the guest",
            bent(&|g| g.vcpu0().set_start_info_reg(0x8000)),
            false,
            "start_info (pfn 0x8000) out of range",
            libc::ERANGE,
        ),
        (
            "xenstore frame outside the guest",
            bent(&|g| {
                let l = StartInfoLayout::of(w64);
                let si = &mut g.pages.get_mut(&START_INFO).unwrap().1;
                w64.write_word(si, l.store_mfn, 0x9999);
            }),
            false,
            "start_info's xenstore frame (pfn 0x9999) out of range",
            libc::ERANGE,
        ),
        (
            "p2m frame outside the guest",
            bent(&|g| g.p2m_frames = vec![0x9000]),
            false,
            "p2m frame 0 (pfn 0x9000) out of range",
            libc::ERANGE,
        ),
        (
            "p2m frame on a page table",
            bent(&|g| g.p2m_frames = vec![3]),
            false,
            "p2m frame 0 (pfn 0x3) has bad type L1TAB, expected NOTAB",
            libc::EINVAL,
        ),
        (
            "PAGE_DATA pfn beyond max_pfn",
            bent(&|g| {
                g.pages.insert(0x100, (PageType::NoTab, [1; PAGE_SIZE]));
            }),
            false,
            "pfn 0x100 outside the domain maximum 0x3f",
            libc::ERANGE,
        ),
        (
            "32-bit stream into a domain that already has pages",
            PvGuest::new(GuestWidth::Bits32).stream(),
            true,
            "failed to switch d1 to a 32-bit guest",
            libc::EACCES,
        ),
        (
            "64-bit vCPU context in a 32-bit stream",
            bent32(&|g| g.vcpu0 = vec![0; pv::VCPU_CONTEXT_SIZE_64]),
            false,
            "X86_PV_VCPU_BASIC record: wrong size: a 32-bit guest's context is 2800 bytes, got 5168",
            libc::EINVAL,
        ),
        (
            "short vCPU context",
            bent(&|g| g.vcpu0.truncate(100)),
            false,
            "a 64-bit guest's context is 5168 bytes, got 100",
            libc::EINVAL,
        ),
        (
            "extended vCPU context over 128 bytes",
            bent(&|g| g.vcpu_records[0].2 = vec![0; 136]),
            false,
            "X86_PV_VCPU_EXTENDED record: too long: at most 128 bytes, got 136",
            libc::EINVAL,
        ),
        (
            "xsave record under 16 bytes",
            bent(&|g| g.vcpu_records[1].2 = vec![0; 8]),
            false,
            "X86_PV_VCPU_XSAVE record: too short: at least 16 bytes, got 8",
            libc::EINVAL,
        ),
        (
            "MSR record not a multiple of 16",
            bent(&|g| g.vcpu_records[2].2 = vec![0; 24]),
            false,
            "X86_PV_VCPU_MSRS record: 24 bytes is not a multiple of 16",
            libc::EINVAL,
        ),
        (
            "vCPU beyond the domain's",
            bent(&|g| g.vcpu_records[0].1 = 2),
            false,
            "vcpu_id 2 exceeds the domain's max vcpu id 1",
            libc::EINVAL,
        ),
        (
            "GDT over Xen's reserved entries",
            bent(&|g| {
                let off = 4960;
                g.vcpu0[off..off + 8].copy_from_slice(&(14 * 512 + 1u64).to_le_bytes());
            }),
            false,
            "GDT entry count 7169 out of range",
            libc::ERANGE,
        ),
    ];
    // Records the reader itself refuses (libxenguest refuses them too).
    cases.push((
        "PV_INFO width/levels pair that does not exist",
        rewrite_pv(&good_stream, |r, w| {
            if matches!(r, Record::X86PvInfo(_)) {
                w.write_raw(RecordType::X86_PV_INFO, &[&[8, 3, 0, 0, 0, 0, 0, 0]])
                    .unwrap();
                true
            } else {
                false
            }
        }),
        false,
        "X86_PV_INFO",
        libc::EINVAL,
    ));
    cases.push((
        "P2M_FRAMES whose range does not match its frame count",
        bent(&|g| g.p2m_frames = vec![P2M_FRAME, 9]),
        false,
        "X86_PV_P2M_FRAMES",
        libc::EINVAL,
    ));
    cases.push((
        "SHARED_INFO of the wrong size",
        rewrite_pv(&good_stream, |r, w| {
            if matches!(r, Record::SharedInfo(_)) {
                w.write_raw(RecordType::SHARED_INFO, &[&[0u8; 64]]).unwrap();
                true
            } else {
                false
            }
        }),
        false,
        "SHARED_INFO",
        libc::EINVAL,
    ));
    let (ok, ..) = restore_pv(&good_stream, false);
    ok.expect("baseline restore");
    for (name, stream, pages_first, expect, errno) in cases {
        let (r, ..) = restore_pv(&stream, pages_first);
        let e = match r {
            Ok(_) => panic!("{name}: restore accepted a hostile stream"),
            Err(e) => e,
        };
        let msg = e.to_string();
        assert!(
            msg.contains(expect),
            "{name}: error {msg:?} does not mention {expect:?}"
        );
        assert_eq!(e.errno(), errno, "{name}: errno of {msg:?}");
    }
}

/// A checkpointed stream of `guest`: its first checkpoint, then a second
/// in which pfn 12 changes, the L1 maps one more page, vCPU 0's extended
/// state changes and start_info is not sent again, then a third with
/// nothing new.
fn checkpointed_stream(guest: &PvGuest) -> (Vec<u8>, [u8; PAGE_SIZE], [u8; PAGE_SIZE]) {
    let mut l1 = guest.pages[&3].1;
    l1[8 * 30..8 * 31].copy_from_slice(&pte(50).to_le_bytes());
    let page12 = [0xc3u8; PAGE_SIZE];
    let mut second = guest.vcpu_records.clone();
    second[0].2 = vec![0x33; 64];
    let stream = guest.stream_with(|w| {
        w.write_checkpoint().unwrap();
        w.write_page_data(
            &[
                PfnEntry::new(12, PageType::NoTab),
                PfnEntry::new(3, PageType::L1Tab),
            ],
            &[&page12, &l1],
        )
        .unwrap();
        w.write_x86_tsc_info(&TscInfo::default()).unwrap();
        w.write_shared_info(&guest.shared_info).unwrap();
        w.write_x86_pv_vcpu(VcpuKind::Basic, 0, &guest.vcpu0)
            .unwrap();
        for (kind, id, blob) in &second {
            w.write_x86_pv_vcpu(*kind, *id, blob).unwrap();
        }
        w.write_checkpoint().unwrap();
        guest.end_of_checkpoint_with(w, &second);
        w.write_checkpoint().unwrap();
    });
    (stream, page12, l1)
}

impl PvGuest {
    fn end_of_checkpoint_with(
        &self,
        w: &mut Writer<&mut Vec<u8>>,
        records: &[(VcpuKind, u32, Vec<u8>)],
    ) {
        w.write_x86_tsc_info(&TscInfo::default()).unwrap();
        w.write_shared_info(&self.shared_info).unwrap();
        w.write_x86_pv_vcpu(VcpuKind::Basic, 0, &self.vcpu0)
            .unwrap();
        for (kind, id, blob) in records {
            w.write_x86_pv_vcpu(*kind, *id, blob).unwrap();
        }
    }
}

/// Checks what every checkpointed restore of [`checkpointed_stream`]
/// must leave, whichever number of completions it ran.
fn check_checkpointed(hv: &PvHost, id: DomId, page12: &[u8; PAGE_SIZE], completions: usize) {
    let mfns: Vec<u64> = (0..PFNS).map(|p| hv.mfn_of(p)).collect();
    assert_eq!(
        &hv.page(id, mfns[12]),
        page12,
        "pfn 12 from the last checkpoint"
    );
    let l1 = pv::read_table(&hv.page(id, mfns[3]));
    assert_eq!(
        l1[30],
        pte(mfns[50]),
        "the L1 of the last checkpoint, localised"
    );
    let si = hv.page(id, mfns[START_INFO as usize]);
    let l = StartInfoLayout::of(GuestWidth::Bits64);
    assert_eq!(
        GuestWidth::Bits64.read_word(&si, l.store_mfn),
        mfns[STORE as usize],
        "start_info converted once"
    );
    let st = hv.state();
    assert_eq!(st.contexts.len(), completions);
    for (_, ctx) in &st.contexts {
        let c = VcpuContext::new(GuestWidth::Bits64, &ctx[..]).unwrap();
        assert_eq!(c.start_info_reg(), mfns[START_INFO as usize]);
        assert_eq!(c.gdt_frame(0), mfns[GDT as usize]);
    }
    assert_eq!(
        st.ext.last(),
        Some(&(0, vec![0x33; 64])),
        "the last checkpoint's state"
    );
    assert_eq!(
        st.pins,
        vec![vec![(4, mfns[0])]],
        "each table pinned once, however many completions"
    );
    drop(st);
    let p2m = hv.page(id, mfns[P2M_FRAME as usize]);
    assert_eq!(&p2m[50 * 8..51 * 8], &mfns[50].to_le_bytes());
}

#[test]
fn a_remus_pv_stream_fails_over_to_its_last_checkpoint_with_pv_state_complete() {
    let guest = PvGuest::new(GuestWidth::Bits64);
    let (stream, page12, _) = checkpointed_stream(&guest);
    let mut cb = ToolstackRestore::default();
    let (r, hv, id, _h) = restore_pv_with(&stream, false, StreamType::Remus, &mut cb);
    let out = r.expect("failover restore");
    assert_eq!(out.checkpoints, 3);
    check_checkpointed(&hv, id, &page12, 1);
}

/// A COLO secondary's toolstack that always continues.
#[derive(Default)]
struct ColoToolstack {
    results: Vec<(u64, u64)>,
}

impl RestoreCallbacks for ColoToolstack {
    fn has(&self, _hook: RestoreHook) -> bool {
        true
    }
    fn checkpoint(&mut self) -> Result<Proceed, crate::toolstack::CallbackFailed> {
        Ok(Proceed::Continue)
    }
    fn postcopy(&mut self) -> Result<Proceed, crate::toolstack::CallbackFailed> {
        Ok(Proceed::Continue)
    }
    fn wait_checkpoint(&mut self) -> Result<Proceed, crate::toolstack::CallbackFailed> {
        Ok(Proceed::Continue)
    }
    fn suspend(&mut self) -> Result<Proceed, crate::toolstack::CallbackFailed> {
        Ok(Proceed::Continue)
    }
    fn restore_results(&mut self, store_gfn: u64, console_gfn: u64) {
        self.results.push((store_gfn, console_gfn));
    }
}

#[test]
fn a_colo_pv_stream_completes_every_checkpoint_converting_and_pinning_once() {
    let guest = PvGuest::new(GuestWidth::Bits64);
    let (stream, page12, _) = checkpointed_stream(&guest);
    let mut cb = ColoToolstack::default();
    let (r, hv, id, _h) = restore_pv_with(&stream, false, StreamType::Colo, &mut cb);
    r.expect("COLO restore");
    check_checkpointed(&hv, id, &page12, 3);
    let store = hv.mfn_of(STORE);
    let console = hv.mfn_of(CONSOLE);
    assert_eq!(
        cb.results,
        vec![(store, console); 3],
        "MFNs at every checkpoint"
    );
}

/// Saves a `bits`-bit PV guest with the p2m `layout` from one xensim host
/// with xcmig's save, restores it into an empty PV domain (64-bit, as
/// libxl creates it) on another, and compares the digests.
fn pv_round_trip_over_xensim(bits: u32, layout: xensim::P2mLayout) {
    use crate::save::testutil::{verify_stream_v2, RecLog, ToolstackSave};
    use crate::save::{save_domain, SaveParams};
    let src = TempHost::new("pv-src");
    let dst = TempHost::new("pv-dst");
    let config = |empty: bool, address_size: u32| xensim::DomainConfig {
        guest_type: GuestType::Pv,
        memory_bytes: 32 << 20,
        vcpus: 2,
        fill: xensim::Fill::Mixed,
        seed: 11,
        empty,
        address_size,
        p2m_layout: layout,
    };
    let sid = src.host.create_domain(&config(false, bits)).unwrap();
    let did = dst.host.create_domain(&config(true, 64)).unwrap();
    let mut cb = ToolstackSave::new(src.domain(sid));
    let mut stream = Vec::new();
    save_domain(
        &src.hv(),
        sid,
        &mut stream,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .expect("save");
    let path = src.dir.join("pv.xc");
    std::fs::write(&path, &stream).unwrap();
    if let Err(out) = verify_stream_v2(&path) {
        panic!("verify-stream-v2 rejected the stream:\n{out}");
    }
    let mut rcb = ToolstackRestore::default();
    let params = RestoreParams {
        store_evtchn: 5,
        store_domid: 0,
        console_evtchn: 6,
        console_domid: 0,
        stream_type: StreamType::Plain,
    };
    let out = restore_domain(&dst.hv(), did, &mut &stream[..], &params, &mut rcb)
        .unwrap_or_else(|e| panic!("restore: {e}"));
    let target = dst.domain(did);
    assert_eq!(target.address_size(), bits);
    assert_eq!(
        target.digest().expect("digest"),
        cb.digest_at_suspend.clone().expect("suspended"),
        "restored digest differs: target {:?}",
        target.digest_report().ok()
    );
    // The outputs are the target's MFNs of the rings, granted as such.
    let g = target.grant_entries().unwrap();
    assert_eq!(g[0], (1, 0, out.console_gfn as u32));
    assert_eq!(g[1], (1, 0, out.store_gfn as u32));
    for mfn in [out.store_gfn, out.console_gfn] {
        let mut page = [0u8; PAGE_SIZE];
        target
            .read_frame(mfn, &mut page)
            .expect("a frame of the target");
    }
}

#[test]
fn a_64_bit_pv_guest_saved_by_xcmig_restores_on_xensim_with_its_digest() {
    pv_round_trip_over_xensim(64, xensim::P2mLayout::Linear);
}

#[test]
fn a_32_bit_pv_guest_with_a_p2m_tree_restores_on_xensim_with_its_digest() {
    pv_round_trip_over_xensim(32, xensim::P2mLayout::Tree);
}
