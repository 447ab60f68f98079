//! The guest seam of the save engine with a guest type other than HVM's:
//! the memory mechanism queries and maps the frames the guest type names,
//! and sends the pages it normalises from a rewritten copy, the others
//! straight from the mappings; and a backend whose mappings lend single
//! pages only still gets every page sent.

use xensim::GuestType;

use super::ctx::Ctx;
use super::guest::{Normalised, PageFrames};
use super::memory;
use super::testutil::{RecLog, TempHost, ToolstackSave};
use super::{SaveError, SaveParams};
use crate::hv::sim::{SimHypervisor, SimMapping};
use crate::hv::{
    CpuPolicy, DomId, DomainCtl, DomainInfo, GrantEntry, GrantTable, GuestBytes, GuestMemory,
    HvResult, LogDirty, LogDirtyReport, MappedPages, TscInfo, X86Cpu, X86Hvm, PAGE_SIZE,
};
use crate::stream::{DomainType, PageType, Reader, Record};

/// A guest type whose pfn `p` lives at frame `p + 1`, and whose pages with
/// an odd first byte it rewrites (every byte inverted) for the stream.
struct Shifted;

impl PageFrames for Shifted {
    fn pfn_to_frame(&self, pfn: u64) -> u64 {
        pfn + 1
    }

    fn needs_normalise(&self, t: PageType) -> bool {
        t == PageType::NoTab
    }

    fn normalise_page(
        &self,
        _pfn: u64,
        t: PageType,
        page: &mut [u8; PAGE_SIZE],
        _paused: bool,
    ) -> Result<Normalised, SaveError> {
        assert_eq!(t, PageType::NoTab);
        if page[0] % 2 == 1 {
            for b in page.iter_mut() {
                *b = !*b;
            }
        }
        Ok(Normalised::Ready)
    }
}

/// A guest type that leaves pages alone but names shifted frames.
struct ShiftedOnly;

impl PageFrames for ShiftedOnly {
    fn pfn_to_frame(&self, pfn: u64) -> u64 {
        pfn + 1
    }
}

/// Every data page of `stream` by pfn.
fn data_pages(stream: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut r = Reader::new(stream).expect("headers");
    let mut pages = Vec::new();
    while let Some(rec) = r.next_record().expect("record") {
        if let Record::PageData(pd) = rec {
            for (e, page) in pd.pages() {
                if let Some(p) = page {
                    pages.push((e.pfn, p.to_vec()));
                }
            }
        }
    }
    pages
}

/// Sends every pfn of a 4 MiB guest but the last through `guest`.
fn send_through(guest: &dyn PageFrames) -> (Vec<u8>, xensim::Domain) {
    let h = TempHost::new("seam");
    let id = h.create(GuestType::Hvm, 4 << 20, 77, false);
    let hv = h.hv();
    let info = hv.domain_info(id).expect("domain info");
    let p2m = hv.nr_gpfns(id).expect("p2m size") - 1;
    let mut out = Vec::new();
    let mut cb = ToolstackSave::new(h.domain(id));
    let log = RecLog::default();
    let params = SaveParams::default();
    {
        let mut ctx = Ctx::new(&hv, id, &mut out, None, &params, &mut cb, &log, info);
        ctx.mem.setup(p2m).unwrap();
        ctx.out.headers(DomainType::X86Hvm, 4, 17).expect("headers");
        ctx.out.static_data_end().expect("static data end");
        memory::send_all_pages(&mut ctx, guest).expect("send pages");
        ctx.out.end().expect("end");
    }
    (out, h.domain(id))
}

fn frame(dom: &xensim::Domain, frame: u64) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    dom.read_frame(frame, &mut page).expect("read frame");
    page
}

#[test]
fn pages_are_read_at_the_frames_the_guest_type_names() {
    let (out, dom) = send_through(&ShiftedOnly);
    let pages = data_pages(&out);
    assert!(pages.len() > 100, "a mixed guest has data pages");
    for (pfn, page) in &pages {
        assert_eq!(*page, frame(&dom, pfn + 1), "pfn {pfn:#x}");
    }
}

#[test]
fn pages_the_guest_type_normalises_go_out_rewritten() {
    let (out, dom) = send_through(&Shifted);
    let pages = data_pages(&out);
    let mut rewritten = 0;
    for (pfn, page) in &pages {
        let mut want = frame(&dom, pfn + 1);
        if want[0] % 2 == 1 {
            want.iter_mut().for_each(|b| *b = !*b);
            rewritten += 1;
        }
        assert_eq!(*page, want, "pfn {pfn:#x}");
    }
    assert!(rewritten > 0, "some pages had an odd first byte");
    assert!(rewritten < pages.len(), "and some an even one");
}

/// A guest type with no frame behind every pfn `p % 7 == 3` (ballooned
/// pages) and that cannot yet rewrite pages with an odd first byte (a page
/// table caught mid-update).
struct Deferring;

