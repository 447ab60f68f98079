//! The x86 PV hypercalls, decoded at explicit offsets and run on the
//! simulated host: guest width, the M2P memory ops, the vCPU state domctls
//! and `mmuext_op`. `dispatch` routes the domctls and memory ops here; the
//! by-name exports (`xc_vcpu_*`, `xc_mmuext_op`, `xc_machphys_mfn_list`)
//! build the same structures and come through the same code.

use xensim::{Domain, Host, MmuextOp};

use crate::abi::*;
use crate::error::{ShimError, ShimResult};
use crate::ffi;

/// `XENMEM_maximum_ram_page`.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// `XENMEM_machphys_mfn_list`.
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// `XENMEM_machphys_compat_mfn_list`.
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;

/// Most ops one `mmuext_op` call takes here (libxenguest pins in batches of
/// 1024; a larger count is refused rather than trusted).
pub const MAX_MMUEXT_OPS: usize = 1 << 16;

/// `XEN_DOMCTL_get_address_size`: the width in bits into `u`.
pub fn get_address_size(dom: &Domain, u: &mut [u8]) -> ShimResult<()> {
    put_u32(u, 0, dom.address_size());
    Ok(())
}

/// `XEN_DOMCTL_set_address_size` with the bits in `u`.
pub fn set_address_size(dom: &Domain, u: &[u8]) -> ShimResult<()> {
    Ok(dom.set_address_size(get_u32(u, 0))?)
}

/// `XEN_DOMCTL_getvcpuinfo`: whether the vCPU in `u` is up (it neither
/// blocks nor runs while the simulated host is idle).
pub fn get_vcpu_info(dom: &Domain, u: &mut [u8]) -> ShimResult<()> {
    let vcpu = get_u32(u, vcpuinfo::VCPU);
    if vcpu >= dom.vcpus() {
        return Err(ShimError::inval(format!(
            "vcpu {vcpu} of a domain with {}",
            dom.vcpus()
        )));
    }
    u[vcpuinfo::ONLINE] = u8::from(dom.vcpu_online(vcpu));
    u[vcpuinfo::BLOCKED] = 0;
    u[vcpuinfo::RUNNING] = 0;
    put_u64(u, vcpuinfo::CPU_TIME, 0);
    put_u32(u, vcpuinfo::CPU, 0);
    Ok(())
}

/// A guest handle's address, EFAULT when NULL (Xen's copy to or from a
/// NULL handle faults).
fn handle(u: &[u8], off: usize, what: &str) -> ShimResult<u64> {
    match get_u64(u, off) {
        0 => Err(ShimError::new(libc::EFAULT, format!("NULL {what} handle"))),
        a => Ok(a),
    }
}

/// `XEN_DOMCTL_getvcpucontext`: the guest-width context (5168 or 2800
/// bytes) into the `ctxt` handle.
pub fn get_vcpu_context(dom: &Domain, u: &[u8]) -> ShimResult<()> {
    let vcpu = get_u32(u, vcpucontext::VCPU);
    let ctx = dom.vcpu_context(vcpu)?;
    let at = handle(u, vcpucontext::CTXT, "vcpu context")?;
    // SAFETY: the handle holds a vcpu_guest_context_any_t (5168 bytes, the
    // larger layout); the context is at most that long.
    unsafe { ffi::handle_bytes(at, ctx.len(), "vcpu context") }?.copy_from_slice(&ctx);
    Ok(())
}

