//! x86 PV: the machine frame space (`xc_maximum_ram_page`,
//! `xc_machphys_mfn_list`), vCPU queries and `xc_mmuext_op`. Each builds the
//! hypercall structure libxenctrl would and runs it through `dispatch`/`pv`.

use std::ffi::{c_int, c_uint, c_ulong, c_void};

use super::domain;
use crate::abi::{self, domctl, machphys_mfn_list, vcpuinfo, Domctl};
use crate::ctx::{xc_call, Xch};
use crate::error::{ShimError, ShimResult};
use crate::ffi::{self, ret_int};
use crate::{dispatch, pv};

#[no_mangle]
pub unsafe extern "C" fn xc_maximum_ram_page(xch: *mut Xch, max_mfn: *mut c_ulong) -> c_int {
    ret_int(xc_call(xch, "xc_maximum_ram_page", |x| {
        let m = dispatch::memory_op(
            x.host(),
            pv::XENMEM_MAXIMUM_RAM_PAGE,
            std::ptr::null_mut(),
            0,
        )?;
        // SAFETY: max_mfn points to an unsigned long (C contract).
        *unsafe { ffi::opt_mut(max_mfn, "max_mfn") }? = m as c_ulong;
        Ok(0)
    }))
}

/// As libxenctrl: -1 unless Xen filled exactly `max_extents` extents (the
/// count check sets no errno of its own there; EINVAL here).
#[no_mangle]
pub unsafe extern "C" fn xc_machphys_mfn_list(
    xch: *mut Xch,
    max_extents: c_ulong,
    extent_start: *mut u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_machphys_mfn_list", |x| {
        let max = u32::try_from(max_extents)
            .map_err(|_| ShimError::inval(format!("{max_extents} extents")))?;
        let mut xmml = [0u8; machphys_mfn_list::SIZE];
        abi::put_u32(&mut xmml, machphys_mfn_list::MAX_EXTENTS, max);
        abi::put_u64(
            &mut xmml,
            machphys_mfn_list::EXTENT_START,
            extent_start as usize as u64,
        );
        dispatch::memory_op(
            x.host(),
            pv::XENMEM_MACHPHYS_MFN_LIST,
            xmml.as_mut_ptr(),
            xmml.len(),
        )?;
        let n = abi::get_u32(&xmml, machphys_mfn_list::NR_EXTENTS);
        if n != max {
            return Err(ShimError::inval(format!(
                "the M2P has {n} chunks, {max} were asked for"
            )));
        }
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_vcpu_getinfo(
    xch: *mut Xch,
    domid: u32,
    vcpu: u32,
    info: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_vcpu_getinfo", |x| {
        let d = dispatch::run_domctl(
            x.host(),
            Domctl::new(domctl::GETVCPUINFO, domid).with_u32(vcpuinfo::VCPU, vcpu),
        )?;
        // SAFETY: info points to an xc_vcpuinfo_t (C contract).
        let out = unsafe { ffi::slice_mut(info.cast::<u8>(), vcpuinfo::SIZE, "info") }?;
        out.copy_from_slice(&d.u()[..vcpuinfo::SIZE]);
        Ok(0)
    }))
}

/// The domctl of `cmd` on vCPU `vcpu` with the context handle at `ctxt`
/// (libxenctrl bounces a whole `vcpu_guest_context_any_t`; Xen reads or
/// writes the guest's width of it).
fn vcpu_context_domctl(
    x: &Xch,
    cmd: u32,
    domid: u32,
    vcpu: u32,
    ctxt: *mut c_void,
) -> ShimResult<()> {
    dispatch::run_domctl(
        x.host(),
        Domctl::new(cmd, domid)
            .with_u32(abi::vcpucontext::VCPU, vcpu)
            .with_u64(abi::vcpucontext::CTXT, ctxt as usize as u64),
    )?;
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn xc_vcpu_getcontext(
    xch: *mut Xch,
    domid: u32,
    vcpu: u32,
    ctxt: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_vcpu_getcontext", |x| {
        vcpu_context_domctl(x, domctl::GETVCPUCONTEXT, domid, vcpu, ctxt).map(|_| 0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_vcpu_setcontext(
    xch: *mut Xch,
    domid: u32,
    vcpu: u32,
    ctxt: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_vcpu_setcontext", |x| {
        vcpu_context_domctl(x, domctl::SETVCPUCONTEXT, domid, vcpu, ctxt).map(|_| 0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_mmuext_op(
    xch: *mut Xch,
    op: *mut c_void,
    nr_ops: c_uint,
    dom: u32,
) -> c_int {
    ret_int(xc_call(xch, "xc_mmuext_op", |x| {
        let n = nr_ops as usize;
        if n > pv::MAX_MMUEXT_OPS {
            return Err(ShimError::new(libc::E2BIG, format!("{n} mmuext ops")));
        }
        // SAFETY: op holds nr_ops struct mmuext_op (C contract).
        let raw = unsafe { ffi::slice(op.cast::<u8>(), n * abi::mmuext::SIZE, "op") }?;
        pv::mmuext_op(&domain(x, dom)?, raw)?;
        Ok(0)
    }))
}
