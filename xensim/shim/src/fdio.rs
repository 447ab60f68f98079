//! `read_exact`, `write_exact`, `writev_exact`: whole-buffer I/O on a raw fd,
//! retrying after EINTR and short transfers.

use std::os::fd::RawFd;

use crate::error::{ShimError, ShimResult};
use crate::ffi;

/// Reads exactly `buf.len()` bytes. End of file before that is an error with
/// errno 0, which libxenguest distinguishes from an I/O error.
pub fn read_exact(fd: RawFd, buf: &mut [u8]) -> ShimResult<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: rest is a valid writable buffer of rest.len() bytes.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n < 0 {
            if ffi::errno() == libc::EINTR {
                continue;
            }
            return Err(ShimError::last_os("read"));
        }
        if n == 0 {
            return Err(ShimError::new(0, "end of file"));
        }
        done += n as usize;
    }
    Ok(())
}

/// Writes all of `buf`.
pub fn write_exact(fd: RawFd, buf: &[u8]) -> ShimResult<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &buf[done..];
        // SAFETY: rest is a valid readable buffer of rest.len() bytes.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            if ffi::errno() == libc::EINTR {
                continue;
            }
            return Err(ShimError::last_os("write"));
        }
        done += n as usize;
    }
    Ok(())
}

/// Writes every byte described by `iov`, in order. The array is copied so
/// that partial writes can advance it without touching the caller's vector.
pub fn writev_exact(fd: RawFd, iov: &[libc::iovec]) -> ShimResult<()> {
    let mut v: Vec<libc::iovec> = iov.iter().filter(|e| e.iov_len > 0).copied().collect();
    let mut start = 0;
    while start < v.len() {
        // The kernel takes at most IOV_MAX (1024) entries per call.
        let cnt = (v.len() - start).min(1024);
        // SAFETY: v[start..start+cnt] are iovecs the caller vouched for, each
        // possibly advanced within its own buffer below.
        let n = unsafe { libc::writev(fd, v[start..].as_ptr(), cnt as i32) };
        if n < 0 {
            if ffi::errno() == libc::EINTR {
                continue;
            }
            return Err(ShimError::last_os("writev"));
        }
        let mut n = n as usize;
        while n > 0 && start < v.len() {
            let e = &mut v[start];
            if n >= e.iov_len {
                n -= e.iov_len;
                start += 1;
            } else {
                // SAFETY: n < iov_len, so the advanced pointer stays inside
                // the same caller buffer.
                e.iov_base = unsafe { e.iov_base.cast::<u8>().add(n) }.cast();
                e.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        use std::os::fd::FromRawFd;
        // SAFETY: both descriptors are fresh and owned by nobody else.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    #[test]
    fn read_exact_reports_eof_with_errno_zero() {
        let (r, w) = pipe();
        write_exact(w.as_raw_fd(), b"abc").unwrap();
        drop(w);
        let mut buf = [0u8; 4];
        let e = read_exact(r.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.errno, 0);
        assert_eq!(&buf[..3], b"abc");
    }

    #[test]
    fn writev_exact_writes_more_than_a_pipe_holds_across_partial_writes() {
        let (r, w) = pipe();
        let a = vec![1u8; 100_000];
        let b = [2u8; 3];
        let c = vec![3u8; 70_001];
        let reader = std::thread::spawn(move || {
            let mut out = vec![0u8; 170_004];
            read_exact(r.as_raw_fd(), &mut out).unwrap();
            out
        });
        let iov = [
            libc::iovec {
                iov_base: a.as_ptr() as *mut _,
                iov_len: a.len(),
            },
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            libc::iovec {
                iov_base: b.as_ptr() as *mut _,
                iov_len: b.len(),
            },
            libc::iovec {
                iov_base: c.as_ptr() as *mut _,
                iov_len: c.len(),
            },
        ];
        writev_exact(w.as_raw_fd(), &iov).unwrap();
        // Closing our end lets a reader short of bytes fail instead of hang.
        drop(w);
        let out = reader.join().unwrap();
        assert!(out[..100_000].iter().all(|&x| x == 1));
        assert_eq!(&out[100_000..100_003], &[2, 2, 2]);
        assert!(out[100_003..].iter().all(|&x| x == 3));
    }

    #[test]
    fn write_exact_to_closed_pipe_fails_with_epipe() {
        let (r, w) = pipe();
        drop(r);
        // SAFETY: ignoring SIGPIPE for this test process only changes signal disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let e = write_exact(w.as_raw_fd(), b"x").unwrap_err();
        assert_eq!(e.errno, libc::EPIPE);
    }
}
