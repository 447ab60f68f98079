//! The hypervisor roles over the simulated host `xensim`, in-process: the fast
//! path for Rust tests of the engines (and, with the `sim` cargo feature,
//! for tools that drive a simulated host without the C shim).
//!
//! Each method checks the host's fault rules under the name of the
//! libxenctrl call it stands for (as the C shim does), so a rule such as
//! `xc_get_pfn_type_batch:EIO:3` fails the third type query of a save run
//! through this backend exactly as it fails one run through the shim.

mod x86_pv;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use xensim::{Domain, ForeignMapping, Host, LogDirtyOp, Prot};

use super::pages::RawMapping;
use super::{
    CpuPolicy, CpuScheduler, CpuidLeaf, DomId, DomainCtl, DomainInfo, GrantEntry, GrantTable,
    GuestMemory, HvError, HvResult, LogDirty, LogDirtyReport, MappingHints, MsrEntry, SchedCredit,
    SchedulerKind, TscInfo, X86Cpu, X86Hvm, PAGE_SIZE,
};

/// A [`Hypervisor`](super::Hypervisor) backed by a `xensim` host directory.
pub struct SimHypervisor {
    host: Host,
    // Opening a domain maps its control files; keep them per domain.
    domains: RefCell<HashMap<DomId, Rc<Domain>>>,
    counters: Cell<SimCounters>,
    hints: MappingHints,
}

/// How often the engines called the costly operations of a
/// [`SimHypervisor`] (what the data-path tests count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Foreign map calls (`xenforeignmemory_map`), read-only and read-write.
    pub map_calls: u64,
    /// Frames asked for in those calls.
    pub mapped_frames: u64,
    /// Populate calls of order 0.
    pub populate_calls: u64,
    /// Frames populated by order-0 calls.
    pub populated_4k: u64,
    /// Populate calls with 2 MiB extents (order 9).
    pub populate_calls_2m: u64,
    /// 2 MiB extents populated.
    pub populated_2m: u64,
}

impl std::fmt::Debug for SimHypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHypervisor")
            .field("host", &self.host.dir())
            .finish()
    }
}

fn hv_err(op: &'static str, e: xensim::Error) -> HvError {
    HvError::with_detail(op, e.errno(), e.message().to_string())
}

impl SimHypervisor {
    /// A backend for `host`.
    pub fn new(host: Host) -> Self {
        SimHypervisor {
            host,
            domains: RefCell::new(HashMap::new()),
            counters: Cell::new(SimCounters::default()),
            // A mapping is of the domain's memory file at the frame's
            // offset, and a re-populated frame keeps that offset, so
            // mappings stay right; they cost address space and page
            // tables only.
            hints: MappingHints {
                follows_p2m: true,
                max_cached_pages: 4 << 20,
            },
        }
    }

    /// The same backend, telling the engines to keep mappings as `hints`
    /// say (e.g. as on Xen, where mappings do not follow the p2m).
    pub fn with_mapping_hints(mut self, hints: MappingHints) -> Self {
        self.hints = hints;
        self
    }

    /// The calls counted so far.
    pub fn counters(&self) -> SimCounters {
        self.counters.get()
    }

    fn count(&self, f: impl FnOnce(&mut SimCounters)) {
        let mut c = self.counters.get();
        f(&mut c);
        self.counters.set(c);
    }

    /// The simulated host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// `op`'s fault point, then domain `domid` (opened once).
    fn domain(&self, op: &'static str, domid: DomId) -> HvResult<Rc<Domain>> {
        self.host.fault_point(op).map_err(|e| hv_err(op, e))?;
        if let Some(d) = self.domains.borrow().get(&domid) {
            if !d.is_dying() {
                return Ok(Rc::clone(d));
            }
        }
        let d = Rc::new(self.host.domain(domid).map_err(|e| hv_err(op, e))?);
        self.domains.borrow_mut().insert(domid, Rc::clone(&d));
        Ok(d)
    }

