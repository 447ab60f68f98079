//! Unit tests of the C layer against the real libxenctrl, with a dummy
//! interface (`XC_OPENFLAG_DUMMY`: no hypervisor needed) whose logger is a
//! libxentoollog stdio logger writing to a temporary file.

use std::ffi::{c_int, CStr};
use std::io::Read;
use std::ptr::{self, NonNull};

use super::exports::{xc_domain_restore, xc_domain_save, xcmig_version};
use super::logging::XcLog;
use super::types::{RestoreCallbacksC, SaveCallbacksC};
use super::{boundary, Failure};
use crate::hv::xen::bindings as sys;
use crate::log::{Level, Log};

/// A dummy `xc_interface` logging to a temporary file.
struct Dummy {
    xch: *mut sys::xc_interface,
    logger: *mut sys::xentoollog_logger_stdiostream,
    file: *mut libc::FILE,
    path: std::path::PathBuf,
}

impl Dummy {
    fn new(tag: &str) -> Dummy {
        let path =
            std::env::temp_dir().join(format!("xcmig-capi-{tag}-{}.log", std::process::id()));
        let cpath = std::ffi::CString::new(path.to_str().expect("UTF-8 path")).expect("no NUL");
        // SAFETY: FFI calls with valid C strings; results checked.
        unsafe {
            let file = libc::fopen(cpath.as_ptr(), c"w".as_ptr());
            assert!(!file.is_null(), "fopen {}", path.display());
            let logger = sys::xtl_createlogger_stdiostream(file.cast(), sys::XTL_DEBUG, 0);
            assert!(!logger.is_null());
            let xch =
                sys::xc_interface_open(logger.cast(), ptr::null_mut(), sys::XC_OPENFLAG_DUMMY);
            assert!(!xch.is_null(), "xc_interface_open(XC_OPENFLAG_DUMMY)");
            Dummy {
                xch,
                logger,
                file,
                path,
            }
        }
    }

    /// Everything logged so far.
    fn log_text(&self) -> String {
        // SAFETY: FFI call on the open stream.
        unsafe { libc::fflush(self.file) };
        let mut s = String::new();
        std::fs::File::open(&self.path)
            .expect("open log")
            .read_to_string(&mut s)
            .expect("read log");
        s
    }

