//! Raw hypercall structures (`struct xen_domctl`, `struct xen_sysctl`,
//! `xen_memory_reservation`) decoded at explicit offsets and executed on the
//! simulated host. Used by `xencall1` (the inline `do_domctl`/`do_sysctl` of
//! libxenguest), `xc_domctl`, `xc_sysctl` and `xc_memory_op`.

use xensim::{CpuPolicy, DomId, Domain, Host, LogDirtyOp, TscInfo};

use crate::abi::*;
use crate::error::{ShimError, ShimResult};
use crate::ffi;
use crate::pv;

/// `XENMEM_populate_physmap`.
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// `XENMEM_maximum_gpfn`.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// `sizeof(struct xen_memory_reservation)`.
pub const MEMORY_RESERVATION_SIZE: usize = 32;

/// Most entries `getpageframeinfo3` accepts per call.
const MAX_PFINFO: u64 = xensim::MAX_PFINFO_BATCH as u64;

/// Executes the domctl in `d` (144 bytes, updated in place as Xen would).
/// The return value is the hypercall's non-negative result.
pub fn domctl(host: &Host, d: &mut [u8; DOMCTL_SIZE]) -> ShimResult<i64> {
    let cmd = get_u32(d, DOMCTL_CMD);
    let version = get_u32(d, DOMCTL_INTERFACE_VERSION);
    if version != INTERFACE_VERSION {
        return Err(ShimError::new(
            libc::EACCES,
            format!("domctl interface version {version:#x}, expected {INTERFACE_VERSION:#x}"),
        ));
    }
    let domid = DomId::from(get_u16(d, DOMCTL_DOMAIN));
    let u = &mut d[DOMCTL_U..];
    match cmd {
        domctl::GETDOMAININFO => {
            let found = host.first_domain_at_or_after(domid)?.ok_or_else(|| {
                ShimError::new(libc::ESRCH, format!("no domain at or after {domid}"))
            })?;
            let info = host.domain(found)?.info()?;
            fill_domaininfo(&mut u[..domaininfo::SIZE], &info);
            put_u16(d, DOMCTL_DOMAIN, found as u16);
            Ok(0)
        }
        domctl::PAUSEDOMAIN => host.domain(domid)?.pause().map(|_| 0).map_err(Into::into),
        domctl::UNPAUSEDOMAIN => host.domain(domid)?.unpause().map(|_| 0).map_err(Into::into),
        domctl::RESUMEDOMAIN => host.domain(domid)?.resume().map(|_| 0).map_err(Into::into),
        domctl::DESTROYDOMAIN => host.destroy_domain(domid).map(|_| 0).map_err(Into::into),
        domctl::SHADOW_OP => shadow_op(&host.domain(domid)?, u).map(|_| 0),
        domctl::SCHEDULER_OP => scheduler_op(host, domid, u).map(|_| 0),
        domctl::GETHVMCONTEXT => {
            let dom = host.domain(domid)?;
            let buf = get_u64(u, hvmcontext::BUFFER);
            let len = if buf == 0 {
                dom.hvm_context_size()?
            } else {
                let ctx = dom.hvm_context()?;
                let room = get_u32(u, hvmcontext::SIZE) as usize;
                if room < ctx.len() {
                    return Err(ShimError::new(
                        libc::ENOSPC,
                        format!("HVM context is {} bytes, buffer holds {room}", ctx.len()),
                    ));
                }
                // SAFETY: the caller's buffer holds `room` >= ctx.len() bytes.
                let out = unsafe { ffi::handle_bytes(buf, ctx.len(), "hvmcontext buffer") }?;
                out.copy_from_slice(&ctx);
                ctx.len()
            };
            put_u32(u, hvmcontext::SIZE, len as u32);
            Ok(0)
        }
        domctl::SETHVMCONTEXT => {
            let size = get_u32(u, hvmcontext::SIZE) as usize;
            let buf = get_u64(u, hvmcontext::BUFFER);
            // SAFETY: the caller's buffer holds `size` bytes.
            let blob = unsafe { ffi::handle_bytes(buf, size, "hvmcontext buffer") }?;
            host.domain(domid)?.set_hvm_context(blob)?;
            Ok(0)
        }
        domctl::GETVCPUCONTEXT => pv::get_vcpu_context(&host.domain(domid)?, u).map(|_| 0),
        domctl::SETVCPUCONTEXT => pv::set_vcpu_context(&host.domain(domid)?, u).map(|_| 0),
        domctl::GET_EXT_VCPUCONTEXT => pv::get_ext_vcpu_context(&host.domain(domid)?, u).map(|_| 0),
        domctl::SET_EXT_VCPUCONTEXT => pv::set_ext_vcpu_context(&host.domain(domid)?, u).map(|_| 0),
        domctl::GETVCPUEXTSTATE => pv::get_vcpu_xsave(&host.domain(domid)?, u).map(|_| 0),
        domctl::SETVCPUEXTSTATE => pv::set_vcpu_xsave(&host.domain(domid)?, u).map(|_| 0),
        domctl::GET_VCPU_MSRS => pv::get_vcpu_msrs(&host.domain(domid)?, u).map(|_| 0),
        domctl::SET_VCPU_MSRS => pv::set_vcpu_msrs(&host.domain(domid)?, u).map(|_| 0),
        domctl::GETVCPUINFO => pv::get_vcpu_info(&host.domain(domid)?, u).map(|_| 0),
        domctl::GET_ADDRESS_SIZE => pv::get_address_size(&host.domain(domid)?, u).map(|_| 0),
        domctl::SET_ADDRESS_SIZE => pv::set_address_size(&host.domain(domid)?, u).map(|_| 0),
        domctl::GETTSCINFO => {
            let t = host.domain(domid)?.tsc_info()?;
            put_u32(u, tsc_info::TSC_MODE, t.mode);
            put_u32(u, tsc_info::GTSC_KHZ, t.gtsc_khz);
            put_u32(u, tsc_info::INCARNATION, t.incarnation);
            put_u32(u, tsc_info::INCARNATION + 4, 0);
            put_u64(u, tsc_info::ELAPSED_NSEC, t.elapsed_nsec);
            Ok(0)
        }
        domctl::SETTSCINFO => {
            let t = TscInfo {
                mode: get_u32(u, tsc_info::TSC_MODE),
                gtsc_khz: get_u32(u, tsc_info::GTSC_KHZ),
                incarnation: get_u32(u, tsc_info::INCARNATION),
                elapsed_nsec: get_u64(u, tsc_info::ELAPSED_NSEC),
            };
            host.domain(domid)?.set_tsc_info(t)?;
            Ok(0)
        }
        domctl::GETPAGEFRAMEINFO3 => {
            let num = get_u64(u, pfinfo3::NUM);
            if num > MAX_PFINFO {
                return Err(ShimError::new(
                    libc::E2BIG,
                    format!("{num} entries (max {MAX_PFINFO})"),
                ));
            }
            let arr = get_u64(u, pfinfo3::ARRAY) as usize as *mut u64;
            // SAFETY: the caller's array holds `num` xen_pfn_t entries.
            let frames = unsafe { ffi::slice_mut(arr, num as usize, "pfinfo array") }?;
            host.domain(domid)?.page_types(frames)?;
            Ok(0)
        }
        domctl::GET_CPU_POLICY => {
            let policy = host.domain(domid)?.cpu_policy()?;
            copy_policy_out(
                &policy,
                u,
                domctl_cpu_policy::NR_LEAVES,
                domctl_cpu_policy::LEAVES,
                domctl_cpu_policy::NR_MSRS,
                domctl_cpu_policy::MSRS,
            )?;
            Ok(0)
        }
        domctl::SET_CPU_POLICY => {
            let nl = get_u32(u, domctl_cpu_policy::NR_LEAVES) as usize;
            let nm = get_u32(u, domctl_cpu_policy::NR_MSRS) as usize;
            let lp = get_u64(u, domctl_cpu_policy::LEAVES);
            let mp = get_u64(u, domctl_cpu_policy::MSRS);
            let leaves = if lp == 0 {
                &[][..]
            } else {
                // SAFETY: the caller's buffer holds nr_leaves entries.
                unsafe { ffi::handle_bytes(lp, nl * CPUID_LEAF_SIZE, "cpuid leaves") }?
            };
            let msrs = if mp == 0 {
                &[][..]
            } else {
                // SAFETY: the caller's buffer holds nr_msrs entries.
                unsafe { ffi::handle_bytes(mp, nm * MSR_ENTRY_SIZE, "msr entries") }?
            };
            let result = CpuPolicy::from_bytes(leaves, msrs)
                .map_err(ShimError::from)
                .and_then(|p| host.domain(domid)?.set_cpu_policy(&p).map_err(Into::into));
            if result.is_err() {
                // Xen reports "no specific culprit" as ~0 in the err_* fields.
                put_u32(u, domctl_cpu_policy::ERR_LEAF, u32::MAX);
                put_u32(u, domctl_cpu_policy::ERR_SUBLEAF, u32::MAX);
                put_u32(u, domctl_cpu_policy::ERR_MSR, u32::MAX);
            }
            result.map(|_| 0)
        }
        other => Err(ShimError::new(
            libc::ENOSYS,
            format!("domctl {other} is not simulated"),
        )),
    }
}

