//! Log-dirty control through `XEN_DOMCTL_shadow_op`.

use std::ffi::{c_int, c_longlong, c_uint, c_ulong, c_void};

use crate::abi::{domctl, shadow_op, Domctl};
use crate::ctx::{xc_call, Xch};
use crate::dispatch;
use crate::error::ShimResult;
use crate::ffi::{self, ret_int};
use crate::hcall::HypercallBuffer;

/// Resolves `DECLARE_HYPERCALL_BUFFER_SHADOW` indirection as Xen's
/// `HYPERCALL_BUFFER_AS_ARG` does.
fn hbuf_of(b: *mut HypercallBuffer) -> ShimResult<*mut c_void> {
    if b.is_null() {
        return Ok(std::ptr::null_mut());
    }
    // SAFETY: a non-NULL hypercall buffer descriptor from the caller.
    let hb = unsafe { ffi::opt_ref(b.cast_const(), "hypercall buffer") }?;
    if hb.param_shadow.is_null() {
        return Ok(hb.hbuf);
    }
    // SAFETY: param_shadow points at the caller's real descriptor.
    Ok(unsafe { ffi::opt_ref(hb.param_shadow.cast_const(), "shadow buffer") }?.hbuf)
}

#[no_mangle]
pub unsafe extern "C" fn xc_shadow_control(
    xch: *mut Xch,
    domid: u32,
    sop: c_uint,
    mb: *mut c_uint,
    mode: c_uint,
) -> c_int {
    ret_int(xc_call(xch, "xc_shadow_control", |x| {
        // SAFETY: mb is NULL or points to an unsigned int (C contract).
        let mb = unsafe { mb.as_mut() };
        let mut d = Domctl::new(domctl::SHADOW_OP, domid)
            .with_u32(shadow_op::OP, sop)
            .with_u32(shadow_op::MODE, mode);
        if let Some(m) = &mb {
            d.set_u32(shadow_op::MB, **m);
        }
        let d = dispatch::run_domctl(x.host(), d)?;
        if let Some(m) = mb {
            *m = d.u32_at(shadow_op::MB);
        }
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_logdirty_control(
    xch: *mut Xch,
    domid: u32,
    sop: c_uint,
    dirty_bitmap: *mut HypercallBuffer,
    pages: c_ulong,
    mode: c_uint,
    stats: *mut u32,
) -> c_longlong {
    let r = xc_call(xch, "xc_logdirty_control", |x| {
        let bm = hbuf_of(dirty_bitmap)?;
        let d = Domctl::new(domctl::SHADOW_OP, domid)
            .with_u32(shadow_op::OP, sop)
            .with_u32(shadow_op::MODE, mode)
            .with_u64(shadow_op::DIRTY_BITMAP, bm as usize as u64)
            .with_u64(shadow_op::PAGES, pages);
        let d = dispatch::run_domctl(x.host(), d)?;
        // SAFETY: stats is NULL or points to xc_shadow_op_stats_t {u32, u32}.
        if let Ok(s) = unsafe { ffi::slice_mut(stats, 2, "stats") } {
            s[0] = d.u32_at(shadow_op::FAULT_COUNT);
            s[1] = d.u32_at(shadow_op::DIRTY_COUNT);
        }
        Ok(d.u64_at(shadow_op::PAGES) as c_longlong)
    });
    match r {
        Ok(v) => v,
        Err(e) => {
            ffi::set_errno(e.errno);
            -1
        }
    }
}
