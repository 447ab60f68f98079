//! The one place where raw C pointers become Rust references or slices, plus
//! the panic/errno plumbing every exported function goes through.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{ShimError, ShimResult};

/// Sets the calling thread's `errno`.
pub fn set_errno(e: i32) {
    // SAFETY: __errno_location always returns a valid pointer to this
    // thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Reads the calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: as in `set_errno`.
    unsafe { *libc::__errno_location() }
}

/// Runs `f`, converting a panic into `EFAULT`-style failure so that no unwind
/// ever crosses the C boundary.
pub fn no_unwind<T>(f: impl FnOnce() -> ShimResult<T>) -> ShimResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ShimError::new(
                libc::EFAULT,
                format!("internal error: {what}"),
            ))
        }
    }
}

/// `&T` from a C pointer; NULL gives `EINVAL` naming the argument.
///
/// # Safety
/// `p` must be NULL or point to a live, properly aligned `T` that is not
/// mutated for the lifetime `'a`.
pub unsafe fn opt_ref<'a, T>(p: *const T, what: &str) -> ShimResult<&'a T> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| ShimError::inval(format!("{what} is NULL")))
}

/// `&mut T` from a C pointer; NULL gives `EINVAL` naming the argument.
///
/// # Safety
/// `p` must be NULL or point to a live, properly aligned `T` with no other
/// reference to it for the lifetime `'a`.
pub unsafe fn opt_mut<'a, T>(p: *mut T, what: &str) -> ShimResult<&'a mut T> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { p.as_mut() }.ok_or_else(|| ShimError::inval(format!("{what} is NULL")))
}

/// A shared slice of `n` elements at `p`; NULL with `n > 0` gives `EFAULT`.
///
/// # Safety
/// When `n > 0`, `p` must point to `n` live, initialised, aligned `T`s that
/// are not mutated for `'a`.
pub unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> ShimResult<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(ShimError::new(libc::EFAULT, format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and n > 0; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// A mutable slice of `n` elements at `p`; NULL with `n > 0` gives `EFAULT`.
///
/// # Safety
/// When `n > 0`, `p` must point to `n` live, aligned `T`s with no other
/// reference to them for `'a`.
pub unsafe fn slice_mut<'a, T>(p: *mut T, n: usize, what: &str) -> ShimResult<&'a mut [T]> {
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(ShimError::new(libc::EFAULT, format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and n > 0; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
}

/// A guest handle (a 64-bit user address inside a hypercall struct) as a byte
/// slice of `len` bytes.
///
/// # Safety
/// The address must be NULL or point to `len` bytes owned by the caller of
/// the hypercall for the duration of the call.
pub unsafe fn handle_bytes<'a>(addr: u64, len: usize, what: &str) -> ShimResult<&'a mut [u8]> {
    // SAFETY: forwarded.
    unsafe { slice_mut(addr as usize as *mut u8, len, what) }
}

/// A C string argument as UTF-8 text (lossy); NULL gives `EINVAL`.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string live for `'a`.
pub unsafe fn c_str<'a>(p: *const c_char, what: &str) -> ShimResult<std::borrow::Cow<'a, str>> {
    if p.is_null() {
        return Err(ShimError::inval(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL; NUL termination is the caller's contract.
    Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy())
}

/// Converts a result to the C convention of an `int`-returning call: the
/// value, or -1 with `errno` set.
pub fn ret_int(r: ShimResult<i32>) -> i32 {
    match r {
        Ok(v) => v,
        Err(e) => {
            set_errno(e.errno);
            -1
        }
    }
}

/// Converts a result to the C convention of a pointer-returning call: the
/// pointer, or NULL with `errno` set.
pub fn ret_ptr<T>(r: ShimResult<*mut T>) -> *mut T {
    match r {
        Ok(p) => p,
        Err(e) => {
            set_errno(e.errno);
            std::ptr::null_mut()
        }
    }
}
