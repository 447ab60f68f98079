//! The C ABI: `xc_domain_save` and `xc_domain_restore` with the prototypes
//! of the installed `xenguest.h`, plus `xcmig_version`.
//!
//! Layout of this layer, the only code in xcmig that knows C (only
//! `exports` and `types` are public; the rest is the crate's own):
//!
//! * [`exports`]: the exported functions, logic-free: each packs its
//!   arguments and goes through `boundary`, the single place where panics
//!   are caught and results become `0` or `-1` + `errno`;
//! * `save`, `restore`: argument checks, then the engines over
//!   [`XenHypervisor`](crate::hv::xen::XenHypervisor) with the caller's
//!   `xc_interface *`;
//! * `callbacks`: `struct save_callbacks`/`restore_callbacks` as the
//!   engines' callback traits;
//! * `logging`: messages and progress to the caller's xentoollog logger
//!   through libxenctrl, as libxenguest sends them;
//! * [`types`]: `#[repr(C)]` mirrors of the `xenguest.h` structs, checked
//!   against bindgen's layouts at compile time;
//! * `fd`: I/O on the caller's descriptors;
//! * `settings`: the process-wide live migration settings
//!   (`xcmig_set_*`, `XCMIG_*` environment variables).

pub(crate) mod callbacks;
pub mod exports;
pub(crate) mod fd;
pub(crate) mod logging;
pub(crate) mod restore;
pub(crate) mod save;
pub(crate) mod settings;
pub mod types;

#[cfg(test)]
mod tests;

use std::ffi::{c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::hv::xen::{bindings as sys, XcInterface};

/// How a call failed: the errno to report, and whether the reason has
/// already reached the caller's logger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Logged through the caller's `xc_interface`.
    Logged(i32),
    /// Nothing could be logged (no `xc_interface`).
    Silent(i32),
}

/// errno reported when xcmig itself failed (a panic caught at the boundary).
const INTERNAL_ERRNO: i32 = libc::EIO;

fn set_errno(e: i32) {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// Run one C entry point: `0` on success, `-1` with `errno` set on failure;
/// a panic is caught, reported to `xch`'s logger and turned into `-1`.
pub fn boundary(
    xch: *mut XcInterface,
    what: &str,
    f: impl FnOnce() -> Result<(), Failure>,
) -> c_int {
    let errno = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return 0,
        Ok(Err(Failure::Logged(e) | Failure::Silent(e))) => e,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            report_panic(xch, what, &why);
            INTERNAL_ERRNO
        }
    };
    set_errno(if errno > 0 { errno } else { INTERNAL_ERRNO });
    -1
}

/// Tell the caller's logger that `what` failed on an internal error.
fn report_panic(xch: *mut XcInterface, what: &str, why: &str) {
    if xch.is_null() {
        return;
    }
    let msg = format!("{what}: internal error in xcmig: {why}");
    let Ok(msg) = CString::new(msg.replace('\0', " ")) else {
        return;
    };
    // Logging must not unwind out of the boundary either.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: FFI call on the caller's live interface, with a "%s" format
        // and one matching C string.
        unsafe { sys::xc_report_error(xch, 1, c"%s".as_ptr(), msg.as_ptr()) };
    }));
}
