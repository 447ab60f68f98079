//! What the save and restore engines need from Xen, and nothing more.
//!
//! [`Hypervisor`] is the seam between the engines (`save`, `restore`) and the
//! host: `hv::xen` implements it over libxenctrl and libxenforeignmemory with
//! the caller's `xc_interface *`; [`sim`] implements it in-process over the
//! simulated host `xensim` (tests only, or with the `sim` cargo feature).
//!
//! Every method corresponds to one libxenctrl/libxenforeignmemory call (or a
//! short fixed sequence of them) that libxenguest makes on the same path; the
//! doc comment names it, so that an implementation over real Xen is a thin
//! wrapper and a simulated one knows which Xen semantics to reproduce.
//!
//! Frame numbers are `u64` throughout (`xen_pfn_t` on x86-64). For HVM/PVH
//! guests a "gfn" is the guest frame number; PV (later) uses machine frames
//! for mapping and type queries, hence the neutral name "frame" in the
//! methods that take either.

mod error;
#[cfg(any(test, feature = "sim", feature = "xen"))]
pub(crate) mod pages;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(feature = "xen")]
pub mod xen;

pub use error::{HvError, HvResult};

/// A domain id (`domid_t`, widened as libxenguest's `uint32_t dom`).
pub type DomId = u32;

/// Size of a guest page. x86 only, so fixed.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Most frames Xen accepts in one `XEN_DOMCTL_getpageframeinfo3` call, and
/// the batch size libxenguest uses for PAGE_DATA records.
pub const MAX_BATCH: usize = 1024;

/// `SHUTDOWN_suspend`: the shutdown code of a domain that suspended itself.
pub const SHUTDOWN_SUSPEND: u32 = 2;

/// Page types returned by `XEN_DOMCTL_getpageframeinfo3`, in bits 28..31 of
/// each entry (`XEN_DOMCTL_PFINFO_*`), as they also appear in PAGE_DATA.
pub mod pfinfo {
    /// Shift of the type field.
    pub const LTAB_SHIFT: u32 = 28;
    /// Ordinary page, not a page table.
    pub const NOTAB: u32 = 0;
    /// L1 page table.
    pub const L1TAB: u32 = 1 << LTAB_SHIFT;
    /// L2 page table.
    pub const L2TAB: u32 = 2 << LTAB_SHIFT;
    /// L3 page table.
    pub const L3TAB: u32 = 3 << LTAB_SHIFT;
    /// L4 page table.
    pub const L4TAB: u32 = 4 << LTAB_SHIFT;
    /// Mask of the page-table level.
    pub const LTABTYPE_MASK: u32 = 7 << LTAB_SHIFT;
    /// "Pinned" flag, ORed into L1..L4.
    pub const LPINTAB: u32 = 1 << 31;
    /// Broken page (machine check); carries no data.
    pub const BROKEN: u32 = 0xd << LTAB_SHIFT;
    /// Allocate-only (legacy "allocate but no data"); carries no data.
    pub const XALLOC: u32 = 0xe << LTAB_SHIFT;
    /// Invalid frame or hole; carries no data.
    pub const XTAB: u32 = 0xf << LTAB_SHIFT;
    /// Mask of the whole type field.
    pub const LTAB_MASK: u32 = 0xf << LTAB_SHIFT;

    /// Whether a page of type `t` is followed by 4096 bytes of data in a
    /// PAGE_DATA record: NOTAB and L1..L4, pinned or not.
    pub fn has_data(t: u32) -> bool {
        t == NOTAB || matches!(t & !LPINTAB, L1TAB | L2TAB | L3TAB | L4TAB)
    }

    /// Whether `t` is a type Xen may return or a stream may carry
    /// (libxenguest's `is_known_page_type`).
    pub fn is_known(t: u32) -> bool {
        has_data(t) || matches!(t, BROKEN | XALLOC | XTAB)
    }

    /// Whether the restorer must populate a frame of type `t` (data pages
    /// and XALLOC).
    pub fn needs_populate(t: u32) -> bool {
        has_data(t) || t == XALLOC
    }
}

