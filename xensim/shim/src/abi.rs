//! Byte layouts of the public Xen 4.17 structures the shim reads and writes,
//! with explicit little-endian field access at fixed offsets (x86-64).
//!
//! Offsets come from `/usr/include/xen/domctl.h`, `sysctl.h` and `xenctrl.h`;
//! `tests/c_layouts.rs` compiles a C probe against those headers and checks
//! every constant here.

/// `XEN_DOMCTL_INTERFACE_VERSION` and `XEN_SYSCTL_INTERFACE_VERSION` in 4.17.
pub const INTERFACE_VERSION: u32 = 0x15;
/// `__HYPERVISOR_sysctl`.
pub const HYPERVISOR_SYSCTL: u32 = 35;
/// `__HYPERVISOR_domctl`.
pub const HYPERVISOR_DOMCTL: u32 = 36;
/// `__HYPERVISOR_memory_op`.
pub const HYPERVISOR_MEMORY_OP: u32 = 12;
/// `__HYPERVISOR_xen_version`.
pub const HYPERVISOR_XEN_VERSION: u32 = 17;
/// `__HYPERVISOR_hvm_op`.
pub const HYPERVISOR_HVM_OP: u32 = 34;

/// `sizeof(struct xen_domctl)`.
pub const DOMCTL_SIZE: usize = 144;
/// `sizeof(struct xen_sysctl)`.
pub const SYSCTL_SIZE: usize = 136;
/// Offset of the union `u` in `struct xen_domctl`.
pub const DOMCTL_U: usize = 16;
/// Offset of the union `u` in `struct xen_sysctl`.
pub const SYSCTL_U: usize = 8;
/// Offset of `cmd` (u32) in `struct xen_domctl`.
pub const DOMCTL_CMD: usize = 0;
/// Offset of `interface_version` (u32) in `struct xen_domctl`.
pub const DOMCTL_INTERFACE_VERSION: usize = 4;
/// Offset of `domain` (u16) in `struct xen_domctl`.
pub const DOMCTL_DOMAIN: usize = 8;

/// Domctl sub-ops the simulated host implements.
pub mod domctl {
    /// `XEN_DOMCTL_destroydomain`.
    pub const DESTROYDOMAIN: u32 = 2;
    /// `XEN_DOMCTL_pausedomain`.
    pub const PAUSEDOMAIN: u32 = 3;
    /// `XEN_DOMCTL_unpausedomain`.
    pub const UNPAUSEDOMAIN: u32 = 4;
    /// `XEN_DOMCTL_getdomaininfo`.
    pub const GETDOMAININFO: u32 = 5;
    /// `XEN_DOMCTL_shadow_op`.
    pub const SHADOW_OP: u32 = 10;
    /// `XEN_DOMCTL_setvcpucontext`.
    pub const SETVCPUCONTEXT: u32 = 12;
    /// `XEN_DOMCTL_getvcpucontext`.
    pub const GETVCPUCONTEXT: u32 = 13;
    /// `XEN_DOMCTL_getvcpuinfo`.
    pub const GETVCPUINFO: u32 = 14;
    /// `XEN_DOMCTL_resumedomain`.
    pub const RESUMEDOMAIN: u32 = 27;
    /// `XEN_DOMCTL_gethvmcontext`.
    pub const GETHVMCONTEXT: u32 = 33;
    /// `XEN_DOMCTL_sethvmcontext`.
    pub const SETHVMCONTEXT: u32 = 34;
    /// `XEN_DOMCTL_set_address_size`.
    pub const SET_ADDRESS_SIZE: u32 = 35;
    /// `XEN_DOMCTL_get_address_size`.
    pub const GET_ADDRESS_SIZE: u32 = 36;
    /// `XEN_DOMCTL_set_ext_vcpucontext`.
    pub const SET_EXT_VCPUCONTEXT: u32 = 42;
    /// `XEN_DOMCTL_get_ext_vcpucontext`.
    pub const GET_EXT_VCPUCONTEXT: u32 = 43;
    /// `XEN_DOMCTL_gettscinfo`.
    pub const GETTSCINFO: u32 = 59;
    /// `XEN_DOMCTL_settscinfo`.
    pub const SETTSCINFO: u32 = 60;
    /// `XEN_DOMCTL_getpageframeinfo3`.
    pub const GETPAGEFRAMEINFO3: u32 = 61;
    /// `XEN_DOMCTL_setvcpuextstate`.
    pub const SETVCPUEXTSTATE: u32 = 62;
    /// `XEN_DOMCTL_getvcpuextstate`.
    pub const GETVCPUEXTSTATE: u32 = 63;
    /// `XEN_DOMCTL_get_vcpu_msrs`.
    pub const GET_VCPU_MSRS: u32 = 72;
    /// `XEN_DOMCTL_set_vcpu_msrs`.
    pub const SET_VCPU_MSRS: u32 = 73;
    /// `XEN_DOMCTL_get_cpu_policy`.
    pub const GET_CPU_POLICY: u32 = 82;
    /// `XEN_DOMCTL_set_cpu_policy`.
    pub const SET_CPU_POLICY: u32 = 83;
    /// `XEN_DOMCTL_scheduler_op`.
    pub const SCHEDULER_OP: u32 = 16;
}

