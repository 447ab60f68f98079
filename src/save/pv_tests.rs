//! PV saves over xensim's PV model: 64-bit and 32-bit guests with either
//! p2m layout, non-live and live; the stream parses and its PV records are
//! what libxenguest writes for the same guest.

use std::collections::BTreeMap;

use xensim::{DomainConfig, Fill, GuestType, P2mLayout};

use super::testutil::{RecLog, ScriptedDirty, TempHost, ToolstackSave};
use super::*;
use crate::hv::{pfinfo, DomainCtl, PAGE_SIZE};
use crate::stream::{self, PageType, Record, VcpuKind};
use crate::x86::pv::{
    pte_frame, read_table, table_level, GuestWidth, SharedInfo, VcpuContext, PTE_PRESENT,
};

const MEM: u64 = 16 << 20;

fn create_pv(h: &TempHost, bits: u32, layout: P2mLayout, seed: u64) -> DomId {
    h.host
        .create_domain(&DomainConfig {
            guest_type: GuestType::Pv,
            memory_bytes: MEM,
            vcpus: 2,
            fill: Fill::Mixed,
            seed,
            empty: false,
            address_size: bits,
            p2m_layout: layout,
        })
        .expect("create PV domain")
}

/// What a PV stream says.
#[derive(Default)]
struct PvStream {
    types: Vec<u32>,
    pv_info: Option<(u8, u8)>,
    p2m: Option<(u32, u32, Vec<u64>)>,
    /// The last page sent for each pfn, with its type.
    pages: BTreeMap<u64, (PageType, Vec<u8>)>,
    shared_info: Vec<Vec<u8>>,
    /// (kind, vcpu, body) in order.
    vcpus: Vec<(VcpuKind, u32, Vec<u8>)>,
}

fn parse(bytes: &[u8]) -> PvStream {
    let mut r = stream::Reader::new(bytes).expect("headers");
    assert_eq!(r.domain_header().domain_type, stream::DomainType::X86Pv);
    let mut s = PvStream::default();
    while let Some(rec) = r.next_record().expect("record") {
        s.types.push(rec.record_type().0);
        match rec {
            Record::X86PvInfo(i) => s.pv_info = Some((i.guest_width, i.pt_levels)),
            Record::X86PvP2mFrames(p) => {
                s.p2m = Some((p.start_pfn, p.end_pfn, p.frames.iter().collect()))
            }
            Record::PageData(pd) => {
                for (e, page) in pd.pages() {
                    if let Some(p) = page {
                        s.pages.insert(e.pfn, (e.page_type, p.to_vec()));
                    }
                }
            }
            Record::SharedInfo(b) => s.shared_info.push(b.to_vec()),
            Record::X86PvVcpu(v) => s.vcpus.push((v.kind, v.vcpu_id, v.context.to_vec())),
            _ => {}
        }
    }
    s
}

fn frame(dom: &xensim::Domain, mfn: u64) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    dom.read_frame(mfn, &mut page).expect("read frame");
    page
}

/// The p2m entries of `width` in `page`.
fn entries(width: GuestWidth, page: &[u8]) -> Vec<u64> {
    match width {
        GuestWidth::Bits64 => page
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        GuestWidth::Bits32 => page
            .chunks_exact(4)
            .map(|b| match u32::from_le_bytes(b.try_into().unwrap()) {
                u32::MAX => u64::MAX,
                v => u64::from(v),
            })
            .collect(),
    }
}

