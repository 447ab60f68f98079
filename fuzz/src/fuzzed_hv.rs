//! A [`Hypervisor`] over `hv::sim` whose answers a fuzz input perturbs,
//! for the `save_hypercalls` target: the save engine runs against a real
//! simulated domain, but any call the input names can fail with an errno,
//! or succeed with an answer Xen would not give (sizes, counts, page types,
//! dirty bits, per-slot mapping errors, vCPU state).
//!
//! The input is a [`Plan`]: a list of [`Rule`]s, each naming a call
//! ([`Call`]), which occurrence of it (the n-th call of that kind in the
//! run, or every one) and what to do to it. Rules keyed by call and
//! occurrence, rather than a tape consumed call after call, keep a mutation
//! of one rule from shifting the meaning of all the others.
//!
//! Calls with an effect (log-dirty off) fail *after* the effect when told
//! to: what the engine must survive is the error, and the checks after the
//! save can then hold the engine, not the wrapper, to "log-dirty is off".

use std::cell::RefCell;

use xcmig::hv::sim::SimHypervisor;
use xcmig::hv::{
    CpuPolicy, CpuScheduler, CpuidLeaf, DomId, DomainCtl, DomainInfo, GrantEntry, GrantTable,
    GuestMemory, HvError, HvResult, LogDirty, LogDirtyReport, M2pTable, MappedPages, MappingHints,
    MsrEntry, SchedCredit, SchedulerKind, TscInfo, X86Cpu, X86Hvm, X86Pv, PAGE_SIZE,
};
use xcmig::x86::pv::GuestWidth;

/// The calls a rule can name: every hypervisor call the save engine makes,
/// and the toolstack callbacks (answered by the fuzz target, from the same
/// plan), and the guest's own writes to its memory before the save.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Call {
    /// `xc_version`.
    XenVersion,
    /// `xc_domain_getinfo`.
    DomainInfo,
    /// `xc_domain_nr_gpfns`.
    NrGpfns,
    /// `xc_get_pfn_type_batch`.
    PageTypes,
    /// `xenforeignmemory_map` (read).
    MapRead,
    /// `xc_shadow_control(ENABLE_LOGDIRTY)`.
    LogdirtyEnable,
    /// `xc_shadow_control(OFF)`.
    LogdirtyOff,
    /// `xc_logdirty_control(CLEAN)`.
    LogdirtyClean,
    /// `xc_logdirty_control(PEEK)`.
    LogdirtyPeek,
    /// `xc_domain_get_tsc_info`.
    TscInfo,
    /// `xc_cpu_policy_get_domain`.
    CpuPolicy,
    /// `xc_domain_hvm_getcontext`.
    HvmContext,
    /// `xc_hvm_param_get`.
    HvmParam,
    /// `xc_domain_get_guest_width`.
    PvAddressSize,
    /// `x86_pv_map_m2p`, and lookups in the table it gives.
    MapM2p,
    /// `XENMEM_machphys_compat_mfn_list`.
    CompatM2p,
    /// `xc_vcpu_getinfo`.
    VcpuOnline,
    /// `xc_vcpu_getcontext`.
    VcpuContext,
    /// `XEN_DOMCTL_get_ext_vcpucontext`.
    ExtVcpuContext,
    /// `XEN_DOMCTL_getvcpuextstate`.
    VcpuXsave,
    /// `XEN_DOMCTL_get_vcpu_msrs`.
    VcpuMsrs,
    /// The `suspend` callback.
    Suspend,
    /// The `switch_qemu_logdirty` callback.
    QemuLogdirty,
    /// The `checkpoint` callback (Remus).
    Checkpoint,
    /// The `postcopy` callback (Remus).
    Postcopy,
    /// The `precopy_policy` callback (live saves whose caller gives one).
    PrecopyPolicy,
    /// The guest writes a word of its own memory before the save (all such
    /// rules apply; the fuzz target puts the bytes back afterwards).
    GuestWrite,
}

impl Call {
    /// Every call, in the order of their number in a rule.
    pub const ALL: [Call; 27] = [
        Call::XenVersion,
        Call::DomainInfo,
        Call::NrGpfns,
        Call::PageTypes,
        Call::MapRead,
        Call::LogdirtyEnable,
        Call::LogdirtyOff,
        Call::LogdirtyClean,
        Call::LogdirtyPeek,
        Call::TscInfo,
        Call::CpuPolicy,
        Call::HvmContext,
        Call::HvmParam,
        Call::PvAddressSize,
        Call::MapM2p,
        Call::CompatM2p,
        Call::VcpuOnline,
        Call::VcpuContext,
        Call::ExtVcpuContext,
        Call::VcpuXsave,
        Call::VcpuMsrs,
        Call::Suspend,
        Call::QemuLogdirty,
        Call::Checkpoint,
        Call::Postcopy,
        Call::PrecopyPolicy,
        Call::GuestWrite,
    ];

