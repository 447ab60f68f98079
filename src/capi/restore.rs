//! `xc_domain_restore` behind the C boundary: argument checks, the
//! hypervisor over the caller's `xc_interface`, the caller's logger, the
//! engine, then the `store_mfn`/`console_mfn` outputs.

use std::ffi::{c_int, c_uint, c_ulong};
use std::ptr::NonNull;
use std::rc::Rc;

use super::callbacks::{stream_type_from_raw, CRestoreCallbacks};
use super::fd::FdIo;
use super::logging::XcLog;
use super::types::RestoreCallbacksC;
use super::Failure;
use crate::hv::xen::{XcInterface, XenHypervisor};
use crate::log::{Level, Log};
use crate::restore::{restore_domain_accepting_legacy, RestoreParams};
use crate::toolstack::StreamType;

/// Arguments of `xc_domain_restore`, as received.
pub struct RestoreArgs {
    /// The caller's interface.
    pub xch: *mut XcInterface,
    /// Where the stream comes from.
    pub io_fd: c_int,
    /// The (created, empty) domain to restore into.
    pub dom: u32,
    /// Xenstore event channel for the guest.
    pub store_evtchn: c_uint,
    /// Out: gfn of the xenstore page.
    pub store_mfn: *mut c_ulong,
    /// Domain running xenstored.
    pub store_domid: u32,
    /// Console event channel for the guest.
    pub console_evtchn: c_uint,
    /// Out: gfn of the console page.
    pub console_mfn: *mut c_ulong,
    /// Domain running the console backend.
    pub console_domid: u32,
    /// `xc_stream_type_t`.
    pub stream_type: u32,
    /// `struct restore_callbacks *`, may be NULL.
    pub callbacks: *const RestoreCallbacksC,
    /// COLO back channel to the saver.
    pub send_back_fd: c_int,
}

/// Run one restore; `Err` carries the errno to report.
///
/// # Safety
/// The pointers in `args` must be as `xenguest.h` documents for
/// `xc_domain_restore`: a live `xc_interface *`, writable (or NULL)
/// `store_mfn`/`console_mfn`, and a valid (or NULL) `struct
/// restore_callbacks *` whose callbacks may be called on this thread.
pub unsafe fn restore(args: &RestoreArgs) -> Result<(), Failure> {
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
    let cb = if args.callbacks.is_null() {
        RestoreCallbacksC::none()
    } else {
        // SAFETY: non-NULL and valid per this function's contract; copied.
        unsafe { *args.callbacks }
    };
    let stream_type = stream_type_from_raw(args.stream_type).ok_or_else(|| {
        fail(
            format!(
                "xc_domain_restore: unknown stream type {}",
                args.stream_type
            ),
            libc::EINVAL,
        )
    })?;
    if args.io_fd < 0 {
        return Err(fail(
            format!("xc_domain_restore: bad io_fd {}", args.io_fd),
            libc::EBADF,
        ));
    }

    // SAFETY: `xch` is live and used only by this thread during the call.
    let hv = unsafe { XenHypervisor::new(xch) }
        .map_err(|e| fail(format!("xc_domain_restore: {e}"), e.errno()))?;
    // SAFETY: the caller's callbacks are valid for this call.
    let mut callbacks = unsafe { CRestoreCallbacks::new(cb) };
    let params = RestoreParams {
        store_evtchn: args.store_evtchn,
        store_domid: args.store_domid,
        console_evtchn: args.console_evtchn,
        console_domid: args.console_domid,
        stream_type,
        checkpoint_buffer_limit: super::settings::current_checkpoint_buffer_limit(&*log),
    };
    let timeout = super::settings::current_io_timeout(&*log);
    let mut io = FdIo::with_timeout(args.io_fd, "the stream", timeout);
    // The back channel is written only for COLO, as in libxenguest.
    let mut back = (stream_type == StreamType::Colo && args.send_back_fd >= 0)
        .then(|| FdIo::with_timeout(args.send_back_fd, "the back channel", timeout));
    let back = back.as_mut().map(|b| b as &mut dyn std::io::Write);
    let legacy = super::settings::current_legacy_restore(&*log);
    let res = restore_domain_accepting_legacy(
        &hv,
        args.dom,
        &mut io,
        back,
        &params,
        &mut callbacks,
        legacy,
    );
    let out = res.map_err(|e| {
        if log.reported_error() {
            Failure::Logged(e.errno())
        } else {
            // Every failure must explain itself.
            fail(format!("Restore failed: {e}"), e.errno())
        }
    })?;
    // Written on success only, as libxenguest does; NULL is tolerated.
    if !args.store_mfn.is_null() {
        // SAFETY: non-NULL and writable per this function's contract.
        unsafe { *args.store_mfn = out.store_gfn as c_ulong };
    }
    if !args.console_mfn.is_null() {
        // SAFETY: as above.
        unsafe { *args.console_mfn = out.console_gfn as c_ulong };
    }
    Ok(())
}