    /// `xenforeignmemory_map` of `frames` with `prot`, counted.
    fn map(&self, domid: DomId, frames: &[u64], prot: Prot) -> HvResult<SimMapping> {
        const OP: &str = "xenforeignmemory_map";
        let map = self
            .domain(OP, domid)?
            .map_frames(frames, prot)
            .map_err(|e| hv_err(OP, e))?;
        self.count(|c| {
            c.map_calls += 1;
            c.mapped_frames += frames.len() as u64;
        });
        Ok(raw_mapping(map, prot == Prot::ReadWrite))
    }

    fn logdirty(
        &self,
        op: LogDirtyOp,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
        final_pass: bool,
    ) -> HvResult<LogDirtyReport> {
        const OP: &str = "xc_logdirty_control";
        let d = self.domain(OP, domid)?;
        let words = pages.div_ceil(64) as usize;
        if bitmap.len() < words {
            return Err(HvError::with_detail(
                OP,
                libc::EFAULT,
                format!("bitmap of {} words for {pages} pages", bitmap.len()),
            ));
        }
        let mut bytes = vec![0u8; words * 8];
        let stats = d
            .logdirty_op(op, Some(&mut bytes), pages, final_pass)
            .map_err(|e| hv_err(OP, e))?;
        for (w, b) in bitmap.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            *w = u64::from_le_bytes(a);
        }
        Ok(LogDirtyReport {
            pages,
            fault_count: stats.fault_count,
            dirty_count: stats.dirty_count,
        })
    }
}

/// Guest frames mapped through `xensim`: real `MAP_SHARED` mappings, which
/// the [`ForeignMapping`] unmaps when the mapping is dropped.
pub type SimMapping = RawMapping<ForeignMapping>;

/// A [`SimMapping`] of `map`.
fn raw_mapping(map: ForeignMapping, writable: bool) -> SimMapping {
    let errs = map.errors().to_vec();
    // SAFETY: `map` holds one reserved region of `errs.len()` pages from
    // `map.addr()`, each slot with error 0 mapped (read-write when
    // `writable`, i.e. mapped with `Prot::ReadWrite`) until `map` is
    // dropped, which the raw mapping does last; the region does not move
    // with the handle, and no other Rust value reaches it.
    unsafe { RawMapping::new(map.addr(), errs, writable, map) }
}

impl DomainCtl for SimHypervisor {
    fn xen_version(&self) -> HvResult<(u16, u16)> {
        const OP: &str = "xc_version";
        self.host.fault_point(OP).map_err(|e| hv_err(OP, e))?;
        let v = xensim::XEN_VERSION;
        Ok(((v >> 16) as u16, (v & 0xffff) as u16))
    }

    fn domain_info(&self, domid: DomId) -> HvResult<DomainInfo> {
        const OP: &str = "xc_domain_getinfo";
        self.host.fault_point(OP).map_err(|e| hv_err(OP, e))?;
        let found = self
            .host
            .first_domain_at_or_after(domid)
            .map_err(|e| hv_err(OP, e))?
            .ok_or_else(|| {
                HvError::with_detail(OP, libc::ESRCH, format!("no domain >= {domid}"))
            })?;
        let i = self
            .host
            .domain(found)
            .and_then(|d| d.info())
            .map_err(|e| hv_err(OP, e))?;
        Ok(DomainInfo {
            domid: i.domid,
            hvm: i.hvm,
            dying: i.dying,
            shutdown: i.shutdown,
            shutdown_reason: i.shutdown_reason,
            paused: i.paused,
            max_vcpu_id: i.max_vcpu_id,
            tot_pages: i.tot_pages,
            shared_info_frame: i.shared_info_frame,
        })
    }

    fn nr_gpfns(&self, domid: DomId) -> HvResult<u64> {
        Ok(self.domain("xc_domain_nr_gpfns", domid)?.max_gpfn() + 1)
    }
}