/// Checks a complete stream of the suspended guest `dom` against the
/// guest: the records libxenguest writes, with libxenguest's values.
fn check_against_guest(s: &PvStream, dom: &xensim::Domain, width: GuestWidth, compat_m2p: u64) {
    let mfn_of = |pfn: u64| dom.pfn_to_mfn(pfn).expect("populated pfn");
    assert_eq!(s.pv_info, Some((width.bytes(), width.levels())));

    // P2M_FRAMES: 0..=max_pfn, and the frames listed hold the guest's p2m.
    let (start, end, frames) = s.p2m.clone().expect("X86_PV_P2M_FRAMES");
    let shinfo = frame(dom, dom.info().unwrap().shared_info_frame);
    let max_pfn = SharedInfo::new(width, &shinfo[..]).unwrap().max_pfn() - 1;
    assert_eq!((start, u64::from(end)), (0, max_pfn));
    assert_eq!(frames.len() as u64, width.p2m_frames(max_pfn + 1));
    let mut p2m = Vec::new();
    for &pfn in &frames {
        p2m.extend(entries(width, &frame(dom, mfn_of(pfn))));
    }
    for pfn in 0..=max_pfn {
        assert_eq!(
            p2m[pfn as usize],
            dom.pfn_to_mfn(pfn).unwrap_or(u64::MAX),
            "p2m[{pfn:#x}]"
        );
    }

    // Pages: ordinary ones as the guest has them, page tables by pfn.
    let mut tables = [0usize; 5];
    for (&pfn, (t, page)) in &s.pages {
        let mut types = [mfn_of(pfn)];
        dom.page_types(&mut types).unwrap();
        assert_eq!(
            Some(*t),
            PageType::from_domctl_value(types[0] as u32),
            "type of {pfn:#x}"
        );
        let original = frame(dom, mfn_of(pfn));
        let Some(level) = table_level(*t) else {
            let diff = page.iter().zip(&original).position(|(a, b)| a != b);
            assert_eq!(diff, None, "page of pfn {pfn:#x} differs at this offset");
            continue;
        };
        tables[level as usize] += 1;
        let sent = read_table(page.as_slice().try_into().unwrap());
        let had = read_table(original.as_slice().try_into().unwrap());
        // Xen's entries: a 64-bit L4's slots 256-271; a PAE L3's entries
        // past 4; a PAE L2's from 428 on when 428 maps the compat M2P.
        let compat_l2 = level == 2 && pte_frame(had[428]) == compat_m2p;
        for (i, (&n, &o)) in sent.iter().zip(&had).enumerate() {
            let xen = match width {
                GuestWidth::Bits64 => level == 4 && (256..=271).contains(&i),
                GuestWidth::Bits32 => (level == 3 && i >= 4) || (compat_l2 && i >= 428),
            };
            if xen {
                assert_eq!(
                    n, 0,
                    "Xen's L{level} slot {i} of pfn {pfn:#x} goes out empty"
                );
            } else if o & PTE_PRESENT == 0 {
                assert_eq!(n, o);
            } else {
                assert_eq!(
                    n & !0x000f_ffff_ffff_f000,
                    o & !0x000f_ffff_ffff_f000,
                    "flags kept"
                );
                assert_eq!(
                    mfn_of(pte_frame(n)),
                    pte_frame(o),
                    "L{level}[{i}] of pfn {pfn:#x}"
                );
            }
        }
    }
    assert!(
        tables[1] > 0 && tables[2] > 0 && tables[3] > 0,
        "{tables:?}"
    );
    assert_eq!(tables[4] > 0, width == GuestWidth::Bits64, "{tables:?}");

    // SHARED_INFO: the page itself.
    assert_eq!(s.shared_info.last(), Some(&shinfo));

    // vCPU records: per online vCPU, BASIC with frames as pfns, then the
    // optional ones, each with the {vcpu_id, pad} header taken off.
    let online: Vec<u32> = (0..dom.vcpus()).filter(|&v| dom.vcpu_online(v)).collect();
    assert!(!online.is_empty());
    for &v in &online {
        let of = |k: VcpuKind| {
            s.vcpus
                .iter()
                .rev()
                .find(|(kind, id, _)| *kind == k && *id == v)
                .map(|x| x.2.clone())
        };
        let basic = of(VcpuKind::Basic).expect("basic record");
        assert_eq!(basic.len(), width.vcpu_context_size());
        let sent = VcpuContext::new(width, &basic[..]).unwrap();
        let raw = dom.vcpu_context(v).unwrap();
        let orig = VcpuContext::new(width, &raw[..]).unwrap();
        let cr3_pfn = width.cr3_to_frame(sent.ctrlreg(3)).unwrap();
        assert_eq!(
            Some(mfn_of(cr3_pfn)),
            width.cr3_to_frame(orig.ctrlreg(3)),
            "vcpu{v} cr3"
        );
        for i in 0..orig.gdt_frame_count().unwrap() {
            assert_eq!(
                mfn_of(sent.gdt_frame(i)),
                orig.gdt_frame(i),
                "vcpu{v} gdt {i}"
            );
        }
        if v == 0 {
            assert_eq!(
                mfn_of(sent.start_info_reg()),
                orig.start_info_reg(),
                "start_info"
            );
        }
        if width == GuestWidth::Bits64 && orig.ctrlreg(1) != 0 {
            assert_eq!(sent.ctrlreg(1) & 0xfff, 1);
            assert_eq!(mfn_of(sent.ctrlreg(1) >> 12), orig.ctrlreg(1) >> 12);
        }
        let ext = dom.ext_vcpu_context(v).unwrap();
        assert_eq!(of(VcpuKind::Extended), (!ext.is_empty()).then_some(ext));
        let xsave = of(VcpuKind::Xsave);
        assert_eq!(xsave.is_some(), dom.xsave_features() != 0);
        if let Some(x) = xsave {
            assert_eq!(x, dom.vcpu_xsave(v).unwrap());
        }
        let msrs = dom.vcpu_msrs(v).unwrap();
        match of(VcpuKind::Msrs) {
            None => assert!(msrs.is_empty()),
            Some(body) => {
                assert_eq!(body.len(), 16 * msrs.len());
                for (b, (idx, val)) in body.chunks_exact(16).zip(&msrs) {
                    assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), *idx);
                    assert_eq!(u64::from_le_bytes(b[8..].try_into().unwrap()), *val);
                }
            }
        }
    }
    assert!(
        s.vcpus.iter().all(|(_, id, _)| online.contains(id)),
        "no records of offline vCPUs"
    );
}