    /// The libxenctrl name an injected error carries.
    pub fn op(self) -> &'static str {
        match self {
            Call::XenVersion => "xc_version",
            Call::DomainInfo => "xc_domain_getinfo",
            Call::NrGpfns => "xc_domain_nr_gpfns",
            Call::PageTypes => "xc_get_pfn_type_batch",
            Call::MapRead => "xenforeignmemory_map",
            Call::LogdirtyEnable | Call::LogdirtyOff => "xc_shadow_control",
            Call::LogdirtyClean | Call::LogdirtyPeek => "xc_logdirty_control",
            Call::TscInfo => "xc_domain_get_tsc_info",
            Call::CpuPolicy => "xencall1",
            Call::HvmContext => "xc_domain_hvm_getcontext",
            Call::HvmParam => "xc_hvm_param_get",
            Call::PvAddressSize => "xc_domain_get_guest_width",
            Call::MapM2p => "xc_machphys_mfn_list",
            Call::CompatM2p => "xc_memory_op",
            Call::VcpuOnline => "xc_vcpu_getinfo",
            Call::VcpuContext => "xc_vcpu_getcontext",
            Call::ExtVcpuContext => "XEN_DOMCTL_get_ext_vcpucontext",
            Call::VcpuXsave => "XEN_DOMCTL_getvcpuextstate",
            Call::VcpuMsrs => "XEN_DOMCTL_get_vcpu_msrs",
            Call::Suspend => "suspend",
            Call::QemuLogdirty => "switch_qemu_logdirty",
            Call::Checkpoint => "checkpoint",
            Call::Postcopy => "postcopy",
            Call::PrecopyPolicy => "precopy_policy",
            Call::GuestWrite => "guest write",
        }
    }
}

/// Bytes of one rule in the input.
pub const RULE_LEN: usize = 8;

/// `nth` value meaning every call of the kind.
pub const EVERY: u8 = 0xff;

/// One perturbation: on the `nth` call of `call` (counting from 0; [`EVERY`]
/// for all of them), do `action` with arguments `a` and `v`.
///
/// Encoded in [`RULE_LEN`] bytes: call number (modulo the number of calls),
/// `nth`, `action`, `a`, `v` (u32, little-endian). Action 0 is an error
/// ([`Rule::errno`]); the others are per call, documented where each call
/// applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The call.
    pub call: Call,
    /// Which occurrence, or [`EVERY`].
    pub nth: u8,
    /// What to do (0: fail; others per call).
    pub action: u8,
    /// Small argument (slot, offset, errno choice, ...).
    pub a: u8,
    /// Value argument; see [`wide`].
    pub v: u32,
}

/// Errnos an injected failure carries (positive, as `HvError` promises).
const ERRNOS: [i32; 12] = [
    libc::EINVAL,
    libc::EFAULT,
    libc::ENOMEM,
    libc::EIO,
    libc::ESRCH,
    libc::EPERM,
    libc::EAGAIN,
    libc::EBUSY,
    libc::E2BIG,
    libc::ERANGE,
    libc::ENOSPC,
    libc::EOPNOTSUPP,
];

/// Values at the edges that a u32 argument can name: `v` with the top bit
/// set picks one of these, otherwise it is itself.
const WIDE: [u64; 12] = [
    0,
    1,
    0xfff,
    0x1000,
    0xf_ffff,
    0x10_0000,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    1 << 63,
    u64::MAX - 1,
    u64::MAX,
];

/// `v` as a 64-bit value: itself, or (top bit set) one of the edge values.
pub fn wide(v: u32) -> u64 {
    if v & 0x8000_0000 != 0 {
        WIDE[(v as usize & 0xff) % WIDE.len()]
    } else {
        u64::from(v)
    }
}

/// p2m sizes a `nr_gpfns` rule can answer. Sizes from 2^22 up to the
/// 2^40 gfns of a 52-bit address space are answers a real Xen may give
/// whose save is merely slow (the save walks every pfn, and tracks each
/// in three bitmaps), so they are left out; past 2^40 the engine must
/// refuse before allocating anything.
const NR_GPFNS: [u64; 12] = [
    0,
    1,
    2,
    0x100,
    0xfeff7,
    0xff001,
    0x10_0000,
    0x40_0000,
    (1 << 40) + 1,
    1 << 52,
    1 << 63,
    u64::MAX,
];

/// Raw page types a type query can be made to answer: every
/// `XEN_DOMCTL_PFINFO_*` value, the pinned ones, values Xen never gives,
/// and a type with low bits left set.
const PAGE_TYPES: [u64; 16] = [
    0,
    1 << 28,
    2 << 28,
    3 << 28,
    4 << 28,
    (1 << 28) | (1 << 31),
    (4 << 28) | (1 << 31),
    0xf << 28,
    0xe << 28,
    0xd << 28,
    5 << 28,
    7 << 28,
    1 << 31,
    0xc << 28,
    0x1234,
    (2 << 28) | 0xabc,
];

impl Rule {
    /// The errno of an error rule.
    pub fn errno(&self) -> i32 {
        ERRNOS[self.a as usize % ERRNOS.len()]
    }