/// `XEN_DOMCTL_setvcpucontext`: the guest-width context from the `ctxt`
/// handle. A NULL handle asks Xen for a vCPU reset, which the simulated
/// host does not do.
pub fn set_vcpu_context(dom: &Domain, u: &[u8]) -> ShimResult<()> {
    let vcpu = get_u32(u, vcpucontext::VCPU);
    if get_u64(u, vcpucontext::CTXT) == 0 {
        return Err(ShimError::new(
            libc::EOPNOTSUPP,
            format!("vcpu {vcpu} reset (setvcpucontext without a context)"),
        ));
    }
    let len = if dom.address_size() == 32 {
        VCPU_CONTEXT_X86_32_SIZE
    } else {
        VCPU_CONTEXT_X86_64_SIZE
    };
    let at = handle(u, vcpucontext::CTXT, "vcpu context")?;
    // SAFETY: the handle holds a context of the guest's width.
    let ctx = unsafe { ffi::handle_bytes(at, len, "vcpu context") }?;
    Ok(dom.set_vcpu_context(vcpu, ctx)?)
}

/// `XEN_DOMCTL_get_ext_vcpucontext`: the 64-byte structure, `size` set,
/// into `u` itself.
pub fn get_ext_vcpu_context(dom: &Domain, u: &mut [u8]) -> ShimResult<()> {
    let vcpu = get_u32(u, ext_vcpucontext::VCPU);
    let e = dom.ext_vcpu_context(vcpu)?;
    let n = e.len().min(u.len());
    u[..n].copy_from_slice(&e[..n]);
    Ok(())
}

/// `XEN_DOMCTL_set_ext_vcpucontext` from `u` (its `size` says how much of
/// it counts).
pub fn set_ext_vcpu_context(dom: &Domain, u: &[u8]) -> ShimResult<()> {
    Ok(dom.set_ext_vcpu_context(get_u32(u, ext_vcpucontext::VCPU), u)?)
}

/// `XEN_DOMCTL_getvcpuextstate`: with no size and no mask, or no buffer,
/// the host's feature mask and the largest size; otherwise the state,
/// EINVAL when the buffer is short or the mask is not the host's.
pub fn get_vcpu_xsave(dom: &Domain, u: &mut [u8]) -> ShimResult<()> {
    let vcpu = get_u32(u, vcpuextstate::VCPU);
    let mask = get_u64(u, vcpuextstate::XFEATURE_MASK);
    let size = get_u64(u, vcpuextstate::SIZE);
    let buf = get_u64(u, vcpuextstate::BUFFER);
    if vcpu >= dom.vcpus() {
        return Err(ShimError::new(libc::ESRCH, format!("no vcpu {vcpu}")));
    }
    if (size == 0 && mask == 0) || buf == 0 {
        put_u64(u, vcpuextstate::XFEATURE_MASK, dom.xsave_features());
        put_u64(u, vcpuextstate::SIZE, dom.xsave_size() as u64);
        return Ok(());
    }
    let x = dom.vcpu_xsave(vcpu)?;
    if size < x.len() as u64 || mask != dom.xsave_features() {
        return Err(ShimError::inval(format!(
            "xsave buffer of {size} bytes for {} (mask {mask:#x}, host {:#x})",
            x.len(),
            dom.xsave_features()
        )));
    }
    // SAFETY: the buffer holds `size` >= x.len() bytes.
    unsafe { ffi::handle_bytes(buf, x.len(), "xsave buffer") }?.copy_from_slice(&x);
    put_u64(u, vcpuextstate::SIZE, x.len() as u64);
    Ok(())
}

/// `XEN_DOMCTL_setvcpuextstate`: `size` bytes from the buffer, EINVAL
/// outside 16 ..= the host's size before anything is read.
pub fn set_vcpu_xsave(dom: &Domain, u: &[u8]) -> ShimResult<()> {
    let vcpu = get_u32(u, vcpuextstate::VCPU);
    let size = get_u64(u, vcpuextstate::SIZE);
    if vcpu >= dom.vcpus() {
        return Err(ShimError::new(libc::ESRCH, format!("no vcpu {vcpu}")));
    }
    if size < 16 || size > dom.xsave_size() as u64 {
        return Err(ShimError::inval(format!("xsave state of {size} bytes")));
    }
    let buf = handle(u, vcpuextstate::BUFFER, "xsave buffer")?;
    // SAFETY: the buffer holds `size` bytes (at most the host's xsave size).
    let blob = unsafe { ffi::handle_bytes(buf, size as usize, "xsave buffer") }?;
    Ok(dom.set_vcpu_xsave(vcpu, blob)?)
}

