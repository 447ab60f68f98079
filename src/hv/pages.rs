//! Mapped guest pages: the traits the engines read and write them through
//! ([`MappedPages`], [`MappedPagesMut`]), the one raw mapping both backends
//! build on ([`RawMapping`]), and [`GuestBytes`], the view of pages the
//! guest may be writing. All code that reaches guest memory through a raw
//! pointer is in this file; a backend only makes the mapping and says how
//! to unmap it.
//!
//! Guest memory is shared with a guest that may be running, so while the
//! save engine reads it the bytes can change under it. The Rust memory
//! model has no notion of memory written by another address space; this
//! module keeps to what stays well-defined in practice (as vm-memory's
//! `VolatileSlice` does):
//!
//! * the zero test reads with relaxed atomic loads (plain `mov`s on
//!   x86-64), so a concurrent change gives a stale or torn answer, never a
//!   miscompiled one;
//! * pages a guest may be writing are never handed out as `&[u8]` to code
//!   that could look at them byte by byte: they are [`GuestBytes`], which
//!   can only be copied whole (into a buffer, or by the kernel in a
//!   `writev`), exactly what libxenguest does with the same mapping. A page
//!   that changes during the copy goes out torn, and log-dirty marks it to
//!   be sent again; the last pass runs with the guest paused.

use std::fmt;
use std::io::IoSlice;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};

use super::PAGE_SIZE;

/// A batch of guest frames mapped for reading (save side). Dropping it
/// unmaps the frames (`xenforeignmemory_unmap`).
pub trait MappedPages {
    /// Number of frames the mapping was asked for.
    fn count(&self) -> usize;
    /// Per-frame result of the mapping: 0 if the frame is mapped, else a
    /// non-zero error (a negative errno from privcmd).
    fn error(&self, i: usize) -> i32;
    /// Copy frame `i` into `dst`. Frames whose `error` is non-zero must not
    /// be read; implementations return without copying for them.
    fn read_page(&self, i: usize, dst: &mut [u8; PAGE_SIZE]);

    /// Whether frame `i` (mapped without error) is all zeros. The guest may
    /// change it meanwhile; the answer is then that of some moment of the
    /// call. The default copies the page out with
    /// [`MappedPages::read_page`] and looks.
    fn is_zero(&self, i: usize) -> bool {
        let mut page = [0u8; PAGE_SIZE];
        self.read_page(i, &mut page);
        page.iter().all(|&b| b == 0)
    }

    /// Frames `first .. first + n` as one run of [`GuestBytes`], if they
    /// are all mapped and lie one after the other in memory, so that a
    /// writer can hand them to the kernel without a copy (as libxenguest's
    /// `writev` does). `None` (the default) makes the engine copy the pages
    /// with [`MappedPages::read_page`].
    fn pages(&self, first: usize, n: usize) -> Option<GuestBytes<'_>> {
        let _ = (first, n);
        None
    }
}

/// A batch of guest frames mapped for reading and writing (restore side).
pub trait MappedPagesMut: MappedPages {
    /// Copy `src` into frame `i`.
    fn write_page(&mut self, i: usize, src: &[u8; PAGE_SIZE]);

    /// Frames `first .. first + n` as one writable byte slice, if they are
    /// all mapped read-write and lie one after the other in memory, so
    /// that the restore engine reads the stream straight into them. `None`
    /// (the default) makes the engine copy through
    /// [`MappedPagesMut::write_page`].
    ///
    /// A plain slice, unlike [`MappedPages::pages`]: a restore target does
    /// not run, so nothing but the borrower reaches these bytes.
    fn pages_mut(&mut self, first: usize, n: usize) -> Option<&mut [u8]> {
        let _ = (first, n);
        None
    }
}

/// How the engines may keep guest mappings, a property of the backend
/// ([`GuestMemory::mapping_hints`](super::GuestMemory::mapping_hints)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingHints {
    /// A mapping keeps showing what the guest has at each frame even after
    /// the guest changes its p2m (xensim maps file offsets). False on Xen:
    /// a foreign mapping holds the page it was made of, so a page the guest
    /// gave back and got anew (ballooning) would read stale; mappings are
    /// then only kept while the guest cannot run in between.
    pub follows_p2m: bool,
    /// Most guest frames the engines may keep mapped beyond one batch.
    pub max_cached_pages: usize,
}

