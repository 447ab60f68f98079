//! Hypercall buffers and bounce buffers (`xc__hypercall_*`).

use std::ffi::{c_int, c_void};

use crate::ctx::{xc_call, Xch};
use crate::error::ShimError;
use crate::ffi::{self, ret_int, ret_ptr};
use crate::hcall::{self, HypercallBuffer};

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_buffer_alloc_pages(
    xch: *mut Xch,
    b: *mut HypercallBuffer,
    nr_pages: c_int,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc__hypercall_buffer_alloc_pages", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        let n = usize::try_from(nr_pages).map_err(|_| ShimError::inval("negative page count"))?;
        hcall::alloc_pages(b, n)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_buffer_free_pages(
    xch: *mut Xch,
    b: *mut HypercallBuffer,
    nr_pages: c_int,
) {
    let _ = xc_call(xch, "xc__hypercall_buffer_free_pages", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        hcall::free_pages(b, usize::try_from(nr_pages).unwrap_or(0));
        Ok(())
    });
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_buffer_alloc(
    xch: *mut Xch,
    b: *mut HypercallBuffer,
    size: usize,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc__hypercall_buffer_alloc", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        hcall::alloc(b, size)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_buffer_free(xch: *mut Xch, b: *mut HypercallBuffer) {
    let _ = xc_call(xch, "xc__hypercall_buffer_free", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        hcall::free(b);
        Ok(())
    });
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_bounce_pre(xch: *mut Xch, b: *mut HypercallBuffer) -> c_int {
    let r = xc_call(xch, "xc__hypercall_bounce_pre", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        Ok(hcall::bounce_pre(b))
    });
    match r {
        Ok(Ok(inner)) => ret_int(inner.map(|_| 0)),
        // A bounce buffer not declared with DECLARE_HYPERCALL_BOUNCE is a
        // programming error in the caller; libxenctrl aborts too.
        Ok(Err(hcall::BounceFault::Misdeclared)) => std::process::abort(),
        Err(e) => ret_int(Err(e)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_bounce_post(xch: *mut Xch, b: *mut HypercallBuffer) {
    let _ = xc_call(xch, "xc__hypercall_bounce_post", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        hcall::bounce_post(b);
        Ok(())
    });
}
