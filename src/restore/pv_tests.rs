//! The PV restore into an empty xensim PV domain (the target libxl
//! creates: 64-bit, vCPUs down, no memory). Streams are written by hand
//! from a small guest that tests bend; what the restore must leave
//! (frames named by MFNs, start_info, shared_info and the guest's p2m
//! rewritten, vCPU state set, the root pinned, grants seeded) is read back
//! from the domain, whose Xen-like checks (address-size switches, page
//! table validation, vCPU state) the restore has to pass. Last, round
//! trips of guests xcmig saves from xensim.

use std::collections::BTreeMap;

use xensim::{DomainConfig, FaultMode, FaultRule, GuestType};

use super::tests::{restore_params, rewrite};
use super::*;
use crate::hv::{TscInfo, PAGE_SIZE};
use crate::save::testutil::{TempHost, ToolstackRestore, GO};
use crate::stream::{
    DomainHeader, DomainType, PageType, PfnEntry, Record, VcpuKind, Writer, WriterOptions,
    X86PvInfo,
};
use crate::toolstack::CallbackFailed;
use crate::x86::pv::{self, GuestWidth, SharedInfo, StartInfoLayout, VcpuContext, VGCF_ONLINE};

/// Memory of the target domain: room for the guest's 64 pages and more.
const TARGET_MEM: u64 = 4 << 20;

/// An empty PV domain on a fresh xensim host.
struct Target {
    host: TempHost,
    id: DomId,
    dom: xensim::Domain,
}

impl Target {
    fn new() -> Target {
        let host = TempHost::new("pv-restore");
        let id = host
            .host
            .create_domain(&DomainConfig {
                guest_type: GuestType::Pv,
                memory_bytes: TARGET_MEM,
                vcpus: 2,
                empty: true,
                ..DomainConfig::default()
            })
            .expect("create an empty PV domain");
        let dom = host.domain(id);
        Target { host, id, dom }
    }

    /// A target that already has a page (pfn 0), as no libxl target has.
    fn with_a_page() -> Target {
        let t = Target::new();
        t.dom.populate(&[0]).expect("populate pfn 0");
        t
    }

    /// Lets the restore make each `(call, n)` at most `n` times: the next
    /// such call fails with EIO, and with it the restore.
    fn allow_calls(&self, limits: &[(&str, u64)]) {
        let rules: Vec<FaultRule> = limits
            .iter()
            .map(|&(call, n)| FaultRule {
                call: call.to_string(),
                errno: libc::EIO,
                start: n + 1,
                mode: FaultMode::Once,
            })
            .collect();
        self.host.host.set_faults(&rules).expect("fault rules");
    }

    /// Restores `stream` through hv::sim, with the event channels of
    /// [`restore_params`]; a COLO secondary has log-dirty on first, as libxl
    /// turns it on.
    fn restore(
        &self,
        stream: &[u8],
        stream_type: StreamType,
        cb: &mut dyn RestoreCallbacks,
    ) -> Result<RestoreOutputs, RestoreError> {
        let hv = self.host.hv();
        let params = RestoreParams {
            stream_type,
            ..restore_params()
        };
        let mut input = stream;
        if stream_type == StreamType::Colo {
            self.dom
                .logdirty_enable()
                .expect("log-dirty on the secondary");
            let mut back = Vec::new();
            restore_domain_with_back_channel(&hv, self.id, &mut input, Some(&mut back), &params, cb)
        } else {
            restore_domain(&hv, self.id, &mut input, &params, cb)
        }
    }

    fn restore_plain(&self, stream: &[u8]) -> Result<RestoreOutputs, RestoreError> {
        self.restore(stream, StreamType::Plain, &mut ToolstackRestore::default())
    }

    /// The MFN populate gave `pfn`.
    fn mfn(&self, pfn: u64) -> u64 {
        self.dom
            .pfn_to_mfn(pfn)
            .unwrap_or_else(|| panic!("pfn {pfn:#x} populated"))
    }