impl LogDirty for SimHypervisor {
    fn logdirty_enable(&self, domid: DomId) -> HvResult<()> {
        const OP: &str = "xc_shadow_control";
        self.domain(OP, domid)?
            .logdirty_enable()
            .map_err(|e| hv_err(OP, e))
    }

    fn logdirty_off(&self, domid: DomId) -> HvResult<()> {
        const OP: &str = "xc_shadow_control";
        self.domain(OP, domid)?
            .logdirty_disable()
            .map_err(|e| hv_err(OP, e))
    }

    fn logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
        final_pass: bool,
    ) -> HvResult<LogDirtyReport> {
        self.logdirty(LogDirtyOp::Clean, domid, bitmap, pages, final_pass)
    }

    fn logdirty_peek(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport> {
        self.logdirty(LogDirtyOp::Peek, domid, bitmap, pages, false)
    }
}

impl GuestMemory for SimHypervisor {
    type ReadMapping<'a> = SimMapping;
    type WriteMapping<'a> = SimMapping;

    fn page_types(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        const OP: &str = "xc_get_pfn_type_batch";
        self.domain(OP, domid)?
            .page_types(frames)
            .map_err(|e| hv_err(OP, e))
    }

    fn map_read(&self, domid: DomId, frames: &[u64]) -> HvResult<SimMapping> {
        self.map(domid, frames, Prot::Read)
    }

    fn map_write(&self, domid: DomId, frames: &[u64]) -> HvResult<SimMapping> {
        self.map(domid, frames, Prot::ReadWrite)
    }

    fn populate_physmap(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        const OP: &str = "xc_domain_populate_physmap_exact";
        let done = self
            .domain(OP, domid)?
            .populate(frames)
            .map_err(|e| hv_err(OP, e))?;
        if done.len() != frames.len() {
            return Err(HvError::with_detail(
                OP,
                libc::EFAULT,
                format!("{} of {} extents populated", done.len(), frames.len()),
            ));
        }
        frames.copy_from_slice(&done);
        self.count(|c| {
            c.populate_calls += 1;
            c.populated_4k += frames.len() as u64;
        });
        Ok(())
    }

    fn populate_extents(&self, domid: DomId, extents: &mut [u64], order: u32) -> HvResult<usize> {
        const OP: &str = "xc_domain_populate_physmap";
        if order != super::ORDER_2M {
            return Err(HvError::with_detail(
                OP,
                libc::EINVAL,
                format!("extent order {order} (xensim backs 4 KiB and 2 MiB extents)"),
            ));
        }
        let d = self.domain(OP, domid)?;
        let per = 1u64 << order;
        if let Some(b) = extents.iter().find(|&&b| b % per != 0) {
            return Err(HvError::with_detail(
                OP,
                libc::EINVAL,
                format!("gfn {b:#x} not aligned to order {order}"),
            ));
        }
        // One call for all extents, as one hypercall would do them.
        let frames: Vec<u64> = extents
            .iter()
            .flat_map(|&b| b..b.saturating_add(per))
            .collect();
        let (done, err) = d.populate_partial(&frames);
        let extents_done = done.len() / per as usize;
        for (e, chunk) in extents.iter_mut().zip(done.chunks_exact(per as usize)) {
            *e = chunk[0];
        }
        self.count(|c| {
            c.populate_calls_2m += 1;
            c.populated_2m += extents_done as u64;
        });
        match err {
            None => Ok(extents.len()),
            Some(e) => Err(hv_err(OP, e)),
        }
    }

    fn mapping_hints(&self) -> MappingHints {
        self.hints
    }

    fn clear_pages(&self, domid: DomId, gfn: u64, count: u64) -> HvResult<()> {
        const OP: &str = "xc_clear_domain_pages";
        self.domain(OP, domid)?
            .clear_frames(gfn, count)
            .map_err(|e| hv_err(OP, e))
    }
}

