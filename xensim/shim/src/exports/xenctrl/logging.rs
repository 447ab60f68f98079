//! Error reporting and progress: the message sink of the variadic
//! `xc_report*` (in `c/variadic.c`), `xc_strerror`, the last error and the
//! progress callbacks.

use std::ffi::{c_char, c_int, c_ulong, c_void};

use crate::ctx::Xch;
use crate::ffi::{self};
use crate::xtl::{self, XtlLogger};

/// Called by the variadic functions in `c/variadic.c` with the formatted
/// message. Stores errors as the interface's last error, then logs as
/// libxenctrl does: context "xc", the message and the error code's meaning.
#[no_mangle]
pub unsafe extern "C" fn xensim_shim_report_msg(
    xch: *mut Xch,
    lg: *mut XtlLogger,
    use_error_handler: c_int,
    level: c_int,
    code: c_int,
    msg: *const c_char,
) {
    let _ = ffi::no_unwind(|| {
        // SAFETY: msg is the NUL-terminated buffer formatted by variadic.c.
        let text = unsafe { ffi::c_str(msg, "message") }?;
        let text = text.strip_suffix('\n').unwrap_or(&text).to_string();
        // SAFETY: xch is NULL or a live interface (C contract of xc_report).
        let x = unsafe { xch.as_mut() };
        let mut logger = lg;
        if let Some(x) = x {
            if use_error_handler != 0 {
                logger = x.error_handler;
            }
            if level >= xtl::XTL_ERROR {
                x.set_last_error(code, &text);
            }
        }
        let line = if code != 0 {
            // SAFETY: returns a static string.
            let desc = unsafe { std::ffi::CStr::from_ptr(xc_error_code_to_desc(code)) };
            format!("{text}: {}", desc.to_string_lossy())
        } else {
            text
        };
        xtl::log(logger, level, -1, "xc", &line);
        Ok(())
    });
}

/// `XC_OPENFLAG_NON_REENTRANT`: the caller promised a single thread.
const XC_OPENFLAG_NON_REENTRANT: c_int = 1 << 1;
/// libxenctrl's per-thread copy of the text holds 31 characters and a NUL.
const STRERROR_BUF_LEN: usize = 32;

/// The C library's text for `errcode`, as libxenctrl returns it: copied into
/// a per-thread buffer of [`STRERROR_BUF_LEN`] bytes (so cut to 31
/// characters), or whole for an interface opened `XC_OPENFLAG_NON_REENTRANT`.
#[no_mangle]
pub unsafe extern "C" fn xc_strerror(xch: *mut Xch, errcode: c_int) -> *const c_char {
    thread_local! {
        static BUF: std::cell::RefCell<[c_char; 128]> = const { std::cell::RefCell::new([0; 128]) };
    }
    let r = ffi::no_unwind(|| {
        // SAFETY: NULL or a live interface (C contract).
        let whole =
            unsafe { xch.as_ref() }.is_some_and(|x| x.flags & XC_OPENFLAG_NON_REENTRANT != 0);
        let text = crate::error::strerror(errcode);
        Ok(BUF.with(|b| {
            let mut b = b.borrow_mut();
            let cap = if whole { b.len() } else { STRERROR_BUF_LEN };
            let n = text.len().min(cap - 1);
            for (d, &s) in b.iter_mut().zip(&text.as_bytes()[..n]) {
                *d = s as c_char;
            }
            b[n] = 0;
            // The buffer lives as long as the thread, like libxenctrl's.
            b.as_ptr()
        }))
    });
    r.unwrap_or(c"Unknown error".as_ptr())
}

#[no_mangle]
pub unsafe extern "C" fn xc_set_progress_prefix(
    xch: *mut Xch,
    doing: *const c_char,
) -> *const c_char {
    // SAFETY: live interface (C contract).
    match unsafe { xch.as_mut() } {
        Some(x) => std::mem::replace(&mut x.currently_progress_reporting, doing),
        None => std::ptr::null(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn xc_report_progress_single(xch: *mut Xch, doing: *const c_char) {
    let _ = ffi::no_unwind(|| {
        // SAFETY: live interface (C contract).
        if let Some(x) = unsafe { xch.as_ref() } {
            xtl::progress(x.error_handler, "xc", doing, 0, 0);
        }
        Ok(())
    });
}

#[no_mangle]
pub unsafe extern "C" fn xc_report_progress_step(xch: *mut Xch, done: c_ulong, total: c_ulong) {
    let _ = ffi::no_unwind(|| {
        // SAFETY: live interface (C contract).
        if let Some(x) = unsafe { xch.as_ref() } {
            xtl::progress(
                x.error_handler,
                "xc",
                x.currently_progress_reporting,
                done,
                total,
            );
        }
        Ok(())
    });
}

/// `xc_get_last_error`: returns `&xch->last_error` (`{int code; char message[1024]}`).
#[no_mangle]
pub unsafe extern "C" fn xc_get_last_error(xch: *mut Xch) -> *const c_void {
    // SAFETY: live interface (C contract); the field is inside it.
    match unsafe { xch.as_ref() } {
        Some(x) => (&x.last_error_code as *const c_int).cast(),
        None => std::ptr::null(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn xc_clear_last_error(xch: *mut Xch) {
    // SAFETY: live interface (C contract).
    if let Some(x) = unsafe { xch.as_mut() } {
        x.set_last_error(0, "");
    }
}

#[no_mangle]
pub unsafe extern "C" fn xc_error_code_to_desc(code: c_int) -> *const c_char {
    match code {
        0 => c"No error details".as_ptr(),
        1 => c"Internal error".as_ptr(),
        2 => c"Invalid kernel".as_ptr(),
        3 => c"Invalid configuration".as_ptr(),
        4 => c"Out of memory".as_ptr(),
        _ => c"Unknown error code".as_ptr(),
    }
}
