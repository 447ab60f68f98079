//! Exports of `libxenctrl.so.4.17` (version node `VERS_4.17.0`; the list is
//! `vers/libxenctrl.map`). The variadic `xc_report`, `xc_report_error` and
//! `xc_reportv` are in `c/variadic.c` and call [`xensim_shim_report_msg`].
//!
//! Safety contract of every function: the one documented in Xen 4.17's
//! `xenctrl.h` / `xc_private.h` for the function of the same name.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_long, c_longlong, c_uint, c_ulong, c_void};
use std::sync::Arc;

use xensim::{DomId, TscInfo};

use crate::abi::{self, domaininfo, dominfo};
use crate::ctx::{self, free_call, xc_call, Xch};
use crate::dispatch;
use crate::error::{ShimError, ShimResult};
use crate::fdio;
use crate::ffi::{self, ret_int, ret_ptr};
use crate::fmap;
use crate::hcall::{self, HypercallBuffer, PAGE_SIZE};
use crate::iface::{Session, XcInterface, ERROR_MSG_LEN};
use crate::xtl::{self, XtlLogger};

/// `XENVER_version`.
const XENVER_VERSION: c_int = 0;
/// `XENVER_extraversion`: `char[16]`.
const XENVER_EXTRAVERSION: c_int = 1;
/// `XENVER_capabilities`: `char[1024]`.
const XENVER_CAPABILITIES: c_int = 3;
/// `XENVER_changeset`: `char[64]`.
const XENVER_CHANGESET: c_int = 4;
/// `XENVER_platform_parameters`: `{ u64 virt_start }`.
const XENVER_PLATFORM_PARAMETERS: c_int = 5;
/// `XENVER_pagesize`.
const XENVER_PAGESIZE: c_int = 7;
/// Hypervisor virtual start on x86-64 (`HYPERVISOR_VIRT_START`).
const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// `sizeof(privcmd_mmap_entry_t)`: `{u64 va, u64 mfn, u64 npages}`.
const MMAP_ENTRY_SIZE: usize = 24;

fn domain(x: &Xch, domid: u32) -> ShimResult<xensim::Domain> {
    Ok(x.host().domain(domid as DomId)?)
}

/// Resolves `DECLARE_HYPERCALL_BUFFER_SHADOW` indirection as Xen's
/// `HYPERCALL_BUFFER_AS_ARG` does.
fn hbuf_of(b: *mut HypercallBuffer) -> ShimResult<*mut c_void> {
    if b.is_null() {
        return Ok(std::ptr::null_mut());
    }
    // SAFETY: a non-NULL hypercall buffer descriptor from the caller.
    let hb = unsafe { ffi::opt_ref(b.cast_const(), "hypercall buffer") }?;
    if hb.param_shadow.is_null() {
        return Ok(hb.hbuf);
    }
    // SAFETY: param_shadow points at the caller's real descriptor.
    Ok(unsafe { ffi::opt_ref(hb.param_shadow.cast_const(), "shadow buffer") }?.hbuf)
}

/// Maps `frames` of `domid`, all or nothing (`err == NULL` semantics).
pub(crate) fn map_all(x: &Xch, domid: u32, prot: c_int, frames: &[u64]) -> ShimResult<*mut u8> {
    fmap::map_all(&domain(x, domid)?, frames, prot)
}

// ---------------------------------------------------------------- interface

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

// ------------------------------------------------------------------ logging

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

// ----------------------------------------------------------------- file I/O