/// Executes a domctl the shim built itself and returns it with the
/// sub-op's outputs.
pub fn run_domctl(host: &Host, mut d: Domctl) -> ShimResult<Domctl> {
    domctl(host, d.bytes_mut())?;
    Ok(d)
}

/// Executes the domctl in the caller's buffer `s` (a `struct xen_domctl`,
/// [`DOMCTL_SIZE`] bytes): read once, executed, and copied back. Xen copies
/// the structure back for the sub-ops that have outputs also when they fail
/// (e.g. set_cpu_policy's err_* fields), so the copy-back is unconditional.
pub fn domctl_in_place(host: &Host, s: &mut [u8]) -> ShimResult<i64> {
    let mut buf = [0u8; DOMCTL_SIZE];
    buf.copy_from_slice(s);
    let r = domctl(host, &mut buf);
    s.copy_from_slice(&buf);
    r
}

/// Executes the sysctl in the caller's buffer `s` (a `struct xen_sysctl`,
/// [`SYSCTL_SIZE`] bytes): read once, executed, and copied back.
pub fn sysctl_in_place(host: &Host, s: &mut [u8]) -> ShimResult<i64> {
    let mut buf = [0u8; SYSCTL_SIZE];
    buf.copy_from_slice(s);
    let r = sysctl(host, &mut buf);
    s.copy_from_slice(&buf);
    r
}

