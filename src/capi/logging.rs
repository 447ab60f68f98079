//! The engines' [`Log`] over the caller's `xc_interface`, reaching the
//! caller's xentoollog logger exactly as libxenguest's messages do:
//!
//! * errors (`Level::Error` and above) through `xc_report_error(xch,
//!   XC_INTERNAL_ERROR, ...)`, like libxenguest's `ERROR`/`PERROR`, which also
//!   records them as the interface's last error (`xc_get_last_error`);
//! * other messages through `xc_report(xch, xch->error_handler, level, 0,
//!   ...)`, like `IPRINTF`/`DPRINTF`/`DBGPRINTF`;
//! * progress through `xc_report_progress_single` and
//!   `xc_set_progress_prefix` + `xc_report_progress_step`.
//!
//! libxenctrl then calls `xtl_log`/`xtl_progress` with context "xc", which is
//! what `libxl-save-helper` forwards to libxl.

use std::cell::{Cell, RefCell};
use std::ffi::{c_ulong, CStr, CString};
use std::ptr::{self, NonNull};

use crate::hv::xen::{self, bindings as sys, XcInterface, XtlLogger};
use crate::log::{Level, Log};

/// `XC_INTERNAL_ERROR` from `enum xc_error_code` (what libxenguest's ERROR
/// and PERROR pass).
const XC_INTERNAL_ERROR: i32 = 1;

/// `printf` format that prints one string argument verbatim.
const FMT_S: &CStr = c"%s";

/// A [`Log`] that writes to the caller's `xc_interface` logger.
pub struct XcLog {
    xch: NonNull<XcInterface>,
    logger: *mut XtlLogger,
    /// The progress prefix libxenctrl points at (`xc_set_progress_prefix`
    /// stores the pointer), kept alive until replaced or until drop.
    prefix: RefCell<Option<CString>>,
    /// Whether an error-level message has been sent.
    reported_error: Cell<bool>,
}

impl XcLog {
    /// Log to `xch`'s logger.
    ///
    /// # Safety
    /// `xch` must be a live `xc_interface *` from `xc_interface_open` that
    /// outlives the returned value and is used by this thread only.
    pub unsafe fn new(xch: NonNull<XcInterface>) -> Self {
        XcLog {
            xch,
            // SAFETY: `xch` is live per this function's contract.
            logger: unsafe { xen::error_handler(xch) },
            prefix: RefCell::new(None),
            reported_error: Cell::new(false),
        }
    }

    /// Whether an error-level message has reached the logger, so that the
    /// C layer can make sure every failed call explains itself.
    pub fn reported_error(&self) -> bool {
        self.reported_error.get()
    }

    /// The errno text libxenctrl gives for `errno` (`xc_strerror`).
    fn strerror(&self, errno: i32) -> String {
        // SAFETY: FFI call; libxenctrl returns a static or thread-local
        // NUL-terminated string, copied out at once.
        let p = unsafe { sys::xc_strerror(self.xch.as_ptr(), errno) };
        if p.is_null() {
            return format!("errno {errno}");
        }
        // SAFETY: `p` is a NUL-terminated string owned by libxenctrl.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// `s` as a C string; interior NULs (never expected) become spaces rather
/// than truncating or dropping the message.
fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).expect("NULs replaced")
}

/// libxenguest's PERROR format, `"<msg> (<errno> = <strerror>)"`, with the
/// errno text only once: a message that already carries it (an I/O error's
/// own text) gets the number alone.
fn with_errno(msg: &str, errno: i32, strerror: &str) -> String {
    if !strerror.is_empty() && msg.contains(strerror) {
        let os = format!(" (os error {errno})");
        let msg = msg.replace(&os, "");
        format!("{msg} (errno {errno})")
    } else {
        format!("{msg} ({errno} = {strerror})")
    }
}

impl Log for XcLog {
    fn log(&self, level: Level, errno: Option<i32>, msg: &str) {
        let text = match errno {
            Some(e) => with_errno(msg, e, &self.strerror(e)),
            None => msg.to_owned(),
        };
        let text = c_text(&text);
        if level >= Level::Error {
            self.reported_error.set(true);
            // SAFETY: FFI call with a "%s" format and one matching C string.
            unsafe {
                sys::xc_report_error(
                    self.xch.as_ptr(),
                    XC_INTERNAL_ERROR,
                    FMT_S.as_ptr(),
                    text.as_ptr(),
                )
            };
        } else if !self.logger.is_null() {
            // SAFETY: FFI call with the interface's own live logger, a "%s"
            // format and one matching C string.
            unsafe {
                sys::xc_report(
                    self.xch.as_ptr(),
                    self.logger,
                    level as sys::xentoollog_level,
                    0,
                    FMT_S.as_ptr(),
                    text.as_ptr(),
                )
            };
        }
    }

    fn progress(&self, doing_what: &str, done: u64, total: u64) {
        if done == 0 && total == 0 {
            let what = c_text(doing_what);
            // SAFETY: FFI call; the string is only read during the call.
            unsafe { sys::xc_report_progress_single(self.xch.as_ptr(), what.as_ptr()) };
            return;
        }
        let mut prefix = self.prefix.borrow_mut();
        if prefix.as_deref().map(CStr::to_bytes) != Some(doing_what.as_bytes()) {
            let p = c_text(doing_what);
            // SAFETY: FFI call; libxenctrl keeps the pointer, and `p` is kept
            // in `self.prefix` until it is replaced here or reset in drop.
            unsafe { sys::xc_set_progress_prefix(self.xch.as_ptr(), p.as_ptr()) };
            *prefix = Some(p);
        }
        // SAFETY: FFI call; a prefix is set just above.
        unsafe {
            sys::xc_report_progress_step(self.xch.as_ptr(), done as c_ulong, total as c_ulong)
        };
    }
}

impl Drop for XcLog {
    fn drop(&mut self) {
        if self.prefix.get_mut().is_some() {
            // SAFETY: FFI call; clears libxenctrl's pointer to our prefix
            // before the string is freed.
            unsafe { sys::xc_set_progress_prefix(self.xch.as_ptr(), ptr::null()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_errno;

    #[test]
    fn errno_text_is_added_once_in_perrors_format() {
        assert_eq!(
            with_errno("xc_domain_getinfo failed", 3, "No such process"),
            "xc_domain_getinfo failed (3 = No such process)"
        );
    }

    #[test]
    fn a_message_already_naming_the_errno_text_gets_the_number_alone() {
        assert_eq!(
            with_errno(
                "domain 7: No such process (os error 3)",
                3,
                "No such process"
            ),
            "domain 7: No such process (errno 3)"
        );
    }
}