/// Whether the record types go in libxenguest's order: X86_PV_INFO and
/// the policies, STATIC_DATA_END, X86_PV_P2M_FRAMES, pages, then TSC,
/// SHARED_INFO and the vCPUs, END.
fn check_order(types: &[u32]) {
    use crate::stream::RecordType as T;
    let pos = |t: T| {
        types
            .iter()
            .position(|&x| x == t.0)
            .expect("record present")
    };
    assert_eq!(types[0], T::X86_PV_INFO.0);
    assert!(pos(T::STATIC_DATA_END) < pos(T::X86_PV_P2M_FRAMES));
    assert_eq!(pos(T::X86_PV_P2M_FRAMES) + 1, pos(T::PAGE_DATA));
    let tsc = types.iter().rposition(|&x| x == T::X86_TSC_INFO.0).unwrap();
    assert_eq!(types[tsc + 1], T::SHARED_INFO.0);
    assert_eq!(types[tsc + 2], T::X86_PV_VCPU_BASIC.0);
    assert_eq!(*types.last().unwrap(), T::END.0);
}

/// The compat M2P's first frame for a 32-bit guest (none for 64-bit).
fn compat_m2p(hv: &crate::hv::sim::SimHypervisor, width: GuestWidth) -> u64 {
    match width {
        GuestWidth::Bits32 => crate::hv::X86Pv::compat_m2p_mfn0(hv).unwrap(),
        GuestWidth::Bits64 => u64::MAX,
    }
}

/// A toolstack whose suspend, with `.1`, also pauses the domain (as a
/// toolstack may before the last pass), which makes a bad page table
/// fatal.
struct MaybePause(ToolstackSave, bool);

impl SaveCallbacks for MaybePause {
    fn has(&self, hook: SaveHook) -> bool {
        self.0.has(hook)
    }
    fn suspend(&mut self) -> Result<(), crate::toolstack::CallbackFailed> {
        self.0.suspend()?;
        let dom = &self.0.dom;
        if self.1 {
            dom.pause().expect("pause");
        }
        Ok(())
    }
    fn precopy_policy(&mut self, stats: PrecopyStats) -> PolicyDecision {
        self.0.precopy_policy(stats)
    }
    fn postcopy(&mut self) -> crate::toolstack::Next {
        self.0.postcopy()
    }
    fn checkpoint(&mut self) -> crate::toolstack::Next {
        self.0.checkpoint()
    }
    fn wait_checkpoint(&mut self) -> crate::toolstack::Next {
        self.0.wait_checkpoint()
    }
    fn switch_qemu_logdirty(
        &mut self,
        domid: DomId,
        enable: bool,
    ) -> Result<(), crate::toolstack::CallbackFailed> {
        self.0.switch_qemu_logdirty(domid, enable)
    }
}

