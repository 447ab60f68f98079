//! Shared file mappings: the only place (with `foreign.rs`) that calls `mmap`.
//!
//! Control words and bitmaps are files mapped `MAP_SHARED` by every process
//! that opens the host, and accessed only through atomics, so updates made by
//! one process are visible to all others without locks.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

/// A `MAP_SHARED` read-write mapping of the start of a file.
pub(crate) struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all typed access goes through
// atomics or bounds-checked raw copies, so sharing the handle between threads
// is as safe as sharing the file itself.
unsafe impl Send for SharedMap {}
// SAFETY: see `Send`; no method hands out non-atomic references.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Map `len` bytes of `file` (which must be at least that long) shared,
    /// readable and writable. `MAP_NORESERVE` because guest memory files are
    /// sparse and far larger than what is ever touched.
    pub(crate) fn map(file: &File, len: usize, what: &str) -> Result<Self> {
        if len == 0 || len % 8 != 0 {
            return Err(Error::new(
                libc::EINVAL,
                format!("bad mapping size for {what}"),
            ));
        }
        // Touching a mapping beyond the end of the file raises SIGBUS, so a
        // truncated (corrupt) file must be refused here.
        let flen = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {what}"), e))?
            .len();
        if flen < len as u64 {
            return Err(Error::new(
                libc::EIO,
                format!("{what} is truncated ({flen} < {len} bytes)"),
            ));
        }
        // SAFETY: a fresh mapping at a kernel-chosen address; the fd is valid
        // for the duration of the call and the kernel keeps its own reference.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::io(
                format!("mmap {what}"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(SharedMap {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The mapping seen as 64-bit atomic words.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: mmap returns page-aligned memory, `len` is a multiple of 8
        // and the region lives as long as `self`. AtomicU64 has the same
        // layout as u64 and every access through it is atomic, which is what
        // makes concurrent use by other processes sound.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<AtomicU64>(), self.len / 8) }
    }

    /// The mapping seen as 32-bit atomic words (the compat M2P).
    pub(crate) fn words32(&self) -> &[AtomicU32] {
        // SAFETY: as in `words`: page-aligned, `len` a multiple of 4, alive
        // as long as `self`, and every access is atomic.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<AtomicU32>(), self.len / 4) }
    }

    /// The mapping seen as atomic bytes (page-type bytes).
    pub(crate) fn bytes(&self) -> &[AtomicU8] {
        // SAFETY: as in `words`; AtomicU8 has the layout of u8.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<AtomicU8>(), self.len) }
    }

    /// Copy `data` into the mapping at `offset` (bounds-checked).
    pub(crate) fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        offset
            .checked_add(data.len())
            .filter(|&e| e <= self.len)
            .ok_or_else(|| Error::new(libc::EFAULT, "write outside mapping"))?;
        // SAFETY: the destination range was checked to lie inside the live
        // mapping; `data` is a separate Rust slice, so the ranges can't
        // overlap. Other processes may write the same bytes concurrently,
        // which for plain guest memory is the intended (racy) semantics.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len()) };
        Ok(())
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing
        // borrowed from the mapping outlives `self`.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// An exclusive `flock` on a file, released on drop.
pub(crate) struct FileLock<'a> {
    file: &'a File,
}

impl<'a> FileLock<'a> {
    /// Block until the exclusive lock is held.
    pub(crate) fn exclusive(file: &'a File) -> Result<Self> {
        loop {
            // SAFETY: flock on a valid, open descriptor has no memory effects.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(FileLock { file });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(Error::io("flock", e));
            }
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: flock on the valid, open descriptor the lock borrows has no
        // memory effects; this unlocks the lock we hold.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Release the storage of `len` bytes at `offset` of a sparse file, so they
/// read back as zeros (every mapping of the file sees the change).
pub(crate) fn punch_hole(file: &File, offset: u64, len: u64) -> Result<()> {
    // SAFETY: fallocate on a valid descriptor; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if r != 0 {
        // Filesystems without hole punching: write zeros instead.
        use std::os::unix::fs::FileExt;
        let zeros = vec![0u8; len as usize];
        file.write_all_at(&zeros, offset)
            .map_err(|e| Error::io("zeroing pages", e))?;
    }
    Ok(())
}