impl PageFrames for Deferring {
    fn pfn_to_frame(&self, pfn: u64) -> u64 {
        if pfn % 7 == 3 {
            super::guest::INVALID_FRAME
        } else {
            pfn
        }
    }

    fn needs_normalise(&self, t: PageType) -> bool {
        t == PageType::NoTab
    }

    fn normalise_page(
        &self,
        _pfn: u64,
        _t: PageType,
        page: &mut [u8; PAGE_SIZE],
        paused: bool,
    ) -> Result<Normalised, SaveError> {
        assert!(!paused, "the guest runs during this test");
        Ok(if page[0] % 2 == 1 {
            Normalised::Deferred
        } else {
            Normalised::Ready
        })
    }
}

#[test]
fn ballooned_and_unrewritable_pages_leave_the_record_and_wait_for_the_final_pass() {
    let h = TempHost::new("seam-defer");
    let id = h.create(GuestType::Hvm, 4 << 20, 78, false);
    let hv = h.hv();
    let info = hv.domain_info(id).expect("domain info");
    let p2m = hv.nr_gpfns(id).expect("p2m size");
    let mut out = Vec::new();
    let mut cb = ToolstackSave::new(h.domain(id));
    let log = RecLog::default();
    let params = SaveParams::default();
    let (deferred, nr_deferred) = {
        let mut ctx = Ctx::new(&hv, id, &mut out, None, &params, &mut cb, &log, info);
        ctx.mem.setup(p2m).unwrap();
        ctx.out.headers(DomainType::X86Hvm, 4, 17).expect("headers");
        ctx.out.static_data_end().expect("static data end");
        memory::send_all_pages(&mut ctx, &Deferring).expect("send pages");
        ctx.out.end().expect("end");
        let d: Vec<u64> = ctx.mem.deferred.iter_ones().collect();
        (d, ctx.mem.nr_deferred)
    };
    let dom = h.domain(id);
    let sent: Vec<u64> = data_pages(&out).iter().map(|(p, _)| *p).collect();
    let mut want_deferred = Vec::new();
    for pfn in 0..p2m {
        let mut page = vec![0u8; PAGE_SIZE];
        let hole = dom.read_frame(pfn, &mut page).is_err();
        let ballooned = pfn % 7 == 3;
        let odd = !hole && page[0] % 2 == 1;
        if ballooned || odd {
            want_deferred.push(pfn);
            assert!(!sent.contains(&pfn), "pfn {pfn:#x} was deferred, not sent");
        }
    }
    assert_eq!(deferred, want_deferred);
    assert_eq!(nr_deferred, want_deferred.len() as u64);
    assert!(sent.len() > 100, "the other data pages went out");
    // The stream stays well formed without the deferred entries.
    let mut r = Reader::new(&out[..]).expect("headers");
    while r.next_record().expect("record").is_some() {}
}

/// A backend whose read mappings lend single pages but never a longer run
/// (a valid `MappedPages`: runs need not be contiguous in memory), and
/// which reports the frames in `.1` as L1 page tables.
struct SinglePages(SimHypervisor, Vec<u64>);

/// A mapping of [`SinglePages`].
struct OnePageAtATime(SimMapping);

impl MappedPages for OnePageAtATime {
    fn count(&self) -> usize {
        self.0.count()
    }
    fn error(&self, i: usize) -> i32 {
        self.0.error(i)
    }
    fn read_page(&self, i: usize, dst: &mut [u8; PAGE_SIZE]) {
        self.0.read_page(i, dst)
    }
    fn is_zero(&self, i: usize) -> bool {
        self.0.is_zero(i)
    }
    fn pages(&self, first: usize, n: usize) -> Option<GuestBytes<'_>> {
        if n == 1 {
            self.0.pages(first, 1)
        } else {
            None
        }
    }
}

impl DomainCtl for SinglePages {
    fn xen_version(&self) -> HvResult<(u16, u16)> {
        self.0.xen_version()
    }
    fn domain_info(&self, domid: DomId) -> HvResult<DomainInfo> {
        self.0.domain_info(domid)
    }
    fn nr_gpfns(&self, domid: DomId) -> HvResult<u64> {
        self.0.nr_gpfns(domid)
    }
}

impl GuestMemory for SinglePages {
    type ReadMapping<'a> = OnePageAtATime;
    type WriteMapping<'a> = SimMapping;

    fn page_types(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        let asked = frames.to_vec();
        self.0.page_types(domid, frames)?;
        for (t, f) in frames.iter_mut().zip(asked) {
            if self.1.contains(&f) {
                *t = u64::from(crate::hv::pfinfo::L1TAB);
            }
        }
        Ok(())
    }
    fn map_read(&self, domid: DomId, frames: &[u64]) -> HvResult<OnePageAtATime> {
        self.0.map_read(domid, frames).map(OnePageAtATime)
    }
    fn map_write(&self, domid: DomId, frames: &[u64]) -> HvResult<SimMapping> {
        self.0.map_write(domid, frames)
    }
    fn populate_physmap(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        self.0.populate_physmap(domid, frames)
    }
    fn clear_pages(&self, domid: DomId, gfn: u64, count: u64) -> HvResult<()> {
        self.0.clear_pages(domid, gfn, count)
    }
}