/// `XEN_SYSCTL_get_cpu_policy`.
pub const SYSCTL_GET_CPU_POLICY: u32 = 29;
/// `XEN_SYSCTL_sched_id`: `u.sched_id.sched_id` (u32 at 0) is written.
pub const SYSCTL_SCHED_ID: u32 = 4;

/// `struct xen_domctl_scheduler_op` (the union is 8-aligned: it holds a
/// 64-bit guest handle).
pub mod scheduler_op {
    /// `uint32_t sched_id` (`XEN_SCHEDULER_*`).
    pub const SCHED_ID: usize = 0;
    /// `uint32_t cmd` (`XEN_DOMCTL_SCHEDOP_*`).
    pub const CMD: usize = 4;
    /// `u.credit.weight` / `u.credit2.weight` (u16).
    pub const WEIGHT: usize = 8;
    /// `u.credit.cap` / `u.credit2.cap` (u16).
    pub const CAP: usize = 10;
    /// `XEN_DOMCTL_SCHEDOP_putinfo`.
    pub const PUTINFO: u32 = 0;
    /// `XEN_DOMCTL_SCHEDOP_getinfo`.
    pub const GETINFO: u32 = 1;
    /// `sizeof(struct xen_domctl_sched_credit{,2})`: two u16.
    pub const CREDIT_SIZE: usize = 4;
}
/// Number of system policies (`XEN_SYSCTL_cpu_policy_*`, 0..=5).
pub const SYSCTL_CPU_POLICY_COUNT: u32 = 6;

/// `XEN_DOMCTL_SHADOW_OP_OFF`.
pub const SHADOW_OP_OFF: u32 = 0;
/// `XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY`.
pub const SHADOW_OP_ENABLE_LOGDIRTY: u32 = 2;
/// `XEN_DOMCTL_SHADOW_OP_CLEAN`.
pub const SHADOW_OP_CLEAN: u32 = 11;
/// `XEN_DOMCTL_SHADOW_OP_PEEK`.
pub const SHADOW_OP_PEEK: u32 = 12;
/// `XEN_DOMCTL_SHADOW_OP_GET_ALLOCATION`.
pub const SHADOW_OP_GET_ALLOCATION: u32 = 30;
/// `XEN_DOMCTL_SHADOW_OP_SET_ALLOCATION`.
pub const SHADOW_OP_SET_ALLOCATION: u32 = 31;
/// `XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL`.
pub const SHADOW_LOGDIRTY_FINAL: u32 = 1;

/// `struct xen_domctl_shadow_op` field offsets (within `u`).
pub mod shadow_op {
    /// `op` (u32).
    pub const OP: usize = 0;
    /// `mode` (u32).
    pub const MODE: usize = 4;
    /// `mb` (u32).
    pub const MB: usize = 8;
    /// `dirty_bitmap` (guest handle).
    pub const DIRTY_BITMAP: usize = 16;
    /// `pages` (u64).
    pub const PAGES: usize = 24;
    /// `stats.fault_count` (u32).
    pub const FAULT_COUNT: usize = 32;
    /// `stats.dirty_count` (u32).
    pub const DIRTY_COUNT: usize = 36;
}