/// Executes the sysctl in `s` (136 bytes, updated in place).
pub fn sysctl(host: &Host, s: &mut [u8; SYSCTL_SIZE]) -> ShimResult<i64> {
    let cmd = get_u32(s, 0);
    let version = get_u32(s, 4);
    if version != INTERFACE_VERSION {
        return Err(ShimError::new(
            libc::EACCES,
            format!("sysctl interface version {version:#x}, expected {INTERFACE_VERSION:#x}"),
        ));
    }
    let u = &mut s[SYSCTL_U..];
    match cmd {
        SYSCTL_SCHED_ID => {
            put_u32(u, 0, host.scheduler().id());
            Ok(0)
        }
        SYSCTL_GET_CPU_POLICY => {
            let index = get_u32(u, sysctl_cpu_policy::INDEX);
            if index >= SYSCTL_CPU_POLICY_COUNT || get_u32(u, sysctl_cpu_policy::RSVD) != 0 {
                return Err(ShimError::inval(format!("system cpu policy index {index}")));
            }
            // Every system policy of the simulated host (raw, host, max,
            // default) is the one policy its guests get.
            copy_policy_out(
                &CpuPolicy::default_guest(),
                u,
                sysctl_cpu_policy::NR_LEAVES,
                sysctl_cpu_policy::LEAVES,
                sysctl_cpu_policy::NR_MSRS,
                sysctl_cpu_policy::MSRS,
            )?;
            Ok(0)
        }
        other => Err(ShimError::new(
            libc::ENOSYS,
            format!("sysctl {other} is not simulated"),
        )),
    }
}