impl LogDirty for SinglePages {
    fn logdirty_enable(&self, domid: DomId) -> HvResult<()> {
        self.0.logdirty_enable(domid)
    }
    fn logdirty_off(&self, domid: DomId) -> HvResult<()> {
        self.0.logdirty_off(domid)
    }
    fn logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
        final_pass: bool,
    ) -> HvResult<LogDirtyReport> {
        self.0.logdirty_clean(domid, bitmap, pages, final_pass)
    }
    fn logdirty_peek(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport> {
        self.0.logdirty_peek(domid, bitmap, pages)
    }
}

impl X86Cpu for SinglePages {
    fn tsc_info(&self, domid: DomId) -> HvResult<TscInfo> {
        self.0.tsc_info(domid)
    }
    fn set_tsc_info(&self, domid: DomId, t: &TscInfo) -> HvResult<()> {
        self.0.set_tsc_info(domid, t)
    }
    fn cpu_policy(&self, domid: DomId) -> HvResult<CpuPolicy> {
        self.0.cpu_policy(domid)
    }
    fn set_cpu_policy(&self, domid: DomId, p: &CpuPolicy) -> HvResult<()> {
        self.0.set_cpu_policy(domid, p)
    }
}

// An HVM-only double: the PV role's defaults (no PV on this host).
impl crate::hv::X86Pv for SinglePages {}
impl crate::hv::CpuScheduler for SinglePages {}

impl X86Hvm for SinglePages {
    fn hvm_context(&self, domid: DomId) -> HvResult<Vec<u8>> {
        self.0.hvm_context(domid)
    }
    fn set_hvm_context(&self, domid: DomId, blob: &[u8]) -> HvResult<()> {
        self.0.set_hvm_context(domid, blob)
    }
    fn hvm_param(&self, domid: DomId, index: u32) -> HvResult<u64> {
        self.0.hvm_param(domid, index)
    }
    fn set_hvm_param(&self, domid: DomId, index: u32, value: u64) -> HvResult<()> {
        self.0.set_hvm_param(domid, index, value)
    }
}

impl GrantTable for SinglePages {
    fn seed_grant_table(&self, domid: DomId, hvm: bool, entries: &[GrantEntry]) -> HvResult<()> {
        self.0.seed_grant_table(domid, hvm, entries)
    }
}

/// A non-live save of domain `id` of `h` through `hv`; the stream.
fn save_nonlive(h: &TempHost, id: DomId, hv: &SinglePages) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cb = ToolstackSave::new(h.domain(id));
    super::save_domain(
        hv,
        id,
        &mut out,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .expect("save through the backend");
    out
}

#[test]
fn a_backend_lending_single_pages_only_gets_its_runs_copied() {
    let h = TempHost::new("single-pages");
    let id = h.create(GuestType::Hvm, 4 << 20, 78, false);
    let hv = SinglePages(h.hv(), Vec::new());
    let out = save_nonlive(&h, id, &hv);
    let dom = h.domain(id);
    let pages = data_pages(&out);
    assert!(pages.len() > 100, "a mixed guest has data pages");
    for (pfn, page) in &pages {
        assert_eq!(*page, frame(&dom, *pfn), "pfn {pfn:#x}");
    }
}

#[test]
fn a_zero_page_table_goes_with_its_type_and_data() {
    let h = TempHost::new("zero-l1");
    let id = h.create(GuestType::Hvm, 4 << 20, 79, false);
    let dom = h.domain(id);
    let zero: Vec<u64> = (0..=dom.max_gpfn())
        .filter(|&p| dom.is_populated(p) && frame(&dom, p).iter().all(|&b| b == 0))
        .take(3)
        .collect();
    assert_eq!(zero.len(), 3, "a mixed guest has zero pages");
    let hv = SinglePages(h.hv(), zero[..2].to_vec());
    let out = save_nonlive(&h, id, &hv);
    let mut r = Reader::new(&out[..]).expect("headers");
    let mut seen = std::collections::HashMap::new();
    while let Some(rec) = r.next_record().expect("record") {
        if let Record::PageData(pd) = rec {
            for (e, page) in pd.pages() {
                seen.insert(e.pfn, (e.page_type, page.map(|p| p.to_vec())));
            }
        }
    }
    for &pfn in &zero[..2] {
        assert_eq!(
            seen[&pfn],
            (PageType::L1Tab, Some(vec![0u8; PAGE_SIZE])),
            "pfn {pfn:#x}"
        );
    }
    // An ordinary zero page is still elided.
    assert_eq!(seen[&zero[2]], (PageType::XAlloc, None));
}