/// `XEN_DOMCTL_get_vcpu_msrs`: a NULL handle asks for the most the vCPU can
/// have; otherwise the non-zero MSRs, ENOBUFS (with the count needed) when
/// they do not fit. PV only (EINVAL for HVM, as Xen).
pub fn get_vcpu_msrs(dom: &Domain, u: &mut [u8]) -> ShimResult<()> {
    let vcpu = get_u32(u, vcpu_msrs::VCPU);
    if vcpu >= dom.vcpus() {
        return Err(ShimError::new(libc::ESRCH, format!("no vcpu {vcpu}")));
    }
    if !dom.is_pv() {
        return Err(ShimError::inval("vcpu MSRs of a non-PV domain"));
    }
    let at = get_u64(u, vcpu_msrs::MSRS);
    if at == 0 {
        put_u32(u, vcpu_msrs::MSR_COUNT, dom.max_vcpu_msrs());
        return Ok(());
    }
    let room = get_u32(u, vcpu_msrs::MSR_COUNT) as usize;
    let msrs = dom.vcpu_msrs(vcpu)?;
    let n = msrs.len().min(room);
    // SAFETY: the handle holds `room` >= n entries.
    let out = unsafe { ffi::handle_bytes(at, n * vcpu_msrs::ENTRY_SIZE, "msrs") }?;
    for (e, &(index, value)) in out.chunks_exact_mut(vcpu_msrs::ENTRY_SIZE).zip(&msrs) {
        put_u32(e, 0, index);
        put_u32(e, 4, 0);
        put_u64(e, 8, value);
    }
    put_u32(u, vcpu_msrs::MSR_COUNT, msrs.len() as u32);
    if msrs.len() > room {
        return Err(ShimError::new(
            libc::ENOBUFS,
            format!("{} MSRs, room for {room}", msrs.len()),
        ));
    }
    Ok(())
}

/// `XEN_DOMCTL_set_vcpu_msrs`: EINVAL for more than the vCPU can have or a
/// non-zero reserved field.
pub fn set_vcpu_msrs(dom: &Domain, u: &[u8]) -> ShimResult<()> {
    let vcpu = get_u32(u, vcpu_msrs::VCPU);
    let count = get_u32(u, vcpu_msrs::MSR_COUNT);
    if vcpu >= dom.vcpus() {
        return Err(ShimError::new(libc::ESRCH, format!("no vcpu {vcpu}")));
    }
    if !dom.is_pv() {
        return Err(ShimError::inval("vcpu MSRs of a non-PV domain"));
    }
    if count > dom.max_vcpu_msrs() {
        return Err(ShimError::inval(format!("{count} MSRs")));
    }
    if count == 0 {
        return Ok(dom.set_vcpu_msrs(vcpu, &[])?);
    }
    let at = handle(u, vcpu_msrs::MSRS, "msrs")?;
    // SAFETY: the handle holds `count` entries (at most the PV list's length).
    let raw = unsafe { ffi::handle_bytes(at, count as usize * vcpu_msrs::ENTRY_SIZE, "msrs") }?;
    let mut msrs = Vec::with_capacity(count as usize);
    for e in raw.chunks_exact(vcpu_msrs::ENTRY_SIZE) {
        if get_u32(e, 4) != 0 {
            return Err(ShimError::inval(format!(
                "MSR {:#x} with a reserved field set",
                get_u32(e, 0)
            )));
        }
        msrs.push((get_u32(e, 0), get_u64(e, 8)));
    }
    Ok(dom.set_vcpu_msrs(vcpu, &msrs)?)
}

