//! The roles a hypervisor plays for the engines, one trait each (as
//! vm-memory splits `GuestMemory`, `Bytes` and `GuestAddressSpace`), and
//! [`Hypervisor`], the sum of them that the engines take today.
//!
//! Every method corresponds to one libxenctrl/libxenforeignmemory call (or
//! a short fixed sequence of them) that libxenguest makes on the same path;
//! the doc comment names it, so that an implementation over real Xen is a
//! thin wrapper and a simulated one knows which Xen semantics to reproduce.
//!
//! Errors carry the errno Xen (or the library) reported, so that the C
//! layer can hand it back through `errno`.
//!
//! A role that only some guest types need is a trait of its own
//! ([`X86Hvm`] for HVM and PVH, [`X86Pv`] for x86 PV). The engines choose
//! the guest type at run time, so both are in the [`Hypervisor`] sum;
//! [`X86Pv`]'s methods default to "no PV on this host" so that backends
//! and test doubles that model HVM guests only need not provide it.

use super::pages::{MappedPages, MappedPagesMut, MappingHints};
use super::{
    CpuPolicy, DomId, DomainInfo, GrantEntry, HvError, HvResult, LogDirtyReport, MsrEntry,
    SchedCredit, SchedulerKind, TscInfo,
};
use crate::x86::pv::GuestWidth;

/// Domain control: which Xen this is and what it says about a domain as a
/// whole (`xc_version`, `xc_domain_getinfo`, `xc_domain_nr_gpfns`).
pub trait DomainCtl {
    /// `xc_version(XENVER_version)`: (major, minor), e.g. (4, 17).
    fn xen_version(&self) -> HvResult<(u16, u16)>;

    /// `xc_domain_getinfo(xch, domid, 1, ..)`: information about the first
    /// domain with an id of at least `domid` (check [`DomainInfo::domid`]).
    fn domain_info(&self, domid: DomId) -> HvResult<DomainInfo>;

    /// `xc_domain_nr_gpfns`: `XENMEM_maximum_gpfn` + 1, the p2m size the
    /// save loop and its dirty bitmap span.
    fn nr_gpfns(&self, domid: DomId) -> HvResult<u64>;
}

/// Guest memory: page types, foreign mappings, and allocating and clearing
/// frames (`xc_get_pfn_type_batch`, `xenforeignmemory_map`/`_unmap`,
/// `xc_domain_populate_physmap[_exact]`, `xc_clear_domain_pages`).
pub trait GuestMemory {
    /// A read-only mapping of a batch of guest frames.
    type ReadMapping<'a>: MappedPages
    where
        Self: 'a;
    /// A read-write mapping of a batch of guest frames.
    type WriteMapping<'a>: MappedPagesMut
    where
        Self: 'a;

