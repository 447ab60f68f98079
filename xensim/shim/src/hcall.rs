//! Hypercall buffers (`xc_hypercall_buffer_t`, public layout from xenctrl.h)
//! and the bounce helpers the inline `do_domctl`/`do_sysctl` of libxenguest
//! use. On the simulated host a hypercall buffer is ordinary process memory.

use std::ffi::{c_int, c_void};

use crate::error::{ShimError, ShimResult};

/// Page size of the x86 guest and of this host.
pub const PAGE_SIZE: usize = 4096;

/// `XC_HYPERCALL_BUFFER_BOUNCE_NONE`.
pub const BOUNCE_NONE: c_int = 0;
/// `XC_HYPERCALL_BUFFER_BOUNCE_IN`: copy user data in before the call.
pub const BOUNCE_IN: c_int = 1;
/// `XC_HYPERCALL_BUFFER_BOUNCE_OUT`: copy back to the user after the call.
pub const BOUNCE_OUT: c_int = 2;
/// `XC_HYPERCALL_BUFFER_BOUNCE_BOTH`.
pub const BOUNCE_BOTH: c_int = 3;

/// `xc_hypercall_buffer_t` (40 bytes); libxenguest reads `hbuf` directly.
#[repr(C)]
#[derive(Debug)]
pub struct HypercallBuffer {
    /// The hypercall-safe buffer.
    pub hbuf: *mut c_void,
    /// Set by `DECLARE_HYPERCALL_BUFFER_SHADOW` to the real buffer.
    pub param_shadow: *mut HypercallBuffer,
    /// Bounce direction.
    pub dir: c_int,
    /// The user buffer being bounced.
    pub ubuf: *mut c_void,
    /// Size of the user buffer.
    pub sz: usize,
}

/// Allocates `nr_pages` zeroed, page-aligned pages and records them in `b`.
pub fn alloc_pages(b: &mut HypercallBuffer, nr_pages: usize) -> ShimResult<*mut c_void> {
    let len = nr_pages
        .checked_mul(PAGE_SIZE)
        .filter(|&l| l > 0)
        .ok_or_else(|| ShimError::inval(format!("bad hypercall buffer page count {nr_pages}")))?;
    // SAFETY: anonymous private mapping with no address hint; no existing
    // memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(ShimError::last_os("mmap hypercall buffer"));
    }
    b.hbuf = p;
    Ok(p)
}

/// Frees pages from [`alloc_pages`]; a NULL `hbuf` is accepted.
pub fn free_pages(b: &mut HypercallBuffer, nr_pages: usize) {
    if b.hbuf.is_null() || nr_pages == 0 {
        return;
    }
    // SAFETY: hbuf came from alloc_pages with the same page count (the C
    // contract of xc__hypercall_buffer_free_pages).
    unsafe { libc::munmap(b.hbuf, nr_pages * PAGE_SIZE) };
    b.hbuf = std::ptr::null_mut();
}

/// Allocates `size` zeroed bytes and records them in `b`.
pub fn alloc(b: &mut HypercallBuffer, size: usize) -> ShimResult<*mut c_void> {
    // SAFETY: calloc with a non-zero size has no preconditions.
    let p = unsafe { libc::calloc(1, size.max(1)) };
    if p.is_null() {
        return Err(ShimError::new(
            libc::ENOMEM,
            "hypercall buffer allocation failed",
        ));
    }
    b.hbuf = p;
    Ok(p)
}

/// Frees a buffer from [`alloc`]; a NULL `hbuf` is accepted.
pub fn free(b: &mut HypercallBuffer) {
    if b.hbuf.is_null() {
        return;
    }
    // SAFETY: hbuf came from alloc (calloc) and is freed once: we clear it.
    unsafe { libc::free(b.hbuf) };
    b.hbuf = std::ptr::null_mut();
}

/// Outcome of [`bounce_pre`] when the descriptor itself is malformed: the real
/// library aborts the process, because it is a programming error.
#[derive(Debug, PartialEq, Eq)]
pub enum BounceFault {
    /// `ubuf == (void*)-1` or `dir == NONE`.
    Misdeclared,
}

/// Prepares a bounce buffer: NULL user buffers bounce to NULL; otherwise `sz`
/// bytes are allocated and filled from `ubuf` for IN/BOTH.
pub fn bounce_pre(b: &mut HypercallBuffer) -> Result<ShimResult<()>, BounceFault> {
    if b.ubuf as isize == -1 || b.dir == BOUNCE_NONE {
        return Err(BounceFault::Misdeclared);
    }
    if b.ubuf.is_null() {
        b.hbuf = std::ptr::null_mut();
        return Ok(Ok(()));
    }
    let sz = b.sz;
    if let Err(e) = alloc(b, sz) {
        return Ok(Err(e));
    }
    if (b.dir == BOUNCE_IN || b.dir == BOUNCE_BOTH) && sz > 0 {
        // SAFETY: ubuf holds sz bytes (caller's declaration), hbuf was just
        // allocated with at least sz bytes, and they cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(b.ubuf.cast::<u8>(), b.hbuf.cast::<u8>(), sz) };
    }
    Ok(Ok(()))
}