    fn frame(&self, mfn: u64) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        self.dom
            .read_frame(mfn, &mut page)
            .unwrap_or_else(|e| panic!("read mfn {mfn:#x}: {e}"));
        page
    }

    /// The page of `pfn`, as the guest sees it.
    fn page(&self, pfn: u64) -> [u8; PAGE_SIZE] {
        self.frame(self.mfn(pfn))
    }

    /// The type Xen gives `pfn`'s frame, as a stream names it.
    fn page_type(&self, pfn: u64) -> Option<PageType> {
        let mut t = [self.mfn(pfn)];
        self.dom.page_types(&mut t).expect("page types");
        PageType::from_domctl_value(t[0] as u32)
    }

    fn shared_info_frame(&self) -> u64 {
        self.dom.info().expect("domain info").shared_info_frame
    }

    fn vcpu_context(&self, vcpu: u32) -> Vec<u8> {
        self.dom.vcpu_context(vcpu).expect("vcpu context")
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

/// Where the guest's 32-bit syscall callback is, in its extended vCPU
/// context (a canonical address, as Xen wants).
const SYSCALL32_EIP: u64 = 0x1111_0000;

/// An extended vCPU context as `XEN_DOMCTL_get_ext_vcpucontext` gives it
/// (vcpu 0, size 64) with the syscall32 callback at `eip`.
fn ext_context(eip: u64) -> Vec<u8> {
    let mut e = vec![0u8; 64];
    e[4..8].copy_from_slice(&64u32.to_le_bytes());
    e[8..16].copy_from_slice(&eip.to_le_bytes());
    e
}

/// XSAVE state: `{xcr0, xcr0_accum}` = x87|SSE, then the first 48 bytes
/// of the area, `fill`.
fn xsave_state(fill: u8) -> Vec<u8> {
    let mut x = vec![fill; 64];
    x[..8].copy_from_slice(&3u64.to_le_bytes());
    x[8..16].copy_from_slice(&3u64.to_le_bytes());
    x
}

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
            let l = pv::SharedInfoLayout::of(width);
            width.write_word(&mut shared_info, l.arch, PFNS);
        }
        PvGuest {
            width,
            pages,
            vcpu0,
            end_pfn: (PFNS - 1) as u32,
            p2m_frames: vec![P2M_FRAME],
            vcpu_records: vec![
                (VcpuKind::Extended, 0, ext_context(SYSCALL32_EIP)),
                (VcpuKind::Xsave, 0, xsave_state(0x22)),
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
        self.end_of_checkpoint(&mut w, &self.vcpu_records);
        tail(&mut w);
        drop(w);
        out
    }

    /// What libxenguest sends at the end of each checkpoint: TSC,
    /// SHARED_INFO, vCPU 0's basic record, then `records`.
    fn end_of_checkpoint(
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

fn restores_a_pv_guest(width: GuestWidth) {
    let guest = PvGuest::new(width);
    let t = Target::new();
    let untouched_vcpu1 = (
        t.dom.ext_vcpu_context(1).unwrap(),
        t.dom.vcpu_xsave(1).unwrap(),
        t.dom.vcpu_msrs(1).unwrap(),
    );
    // One more call than these fails the restore: the width is switched
    // only for a 32-bit stream, vCPU 0's context set once, the root pinned
    // in one batch (Xen would refuse pinning it again anyway), the grant
    // table seeded once.
    t.allow_calls(&[
        (
            "XEN_DOMCTL_set_address_size",
            u64::from(width == GuestWidth::Bits32),
        ),
        ("xc_vcpu_setcontext", 1),
        ("xc_mmuext_op", 1),
        ("xenforeignmemory_map_resource", 1),
    ]);
    let out = t.restore_plain(&guest.stream()).expect("restore");
    let mfn = |p: u64| t.mfn(p);
    assert_eq!(t.dom.address_size(), u32::from(width.bytes()) * 8);

    // Each pfn populated once (a pfn populated again would keep its old
    // frame, counted), the unsent one named by the L1 included.
    assert_eq!(t.dom.info().unwrap().tot_pages, PFNS, "pages of the domain");
    // Xen's types are the stream's: the root pinned, the tables below it
    // typed by validating it, not pinned.
    for pfn in 0..PFNS {
        let want = guest.pages.get(&pfn).map_or(PageType::NoTab, |p| p.0);
        assert_eq!(t.page_type(pfn), Some(want), "type of pfn {pfn}");
    }

    // Every data page landed at its pfn's MFN; tables name MFNs, the
    // unsent pfn named by the L1 was populated, non-present entries kept.
    for (&pfn, (ty, page)) in &guest.pages {
        if pv::table_level(*ty).is_none() && pfn != START_INFO && pfn != P2M_FRAME {
            assert_eq!(&t.page(pfn), page, "pfn {pfn}");
        }
    }
    let l1 = pv::read_table(&t.page(3));
    for (i, &e) in l1.iter().take(20).enumerate() {
        assert_eq!(e, pte(mfn(10 + i as u64)), "L1[{i}]");
    }
    assert_eq!(l1[100], pte(mfn(UNSENT)));
    assert_eq!(l1[101], pv::pte_with_frame(0x62, 0xf_ffff));
    let root = pv::read_table(&t.page(0));
    assert_eq!(
        root[0],
        pte(mfn(if width == GuestWidth::Bits64 { 1 } else { 2 }))
    );

    // vCPU 0: online, start_info, GDT and cr3 (and a 64-bit cr1) as MFNs,
    // as Xen reads them back; vCPU 1 had no records and is left alone.
    let ctx = t.vcpu_context(0);
    let c = VcpuContext::new(width, &ctx[..]).unwrap();
    assert!(t.dom.vcpu_online(0));
    assert_ne!(c.flags() & VGCF_ONLINE, 0);
    assert_eq!(c.start_info_reg(), mfn(START_INFO));
    assert_eq!(c.gdt_frame(0), mfn(GDT));
    assert_eq!(width.cr3_to_frame(c.ctrlreg(3)), Some(mfn(0)));
    if width == GuestWidth::Bits64 {
        assert_eq!(c.ctrlreg(1), mfn(0) << 12);
    }
    assert_eq!(
        t.dom.ext_vcpu_context(0).unwrap(),
        ext_context(SYSCALL32_EIP)
    );
    let xsave = t.dom.vcpu_xsave(0).unwrap();
    let sent = xsave_state(0x22);
    assert_eq!(xsave[..sent.len()], sent[..], "xsave state as sent");
    assert!(xsave[sent.len()..].iter().all(|&b| b == 0), "the rest zero");
    assert_eq!(t.dom.vcpu_msrs(0).unwrap(), vec![(0xc000_0103, 9)]);
    assert!(!t.dom.vcpu_online(1), "vCPU 1 stays down");
    assert_eq!(
        (
            t.dom.ext_vcpu_context(1).unwrap(),
            t.dom.vcpu_xsave(1).unwrap(),
            t.dom.vcpu_msrs(1).unwrap(),
        ),
        untouched_vcpu1,
        "vCPU 1's state"
    );
    // Grant entries at the MFNs, as a PV guest's.
    let grants = t.dom.grant_entries().unwrap();
    assert_eq!(grants[0], (1, 0, mfn(CONSOLE) as u32));
    assert_eq!(grants[1], (1, 0, mfn(STORE) as u32));

    // start_info: store and console as MFNs with the new event channels.
    let si = t.page(START_INFO);
    let l = StartInfoLayout::of(width);
    let params = restore_params();
    assert_eq!(width.read_word(&si, l.store_mfn), mfn(STORE));
    assert_eq!(width.read_word(&si, l.console_mfn), mfn(CONSOLE));
    assert_eq!(pv::read_u32(&si, l.store_evtchn), params.store_evtchn);
    assert_eq!(pv::read_u32(&si, l.console_evtchn), params.console_evtchn);
    assert_eq!(width.read_word(&si, l.nr_pages), PFNS);
    assert_eq!(
        width.read_word(&si, l.shared_info),
        t.shared_info_frame() << 12
    );
    assert_eq!(pv::read_u32(&si, l.flags), 0);
    assert_eq!((out.store_gfn, out.console_gfn), (mfn(STORE), mfn(CONSOLE)));

    // The guest's p2m frame holds every pfn's MFN, in the guest's width.
    let p2m = t.page(P2M_FRAME);
    let w = usize::from(width.bytes());
    for pfn in 0..PFNS {
        let mut b = [0u8; 8];
        b[..w].copy_from_slice(&p2m[pfn as usize * w..(pfn as usize + 1) * w]);
        assert_eq!(u64::from_le_bytes(b), mfn(pfn), "p2m[{pfn}]");
    }

    // shared_info: no frame list, events masked, arch kept.
    let sh = t.frame(t.shared_info_frame());
    let info = SharedInfo::new(width, &sh[..]).unwrap();
    assert_eq!(info.frame_list_list(), 0);
    assert_eq!(info.max_pfn(), PFNS);
    let l = *info.layout();
    assert!(sh[l.evtchn_mask..l.evtchn_mask + l.evtchn_bitmap_len]
        .iter()
        .all(|&b| b == 0xff));
    // Xen reads the guest's maximum pfn from it.
    assert_eq!(t.dom.max_gpfn(), PFNS - 1);
}

#[test]
fn a_64_bit_pv_stream_restores_with_every_frame_named_by_its_mfn() {
    restores_a_pv_guest(GuestWidth::Bits64);
}

#[test]
fn a_32_bit_pv_stream_switches_the_domain_and_restores_with_every_frame_named_by_its_mfn() {
    restores_a_pv_guest(GuestWidth::Bits32);
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
    // (name, stream, whether the target has a page already, message, errno)
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
            // xensim refuses the switch as Xen's switch_compat does.
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
        rewrite(&good_stream, None, |r, w| {
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
        rewrite(&good_stream, None, |r, w| {
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
    Target::new()
        .restore_plain(&good_stream)
        .expect("baseline restore");
    for (name, stream, has_a_page, expect, errno) in cases {
        let t = if has_a_page {
            Target::with_a_page()
        } else {
            Target::new()
        };
        let e = match t.restore_plain(&stream) {
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

/// Where the second checkpoint moves the syscall32 callback.
const SECOND_EIP: u64 = 0x3333_0000;

/// A checkpointed stream of `guest`: its first checkpoint, then a second
/// in which pfn 12 changes, the L1 maps one more page, vCPU 0's extended
/// state changes and start_info is not sent again, then a third with
/// nothing new. Also the second checkpoint's pfn 12.
fn checkpointed_stream(guest: &PvGuest) -> (Vec<u8>, [u8; PAGE_SIZE]) {
    let mut l1 = guest.pages[&3].1;
    l1[8 * 30..8 * 31].copy_from_slice(&pte(50).to_le_bytes());
    let page12 = [0xc3u8; PAGE_SIZE];
    let mut second = guest.vcpu_records.clone();
    second[0].2 = ext_context(SECOND_EIP);
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
        guest.end_of_checkpoint(w, &second);
        w.write_checkpoint().unwrap();
        guest.end_of_checkpoint(w, &second);
        w.write_checkpoint().unwrap();
    });
    (stream, page12)
}

/// Checks what every checkpointed restore of [`checkpointed_stream`]
/// must leave, whichever number of completions it ran; `contexts` are
/// vCPU 0's contexts as Xen held them after each completion.
fn check_checkpointed(t: &Target, page12: &[u8; PAGE_SIZE], contexts: &[Vec<u8>]) {
    assert_eq!(&t.page(12), page12, "pfn 12 from the last checkpoint");
    assert_eq!(
        t.dom.info().unwrap().tot_pages,
        PFNS,
        "no pfn populated twice"
    );
    let l1 = pv::read_table(&t.page(3));
    assert_eq!(
        l1[30],
        pte(t.mfn(50)),
        "the L1 of the last checkpoint, localised"
    );
    let si = t.page(START_INFO);
    let l = StartInfoLayout::of(GuestWidth::Bits64);
    assert_eq!(
        GuestWidth::Bits64.read_word(&si, l.store_mfn),
        t.mfn(STORE),
        "start_info converted once"
    );
    for ctx in contexts {
        let c = VcpuContext::new(GuestWidth::Bits64, &ctx[..]).unwrap();
        assert_eq!(c.start_info_reg(), t.mfn(START_INFO));
        assert_eq!(c.gdt_frame(0), t.mfn(GDT));
    }
    assert_eq!(
        t.dom.ext_vcpu_context(0).unwrap(),
        ext_context(SECOND_EIP),
        "the last checkpoint's state"
    );
    assert_eq!(t.page_type(0), Some(PageType::L4TabPin), "the root pinned");
    let p2m = t.page(P2M_FRAME);
    assert_eq!(&p2m[50 * 8..51 * 8], &t.mfn(50).to_le_bytes());
}

#[test]
fn a_remus_pv_stream_fails_over_to_its_last_checkpoint_with_pv_state_complete() {
    let guest = PvGuest::new(GuestWidth::Bits64);
    let (stream, page12) = checkpointed_stream(&guest);
    let t = Target::new();
    // Failover completes the stream once: one context, one pin batch (Xen
    // refuses pinning a pinned table).
    t.allow_calls(&[("xc_vcpu_setcontext", 1), ("xc_mmuext_op", 1)]);
    let out = t
        .restore(&stream, StreamType::Remus, &mut ToolstackRestore::default())
        .expect("failover restore");
    assert_eq!(out.checkpoints, 3);
    check_checkpointed(&t, &page12, &[t.vcpu_context(0)]);
}

/// A COLO secondary's toolstack that always continues, keeping the
/// results and vCPU 0's context at each completed checkpoint.
struct ColoToolstack {
    dom: xensim::Domain,
    results: Vec<(u64, u64)>,
    contexts: Vec<Vec<u8>>,
}

impl RestoreCallbacks for ColoToolstack {
    fn has(&self, _hook: RestoreHook) -> bool {
        true
    }
    fn checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        GO
    }
    fn postcopy(&mut self) -> Result<Proceed, CallbackFailed> {
        GO
    }
    fn wait_checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        GO
    }
    fn suspend(&mut self) -> Result<Proceed, CallbackFailed> {
        GO
    }
    fn restore_results(&mut self, store_gfn: u64, console_gfn: u64) {
        self.results.push((store_gfn, console_gfn));
        self.contexts
            .push(self.dom.vcpu_context(0).expect("vcpu 0's context"));
    }
}

#[test]
fn a_colo_pv_stream_completes_every_checkpoint_converting_and_pinning_once() {
    let guest = PvGuest::new(GuestWidth::Bits64);
    let (stream, page12) = checkpointed_stream(&guest);
    let t = Target::new();
    // A context per completion, the root pinned at the first only.
    t.allow_calls(&[("xc_vcpu_setcontext", 3), ("xc_mmuext_op", 1)]);
    let mut cb = ColoToolstack {
        dom: t.dom.clone(),
        results: Vec::new(),
        contexts: Vec::new(),
    };
    let out = t
        .restore(&stream, StreamType::Colo, &mut cb)
        .expect("COLO restore");
    assert_eq!(out.checkpoints, 3);
    assert_eq!(cb.contexts.len(), 3, "a context set at every completion");
    check_checkpointed(&t, &page12, &cb.contexts);
    assert_eq!(
        cb.results,
        vec![(t.mfn(STORE), t.mfn(CONSOLE)); 3],
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
    let out = restore_domain(
        &dst.hv(),
        did,
        &mut &stream[..],
        &restore_params(),
        &mut rcb,
    )
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
