//! Foreign mappings: guest frames mapped into the caller's address space with
//! real `mmap`s of the domain's memory file, one `mmap` per contiguous run of
//! frames (as privcmd does one mmap plus one batch ioctl), so a plain
//! `munmap(addr, n*4096)` releases them.

use crate::error::{Error, Result};
use crate::PAGE_SIZE;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Foreign mapping regions alive in this process: made by
/// [`ForeignMapping::map`]/[`ForeignMapping::map_sources`] and not yet
/// released (dropped, or unmapped through [`release_raw`] after
/// [`ForeignMapping::into_raw`]). Tests read it to prove that a save or
/// restore, failed or not, leaves nothing mapped.
static LIVE_MAPPINGS: AtomicUsize = AtomicUsize::new(0);

/// How many foreign mapping regions this process holds now.
pub fn live_mappings() -> usize {
    LIVE_MAPPINGS.load(Ordering::SeqCst)
}

/// Account for a region given away by [`ForeignMapping::into_raw`] that its
/// owner has now unmapped (the shim's `xenforeignmemory_unmap`), or will
/// unmap where xensim cannot see it (a plain `munmap` by the callers of
/// the shim's `xc_map_foreign_*`).
pub fn release_raw() {
    // Saturating: a C caller unmapping a region twice must not wrap it.
    let _ = LIVE_MAPPINGS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

/// Access wanted for a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prot {
    /// `PROT_READ`.
    Read,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

impl Prot {
    fn bits(self) -> i32 {
        match self {
            Prot::Read => libc::PROT_READ,
            Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        }
    }
}

/// A region of `pages` pages; slot `i` maps the i-th requested frame, or
/// stays `PROT_NONE` with a non-zero (negative errno) entry in
/// [`ForeignMapping::errors`].
#[derive(Debug)]
pub struct ForeignMapping {
    addr: *mut u8,
    pages: usize,
    errors: Vec<i32>,
    mmap_calls: usize,
    prot: Prot,
}

// SAFETY: the region is shared memory owned by this handle; it is only
// accessed through bounds-checked copies, so moving or sharing the handle
// across threads is sound.
unsafe impl Send for ForeignMapping {}
// SAFETY: see `Send`.
unsafe impl Sync for ForeignMapping {}

impl ForeignMapping {
    /// Map `offsets.len()` pages of `file`: `Some(off)` maps the page at file
    /// offset `off`, `None` leaves the slot inaccessible with error `-errno`.
    pub(crate) fn map(
        file: &File,
        offsets: &[Option<u64>],
        prot: Prot,
        errno: i32,
    ) -> Result<ForeignMapping> {
        let sources: Vec<Option<(&File, u64)>> =
            offsets.iter().map(|o| o.map(|off| (file, off))).collect();
        Self::map_sources(&sources, prot, errno)
    }

    /// Like [`ForeignMapping::map`], each page from its own file (guest RAM,
    /// a xenheap page, the M2P): one `mmap` per run of consecutive pages of
    /// one file.
    pub(crate) fn map_sources(
        offsets: &[Option<(&File, u64)>],
        prot: Prot,
        errno: i32,
    ) -> Result<ForeignMapping> {
        let pages = offsets.len();
        if pages == 0 {
            return Err(Error::new(libc::EINVAL, "mapping of zero frames"));
        }
        let len = pages * PAGE_SIZE as usize;
        // SAFETY: reserves a fresh anonymous PROT_NONE region at a
        // kernel-chosen address; nothing else refers to it yet.
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
            return Err(Error::io(
                "mmap reservation",
                std::io::Error::last_os_error(),
            ));
        }
        LIVE_MAPPINGS.fetch_add(1, Ordering::SeqCst);
        let mut m = ForeignMapping {
            addr: base.cast(),
            pages,
            errors: vec![0; pages],
            mmap_calls: 0,
            prot,
        };
        let mut i = 0;
        while i < pages {
            let Some((file, start_off)) = offsets[i] else {
                m.errors[i] = -errno;
                i += 1;
                continue;
            };
            let mut j = i + 1;
            while j < pages
                && offsets[j].is_some_and(|(f, o)| {
                    f.as_raw_fd() == file.as_raw_fd() && o == start_off + (j - i) as u64 * PAGE_SIZE
                })
            {
                j += 1;
            }
            // SAFETY: the target range [i, j) lies inside the reservation we
            // own; MAP_FIXED replaces exactly those PROT_NONE pages.
            let r = unsafe {
                libc::mmap(
                    m.addr.add(i * PAGE_SIZE as usize).cast(),
                    (j - i) * PAGE_SIZE as usize,
                    prot.bits(),
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    file.as_raw_fd(),
                    start_off as libc::off_t,
                )
            };
            m.mmap_calls += 1;
            if r == libc::MAP_FAILED {
                let e = std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                for slot in &mut m.errors[i..j] {
                    *slot = -e;
                }
            }
            i = j;
        }
        Ok(m)
    }

    /// Start address of the region.
    pub fn addr(&self) -> *mut u8 {
        self.addr
    }

    /// Number of pages (slots) in the region.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Per-slot result: 0, or a negative errno for a slot left unmapped.
    pub fn errors(&self) -> &[i32] {
        &self.errors
    }

    /// True if every slot is mapped.
    pub fn all_ok(&self) -> bool {
        self.errors.iter().all(|&e| e == 0)
    }

    /// How many `mmap` calls mapped the frames (one per contiguous run).
    pub fn mmap_calls(&self) -> usize {
        self.mmap_calls
    }

    fn check_slot(&self, slot: usize) -> Result<usize> {
        match self.errors.get(slot) {
            Some(0) => Ok(slot * PAGE_SIZE as usize),
            Some(e) => Err(Error::new(-e, format!("slot {slot} is not mapped"))),
            None => Err(Error::new(
                libc::EINVAL,
                format!("slot {slot} out of range"),
            )),
        }
    }

    /// Copy one mapped page out.
    pub fn read_page(&self, slot: usize, out: &mut [u8]) -> Result<()> {
        let off = self.check_slot(slot)?;
        let n = out.len().min(PAGE_SIZE as usize);
        // SAFETY: the slot is mapped (errors[slot] == 0) and `n` ≤ one page.
        unsafe { std::ptr::copy_nonoverlapping(self.addr.add(off), out.as_mut_ptr(), n) };
        Ok(())
    }

    /// Copy data into one mapped page (EACCES for a read-only mapping).
    pub fn write_page(&self, slot: usize, data: &[u8]) -> Result<()> {
        if self.prot != Prot::ReadWrite {
            return Err(Error::new(libc::EACCES, "mapping is read-only"));
        }
        let off = self.check_slot(slot)?;
        let n = data.len().min(PAGE_SIZE as usize);
        // SAFETY: as in `read_page`, and the mapping is writable.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.addr.add(off), n) };
        Ok(())
    }

    /// Give the region to C code: returns its address; the new owner releases
    /// it with `munmap(addr, pages * 4096)` and then calls [`release_raw`].
    /// The region stays counted in [`live_mappings`] until then.
    pub fn into_raw(self) -> *mut u8 {
        // Only the region changes hands: the slot errors are heap memory of
        // this handle, freed here (forgetting the whole handle leaked 4
        // bytes per page on every mapping a C caller made).
        let mut me = std::mem::ManuallyDrop::new(self);
        drop(std::mem::take(&mut me.errors));
        me.addr
    }
}

impl Drop for ForeignMapping {
    fn drop(&mut self) {
        // SAFETY: the whole region (reservation plus the fixed mappings
        // inside it) belongs to this handle and is released exactly once.
        unsafe {
            libc::munmap(self.addr.cast(), self.pages * PAGE_SIZE as usize);
        }
        release_raw();
    }
}