    /// The injected failure of this (error) rule.
    pub fn error(&self) -> HvError {
        HvError::with_detail(self.call.op(), self.errno(), "fuzz: injected failure")
    }

    /// The raw page type this rule names.
    fn page_type(&self) -> u64 {
        PAGE_TYPES[self.a as usize % PAGE_TYPES.len()]
    }

    fn decode(b: &[u8]) -> Rule {
        Rule {
            call: Call::ALL[b[0] as usize % Call::ALL.len()],
            nth: b[1],
            action: b[2],
            a: b[3],
            v: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// The rule's bytes (seeds and tests).
    pub fn encode(&self) -> [u8; RULE_LEN] {
        let v = self.v.to_le_bytes();
        [
            self.call as u8,
            self.nth,
            self.action,
            self.a,
            v[0],
            v[1],
            v[2],
            v[3],
        ]
    }
}

/// The rules of a run, and how many calls of each kind were made so far.
#[derive(Debug, Default)]
pub struct Plan {
    rules: Vec<Rule>,
    counts: RefCell<[u32; Call::ALL.len()]>,
    fired: RefCell<Vec<(Rule, u32)>>,
}

impl Plan {
    /// Rules from `bytes`, [`RULE_LEN`] each (a short tail is ignored), at
    /// most `max` of them.
    pub fn parse(bytes: &[u8], max: usize) -> Plan {
        Plan {
            rules: bytes
                .chunks_exact(RULE_LEN)
                .take(max)
                .map(Rule::decode)
                .collect(),
            ..Plan::default()
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Count one call of `call` and return the first rule that applies to
    /// it, recording it as fired.
    pub fn next(&self, call: Call) -> Option<Rule> {
        let n = {
            let mut c = self.counts.borrow_mut();
            let n = c[call as usize];
            c[call as usize] = n.saturating_add(1);
            n
        };
        let r = self
            .rules
            .iter()
            .find(|r| r.call == call && (r.nth == EVERY || u32::from(r.nth) == n))
            .copied()?;
        self.fired.borrow_mut().push((r, n));
        Some(r)
    }

    /// The rules that applied to a call, in order, each with the
    /// occurrence (from 0) of the call it applied to.
    pub fn fired(&self) -> Vec<(Rule, u32)> {
        self.fired.borrow().clone()
    }

    /// How many calls of `call` were made.
    pub fn count(&self, call: Call) -> u32 {
        self.counts.borrow()[call as usize]
    }
}

/// `hv::sim`'s backend with a [`Plan`] between it and the engine.
pub struct FuzzedHv<'p> {
    /// The simulator.
    pub inner: &'p SimHypervisor,
    plan: &'p Plan,
}

impl<'p> FuzzedHv<'p> {
    /// `inner` perturbed by `plan`.
    pub fn new(inner: &'p SimHypervisor, plan: &'p Plan) -> Self {
        FuzzedHv { inner, plan }
    }

    /// The rule for this call of `call`, failing the call for an error rule.
    fn rule(&self, call: Call) -> HvResult<Option<Rule>> {
        match self.plan.next(call) {
            Some(r) if r.action == 0 => Err(r.error()),
            r => Ok(r),
        }
    }
}

/// Cap on the elements a rule may add to an answer (CPUID leaves, MSRs,
/// bytes of a blob): large enough to cross any limit the engine or the
/// stream has, small enough to keep an iteration cheap.
const MAX_GROW: usize = 1 << 14;

/// `blob` resized or altered by `r` (actions 1-5): truncated to `v`,
/// grown by `v` bytes of `a`, a byte at `v` set to `a`, emptied, or grown
/// to just past `v` bytes in total.
fn perturb_blob(r: &Rule, blob: &mut Vec<u8>) {
    let v = r.v as usize;
    match r.action % 6 {
        1 => blob.truncate(v % (blob.len() + 1)),
        2 => blob.extend(std::iter::repeat_n(r.a, v % (MAX_GROW * 16))),
        3
            if !blob.is_empty() => {
                let i = v % blob.len();
                blob[i] = r.a;
            }
        4 => blob.clear(),
        5
            // A u64 at an 8-aligned offset, e.g. a frame number in a vCPU
            // context or the length of an HVM record.
            if blob.len() >= 8 => {
                let i = (usize::from(r.a) * 8) % (blob.len() - 7);
                blob[i..i + 8].copy_from_slice(&wide(r.v).to_le_bytes());
            }
        _ => {}
    }
}

impl DomainCtl for FuzzedHv<'_> {
    fn xen_version(&self) -> HvResult<(u16, u16)> {
        let r = self.rule(Call::XenVersion)?;
        let v = self.inner.xen_version()?;
        Ok(match r {
            Some(r) => ((r.v >> 16) as u16, r.v as u16),
            None => v,
        })
    }

    /// Actions: 1 hvm flipped, 2 dying, 3 shut down (`a` odd) for reason
    /// `v % 8`, 4 paused flipped, 5 max_vcpu_id `v`, 6 another domid,
    /// 7 tot_pages (`a` even) or shared_info_frame set to `wide(v)`.
    fn domain_info(&self, domid: DomId) -> HvResult<DomainInfo> {
        let r = self.rule(Call::DomainInfo)?;
        let mut i = self.inner.domain_info(domid)?;
        if let Some(r) = r {
            match r.action % 8 {
                1 => i.hvm = !i.hvm,
                2 => i.dying = true,
                3 => {
                    i.shutdown = r.a & 1 == 1;
                    i.shutdown_reason = r.v % 8;
                }
                4 => i.paused = !i.paused,
                5 => i.max_vcpu_id = r.v,
                6 => i.domid = i.domid.wrapping_add(1 + r.v % 3),
                7 => {
                    if r.a & 1 == 0 {
                        i.tot_pages = wide(r.v);
                    } else {
                        i.shared_info_frame = wide(r.v);
                    }
                }
                _ => {}
            }
        }
        Ok(i)
    }

    /// Actions: 1 one of `NR_GPFNS` (`a`), 2 the real answer plus `v` as a
    /// signed delta of at most 2^21, 3 `v` below 2^22.
    fn nr_gpfns(&self, domid: DomId) -> HvResult<u64> {
        let r = self.rule(Call::NrGpfns)?;
        let n = self.inner.nr_gpfns(domid)?;
        Ok(match r.map(|r| (r.action % 4, r)) {
            Some((1, r)) => NR_GPFNS[usize::from(r.a) % NR_GPFNS.len()],
            Some((2, r)) => n.wrapping_add(i64::from((r.v as i32) >> 10) as u64),
            Some((3, r)) => u64::from(r.v) & ((1 << 22) - 1),
            _ => n,
        })
    }
}

impl LogDirty for FuzzedHv<'_> {
    fn logdirty_enable(&self, domid: DomId) -> HvResult<()> {
        match self.plan.next(Call::LogdirtyEnable) {
            // Fails before switching on (what Xen's EINVAL "already on" is).
            Some(r) if r.action % 2 == 0 => Err(r.error()),
            // Switched on, then reported as failed.
            Some(r) => {
                self.inner.logdirty_enable(domid)?;
                Err(r.error())
            }
            None => self.inner.logdirty_enable(domid),
        }
    }

    fn logdirty_off(&self, domid: DomId) -> HvResult<()> {
        let res = self.inner.logdirty_off(domid);
        match self.plan.next(Call::LogdirtyOff) {
            Some(r) => Err(r.error()),
            None => res,
        }
    }

    fn logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
        final_pass: bool,
    ) -> HvResult<LogDirtyReport> {
        let r = self.rule(Call::LogdirtyClean)?;
        let mut rep = self
            .inner
            .logdirty_clean(domid, bitmap, pages, final_pass)?;
        if let Some(r) = r {
            perturb_bitmap(&r, bitmap, pages, &mut rep);
        }
        Ok(rep)
    }

