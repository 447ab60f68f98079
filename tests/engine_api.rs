//! The engines through their public API only, over a hypervisor written
//! here: proof that the `hv` role traits (and so `hv::Hypervisor`) can be
//! implemented outside the crate (as `hv::xen` and `hv::sim` do inside it) and that a save made with it
//! restores into another instance with every piece of state intact.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use xcmig::hv::{
    pfinfo, CpuPolicy, CpuidLeaf, DomId, DomainCtl, DomainInfo, GrantEntry, GrantTable,
    GuestMemory, HvError, HvResult, LogDirty, LogDirtyReport, MappedPages, MappedPagesMut,
    MsrEntry, TscInfo, X86Cpu, X86Hvm, PAGE_SIZE,
};
use xcmig::log::{Level, Log};
use xcmig::restore::{restore_domain, RestoreCallbacks, RestoreHook, RestoreParams};
use xcmig::save::{save_domain, SaveCallbacks, SaveHook, SaveParams};
use xcmig::toolstack::CallbackFailed;

const DOMID: DomId = 7;
const EINVAL: i32 = 22;

/// One HVM domain kept in memory.
#[derive(Default)]
struct MemHv {
    pages: RefCell<BTreeMap<u64, Box<[u8; PAGE_SIZE]>>>,
    params: RefCell<BTreeMap<u32, u64>>,
    context: RefCell<Vec<u8>>,
    tsc: Cell<TscInfo>,
    policy: RefCell<CpuPolicy>,
    grants: RefCell<Vec<GrantEntry>>,
    logdirty: Cell<bool>,
    suspended: Cell<bool>,
    cleared: RefCell<Vec<u64>>,
}

impl MemHv {
    fn guest(ram_pages: u64) -> MemHv {
        let hv = MemHv::default();
        for pfn in 0..ram_pages {
            let mut p = Box::new([0u8; PAGE_SIZE]);
            if pfn % 3 != 0 {
                for (i, b) in p.iter_mut().enumerate() {
                    *b = (pfn as usize * 31 + i * 7) as u8;
                }
            }
            hv.pages.borrow_mut().insert(pfn, p);
        }
        // A hole, then the xenstore and console pages high up.
        for pfn in [0x2000, 0x2001] {
            hv.pages
                .borrow_mut()
                .insert(pfn, Box::new([0xab; PAGE_SIZE]));
        }
        hv.params
            .borrow_mut()
            .extend([(1, 0x2000), (17, 0x2001), (9, 1)]);
        *hv.context.borrow_mut() = (0..200u8).collect();
        hv.tsc.set(TscInfo {
            mode: 0,
            elapsed_nsec: 123_456,
            gtsc_khz: 2_000_000,
            incarnation: 3,
        });
        *hv.policy.borrow_mut() = CpuPolicy {
            leaves: vec![CpuidLeaf {
                leaf: 0,
                subleaf: u32::MAX,
                a: 0xd,
                b: 1,
                c: 2,
                d: 3,
            }],
            msrs: vec![MsrEntry {
                idx: 0xce,
                flags: 0,
                val: 0x10,
            }],
        };
        hv
    }

    fn check(&self, domid: DomId) -> HvResult<()> {
        if domid == DOMID {
            Ok(())
        } else {
            Err(HvError::new("domain", 3))
        }
    }
}

/// A "mapping": copies of the pages, written back on drop when writable.
struct Map<'a> {
    hv: &'a MemHv,
    frames: Vec<u64>,
    data: Vec<Option<[u8; PAGE_SIZE]>>,
    write: bool,
}

impl MappedPages for Map<'_> {
    fn count(&self) -> usize {
        self.frames.len()
    }
    fn error(&self, i: usize) -> i32 {
        if self.data.get(i).is_some_and(|d| d.is_some()) {
            0
        } else {
            -EINVAL
        }
    }
    fn read_page(&self, i: usize, dst: &mut [u8; PAGE_SIZE]) {
        if let Some(Some(p)) = self.data.get(i) {
            dst.copy_from_slice(p);
        }
    }
}

impl MappedPagesMut for Map<'_> {
    fn write_page(&mut self, i: usize, src: &[u8; PAGE_SIZE]) {
        if let Some(Some(p)) = self.data.get_mut(i) {
            p.copy_from_slice(src);
        }
    }
}

impl Drop for Map<'_> {
    fn drop(&mut self) {
        if self.write {
            let mut pages = self.hv.pages.borrow_mut();
            for (f, d) in self.frames.iter().zip(&self.data) {
                if let (Some(d), Some(p)) = (d, pages.get_mut(f)) {
                    p.copy_from_slice(d);
                }
            }
        }
    }
}

impl MemHv {
    fn map(&self, frames: &[u64], write: bool) -> Map<'_> {
        let pages = self.pages.borrow();
        Map {
            hv: self,
            frames: frames.to_vec(),
            data: frames.iter().map(|f| pages.get(f).map(|p| **p)).collect(),
            write,
        }
    }
}

