//! [`LogDirty`] over `xc_shadow_control` and `xc_logdirty_control`, with
//! the dirty bitmap in a hypercall buffer kept for the whole save.

use std::ffi::c_void;
use std::ptr;

use super::{cvt, last_error, sys, XenHypervisor};
use crate::hv::{DomId, HvError, HvResult, LogDirty, LogDirtyReport, PAGE_SIZE};

/// A dirty bitmap in hypercall-safe memory (`xc_hypercall_buffer_alloc_pages`),
/// kept for the whole save because libxenguest allocates it once too.
pub(super) struct HcallBitmap {
    /// Boxed so that its address stays fixed while libxenctrl refers to it.
    buf: Box<sys::xc_hypercall_buffer_t>,
    nr_pages: i32,
}

impl XenHypervisor<'_> {
    /// A hypercall buffer of at least `nr_pages` pages for the dirty bitmap.
    fn with_bitmap<T>(
        &self,
        bytes: usize,
        f: impl FnOnce(&mut sys::xc_hypercall_buffer_t) -> HvResult<T>,
    ) -> HvResult<T> {
        let nr_pages = i32::try_from(bytes.div_ceil(PAGE_SIZE).max(1)).map_err(|_| {
            HvError::with_detail(
                "xc_hypercall_buffer_alloc_pages",
                libc::E2BIG,
                format!("{bytes} byte dirty bitmap"),
            )
        })?;
        let mut slot = self.bitmap.borrow_mut();
        if slot.as_ref().is_some_and(|b| b.nr_pages < nr_pages) {
            if let Some(old) = slot.take() {
                self.free_bitmap(old);
            }
        }
        if slot.is_none() {
            let mut buf = Box::new(sys::xc_hypercall_buffer_t {
                hbuf: ptr::null_mut(),
                param_shadow: ptr::null_mut(),
                dir: 0,
                // DECLARE_HYPERCALL_BUFFER's "no bounce" marker.
                ubuf: usize::MAX as *mut c_void,
                sz: 0,
            });
            // SAFETY: FFI call with a live `xch` and a buffer descriptor that
            // stays at a fixed address (boxed) until freed in `free_bitmap`.
            let p = unsafe {
                sys::xc__hypercall_buffer_alloc_pages(self.xch_ptr(), &mut *buf, nr_pages)
            };
            if p.is_null() {
                return Err(last_error("xc_hypercall_buffer_alloc_pages"));
            }
            *slot = Some(HcallBitmap { buf, nr_pages });
        }
        let b = slot.as_mut().expect("bitmap allocated above");
        f(&mut b.buf)
    }

    pub(super) fn free_bitmap(&self, mut b: HcallBitmap) {
        // SAFETY: `b.buf` was allocated by `xc__hypercall_buffer_alloc_pages`
        // on this `xch` with `b.nr_pages` pages and is not used afterwards.
        unsafe { sys::xc__hypercall_buffer_free_pages(self.xch_ptr(), &mut *b.buf, b.nr_pages) };
    }

    fn logdirty_op(
        &self,
        op: &'static str,
        sop: u32,
        mode: u32,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport> {
        let words = usize::try_from(pages.div_ceil(64))
            .map_err(|_| HvError::with_detail(op, libc::E2BIG, format!("{pages} pages")))?;
        if bitmap.len() < words {
            return Err(HvError::with_detail(
                op,
                libc::EINVAL,
                format!("bitmap of {} words for {pages} pages", bitmap.len()),
            ));
        }
        let npages = libc::c_ulong::try_from(pages)
            .map_err(|_| HvError::with_detail(op, libc::E2BIG, format!("{pages} pages")))?;
        let bytes = words * 8;
        self.with_bitmap(bytes, |hb| {
            let mut stats = sys::xc_shadow_op_stats_t::default();
            // SAFETY: FFI call; `hb` is a live hypercall buffer of at least
            // `bytes` bytes, and Xen writes at most `pages` bits into it.
            let rc = unsafe {
                sys::xc_logdirty_control(self.xch_ptr(), domid, sop, hb, npages, mode, &mut stats)
            };
            let rc = cvt(rc, op)?;
            // SAFETY: `hb.hbuf` points to at least `bytes` bytes that the
            // hypercall filled; no other reference to them exists.
            let raw = unsafe { std::slice::from_raw_parts(hb.hbuf.cast::<u8>(), bytes) };
            for (w, chunk) in bitmap.iter_mut().zip(raw.chunks_exact(8)) {
                *w = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
            }
            Ok(LogDirtyReport {
                pages: rc as u64,
                fault_count: stats.fault_count,
                dirty_count: stats.dirty_count,
            })
        })
    }

    /// `xc_shadow_control(sop)` without the megabyte out-parameter.
    fn shadow_control(&self, op: &'static str, sop: u32, domid: DomId) -> HvResult<()> {
        // SAFETY: FFI call; no megabyte out-parameter is requested.
        let rc = unsafe { sys::xc_shadow_control(self.xch_ptr(), domid, sop, ptr::null_mut(), 0) };
        cvt(rc, op)?;
        Ok(())
    }
}

impl LogDirty for XenHypervisor<'_> {
    fn logdirty_enable(&self, domid: DomId) -> HvResult<()> {
        self.shadow_control(
            "xc_shadow_control(ENABLE_LOGDIRTY)",
            sys::XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY,
            domid,
        )
    }

    fn logdirty_off(&self, domid: DomId) -> HvResult<()> {
        self.shadow_control(
            "xc_shadow_control(OFF)",
            sys::XEN_DOMCTL_SHADOW_OP_OFF,
            domid,
        )
    }

    fn logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
        final_pass: bool,
    ) -> HvResult<LogDirtyReport> {
        let mode = if final_pass {
            sys::XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL
        } else {
            0
        };
        self.logdirty_op(
            "xc_logdirty_control(CLEAN)",
            sys::XEN_DOMCTL_SHADOW_OP_CLEAN,
            mode,
            domid,
            bitmap,
            pages,
        )
    }

    fn logdirty_peek(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport> {
        self.logdirty_op(
            "xc_logdirty_control(PEEK)",
            sys::XEN_DOMCTL_SHADOW_OP_PEEK,
            0,
            domid,
            bitmap,
            pages,
        )
    }
}