/// HVM parameter indices (`xen/include/public/hvm/params.h`) the engines use.
pub mod param {
    /// Xenstore page gfn.
    pub const STORE_PFN: u32 = 1;
    /// Xenstore event channel (set on restore from the arguments).
    pub const STORE_EVTCHN: u32 = 2;
    /// Deprecated; skipped on restore.
    pub const PAE_ENABLED: u32 = 4;
    /// Synchronous ioreq page gfn.
    pub const IOREQ_PFN: u32 = 5;
    /// Buffered ioreq page gfn.
    pub const BUFIOREQ_PFN: u32 = 6;
    /// Viridian enlightenment flags.
    pub const VIRIDIAN: u32 = 9;
    /// Identity page table address.
    pub const IDENT_PT: u32 = 12;
    /// Console page gfn.
    pub const CONSOLE_PFN: u32 = 17;
    /// Console event channel (set on restore from the arguments).
    pub const CONSOLE_EVTCHN: u32 = 18;
    /// ACPI PM1a/TMR I/O port layout.
    pub const ACPI_IOPORTS_LOCATION: u32 = 19;
    /// Paging ring gfn.
    pub const PAGING_RING_PFN: u32 = 27;
    /// Monitor ring gfn.
    pub const MONITOR_RING_PFN: u32 = 28;
    /// Sharing ring gfn.
    pub const SHARING_RING_PFN: u32 = 29;
    /// First ioreq server page.
    pub const IOREQ_SERVER_PFN: u32 = 32;
    /// Number of ioreq server pages.
    pub const NR_IOREQ_SERVER_PAGES: u32 = 33;
    /// VM generation id address.
    pub const VM_GENERATION_ID_ADDR: u32 = 34;
    /// x87 FIP width.
    pub const X87_FIP_WIDTH: u32 = 36;
    /// VM86 TSS address and size.
    pub const VM86_TSS_SIZED: u32 = 37;
    /// Machine-check capabilities.
    pub const MCA_CAP: u32 = 38;

    /// The parameters libxenguest saves for an HVM guest, in its order
    /// (`xg_sr_save_x86_hvm.c`); only non-zero values go into the stream.
    pub const SAVED: [u32; 16] = [
        STORE_PFN,
        IOREQ_PFN,
        BUFIOREQ_PFN,
        PAGING_RING_PFN,
        MONITOR_RING_PFN,
        SHARING_RING_PFN,
        VM86_TSS_SIZED,
        CONSOLE_PFN,
        ACPI_IOPORTS_LOCATION,
        VIRIDIAN,
        IDENT_PT,
        VM_GENERATION_ID_ADDR,
        IOREQ_SERVER_PFN,
        NR_IOREQ_SERVER_PAGES,
        X87_FIP_WIDTH,
        MCA_CAP,
    ];
}

/// The part of `xc_dominfo_t` the engines read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DomainInfo {
    /// The domain this information is about. `XEN_DOMCTL_getdomaininfo`
    /// answers with the first domain whose id is at least the one asked for,
    /// so callers compare this with the id they asked about.
    pub domid: DomId,
    /// HVM or PVH (translated) guest; false for PV.
    pub hvm: bool,
    /// The domain is dying.
    pub dying: bool,
    /// The domain has shut down; `shutdown_reason` says why.
    pub shutdown: bool,
    /// `SHUTDOWN_*` code, meaningful when `shutdown` is set.
    pub shutdown_reason: u32,
    /// Paused by the toolstack (pause count > 0), not merely suspended.
    pub paused: bool,
    /// Highest vCPU id.
    pub max_vcpu_id: u32,
    /// Pages currently allocated to the domain.
    pub tot_pages: u64,
    /// Frame of the shared-info page (an MFN for PV).
    pub shared_info_frame: u64,
}

impl DomainInfo {
    /// Whether the domain reads as shut down for suspend, which is what
    /// libxenguest requires after the `suspend` callback.
    pub fn is_suspended(&self) -> bool {
        self.shutdown && self.shutdown_reason == SHUTDOWN_SUSPEND
    }
}

/// Statistics returned by a log-dirty CLEAN or PEEK (`xc_shadow_op_stats_t`
/// plus the returned page count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogDirtyReport {
    /// Pages covered by the returned bitmap. libxenguest requires this to
    /// equal the number it asked for.
    pub pages: u64,
    /// Write faults taken since the last CLEAN.
    pub fault_count: u32,
    /// Pages newly dirtied since the last CLEAN (before this one).
    pub dirty_count: u32,
}

