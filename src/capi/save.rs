//! `xc_domain_save` behind the C boundary: argument checks, the hypervisor
//! over the caller's `xc_interface`, the caller's logger, then the engine.

use std::ffi::c_int;
use std::ptr::NonNull;
use std::rc::Rc;

use super::callbacks::{stream_type_from_raw, CSaveCallbacks};
use super::fd::FdIo;
use super::logging::XcLog;
use super::types::SaveCallbacksC;
use super::Failure;
use crate::hv::xen::{XcInterface, XenHypervisor};
use crate::log::{Level, Log};
use crate::save::{save_domain_with_back_channel, SaveParams};
use crate::toolstack::StreamType;

/// Arguments of `xc_domain_save`, as received.
pub struct SaveArgs {
    /// The caller's interface.
    pub xch: *mut XcInterface,
    /// Where the stream goes.
    pub io_fd: c_int,
    /// The domain to save.
    pub dom: u32,
    /// `XCFLAGS_*`.
    pub flags: u32,
    /// `struct save_callbacks *`.
    pub callbacks: *const SaveCallbacksC,
    /// `xc_stream_type_t`.
    pub stream_type: u32,
    /// COLO back channel from the restorer.
    pub recv_fd: c_int,
}

/// `XCFLAGS_LIVE`: live migration (pre-copy over log-dirty).
pub const XCFLAGS_LIVE: u32 = 1 << 0;
/// `XCFLAGS_DEBUG`: send a VERIFY record and all pages again at the end.
pub const XCFLAGS_DEBUG: u32 = 1 << 1;

/// Run one save; `Err` carries the errno to report.
///
/// # Safety
/// The pointers in `args` must be as `xenguest.h` documents for
/// `xc_domain_save`: a live `xc_interface *` and a valid (or NULL)
/// `struct save_callbacks *` whose callbacks may be called on this thread.
pub unsafe fn save(args: &SaveArgs) -> Result<(), Failure> {
    let xch = NonNull::new(args.xch).ok_or(Failure::Silent(libc::EINVAL))?;
    // SAFETY: `xch` is live for this call (contract of this function).
    let log = Rc::new(unsafe { XcLog::new(xch) });
    // The library's messages during this call go to the caller's logger.
    crate::log::install_forwarder();
    let _sink = crate::log::scoped(log.clone());
    let fail = |msg: String, errno: i32| {
        log.log(Level::Error, None, &msg);
        Failure::Logged(errno)
    };
    if args.callbacks.is_null() {
        return Err(fail(
            "xc_domain_save: callbacks is NULL".into(),
            libc::EINVAL,
        ));
    }
    // SAFETY: non-NULL and valid per this function's contract; copied so
    // that later changes by the caller do not race with the engine.
    let cb = unsafe { *args.callbacks };
    if cb.suspend.is_none() {
        return Err(fail(
            "xc_domain_save: no suspend callback".into(),
            libc::EINVAL,
        ));
    }
    let stream_type = stream_type_from_raw(args.stream_type).ok_or_else(|| {
        fail(
            format!("xc_domain_save: unknown stream type {}", args.stream_type),
            libc::EINVAL,
        )
    })?;
    if args.io_fd < 0 {
        return Err(fail(
            format!("xc_domain_save: bad io_fd {}", args.io_fd),
            libc::EBADF,
        ));
    }

    // SAFETY: `xch` is live and used only by this thread during the call.
    let hv = unsafe { XenHypervisor::new(xch) }
        .map_err(|e| fail(format!("xc_domain_save: {e}"), e.errno()))?;
    // SAFETY: the caller's callbacks are valid for this call.
    let mut callbacks = unsafe { CSaveCallbacks::new(cb) };
    let mut params = SaveParams {
        live: args.flags & XCFLAGS_LIVE != 0,
        debug: args.flags & XCFLAGS_DEBUG != 0,
        stream_type,
        precopy: Default::default(),
        // Every save, live or not: an `xl save` to a slow disk gains as
        // much as a migration.
        compression: super::settings::current_compression(&*log),
    };
    if params.live {
        // The process-wide live migration settings (C API, environment).
        params.precopy = super::settings::current(&*log);
    }
    let timeout = super::settings::current_io_timeout(&*log);
    let mut io = FdIo::with_timeout(args.io_fd, "the stream", timeout);
    // The back channel is read only for COLO, as in libxenguest (libxl
    // passes a dup of its stdin for plain saves).
    let mut back = (stream_type == StreamType::Colo && args.recv_fd >= 0)
        .then(|| FdIo::with_timeout(args.recv_fd, "the back channel", timeout));
    let back = back.as_mut().map(|b| b as &mut dyn std::io::Read);
    match save_domain_with_back_channel(
        &hv,
        args.dom,
        &mut io,
        back,
        &params,
        &mut callbacks,
        &*log,
    ) {
        Ok(_) => Ok(()),
        Err(e) if log.reported_error() => Err(Failure::Logged(e.errno())),
        // Every failure must explain itself, even one the engine passed up
        // without a message.
        Err(e) => Err(fail(format!("Save failed: {e}"), e.errno())),
    }
}
