//! Access to mapped guest pages shared by the mapping backends (`hv::sim`,
//! `hv::xen`): the zero test and the borrowed views the engines write from
//! and read into without a bounce buffer.
//!
//! Guest memory is shared with a guest that may be running, so while the
//! save engine reads it the bytes can change under it. The Rust memory
//! model has no notion of memory written by another address space; these
//! helpers keep to what stays well-defined in practice:
//!
//! * the zero test reads with relaxed atomic loads (plain `mov`s on
//!   x86-64), so a concurrent change gives a stale or torn answer, never a
//!   miscompiled one;
//! * the byte views handed to the stream writer are only read as whole
//!   buffers (a `writev` into the kernel, or a `memcpy` into a buffer),
//!   exactly what libxenguest does with the same mapping. A page that
//!   changes during the copy goes out torn, and log-dirty marks it to be
//!   sent again; the last pass runs with the guest paused.

use std::sync::atomic::{AtomicU64, Ordering};

use super::PAGE_SIZE;

/// Whether the page at `p` is all zeros. Stops at the first non-zero word.
///
/// # Safety
///
/// `p` must be 8-byte aligned and readable for [`PAGE_SIZE`] bytes for the
/// duration of the call (a mapped guest page).
pub(crate) unsafe fn page_is_zero(p: *const u8) -> bool {
    const WORDS: usize = PAGE_SIZE / 8;
    const STRIDE: usize = 8;
    let w = p.cast::<AtomicU64>();
    let mut i = 0;
    while i < WORDS {
        let mut acc = 0u64;
        for k in 0..STRIDE {
            // SAFETY: `i + k < WORDS`, so the word lies inside the page the
            // caller vouches for; it is aligned because `p` is. An atomic
            // load tolerates the guest writing the word concurrently.
            acc |= unsafe { (*w.add(i + k)).load(Ordering::Relaxed) };
        }
        if acc != 0 {
            return false;
        }
        i += STRIDE;
    }
    true
}

/// The bytes of `len` mapped guest pages starting at `p`, for the stream
/// writer to pass to `writev` without copying.
///
/// # Safety
///
/// `p` must be readable for `len * PAGE_SIZE` bytes for all of `'a` (the
/// mapping outlives the borrow), and no Rust code may write these bytes
/// during `'a`. The guest may still write them: see the module comment for
/// why a slice that is only ever bulk-copied tolerates that.
pub(crate) unsafe fn guest_bytes<'a>(p: *const u8, len: usize) -> &'a [u8] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(p, len * PAGE_SIZE) }
}

/// The bytes of `len` mapped guest pages starting at `p`, for the restore
/// engine to read the stream into directly.
///
/// The kernel is first asked to fault the pages in for writing in one call
/// (`MADV_POPULATE_WRITE`), so that the copy that follows takes no page
/// fault per page where the mapping is filled lazily (xensim's are; a
/// privcmd mapping is complete already). A refusal changes nothing.
///
/// # Safety
///
/// `p` must be readable and writable for `len * PAGE_SIZE` bytes for all of
/// `'a`, and nothing else may access them during `'a` (a restore target
/// does not run, and the borrow is tied to a `&mut` of the mapping).
pub(crate) unsafe fn guest_bytes_mut<'a>(p: *mut u8, len: usize) -> &'a mut [u8] {
    // SAFETY: the range is a writable mapping (the caller's contract);
    // populating it changes no contents, and a failure is harmless.
    unsafe { libc::madvise(p.cast(), len * PAGE_SIZE, libc::MADV_POPULATE_WRITE) };
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(p, len * PAGE_SIZE) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(4096))]
    struct Page([u8; PAGE_SIZE]);

    #[test]
    fn zero_test_finds_a_single_set_byte_anywhere_in_the_page() {
        let mut page = Page([0; PAGE_SIZE]);
        // SAFETY: a local, aligned, page-sized buffer.
        assert!(unsafe { page_is_zero(page.0.as_ptr()) });
        for at in [0, 7, 8, 63, 64, 2048, PAGE_SIZE - 1] {
            page.0[at] = 0x80;
            // SAFETY: as above.
            assert!(!unsafe { page_is_zero(page.0.as_ptr()) }, "byte {at}");
            page.0[at] = 0;
        }
    }
}
