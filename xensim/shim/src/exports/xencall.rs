//! Exports of `libxencall.so.1` (nodes VERS_1.0..VERS_1.3, `vers/libxencall.map`).
//!
//! libxenguest reaches Xen through `xencall1` only: `__HYPERVISOR_domctl` and
//! `__HYPERVISOR_sysctl` with a pointer to the bounced structure. Other
//! hypercalls are not simulated and fail with ENOSYS, as Xen does for an
//! unknown hypercall.
//!
//! Safety contract of every function: the one documented in Xen 4.17's
//! `xencall.h` for the function of the same name.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_int, c_long, c_uint, c_void};

use crate::abi;
use crate::ctx::{self, handle_call, Handle};
use crate::dispatch;
use crate::error::ShimError;
use crate::ffi::{self, ret_int, ret_ptr};
use crate::hcall::{self, HypercallBuffer, PAGE_SIZE};
use crate::xtl::XtlLogger;

#[no_mangle]
pub unsafe extern "C" fn xencall_open(logger: *mut XtlLogger, _open_flags: c_uint) -> *mut Handle {
    ret_ptr(ffi::no_unwind(|| ctx::open_handle(logger, "xencall_open")))
}

#[no_mangle]
pub unsafe extern "C" fn xencall_close(xcall: *mut Handle) -> c_int {
    ctx::close_handle(xcall)
}

/// There is no privcmd device behind a simulated host.
#[no_mangle]
pub unsafe extern "C" fn xencall_fd(xcall: *mut Handle) -> c_int {
    ret_int(handle_call(xcall, "xencall_fd", |_| {
        Err(ShimError::nosys("xencall_fd"))
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xencall1(xcall: *mut Handle, op: c_uint, arg1: u64) -> c_int {
    ret_int(handle_call(xcall, "xencall1", |h| {
        let p = arg1 as usize as *mut u8;
        match op {
            abi::HYPERVISOR_DOMCTL => {
                // SAFETY: arg1 is the hypercall buffer holding a struct xen_domctl.
                let s = unsafe { ffi::slice_mut(p, abi::DOMCTL_SIZE, "domctl") }?;
                dispatch::domctl_in_place(&h.host, s).map(|v| v as c_int)
            }
            abi::HYPERVISOR_SYSCTL => {
                // SAFETY: arg1 is the hypercall buffer holding a struct xen_sysctl.
                let s = unsafe { ffi::slice_mut(p, abi::SYSCTL_SIZE, "sysctl") }?;
                dispatch::sysctl_in_place(&h.host, s).map(|v| v as c_int)
            }
            other => Err(ShimError::new(
                libc::ENOSYS,
                format!("hypercall {other} is not simulated"),
            )),
        }
    }))
}

fn nosys(h: *mut Handle, call: &str, op: c_uint) -> c_int {
    ret_int(handle_call(h, call, |_| {
        Err(ShimError::new(
            libc::ENOSYS,
            format!("hypercall {op} is not simulated"),
        ))
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xencall0(xcall: *mut Handle, op: c_uint) -> c_int {
    nosys(xcall, "xencall0", op)
}

#[no_mangle]
pub unsafe extern "C" fn xencall2(xcall: *mut Handle, op: c_uint, _a1: u64, _a2: u64) -> c_int {
    nosys(xcall, "xencall2", op)
}

#[no_mangle]
pub unsafe extern "C" fn xencall2L(xcall: *mut Handle, op: c_uint, _a1: u64, _a2: u64) -> c_long {
    c_long::from(nosys(xcall, "xencall2L", op))
}

#[no_mangle]
pub unsafe extern "C" fn xencall3(
    xcall: *mut Handle,
    op: c_uint,
    _a1: u64,
    _a2: u64,
    _a3: u64,
) -> c_int {
    nosys(xcall, "xencall3", op)
}

#[no_mangle]
pub unsafe extern "C" fn xencall4(
    xcall: *mut Handle,
    op: c_uint,
    _a1: u64,
    _a2: u64,
    _a3: u64,
    _a4: u64,
) -> c_int {
    nosys(xcall, "xencall4", op)
}

#[no_mangle]
pub unsafe extern "C" fn xencall5(
    xcall: *mut Handle,
    op: c_uint,
    _a1: u64,
    _a2: u64,
    _a3: u64,
    _a4: u64,
    _a5: u64,
) -> c_int {
    nosys(xcall, "xencall5", op)
}

fn empty_buffer() -> HypercallBuffer {
    HypercallBuffer {
        hbuf: std::ptr::null_mut(),
        param_shadow: std::ptr::null_mut(),
        dir: 0,
        ubuf: std::ptr::null_mut(),
        sz: 0,
    }
}

#[no_mangle]
pub unsafe extern "C" fn xencall_alloc_buffer_pages(
    xcall: *mut Handle,
    nr_pages: usize,
) -> *mut c_void {
    ret_ptr(handle_call(xcall, "xencall_alloc_buffer_pages", |_| {
        hcall::alloc_pages(&mut empty_buffer(), nr_pages)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xencall_free_buffer_pages(
    xcall: *mut Handle,
    p: *mut c_void,
    nr_pages: usize,
) {
    let _ = handle_call(xcall, "xencall_free_buffer_pages", |_| {
        let mut b = empty_buffer();
        b.hbuf = p;
        hcall::free_pages(&mut b, nr_pages);
        Ok(())
    });
}

/// Byte-sized buffers are whole pages with the page count stored in front,
/// so `xencall_free_buffer` needs no size.
#[no_mangle]
pub unsafe extern "C" fn xencall_alloc_buffer(xcall: *mut Handle, size: usize) -> *mut c_void {
    ret_ptr(handle_call(xcall, "xencall_alloc_buffer", |_| {
        let total = size
            .checked_add(16)
            .ok_or_else(|| ShimError::inval("buffer too large"))?;
        let pages = total.div_ceil(PAGE_SIZE);
        let base = hcall::alloc_pages(&mut empty_buffer(), pages)?.cast::<u8>();
        // SAFETY: base maps `pages` pages; the header is its first 16 bytes.
        unsafe {
            base.cast::<usize>().write(pages);
            Ok(base.add(16).cast())
        }
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xencall_free_buffer(xcall: *mut Handle, p: *mut c_void) {
    let _ = handle_call(xcall, "xencall_free_buffer", |_| {
        if p.is_null() {
            return Ok(());
        }
        // SAFETY: p came from xencall_alloc_buffer: 16 bytes after a page
        // start whose first word is the page count.
        let base = unsafe { p.cast::<u8>().sub(16) };
        // SAFETY: base is that page start, which holds the page count.
        let pages = unsafe { base.cast::<usize>().read() };
        let mut b = empty_buffer();
        b.hbuf = base.cast();
        hcall::free_pages(&mut b, pages);
        Ok(())
    });
}

/// Simulated hypercall buffers are ordinary memory and never fault.
#[no_mangle]
pub unsafe extern "C" fn xencall_buffers_never_fault(_xcall: *mut Handle) -> c_int {
    1
}