impl Default for MappingHints {
    /// Conservative: mappings do not follow the p2m, and at most 256 MiB of
    /// guest memory stays mapped (a PVH dom0 backs foreign mappings with
    /// its own ballooned-out memory).
    fn default() -> Self {
        MappingHints {
            follows_p2m: false,
            max_cached_pages: 64 * 1024,
        }
    }
}

/// Bytes of mapped guest memory that the guest may be writing while they
/// are borrowed (vm-memory's `VolatileSlice`, for whole copies only).
///
/// There is no way to read single bytes: the bytes can only be copied
/// whole, into a buffer ([`GuestBytes::copy_to`]) or by the kernel
/// ([`GuestBytes::io_slice`], for `write_vectored`). A copy that races
/// with the guest yields a torn page, never undefined behaviour in code
/// that branches on what it read.
#[derive(Clone, Copy)]
pub struct GuestBytes<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _mapping: PhantomData<&'a [u8]>,
}

impl<'a> GuestBytes<'a> {
    /// The `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be non-null and readable for `len` bytes for all of
    /// `'a` (the mapping outlives the borrow), and no Rust code may write
    /// these bytes during `'a`. The guest may write them.
    unsafe fn from_raw(ptr: *const u8, len: usize) -> Self {
        GuestBytes {
            // SAFETY: non-null by the caller's contract.
            ptr: unsafe { NonNull::new_unchecked(ptr.cast_mut()) },
            len,
            _mapping: PhantomData,
        }
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copy the bytes into `dst`, which must be exactly as long.
    ///
    /// # Panics
    ///
    /// If `dst.len() != self.len()`.
    pub fn copy_to(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.len, "GuestBytes::copy_to length");
        // SAFETY: `ptr` is readable for `len` bytes for `'a` (see
        // `from_raw`), `dst` is a distinct Rust buffer of the same length,
        // so the two do not overlap. The copy goes through raw pointers,
        // with no Rust reference to the guest bytes.
        unsafe { ptr::copy_nonoverlapping(self.ptr.as_ptr(), dst.as_mut_ptr(), self.len) };
    }

    /// The bytes as an [`IoSlice`], to hand to `write_vectored` at the
    /// last moment.
    ///
    /// This is the one way out of [`GuestBytes`] into something that
    /// derefs to `&[u8]`, because a vectored write is a bulk copy (by the
    /// kernel into a pipe or socket, or by a buffered writer's `memcpy`)
    /// and sending pages without a bounce buffer is what it is for. Callers
    /// pass it on to a writer and do not look at the bytes themselves (the
    /// save engine's record output hands it to the stream writer, which
    /// takes plain byte slices and writes them whole).
    pub fn io_slice(&self) -> IoSlice<'a> {
        // SAFETY: `ptr` is readable for `len` bytes for `'a` and nothing in
        // this process writes them meanwhile (see `from_raw`). The guest
        // may still write them; the engines hand the slice to the stream
        // writer, which passes it whole to `write_vectored`, whose copy
        // tolerates that as described above.
        IoSlice::new(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) })
    }
}

impl fmt::Debug for GuestBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestBytes")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

/// A batch of guest frames mapped one after the other from `base`, with a
/// per-frame error, as `xenforeignmemory_map` and xensim return them.
///
/// The backend supplies the mapping and `unmap`, a value whose drop
/// releases it (the last thing dropped with the mapping); everything that
/// reads or writes the pages is here.
pub struct RawMapping<U> {
    /// Start of `errs.len()` pages; dangling (never read) when no page is
    /// mapped.
    base: *mut u8,
    errs: Vec<i32>,
    /// Mapped with `PROT_WRITE`.
    writable: bool,
    /// Declared last, so that it is dropped (and the pages unmapped) last.
    _unmap: U,
}

