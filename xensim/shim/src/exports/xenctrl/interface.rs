//! `xc_interface_open` / `xc_interface_close`: the handle, its two
//! sessions and its loggers.

use std::ffi::{c_int, c_uint};
use std::sync::Arc;

use crate::ctx::{self, Xch};
use crate::ffi::{self, ret_int, ret_ptr};
use crate::iface::{Session, XcInterface, ERROR_MSG_LEN};
use crate::xtl::{self, XtlLogger};

#[no_mangle]
pub unsafe extern "C" fn xc_interface_open(
    logger: *mut XtlLogger,
    dombuild_logger: *mut XtlLogger,
    open_flags: c_uint,
) -> *mut Xch {
    let r = ffi::no_unwind(|| {
        let (error_handler, tofree) = if logger.is_null() {
            let l = xtl::stderr_logger(xtl::XTL_PROGRESS);
            (l, l)
        } else {
            (logger, std::ptr::null_mut())
        };
        let host = match ctx::open_host().and_then(|h| {
            h.fault_point("xc_interface_open")?;
            Ok(h)
        }) {
            Ok(h) => Arc::new(h),
            Err(e) => {
                xtl::log(
                    error_handler,
                    xtl::XTL_ERROR,
                    e.errno,
                    "xc",
                    &format!("xc_interface_open: {e}"),
                );
                xtl::destroy(tofree);
                return Err(e);
            }
        };
        let session = |h: &Arc<xensim::Host>| {
            Box::into_raw(Box::new(Session::new(
                Arc::clone(h),
                error_handler,
                std::ptr::null_mut(),
            )))
        };
        let x = Box::new(XcInterface {
            flags: open_flags as c_int,
            error_handler,
            error_handler_tofree: tofree,
            dombuild_logger,
            dombuild_logger_tofree: std::ptr::null_mut(),
            last_error_code: 0,
            last_error_message: [0; ERROR_MSG_LEN],
            dombuild_logger_file: std::ptr::null_mut(),
            currently_progress_reporting: std::ptr::null(),
            xcall: session(&host),
            fmem: session(&host),
            dmod: std::ptr::null_mut(),
            host: Arc::into_raw(host),
        });
        Ok(Box::into_raw(x))
    });
    ret_ptr(r)
}

#[no_mangle]
pub unsafe extern "C" fn xc_interface_close(xch: *mut Xch) -> c_int {
    if xch.is_null() {
        return 0;
    }
    ret_int(ffi::no_unwind(|| {
        // SAFETY: xch came from Box::into_raw in xc_interface_open and is
        // closed once (C contract).
        let x = unsafe { Box::from_raw(xch) };
        ctx::close_handle(x.xcall);
        ctx::close_handle(x.fmem);
        // SAFETY: host came from Arc::into_raw at open.
        drop(unsafe { Arc::from_raw(x.host) });
        // libxenguest's xc_dom_loginit may have stored a logger for us to free.
        xtl::destroy(x.dombuild_logger_tofree);
        if !x.dombuild_logger_file.is_null() {
            // SAFETY: a FILE* opened by xc_dom_loginit, owned by the interface.
            unsafe { libc::fclose(x.dombuild_logger_file.cast()) };
        }
        xtl::destroy(x.error_handler_tofree);
        Ok(0)
    }))
}
