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
