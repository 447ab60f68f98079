//! Exports of `libxenforeignmemory.so.1` (nodes VERS_1.0..VERS_1.4,
//! `vers/libxenforeignmemory.map`).
//!
//! Mappings are real `mmap`s of the domain's memory file (see `fmap`): with an
//! `err` array, failed slots stay `PROT_NONE` and get a negative errno (the
//! call still returns the region, as privcmd does); without one, any failure
//! fails the whole call. The only resource is grant-table frame 0.
//!
//! Safety contract of every function: the one documented in Xen 4.17's
//! `xenforeignmemory.h` for the function of the same name.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use xensim::DomId;

use crate::ctx::{self, handle_call, Handle};
use crate::error::{ShimError, ShimResult};
use crate::ffi::{self, ret_int, ret_ptr};
use crate::fmap;
use crate::hcall::PAGE_SIZE;
use crate::xtl::XtlLogger;

/// `XENMEM_resource_grant_table`.
const RESOURCE_GRANT_TABLE: c_uint = 1;
/// `XENMEM_resource_grant_table_id_shared`.
const GRANT_TABLE_ID_SHARED: c_uint = 0;

/// A mapped resource (`xenforeignmemory_resource_handle`).
struct Resource {
    addr: *mut u8,
    pages: usize,
}

fn check_restriction(h: &Handle, dom: u32) -> ShimResult<()> {
    let r = h.restricted.load(Ordering::Relaxed);
    if r != u32::MAX && r != dom {
        return Err(ShimError::new(
            libc::EPERM,
            format!("handle is restricted to domain {r}"),
        ));
    }
    Ok(())
}

fn map(h: &Handle, dom: u32, prot: c_int, arr: &[u64], err: *mut c_int) -> ShimResult<*mut c_void> {
    check_restriction(h, dom)?;
    let d = fmap::Owner::of(&h.host, dom)?;
    if err.is_null() {
        return Ok(fmap::map_all(&d, arr, prot)?.cast());
    }
    // SAFETY: err holds arr.len() ints (C contract).
    let errs = unsafe { ffi::slice_mut(err, arr.len(), "err") }?;
    let m = fmap::map_frames(&d, arr, prot)?;
    errs.copy_from_slice(&m.errs);
    Ok(m.addr.cast())
}

#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_open(
    logger: *mut XtlLogger,
    _open_flags: c_uint,
) -> *mut Handle {
    ret_ptr(ffi::no_unwind(|| {
        ctx::open_handle(logger, "xenforeignmemory_open")
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_close(fmem: *mut Handle) -> c_int {
    ctx::close_handle(fmem)
}

#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_map(
    fmem: *mut Handle,
    dom: u32,
    prot: c_int,
    pages: usize,
    arr: *const u64,
    err: *mut c_int,
) -> *mut c_void {
    ret_ptr(handle_call(fmem, "xenforeignmemory_map", |h| {
        // SAFETY: arr holds `pages` entries (C contract).
        let frames = unsafe { ffi::slice(arr, pages, "arr") }?;
        map(h, dom, prot, frames, err)
    }))
}

/// Only the placement libxenguest and libxenctrl use: any address, no flags.
#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_map2(
    fmem: *mut Handle,
    dom: u32,
    addr: *mut c_void,
    prot: c_int,
    flags: c_int,
    pages: usize,
    arr: *const u64,
    err: *mut c_int,
) -> *mut c_void {
    ret_ptr(handle_call(fmem, "xenforeignmemory_map2", |h| {
        if !addr.is_null() || flags != 0 {
            return Err(ShimError::new(
                libc::EOPNOTSUPP,
                "placed foreign mappings are not simulated",
            ));
        }
        // SAFETY: arr holds `pages` entries (C contract).
        let frames = unsafe { ffi::slice(arr, pages, "arr") }?;
        map(h, dom, prot, frames, err)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_unmap(
    fmem: *mut Handle,
    addr: *mut c_void,
    pages: usize,
) -> c_int {
    ret_int(handle_call(fmem, "xenforeignmemory_unmap", |_| {
        fmap::unmap(addr.cast(), pages).map(|_| 0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_restrict(fmem: *mut Handle, domid: u16) -> c_int {
    ret_int(handle_call(fmem, "xenforeignmemory_restrict", |h| {
        let cur = h.restricted.load(Ordering::Relaxed);
        if cur != u32::MAX && cur != u32::from(domid) {
            return Err(ShimError::new(
                libc::EPERM,
                format!("already restricted to domain {cur}"),
            ));
        }
        h.restricted.store(u32::from(domid), Ordering::Relaxed);
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_map_resource(
    fmem: *mut Handle,
    domid: u16,
    type_: c_uint,
    id: c_uint,
    frame: c_ulong,
    nr_frames: c_ulong,
    paddr: *mut *mut c_void,
    prot: c_int,
    flags: c_int,
) -> *mut c_void {
    ret_ptr(handle_call(fmem, "xenforeignmemory_map_resource", |h| {
        check_restriction(h, u32::from(domid))?;
        if type_ != RESOURCE_GRANT_TABLE || id != GRANT_TABLE_ID_SHARED {
            return Err(ShimError::new(
                libc::EOPNOTSUPP,
                format!("resource type {type_} id {id} is not simulated"),
            ));
        }
        if frame != 0 || nr_frames != 1 {
            return Err(ShimError::inval(format!(
                "grant frames {frame}+{nr_frames}: only frame 0 exists"
            )));
        }
        // SAFETY: paddr points to the caller's address variable (C contract).
        let pa = unsafe { ffi::opt_mut(paddr, "paddr") }?;
        let d = h.host.domain(DomId::from(domid))?;
        let (file, off) = d.grant_frame();
        // SAFETY: a shared mapping of one page of the domain's grant file;
        // *paddr is only a hint unless the caller passed MAP_FIXED in flags.
        let p = unsafe {
            libc::mmap(
                *pa,
                PAGE_SIZE,
                prot,
                flags | libc::MAP_SHARED,
                file.as_raw_fd(),
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ShimError::last_os("mmap grant frame"));
        }
        *pa = p;
        Ok(Box::into_raw(Box::new(Resource {
            addr: p.cast(),
            pages: 1,
        }))
        .cast())
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_unmap_resource(
    fmem: *mut Handle,
    fres: *mut c_void,
) -> c_int {
    ret_int(handle_call(fmem, "xenforeignmemory_unmap_resource", |_| {
        if fres.is_null() {
            return Ok(0);
        }
        // SAFETY: fres came from Box::into_raw in map_resource, freed once.
        let r = unsafe { Box::from_raw(fres.cast::<Resource>()) };
        fmap::unmap(r.addr, r.pages)?;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_resource_size(
    fmem: *mut Handle,
    domid: u16,
    type_: c_uint,
    id: c_uint,
    size: *mut usize,
) -> c_int {
    ret_int(handle_call(fmem, "xenforeignmemory_resource_size", |h| {
        if type_ != RESOURCE_GRANT_TABLE || id != GRANT_TABLE_ID_SHARED {
            return Err(ShimError::new(
                libc::EOPNOTSUPP,
                format!("resource type {type_} id {id} is not simulated"),
            ));
        }
        h.host.domain(DomId::from(domid))?;
        // SAFETY: size points to a size_t (C contract).
        *unsafe { ffi::opt_mut(size, "size") }? = PAGE_SIZE;
        Ok(0)
    }))
}