/// Writes a policy as Xen's `x86_cpuid_copy_to_buffer` does: a NULL handle
/// asks for the maximum counts; a short buffer is `ENOBUFS`.
fn copy_policy_out(
    policy: &CpuPolicy,
    u: &mut [u8],
    nl_off: usize,
    lp_off: usize,
    nm_off: usize,
    mp_off: usize,
) -> ShimResult<()> {
    let lp = get_u64(u, lp_off);
    if lp == 0 {
        put_u32(u, nl_off, xensim::CPUID_MAX_LEAVES as u32);
    } else {
        let bytes = policy.leaves_to_bytes();
        let n = bytes.len() / CPUID_LEAF_SIZE;
        let room = get_u32(u, nl_off) as usize;
        if room < n {
            return Err(ShimError::new(
                libc::ENOBUFS,
                format!("{n} cpuid leaves, room for {room}"),
            ));
        }
        // SAFETY: the caller's buffer holds `room` >= n leaves.
        unsafe { ffi::handle_bytes(lp, bytes.len(), "cpuid leaves") }?.copy_from_slice(&bytes);
        put_u32(u, nl_off, n as u32);
    }
    let mp = get_u64(u, mp_off);
    if mp == 0 {
        put_u32(u, nm_off, xensim::MSR_MAX_ENTRIES as u32);
    } else {
        let bytes = policy.msrs_to_bytes();
        let n = bytes.len() / MSR_ENTRY_SIZE;
        let room = get_u32(u, nm_off) as usize;
        if room < n {
            return Err(ShimError::new(
                libc::ENOBUFS,
                format!("{n} MSRs, room for {room}"),
            ));
        }
        // SAFETY: the caller's buffer holds `room` >= n entries.
        unsafe { ffi::handle_bytes(mp, bytes.len(), "msr entries") }?.copy_from_slice(&bytes);
        put_u32(u, nm_off, n as u32);
    }
    Ok(())
}

/// `XEN_DOMCTL_shadow_op` on a HAP domain: log-dirty control only.
/// `XEN_DOMCTL_scheduler_op` for credit and credit2: getinfo writes the
/// weight and cap back; the per-vCPU commands are EINVAL, as both
/// schedulers answer them.
fn scheduler_op(host: &Host, domid: DomId, u: &mut [u8]) -> ShimResult<()> {
    let sched_id = get_u32(u, scheduler_op::SCHED_ID);
    match get_u32(u, scheduler_op::CMD) {
        scheduler_op::GETINFO => {
            let p = host.sched_getinfo(domid, sched_id)?;
            put_u16(u, scheduler_op::WEIGHT, p.weight);
            put_u16(u, scheduler_op::CAP, p.cap);
            Ok(())
        }
        scheduler_op::PUTINFO => {
            let req = xensim::SchedParams {
                weight: get_u16(u, scheduler_op::WEIGHT),
                cap: get_u16(u, scheduler_op::CAP),
            };
            host.sched_putinfo(domid, sched_id, req)?;
            Ok(())
        }
        other => Err(ShimError::inval(format!(
            "scheduler_op command {other} (credit and credit2 have no per-vCPU parameters)"
        ))),
    }
}

fn shadow_op(dom: &Domain, u: &mut [u8]) -> ShimResult<()> {
    let op = get_u32(u, shadow_op::OP);
    match op {
        SHADOW_OP_OFF => dom.logdirty_disable().map_err(Into::into),
        SHADOW_OP_ENABLE_LOGDIRTY => dom.logdirty_enable().map_err(Into::into),
        SHADOW_OP_CLEAN | SHADOW_OP_PEEK => {
            let mode = get_u32(u, shadow_op::MODE);
            if mode & !SHADOW_LOGDIRTY_FINAL != 0 {
                return Err(ShimError::inval(format!("log-dirty mode {mode:#x}")));
            }
            let pages = get_u64(u, shadow_op::PAGES);
            let bm = get_u64(u, shadow_op::DIRTY_BITMAP);
            let bitmap = if bm == 0 {
                None
            } else {
                let len = usize::try_from(pages.div_ceil(8))
                    .map_err(|_| ShimError::inval("bitmap too large"))?;
                // SAFETY: the caller's bitmap holds `pages` bits.
                Some(unsafe { ffi::handle_bytes(bm, len, "dirty bitmap") }?)
            };
            let which = if op == SHADOW_OP_CLEAN {
                LogDirtyOp::Clean
            } else {
                LogDirtyOp::Peek
            };
            let stats = dom.logdirty_op(which, bitmap, pages, mode & SHADOW_LOGDIRTY_FINAL != 0)?;
            put_u32(u, shadow_op::FAULT_COUNT, stats.fault_count);
            put_u32(u, shadow_op::DIRTY_COUNT, stats.dirty_count);
            Ok(())
        }
        // HAP domains have no shadow pool; report zero megabytes.
        SHADOW_OP_GET_ALLOCATION => {
            put_u32(u, shadow_op::MB, 0);
            Ok(())
        }
        SHADOW_OP_SET_ALLOCATION => Ok(()),
        other => Err(ShimError::inval(format!("shadow op {other}"))),
    }
}