    fn last_error(&self) -> String {
        // SAFETY: FFI call on the live interface; the message is a
        // NUL-terminated array inside it.
        unsafe {
            let e = sys::xc_get_last_error(self.xch);
            CStr::from_ptr((*e).message.as_ptr())
                .to_string_lossy()
                .into_owned()
        }
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        // SAFETY: each was created in `new` and is released once, the
        // interface before its logger, the logger before its file.
        unsafe {
            sys::xc_interface_close(self.xch);
            sys::xtl_logger_destroy(self.logger.cast());
            libc::fclose(self.file);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn boundary_maps_success_failure_and_panic() {
    assert_eq!(boundary(ptr::null_mut(), "t", || Ok(())), 0);
    assert_eq!(
        boundary(ptr::null_mut(), "t", || Err(Failure::Silent(libc::ENOENT))),
        -1
    );
    assert_eq!(errno(), libc::ENOENT);
    assert_eq!(
        boundary(ptr::null_mut(), "t", || Err(Failure::Logged(0))),
        -1
    );
    assert_eq!(errno(), libc::EIO, "a failure never reports errno 0");
    assert_eq!(boundary(ptr::null_mut(), "t", || panic!("deliberate")), -1);
    assert_eq!(errno(), libc::EIO);
}

#[test]
fn panic_at_the_boundary_reaches_the_callers_logger() {
    let d = Dummy::new("panic");
    assert_eq!(
        boundary(d.xch, "xc_domain_save", || panic!("deliberate test panic")),
        -1
    );
    assert_eq!(errno(), libc::EIO);
    let log = d.log_text();
    assert!(
        log.contains("xc: error: xc_domain_save: internal error in xcmig: deliberate test panic"),
        "{log}"
    );
}

#[test]
fn save_without_interface_fails_with_einval() {
    // SAFETY: exercising the C entry point with a NULL interface, which it
    // must refuse without dereferencing anything.
    let rc = unsafe { xc_domain_save(ptr::null_mut(), 1, 1, 0, ptr::null_mut(), 0, -1) };
    assert_eq!((rc, errno()), (-1, libc::EINVAL));
}

#[test]
fn restore_without_interface_fails_with_einval() {
    let (mut store, mut console) = (7, 7);
    // SAFETY: as above; the outputs must stay untouched.
    let rc = unsafe {
        xc_domain_restore(
            ptr::null_mut(),
            0,
            1,
            1,
            &mut store,
            0,
            2,
            &mut console,
            0,
            0,
            ptr::null_mut(),
            -1,
        )
    };
    assert_eq!((rc, errno()), (-1, libc::EINVAL));
    assert_eq!((store, console), (7, 7));
}

#[test]
fn save_with_null_callbacks_fails_and_says_why_through_xc_report_error() {
    let d = Dummy::new("nullcb");
    // SAFETY: a live dummy interface; NULL callbacks must be refused.
    let rc = unsafe { xc_domain_save(d.xch, 1, 1, 0, ptr::null_mut(), 0, -1) };
    assert_eq!((rc, errno()), (-1, libc::EINVAL));
    let log = d.log_text();
    assert!(
        log.contains("xc: error: xc_domain_save: callbacks is NULL"),
        "{log}"
    );
    // xc_report_error also records it as the interface's last error.
    assert!(
        d.last_error().contains("callbacks is NULL"),
        "{}",
        d.last_error()
    );
}

#[test]
fn save_without_suspend_callback_fails() {
    let d = Dummy::new("nosuspend");
    let mut cb = SaveCallbacksC {
        suspend: None,
        precopy_policy: None,
        postcopy: None,
        checkpoint: None,
        wait_checkpoint: None,
        switch_qemu_logdirty: None,
        data: ptr::null_mut(),
    };
    // SAFETY: a live dummy interface and a valid callbacks struct.
    let rc = unsafe { xc_domain_save(d.xch, 1, 1, 0, &mut cb, 0, -1) };
    assert_eq!((rc, errno()), (-1, libc::EINVAL));
    assert!(
        d.log_text().contains("no suspend callback"),
        "{}",
        d.log_text()
    );
}

#[test]
fn unknown_stream_type_is_refused() {
    let d = Dummy::new("stype");
    let mut cb = RestoreCallbacksC::none();
    let (mut store, mut console) = (0, 0);
    // SAFETY: a live dummy interface, valid outputs and callbacks.
    let rc = unsafe {
        xc_domain_restore(
            d.xch,
            0,
            1,
            1,
            &mut store,
            0,
            2,
            &mut console,
            0,
            9,
            &mut cb,
            -1,
        )
    };
    assert_eq!((rc, errno()), (-1, libc::EINVAL));
    assert!(
        d.log_text().contains("unknown stream type 9"),
        "{}",
        d.log_text()
    );
}

#[test]
fn restore_reports_the_hypervisor_failure_when_xen_is_unreachable() {
    // A dummy interface has no hypervisor behind it: opening foreign memory
    // (or the first domctl) fails, and that must come back as -1 with a
    // message, not a crash.
    let d = Dummy::new("nohv");
    let (mut store, mut console) = (0, 0);
    // SAFETY: a live dummy interface, valid outputs, no callbacks.
    let rc = unsafe {
        xc_domain_restore(
            d.xch,
            0,
            1,
            1,
            &mut store,
            0,
            2,
            &mut console,
            0,
            0,
            ptr::null_mut(),
            -1,
        )
    };
    assert_eq!(rc, -1);
    assert_ne!(errno(), 0);
    assert!(d.log_text().contains("xc: error:"), "{}", d.log_text());
}

#[test]
fn messages_reach_the_logger_with_libxenguest_levels_and_format() {
    let d = Dummy::new("levels");
    // SAFETY: the dummy interface outlives the logger adapter.
    let log = unsafe { XcLog::new(NonNull::new(d.xch).expect("non-null")) };
    log.log(Level::Info, None, "Saving domain 3, type x86 HVM");
    log.log(Level::Detail, None, "detail line");
    log.log(Level::Error, Some(libc::EBADF), "Failed to write");
    assert!(log.reported_error());
    let text = d.log_text();
    assert!(
        text.contains("xc: info: Saving domain 3, type x86 HVM\n"),
        "{text}"
    );
    assert!(text.contains("xc: detail: detail line\n"), "{text}");
    assert!(
        text.contains("xc: error: Failed to write (9 = Bad file descriptor): Internal error\n"),
        "{text}"
    );
}

#[test]
fn progress_steps_reach_the_logger_under_their_prefix() {
    let d = Dummy::new("progress");
    {
        // SAFETY: the dummy interface outlives the logger adapter.
        let log = unsafe { XcLog::new(NonNull::new(d.xch).expect("non-null")) };
        // A milestone (the stdio logger does not print those; the
        // libxl-save-helper drop-in test sees them forwarded).
        log.progress("Start of stream", 0, 0);
        log.progress("Frames", 0, 100);
        log.progress("Frames", 100, 100);
        // A new prefix replaces the old one (whose string is then freed).
        log.progress("Frames iteration 1", 50, 100);
    }
    let text = d.log_text();
    assert!(
        text.contains("xc: progress: Frames: 100/100  100%"),
        "{text}"
    );
    assert!(
        text.contains("xc: progress: Frames iteration 1: 50/100   50%"),
        "{text}"
    );
}

#[test]
fn version_is_the_crate_version() {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(xcmig_version()) };
    assert_eq!(v.to_str().expect("UTF-8"), env!("CARGO_PKG_VERSION"));
}
