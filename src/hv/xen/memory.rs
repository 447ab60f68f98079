//! [`GuestMemory`] over libxenctrl and libxenforeignmemory: page types,
//! foreign mappings (a [`RawMapping`] that unmaps through
//! `xenforeignmemory_unmap`), populating and clearing frames.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use super::{cvt, last_error, sys, XenHypervisor};
use crate::hv::pages::RawMapping;
use crate::hv::{DomId, GuestMemory, HvError, HvResult, MAX_BATCH};

/// A foreign mapping of a batch of frames; unmapped on drop.
pub type XenMapping<'h> = RawMapping<ForeignUnmap<'h>>;

/// What `xenforeignmemory_unmap` needs to release one mapping, which it
/// does when dropped (the last part of a [`XenMapping`] to go).
pub struct ForeignUnmap<'h> {
    fmem: NonNull<sys::xenforeignmemory_handle>,
    /// Start of `pages` pages, or null for an empty batch.
    addr: *mut c_void,
    pages: usize,
    _hv: PhantomData<&'h ()>,
}

impl Drop for ForeignUnmap<'_> {
    fn drop(&mut self) {
        if !self.addr.is_null() {
            // SAFETY: `addr` and the page count come from one successful
            // `xenforeignmemory_map` on `fmem`, which outlives this mapping
            // (borrowed for 'h).
            unsafe { sys::xenforeignmemory_unmap(self.fmem.as_ptr(), self.addr, self.pages) };
        }
    }
}

impl XenHypervisor<'_> {
    /// `xenforeignmemory_map(prot)` of `frames`, failing as `op`.
    fn map(
        &self,
        op: &'static str,
        domid: DomId,
        prot: i32,
        frames: &[u64],
    ) -> HvResult<XenMapping<'_>> {
        let writable = prot & libc::PROT_WRITE != 0;
        if frames.is_empty() {
            let unmap = ForeignUnmap {
                fmem: self.fmem,
                addr: ptr::null_mut(),
                pages: 0,
                _hv: PhantomData,
            };
            // SAFETY: no frames, so nothing is ever read through `base`.
            return Ok(unsafe { RawMapping::new(ptr::null_mut(), Vec::new(), writable, unmap) });
        }
        if frames.len() > MAX_BATCH * 64 {
            return Err(HvError::with_detail(
                op,
                libc::E2BIG,
                format!("{} frames in one mapping", frames.len()),
            ));
        }
        let mut errs = vec![0i32; frames.len()];
        // SAFETY: FFI call; `frames` and `errs` hold `frames.len()` entries
        // each and outlive the call (the library copies the frame list).
        let addr = unsafe {
            sys::xenforeignmemory_map(
                self.fmem.as_ptr(),
                domid,
                prot,
                frames.len(),
                frames.as_ptr(),
                errs.as_mut_ptr(),
            )
        };
        if addr.is_null() {
            return Err(last_error(op));
        }
        let unmap = ForeignUnmap {
            fmem: self.fmem,
            addr,
            pages: frames.len(),
            _hv: PhantomData,
        };
        // SAFETY: `xenforeignmemory_map` returned one page-aligned region of
        // `frames.len()` pages with `prot`, the frames with error 0 mapped,
        // valid until `unmap` releases it; nothing else holds the address.
        Ok(unsafe { RawMapping::new(addr.cast(), errs, writable, unmap) })
    }
}

impl GuestMemory for XenHypervisor<'_> {
    type ReadMapping<'a>
        = XenMapping<'a>
    where
        Self: 'a;
    type WriteMapping<'a>
        = XenMapping<'a>
    where
        Self: 'a;

    fn page_types(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        if frames.len() > MAX_BATCH {
            return Err(HvError::with_detail(
                "xc_get_pfn_type_batch",
                libc::E2BIG,
                format!("{} frames in one batch", frames.len()),
            ));
        }
        if frames.is_empty() {
            return Ok(());
        }
        // SAFETY: FFI call rewriting `frames.len()` entries in place.
        let rc = unsafe {
            sys::xc_get_pfn_type_batch(
                self.xch_ptr(),
                domid,
                frames.len() as u32,
                frames.as_mut_ptr(),
            )
        };
        cvt(rc, "xc_get_pfn_type_batch")?;
        Ok(())
    }

    fn map_read(&self, domid: DomId, frames: &[u64]) -> HvResult<Self::ReadMapping<'_>> {
        self.map(
            "xenforeignmemory_map(PROT_READ)",
            domid,
            libc::PROT_READ,
            frames,
        )
    }

    fn map_write(&self, domid: DomId, frames: &[u64]) -> HvResult<Self::WriteMapping<'_>> {
        self.map(
            "xenforeignmemory_map(PROT_READ|PROT_WRITE)",
            domid,
            libc::PROT_READ | libc::PROT_WRITE,
            frames,
        )
    }

    fn populate_physmap(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        if frames.is_empty() {
            return Ok(());
        }
        // SAFETY: FFI call reading and rewriting `frames.len()` extents.
        let rc = unsafe {
            sys::xc_domain_populate_physmap_exact(
                self.xch_ptr(),
                domid,
                frames.len() as libc::c_ulong,
                0,
                0,
                frames.as_mut_ptr(),
            )
        };
        cvt(rc, "xc_domain_populate_physmap_exact")?;
        Ok(())
    }

    fn populate_extents(&self, domid: DomId, extents: &mut [u64], order: u32) -> HvResult<usize> {
        // The non-exact call reports how many extents Xen could allocate
        // (as libxenguest's HVM domain builder uses it for superpages), so
        // the caller populates only the rest with 4 KiB pages.
        // SAFETY: FFI call reading and rewriting `extents.len()` extents.
        let rc = unsafe {
            sys::xc_domain_populate_physmap(
                self.xch_ptr(),
                domid,
                extents.len() as libc::c_ulong,
                order,
                0,
                extents.as_mut_ptr(),
            )
        };
        let rc = cvt(rc, "xc_domain_populate_physmap")?;
        Ok((rc as usize).min(extents.len()))
    }

    fn clear_pages(&self, domid: DomId, gfn: u64, count: u64) -> HvResult<()> {
        let num = i32::try_from(count).map_err(|_| {
            HvError::with_detail(
                "xc_clear_domain_pages",
                libc::E2BIG,
                format!("{count} pages"),
            )
        })?;
        // SAFETY: FFI call; the library maps, zeroes and unmaps the frames.
        let rc =
            unsafe { sys::xc_clear_domain_pages(self.xch_ptr(), domid, gfn as libc::c_ulong, num) };
        cvt(rc, "xc_clear_domain_pages")?;
        Ok(())
    }
}