/// Fills a `struct xen_domctl_getdomaininfo` (112 bytes).
pub fn fill_domaininfo(b: &mut [u8], info: &xensim::DomainInfo) {
    b.fill(0);
    put_u16(b, domaininfo::DOMAIN, info.domid as u16);
    let mut flags = 0u32;
    if info.dying {
        flags |= dominf::DYING;
    }
    if info.hvm {
        flags |= dominf::HVM_GUEST;
    }
    if info.shutdown {
        flags |= dominf::SHUTDOWN | ((info.shutdown_reason & 0xff) << dominf::SHUTDOWN_SHIFT);
    }
    if info.paused {
        flags |= dominf::PAUSED;
    }
    if info.running {
        flags |= dominf::RUNNING;
    }
    if info.blocked {
        flags |= dominf::BLOCKED;
    }
    if info.hap {
        flags |= dominf::HAP;
    }
    put_u32(b, domaininfo::FLAGS, flags);
    put_u64(b, domaininfo::TOT_PAGES, info.tot_pages);
    put_u64(b, domaininfo::MAX_PAGES, info.max_pages);
    put_u64(b, domaininfo::SHARED_INFO_FRAME, info.shared_info_frame);
    put_u64(b, domaininfo::CPU_TIME, info.cpu_time_ns);
    put_u32(b, domaininfo::NR_ONLINE_VCPUS, info.nr_online_vcpus);
    put_u32(b, domaininfo::MAX_VCPU_ID, info.max_vcpu_id);
    b[domaininfo::HANDLE..domaininfo::HANDLE + 16].copy_from_slice(&info.handle);
    b[domaininfo::GPADDR_BITS] = 52;
}

/// Fills an `xc_dominfo_t` (112 bytes) from a `xen_domctl_getdomaininfo`,
/// as libxenctrl's `xc_domain_getinfo` converts it.
pub fn fill_dominfo(out: &mut [u8], di: &[u8]) {
    out.fill(0);
    let flags = get_u32(di, domaininfo::FLAGS);
    put_u32(
        out,
        dominfo::DOMID,
        u32::from(get_u16(di, domaininfo::DOMAIN)),
    );
    put_u32(out, dominfo::SSIDREF, get_u32(di, domaininfo::SSIDREF));
    let reason = (flags >> dominf::SHUTDOWN_SHIFT) & 0xff;
    let bit = |mask: u32, pos: u32| if flags & mask != 0 { 1u32 << pos } else { 0 };
    let mut word = bit(dominf::DYING, dominfo::BIT_DYING)
        | bit(dominf::SHUTDOWN, dominfo::BIT_SHUTDOWN)
        | bit(dominf::PAUSED, dominfo::BIT_PAUSED)
        | bit(dominf::BLOCKED, dominfo::BIT_BLOCKED)
        | bit(dominf::RUNNING, dominfo::BIT_RUNNING)
        | bit(dominf::HVM_GUEST, dominfo::BIT_HVM)
        | bit(dominf::DEBUGGED, dominfo::BIT_DEBUGGED)
        | bit(dominf::XS_DOMAIN, dominfo::BIT_XENSTORE)
        | bit(dominf::HAP, dominfo::BIT_HAP);
    // A domain shut down for SHUTDOWN_crash is reported as crashed, not shut down.
    if flags & dominf::SHUTDOWN != 0 && reason == xensim::SHUTDOWN_CRASH {
        word &= !(1 << dominfo::BIT_SHUTDOWN);
        word |= 1 << dominfo::BIT_CRASHED;
    }
    put_u32(out, dominfo::FLAGS, word);
    put_u32(out, dominfo::SHUTDOWN_REASON, reason);
    put_u64(out, dominfo::NR_PAGES, get_u64(di, domaininfo::TOT_PAGES));
    put_u64(
        out,
        dominfo::NR_OUTSTANDING_PAGES,
        get_u64(di, domaininfo::OUTSTANDING_PAGES),
    );
    put_u64(
        out,
        dominfo::NR_SHARED_PAGES,
        get_u64(di, domaininfo::SHR_PAGES),
    );
    put_u64(
        out,
        dominfo::NR_PAGED_PAGES,
        get_u64(di, domaininfo::PAGED_PAGES),
    );
    put_u64(
        out,
        dominfo::SHARED_INFO_FRAME,
        get_u64(di, domaininfo::SHARED_INFO_FRAME),
    );
    put_u64(out, dominfo::CPU_TIME, get_u64(di, domaininfo::CPU_TIME));
    let max_pages = get_u64(di, domaininfo::MAX_PAGES);
    put_u64(out, dominfo::MAX_MEMKB, max_pages.saturating_mul(4));
    put_u32(
        out,
        dominfo::NR_ONLINE_VCPUS,
        get_u32(di, domaininfo::NR_ONLINE_VCPUS),
    );
    put_u32(
        out,
        dominfo::MAX_VCPU_ID,
        get_u32(di, domaininfo::MAX_VCPU_ID),
    );
    out[dominfo::HANDLE..dominfo::HANDLE + 16]
        .copy_from_slice(&di[domaininfo::HANDLE..domaininfo::HANDLE + 16]);
    put_u32(out, dominfo::CPUPOOL, get_u32(di, domaininfo::CPUPOOL));
    out[dominfo::GPADDR_BITS] = di[domaininfo::GPADDR_BITS];
    out[dominfo::ARCH_CONFIG..dominfo::ARCH_CONFIG + 8]
        .copy_from_slice(&di[domaininfo::ARCH_CONFIG..domaininfo::ARCH_CONFIG + 8]);
}

