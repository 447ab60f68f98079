//! xensim: a simulated Xen 4.17 host that lives in a directory.
//!
//! Several processes (a saving toolstack, a restoring one, a guest workload,
//! a checker) open the same host directory and see one consistent set of
//! domains, the way dom0 processes share one hypervisor. `xensim/README.md` is
//! the contract (host layout, semantics, digest, cost model); this crate is
//! its Rust API, used by the libxenctrl-compatible shim (`xensim/shim`), by
//! xcmig's in-process backend, and by the `xensim` command.
//!
//! Entry points:
//! * [`Host`] — open a host directory ([`Host::open`], [`Host::from_env`]),
//!   create/destroy/list domains, look domains up with Xen's
//!   getdomaininfo semantics, and check injected faults ([`Host::fault_point`]).
//! * [`Domain`] — one domain: lifecycle (pause, shutdown, resume), memory
//!   (populate, page types, frame offsets, foreign mappings), log-dirty, HVM
//!   context and params, TSC info, CPU policy, grant frame, digest.
//! * [`ForeignMapping`] — a real `mmap` of guest frames, one mapping call per
//!   contiguous run, as privcmd does.
//!
//! Values (`XEN_DOMCTL_PFINFO_*`, `HVM_PARAM_*`, `SHUTDOWN_*`) are Xen's, so the
//! shim passes them through unchanged.

mod cpupolicy;
mod digest;
mod digest_pv;
mod domain;
mod error;
mod faults;
mod foreign;
mod host;
mod hvmctx;
mod layout;
mod machine;
mod params;
mod pvcpu;
mod pvguest;
mod pvsuspend;
pub mod realistic;
mod sched;
mod shm;
pub mod workload;

#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod pv_tests;
#[cfg(test)]
mod realistic_tests;
#[cfg(test)]
mod testutil;

pub use cpupolicy::{
    CpuPolicy, CpuidLeaf, MsrEntry, CPUID_MAX_LEAVES, CPUID_NO_SUBLEAF, MSR_MAX_ENTRIES,
};
pub use digest::DigestReport;
pub use domain::{
    DirtyStats, Domain, DomainInfo, LogDirtyOp, MmuextOp, TscInfo, EXT_VCPU_CONTEXT_SIZE,
    MMUEXT_FLUSH_CACHE, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL,
    MMUEXT_UNPIN_TABLE, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD,
};
pub use error::{errno_name, parse_errno, Error, Result};
pub use faults::{FaultMode, FaultRule};
pub use foreign::{live_mappings, release_raw, ForeignMapping, Prot};
pub use host::{Host, ENV_FAULTS, ENV_FAULT_TRACE, ENV_HOST};
pub use hvmctx::{HvmRecord, HVM_FILE_MAGIC, HVM_FILE_VERSION};
pub use layout::{MemoryLayout, SPECIAL_PFN_BASE};
pub use machine::{
    COMPAT_M2P_MFN0, INVALID_M2P_ENTRY, M2P_CHUNK_BYTES, M2P_MFN0, XENHEAP_MFN0, XEN_L3_MFN0,
};
pub use params::*;
pub use sched::{
    apply_putinfo, SchedEvent, SchedParams, Scheduler, DEFAULT_WEIGHT, XEN_SCHEDULER_CREDIT,
    XEN_SCHEDULER_CREDIT2,
};

/// A domain id (`domid_t` widened; valid ids are below [`DOMID_FIRST_RESERVED`]).
pub type DomId = u32;

/// First reserved domain id (DOMID_FIRST_RESERVED); domains get ids below it.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;

/// Page size of the simulated host.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Guest frames a domain can address: gfns (HVM/PVH) or frame indices (PV)
/// lie in `0..GFN_LIMIT` (64 GiB of guest-physical space). Memory and bitmap
/// files are sized for it and stay sparse.
pub const GFN_LIMIT: u64 = 1 << 24;

/// Most entries `getpageframeinfo3` accepts per call (Xen: 1024, else E2BIG).
pub const MAX_PFINFO_BATCH: usize = 1024;

/// Most vCPUs a simulated domain may have.
pub const MAX_VCPUS: u32 = 128;

/// Xen version reported by `XENVER_version`: 4.17.
pub const XEN_VERSION: u32 = 0x0004_0011;

/// `XEN_DOMCTL_PFINFO_NOTAB`: ordinary RAM.
pub const PFINFO_NOTAB: u64 = 0;
/// `XEN_DOMCTL_PFINFO_L1TAB`.
pub const PFINFO_L1TAB: u64 = 1 << 28;
/// `XEN_DOMCTL_PFINFO_L2TAB`.
pub const PFINFO_L2TAB: u64 = 2 << 28;
/// `XEN_DOMCTL_PFINFO_L3TAB`.
pub const PFINFO_L3TAB: u64 = 3 << 28;
/// `XEN_DOMCTL_PFINFO_L4TAB`.
pub const PFINFO_L4TAB: u64 = 4 << 28;
/// `XEN_DOMCTL_PFINFO_LPINTAB`: pinned page table (ORed with L1..L4).
pub const PFINFO_LPINTAB: u64 = 1 << 31;
/// `XEN_DOMCTL_PFINFO_XTAB`: no page (hole, invalid, or special/xenheap).
pub const PFINFO_XTAB: u64 = 0xf << 28;
/// `XEN_DOMCTL_PFINFO_BROKEN`.
pub const PFINFO_BROKEN: u64 = 0xd << 28;
/// `XEN_DOMCTL_PFINFO_LTAB_MASK`: the type bits of a pfinfo entry.
pub const PFINFO_LTAB_MASK: u64 = 0xf << 28;
/// `INVALID_MFN` as libxenguest passes it in type queries.
pub const INVALID_FRAME: u64 = u64::MAX;