impl DomainCtl for MemHv {
    fn xen_version(&self) -> HvResult<(u16, u16)> {
        Ok((4, 17))
    }
    fn domain_info(&self, domid: DomId) -> HvResult<DomainInfo> {
        if domid > DOMID {
            return Err(HvError::new("xc_domain_getinfo", 3));
        }
        Ok(DomainInfo {
            domid: DOMID,
            hvm: true,
            shutdown: self.suspended.get(),
            shutdown_reason: if self.suspended.get() { 2 } else { 0 },
            max_vcpu_id: 0,
            tot_pages: self.pages.borrow().len() as u64,
            ..DomainInfo::default()
        })
    }
    fn nr_gpfns(&self, domid: DomId) -> HvResult<u64> {
        self.check(domid)?;
        Ok(self.pages.borrow().keys().last().map_or(1, |m| m + 1))
    }
}

impl LogDirty for MemHv {
    fn logdirty_enable(&self, domid: DomId) -> HvResult<()> {
        self.check(domid)?;
        if self.logdirty.replace(true) {
            return Err(HvError::new("xc_shadow_control", EINVAL));
        }
        Ok(())
    }
    fn logdirty_off(&self, domid: DomId) -> HvResult<()> {
        self.check(domid)?;
        self.logdirty.set(false);
        Ok(())
    }
    fn logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
        _final_pass: bool,
    ) -> HvResult<LogDirtyReport> {
        // The guest is idle: nothing is ever dirty.
        self.logdirty_peek(domid, bitmap, pages)
    }
    fn logdirty_peek(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport> {
        self.check(domid)?;
        bitmap.fill(0);
        Ok(LogDirtyReport {
            pages,
            ..LogDirtyReport::default()
        })
    }
}

impl GuestMemory for MemHv {
    type ReadMapping<'a> = Map<'a>;
    type WriteMapping<'a> = Map<'a>;

    fn page_types(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        self.check(domid)?;
        let pages = self.pages.borrow();
        for f in frames {
            *f = if pages.contains_key(f) {
                u64::from(pfinfo::NOTAB)
            } else {
                u64::from(pfinfo::XTAB)
            };
        }
        Ok(())
    }
    fn map_read(&self, domid: DomId, frames: &[u64]) -> HvResult<Map<'_>> {
        self.check(domid)?;
        Ok(self.map(frames, false))
    }
    fn map_write(&self, domid: DomId, frames: &[u64]) -> HvResult<Map<'_>> {
        self.check(domid)?;
        Ok(self.map(frames, true))
    }
    fn populate_physmap(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        self.check(domid)?;
        let mut pages = self.pages.borrow_mut();
        for f in frames.iter() {
            pages.insert(*f, Box::new([0; PAGE_SIZE]));
        }
        Ok(())
    }
    fn clear_pages(&self, domid: DomId, gfn: u64, count: u64) -> HvResult<()> {
        self.check(domid)?;
        for f in gfn..gfn + count {
            self.cleared.borrow_mut().push(f);
            if let Some(p) = self.pages.borrow_mut().get_mut(&f) {
                p.fill(0);
            }
        }
        Ok(())
    }
}

// An HVM-only double: the PV role's defaults (no PV on this host).
impl xcmig::hv::X86Pv for MemHv {}
impl xcmig::hv::CpuScheduler for MemHv {}

impl X86Hvm for MemHv {
    fn hvm_context(&self, domid: DomId) -> HvResult<Vec<u8>> {
        self.check(domid)?;
        Ok(self.context.borrow().clone())
    }
    fn set_hvm_context(&self, domid: DomId, blob: &[u8]) -> HvResult<()> {
        self.check(domid)?;
        *self.context.borrow_mut() = blob.to_vec();
        Ok(())
    }
    fn hvm_param(&self, domid: DomId, index: u32) -> HvResult<u64> {
        self.check(domid)?;
        Ok(self.params.borrow().get(&index).copied().unwrap_or(0))
    }
    fn set_hvm_param(&self, domid: DomId, index: u32, value: u64) -> HvResult<()> {
        self.check(domid)?;
        if index == 4 || index >= 39 {
            return Err(HvError::new("xc_hvm_param_set", EINVAL));
        }
        self.params.borrow_mut().insert(index, value);
        Ok(())
    }
}

impl X86Cpu for MemHv {
    fn tsc_info(&self, domid: DomId) -> HvResult<TscInfo> {
        self.check(domid)?;
        Ok(self.tsc.get())
    }
    fn set_tsc_info(&self, domid: DomId, tsc: &TscInfo) -> HvResult<()> {
        self.check(domid)?;
        self.tsc.set(*tsc);
        Ok(())
    }
    fn cpu_policy(&self, domid: DomId) -> HvResult<CpuPolicy> {
        self.check(domid)?;
        Ok(self.policy.borrow().clone())
    }
    fn set_cpu_policy(&self, domid: DomId, policy: &CpuPolicy) -> HvResult<()> {
        self.check(domid)?;
        *self.policy.borrow_mut() = policy.clone();
        Ok(())
    }
}