/// The memory ops of PV toolstacks, or `None` when `cmd` is not one of them.
pub fn memory_op(host: &Host, cmd: u32, arg: *mut u8, len: usize) -> Option<ShimResult<i64>> {
    Some(match cmd {
        XENMEM_MAXIMUM_RAM_PAGE => host
            .max_mfn()
            .map_err(ShimError::from)
            .and_then(|m| i64::try_from(m).map_err(|_| ShimError::inval("max_mfn overflows"))),
        XENMEM_MACHPHYS_MFN_LIST => mfn_list(arg, len, |max| Ok(host.m2p_chunk_mfns(max)?)),
        XENMEM_MACHPHYS_COMPAT_MFN_LIST => mfn_list(arg, len, |max| {
            // The compat M2P of the simulated host fits one chunk.
            Ok(if max == 0 {
                Vec::new()
            } else {
                vec![host.compat_m2p_mfn0()?]
            })
        }),
        _ => return None,
    })
}

/// A `struct xen_machphys_mfn_list` at `arg`: up to `max_extents` MFNs from
/// `list` into `extent_start`, and `nr_extents` set to how many.
fn mfn_list(
    arg: *mut u8,
    len: usize,
    list: impl FnOnce(usize) -> ShimResult<Vec<u64>>,
) -> ShimResult<i64> {
    if len < machphys_mfn_list::SIZE {
        return Err(ShimError::inval("short xen_machphys_mfn_list"));
    }
    // SAFETY: arg holds `len` >= 24 bytes (the hypercall's argument).
    let x = unsafe { ffi::slice_mut(arg, machphys_mfn_list::SIZE, "machphys_mfn_list") }?;
    let max = get_u32(x, machphys_mfn_list::MAX_EXTENTS) as usize;
    let mfns = list(max)?;
    let n = mfns.len().min(max);
    if n > 0 {
        let start = get_u64(x, machphys_mfn_list::EXTENT_START) as usize as *mut u64;
        // SAFETY: the handle holds max_extents >= n xen_pfn_t (plain user
        // memory for the compat list, as libxenguest passes it).
        let out = unsafe { ffi::slice_mut(start, n, "extent_start") }?;
        out.copy_from_slice(&mfns[..n]);
    }
    put_u32(x, machphys_mfn_list::NR_EXTENTS, n as u32);
    Ok(0)
}

/// `mmuext_op(ops, count, NULL, domid)` over `count` raw `struct mmuext_op`.
pub fn mmuext_op(dom: &Domain, raw: &[u8]) -> ShimResult<()> {
    let ops: Vec<MmuextOp> = raw
        .chunks_exact(mmuext::SIZE)
        .map(|o| MmuextOp {
            cmd: get_u32(o, mmuext::CMD),
            arg1: get_u64(o, mmuext::ARG1),
            arg2: get_u64(o, mmuext::ARG2),
        })
        .collect();
    Ok(dom.mmuext_op(&ops)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mfn_list_fills_at_most_max_extents_and_reports_the_count() {
        let mut out = [0u64; 4];
        let mut x = [0u8; machphys_mfn_list::SIZE];
        put_u32(&mut x, machphys_mfn_list::MAX_EXTENTS, 2);
        put_u64(
            &mut x,
            machphys_mfn_list::EXTENT_START,
            out.as_mut_ptr() as u64,
        );
        let r = mfn_list(x.as_mut_ptr(), x.len(), |max| {
            assert_eq!(max, 2);
            Ok(vec![0x1000, 0x1200, 0x1400])
        });
        assert_eq!(r.unwrap(), 0);
        assert_eq!(get_u32(&x, machphys_mfn_list::NR_EXTENTS), 2);
        assert_eq!(out, [0x1000, 0x1200, 0, 0]);
    }

    #[test]
    fn mfn_list_refuses_a_short_argument() {
        let mut x = [0u8; 8];
        let e = mfn_list(x.as_mut_ptr(), x.len(), |_| Ok(vec![])).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
    }
}