impl X86Hvm for SimHypervisor {
    fn hvm_context(&self, domid: DomId) -> HvResult<Vec<u8>> {
        const OP: &str = "xc_domain_hvm_getcontext";
        let d = self.domain(OP, domid)?;
        let bound = d.hvm_context_size().map_err(|e| hv_err(OP, e))?;
        let blob = d.hvm_context().map_err(|e| hv_err(OP, e))?;
        if blob.len() > bound {
            return Err(HvError::with_detail(
                OP,
                libc::ENOSPC,
                format!(
                    "context of {} bytes exceeds the size bound {bound}",
                    blob.len()
                ),
            ));
        }
        Ok(blob)
    }

    fn set_hvm_context(&self, domid: DomId, blob: &[u8]) -> HvResult<()> {
        const OP: &str = "xc_domain_hvm_setcontext";
        self.domain(OP, domid)?
            .set_hvm_context(blob)
            .map_err(|e| hv_err(OP, e))
    }

    fn hvm_param(&self, domid: DomId, index: u32) -> HvResult<u64> {
        const OP: &str = "xc_hvm_param_get";
        self.domain(OP, domid)?
            .hvm_param(index)
            .map_err(|e| hv_err(OP, e))
    }

    fn set_hvm_param(&self, domid: DomId, index: u32, value: u64) -> HvResult<()> {
        const OP: &str = "xc_hvm_param_set";
        self.domain(OP, domid)?
            .set_hvm_param(index, value)
            .map_err(|e| hv_err(OP, e))
    }
}

impl X86Cpu for SimHypervisor {
    fn tsc_info(&self, domid: DomId) -> HvResult<TscInfo> {
        const OP: &str = "xc_domain_get_tsc_info";
        let t = self
            .domain(OP, domid)?
            .tsc_info()
            .map_err(|e| hv_err(OP, e))?;
        Ok(sim_values::tsc_from(&t))
    }

    fn set_tsc_info(&self, domid: DomId, t: &TscInfo) -> HvResult<()> {
        const OP: &str = "xc_domain_set_tsc_info";
        self.domain(OP, domid)?
            .set_tsc_info(sim_values::tsc_to(t))
            .map_err(|e| hv_err(OP, e))
    }

    fn cpu_policy(&self, domid: DomId) -> HvResult<CpuPolicy> {
        // libxenguest reaches this through a raw domctl (xencall1).
        const OP: &str = "xencall1";
        let p = self
            .domain(OP, domid)?
            .cpu_policy()
            .map_err(|e| hv_err(OP, e))?;
        Ok(sim_values::policy_from(&p))
    }

    fn set_cpu_policy(&self, domid: DomId, policy: &CpuPolicy) -> HvResult<()> {
        const OP: &str = "xencall1";
        self.domain(OP, domid)?
            .set_cpu_policy(&sim_values::policy_to(policy))
            .map_err(|e| hv_err(OP, e))
    }
}

/// The one place where Xen's x86 values (`crate::x86`) and xensim's own
/// definitions of them meet. xensim keeps its own on purpose: it is the
/// independent oracle the library is tested against.
mod sim_values {
    use super::{CpuPolicy, CpuidLeaf, MsrEntry, TscInfo};

    pub(super) fn tsc_from(t: &xensim::TscInfo) -> TscInfo {
        TscInfo {
            mode: t.mode,
            elapsed_nsec: t.elapsed_nsec,
            gtsc_khz: t.gtsc_khz,
            incarnation: t.incarnation,
        }
    }

    pub(super) fn tsc_to(t: &TscInfo) -> xensim::TscInfo {
        xensim::TscInfo {
            mode: t.mode,
            elapsed_nsec: t.elapsed_nsec,
            gtsc_khz: t.gtsc_khz,
            incarnation: t.incarnation,
        }
    }