    fn logdirty_peek(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport> {
        let r = self.rule(Call::LogdirtyPeek)?;
        let mut rep = self.inner.logdirty_peek(domid, bitmap, pages)?;
        if let Some(r) = r {
            perturb_bitmap(&r, bitmap, pages, &mut rep);
        }
        Ok(rep)
    }
}

/// A dirty bitmap (and its report) altered by `r`: 1 bit `v` set (possibly
/// past `pages`, within the buffer), 2 bit `v` cleared, 3 every bit of the
/// buffer set, 4 every bit cleared, 5 the page count reported changed,
/// 6 the counters set to `v`, 7 a run of `a` bits from `v` set.
fn perturb_bitmap(r: &Rule, bitmap: &mut [u64], pages: u64, rep: &mut LogDirtyReport) {
    let bits = bitmap.len() as u64 * 64;
    if bits == 0 {
        return;
    }
    let v = u64::from(r.v);
    let mut set = |b: u64, on: bool| {
        let b = b % bits;
        let (w, m) = ((b / 64) as usize, 1u64 << (b % 64));
        if on {
            bitmap[w] |= m;
        } else {
            bitmap[w] &= !m;
        }
    };
    match r.action % 8 {
        1 => set(v, true),
        2 => set(v, false),
        3 => bitmap.fill(u64::MAX),
        4 => bitmap.fill(0),
        5 => {
            rep.pages = if r.a & 1 == 0 {
                pages.wrapping_sub(1 + v % 2)
            } else {
                wide(r.v)
            }
        }
        6 => {
            rep.dirty_count = r.v;
            rep.fault_count = r.v;
        }
        7 => {
            for b in v..v + u64::from(r.a) * 8 {
                set(b, true);
            }
        }
        _ => {}
    }
}

/// A read mapping with some slots' errors set by the plan: those slots
/// read as unmapped, whatever the simulator mapped there.
pub struct FuzzMapping<M> {
    inner: M,
    errs: Vec<i32>,
}

impl<M: MappedPages> MappedPages for FuzzMapping<M> {
    fn count(&self) -> usize {
        self.inner.count()
    }

    fn error(&self, i: usize) -> i32 {
        match self.errs.get(i) {
            Some(0) | None => self.inner.error(i),
            Some(&e) => e,
        }
    }