/// [`populate`] all of `extents` or fail: EBUSY when only some were done
/// (libxenctrl's `xc_domain_populate_physmap_exact`).
pub fn populate_exact(
    host: &Host,
    domid: DomId,
    extents: &mut [u64],
    order: u32,
    flags: u32,
) -> ShimResult<()> {
    let done = populate(host, domid, extents, order, flags)?;
    if done != extents.len() {
        return Err(ShimError::new(
            libc::EBUSY,
            format!("populated {done} of {} extents", extents.len()),
        ));
    }
    Ok(())
}

/// `XENMEM_populate_physmap` for `domid`: populates `2^order` frames at each
/// base gfn, writing the frames back (MFNs for PV, unchanged for HVM).
/// Returns the number of extents done.
pub fn populate(
    host: &Host,
    domid: DomId,
    extents: &mut [u64],
    order: u32,
    flags: u32,
) -> ShimResult<usize> {
    if flags != 0 {
        return Err(ShimError::new(
            libc::EOPNOTSUPP,
            format!("populate_physmap mem_flags {flags:#x}"),
        ));
    }
    if order > 18 {
        return Err(ShimError::inval(format!("extent order {order}")));
    }
    let dom = host.domain(domid)?;
    if order == 0 {
        let frames = dom.populate(extents)?;
        extents.copy_from_slice(&frames[..extents.len()]);
        return Ok(extents.len());
    }
    let per = 1u64 << order;
    for (i, base) in extents.iter_mut().enumerate() {
        if *base % per != 0 {
            return if i == 0 {
                Err(ShimError::inval(format!(
                    "gfn {base:#x} not aligned to order {order}"
                )))
            } else {
                Ok(i)
            };
        }
        let gfns: Vec<u64> = (*base..*base + per).collect();
        let frames = dom.populate(&gfns)?;
        *base = frames[0];
    }
    Ok(extents.len())
}

/// Decoded `struct xen_memory_reservation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// `extent_start` handle.
    pub extent_start: u64,
    /// `nr_extents`.
    pub nr_extents: u64,
    /// `extent_order`.
    pub extent_order: u32,
    /// `mem_flags`.
    pub mem_flags: u32,
    /// `domid`.
    pub domid: u16,
}

impl Reservation {
    /// Decodes the 32-byte structure.
    pub fn parse(b: &[u8]) -> Reservation {
        Reservation {
            extent_start: get_u64(b, 0),
            nr_extents: get_u64(b, 8),
            extent_order: get_u32(b, 16),
            mem_flags: get_u32(b, 20),
            domid: get_u16(b, 24),
        }
    }
}