impl GrantTable for MemHv {
    fn seed_grant_table(&self, domid: DomId, _hvm: bool, entries: &[GrantEntry]) -> HvResult<()> {
        self.check(domid)?;
        self.grants.borrow_mut().extend_from_slice(entries);
        Ok(())
    }
}

struct Toolstack<'a> {
    hv: &'a MemHv,
    qemu: Vec<bool>,
}

impl SaveCallbacks for Toolstack<'_> {
    fn has(&self, hook: SaveHook) -> bool {
        hook == SaveHook::SwitchQemuLogdirty
    }
    fn suspend(&mut self) -> Result<(), CallbackFailed> {
        self.hv.suspended.set(true);
        Ok(())
    }
    fn switch_qemu_logdirty(&mut self, _domid: DomId, enable: bool) -> Result<(), CallbackFailed> {
        self.qemu.push(enable);
        Ok(())
    }
}

struct NoCallbacks;

impl RestoreCallbacks for NoCallbacks {
    fn has(&self, _hook: RestoreHook) -> bool {
        false
    }
}

struct Quiet;

impl Log for Quiet {
    fn log(&self, level: Level, _errno: Option<i32>, msg: &str) {
        if level >= Level::Error {
            eprintln!("{msg}");
        }
    }
    fn progress(&self, _doing_what: &str, _done: u64, _total: u64) {}
}

#[test]
fn an_external_hypervisor_saves_and_restores_every_piece_of_state() {
    let src = MemHv::guest(300);
    let mut ts = Toolstack {
        hv: &src,
        qemu: Vec::new(),
    };
    let params = SaveParams {
        live: true,
        ..SaveParams::default()
    };
    let mut stream = Vec::new();
    let summary = save_domain(&src, DOMID, &mut stream, &params, &mut ts, &Quiet).expect("save");
    assert_eq!(ts.qemu, vec![true, false]);
    assert!(!src.logdirty.get());
    assert_eq!(summary.p2m_size, 0x2002);
    // Every third RAM page is zero: those go as XALLOC, without data
    // (through the trait's default zero test: no `is_zero` here).
    assert_eq!(summary.pages_zero, 100);
    assert_eq!(summary.pages_sent, 202);

    let dst = MemHv::default();
    let rp = RestoreParams {
        store_evtchn: 11,
        store_domid: 0,
        console_evtchn: 12,
        console_domid: 0,
        ..RestoreParams::default()
    };
    let out =
        restore_domain(&dst, DOMID, &mut &stream[..], &rp, &mut NoCallbacks).expect("restore");
    assert_eq!((out.store_gfn, out.console_gfn), (0x2000, 0x2001));

    // Memory: identical, except the store and console pages, cleared on
    // restore as libxenguest does.
    let (a, b) = (src.pages.borrow(), dst.pages.borrow());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (pfn, page) in a.iter() {
        if *pfn >= 0x2000 {
            assert!(b[pfn].iter().all(|&x| x == 0), "pfn {pfn:#x} not cleared");
        } else {
            assert_eq!(page, &b[pfn], "pfn {pfn:#x}");
        }
    }
    assert_eq!(*dst.cleared.borrow(), vec![0x2000, 0x2001]);
    // Params: the saved ones plus the event channels from the arguments.
    let mut want = src.params.borrow().clone();
    want.extend([(2, 11), (18, 12)]);
    assert_eq!(*dst.params.borrow(), want);
    assert_eq!(*dst.context.borrow(), *src.context.borrow());
    assert_eq!(dst.tsc.get(), src.tsc.get());
    assert_eq!(*dst.policy.borrow(), *src.policy.borrow());
    let g = dst.grants.borrow();
    assert_eq!(g.len(), 2);
    assert_eq!((g[0].index, g[0].frame, g[0].flags), (0, 0x2001, 1));
    assert_eq!((g[1].index, g[1].frame, g[1].flags), (1, 0x2000, 1));
}

#[test]
fn an_unknown_domain_is_refused_by_both_engines() {
    let hv = MemHv::guest(4);
    let mut ts = Toolstack {
        hv: &hv,
        qemu: Vec::new(),
    };
    let e = save_domain(
        &hv,
        DOMID - 1,
        &mut Vec::new(),
        &SaveParams::default(),
        &mut ts,
        &Quiet,
    )
    .expect_err("wrong domain");
    assert_eq!(e.errno(), 3);
    assert!(ts.qemu.is_empty());
    let e = restore_domain(
        &hv,
        DOMID + 1,
        &mut &[][..],
        &RestoreParams::default(),
        &mut NoCallbacks,
    )
    .expect_err("no domain");
    assert_eq!(e.errno(), 3);
}
