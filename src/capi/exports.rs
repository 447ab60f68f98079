//! Every symbol libxcmig exports. Logic-free on purpose: each function packs
//! its arguments and hands them to [`boundary`], which catches panics and
//! maps the result to the C convention (`0`, or `-1` with `errno`).
//!
//! The prototypes are those of the installed `xenguest.h` (plus
//! `xcmig_version`, declared in `include/xcmig.h`).

use std::ffi::{c_char, c_int, c_uint, c_ulong};

use super::boundary;
use super::restore::{restore, RestoreArgs};
use super::save::{save, SaveArgs};
use super::types::{RestoreCallbacksC, SaveCallbacksC};
use crate::hv::xen::bindings::{xc_interface, xc_stream_type_t};

/// `xc_domain_save()` of `xenguest.h`: save domain `dom` to `io_fd`.
/// Returns 0 on success, -1 with `errno` set on failure.
///
/// # Safety
/// As for libxenguest's: `xch` from `xc_interface_open`, `callbacks` valid
/// with a non-NULL `suspend`, `io_fd` open for writing.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_save(
    xch: *mut xc_interface,
    io_fd: c_int,
    dom: u32,
    flags: u32,
    callbacks: *mut SaveCallbacksC,
    stream_type: xc_stream_type_t,
    recv_fd: c_int,
) -> c_int {
    let args = SaveArgs {
        xch,
        io_fd,
        dom,
        flags,
        callbacks,
        stream_type,
        recv_fd,
    };
    // SAFETY: the caller upholds xenguest.h's contract for these arguments.
    boundary(xch, "xc_domain_save", || unsafe { save(&args) })
}

/// `xc_domain_restore()` of `xenguest.h`: restore domain `dom` from
/// `io_fd`. Returns 0 on success, -1 with `errno` set on failure.
///
/// # Safety
/// As for libxenguest's: `xch` from `xc_interface_open`, `store_mfn` and
/// `console_mfn` writable, `callbacks` valid or NULL, `io_fd` open for
/// reading.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_restore(
    xch: *mut xc_interface,
    io_fd: c_int,
    dom: u32,
    store_evtchn: c_uint,
    store_mfn: *mut c_ulong,
    store_domid: u32,
    console_evtchn: c_uint,
    console_mfn: *mut c_ulong,
    console_domid: u32,
    stream_type: xc_stream_type_t,
    callbacks: *mut RestoreCallbacksC,
    send_back_fd: c_int,
) -> c_int {
    let args = RestoreArgs {
        xch,
        io_fd,
        dom,
        store_evtchn,
        store_mfn,
        store_domid,
        console_evtchn,
        console_mfn,
        console_domid,
        stream_type,
        callbacks,
        send_back_fd,
    };
    // SAFETY: the caller upholds xenguest.h's contract for these arguments.
    boundary(xch, "xc_domain_restore", || unsafe { restore(&args) })
}

/// The xcmig version, e.g. `"0.1.0"`: a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn xcmig_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
