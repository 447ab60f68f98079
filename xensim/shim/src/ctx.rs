//! Entry plumbing shared by every exported function: resolve the handle,
//! check injected faults, run the operation without unwinding into C, and log
//! failures through the handle's logger.

use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use xensim::Host;

use crate::error::{ShimError, ShimResult};
use crate::ffi;
use crate::iface::{Session, XcInterface};
use crate::xtl::{self, XtlLogger};

/// `xc_interface*` on the simulated host.
pub type Xch = XcInterface<Host>;
/// `xencall_handle*`, `xenforeignmemory_handle*`: a host plus a logger.
pub type Handle = Session<Host>;

/// Environment variable naming the host directory.
pub const HOST_ENV: &str = "XENSIM_HOST";

/// Opens the host named by `XENSIM_HOST`. Unlike `Host::open`, a missing
/// directory is an error: a toolstack must not silently get an empty host.
pub fn open_host() -> ShimResult<Host> {
    let dir = std::env::var_os(HOST_ENV).ok_or_else(|| {
        ShimError::new(
            libc::ENOENT,
            format!("{HOST_ENV} is not set: no simulated host to talk to"),
        )
    })?;
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        return Err(ShimError::new(
            libc::ENOENT,
            format!("{HOST_ENV}={} is not a directory", dir.display()),
        ));
    }
    Host::open(&dir).map_err(|e| {
        ShimError::new(
            e.errno(),
            // The errno is named once, by ShimError's Display.
            format!(
                "cannot open simulated host {}: {}",
                dir.display(),
                e.message()
            ),
        )
    })
}

/// A process-wide host for entry points that take no handle (`read_exact`
/// and friends), so faults can be injected there too. `None` when
/// `XENSIM_HOST` names no usable host.
fn ambient_host() -> Option<&'static Host> {
    static HOST: OnceLock<Option<Host>> = OnceLock::new();
    HOST.get_or_init(|| open_host().ok()).as_ref()
}

/// Runs an entry point that has no handle.
pub(crate) fn free_call<T>(call: &str, f: impl FnOnce() -> ShimResult<T>) -> ShimResult<T> {
    ffi::no_unwind(|| {
        if let Some(h) = ambient_host() {
            h.fault_point(call)?;
        }
        f()
    })
}

/// Runs an `xc_*` entry point on `xch`.
pub(crate) fn xc_call<T>(
    xch: *mut Xch,
    call: &str,
    f: impl FnOnce(&mut Xch) -> ShimResult<T>,
) -> ShimResult<T> {
    ffi::no_unwind(|| {
        // SAFETY: a non-NULL xch was returned by xc_interface_open and not yet
        // closed (the C contract); libxenguest uses it from one thread.
        let x = unsafe { ffi::opt_mut(xch, "xc_interface") }?;
        let logger = x.error_handler;
        let r = x
            .host()
            .fault_point(call)
            .map_err(ShimError::from)
            .and_then(|_| f(x));
        if let Err(e) = &r {
            log_failure(logger, call, e);
        }
        r
    })
}

/// Runs an entry point of libxencall/libxenforeignmemory on handle `h`.
pub(crate) fn handle_call<T>(
    h: *mut Handle,
    call: &str,
    f: impl FnOnce(&Handle) -> ShimResult<T>,
) -> ShimResult<T> {
    ffi::no_unwind(|| {
        // SAFETY: a non-NULL handle came from our *_open and is not closed.
        let s = unsafe { ffi::opt_ref(h.cast_const(), "handle") }?;
        let r = s
            .host
            .fault_point(call)
            .map_err(ShimError::from)
            .and_then(|_| f(s));
        if let Err(e) = &r {
            log_failure(s.logger, call, e);
        }
        r
    })
}

/// Logs why a call failed. Debug level: the caller reports the failure in
/// its own words, as with real Xen.
pub(crate) fn log_failure(logger: *mut XtlLogger, call: &str, e: &ShimError) {
    let text = if e.msg.starts_with(call) {
        e.to_string()
    } else {
        format!("{call}: {e}")
    };
    xtl::log(logger, xtl::XTL_DEBUG, -1, "xensim", &text);
}

/// Opens a handle for libxencall/libxenforeignmemory/libxenevtchn: the host
/// from `XENSIM_HOST`, and the caller's logger or one of ours on stderr.
pub(crate) fn open_handle(logger: *mut XtlLogger, call: &str) -> ShimResult<*mut Handle> {
    let host = Arc::new(open_host()?);
    host.fault_point(call)?;
    let (logger, tofree) = if logger.is_null() {
        let l = xtl::stderr_logger(xtl::XTL_ERROR);
        (l, l)
    } else {
        (logger, std::ptr::null_mut())
    };
    Ok(Box::into_raw(Box::new(Session::new(host, logger, tofree))))
}

/// Closes a handle from [`open_handle`]; NULL is accepted.
pub(crate) fn close_handle(h: *mut Handle) -> c_int {
    if h.is_null() {
        return 0;
    }
    ffi::ret_int(ffi::no_unwind(|| {
        // SAFETY: h came from Box::into_raw in open_handle and is closed once.
        drop(unsafe { Box::from_raw(h) });
        Ok(0)
    }))
}