/// `xc_memory_op(cmd, arg, len)`: the memory ops the simulated host has.
pub(crate) fn memory_op(host: &Host, cmd: u32, arg: *mut u8, len: usize) -> ShimResult<i64> {
    match cmd {
        XENMEM_MAXIMUM_GPFN => {
            // SAFETY: arg points to a domid_t (2 bytes) per the hypercall ABI.
            let b = unsafe { ffi::slice(arg, 2, "domid") }?;
            let domid = DomId::from(get_u16(b, 0));
            Ok(host.domain(domid)?.max_gpfn() as i64)
        }
        XENMEM_POPULATE_PHYSMAP => {
            if len < MEMORY_RESERVATION_SIZE {
                return Err(ShimError::inval("short xen_memory_reservation"));
            }
            // SAFETY: arg holds `len` >= 32 bytes.
            let b = unsafe { ffi::slice(arg, MEMORY_RESERVATION_SIZE, "reservation") }?;
            let r = Reservation::parse(b);
            let n = usize::try_from(r.nr_extents).map_err(|_| ShimError::inval("nr_extents"))?;
            // SAFETY: extent_start holds nr_extents xen_pfn_t entries.
            let ext =
                unsafe { ffi::slice_mut(r.extent_start as usize as *mut u64, n, "extent_start") }?;
            Ok(populate(host, DomId::from(r.domid), ext, r.extent_order, r.mem_flags)? as i64)
        }
        other => pv::memory_op(host, other, arg, len).unwrap_or_else(|| {
            Err(ShimError::new(
                libc::ENOSYS,
                format!("memory_op {other} is not simulated"),
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominfo_conversion_sets_hvm_shutdown_and_reason() {
        let mut di = [0u8; domaininfo::SIZE];
        put_u16(&mut di, domaininfo::DOMAIN, 7);
        put_u32(
            &mut di,
            domaininfo::FLAGS,
            dominf::HVM_GUEST | dominf::SHUTDOWN | dominf::HAP | (2 << dominf::SHUTDOWN_SHIFT),
        );
        put_u64(&mut di, domaininfo::TOT_PAGES, 65536);
        put_u64(&mut di, domaininfo::MAX_PAGES, 65536);
        put_u32(&mut di, domaininfo::MAX_VCPU_ID, 3);
        let mut out = [0xffu8; dominfo::SIZE];
        fill_dominfo(&mut out, &di);
        assert_eq!(get_u32(&out, dominfo::DOMID), 7);
        let w = get_u32(&out, dominfo::FLAGS);
        assert_eq!(w, (1 << 6) | (1 << 2) | (1 << 9), "hvm, shutdown, hap bits");
        assert_eq!(get_u32(&out, dominfo::SHUTDOWN_REASON), 2);
        assert_eq!(get_u64(&out, dominfo::NR_PAGES), 65536);
        assert_eq!(get_u64(&out, dominfo::MAX_MEMKB), 65536 * 4);
        assert_eq!(get_u32(&out, dominfo::MAX_VCPU_ID), 3);
    }

    #[test]
    fn crash_shutdown_is_reported_as_crashed() {
        let mut di = [0u8; domaininfo::SIZE];
        put_u32(
            &mut di,
            domaininfo::FLAGS,
            dominf::SHUTDOWN | (3 << dominf::SHUTDOWN_SHIFT),
        );
        let mut out = [0u8; dominfo::SIZE];
        fill_dominfo(&mut out, &di);
        assert_eq!(get_u32(&out, dominfo::FLAGS), 1 << 1);
    }

    #[test]
    fn reservation_decodes_at_fixed_offsets() {
        let mut b = [0u8; 32];
        put_u64(&mut b, 0, 0x1000);
        put_u64(&mut b, 8, 5);
        put_u32(&mut b, 16, 9);
        put_u32(&mut b, 20, 0);
        put_u16(&mut b, 24, 3);
        assert_eq!(
            Reservation::parse(&b),
            Reservation {
                extent_start: 0x1000,
                nr_extents: 5,
                extent_order: 9,
                mem_flags: 0,
                domid: 3
            }
        );
    }
}
