//! Calls into the real libxentoollog (the loggers belong to the caller).

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CString};

/// `xentoollog_level`: debug.
pub const XTL_DEBUG: c_int = 1;
/// `xentoollog_level`: verbose.
pub const XTL_VERBOSE: c_int = 2;
/// `xentoollog_level`: detail.
pub const XTL_DETAIL: c_int = 3;
/// `xentoollog_level`: progress.
pub const XTL_PROGRESS: c_int = 4;
/// `xentoollog_level`: info.
pub const XTL_INFO: c_int = 5;
/// `xentoollog_level`: error.
pub const XTL_ERROR: c_int = 8;

/// Opaque `xentoollog_logger`.
#[repr(C)]
pub struct XtlLogger {
    _opaque: [u8; 0],
}

#[link(name = "xentoollog")]
extern "C" {
    fn xtl_log(
        logger: *mut XtlLogger,
        level: c_int,
        errnoval: c_int,
        context: *const c_char,
        format: *const c_char,
        ...
    );
    fn xtl_progress(
        logger: *mut XtlLogger,
        context: *const c_char,
        doing_what: *const c_char,
        done: c_ulong,
        total: c_ulong,
    );
    fn xtl_createlogger_stdiostream(
        f: *mut c_void,
        min_level: c_int,
        flags: c_uint,
    ) -> *mut XtlLogger;
    fn xtl_logger_destroy(logger: *mut XtlLogger);
}

extern "C" {
    /// glibc's `stderr` stream.
    static stderr: *mut c_void;
}

fn cstring(s: &str) -> CString {
    // Interior NULs cannot be passed to C; replace them rather than drop the message.
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// Logs `msg` (already formatted) through `logger`; a NULL logger drops it.
pub(crate) fn log(logger: *mut XtlLogger, level: c_int, errnoval: c_int, context: &str, msg: &str) {
    if logger.is_null() {
        return;
    }
    let ctx = cstring(context);
    let text = cstring(msg);
    // SAFETY: logger is a live xentoollog_logger supplied by the caller of
    // xc_interface_open (or one we created); the format is a literal "%s" with
    // one NUL-terminated string argument.
    unsafe {
        xtl_log(
            logger,
            level,
            errnoval,
            ctx.as_ptr(),
            c"%s".as_ptr(),
            text.as_ptr(),
        )
    };
}

/// Reports progress through `logger`; a NULL logger drops it.
pub(crate) fn progress(
    logger: *mut XtlLogger,
    context: &str,
    doing: *const c_char,
    done: u64,
    total: u64,
) {
    if logger.is_null() || doing.is_null() {
        return;
    }
    let ctx = cstring(context);
    // SAFETY: logger is live (see `log`); doing is a NUL-terminated string the
    // C caller passed us and still owns.
    unsafe {
        xtl_progress(
            logger,
            ctx.as_ptr(),
            doing,
            done as c_ulong,
            total as c_ulong,
        )
    };
}

/// A logger writing to stderr at `min_level` and above, as libxenctrl creates
/// when the caller passes none. NULL if libxentoollog could not allocate it.
pub(crate) fn stderr_logger(min_level: c_int) -> *mut XtlLogger {
    // SAFETY: `stderr` is glibc's process-wide FILE*, valid for the life of the
    // process; xtl_createlogger_stdiostream only stores and writes to it.
    unsafe { xtl_createlogger_stdiostream(stderr, min_level, 0) }
}

/// Destroys a logger created by [`stderr_logger`]; NULL is ignored.
pub(crate) fn destroy(logger: *mut XtlLogger) {
    if !logger.is_null() {
        // SAFETY: only loggers we created (and own) are passed here, once.
        unsafe { xtl_logger_destroy(logger) };
    }
}
