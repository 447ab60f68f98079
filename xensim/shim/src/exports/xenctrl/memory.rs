//! Guest memory: gpfn bounds, page types, populate, clear, and the
//! `xc_map_foreign_*` mappings.

use std::ffi::{c_int, c_uint, c_ulong, c_void};

use super::domain;
use crate::abi;
use crate::ctx::{xc_call, Xch};
use crate::dispatch;
use crate::error::{ShimError, ShimResult};
use crate::ffi::{self, ret_int, ret_ptr};
use crate::fmap;
use crate::hcall::PAGE_SIZE;

/// `sizeof(privcmd_mmap_entry_t)`: `{u64 va, u64 mfn, u64 npages}`.
const MMAP_ENTRY_SIZE: usize = 24;

/// Maps `frames` of `domid` (or of Xen, `DOMID_XEN`), all or nothing
/// (`err == NULL` semantics).
fn map_all(x: &Xch, domid: u32, prot: c_int, frames: &[u64]) -> ShimResult<*mut u8> {
    fmap::map_all(&fmap::Owner::of(x.host(), domid)?, frames, prot)
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
        dispatch::populate_exact(x.host(), domid, ext, extent_order, mem_flags)?;
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
        Ok(fmap::hand_to_munmap(map_all(x, dom, prot, &frames)?).cast())
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
        Ok(fmap::hand_to_munmap(map_all(x, dom, prot, frames)?).cast())
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
        Ok(fmap::hand_to_munmap(map_all(x, dom, prot, &frames)?).cast())
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
        // SAFETY: arr holds num entries (C contract).
        let frames = unsafe { ffi::slice(arr, num as usize, "arr") }?;
        // SAFETY: err holds num entries (C contract).
        let errs = unsafe { ffi::slice_mut(err, num as usize, "err") }?;
        let owner = fmap::Owner::of(x.host(), dom)?;
        let m = fmap::map_frames(&owner, frames, prot)?;
        errs.copy_from_slice(&m.errs);
        Ok(fmap::hand_to_munmap(m.addr).cast())
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
