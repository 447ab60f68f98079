//! What the save and restore engines need from Xen, and nothing more.
//!
//! The seam between the engines (`save`, `restore`) and the host is a set
//! of role traits ([`DomainCtl`], [`GuestMemory`], [`LogDirty`],
//! [`GrantTable`], [`X86Cpu`], [`X86Hvm`], in `roles`) summed up as
//! [`Hypervisor`]. `hv::xen` implements them over libxenctrl and
//! libxenforeignmemory with the caller's `xc_interface *`; `sim`
//! implements them in-process over the simulated host `xensim` (for the
//! library's own tests, and for code outside it with the `sim` cargo
//! feature). Guest mappings, and the only code that touches guest memory
//! through raw pointers, are in [`pages`].
//!
//! Frame numbers are `u64` throughout (`xen_pfn_t` on x86-64). For HVM/PVH
//! guests a "gfn" is the guest frame number; PV (later) uses machine frames
//! for mapping and type queries, hence the neutral name "frame" in the
//! methods that take either.

mod error;
pub mod pages;
mod roles;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(feature = "xen")]
pub mod xen;

pub use error::{HvError, HvResult};
// Xen's x86 values are defined once, in the codec crate's leaf module.
pub use crate::x86::{pfinfo, CpuidLeaf, MsrEntry, TscInfo, PAGE_SHIFT, PAGE_SIZE};
pub use pages::{GuestBytes, MappedPages, MappedPagesMut, MappingHints};
pub use roles::{
    CpuScheduler, DomainCtl, GrantTable, GuestMemory, Hypervisor, LogDirty, M2pTable, X86Cpu,
    X86Hvm, X86Pv,
};

/// A CPU scheduler, by its `XEN_SCHEDULER_*` id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// `XEN_SCHEDULER_CREDIT` (5).
    Credit,
    /// `XEN_SCHEDULER_CREDIT2` (6), Xen 4.17's default.
    Credit2,
    /// Another scheduler (RTDS, ARINC653, null): no per-domain cap.
    Other(u32),
}

impl SchedulerKind {
    /// The scheduler with `XEN_SCHEDULER_*` id `id`.
    pub fn from_id(id: u32) -> SchedulerKind {
        match id {
            5 => SchedulerKind::Credit,
            6 => SchedulerKind::Credit2,
            other => SchedulerKind::Other(other),
        }
    }

    /// Its `XEN_SCHEDULER_*` id.
    pub fn id(self) -> u32 {
        match self {
            SchedulerKind::Credit => 5,
            SchedulerKind::Credit2 => 6,
            SchedulerKind::Other(id) => id,
        }
    }

    /// Whether it takes a per-domain cap (credit and credit2 do).
    pub fn has_cap(self) -> bool {
        matches!(self, SchedulerKind::Credit | SchedulerKind::Credit2)
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchedulerKind::Credit => f.write_str("credit"),
            SchedulerKind::Credit2 => f.write_str("credit2"),
            SchedulerKind::Other(id) => write!(f, "scheduler {id}"),
        }
    }
}

/// A domain's credit/credit2 parameters (`struct
/// xen_domctl_sched_credit{,2}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedCredit {
    /// Relative weight.
    pub weight: u16,
    /// Cap in percent of one physical CPU; 0 is no cap.
    pub cap: u16,
}

/// A domain id (`domid_t`, widened as libxenguest's `uint32_t dom`).
pub type DomId = u32;

/// Most frames Xen accepts in one `XEN_DOMCTL_getpageframeinfo3` call, and
/// the batch size libxenguest uses for PAGE_DATA records.
pub const MAX_BATCH: usize = 1024;

/// `SHUTDOWN_suspend`: the shutdown code of a domain that suspended itself.
pub const SHUTDOWN_SUSPEND: u32 = 2;

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

/// Order of a 2 MiB extent (`SUPERPAGE_2MB_SHIFT`): 512 frames.
pub const ORDER_2M: u32 = 9;

/// How far `MMUEXT_PIN_L<level>_TABLE` is from `MMUEXT_PIN_L1_TABLE` (the
/// four pin commands follow each other), for a pin of the table at `mfn`
/// in [`X86Pv::pin_page_tables`]; EINVAL, as `op`'s error, for a level
/// outside 1..=4.
pub(crate) fn pin_cmd_offset(op: &'static str, level: u8, mfn: u64) -> HvResult<u32> {
    if !(1..=4).contains(&level) {
        return Err(HvError::with_detail(
            op,
            libc::EINVAL,
            format!("pin of level {level} at mfn {mfn:#x}"),
        ));
    }
    Ok(u32::from(level - 1))
}
