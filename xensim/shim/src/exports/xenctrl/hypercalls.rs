//! The raw hypercalls: `xc_domctl`, `xc_sysctl`, `xc_memory_op`.

use std::ffi::{c_int, c_long, c_uint, c_void};

use crate::abi;
use crate::ctx::{xc_call, Xch};
use crate::dispatch;
use crate::ffi::{self, ret_int};

#[no_mangle]
pub unsafe extern "C" fn xc_domctl(xch: *mut Xch, d: *mut c_void) -> c_int {
    ret_int(xc_call(xch, "xc_domctl", |x| {
        // SAFETY: d points to a struct xen_domctl (C contract).
        let s = unsafe { ffi::slice_mut(d.cast::<u8>(), abi::DOMCTL_SIZE, "domctl") }?;
        // libxenctrl's do_domctl stamps the version; callers leave it unset.
        abi::put_u32(s, abi::DOMCTL_INTERFACE_VERSION, abi::INTERFACE_VERSION);
        dispatch::domctl_in_place(x.host(), s).map(|v| v as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_sysctl(xch: *mut Xch, s: *mut c_void) -> c_int {
    ret_int(xc_call(xch, "xc_sysctl", |x| {
        // SAFETY: s points to a struct xen_sysctl (C contract).
        let b = unsafe { ffi::slice_mut(s.cast::<u8>(), abi::SYSCTL_SIZE, "sysctl") }?;
        // As do_sysctl: the library stamps the interface version.
        abi::put_u32(b, 4, abi::INTERFACE_VERSION);
        dispatch::sysctl_in_place(x.host(), b).map(|v| v as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_memory_op(
    xch: *mut Xch,
    cmd: c_uint,
    arg: *mut c_void,
    len: usize,
) -> c_long {
    match xc_call(xch, "xc_memory_op", |x| {
        dispatch::memory_op(x.host(), cmd, arg.cast(), len)
    }) {
        Ok(v) => v as c_long,
        Err(e) => {
            ffi::set_errno(e.errno);
            -1
        }
    }
}