    /// `xc_get_pfn_type_batch`: replace each frame number in `frames` (at
    /// most [`MAX_BATCH`](super::MAX_BATCH)) with its
    /// `XEN_DOMCTL_PFINFO_*` type ([`pfinfo`](super::pfinfo)); holes and
    /// invalid frames give XTAB, not an error.
    fn page_types(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()>;

    /// `xenforeignmemory_map(PROT_READ)` of `frames`.
    fn map_read(&self, domid: DomId, frames: &[u64]) -> HvResult<Self::ReadMapping<'_>>;

    /// `xenforeignmemory_map(PROT_READ | PROT_WRITE)` of `frames`.
    fn map_write(&self, domid: DomId, frames: &[u64]) -> HvResult<Self::WriteMapping<'_>>;

    /// `xc_domain_populate_physmap_exact(order 0)`: allocate memory behind
    /// each gfn in `frames`. On return each entry holds the frame Xen
    /// allocated (the same gfn for HVM; an MFN for PV).
    fn populate_physmap(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()>;

    /// `xc_domain_populate_physmap(extent_order = order)`: allocate an
    /// extent of `2^order` frames at each (aligned) gfn in `extents`. Xen
    /// stops at the first extent it cannot allocate (for instance no free
    /// 2 MiB of memory), leaving the earlier ones populated; the number
    /// populated is returned and the caller populates the rest otherwise.
    /// An error means nothing more can be expected from a retry.
    ///
    /// Order 0 goes to [`GuestMemory::populate_physmap`] and no extents to
    /// nothing at all; the rest to [`GuestMemory::populate_extents`], which
    /// is what a backend overrides (this method is not meant to be).
    fn populate_physmap_order(
        &self,
        domid: DomId,
        extents: &mut [u64],
        order: u32,
    ) -> HvResult<usize> {
        if order == 0 {
            self.populate_physmap(domid, extents)?;
            return Ok(extents.len());
        }
        if extents.is_empty() {
            return Ok(0);
        }
        self.populate_extents(domid, extents, order)
    }

    /// [`GuestMemory::populate_physmap_order`] for `order > 0` and at least
    /// one extent.
    ///
    /// The default populates the frames of each extent with
    /// [`GuestMemory::populate_physmap`] (order 0), all or nothing.
    fn populate_extents(&self, domid: DomId, extents: &mut [u64], order: u32) -> HvResult<usize> {
        // Xen refuses orders above its largest allocation unit; 1 GiB
        // (order 18) is the largest a toolstack asks for.
        let capacity = if order <= 18 {
            extents.len().checked_mul(1usize << order)
        } else {
            None
        };
        let Some(capacity) = capacity else {
            return Err(HvError::with_detail(
                "xc_domain_populate_physmap",
                libc::EINVAL,
                format!("extent order {order} for {} extents", extents.len()),
            ));
        };
        let per = 1u64 << order;
        let mut frames = Vec::with_capacity(capacity);
        for &base in extents.iter() {
            frames.extend(base..base.saturating_add(per));
        }
        self.populate_physmap(domid, &mut frames)?;
        for (e, chunk) in extents.iter_mut().zip(frames.chunks(per as usize)) {
            *e = chunk[0];
        }
        Ok(extents.len())
    }

    /// How long the engines may keep mappings of this backend's guests.
    fn mapping_hints(&self) -> MappingHints {
        MappingHints::default()
    }

    /// `xc_clear_domain_pages`: zero `count` frames from `gfn`.
    fn clear_pages(&self, domid: DomId, gfn: u64, count: u64) -> HvResult<()>;
}

/// Log-dirty tracking, what live migration runs on (`xc_shadow_control`
/// ENABLE_LOGDIRTY / OFF, `xc_logdirty_control` CLEAN / PEEK).
pub trait LogDirty {
    /// `xc_shadow_control(ENABLE_LOGDIRTY)`. Xen fails with EINVAL when
    /// log-dirty is already on (for instance for VRAM tracking).
    fn logdirty_enable(&self, domid: DomId) -> HvResult<()>;

    /// `xc_shadow_control(OFF)`: log-dirty off. Accepted at any time.
    fn logdirty_off(&self, domid: DomId) -> HvResult<()>;

    /// `xc_logdirty_control(CLEAN)`: copy the first `pages` bits of the
    /// dirty bitmap into `bitmap` (bit `p` of word `p / 64` is pfn `p`),
    /// then clear the bitmap and counters. `final_pass` is
    /// `XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL`. `bitmap` holds at least
    /// `pages.div_ceil(64)` words.
    fn logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
        final_pass: bool,
    ) -> HvResult<LogDirtyReport>;

    /// `xc_logdirty_control(PEEK)`: like [`LogDirty::logdirty_clean`]
    /// without clearing anything.
    fn logdirty_peek(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport>;
}

/// The guest's grant table, seeded on restore for every guest type
/// (libxenguest's `xc_dom_gnttab_seed`, over
/// `xenforeignmemory_map_resource`).
pub trait GrantTable {
    /// Write `entries` into the domain's grant table frame 0
    /// (`xenforeignmemory_map_resource` of the shared grant table, as
    /// `xc_dom_gnttab_seed` does, with its fallbacks). The table is mapped
    /// and unmapped even when `entries` is empty, like libxenguest.
    fn seed_grant_table(&self, domid: DomId, hvm: bool, entries: &[GrantEntry]) -> HvResult<()>;
}

/// x86 vCPU state every x86 guest type (HVM, PVH and later PV) carries:
/// the TSC and the CPU policy (`xc_domain_get_tsc_info`/`_set_tsc_info`,
/// `xc_cpu_policy_get_domain` + `_serialise`, `xc_set_domain_cpu_policy`).
pub trait X86Cpu {
    /// `xc_domain_get_tsc_info`.
    fn tsc_info(&self, domid: DomId) -> HvResult<TscInfo>;

    /// `xc_domain_set_tsc_info`.
    fn set_tsc_info(&self, domid: DomId, tsc: &TscInfo) -> HvResult<()>;

    /// `xc_cpu_policy_get_domain` + `xc_cpu_policy_serialise`: the domain's
    /// CPU policy, serialised.
    fn cpu_policy(&self, domid: DomId) -> HvResult<CpuPolicy>;

    /// `xc_set_domain_cpu_policy`. Xen refuses (EEXIST) once the domain has
    /// first been unpaused.
    fn set_cpu_policy(&self, domid: DomId, policy: &CpuPolicy) -> HvResult<()>;
}

/// x86 HVM and PVH guests: the HVM context blob and HVM parameters
/// (`xc_domain_hvm_getcontext`/`_setcontext`, `xc_hvm_param_get`/`_set`).
pub trait X86Hvm {
    /// `xc_domain_hvm_getcontext`: the HVM context blob (size query, then
    /// fetch; the returned vector has the actual length).
    fn hvm_context(&self, domid: DomId) -> HvResult<Vec<u8>>;

    /// `xc_domain_hvm_setcontext`.
    fn set_hvm_context(&self, domid: DomId, blob: &[u8]) -> HvResult<()>;

    /// `xc_hvm_param_get`.
    fn hvm_param(&self, domid: DomId, index: u32) -> HvResult<u64>;

    /// `xc_hvm_param_set`.
    fn set_hvm_param(&self, domid: DomId, index: u32, value: u64) -> HvResult<()>;
}

/// The machine-to-phys table (M2P) Xen keeps for PV guests, as a live,
/// read-only view: `m2p[mfn]` is the pfn the owning guest gave the machine
/// frame `mfn`. libxenguest maps it once per save or restore
/// (`x86_pv_map_m2p`: `xc_maximum_ram_page`, `xc_machphys_mfn_list`, one
/// mapping of those chunks of `DOMID_XEN`) and reads it directly from then
/// on, so a lookup sees entries Xen writes after the mapping was made (by
/// a restore's populate calls).
pub trait M2pTable {
    /// The highest machine frame (`XENMEM_maximum_ram_page`).
    fn max_mfn(&self) -> u64;

    /// `m2p[mfn]`, or `None` for `mfn > max_mfn`. Frames no guest owns
    /// read `INVALID_M2P_ENTRY` (`u64::MAX`) or another value that fails the
    /// callers' round-trip check.
    fn entry(&self, mfn: u64) -> Option<u64>;
}

/// x86 PV guests: their width, the M2P, vCPU state and page-table pinning
/// (`xc_domain_get_guest_width`, `XEN_DOMCTL_set_address_size`,
/// `x86_pv_map_m2p`, `xc_vcpu_getcontext`/`_setcontext`, the ext context,
/// xsave and MSR domctls, `xc_mmuext_op`).
///
/// For a PV domain the frames of [`GuestMemory`] (type queries, mappings,
/// what populate writes back) are machine frames (MFNs), and the pfn ->
/// MFN mapping is the guest's own p2m, in guest memory.
///
/// Every method has a default that fails with `EOPNOTSUPP`, what Xen built
/// without PV support answers, so a backend that models HVM guests only
/// (most test doubles) need not implement this role; `hv::xen` and
/// `hv::sim` implement all of it.
pub trait X86Pv {
    /// `xc_domain_get_guest_width` (`XEN_DOMCTL_get_address_size`): the
    /// guest's address size in bits, 32 or 64.
    fn pv_address_size(&self, domid: DomId) -> HvResult<u32> {
        let _ = domid;
        Err(no_pv("xc_domain_get_guest_width"))
    }

    /// `XEN_DOMCTL_set_address_size` with `bits` (32 or 64). Xen switches a
    /// domain to 32 bits only while it has no memory.
    fn set_pv_address_size(&self, domid: DomId, bits: u32) -> HvResult<()> {
        let _ = (domid, bits);
        Err(no_pv("XEN_DOMCTL_set_address_size"))
    }

    /// `x86_pv_map_m2p`: map the whole M2P, live, for reading.
    fn map_m2p(&self) -> HvResult<Box<dyn M2pTable + '_>> {
        Err(no_pv("xc_machphys_mfn_list"))
    }

    /// `XENMEM_machphys_compat_mfn_list` (one extent): the first machine
    /// frame of the compat M2P that Xen maps into 32-bit guests' page
    /// tables, which a save recognises and strips.
    fn compat_m2p_mfn0(&self) -> HvResult<u64> {
        Err(no_pv("XENMEM_machphys_compat_mfn_list"))
    }

    /// `xc_vcpu_getinfo(..).online`.
    fn vcpu_online(&self, domid: DomId, vcpu: u32) -> HvResult<bool> {
        let _ = (domid, vcpu);
        Err(no_pv("xc_vcpu_getinfo"))
    }

    /// `xc_vcpu_getcontext`: the basic vCPU context of a PV guest of
    /// `width` as raw bytes (`vcpu_guest_context_x86_{64,32}_t`; lay it out
    /// with [`VcpuContext`](crate::x86::pv::VcpuContext)). Frames in it
    /// (cr3, GDT) are MFNs.
    fn vcpu_context(&self, domid: DomId, vcpu: u32, width: GuestWidth) -> HvResult<Vec<u8>> {
        let _ = (domid, vcpu, width);
        Err(no_pv("xc_vcpu_getcontext"))
    }

    /// `xc_vcpu_setcontext` with raw context bytes of the guest's width.
    /// Xen validates cr3 and the GDT frames, types the page tables under
    /// cr3, and brings the vCPU up when `VGCF_online` is set.
    fn set_vcpu_context(&self, domid: DomId, vcpu: u32, context: &[u8]) -> HvResult<()> {
        let _ = (domid, vcpu, context);
        Err(no_pv("xc_vcpu_setcontext"))
    }

    /// `XEN_DOMCTL_get_ext_vcpucontext`: the first `size` bytes of
    /// `xen_domctl_ext_vcpucontext` as Xen filled them (64 on 4.17), empty
    /// when Xen reports size 0.
    fn ext_vcpu_context(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<u8>> {
        let _ = (domid, vcpu);
        Err(no_pv("XEN_DOMCTL_get_ext_vcpucontext"))
    }

    /// `XEN_DOMCTL_set_ext_vcpucontext` with the blob an
    /// X86_PV_VCPU_EXTENDED record carries (at most 128 bytes).
    fn set_ext_vcpu_context(&self, domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        let _ = (domid, vcpu, blob);
        Err(no_pv("XEN_DOMCTL_set_ext_vcpucontext"))
    }

    /// `XEN_DOMCTL_getvcpuextstate` (size query, then fetch): `{u64 xcr0,
    /// u64 xcr0_accum, xsave area}` as Xen writes it, or `None` when the
    /// host has no XSAVE (`xfeature_mask` 0: no X86_PV_VCPU_XSAVE record).
    fn vcpu_xsave(&self, domid: DomId, vcpu: u32) -> HvResult<Option<Vec<u8>>> {
        let _ = (domid, vcpu);
        Err(no_pv("XEN_DOMCTL_getvcpuextstate"))
    }

    /// `XEN_DOMCTL_setvcpuextstate` with an X86_PV_VCPU_XSAVE record's body.
    fn set_vcpu_xsave(&self, domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        let _ = (domid, vcpu, blob);
        Err(no_pv("XEN_DOMCTL_setvcpuextstate"))
    }

    /// `XEN_DOMCTL_get_vcpu_msrs` (count query, then fetch): the vCPU's
    /// MSRs as Xen lists them (`{u32 index, u32 reserved, u64 value}`,
    /// [`MsrEntry`]'s shape), possibly none.
    fn vcpu_msrs(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<MsrEntry>> {
        let _ = (domid, vcpu);
        Err(no_pv("XEN_DOMCTL_get_vcpu_msrs"))
    }

    /// `XEN_DOMCTL_set_vcpu_msrs`.
    fn set_vcpu_msrs(&self, domid: DomId, vcpu: u32, msrs: &[MsrEntry]) -> HvResult<()> {
        let _ = (domid, vcpu, msrs);
        Err(no_pv("XEN_DOMCTL_set_vcpu_msrs"))
    }

    /// `xc_mmuext_op` with one `MMUEXT_PIN_L<level>_TABLE` per entry of
    /// `pins`, `(level 1..=4, mfn)`, in one call (the caller batches, as
    /// libxenguest does by 1024). Xen validates each table, typing the
    /// tables under it.
    fn pin_page_tables(&self, domid: DomId, pins: &[(u8, u64)]) -> HvResult<()> {
        let _ = (domid, pins);
        Err(no_pv("xc_mmuext_op"))
    }
}

/// The host's CPU scheduler and a domain's share of it (`xc_sched_id`,
/// `xc_sched_credit_domain_{get,set}`, `xc_sched_credit2_domain_{get,set}`).
/// libxenguest never calls these; xcmig's auto-converge uses them to cap a
/// guest's CPU while it dirties memory faster than the stream carries it,
/// through the same `xc_interface` the save was given.
///
/// The methods default to "not supported" so that test doubles which never
/// throttle need not provide them; both backends implement all three.
pub trait CpuScheduler {
    /// `xc_sched_id`: the scheduler of the host (of dom0's cpupool).
    fn scheduler(&self) -> HvResult<SchedulerKind> {
        Err(no_sched("xc_sched_id"))
    }

    /// `xc_sched_credit_domain_get` or `xc_sched_credit2_domain_get`, as
    /// `kind` says: the domain's weight and cap.
    fn sched_credit(&self, domid: DomId, kind: SchedulerKind) -> HvResult<SchedCredit> {
        let _ = (domid, kind);
        Err(no_sched("xc_sched_credit_domain_get"))
    }

    /// `xc_sched_credit_domain_set` or `xc_sched_credit2_domain_set`, as
    /// `kind` says. Under credit a cap of 0xffff leaves the cap as it is;
    /// under both a weight of 0 leaves the weight, and a cap of 0 removes
    /// the cap.
    fn set_sched_credit(
        &self,
        domid: DomId,
        kind: SchedulerKind,
        params: SchedCredit,
    ) -> HvResult<()> {
        let _ = (domid, kind, params);
        Err(no_sched("xc_sched_credit_domain_set"))
    }
}

fn no_sched(op: &'static str) -> HvError {
    HvError::with_detail(
        op,
        libc::EOPNOTSUPP,
        "this backend does not control the scheduler",
    )
}

/// The error of a host without PV support.
fn no_pv(op: &'static str) -> HvError {
    HvError::with_detail(op, libc::EOPNOTSUPP, "this host does not run x86 PV guests")
}

/// Everything the save and restore engines ask of Xen: all the roles,
/// implemented for any type that plays each of them.
///
/// The engines take `H: Hypervisor` and call the roles' methods through it
/// (`H::ReadMapping<'_>` names the mapping type). [`X86Hvm`] and [`X86Pv`]
/// are both in it because the engines choose the guest type at run time,
/// from what the domain is; [`X86Pv`]'s defaults let a backend without PV
/// guests leave it out.
pub trait Hypervisor:
    DomainCtl + GuestMemory + LogDirty + GrantTable + X86Cpu + X86Hvm + X86Pv + CpuScheduler
{
}

impl<T> Hypervisor for T where
    T: DomainCtl + GuestMemory + LogDirty + GrantTable + X86Cpu + X86Hvm + X86Pv + CpuScheduler
{
}