/// `struct xen_domctl_cpu_policy` field offsets (within `u`).
pub mod domctl_cpu_policy {
    /// `nr_leaves` (u32).
    pub const NR_LEAVES: usize = 0;
    /// `nr_msrs` (u32).
    pub const NR_MSRS: usize = 4;
    /// `leaves` (guest handle).
    pub const LEAVES: usize = 8;
    /// `msrs` (guest handle).
    pub const MSRS: usize = 16;
    /// `err_leaf` (u32).
    pub const ERR_LEAF: usize = 24;
    /// `err_subleaf` (u32).
    pub const ERR_SUBLEAF: usize = 28;
    /// `err_msr` (u32).
    pub const ERR_MSR: usize = 32;
}

/// `struct xen_sysctl_cpu_policy` field offsets (within `u`).
pub mod sysctl_cpu_policy {
    /// `index` (u32).
    pub const INDEX: usize = 0;
    /// `nr_leaves` (u32).
    pub const NR_LEAVES: usize = 4;
    /// `nr_msrs` (u32).
    pub const NR_MSRS: usize = 8;
    /// `_rsvd` (u32).
    pub const RSVD: usize = 12;
    /// `leaves` (guest handle).
    pub const LEAVES: usize = 16;
    /// `msrs` (guest handle).
    pub const MSRS: usize = 24;
}

/// `struct xen_domctl_tsc_info` field offsets (within `u`).
pub mod tsc_info {
    /// `tsc_mode` (u32).
    pub const TSC_MODE: usize = 0;
    /// `gtsc_khz` (u32).
    pub const GTSC_KHZ: usize = 4;
    /// `incarnation` (u32).
    pub const INCARNATION: usize = 8;
    /// `elapsed_nsec` (u64).
    pub const ELAPSED_NSEC: usize = 16;
}

/// `struct xen_domctl_hvmcontext`: `size` (u32) at 0, `buffer` handle at 8.
pub mod hvmcontext {
    /// `size`.
    pub const SIZE: usize = 0;
    /// `buffer`.
    pub const BUFFER: usize = 8;
}

/// `struct xen_domctl_getpageframeinfo3`: `num` (u64) at 0, `array` at 8.
pub mod pfinfo3 {
    /// `num`.
    pub const NUM: usize = 0;
    /// `array`.
    pub const ARRAY: usize = 8;
}

/// `struct xen_domctl_getvcpuinfo` (= `xc_vcpuinfo_t`), 24 bytes.
pub mod vcpuinfo {
    /// `sizeof`.
    pub const SIZE: usize = 24;
    /// `vcpu` (u32, in).
    pub const VCPU: usize = 0;
    /// `online` (u8).
    pub const ONLINE: usize = 4;
    /// `blocked` (u8).
    pub const BLOCKED: usize = 5;
    /// `running` (u8).
    pub const RUNNING: usize = 6;
    /// `cpu_time` (u64, ns).
    pub const CPU_TIME: usize = 8;
    /// `cpu` (u32).
    pub const CPU: usize = 16;
}

/// `struct xen_domctl_vcpucontext`: `vcpu` (u32) at 0, `ctxt` handle at 8.
pub mod vcpucontext {
    /// `vcpu`.
    pub const VCPU: usize = 0;
    /// `ctxt`.
    pub const CTXT: usize = 8;
}

/// `sizeof(vcpu_guest_context_x86_64_t)`, the basic context of a 64-bit PV vCPU.
pub const VCPU_CONTEXT_X86_64_SIZE: usize = 5168;
/// `sizeof(vcpu_guest_context_x86_32_t)`, the basic context of a 32-bit PV vCPU.
pub const VCPU_CONTEXT_X86_32_SIZE: usize = 2800;
/// `sizeof(vcpu_guest_context_any_t)`, what `xc_vcpu_getcontext` bounces.
pub const VCPU_CONTEXT_ANY_SIZE: usize = 5168;