    fn read_page(&self, i: usize, dst: &mut [u8; PAGE_SIZE]) {
        if self.error(i) == 0 {
            self.inner.read_page(i, dst);
        }
    }

    fn is_zero(&self, i: usize) -> bool {
        self.error(i) == 0 && self.inner.is_zero(i)
    }

    fn pages(&self, first: usize, n: usize) -> Option<xcmig::hv::GuestBytes<'_>> {
        let end = first.checked_add(n)?;
        if (first..end).any(|i| self.error(i) != 0) {
            return None;
        }
        self.inner.pages(first, n)
    }
}

impl GuestMemory for FuzzedHv<'_> {
    type ReadMapping<'a>
        = FuzzMapping<<SimHypervisor as GuestMemory>::ReadMapping<'a>>
    where
        Self: 'a;
    type WriteMapping<'a>
        = <SimHypervisor as GuestMemory>::WriteMapping<'a>
    where
        Self: 'a;

    /// Actions: 1 slot `v` answers type `a`, 2 every slot answers type
    /// `a`, 3 slot `v` keeps the frame number it was asked with, 4 the
    /// answer is left as it was before the call (frame numbers).
    fn page_types(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        let r = self.rule(Call::PageTypes)?;
        let asked = frames.to_vec();
        self.inner.page_types(domid, frames)?;
        if let (Some(r), false) = (r, frames.is_empty()) {
            let i = r.v as usize % frames.len();
            match r.action % 5 {
                1 => frames[i] = r.page_type(),
                2 => frames.fill(r.page_type()),
                3 => frames[i] = asked[i],
                4 => frames.copy_from_slice(&asked),
                _ => {}
            }
        }
        Ok(())
    }

    /// Actions: 1 slot `v` fails with errno `a`, 2 every slot fails, 3
    /// every `a % 8 + 2`-th slot fails.
    fn map_read(&self, domid: DomId, frames: &[u64]) -> HvResult<Self::ReadMapping<'_>> {
        let r = self.rule(Call::MapRead)?;
        let inner = self.inner.map_read(domid, frames)?;
        let mut errs = vec![0; frames.len()];
        if let (Some(r), false) = (r, errs.is_empty()) {
            let e = -r.errno();
            match r.action % 4 {
                1 => errs[r.v as usize % frames.len()] = e,
                2 => errs.fill(e),
                3 => {
                    let k = usize::from(r.a % 8) + 2;
                    errs.iter_mut().step_by(k).for_each(|x| *x = e);
                }
                _ => {}
            }
        }
        Ok(FuzzMapping { inner, errs })
    }

    fn map_write(&self, domid: DomId, frames: &[u64]) -> HvResult<Self::WriteMapping<'_>> {
        self.inner.map_write(domid, frames)
    }

    fn populate_physmap(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        self.inner.populate_physmap(domid, frames)
    }

    fn populate_extents(&self, domid: DomId, extents: &mut [u64], order: u32) -> HvResult<usize> {
        self.inner.populate_extents(domid, extents, order)
    }

    fn mapping_hints(&self) -> MappingHints {
        self.inner.mapping_hints()
    }

    fn clear_pages(&self, domid: DomId, gfn: u64, count: u64) -> HvResult<()> {
        self.inner.clear_pages(domid, gfn, count)
    }
}

impl X86Cpu for FuzzedHv<'_> {
    /// Actions: 1 mode `v`, 2 gtsc_khz `v`, 3 elapsed_nsec and
    /// incarnation `wide(v)`.
    fn tsc_info(&self, domid: DomId) -> HvResult<TscInfo> {
        let r = self.rule(Call::TscInfo)?;
        let mut t = self.inner.tsc_info(domid)?;
        if let Some(r) = r {
            match r.action % 4 {
                1 => t.mode = r.v,
                2 => t.gtsc_khz = r.v,
                3 => {
                    t.elapsed_nsec = wide(r.v);
                    t.incarnation = r.v;
                }
                _ => {}
            }
        }
        Ok(t)
    }

    fn set_tsc_info(&self, domid: DomId, tsc: &TscInfo) -> HvResult<()> {
        self.inner.set_tsc_info(domid, tsc)
    }

    /// Actions: 1 leaves truncated to `v`, 2 grown to `v` (at most
    /// 16384), 3 MSRs truncated, 4 MSRs grown, 5 both emptied, 6 leaf `v`
    /// duplicated.
    fn cpu_policy(&self, domid: DomId) -> HvResult<CpuPolicy> {
        let r = self.rule(Call::CpuPolicy)?;
        let mut p = self.inner.cpu_policy(domid)?;
        if let Some(r) = r {
            let v = r.v as usize;
            match r.action % 7 {
                1 => p.leaves.truncate(v % (p.leaves.len() + 1)),
                2 => {
                    let n = v % MAX_GROW;
                    let mut k = 0u32;
                    while p.leaves.len() < n {
                        p.leaves.push(CpuidLeaf {
                            leaf: 0x4000_0000 + k,
                            subleaf: u32::from(r.a),
                            a: k,
                            b: r.v,
                            c: 0,
                            d: 0,
                        });
                        k += 1;
                    }
                }
                3 => p.msrs.truncate(v % (p.msrs.len() + 1)),
                4 => {
                    let n = v % MAX_GROW;
                    let mut k = 0u32;
                    while p.msrs.len() < n {
                        p.msrs.push(MsrEntry {
                            idx: 0xc000_0000 + k,
                            flags: u32::from(r.a),
                            val: wide(r.v),
                        });
                        k += 1;
                    }
                }
                5 => {
                    p.leaves.clear();
                    p.msrs.clear();
                }
                6 if !p.leaves.is_empty() => {
                    let l = p.leaves[v % p.leaves.len()];
                    p.leaves.push(l);
                }
                _ => {}
            }
        }
        Ok(p)
    }

    fn set_cpu_policy(&self, domid: DomId, policy: &CpuPolicy) -> HvResult<()> {
        self.inner.set_cpu_policy(domid, policy)
    }
}