fn nonlive(bits: u32, layout: P2mLayout) {
    let h = TempHost::new("pv-save");
    let id = create_pv(&h, bits, layout, 40 + u64::from(bits));
    let hv = h.hv();
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.has_qemu = false;
    let mut out = Vec::new();
    let log = RecLog::default();
    let sum = save_domain(&hv, id, &mut out, &SaveParams::default(), &mut cb, &log)
        .unwrap_or_else(|e| panic!("save: {e}: {:#?}", log.lines.borrow()));
    let dom = h.domain(id);
    let width = GuestWidth::from_bits(bits).unwrap();
    let s = parse(&out);
    check_order(&s.types);
    check_against_guest(&s, &dom, width, compat_m2p(&hv, width));
    assert_eq!(sum.p2m_size, u64::from(s.p2m.unwrap().1) + 1);
    assert_eq!(cb.suspends, 1);
    assert!(log.errors().is_empty(), "{:?}", log.errors());
}

#[test]
fn a_64_bit_guest_with_a_linear_p2m_saves_as_libxenguest_writes_it() {
    nonlive(64, P2mLayout::Linear);
}

#[test]
fn a_64_bit_guest_with_a_p2m_tree_saves_as_libxenguest_writes_it() {
    nonlive(64, P2mLayout::Tree);
}

#[test]
fn a_32_bit_guest_with_a_linear_p2m_saves_as_libxenguest_writes_it() {
    nonlive(32, P2mLayout::Linear);
}

#[test]
fn a_32_bit_guest_with_a_p2m_tree_saves_as_libxenguest_writes_it() {
    nonlive(32, P2mLayout::Tree);
}

fn live_save(bits: u32, layout: P2mLayout) {
    let h = TempHost::new("pv-live");
    let id = create_pv(&h, bits, layout, 50 + u64::from(bits));
    let hv = ScriptedDirty::new(h.hv(), h.domain(id), &[60, 60, 10]);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.has_qemu = false;
    cb.policy = Some(Box::new(simple_precopy_policy));
    let mut cb = MaybePause(cb, false);
    let params = SaveParams {
        live: true,
        ..SaveParams::default()
    };
    let mut out = Vec::new();
    let log = RecLog::default();
    let sum = save_domain(&hv, id, &mut out, &params, &mut cb, &log)
        .unwrap_or_else(|e| panic!("save: {e}: {:#?}", log.lines.borrow()));
    assert!(sum.precopy_iterations > 1, "{sum:?}");
    let s = parse(&out);
    check_order(&s.types);
    let width = GuestWidth::from_bits(bits).unwrap();
    check_against_guest(&s, &h.domain(id), width, compat_m2p(&hv.inner, width));
    let page_records = s
        .types
        .iter()
        .filter(|&&t| t == stream::RecordType::PAGE_DATA.0)
        .count();
    assert!(page_records > 3, "pages went out over several rounds");
}

#[test]
fn a_live_save_of_a_64_bit_guest_with_a_linear_p2m_iterates_over_log_dirty() {
    live_save(64, P2mLayout::Linear);
}

#[test]
fn a_live_save_of_a_32_bit_guest_with_a_p2m_tree_iterates_over_log_dirty() {
    live_save(32, P2mLayout::Tree);
}

#[test]
fn a_live_save_of_a_64_bit_guest_with_a_p2m_tree_iterates_over_log_dirty() {
    live_save(64, P2mLayout::Tree);
}

#[test]
fn a_live_save_of_a_32_bit_guest_with_a_linear_p2m_iterates_over_log_dirty() {
    live_save(32, P2mLayout::Linear);
}

#[test]
fn page_types_of_a_pv_guest_are_asked_by_machine_frame() {
    // The types the stream carries are those of the MFNs: no pfn of this
    // guest is its own MFN (frames are allocated at random), so asking by
    // pfn would find holes.
    let h = TempHost::new("pv-types");
    let id = create_pv(&h, 64, P2mLayout::Linear, 9);
    let dom = h.domain(id);
    let hv = h.hv();
    let n = hv.nr_gpfns(id).unwrap();
    let same = (0..n).filter(|&p| dom.pfn_to_mfn(p) == Some(p)).count();
    assert!(same < 4, "{same} pfns are their own MFN");
    let mut t = [u64::MAX];
    dom.page_types(&mut t).unwrap();
    assert_eq!(t[0], u64::from(pfinfo::XTAB));
}

/// The frames of `dom` typed as level-`level` tables, as (pfn, mfn).
fn tables_of(dom: &xensim::Domain, level: u8) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for pfn in 0..=dom.max_gpfn() {
        let Some(mfn) = dom.pfn_to_mfn(pfn) else {
            continue;
        };
        let mut t = [mfn];
        dom.page_types(&mut t).unwrap();
        if PageType::from_domctl_value(t[0] as u32).and_then(table_level) == Some(level) {
            out.push((pfn, mfn));
        }
    }
    out
}

