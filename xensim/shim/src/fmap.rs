//! Foreign mappings as real kernel mappings of the domain's memory file.
//!
//! A mapping of n frames reserves n pages of address space `PROT_NONE`, then
//! maps each contiguous run of frames (consecutive file offsets in the same
//! file) with one `MAP_SHARED|MAP_FIXED` `mmap`, as privcmd does one mmap plus
//! one batch. Slots that cannot be mapped stay `PROT_NONE`. Because the whole
//! region is a single reservation, a plain `munmap(addr, n*4096)` releases it.

use std::os::fd::RawFd;

use crate::error::{ShimError, ShimResult};
use crate::hcall::PAGE_SIZE;

/// Where one frame lives: a file and a byte offset in it, or the negative
/// errno privcmd would report for that slot.
pub type FrameSource = Result<(RawFd, u64), i32>;

/// A reserved region with some slots mapped.
#[derive(Debug)]
pub struct Mapping {
    /// Start of the region (n pages).
    pub addr: *mut u8,
    /// Per-slot result: 0, or a negative errno.
    pub errs: Vec<i32>,
}

/// Maps `sources.len()` frames with protection `prot` (PROT_* bits).
pub fn map_frames(sources: &[FrameSource], prot: i32) -> ShimResult<Mapping> {
    let n = sources.len();
    if n == 0 {
        return Err(ShimError::inval("mapping of zero pages"));
    }
    let len = n
        .checked_mul(PAGE_SIZE)
        .ok_or_else(|| ShimError::inval("mapping too large"))?;
    // SAFETY: a fresh anonymous PROT_NONE reservation; touches no existing memory.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(ShimError::last_os("reserving foreign mapping"));
    }
    let base = base.cast::<u8>();
    let mut errs = vec![0i32; n];
    let mut i = 0;
    while i < n {
        let (fd, off) = match sources[i] {
            Ok(s) => s,
            Err(e) => {
                errs[i] = if e < 0 { e } else { -e.max(1) };
                i += 1;
                continue;
            }
        };
        // Extend the run while the next frame is the next page of the same file.
        let mut j = i + 1;
        while j < n {
            match sources[j] {
                Ok((f2, o2)) if f2 == fd && o2 == off + ((j - i) * PAGE_SIZE) as u64 => j += 1,
                _ => break,
            }
        }
        // SAFETY: the target range [base+i*4096, base+j*4096) lies inside our
        // own reservation, so MAP_FIXED replaces only memory we own.
        let p = unsafe {
            libc::mmap(
                base.add(i * PAGE_SIZE).cast(),
                (j - i) * PAGE_SIZE,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EFAULT);
            for x in &mut errs[i..j] {
                *x = -e;
            }
        }
        i = j;
    }
    Ok(Mapping { addr: base, errs })
}

/// Releases `pages` pages at `addr`.
pub fn unmap(addr: *mut u8, pages: usize) -> ShimResult<()> {
    if addr.is_null() {
        return Err(ShimError::inval("unmap of NULL"));
    }
    // SAFETY: the caller hands back a region it got from map_frames (the C
    // contract of xenforeignmemory_unmap); munmap validates the range itself.
    if unsafe { libc::munmap(addr.cast(), pages * PAGE_SIZE) } != 0 {
        return Err(ShimError::last_os("munmap"));
    }
    Ok(())
}

/// Maps all frames or none: on any failed slot the region is released and the
/// slot's errno returned, as libxenforeignmemory does when `err` is NULL.
pub fn map_all(sources: &[FrameSource], prot: i32) -> ShimResult<*mut u8> {
    let m = map_frames(sources, prot)?;
    if let Some((idx, &e)) = m.errs.iter().enumerate().find(|(_, &e)| e != 0) {
        let _ = unmap(m.addr, sources.len());
        return Err(ShimError::new(
            -e,
            format!("frame {idx} of {} could not be mapped", sources.len()),
        ));
    }
    Ok(m.addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    fn file_with_pages(n: usize) -> std::fs::File {
        let mut f = tempfile_in_tmp();
        for i in 0..n {
            f.write_all(&vec![i as u8 + 1; PAGE_SIZE]).unwrap();
        }
        f
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "xensim-shim-fmap-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn runs_are_shared_mappings_and_failed_slots_report_errors() {
        let f = file_with_pages(4);
        let fd = f.as_raw_fd();
        let p = PAGE_SIZE as u64;
        let src = [
            Ok((fd, 2 * p)),
            Ok((fd, 3 * p)),
            Err(-libc::EINVAL),
            Ok((fd, 0)),
        ];
        let m = map_frames(&src, libc::PROT_READ | libc::PROT_WRITE).unwrap();
        assert_eq!(m.errs, vec![0, 0, -libc::EINVAL, 0]);
        // SAFETY: slots 0, 1, 3 are mapped pages of the file.
        unsafe {
            assert_eq!(*m.addr, 3);
            assert_eq!(*m.addr.add(PAGE_SIZE), 4);
            assert_eq!(*m.addr.add(3 * PAGE_SIZE), 1);
            *m.addr.add(3 * PAGE_SIZE) = 0x55;
        }
        unmap(m.addr, 4).unwrap();
        let mut b = [0u8; 1];
        use std::os::unix::fs::FileExt;
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b[0], 0x55, "writes go to the shared file");
    }

    #[test]
    fn map_all_fails_whole_call_on_any_bad_slot() {
        let f = file_with_pages(1);
        let src = [Ok((f.as_raw_fd(), 0)), Err(-libc::EINVAL)];
        let e = map_all(&src, libc::PROT_READ).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
    }

    #[test]
    fn plain_munmap_releases_a_mapping() {
        let f = file_with_pages(2);
        let src = [
            Ok((f.as_raw_fd(), 0)),
            Ok((f.as_raw_fd(), PAGE_SIZE as u64)),
        ];
        let a = map_all(&src, libc::PROT_READ).unwrap();
        // SAFETY: a is a 2-page region from map_all.
        assert_eq!(unsafe { libc::munmap(a.cast(), 2 * PAGE_SIZE) }, 0);
        // The range is now free: mincore reports ENOMEM for unmapped memory.
        let mut vec = [0u8; 2];
        // SAFETY: vec has one byte per page of the queried range.
        let r = unsafe { libc::mincore(a.cast(), 2 * PAGE_SIZE, vec.as_mut_ptr()) };
        assert_eq!(r, -1);
    }
}