impl X86Hvm for FuzzedHv<'_> {
    /// Actions: see `perturb_blob` (truncate, grow, set a byte, empty, set
    /// a u64).
    fn hvm_context(&self, domid: DomId) -> HvResult<Vec<u8>> {
        let r = self.rule(Call::HvmContext)?;
        let mut blob = self.inner.hvm_context(domid)?;
        if let Some(r) = r {
            perturb_blob(&r, &mut blob);
        }
        Ok(blob)
    }

    fn set_hvm_context(&self, domid: DomId, blob: &[u8]) -> HvResult<()> {
        self.inner.set_hvm_context(domid, blob)
    }

    /// Actions: 1 the value `wide(v)`, 2 zero.
    fn hvm_param(&self, domid: DomId, index: u32) -> HvResult<u64> {
        let r = self.rule(Call::HvmParam)?;
        let p = self.inner.hvm_param(domid, index)?;
        Ok(match r.map(|r| (r.action % 3, r.v)) {
            Some((1, v)) => wide(v),
            Some((2, _)) => 0,
            _ => p,
        })
    }

    fn set_hvm_param(&self, domid: DomId, index: u32, value: u64) -> HvResult<()> {
        self.inner.set_hvm_param(domid, index, value)
    }
}

// The scheduler calls go to the simulator unperturbed: the save engine
// makes them only with auto-converge on, and treats every failure of them
// as "do not throttle".
impl CpuScheduler for FuzzedHv<'_> {
    fn scheduler(&self) -> HvResult<SchedulerKind> {
        self.inner.scheduler()
    }
    fn sched_credit(&self, domid: DomId, kind: SchedulerKind) -> HvResult<SchedCredit> {
        self.inner.sched_credit(domid, kind)
    }
    fn set_sched_credit(
        &self,
        domid: DomId,
        kind: SchedulerKind,
        params: SchedCredit,
    ) -> HvResult<()> {
        self.inner.set_sched_credit(domid, kind, params)
    }
}

impl GrantTable for FuzzedHv<'_> {
    fn seed_grant_table(&self, domid: DomId, hvm: bool, entries: &[GrantEntry]) -> HvResult<()> {
        self.inner.seed_grant_table(domid, hvm, entries)
    }
}

/// The M2P with entries the plan rewrote: every `a % 16 + 1`-th MFN (from
/// `skip`) reads `value`, and the highest MFN may be reported lower.
struct FuzzM2p<'a> {
    inner: Box<dyn M2pTable + 'a>,
    max_mfn: u64,
    every: u64,
    value: Option<u64>,
}

impl M2pTable for FuzzM2p<'_> {
    fn max_mfn(&self) -> u64 {
        self.max_mfn
    }

    fn entry(&self, mfn: u64) -> Option<u64> {
        if mfn > self.max_mfn {
            return None;
        }
        match self.value {
            Some(v) if mfn.is_multiple_of(self.every) => Some(v),
            _ => self.inner.entry(mfn),
        }
    }
}

