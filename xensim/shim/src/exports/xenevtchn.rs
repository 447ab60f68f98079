//! Exports of `libxenevtchn.so.1` (nodes VERS_1.0..VERS_1.2,
//! `vers/libxenevtchn.map`).
//!
//! Event channels are not simulated: libxenguest imports these four only for
//! the suspend-event-channel helpers that libxl runs in its own process, never
//! on the save/restore path. `xenevtchn_open` fails with ENOSYS (as on a host
//! without the evtchn device), so no handle ever exists and every other call
//! fails with ENOSYS too.
//!
//! Safety contract of every function: the one documented in Xen 4.17's
//! `xenevtchn.h` for the function of the same name.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_int, c_uint, c_void};

use crate::ctx::{self, free_call};
use crate::error::ShimError;
use crate::ffi::{ret_int, ret_ptr};
use crate::xtl::XtlLogger;

fn open(logger: *mut XtlLogger, call: &str) -> *mut c_void {
    ret_ptr(free_call(call, || {
        let h = ctx::open_handle(logger, call)?;
        ctx::close_handle(h);
        Err(ShimError::nosys("event channels"))
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xenevtchn_open(logger: *mut XtlLogger, _flags: c_uint) -> *mut c_void {
    open(logger, "xenevtchn_open")
}

#[no_mangle]
pub unsafe extern "C" fn xenevtchn_fdopen(
    logger: *mut XtlLogger,
    _fd: c_int,
    _flags: c_uint,
) -> *mut c_void {
    open(logger, "xenevtchn_fdopen")
}

/// No handle can exist, so closing is only valid for NULL.
#[no_mangle]
pub unsafe extern "C" fn xenevtchn_close(xce: *mut c_void) -> c_int {
    if xce.is_null() {
        0
    } else {
        ret_int(Err(ShimError::new(
            libc::EBADF,
            "not an event channel handle",
        )))
    }
}

macro_rules! no_evtchn {
    ($( fn $name:ident( $($arg:ident : $ty:ty),* ); )*) => {
        $(
            #[no_mangle]
            pub unsafe extern "C" fn $name(_xce: *mut c_void, $($arg: $ty),*) -> c_int {
                $( let _ = $arg; )*
                ret_int(free_call(stringify!($name), || Err(ShimError::nosys("event channels"))))
            }
        )*
    };
}

no_evtchn! {
    fn xenevtchn_fd();
    fn xenevtchn_notify(port: u32);
    fn xenevtchn_bind_unbound_port(domid: u32);
    fn xenevtchn_bind_interdomain(domid: u32, remote_port: u32);
    fn xenevtchn_bind_virq(virq: c_uint);
    fn xenevtchn_unbind(port: u32);
    fn xenevtchn_pending();
    fn xenevtchn_unmask(port: u32);
    fn xenevtchn_restrict(domid: u16);
}
