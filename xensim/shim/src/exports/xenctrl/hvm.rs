//! HVM state: context, params and TSC settings.

use std::ffi::c_int;

use xensim::TscInfo;

use super::domain;
use crate::ctx::{xc_call, Xch};
use crate::error::ShimError;
use crate::ffi::{self, ret_int};

#[no_mangle]
pub unsafe extern "C" fn xc_domain_hvm_getcontext(
    xch: *mut Xch,
    domid: u32,
    buf: *mut u8,
    size: u32,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_hvm_getcontext", |x| {
        let dom = domain(x, domid)?;
        if buf.is_null() {
            return Ok(dom.hvm_context_size()? as c_int);
        }
        let ctx = dom.hvm_context()?;
        if (size as usize) < ctx.len() {
            return Err(ShimError::new(
                libc::ENOSPC,
                format!("HVM context is {} bytes, buffer holds {size}", ctx.len()),
            ));
        }
        // SAFETY: buf holds size >= ctx.len() bytes (C contract).
        unsafe { ffi::slice_mut(buf, ctx.len(), "buf") }?.copy_from_slice(&ctx);
        Ok(ctx.len() as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_hvm_setcontext(
    xch: *mut Xch,
    domid: u32,
    buf: *mut u8,
    size: u32,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_hvm_setcontext", |x| {
        // SAFETY: buf holds size bytes (C contract).
        let blob = unsafe { ffi::slice(buf.cast_const(), size as usize, "hvm_ctxt") }?;
        domain(x, domid)?.set_hvm_context(blob)?;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_hvm_param_get(
    xch: *mut Xch,
    dom: u32,
    param: u32,
    value: *mut u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_hvm_param_get", |x| {
        let v = domain(x, dom)?.hvm_param(param)?;
        // SAFETY: value points to a u64 (C contract).
        *unsafe { ffi::opt_mut(value, "value") }? = v;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_hvm_param_set(
    xch: *mut Xch,
    dom: u32,
    param: u32,
    value: u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_hvm_param_set", |x| {
        Ok(domain(x, dom)?.set_hvm_param(param, value).map(|_| 0)?)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_get_tsc_info(
    xch: *mut Xch,
    domid: u32,
    tsc_mode: *mut u32,
    elapsed_nsec: *mut u64,
    gtsc_khz: *mut u32,
    incarnation: *mut u32,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_get_tsc_info", |x| {
        let t = domain(x, domid)?.tsc_info()?;
        // SAFETY: the four outputs point to caller variables (C contract).
        unsafe {
            *ffi::opt_mut(tsc_mode, "tsc_mode")? = t.mode;
            *ffi::opt_mut(elapsed_nsec, "elapsed_nsec")? = t.elapsed_nsec;
            *ffi::opt_mut(gtsc_khz, "gtsc_khz")? = t.gtsc_khz;
            *ffi::opt_mut(incarnation, "incarnation")? = t.incarnation;
        }
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_set_tsc_info(
    xch: *mut Xch,
    domid: u32,
    tsc_mode: u32,
    elapsed_nsec: u64,
    gtsc_khz: u32,
    incarnation: u32,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_set_tsc_info", |x| {
        let t = TscInfo {
            mode: tsc_mode,
            elapsed_nsec,
            gtsc_khz,
            incarnation,
        };
        Ok(domain(x, domid)?.set_tsc_info(t).map(|_| 0)?)
    }))
}