/// Write `pte` into the first non-present entry of the L1 table at `mfn`
/// (as a guest caught mid-update would have it), or over its last entry
/// when it has none free; returns the index.
fn plant_pte(dom: &xensim::Domain, mfn: u64, pte: u64) -> usize {
    let mut page = frame(dom, mfn);
    let t = read_table(page.as_slice().try_into().unwrap());
    let i = t.iter().position(|e| e & PTE_PRESENT == 0).unwrap_or(511);
    page[i * 8..i * 8 + 8].copy_from_slice(&pte.to_le_bytes());
    dom.write_frame(mfn, &page).expect("write the table");
    i
}

fn save_plain(
    h: &TempHost,
    id: DomId,
    pause: bool,
    log: &RecLog,
) -> (Result<SaveSummary, SaveError>, Vec<u8>) {
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.has_qemu = false;
    let mut cb = MaybePause(cb, pause);
    let mut out = Vec::new();
    let r = save_domain(&h.hv(), id, &mut out, &SaveParams::default(), &mut cb, log);
    (r, out)
}

#[test]
fn a_page_table_naming_a_foreign_frame_is_deferred_unpaused_and_fatal_paused() {
    let h = TempHost::new("pv-badpte");
    let id = create_pv(&h, 64, P2mLayout::Linear, 21);
    let dom = h.domain(id);
    let (pfn, mfn) = tables_of(&dom, 1)[0];
    let foreign = dom.info().unwrap().shared_info_frame;
    let i = plant_pte(&dom, mfn, (foreign << 12) | PTE_PRESENT | 0x60);

    // Suspended but not paused: libxenguest's EAGAIN, the table is left
    // out (a non-live save has no later pass to send it in).
    let log = RecLog::default();
    let (r, out) = save_plain(&h, id, false, &log);
    r.unwrap_or_else(|e| panic!("unpaused save: {e}"));
    let s = parse(&out);
    assert!(!s.pages.contains_key(&pfn), "the table was deferred");
    assert!(s.pages.len() > 100);
    dom.resume().unwrap();

    // Paused: fatal, naming the table, the entry and the frame.
    let log = RecLog::default();
    let (r, _) = save_plain(&h, id, true, &log);
    let e = r.expect_err("a bad table of a paused guest fails the save");
    assert_eq!(e.errno(), libc::ERANGE);
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "page table at pfn {pfn:#x}: L1[{i}] names frame {foreign:#x}, which is not the guest's"
        )),
        "{msg}"
    );
    assert!(
        log.errors().iter().any(|l| l.contains(&msg)),
        "{:?}",
        log.errors()
    );
}

#[test]
fn a_superpage_in_a_pv_guest_fails_the_save_with_e2big() {
    let h = TempHost::new("pv-pse");
    let id = create_pv(&h, 32, P2mLayout::Tree, 22);
    let dom = h.domain(id);
    let (pfn, mfn) = tables_of(&dom, 2)[0];
    // A 2 MiB mapping of the guest's own first frames.
    let target = dom.pfn_to_mfn(0).unwrap();
    let mut page = frame(&dom, mfn);
    let t = read_table(page.as_slice().try_into().unwrap());
    let i = t.iter().position(|e| e & PTE_PRESENT == 0).unwrap();
    let pte = (target << 12) | PTE_PRESENT | crate::x86::pv::PTE_PSE;
    page[i * 8..i * 8 + 8].copy_from_slice(&pte.to_le_bytes());
    dom.write_frame(mfn, &page).unwrap();
    let (r, _) = save_plain(&h, id, false, &RecLog::default());
    let e = r.expect_err("superpages cannot be migrated");
    assert_eq!(e.errno(), libc::E2BIG);
    assert!(
        e.to_string().starts_with(&format!(
            "page table at pfn {pfn:#x}: cannot migrate superpage (L2[{i}]"
        )),
        "{e}"
    );
}

