//! The file helpers libxenguest imports from libxenctrl (`read_exact`,
//! `write_exact`, `writev_exact`, `discard_file_cache`).

use std::ffi::{c_int, c_void};

use crate::ctx::{free_call, Xch};
use crate::error::ShimError;
use crate::fdio;
use crate::ffi::{self, ret_int};

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