/// `struct xen_domctl_ext_vcpucontext`: `vcpu` and `size` (u32s) then the
/// x86 fields, 64 bytes in all.
pub mod ext_vcpucontext {
    /// `sizeof`.
    pub const SIZE: usize = 64;
    /// `vcpu`.
    pub const VCPU: usize = 0;
    /// `size` (u32): in on set, out on get.
    pub const SIZE_FIELD: usize = 4;
    /// `mcg_cap`, the first field a set may leave out (older senders).
    pub const MCG_CAP: usize = 32;
}

/// `struct xen_domctl_vcpuextstate`.
pub mod vcpuextstate {
    /// `vcpu` (u32).
    pub const VCPU: usize = 0;
    /// `xfeature_mask` (u64).
    pub const XFEATURE_MASK: usize = 8;
    /// `size` (u64).
    pub const SIZE: usize = 16;
    /// `buffer` (guest handle).
    pub const BUFFER: usize = 24;
}

/// `struct xen_domctl_vcpu_msrs`.
pub mod vcpu_msrs {
    /// `vcpu` (u32).
    pub const VCPU: usize = 0;
    /// `msr_count` (u32).
    pub const MSR_COUNT: usize = 4;
    /// `msrs` (guest handle).
    pub const MSRS: usize = 8;
    /// `sizeof(xen_domctl_vcpu_msr_t)`: `{u32 index, u32 reserved, u64 value}`.
    pub const ENTRY_SIZE: usize = 16;
}

/// `struct mmuext_op`: `cmd` (u32) at 0, `arg1` at 8, `arg2` at 16.
pub mod mmuext {
    /// `sizeof(struct mmuext_op)`.
    pub const SIZE: usize = 24;
    /// `cmd`.
    pub const CMD: usize = 0;
    /// `arg1` (`mfn` or `linear_addr`).
    pub const ARG1: usize = 8;
    /// `arg2` (`nr_ents`, `vcpumask` or `src_mfn`).
    pub const ARG2: usize = 16;
    /// `MMUEXT_PIN_L1_TABLE`; L2..L4 follow at 1..3.
    pub const PIN_L1_TABLE: u32 = 0;
    /// `MMUEXT_PIN_L4_TABLE`.
    pub const PIN_L4_TABLE: u32 = 3;
    /// `MMUEXT_UNPIN_TABLE`.
    pub const UNPIN_TABLE: u32 = 4;
}

/// `struct xen_machphys_mfn_list`.
pub mod machphys_mfn_list {
    /// `sizeof`.
    pub const SIZE: usize = 24;
    /// `max_extents` (unsigned int).
    pub const MAX_EXTENTS: usize = 0;
    /// `extent_start` (guest handle).
    pub const EXTENT_START: usize = 8;
    /// `nr_extents` (unsigned int, out).
    pub const NR_EXTENTS: usize = 16;
}

/// `DOMID_XEN`: the owner of Xen's own frames (the M2P).
pub const DOMID_XEN: u32 = 0x7ff2;

/// `sizeof(xen_cpuid_leaf_t)`.
pub const CPUID_LEAF_SIZE: usize = 24;
/// `sizeof(xen_msr_entry_t)`.
pub const MSR_ENTRY_SIZE: usize = 16;

/// `struct xen_domctl_getdomaininfo` (= `xc_domaininfo_t`), 112 bytes.
pub mod domaininfo {
    /// Size.
    pub const SIZE: usize = 112;
    /// `domain` (u16).
    pub const DOMAIN: usize = 0;
    /// `flags` (u32).
    pub const FLAGS: usize = 4;
    /// `tot_pages` (u64).
    pub const TOT_PAGES: usize = 8;
    /// `max_pages` (u64).
    pub const MAX_PAGES: usize = 16;
    /// `outstanding_pages` (u64).
    pub const OUTSTANDING_PAGES: usize = 24;
    /// `shr_pages` (u64).
    pub const SHR_PAGES: usize = 32;
    /// `paged_pages` (u64).
    pub const PAGED_PAGES: usize = 40;
    /// `shared_info_frame` (u64).
    pub const SHARED_INFO_FRAME: usize = 48;
    /// `cpu_time` (u64).
    pub const CPU_TIME: usize = 56;
    /// `nr_online_vcpus` (u32).
    pub const NR_ONLINE_VCPUS: usize = 64;
    /// `max_vcpu_id` (u32).
    pub const MAX_VCPU_ID: usize = 68;
    /// `ssidref` (u32).
    pub const SSIDREF: usize = 72;
    /// `handle` (16 bytes).
    pub const HANDLE: usize = 76;
    /// `cpupool` (u32).
    pub const CPUPOOL: usize = 92;
    /// `gpaddr_bits` (u8).
    pub const GPADDR_BITS: usize = 96;
    /// `arch_config` (8 bytes).
    pub const ARCH_CONFIG: usize = 104;
}