#[test]
fn a_live_save_aborts_when_the_guest_changes_its_linear_p2m() {
    let h = TempHost::new("pv-gen");
    let id = create_pv(&h, 64, P2mLayout::Linear, 23);
    let dom = h.domain(id);
    let shinfo_mfn = dom.info().unwrap().shared_info_frame;
    let hv = ScriptedDirty::new(h.hv(), h.domain(id), &[60, 60, 60]);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.has_qemu = false;
    // During the second round the guest remaps its p2m (the generation
    // moves by two: before and after the change).
    let guest = h.domain(id);
    cb.policy = Some(Box::new(move |stats: PrecopyStats| {
        if stats.iteration == 1 && stats.dirty_count == -1 {
            let mut page = frame(&guest, shinfo_mfn);
            let l = crate::x86::pv::SharedInfoLayout::of(GuestWidth::Bits64);
            let at = l.arch + 5 * 8;
            let g = u64::from_le_bytes(page[at..at + 8].try_into().unwrap());
            page[at..at + 8].copy_from_slice(&(g + 2).to_le_bytes());
            guest.write_frame(shinfo_mfn, &page).unwrap();
        }
        PolicyDecision::Continue
    }));
    let params = SaveParams {
        live: true,
        ..SaveParams::default()
    };
    let log = RecLog::default();
    let e = save_domain(&hv, id, &mut Vec::new(), &params, &mut cb, &log)
        .expect_err("the p2m changed under the save");
    assert_eq!(e.errno(), libc::EBUSY);
    assert!(
        e.to_string().starts_with("p2m generation count changed"),
        "{e}"
    );
    assert_eq!(cb.suspends, 0, "aborted during the live part");
    assert!(!dom.logdirty_enabled(), "cleanup switched log-dirty off");
}

#[test]
fn remus_checkpoints_of_a_pv_guest_each_end_with_shared_info_and_the_vcpus() {
    let h = TempHost::new("pv-remus");
    let id = create_pv(&h, 32, P2mLayout::Linear, 24);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.has_qemu = false;
    cb.checkpoint_answers = [
        crate::toolstack::Next::Continue,
        crate::toolstack::Next::Continue,
    ]
    .into_iter()
    .collect();
    let mut cb = MaybePause(cb, false);
    let params = SaveParams {
        live: true,
        stream_type: crate::toolstack::StreamType::Remus,
        ..SaveParams::default()
    };
    let mut out = Vec::new();
    let log = RecLog::default();
    let sum = save_domain(&h.hv(), id, &mut out, &params, &mut cb, &log)
        .unwrap_or_else(|e| panic!("remus: {e}"));
    assert_eq!(sum.checkpoints, 3);
    let opts = stream::ReaderOptions {
        grammar: stream::GrammarOptions {
            checkpoints: stream::Checkpoints::Accept,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut r = stream::Reader::with_options(&out[..], opts).expect("headers");
    let mut types = Vec::new();
    let mut basics = Vec::new();
    while let Some(rec) = r.next_record().expect("record") {
        if let Record::X86PvVcpu(v) = &rec {
            if v.kind == VcpuKind::Basic {
                basics.push(v.context.to_vec());
            }
        }
        types.push(rec.record_type());
    }
    use stream::RecordType as T;
    let count = |t: T| types.iter().filter(|&&x| x == t).count();
    assert_eq!(count(T::X86_PV_P2M_FRAMES), 1, "the p2m frames go once");
    assert_eq!(count(T::CHECKPOINT), 3);
    assert_eq!(count(T::SHARED_INFO), 3);
    let dom = h.domain(id);
    let online = (0..dom.vcpus()).filter(|&v| dom.vcpu_online(v)).count();
    assert_eq!(basics.len(), 3 * online);
    // Every checkpoint's vCPU 0 names start_info by pfn.
    let w = GuestWidth::Bits32;
    let si: Vec<u64> = basics
        .iter()
        .step_by(online)
        .map(|b| VcpuContext::new(w, &b[..]).unwrap().start_info_reg())
        .collect();
    assert!(
        si.iter()
            .all(|&p| p == si[0] && dom.pfn_to_mfn(p).is_some()),
        "{si:?}"
    );
}

#[test]
fn pv_saves_map_only_the_frames_each_batch_sends() {
    let h = TempHost::new("pv-hints");
    let id = create_pv(&h, 64, P2mLayout::Linear, 25);
    let hv = h.hv();
    let pv = super::x86_pv::PvSave::new(&hv, id);
    let backend = crate::hv::MappingHints {
        follows_p2m: true,
        max_cached_pages: 1 << 20,
    };
    let hints =
        <super::x86_pv::PvSave<'_, _> as super::guest::SaveGuest<_, Vec<u8>>>::mapping_hints(
            &pv, backend,
        );
    assert!(!hints.follows_p2m);
    assert_eq!(hints.max_cached_pages, 0);
}