// SAFETY: the mapping owns its pages, which no other Rust value reaches;
// moving it to another thread is as safe as moving its unmap guard.
unsafe impl<U: Send> Send for RawMapping<U> {}
// SAFETY: through `&RawMapping` the pages are only read (raw copies and
// atomic loads), which threads may do at once.
unsafe impl<U: Sync> Sync for RawMapping<U> {}

impl<U> RawMapping<U> {
    /// The mapping of `errs.len()` frames at `base`: frame `i` is mapped
    /// if `errs[i] == 0`, else `errs[i]` is the (negative errno) error.
    ///
    /// # Safety
    ///
    /// For each `i` with `errs[i] == 0`, the page-aligned page at
    /// `base + i * PAGE_SIZE` must be readable (and writable, if
    /// `writable`) until `unmap` is dropped, and reached by no other Rust
    /// value meanwhile.
    pub unsafe fn new(base: *mut u8, errs: Vec<i32>, writable: bool, unmap: U) -> Self {
        RawMapping {
            base,
            errs,
            writable,
            _unmap: unmap,
        }
    }

    fn page_ptr(&self, i: usize) -> Option<*mut u8> {
        match self.errs.get(i) {
            // SAFETY: `i < errs.len()`, so the offset stays inside the
            // mapping of `errs.len()` pages that starts at `base`.
            Some(0) => Some(unsafe { self.base.add(i * PAGE_SIZE) }),
            _ => None,
        }
    }

    /// The start of pages `first .. first + n` if all are mapped.
    fn run_ptr(&self, first: usize, n: usize) -> Option<*mut u8> {
        let end = first.checked_add(n)?;
        let errs = self.errs.get(first..end)?;
        if n == 0 || errs.iter().any(|&e| e != 0) {
            return None;
        }
        self.page_ptr(first)
    }
}

impl<U> fmt::Debug for RawMapping<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMapping")
            .field("base", &self.base)
            .field("pages", &self.errs.len())
            .field("writable", &self.writable)
            .finish()
    }
}

impl<U> MappedPages for RawMapping<U> {
    fn count(&self) -> usize {
        self.errs.len()
    }

    fn error(&self, i: usize) -> i32 {
        self.errs.get(i).copied().unwrap_or(-libc::EINVAL)
    }

    fn read_page(&self, i: usize, dst: &mut [u8; PAGE_SIZE]) {
        if let Some(page) = self.pages(i, 1) {
            page.copy_to(dst);
        }
    }

    fn is_zero(&self, i: usize) -> bool {
        match self.page_ptr(i) {
            // SAFETY: page `i` is mapped, page-aligned and readable for a
            // page while `self` lives.
            Some(p) => unsafe { page_is_zero(p) },
            None => false,
        }
    }

    fn pages(&self, first: usize, n: usize) -> Option<GuestBytes<'_>> {
        let p = self.run_ptr(first, n)?;
        // SAFETY: the pages are mapped and consecutive from `p`; the view
        // borrows `self`, which unmaps only on drop, and no Rust code
        // writes through `&self`.
        Some(unsafe { GuestBytes::from_raw(p, n * PAGE_SIZE) })
    }
}

impl<U> MappedPagesMut for RawMapping<U> {
    fn write_page(&mut self, i: usize, src: &[u8; PAGE_SIZE]) {
        if !self.writable {
            return;
        }
        if let Some(p) = self.page_ptr(i) {
            // SAFETY: page `i` was mapped read-write without error, so `p`
            // is writable for PAGE_SIZE bytes and does not overlap `src`.
            unsafe { ptr::copy_nonoverlapping(src.as_ptr(), p, PAGE_SIZE) };
        }
    }

    fn pages_mut(&mut self, first: usize, n: usize) -> Option<&mut [u8]> {
        if !self.writable {
            return None;
        }
        let p = self.run_ptr(first, n)?;
        // SAFETY: the pages are mapped read-write and consecutive; the
        // slice borrows `self` mutably, so nothing else in this process
        // reaches them meanwhile, and a restore target is not running.
        Some(unsafe { guest_bytes_mut(p, n) })
    }
}