/// Finishes a bounce: copies back for OUT/BOTH, then frees the buffer.
pub fn bounce_post(b: &mut HypercallBuffer) {
    if b.hbuf.is_null() {
        return;
    }
    if (b.dir == BOUNCE_OUT || b.dir == BOUNCE_BOTH) && !b.ubuf.is_null() && b.sz > 0 {
        // SAFETY: hbuf holds sz bytes from bounce_pre; ubuf holds sz bytes
        // by the caller's declaration; distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(b.hbuf.cast::<u8>(), b.ubuf.cast::<u8>(), b.sz) };
    }
    free(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(ubuf: *mut c_void, dir: c_int, sz: usize) -> HypercallBuffer {
        HypercallBuffer {
            hbuf: std::ptr::null_mut(),
            param_shadow: std::ptr::null_mut(),
            dir,
            ubuf,
            sz,
        }
    }

    #[test]
    fn layout_matches_xenctrl_h() {
        assert_eq!(std::mem::size_of::<HypercallBuffer>(), 40);
        assert_eq!(std::mem::offset_of!(HypercallBuffer, param_shadow), 8);
        assert_eq!(std::mem::offset_of!(HypercallBuffer, dir), 16);
        assert_eq!(std::mem::offset_of!(HypercallBuffer, ubuf), 24);
        assert_eq!(std::mem::offset_of!(HypercallBuffer, sz), 32);
    }

    #[test]
    fn bounce_in_copies_in_and_out_copies_back() {
        let mut user = [1u8, 2, 3, 4];
        let mut b = hb(user.as_mut_ptr().cast(), BOUNCE_BOTH, 4);
        bounce_pre(&mut b).unwrap().unwrap();
        assert!(!b.hbuf.is_null());
        assert_ne!(b.hbuf, user.as_mut_ptr().cast());
        // SAFETY: hbuf holds 4 bytes.
        let h = unsafe { std::slice::from_raw_parts_mut(b.hbuf.cast::<u8>(), 4) };
        assert_eq!(h, &[1, 2, 3, 4]);
        h[0] = 9;
        bounce_post(&mut b);
        assert!(b.hbuf.is_null());
        assert_eq!(user, [9, 2, 3, 4]);
    }

    #[test]
    fn bounce_in_only_does_not_copy_back() {
        let mut user = [5u8; 8];
        let mut b = hb(user.as_mut_ptr().cast(), BOUNCE_IN, 8);
        bounce_pre(&mut b).unwrap().unwrap();
        // SAFETY: hbuf holds 8 bytes.
        unsafe { *b.hbuf.cast::<u8>() = 0 };
        bounce_post(&mut b);
        assert_eq!(user, [5u8; 8]);
    }

    #[test]
    fn bounce_out_starts_zeroed() {
        let mut user = [7u8; 8];
        let mut b = hb(user.as_mut_ptr().cast(), BOUNCE_OUT, 8);
        bounce_pre(&mut b).unwrap().unwrap();
        // SAFETY: hbuf holds 8 bytes.
        let bounced = unsafe { std::slice::from_raw_parts(b.hbuf.cast::<u8>(), 8) };
        assert_eq!(bounced, &[0u8; 8]);
        bounce_post(&mut b);
        assert_eq!(user, [0u8; 8]);
    }

    #[test]
    fn bounce_of_null_user_buffer_gives_null_hbuf() {
        let mut b = hb(std::ptr::null_mut(), BOUNCE_BOTH, 16);
        b.hbuf = 1 as *mut c_void;
        bounce_pre(&mut b).unwrap().unwrap();
        assert!(b.hbuf.is_null());
        bounce_post(&mut b);
    }

    #[test]
    fn misdeclared_bounce_is_reported() {
        let mut b = hb(usize::MAX as *mut c_void, BOUNCE_IN, 4);
        assert_eq!(bounce_pre(&mut b), Err(BounceFault::Misdeclared));
        let mut x = 0u8;
        let mut b = hb((&mut x as *mut u8).cast(), BOUNCE_NONE, 1);
        assert_eq!(bounce_pre(&mut b), Err(BounceFault::Misdeclared));
    }

    #[test]
    fn pages_are_aligned_zeroed_and_freed() {
        let mut b = hb(std::ptr::null_mut(), 0, 0);
        let p = alloc_pages(&mut b, 3).unwrap();
        assert_eq!(p as usize % PAGE_SIZE, 0);
        // SAFETY: 3 pages were mapped.
        let s = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), 3 * PAGE_SIZE) };
        assert!(s.iter().all(|&x| x == 0));
        free_pages(&mut b, 3);
        assert!(b.hbuf.is_null());
        free_pages(&mut b, 3);
        assert!(alloc_pages(&mut b, 0).is_err());
    }
}
