//! Blocking I/O on a file descriptor the caller owns (the stream `io_fd`, the
//! COLO back channel). Never closes it; retries on EINTR, as libxenctrl's
//! `read_exact`/`write_exact` do.

use std::io::{self, Read, Write};
use std::os::fd::RawFd;

/// A borrowed, caller-owned descriptor.
#[derive(Debug)]
pub struct FdIo {
    fd: RawFd,
}

impl FdIo {
    /// Borrow `fd` for reading and/or writing.
    pub fn new(fd: RawFd) -> Self {
        FdIo { fd }
    }
}

impl Read for FdIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: FFI call writing at most `buf.len()` bytes into `buf`.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Write for FdIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: FFI call reading `buf.len()` bytes from `buf`.
            let n = unsafe { libc::write(self.fd, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let cnt = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
        loop {
            // SAFETY: `IoSlice` is ABI-compatible with `struct iovec`, and
            // `cnt` slices of `bufs` are valid for reading.
            let n = unsafe { libc::writev(self.fd, bufs.as_ptr().cast(), cnt) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