/// Whether the page at `p` is all zeros. Stops at the first non-zero word.
///
/// # Safety
///
/// `p` must be 8-byte aligned and readable for [`PAGE_SIZE`] bytes for the
/// duration of the call (a mapped guest page).
unsafe fn page_is_zero(p: *const u8) -> bool {
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
unsafe fn guest_bytes_mut<'a>(p: *mut u8, len: usize) -> &'a mut [u8] {
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

    /// Three pages of a local buffer as a mapping whose middle frame
    /// failed; `unmap` records that the guard was dropped.
    fn three_pages(
        buf: &mut [Page; 3],
        writable: bool,
        unmap: std::rc::Rc<()>,
    ) -> RawMapping<std::rc::Rc<()>> {
        // SAFETY: `buf` is three aligned, writable pages that outlive the
        // mapping in each test, and only the mapping reaches them.
        unsafe { RawMapping::new(buf.as_mut_ptr().cast(), vec![0, -14, 0], writable, unmap) }
    }

    #[test]
    fn raw_mapping_lends_only_runs_of_mapped_frames_and_drops_its_guard() {
        let mut buf = [
            Page([1; PAGE_SIZE]),
            Page([0; PAGE_SIZE]),
            Page([0; PAGE_SIZE]),
        ];
        let guard = std::rc::Rc::new(());
        let m = three_pages(&mut buf, false, guard.clone());
        assert_eq!((m.count(), m.error(1), m.error(3)), (3, -14, -libc::EINVAL));
        assert_eq!(m.pages(0, 1).map(|g| g.len()), Some(PAGE_SIZE));
        assert!(m.pages(0, 2).is_none(), "frame 1 failed");
        assert!(m.pages(2, 2).is_none(), "beyond the batch");
        assert!(m.pages(2, 0).is_none(), "empty run");
        assert!(!m.is_zero(0) && m.is_zero(2) && !m.is_zero(1));
        let mut page = [7u8; PAGE_SIZE];
        m.read_page(1, &mut page);
        assert_eq!(page, [7; PAGE_SIZE], "a failed frame is not read");
        m.read_page(0, &mut page);
        assert_eq!(page, [1; PAGE_SIZE]);
        assert_eq!(
            &*m.pages(0, 1).expect("mapped").io_slice(),
            &[1; PAGE_SIZE][..]
        );
        assert_eq!(std::rc::Rc::strong_count(&guard), 2);
        drop(m);
        assert_eq!(std::rc::Rc::strong_count(&guard), 1, "unmapped on drop");
    }

    #[test]
    fn raw_mapping_writes_only_when_mapped_writable() {
        let mut buf = [
            Page([0; PAGE_SIZE]),
            Page([0; PAGE_SIZE]),
            Page([0; PAGE_SIZE]),
        ];
        let mut ro = three_pages(&mut buf, false, std::rc::Rc::new(()));
        ro.write_page(0, &[5; PAGE_SIZE]);
        assert!(ro.pages_mut(0, 1).is_none());
        assert!(ro.is_zero(0), "read-only mapping left alone");
        drop(ro);
        let mut rw = three_pages(&mut buf, true, std::rc::Rc::new(()));
        rw.write_page(0, &[5; PAGE_SIZE]);
        rw.pages_mut(2, 1).expect("mapped").fill(6);
        assert!(rw.pages_mut(1, 2).is_none(), "frame 1 failed");
        drop(rw);
        assert_eq!((buf[0].0[100], buf[1].0[100], buf[2].0[100]), (5, 0, 6));
    }

    #[test]
    #[should_panic(expected = "GuestBytes::copy_to length")]
    fn guest_bytes_copy_wants_a_buffer_of_its_length() {
        let mut buf = [
            Page([0; PAGE_SIZE]),
            Page([0; PAGE_SIZE]),
            Page([0; PAGE_SIZE]),
        ];
        let m = three_pages(&mut buf, false, std::rc::Rc::new(()));
        m.pages(0, 1).expect("mapped").copy_to(&mut [0; 8]);
    }
}