/// `XEN_DOMINF_*` flag bits of `xen_domctl_getdomaininfo.flags`.
pub mod dominf {
    /// Domain is being destroyed.
    pub const DYING: u32 = 1 << 0;
    /// HVM (or PVH) guest.
    pub const HVM_GUEST: u32 = 1 << 1;
    /// Shut down; the reason is in bits 16..24.
    pub const SHUTDOWN: u32 = 1 << 2;
    /// Paused by the controller.
    pub const PAUSED: u32 = 1 << 3;
    /// Blocked.
    pub const BLOCKED: u32 = 1 << 4;
    /// Running.
    pub const RUNNING: u32 = 1 << 5;
    /// Being debugged.
    pub const DEBUGGED: u32 = 1 << 6;
    /// Xenstore domain.
    pub const XS_DOMAIN: u32 = 1 << 7;
    /// Uses hardware-assisted paging.
    pub const HAP: u32 = 1 << 8;
    /// Shift of the shutdown reason.
    pub const SHUTDOWN_SHIFT: u32 = 16;
}

/// `xc_dominfo_t` (xenctrl.h), 112 bytes; the one-bit flags share the word
/// at offset 8 in declaration order.
pub mod dominfo {
    /// Size.
    pub const SIZE: usize = 112;
    /// `domid` (u32).
    pub const DOMID: usize = 0;
    /// `ssidref` (u32).
    pub const SSIDREF: usize = 4;
    /// The bitfield word.
    pub const FLAGS: usize = 8;
    /// `shutdown_reason` (u32).
    pub const SHUTDOWN_REASON: usize = 12;
    /// `nr_pages` (unsigned long).
    pub const NR_PAGES: usize = 16;
    /// `nr_outstanding_pages`.
    pub const NR_OUTSTANDING_PAGES: usize = 24;
    /// `nr_shared_pages`.
    pub const NR_SHARED_PAGES: usize = 32;
    /// `nr_paged_pages`.
    pub const NR_PAGED_PAGES: usize = 40;
    /// `shared_info_frame`.
    pub const SHARED_INFO_FRAME: usize = 48;
    /// `cpu_time` (u64).
    pub const CPU_TIME: usize = 56;
    /// `max_memkb`.
    pub const MAX_MEMKB: usize = 64;
    /// `nr_online_vcpus` (u32).
    pub const NR_ONLINE_VCPUS: usize = 72;
    /// `max_vcpu_id` (u32).
    pub const MAX_VCPU_ID: usize = 76;
    /// `handle` (16 bytes).
    pub const HANDLE: usize = 80;
    /// `cpupool` (u32).
    pub const CPUPOOL: usize = 96;
    /// `gpaddr_bits` (u8).
    pub const GPADDR_BITS: usize = 100;
    /// `arch_config` (8 bytes).
    pub const ARCH_CONFIG: usize = 104;
    /// Bit positions in the word at [`FLAGS`].
    pub const BIT_DYING: u32 = 0;
    /// `crashed`.
    pub const BIT_CRASHED: u32 = 1;
    /// `shutdown`.
    pub const BIT_SHUTDOWN: u32 = 2;
    /// `paused`.
    pub const BIT_PAUSED: u32 = 3;
    /// `blocked`.
    pub const BIT_BLOCKED: u32 = 4;
    /// `running`.
    pub const BIT_RUNNING: u32 = 5;
    /// `hvm`.
    pub const BIT_HVM: u32 = 6;
    /// `debugged`.
    pub const BIT_DEBUGGED: u32 = 7;
    /// `xenstore`.
    pub const BIT_XENSTORE: u32 = 8;
    /// `hap`.
    pub const BIT_HAP: u32 = 9;
}

