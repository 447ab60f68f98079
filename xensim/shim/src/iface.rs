//! `struct xc_interface_core` as libxenguest sees it, and the handles of the
//! other libraries.
//!
//! libxenguest is compiled against libxenctrl's private header and reads some
//! fields at fixed offsets: `error_handler` (+8), `dombuild_logger` (+24),
//! `xcall` (+1088), `fmem` (+1096); it writes `dombuild_logger` (+24/+32) and
//! `dombuild_logger_file` (+1072) in `xc_dom_loginit`. The first 1112 bytes
//! therefore follow Xen 4.17's layout exactly; our own state follows them.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use crate::xtl::{self, XtlLogger};

/// Length of `last_error.message` (`XC_MAX_ERROR_MSG_LEN`).
pub const ERROR_MSG_LEN: usize = 1024;

/// What a library handle needs: the host and a logger.
pub struct Session<H> {
    /// The simulated host (shared by the handles of one `xc_interface`).
    pub host: Arc<H>,
    /// Logger for this handle (may be NULL: messages are dropped).
    pub logger: *mut XtlLogger,
    /// A logger we created and must destroy on close.
    pub logger_tofree: *mut XtlLogger,
    /// Domain this handle is restricted to (`xenforeignmemory_restrict`),
    /// or `u32::MAX` for none.
    pub restricted: AtomicU32,
}

impl<H> Session<H> {
    /// A handle on `host` logging to `logger`; `tofree` is destroyed on drop.
    pub fn new(host: Arc<H>, logger: *mut XtlLogger, tofree: *mut XtlLogger) -> Self {
        Session {
            host,
            logger,
            logger_tofree: tofree,
            restricted: AtomicU32::new(u32::MAX),
        }
    }
}

impl<H> Drop for Session<H> {
    fn drop(&mut self) {
        xtl::destroy(self.logger_tofree);
    }
}

/// `struct xc_interface_core` (Xen 4.17 `tools/libs/ctrl/xc_private.h`) followed by
/// our own state.
#[repr(C)]
pub struct XcInterface<H> {
    /// `open_flags` of `xc_interface_open`.
    pub flags: c_int,
    /// Logger for errors and progress (read by libxenguest at +8).
    pub error_handler: *mut XtlLogger,
    /// The logger we created when the caller passed none.
    pub error_handler_tofree: *mut XtlLogger,
    /// Domain-builder logger (read by libxenguest at +24; may be NULL).
    pub dombuild_logger: *mut XtlLogger,
    /// Written by libxenguest's `xc_dom_loginit`.
    pub dombuild_logger_tofree: *mut XtlLogger,
    /// `last_error.code`.
    pub last_error_code: c_int,
    /// `last_error.message`.
    pub last_error_message: [c_char; ERROR_MSG_LEN],
    /// Written by libxenguest's `xc_dom_loginit`.
    pub dombuild_logger_file: *mut c_void,
    /// Progress prefix (`xc_set_progress_prefix`).
    pub currently_progress_reporting: *const c_char,
    /// The `xencall_handle*` passed to `xencall1` (read at +1088).
    pub xcall: *mut Session<H>,
    /// The `xenforeignmemory_handle*` (read at +1096).
    pub fmem: *mut Session<H>,
    /// `xendevicemodel_handle*`: unused by save/restore, always NULL.
    pub dmod: *mut c_void,
    /// Our state: the host this interface talks to.
    pub host: *const H,
}

impl<H> XcInterface<H> {
    /// Records `msg` as the last error (what `xc_get_last_error` would show).
    pub fn set_last_error(&mut self, code: c_int, msg: &str) {
        self.last_error_code = code;
        let bytes = msg.as_bytes();
        let n = bytes.len().min(ERROR_MSG_LEN - 1);
        for (d, &s) in self.last_error_message.iter_mut().zip(&bytes[..n]) {
            *d = s as c_char;
        }
        self.last_error_message[n] = 0;
    }

    /// The host; valid while the interface is open.
    pub fn host(&self) -> &H {
        // SAFETY: `host` is set from Arc::into_raw at open and released only
        // at close, after which the C caller may not use the interface.
        unsafe { &*self.host }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    type X = XcInterface<()>;

    #[test]
    fn layout_matches_xen_4_17_private_struct() {
        assert_eq!(offset_of!(X, flags), 0);
        assert_eq!(offset_of!(X, error_handler), 8);
        assert_eq!(offset_of!(X, error_handler_tofree), 16);
        assert_eq!(offset_of!(X, dombuild_logger), 24);
        assert_eq!(offset_of!(X, dombuild_logger_tofree), 32);
        assert_eq!(offset_of!(X, last_error_code), 40);
        assert_eq!(offset_of!(X, last_error_message), 44);
        assert_eq!(offset_of!(X, dombuild_logger_file), 1072);
        assert_eq!(offset_of!(X, currently_progress_reporting), 1080);
        assert_eq!(offset_of!(X, xcall), 1088);
        assert_eq!(offset_of!(X, fmem), 1096);
        assert_eq!(offset_of!(X, dmod), 1104);
        assert_eq!(offset_of!(X, host), 1112);
        assert!(size_of::<X>() >= 1112);
    }

    #[test]
    fn last_error_is_truncated_and_terminated() {
        let mut x: Box<X> = Box::new(XcInterface {
            flags: 0,
            error_handler: std::ptr::null_mut(),
            error_handler_tofree: std::ptr::null_mut(),
            dombuild_logger: std::ptr::null_mut(),
            dombuild_logger_tofree: std::ptr::null_mut(),
            last_error_code: 0,
            last_error_message: [1; ERROR_MSG_LEN],
            dombuild_logger_file: std::ptr::null_mut(),
            currently_progress_reporting: std::ptr::null(),
            xcall: std::ptr::null_mut(),
            fmem: std::ptr::null_mut(),
            dmod: std::ptr::null_mut(),
            host: std::ptr::null(),
        });
        x.set_last_error(1, &"e".repeat(5000));
        assert_eq!(x.last_error_code, 1);
        assert_eq!(x.last_error_message[ERROR_MSG_LEN - 1], 0);
        assert_eq!(x.last_error_message[0], b'e' as c_char);
        x.set_last_error(2, "ab");
        assert_eq!(
            &x.last_error_message[..3],
            &[b'a' as c_char, b'b' as c_char, 0]
        );
    }
}