impl X86Pv for FuzzedHv<'_> {
    /// Actions: 1 the answer is 0, 16, 32, 48, 64, 128 or `v`.
    fn pv_address_size(&self, domid: DomId) -> HvResult<u32> {
        let r = self.rule(Call::PvAddressSize)?;
        let bits = self.inner.pv_address_size(domid)?;
        Ok(match r {
            Some(r) => [0, 16, 32, 48, 64, 128, r.v][r.a as usize % 7],
            None => bits,
        })
    }

    fn set_pv_address_size(&self, domid: DomId, bits: u32) -> HvResult<()> {
        self.inner.set_pv_address_size(domid, bits)
    }

    /// Actions: 1 every `a % 16 + 1`-th MFN's entry reads `wide(v)`,
    /// 2 the highest MFN reported as `v`, 3 both.
    fn map_m2p(&self) -> HvResult<Box<dyn M2pTable + '_>> {
        let r = self.rule(Call::MapM2p)?;
        let inner = self.inner.map_m2p()?;
        let Some(r) = r else { return Ok(inner) };
        let real_max = inner.max_mfn();
        let act = r.action % 4;
        Ok(Box::new(FuzzM2p {
            max_mfn: if act >= 2 {
                u64::from(r.v).min(real_max)
            } else {
                real_max
            },
            every: u64::from(r.a % 16) + 1,
            value: (act == 1 || act == 3).then(|| wide(r.v)),
            inner,
        }))
    }

    /// Actions: 1 the answer is `wide(v)`.
    fn compat_m2p_mfn0(&self) -> HvResult<u64> {
        let r = self.rule(Call::CompatM2p)?;
        let m = self.inner.compat_m2p_mfn0()?;
        Ok(r.map_or(m, |r| wide(r.v)))
    }

    /// Actions: 1 the answer flipped.
    fn vcpu_online(&self, domid: DomId, vcpu: u32) -> HvResult<bool> {
        let r = self.rule(Call::VcpuOnline)?;
        let on = self.inner.vcpu_online(domid, vcpu)?;
        Ok(on ^ r.is_some())
    }

    /// Actions: see `perturb_blob`; 5 rewrites a frame-sized word (cr3,
    /// GDT frames, the start_info register...).
    fn vcpu_context(&self, domid: DomId, vcpu: u32, width: GuestWidth) -> HvResult<Vec<u8>> {
        let r = self.rule(Call::VcpuContext)?;
        let mut c = self.inner.vcpu_context(domid, vcpu, width)?;
        if let Some(r) = r {
            perturb_blob(&r, &mut c);
        }
        Ok(c)
    }

    fn set_vcpu_context(&self, domid: DomId, vcpu: u32, context: &[u8]) -> HvResult<()> {
        self.inner.set_vcpu_context(domid, vcpu, context)
    }

    /// Actions: see `perturb_blob`.
    fn ext_vcpu_context(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<u8>> {
        let r = self.rule(Call::ExtVcpuContext)?;
        let mut c = self.inner.ext_vcpu_context(domid, vcpu)?;
        if let Some(r) = r {
            perturb_blob(&r, &mut c);
        }
        Ok(c)
    }

    fn set_ext_vcpu_context(&self, domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        self.inner.set_ext_vcpu_context(domid, vcpu, blob)
    }

    /// Actions: see `perturb_blob`; with `a` of 0xff, no XSAVE at all.
    fn vcpu_xsave(&self, domid: DomId, vcpu: u32) -> HvResult<Option<Vec<u8>>> {
        let r = self.rule(Call::VcpuXsave)?;
        let x = self.inner.vcpu_xsave(domid, vcpu)?;
        Ok(match (r, x) {
            (Some(r), _) if r.a == 0xff => None,
            (Some(r), Some(mut b)) => {
                perturb_blob(&r, &mut b);
                Some(b)
            }
            (_, x) => x,
        })
    }

    fn set_vcpu_xsave(&self, domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        self.inner.set_vcpu_xsave(domid, vcpu, blob)
    }

    /// Actions: 1 grown to `v` entries (at most 16384), 2 truncated to `v`,
    /// 3 entry `a`'s flags set to `v`.
    fn vcpu_msrs(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<MsrEntry>> {
        let r = self.rule(Call::VcpuMsrs)?;
        let mut m = self.inner.vcpu_msrs(domid, vcpu)?;
        if let Some(r) = r {
            let v = r.v as usize;
            match r.action % 4 {
                1 => {
                    let n = v % MAX_GROW;
                    let mut k = 0;
                    while m.len() < n {
                        m.push(MsrEntry {
                            idx: r.v.wrapping_add(k),
                            flags: 0,
                            val: u64::from(k),
                        });
                        k += 1;
                    }
                }
                2 => m.truncate(v % (m.len() + 1)),
                3 if !m.is_empty() => {
                    let i = usize::from(r.a) % m.len();
                    m[i].flags = r.v;
                }
                _ => {}
            }
        }
        Ok(m)
    }

    fn set_vcpu_msrs(&self, domid: DomId, vcpu: u32, msrs: &[MsrEntry]) -> HvResult<()> {
        self.inner.set_vcpu_msrs(domid, vcpu, msrs)
    }

    fn pin_page_tables(&self, domid: DomId, pins: &[(u8, u64)]) -> HvResult<()> {
        self.inner.pin_page_tables(domid, pins)
    }
}

/// The `save_hypercalls` seeds: each a header (guest, mode, Remus
/// checkpoints and rewritten pages; see the target) and a few rules, one
/// per kind of perturbation, so that the fuzzer starts from every guest
/// type, every mode and every call it can perturb. Written into
/// `fuzz/corpus/save_hypercalls` by this module's test
/// `seeds_decode_to_their_rules` with `XCMIG_WRITE_SAVE_SEEDS=1`.
pub fn save_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let rule = |call, nth, action, a, v| Rule {
        call,
        nth,
        action,
        a,
        v,
    };
    // The edge value `wide` picks with index `i`.
    let edge = |i: u32| 0x8000_0000 | i;
    let seeds: Vec<(&'static str, [u8; 3], Vec<Rule>)> = vec![
        ("hvm-nonlive", [0, 0, 0], vec![]),
        ("hvm-live", [0, 1, 0], vec![]),
        ("hvm-remus-2-checkpoints", [0, 2, 2 | (4 << 2)], vec![]),
        ("pvh-live-debug", [1, 1 | 4, 0], vec![]),
        ("pv64-linear-nonlive", [2, 0, 0], vec![]),
        ("pv64-tree-live-own-policy", [3, 1 | 8, 0], vec![]),
        ("pv32-linear-remus", [4, 2, 1 | (4 << 2)], vec![]),
        ("pv32-tree-nonlive", [5, 0, 0], vec![]),
        (
            "hvm-page-types-fail",
            [0, 0, 0],
            vec![rule(Call::PageTypes, 0, 0, 3, 0)],
        ),
        (
            "hvm-live-dirty-bits-beyond-p2m",
            [0, 1, 0],
            vec![
                rule(Call::LogdirtyClean, EVERY, 1, 0, 0x0fff_ffff),
                rule(Call::LogdirtyClean, 1, 3, 0, 0),
            ],
        ),
        (
            "pv64-map-slot-error",
            [2, 0, 0],
            vec![rule(Call::MapRead, 0, 1, 1, 5)],
        ),
        (
            "hvm-nr-gpfns-past-2-to-the-40",
            [0, 0, 0],
            vec![rule(Call::NrGpfns, 0, 1, 8, 0)],
        ),
        (
            "hvm-context-truncated",
            [0, 0, 0],
            vec![rule(Call::HvmContext, 0, 1, 0, 100)],
        ),
        (
            "pvh-cpu-policy-5000-leaves",
            [1, 0, 0],
            vec![rule(Call::CpuPolicy, 0, 2, 0, 5000)],
        ),
        (
            "pv32-vcpu-context-word-rewritten",
            [4, 0, 0],
            vec![rule(Call::VcpuContext, 0, 5, 10, edge(9))],
        ),
        (
            "pv64-live-suspend-fails",
            [2, 1, 0],
            vec![rule(Call::Suspend, 0, 0, 0, 0)],
        ),
        (
            "pv64-page-table-entry-rewritten",
            [2, 0, 0],
            vec![rule(Call::GuestWrite, 0, 1, 0, edge(9))],
        ),
        (
            "hvm-live-logdirty-on-then-error",
            [0, 1, 0],
            vec![rule(Call::LogdirtyEnable, 0, 1, 0, 0)],
        ),
        (
            "pv64-m2p-entries-rewritten",
            [2, 0, 0],
            vec![rule(Call::MapM2p, 0, 1, 3, edge(1))],
        ),
        (
            "pv64-tree-live-all-xtab",
            [3, 1, 0],
            vec![rule(Call::PageTypes, 1, 2, 7, 0)],
        ),
        (
            "pv32-address-size-48",
            [5, 0, 0],
            vec![rule(Call::PvAddressSize, 0, 1, 3, 0)],
        ),
        (
            "hvm-remus-postcopy-stops",
            [0, 2, 3],
            vec![rule(Call::Postcopy, 1, 1, 0, 0)],
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, header, rules)| {
            let mut b = header.to_vec();
            for r in &rules {
                b.extend_from_slice(&r.encode());
            }
            (name, b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_to_their_rules() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/save_hypercalls");
        let write = std::env::var_os("XCMIG_WRITE_SAVE_SEEDS").is_some();
        for (name, bytes) in save_seeds() {
            let plan = Plan::parse(&bytes[3..], 32);
            let again: Vec<u8> = plan.rules().iter().flat_map(|r| r.encode()).collect();
            assert_eq!(again, bytes[3..], "{name}");
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(name), &bytes).unwrap();
            }
        }
    }

    #[test]
    fn a_rule_survives_encoding() {
        let r = Rule {
            call: Call::MapRead,
            nth: 3,
            action: 2,
            a: 7,
            v: 0xdead_beef,
        };
        assert_eq!(Rule::decode(&r.encode()), r);
    }

    #[test]
    fn rules_fire_on_their_occurrence_only() {
        let rules = [
            Rule {
                call: Call::PageTypes,
                nth: 1,
                action: 0,
                a: 0,
                v: 0,
            },
            Rule {
                call: Call::MapRead,
                nth: EVERY,
                action: 1,
                a: 0,
                v: 0,
            },
        ];
        let bytes: Vec<u8> = rules.iter().flat_map(|r| r.encode()).collect();
        let plan = Plan::parse(&bytes, 16);
        assert_eq!(plan.next(Call::PageTypes), None);
        assert_eq!(plan.next(Call::PageTypes), Some(rules[0]));
        assert_eq!(plan.next(Call::PageTypes), None);
        assert_eq!(plan.next(Call::MapRead), Some(rules[1]));
        assert_eq!(plan.next(Call::MapRead), Some(rules[1]));
        assert_eq!(plan.fired().len(), 3);
    }
}