    pub(super) fn policy_from(p: &xensim::CpuPolicy) -> CpuPolicy {
        CpuPolicy {
            leaves: p
                .leaves
                .iter()
                .map(|l| CpuidLeaf {
                    leaf: l.leaf,
                    subleaf: l.subleaf,
                    a: l.a,
                    b: l.b,
                    c: l.c,
                    d: l.d,
                })
                .collect(),
            msrs: p
                .msrs
                .iter()
                .map(|m| MsrEntry {
                    idx: m.idx,
                    flags: m.flags,
                    val: m.val,
                })
                .collect(),
        }
    }

    pub(super) fn policy_to(p: &CpuPolicy) -> xensim::CpuPolicy {
        xensim::CpuPolicy {
            leaves: p
                .leaves
                .iter()
                .map(|l| xensim::CpuidLeaf {
                    leaf: l.leaf,
                    subleaf: l.subleaf,
                    a: l.a,
                    b: l.b,
                    c: l.c,
                    d: l.d,
                })
                .collect(),
            msrs: p
                .msrs
                .iter()
                .map(|m| xensim::MsrEntry {
                    idx: m.idx,
                    flags: m.flags,
                    val: m.val,
                })
                .collect(),
        }
    }
}

impl GrantTable for SimHypervisor {
    fn seed_grant_table(&self, domid: DomId, _hvm: bool, entries: &[GrantEntry]) -> HvResult<()> {
        const OP: &str = "xenforeignmemory_map_resource";
        let map = self
            .domain(OP, domid)?
            .map_grant_frame(Prot::ReadWrite)
            .map_err(|e| hv_err(OP, e))?;
        let mut page = [0u8; PAGE_SIZE];
        map.read_page(0, &mut page).map_err(|e| hv_err(OP, e))?;
        for e in entries {
            let off = e.index as usize * 8;
            let Some(slot) = page.get_mut(off..off + 8) else {
                return Err(HvError::with_detail(
                    OP,
                    libc::EINVAL,
                    format!("grant reference {} beyond frame 0", e.index),
                ));
            };
            slot[0..2].copy_from_slice(&e.flags.to_le_bytes());
            slot[2..4].copy_from_slice(&e.domid.to_le_bytes());
            slot[4..8].copy_from_slice(&e.frame.to_le_bytes());
        }
        map.write_page(0, &page).map_err(|e| hv_err(OP, e))
    }
}

/// The libxenctrl names of the credit/credit2 calls, for fault points and
/// errors.
fn sched_op_name(kind: SchedulerKind, set: bool) -> &'static str {
    match (kind, set) {
        (SchedulerKind::Credit2, false) => "xc_sched_credit2_domain_get",
        (SchedulerKind::Credit2, true) => "xc_sched_credit2_domain_set",
        (_, false) => "xc_sched_credit_domain_get",
        (_, true) => "xc_sched_credit_domain_set",
    }
}

impl CpuScheduler for SimHypervisor {
    fn scheduler(&self) -> HvResult<SchedulerKind> {
        const OP: &str = "xc_sched_id";
        self.host.fault_point(OP).map_err(|e| hv_err(OP, e))?;
        Ok(SchedulerKind::from_id(self.host.scheduler().id()))
    }

    fn sched_credit(&self, domid: DomId, kind: SchedulerKind) -> HvResult<SchedCredit> {
        let op = sched_op_name(kind, false);
        self.host.fault_point(op).map_err(|e| hv_err(op, e))?;
        let p = self
            .host
            .sched_getinfo(domid, kind.id())
            .map_err(|e| hv_err(op, e))?;
        Ok(SchedCredit {
            weight: p.weight,
            cap: p.cap,
        })
    }

    fn set_sched_credit(
        &self,
        domid: DomId,
        kind: SchedulerKind,
        params: SchedCredit,
    ) -> HvResult<()> {
        let op = sched_op_name(kind, true);
        self.host.fault_point(op).map_err(|e| hv_err(op, e))?;
        let req = xensim::SchedParams {
            weight: params.weight,
            cap: params.cap,
        };
        self.host
            .sched_putinfo(domid, kind.id(), req)
            .map(|_| ())
            .map_err(|e| hv_err(op, e))
    }
}