/// Reads a little-endian u16 at `off`.
pub fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Reads a little-endian u32 at `off`.
pub fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian u64 at `off`.
pub fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Writes a little-endian u16 at `off`.
pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u32 at `off`.
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u64 at `off`.
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// A `struct xen_domctl` the shim issues on its own behalf (libxenctrl's
/// `DECLARE_DOMCTL` and the assignments after it): [`Domctl::new`] writes the
/// header, the other methods read and write the union `u` at offsets relative
/// to [`DOMCTL_U`] (the `shadow_op::*`-style constants).
#[derive(Clone)]
pub struct Domctl {
    bytes: [u8; DOMCTL_SIZE],
}

impl Domctl {
    /// A zeroed domctl `cmd` for domain `domid` at this interface version.
    /// `domid` is libxenctrl's `uint32_t`, cut to the 16-bit `domid_t` as C
    /// does.
    pub fn new(cmd: u32, domid: u32) -> Domctl {
        let mut bytes = [0u8; DOMCTL_SIZE];
        put_u32(&mut bytes, DOMCTL_CMD, cmd);
        put_u32(&mut bytes, DOMCTL_INTERFACE_VERSION, INTERFACE_VERSION);
        put_u16(&mut bytes, DOMCTL_DOMAIN, domid as u16);
        Domctl { bytes }
    }

    /// Sets the u32 at `off` in `u`.
    pub fn with_u32(mut self, off: usize, v: u32) -> Domctl {
        self.set_u32(off, v);
        self
    }

    /// Sets the u64 at `off` in `u`.
    pub fn with_u64(mut self, off: usize, v: u64) -> Domctl {
        put_u64(&mut self.bytes, DOMCTL_U + off, v);
        self
    }

    /// Writes the u32 at `off` in `u`.
    pub fn set_u32(&mut self, off: usize, v: u32) {
        put_u32(&mut self.bytes, DOMCTL_U + off, v);
    }

    /// Reads the u32 at `off` in `u`.
    pub fn u32_at(&self, off: usize) -> u32 {
        get_u32(&self.bytes, DOMCTL_U + off)
    }

    /// Reads the u64 at `off` in `u`.
    pub fn u64_at(&self, off: usize) -> u64 {
        get_u64(&self.bytes, DOMCTL_U + off)
    }

    /// The union `u` (what the sub-op wrote back).
    pub fn u(&self) -> &[u8] {
        &self.bytes[DOMCTL_U..]
    }

    /// The whole structure, for the hypercall that executes it.
    pub fn bytes_mut(&mut self) -> &mut [u8; DOMCTL_SIZE] {
        &mut self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_access_is_little_endian_at_offset() {
        let mut b = [0u8; 16];
        put_u32(&mut b, 4, 0x0102_0304);
        assert_eq!(&b[4..8], &[4, 3, 2, 1]);
        assert_eq!(get_u32(&b, 4), 0x0102_0304);
        put_u64(&mut b, 8, u64::MAX - 1);
        assert_eq!(get_u64(&b, 8), u64::MAX - 1);
        put_u16(&mut b, 0, 0xbeef);
        assert_eq!(get_u16(&b, 0), 0xbeef);
    }

    #[test]
    fn domctl_new_writes_the_header_and_u_is_relative() {
        let mut d = Domctl::new(domctl::SHADOW_OP, 0x1_0007)
            .with_u32(shadow_op::OP, SHADOW_OP_CLEAN)
            .with_u64(shadow_op::PAGES, 0x1234);
        let b = *d.bytes_mut();
        assert_eq!(get_u32(&b, DOMCTL_CMD), domctl::SHADOW_OP);
        assert_eq!(get_u32(&b, DOMCTL_INTERFACE_VERSION), INTERFACE_VERSION);
        assert_eq!(get_u16(&b, DOMCTL_DOMAIN), 7, "domid_t is 16 bits");
        assert_eq!(get_u32(&b, DOMCTL_U + shadow_op::OP), SHADOW_OP_CLEAN);
        assert_eq!(d.u64_at(shadow_op::PAGES), 0x1234);
        assert_eq!(d.u()[shadow_op::PAGES], 0x34);
        d.set_u32(shadow_op::MB, 9);
        assert_eq!(d.u32_at(shadow_op::MB), 9);
    }
}