/// `SHUTDOWN_poweroff`.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_reboot`.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// `SHUTDOWN_suspend`: what a toolstack requests before the last save pass.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash`.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `SHUTDOWN_watchdog`.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// `SHUTDOWN_soft_reset`; the largest valid reason (`SHUTDOWN_MAX`).
pub const SHUTDOWN_SOFT_RESET: u32 = 5;

/// Kind of guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestType {
    /// Fully virtualised guest with emulated platform devices.
    Hvm,
    /// HVM container without emulated platform devices (PVH).
    Pvh,
    /// Paravirtualised guest: machine frames, its own p2m and page tables.
    Pv,
}

impl GuestType {
    /// Name used on the command line and in `config` files.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Hvm => "hvm",
            GuestType::Pvh => "pvh",
            GuestType::Pv => "pv",
        }
    }

    /// Parse "hvm" / "pvh" / "pv".
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hvm" => Some(GuestType::Hvm),
            "pvh" => Some(GuestType::Pvh),
            "pv" => Some(GuestType::Pv),
            _ => None,
        }
    }

    /// True for guests Xen calls HVM (`XEN_DOMINF_hvm_guest`): HVM and PVH.
    pub fn is_hvm(self) -> bool {
        !matches!(self, GuestType::Pv)
    }
}

/// How a new guest's RAM is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Every RAM page random (deterministic by seed and gfn).
    Random,
    /// Every RAM page zero (populated, nothing written).
    Zero,
    /// About half the pages zero, half random, chosen by seed and gfn.
    Mixed,
    /// Like a running guest's memory: zero pages, page-cache text and
    /// binaries, structured heap and incompressible data, in runs of one
    /// kind, deterministic by seed and gfn ([`realistic`]).
    Realistic,
}

impl Fill {
    /// Parse "random" / "zero" / "mixed" / "realistic".
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "random" => Some(Fill::Random),
            "zero" => Some(Fill::Zero),
            "mixed" => Some(Fill::Mixed),
            "realistic" => Some(Fill::Realistic),
            _ => None,
        }
    }

    /// Name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Fill::Random => "random",
            Fill::Zero => "zero",
            Fill::Mixed => "mixed",
            Fill::Realistic => "realistic",
        }
    }
}

/// What `xensim domain create` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    /// HVM, PVH or PV.
    pub guest_type: GuestType,
    /// Guest RAM in bytes (a multiple of 4096, at least 1 MiB).
    pub memory_bytes: u64,
    /// Number of vCPUs, 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
    /// How RAM is filled (ignored for `empty`).
    pub fill: Fill,
    /// Seed for contents, registers and TSC values.
    pub seed: u64,
    /// Create the unpopulated, paused restore target a toolstack makes before
    /// `xc_domain_restore`: vCPUs allocated (down), no memory, params zero.
    pub empty: bool,
    /// PV guest width in bits: 64 or 32 (an `empty` PV domain is always
    /// created 64-bit, as libxl does; restore switches it).
    pub address_size: u32,
    /// PV: how the guest exposes its p2m to the toolstack.
    pub p2m_layout: P2mLayout,
}

/// How a PV guest publishes its p2m in shared_info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum P2mLayout {
    /// The virtually mapped list (`p2m_cr3`, `p2m_vaddr`, `p2m_generation`),
    /// as modern Linux guests have it.
    Linear,
    /// The 3-level frame-list tree (`pfn_to_mfn_frame_list_list`).
    Tree,
}

impl P2mLayout {
    /// Parse "linear" / "tree".
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "linear" => Some(P2mLayout::Linear),
            "tree" => Some(P2mLayout::Tree),
            _ => None,
        }
    }

    /// Name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            P2mLayout::Linear => "linear",
            P2mLayout::Tree => "tree",
        }
    }
}

impl Default for DomainConfig {
    fn default() -> Self {
        DomainConfig {
            guest_type: GuestType::Hvm,
            memory_bytes: 256 << 20,
            vcpus: 1,
            fill: Fill::Mixed,
            seed: 0,
            empty: false,
            address_size: 64,
            p2m_layout: P2mLayout::Linear,
        }
    }
}

/// Parse a size: plain bytes ("4096"), or with a K/M/G/T suffix (binary
/// units, optional trailing "B"/"iB"): "256M", "1G", "4096K".
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix("ib"))
        .or_else(|| t.strip_suffix('B'))
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 10),
        'm' | 'M' => (&t[..t.len() - 1], 20),
        'g' | 'G' => (&t[..t.len() - 1], 30),
        't' | 'T' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num.trim().parse().ok()?;
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_accepts_suffixes_and_bytes() {
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096K"), Some(4096 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("99999999999T"), None);
    }
}