#[no_mangle]
pub unsafe extern "C" fn read_exact(fd: c_int, data: *mut c_void, size: usize) -> c_int {
    ret_int(free_call("read_exact", || {
        // SAFETY: data holds size bytes (C contract).
        let buf = unsafe { ffi::slice_mut(data.cast::<u8>(), size, "data") }?;
        fdio::read_exact(fd, buf).map(|_| 0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn write_exact(fd: c_int, data: *const c_void, size: usize) -> c_int {
    ret_int(free_call("write_exact", || {
        // SAFETY: data holds size bytes (C contract).
        let buf = unsafe { ffi::slice(data.cast::<u8>(), size, "data") }?;
        fdio::write_exact(fd, buf).map(|_| 0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn writev_exact(fd: c_int, iov: *const libc::iovec, iovcnt: c_int) -> c_int {
    ret_int(free_call("writev_exact", || {
        let n = usize::try_from(iovcnt).map_err(|_| ShimError::inval("negative iovcnt"))?;
        // SAFETY: iov holds iovcnt entries (C contract).
        let v = unsafe { ffi::slice(iov, n, "iov") }?;
        fdio::writev_exact(fd, v).map(|_| 0)
    }))
}

/// Flushes (optionally) and drops the page cache of a file, as a save to a
/// file does to avoid polluting the cache.
#[no_mangle]
pub unsafe extern "C" fn discard_file_cache(_xch: *mut Xch, fd: c_int, flush: c_int) {
    let _ = free_call("discard_file_cache", || {
        if flush != 0 {
            // SAFETY: plain syscalls on a caller-owned descriptor.
            unsafe { libc::fdatasync(fd) };
        }
        // SAFETY: advisory only; invalid descriptors just return an error.
        unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        Ok(())
    });
}

// -------------------------------------------------------- hypercall buffers

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_buffer_alloc_pages(
    xch: *mut Xch,
    b: *mut HypercallBuffer,
    nr_pages: c_int,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc__hypercall_buffer_alloc_pages", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        let n = usize::try_from(nr_pages).map_err(|_| ShimError::inval("negative page count"))?;
        hcall::alloc_pages(b, n)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_buffer_free_pages(
    xch: *mut Xch,
    b: *mut HypercallBuffer,
    nr_pages: c_int,
) {
    let _ = xc_call(xch, "xc__hypercall_buffer_free_pages", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        hcall::free_pages(b, usize::try_from(nr_pages).unwrap_or(0));
        Ok(())
    });
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_buffer_alloc(
    xch: *mut Xch,
    b: *mut HypercallBuffer,
    size: usize,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc__hypercall_buffer_alloc", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        hcall::alloc(b, size)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_buffer_free(xch: *mut Xch, b: *mut HypercallBuffer) {
    let _ = xc_call(xch, "xc__hypercall_buffer_free", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        hcall::free(b);
        Ok(())
    });
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_bounce_pre(xch: *mut Xch, b: *mut HypercallBuffer) -> c_int {
    let r = xc_call(xch, "xc__hypercall_bounce_pre", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        Ok(hcall::bounce_pre(b))
    });
    match r {
        Ok(Ok(inner)) => ret_int(inner.map(|_| 0)),
        // A bounce buffer not declared with DECLARE_HYPERCALL_BOUNCE is a
        // programming error in the caller; libxenctrl aborts too.
        Ok(Err(hcall::BounceFault::Misdeclared)) => std::process::abort(),
        Err(e) => ret_int(Err(e)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn xc__hypercall_bounce_post(xch: *mut Xch, b: *mut HypercallBuffer) {
    let _ = xc_call(xch, "xc__hypercall_bounce_post", |_| {
        // SAFETY: b is the caller's descriptor (C contract).
        let b = unsafe { ffi::opt_mut(b, "hypercall buffer") }?;
        hcall::bounce_post(b);
        Ok(())
    });
}

// ------------------------------------------------------------------ version

#[no_mangle]
pub unsafe extern "C" fn xc_version(xch: *mut Xch, cmd: c_int, arg: *mut c_void) -> c_int {
    ret_int(xc_call(xch, "xc_version", |_| {
        let put_str = |len: usize, s: &str| -> ShimResult<c_int> {
            // SAFETY: the caller passes a buffer of the documented size.
            let out = unsafe { ffi::slice_mut(arg.cast::<u8>(), len, "arg") }?;
            out.fill(0);
            let n = s.len().min(len - 1);
            out[..n].copy_from_slice(&s.as_bytes()[..n]);
            Ok(0)
        };
        match cmd {
            XENVER_VERSION => Ok(xensim::XEN_VERSION as c_int),
            XENVER_EXTRAVERSION => put_str(16, ".7-xensim"),
            XENVER_CAPABILITIES => put_str(
                1024,
                "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64",
            ),
            XENVER_CHANGESET => put_str(64, "xensim"),
            XENVER_PLATFORM_PARAMETERS => {
                // SAFETY: xen_platform_parameters_t is one u64.
                let out = unsafe { ffi::slice_mut(arg.cast::<u8>(), 8, "arg") }?;
                abi::put_u64(out, 0, HYPERVISOR_VIRT_START);
                Ok(0)
            }
            XENVER_PAGESIZE => Ok(PAGE_SIZE as c_int),
            other => Err(ShimError::new(
                libc::ENOSYS,
                format!("xen_version {other} is not simulated"),
            )),
        }
    }))
}

// ------------------------------------------------------------------ domains

fn getinfo_raw(x: &Xch, first: u32) -> ShimResult<[u8; domaininfo::SIZE]> {
    let mut d = [0u8; abi::DOMCTL_SIZE];
    abi::put_u32(&mut d, 0, abi::domctl::GETDOMAININFO);
    abi::put_u32(&mut d, 4, abi::INTERFACE_VERSION);
    abi::put_u16(&mut d, abi::DOMCTL_DOMAIN, first as u16);
    dispatch::domctl(x.host(), &mut d)?;
    let mut out = [0u8; domaininfo::SIZE];
    out.copy_from_slice(&d[abi::DOMCTL_U..abi::DOMCTL_U + domaininfo::SIZE]);
    Ok(out)
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_getinfo(
    xch: *mut Xch,
    first_domid: u32,
    max_doms: c_uint,
    info: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_getinfo", |x| {
        let n = max_doms as usize;
        // SAFETY: info holds max_doms xc_dominfo_t (C contract).
        let out = unsafe { ffi::slice_mut(info.cast::<u8>(), n * dominfo::SIZE, "info") }?;
        let mut next = first_domid;
        let mut count = 0;
        while count < n && next < xensim::DOMID_FIRST_RESERVED {
            // As libxenctrl: stop at the first failure and report what was
            // found, leaving the failure's errno (ESRCH past the last
            // domain) for a caller that got fewer domains than it asked for.
            let di = match getinfo_raw(x, next) {
                Ok(di) => di,
                Err(e) => {
                    ffi::set_errno(e.errno);
                    break;
                }
            };
            dispatch::fill_dominfo(
                &mut out[count * dominfo::SIZE..(count + 1) * dominfo::SIZE],
                &di,
            );
            next = u32::from(abi::get_u16(&di, domaininfo::DOMAIN)) + 1;
            count += 1;
        }
        Ok(count as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_getinfolist(
    xch: *mut Xch,
    first_domain: u32,
    max_domains: c_uint,
    info: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_getinfolist", |x| {
        let n = max_domains as usize;
        // SAFETY: info holds max_domains xc_domaininfo_t (C contract).
        let out = unsafe { ffi::slice_mut(info.cast::<u8>(), n * domaininfo::SIZE, "info") }?;
        let ids = x.host().domain_ids()?;
        let mut count = 0;
        for id in ids.into_iter().filter(|&d| d >= first_domain).take(n) {
            let Ok(d) = x.host().domain(id) else { continue };
            let Ok(i) = d.info() else { continue };
            dispatch::fill_domaininfo(
                &mut out[count * domaininfo::SIZE..(count + 1) * domaininfo::SIZE],
                &i,
            );
            count += 1;
        }
        Ok(count as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_shutdown(xch: *mut Xch, domid: u32, reason: c_int) -> c_int {
    ret_int(xc_call(xch, "xc_domain_shutdown", |x| {
        let r = u32::try_from(reason)
            .map_err(|_| ShimError::inval(format!("shutdown reason {reason}")))?;
        domain(x, domid)?.shutdown(r)?;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_pause(xch: *mut Xch, domid: u32) -> c_int {
    ret_int(xc_call(xch, "xc_domain_pause", |x| {
        Ok(domain(x, domid)?.pause().map(|_| 0)?)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_unpause(xch: *mut Xch, domid: u32) -> c_int {
    ret_int(xc_call(xch, "xc_domain_unpause", |x| {
        Ok(domain(x, domid)?.unpause().map(|_| 0)?)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_destroy(xch: *mut Xch, domid: u32) -> c_int {
    ret_int(xc_call(xch, "xc_domain_destroy", |x| {
        Ok(x.host().destroy_domain(domid as DomId).map(|_| 0)?)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domctl(xch: *mut Xch, d: *mut c_void) -> c_int {
    ret_int(xc_call(xch, "xc_domctl", |x| {
        // SAFETY: d points to a struct xen_domctl (C contract).
        let s = unsafe { ffi::slice_mut(d.cast::<u8>(), abi::DOMCTL_SIZE, "domctl") }?;
        let mut buf = [0u8; abi::DOMCTL_SIZE];
        buf.copy_from_slice(s);
        let r = dispatch::domctl(x.host(), &mut buf);
        // Xen copies the structure back for the sub-ops that have outputs,
        // also when they fail (e.g. set_cpu_policy's err_* fields).
        s.copy_from_slice(&buf);
        r.map(|v| v as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_sysctl(xch: *mut Xch, s: *mut c_void) -> c_int {
    ret_int(xc_call(xch, "xc_sysctl", |x| {
        // SAFETY: s points to a struct xen_sysctl (C contract).
        let b = unsafe { ffi::slice_mut(s.cast::<u8>(), abi::SYSCTL_SIZE, "sysctl") }?;
        let mut buf = [0u8; abi::SYSCTL_SIZE];
        buf.copy_from_slice(b);
        let r = dispatch::sysctl(x.host(), &mut buf);
        b.copy_from_slice(&buf);
        r.map(|v| v as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_memory_op(
    xch: *mut Xch,
    cmd: c_uint,
    arg: *mut c_void,
    len: usize,
) -> c_long {
    match xc_call(xch, "xc_memory_op", |x| {
        dispatch::memory_op(x.host(), cmd, arg.cast(), len)
    }) {
        Ok(v) => v as c_long,
        Err(e) => {
            ffi::set_errno(e.errno);
            -1
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_maximum_gpfn(
    xch: *mut Xch,
    domid: u32,
    gpfns: *mut u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_maximum_gpfn", |x| {
        let v = domain(x, domid)?.max_gpfn();
        // SAFETY: gpfns points to an xen_pfn_t (C contract).
        *unsafe { ffi::opt_mut(gpfns, "gpfns") }? = v;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_nr_gpfns(xch: *mut Xch, domid: u32, gpfns: *mut u64) -> c_int {
    ret_int(xc_call(xch, "xc_domain_nr_gpfns", |x| {
        let v = domain(x, domid)?.max_gpfn() + 1;
        // SAFETY: gpfns points to an xen_pfn_t (C contract).
        *unsafe { ffi::opt_mut(gpfns, "gpfns") }? = v;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_shadow_control(
    xch: *mut Xch,
    domid: u32,
    sop: c_uint,
    mb: *mut c_uint,
    mode: c_uint,
) -> c_int {
    ret_int(xc_call(xch, "xc_shadow_control", |x| {
        let mut d = [0u8; abi::DOMCTL_SIZE];
        abi::put_u32(&mut d, 0, abi::domctl::SHADOW_OP);
        abi::put_u32(&mut d, 4, abi::INTERFACE_VERSION);
        abi::put_u16(&mut d, abi::DOMCTL_DOMAIN, domid as u16);
        abi::put_u32(&mut d, abi::DOMCTL_U + abi::shadow_op::OP, sop);
        abi::put_u32(&mut d, abi::DOMCTL_U + abi::shadow_op::MODE, mode);
        // SAFETY: mb is NULL or points to an unsigned int (C contract).
        if let Some(m) = unsafe { mb.as_ref() } {
            abi::put_u32(&mut d, abi::DOMCTL_U + abi::shadow_op::MB, *m);
        }
        dispatch::domctl(x.host(), &mut d)?;
        // SAFETY: as above.
        if let Some(m) = unsafe { mb.as_mut() } {
            *m = abi::get_u32(&d, abi::DOMCTL_U + abi::shadow_op::MB);
        }
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_logdirty_control(
    xch: *mut Xch,
    domid: u32,
    sop: c_uint,
    dirty_bitmap: *mut HypercallBuffer,
    pages: c_ulong,
    mode: c_uint,
    stats: *mut u32,
) -> c_longlong {
    let r = xc_call(xch, "xc_logdirty_control", |x| {
        let bm = hbuf_of(dirty_bitmap)?;
        let mut d = [0u8; abi::DOMCTL_SIZE];
        abi::put_u32(&mut d, 0, abi::domctl::SHADOW_OP);
        abi::put_u32(&mut d, 4, abi::INTERFACE_VERSION);
        abi::put_u16(&mut d, abi::DOMCTL_DOMAIN, domid as u16);
        let u = abi::DOMCTL_U;
        abi::put_u32(&mut d, u + abi::shadow_op::OP, sop);
        abi::put_u32(&mut d, u + abi::shadow_op::MODE, mode);
        abi::put_u64(&mut d, u + abi::shadow_op::DIRTY_BITMAP, bm as usize as u64);
        abi::put_u64(&mut d, u + abi::shadow_op::PAGES, pages);
        dispatch::domctl(x.host(), &mut d)?;
        // SAFETY: stats is NULL or points to xc_shadow_op_stats_t {u32, u32}.
        if let Ok(s) = unsafe { ffi::slice_mut(stats, 2, "stats") } {
            s[0] = abi::get_u32(&d, u + abi::shadow_op::FAULT_COUNT);
            s[1] = abi::get_u32(&d, u + abi::shadow_op::DIRTY_COUNT);
        }
        Ok(abi::get_u64(&d, u + abi::shadow_op::PAGES) as c_longlong)
    });
    match r {
        Ok(v) => v,
        Err(e) => {
            ffi::set_errno(e.errno);
            -1
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn xc_get_pfn_type_batch(
    xch: *mut Xch,
    dom: u32,
    num: c_uint,
    arr: *mut u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_get_pfn_type_batch", |x| {
        if num as usize > xensim::MAX_PFINFO_BATCH {
            return Err(ShimError::new(
                libc::E2BIG,
                format!("{num} entries in one type query"),
            ));
        }
        // SAFETY: arr holds num xen_pfn_t (C contract).
        let frames = unsafe { ffi::slice_mut(arr, num as usize, "arr") }?;
        domain(x, dom)?.page_types(frames)?;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_hvm_getcontext(
    xch: *mut Xch,
    domid: u32,
    buf: *mut u8,
    size: u32,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_hvm_getcontext", |x| {
        let dom = domain(x, domid)?;
        if buf.is_null() {
            return Ok(dom.hvm_context_size()? as c_int);
        }
        let ctx = dom.hvm_context()?;
        if (size as usize) < ctx.len() {
            return Err(ShimError::new(
                libc::ENOSPC,
                format!("HVM context is {} bytes, buffer holds {size}", ctx.len()),
            ));
        }
        // SAFETY: buf holds size >= ctx.len() bytes (C contract).
        unsafe { ffi::slice_mut(buf, ctx.len(), "buf") }?.copy_from_slice(&ctx);
        Ok(ctx.len() as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_hvm_setcontext(
    xch: *mut Xch,
    domid: u32,
    buf: *mut u8,
    size: u32,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_hvm_setcontext", |x| {
        // SAFETY: buf holds size bytes (C contract).
        let blob = unsafe { ffi::slice(buf.cast_const(), size as usize, "hvm_ctxt") }?;
        domain(x, domid)?.set_hvm_context(blob)?;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_hvm_param_get(
    xch: *mut Xch,
    dom: u32,
    param: u32,
    value: *mut u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_hvm_param_get", |x| {
        let v = domain(x, dom)?.hvm_param(param)?;
        // SAFETY: value points to a u64 (C contract).
        *unsafe { ffi::opt_mut(value, "value") }? = v;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_hvm_param_set(
    xch: *mut Xch,
    dom: u32,
    param: u32,
    value: u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_hvm_param_set", |x| {
        Ok(domain(x, dom)?.set_hvm_param(param, value).map(|_| 0)?)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_get_tsc_info(
    xch: *mut Xch,
    domid: u32,
    tsc_mode: *mut u32,
    elapsed_nsec: *mut u64,
    gtsc_khz: *mut u32,
    incarnation: *mut u32,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_get_tsc_info", |x| {
        let t = domain(x, domid)?.tsc_info()?;
        // SAFETY: the four outputs point to caller variables (C contract).
        unsafe {
            *ffi::opt_mut(tsc_mode, "tsc_mode")? = t.mode;
            *ffi::opt_mut(elapsed_nsec, "elapsed_nsec")? = t.elapsed_nsec;
            *ffi::opt_mut(gtsc_khz, "gtsc_khz")? = t.gtsc_khz;
            *ffi::opt_mut(incarnation, "incarnation")? = t.incarnation;
        }
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_set_tsc_info(
    xch: *mut Xch,
    domid: u32,
    tsc_mode: u32,
    elapsed_nsec: u64,
    gtsc_khz: u32,
    incarnation: u32,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_set_tsc_info", |x| {
        let t = TscInfo {
            mode: tsc_mode,
            elapsed_nsec,
            gtsc_khz,
            incarnation,
        };
        Ok(domain(x, domid)?.set_tsc_info(t).map(|_| 0)?)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_populate_physmap_exact(
    xch: *mut Xch,
    domid: u32,
    nr_extents: c_ulong,
    extent_order: c_uint,
    mem_flags: c_uint,
    extent_start: *mut u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_populate_physmap_exact", |x| {
        // SAFETY: extent_start holds nr_extents entries (C contract).
        let ext = unsafe { ffi::slice_mut(extent_start, nr_extents as usize, "extent_start") }?;
        let done = dispatch::populate(x.host(), domid, ext, extent_order, mem_flags)?;
        if done != ext.len() {
            return Err(ShimError::new(
                libc::EBUSY,
                format!("populated {done} of {} extents", ext.len()),
            ));
        }
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_populate_physmap(
    xch: *mut Xch,
    domid: u32,
    nr_extents: c_ulong,
    extent_order: c_uint,
    mem_flags: c_uint,
    extent_start: *mut u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_populate_physmap", |x| {
        // SAFETY: extent_start holds nr_extents entries (C contract).
        let ext = unsafe { ffi::slice_mut(extent_start, nr_extents as usize, "extent_start") }?;
        Ok(dispatch::populate(x.host(), domid, ext, extent_order, mem_flags)? as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_clear_domain_pages(
    xch: *mut Xch,
    domid: u32,
    dst_pfn: c_ulong,
    num: c_int,
) -> c_int {
    ret_int(xc_call(xch, "xc_clear_domain_pages", |x| {
        let n = usize::try_from(num).map_err(|_| ShimError::inval("negative page count"))?;
        let frames = (0..n as u64)
            .map(|i| dst_pfn.checked_add(i))
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| ShimError::inval("page range overflows"))?;
        let p = map_all(x, domid, libc::PROT_READ | libc::PROT_WRITE, &frames)?;
        // SAFETY: p maps n writable pages.
        unsafe { std::ptr::write_bytes(p, 0, n * PAGE_SIZE) };
        fmap::unmap(p, n)?;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_map_foreign_range(
    xch: *mut Xch,
    dom: u32,
    size: c_int,
    prot: c_int,
    mfn: c_ulong,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_map_foreign_range", |x| {
        let size = usize::try_from(size).map_err(|_| ShimError::inval("negative size"))?;
        let n = size.div_ceil(PAGE_SIZE);
        let frames = (0..n as u64)
            .map(|i| mfn.checked_add(i))
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| ShimError::inval("frame range overflows"))?;
        Ok(map_all(x, dom, prot, &frames)?.cast())
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_map_foreign_pages(
    xch: *mut Xch,
    dom: u32,
    prot: c_int,
    arr: *const u64,
    num: c_int,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_map_foreign_pages", |x| {
        let n = usize::try_from(num).map_err(|_| ShimError::inval("negative count"))?;
        // SAFETY: arr holds num entries (C contract).
        let frames = unsafe { ffi::slice(arr, n, "arr") }?;
        Ok(map_all(x, dom, prot, frames)?.cast())
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_map_foreign_ranges(
    xch: *mut Xch,
    dom: u32,
    size: usize,
    prot: c_int,
    chunksize: usize,
    entries: *const u8,
    nentries: c_int,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_map_foreign_ranges", |x| {
        let ne = usize::try_from(nentries).map_err(|_| ShimError::inval("negative count"))?;
        let bad = || ShimError::inval(format!("size {size}, chunksize {chunksize}, {ne} entries"));
        if chunksize == 0 || chunksize % PAGE_SIZE != 0 || ne.checked_mul(chunksize) != Some(size) {
            return Err(bad());
        }
        // No overflow: ne * 24 <= ne * chunksize = size.
        let entries_len = ne * MMAP_ENTRY_SIZE;
        // SAFETY: entries holds nentries privcmd_mmap_entry_t (C contract).
        let e = unsafe { ffi::slice(entries, entries_len, "entries") }?;
        let per = chunksize / PAGE_SIZE;
        let mut frames = Vec::with_capacity(size / PAGE_SIZE);
        for i in 0..ne {
            let mfn = abi::get_u64(e, i * MMAP_ENTRY_SIZE + 8);
            if mfn.checked_add(per as u64).is_none() {
                return Err(bad());
            }
            frames.extend((0..per as u64).map(|j| mfn + j));
        }
        Ok(map_all(x, dom, prot, &frames)?.cast())
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_map_foreign_bulk(
    xch: *mut Xch,
    dom: u32,
    prot: c_int,
    arr: *const u64,
    err: *mut c_int,
    num: c_uint,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_map_foreign_bulk", |x| {
        // SAFETY: arr and err hold num entries (C contract).
        let frames = unsafe { ffi::slice(arr, num as usize, "arr") }?;
        let errs = unsafe { ffi::slice_mut(err, num as usize, "err") }?;
        let dom = domain(x, dom)?;
        let m = fmap::map_frames(&dom, frames, prot)?;
        errs.copy_from_slice(&m.errs);
        Ok(m.addr.cast())
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_get_guest_width(
    xch: *mut Xch,
    domid: u32,
    guest_width: *mut c_uint,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_get_guest_width", |x| {
        let mut d = [0u8; abi::DOMCTL_SIZE];
        abi::put_u32(&mut d, 0, abi::domctl::GET_ADDRESS_SIZE);
        abi::put_u32(&mut d, 4, abi::INTERFACE_VERSION);
        abi::put_u16(&mut d, abi::DOMCTL_DOMAIN, domid as u16);
        dispatch::domctl(x.host(), &mut d)?;
        // SAFETY: guest_width points to an unsigned int (C contract).
        *unsafe { ffi::opt_mut(guest_width, "guest_width") }? = abi::get_u32(&d, abi::DOMCTL_U) / 8;
        Ok(0)
    }))
}

/// x86 needs no cache maintenance for foreign writes; Xen's libxenctrl
/// returns 0 without a hypercall, and so do we.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_cacheflush(
    xch: *mut Xch,
    _domid: u32,
    _start: u64,
    _nr: u64,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_cacheflush", |_| Ok(0)))
}

// ------------------------------------------- unsupported on this host: ENOSYS

macro_rules! unsupported_int {
    ($( $(#[$m:meta])* fn $name:ident( $($arg:ident : $ty:ty),* ); )*) => {
        $(
            $(#[$m])*
            #[no_mangle]
            pub unsafe extern "C" fn $name(xch: *mut Xch, $($arg: $ty),*) -> c_int {
                $( let _ = $arg; )*
                ret_int(xc_call(xch, stringify!($name), |_| Err(ShimError::nosys(stringify!($name)))))
            }
        )*
    };
}

unsupported_int! {
    /// PV page-table updates (domain builder, page offlining).
    fn xc_add_mmu_update(mmu: *mut c_void, ptr: u64, val: u64);
    /// PV page-table updates.
    fn xc_flush_mmu_updates(mmu: *mut c_void);
    /// Domain builder.
    fn xc_domain_add_to_physmap(domid: u32, space: c_uint, idx: c_ulong, gpfn: u64);
    /// Domain builder (memory claims).
    fn xc_domain_claim_pages(domid: u32, nr_pages: c_ulong);
    /// Domain builder (populate-on-demand).
    fn xc_domain_set_pod_target(domid: u32, target: u64, tot: *mut u64, cache: *mut u64, entries: *mut u64);
    /// Page offlining.
    fn xc_domain_memory_exchange_pages(domid: u32, nr_in: c_ulong, in_order: c_uint, in_ext: *mut u64, nr_out: c_ulong, out_order: c_uint, out_ext: *mut u64);
    /// Grant-table hypercalls (the seeding fallback; map_resource is used instead).
    fn xc_gnttab_op(cmd: c_int, op: *mut c_void, op_size: c_int, count: c_int);
    /// Suspend event channels (libxl's own process).
    fn xc_domain_subscribe_for_suspend(domid: u32, port: u32);
    /// PV vCPU state.
    fn xc_vcpu_getcontext(domid: u32, vcpu: u32, ctxt: *mut c_void);
    /// PV vCPU state.
    fn xc_vcpu_setcontext(domid: u32, vcpu: u32, ctxt: *mut c_void);
    /// PV vCPU info.
    fn xc_vcpu_getinfo(domid: u32, vcpu: u32, info: *mut c_void);
    /// PV page pinning.
    fn xc_mmuext_op(op: *mut c_void, nr_ops: c_uint, dom: u32);
    /// PV machine-to-physical table.
    fn xc_machphys_mfn_list(max_extents: c_ulong, extent_start: *mut u64);
    /// PV machine frame space.
    fn xc_maximum_ram_page(max_mfn: *mut c_ulong);
}

/// PV page-table updates: NULL with ENOSYS.
#[no_mangle]
pub unsafe extern "C" fn xc_alloc_mmu_updates(xch: *mut Xch, _subject: c_uint) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_alloc_mmu_updates", |_| {
        Err(ShimError::nosys("xc_alloc_mmu_updates"))
    }))
}

/// Page offlining: returns 0 (no frame) with ENOSYS.
#[no_mangle]
pub unsafe extern "C" fn xc_make_page_below_4G(
    xch: *mut Xch,
    _domid: u32,
    _mfn: c_ulong,
) -> c_ulong {
    let _ = ret_int(xc_call(xch, "xc_make_page_below_4G", |_| {
        Err(ShimError::nosys("xc_make_page_below_4G"))
    }));
    0
}

/// Grant-table v1 mapping (page offlining): NULL with ENOSYS.
#[no_mangle]
pub unsafe extern "C" fn xc_gnttab_map_table_v1(
    xch: *mut Xch,
    _domid: u32,
    _gnt_num: *mut c_int,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_gnttab_map_table_v1", |_| {
        Err(ShimError::nosys("xc_gnttab_map_table_v1"))
    }))
}

/// Grant-table v2 mapping: NULL with ENOSYS.
#[no_mangle]
pub unsafe extern "C" fn xc_gnttab_map_table_v2(
    xch: *mut Xch,
    _domid: u32,
    _gnt_num: *mut c_int,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_gnttab_map_table_v2", |_| {
        Err(ShimError::nosys("xc_gnttab_map_table_v2"))
    }))
}