/// TSC state (`XEN_DOMCTL_gettscinfo` / `settscinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TscInfo {
    /// 0 default, 1 always emulate, 2 never emulate.
    pub mode: u32,
    /// Guest-visible elapsed time.
    pub elapsed_nsec: u64,
    /// Guest TSC frequency.
    pub gtsc_khz: u32,
    /// Incarnation; Xen stores the value given plus one on set.
    pub incarnation: u32,
}

/// One CPUID leaf of a serialised policy (`xen_cpuid_leaf_t`, 24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidLeaf {
    /// Leaf (EAX input).
    pub leaf: u32,
    /// Subleaf (ECX input), `0xffffffff` when the leaf has none.
    pub subleaf: u32,
    /// EAX output.
    pub a: u32,
    /// EBX output.
    pub b: u32,
    /// ECX output.
    pub c: u32,
    /// EDX output.
    pub d: u32,
}

/// One MSR of a serialised policy (`xen_msr_entry_t`, 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsrEntry {
    /// MSR index.
    pub idx: u32,
    /// Flags, must be zero.
    pub flags: u32,
    /// Value.
    pub val: u64,
}

/// A domain's CPU policy in serialised form, as Xen's
/// `XEN_DOMCTL_get_cpu_policy` and libxenguest's `xc_cpu_policy_serialise`
/// produce it and as the X86_CPUID_POLICY / X86_MSR_POLICY records carry it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuPolicy {
    /// CPUID leaves.
    pub leaves: Vec<CpuidLeaf>,
    /// MSRs.
    pub msrs: Vec<MsrEntry>,
}

/// One v1 grant-table entry to write (`grant_entry_v1_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantEntry {
    /// Entry index (0 = console, 1 = xenstore: `GNTTAB_RESERVED_*`).
    pub index: u32,
    /// `GTF_*` flags.
    pub flags: u16,
    /// Domain granted access.
    pub domid: u16,
    /// Granted frame.
    pub frame: u32,
}

/// `GTF_permit_access`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// Grant reference reserved for the console ring.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Grant reference reserved for the xenstore ring.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// A batch of guest frames mapped for reading (save side). Dropping it
/// unmaps the frames (`xenforeignmemory_unmap`).
pub trait MappedPages {
    /// Number of frames the mapping was asked for.
    fn count(&self) -> usize;
    /// Per-frame result of the mapping: 0 if the frame is mapped, else a
    /// non-zero error (a negative errno from privcmd).
    fn error(&self, i: usize) -> i32;
    /// Copy frame `i` into `dst`. Frames whose `error` is non-zero must not
    /// be read; implementations return without copying for them.
    fn read_page(&self, i: usize, dst: &mut [u8; PAGE_SIZE]);

    /// Whether frame `i` (mapped without error) is all zeros. The guest may
    /// change it meanwhile; the answer is then that of some moment of the
    /// call. The default copies the page out with
    /// [`MappedPages::read_page`] and looks.
    fn is_zero(&self, i: usize) -> bool {
        let mut page = [0u8; PAGE_SIZE];
        self.read_page(i, &mut page);
        page.iter().all(|&b| b == 0)
    }

    /// Frames `first .. first + n` as one byte slice, if they are all
    /// mapped and lie one after the other in memory, so that a writer can
    /// hand them to the kernel without a copy (as libxenguest's `writev`
    /// does). The guest may be writing them: the slice must only be read
    /// as a whole, and a page may then go out torn, which log-dirty
    /// corrects by sending it again. `None` (the default) makes the engine
    /// copy the pages with [`MappedPages::read_page`].
    fn pages(&self, first: usize, n: usize) -> Option<&[u8]> {
        let _ = (first, n);
        None
    }
}

/// A batch of guest frames mapped for reading and writing (restore side).
pub trait MappedPagesMut: MappedPages {
    /// Copy `src` into frame `i`.
    fn write_page(&mut self, i: usize, src: &[u8; PAGE_SIZE]);

    /// Frames `first .. first + n` as one writable byte slice, if they are
    /// all mapped read-write and lie one after the other in memory, so
    /// that the restore engine reads the stream straight into them. `None`
    /// (the default) makes the engine copy through
    /// [`MappedPagesMut::write_page`].
    fn pages_mut(&mut self, first: usize, n: usize) -> Option<&mut [u8]> {
        let _ = (first, n);
        None
    }
}

/// How the engines may keep guest mappings, a property of the backend
/// ([`Hypervisor::mapping_hints`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingHints {
    /// A mapping keeps showing what the guest has at each frame even after
    /// the guest changes its p2m (xensim maps file offsets). False on Xen:
    /// a foreign mapping holds the page it was made of, so a page the guest
    /// gave back and got anew (ballooning) would read stale; mappings are
    /// then only kept while the guest cannot run in between.
    pub follows_p2m: bool,
    /// Most guest frames the engines may keep mapped beyond one batch.
    pub max_cached_pages: usize,
}

impl Default for MappingHints {
    /// Conservative: mappings do not follow the p2m, and at most 256 MiB of
    /// guest memory stays mapped (a PVH dom0 backs foreign mappings with
    /// its own ballooned-out memory).
    fn default() -> Self {
        MappingHints {
            follows_p2m: false,
            max_cached_pages: 64 * 1024,
        }
    }
}

/// Order of a 2 MiB extent (`SUPERPAGE_2MB_SHIFT`): 512 frames.
pub const ORDER_2M: u32 = 9;

/// Everything the save and restore engines ask of Xen.
///
/// Errors carry the errno Xen (or the library) reported, so that the C
/// layer can hand it back through `errno`.
pub trait Hypervisor {
    /// A read-only mapping of a batch of guest frames.
    type ReadMapping<'a>: MappedPages
    where
        Self: 'a;
    /// A read-write mapping of a batch of guest frames.
    type WriteMapping<'a>: MappedPagesMut
    where
        Self: 'a;

    /// `xc_version(XENVER_version)`: (major, minor), e.g. (4, 17).
    fn xen_version(&self) -> HvResult<(u16, u16)>;

    /// `xc_domain_getinfo(xch, domid, 1, ..)`: information about the first
    /// domain with an id of at least `domid` (check [`DomainInfo::domid`]).
    fn domain_info(&self, domid: DomId) -> HvResult<DomainInfo>;

    /// `xc_domain_nr_gpfns`: `XENMEM_maximum_gpfn` + 1, the p2m size the
    /// save loop and its dirty bitmap span.
    fn nr_gpfns(&self, domid: DomId) -> HvResult<u64>;

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

    /// `xc_logdirty_control(PEEK)`: like [`Hypervisor::logdirty_clean`]
    /// without clearing anything.
    fn logdirty_peek(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport>;

    /// `xc_get_pfn_type_batch`: replace each frame number in `frames` (at
    /// most [`MAX_BATCH`]) with its `XEN_DOMCTL_PFINFO_*` type ([`pfinfo`]);
    /// holes and invalid frames give XTAB, not an error.
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
    /// The default populates the frames of each extent with
    /// [`Hypervisor::populate_physmap`] (order 0).
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

    /// `xc_domain_hvm_getcontext`: the HVM context blob (size query, then
    /// fetch; the returned vector has the actual length).
    fn hvm_context(&self, domid: DomId) -> HvResult<Vec<u8>>;

    /// `xc_domain_hvm_setcontext`.
    fn set_hvm_context(&self, domid: DomId, blob: &[u8]) -> HvResult<()>;

    /// `xc_hvm_param_get`.
    fn hvm_param(&self, domid: DomId, index: u32) -> HvResult<u64>;

    /// `xc_hvm_param_set`.
    fn set_hvm_param(&self, domid: DomId, index: u32, value: u64) -> HvResult<()>;

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

    /// Write `entries` into the domain's grant table frame 0
    /// (`xenforeignmemory_map_resource` of the shared grant table, as
    /// `xc_dom_gnttab_seed` does, with its fallbacks). The table is mapped
    /// and unmapped even when `entries` is empty, like libxenguest.
    fn seed_grant_table(&self, domid: DomId, hvm: bool, entries: &[GrantEntry]) -> HvResult<()>;
}
