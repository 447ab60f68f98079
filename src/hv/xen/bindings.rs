//! Raw bindings to libxenctrl, libxenforeignmemory and libxenguest, generated
//! by bindgen from the installed headers at build time (see `build.rs`).
//! Only `hv::xen` and `capi` use them; nothing else in the crate knows C.

#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    clippy::all,
    // Generated code: bindgen's layout tests have no SAFETY lines.
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

include!(concat!(env!("OUT_DIR"), "/xen_bindings.rs"));

/// `privcmd_mmap_entry_t` of `xen/sys/privcmd.h` (Linux's privcmd ABI,
/// three `__u64`), which `xc_map_foreign_ranges` takes; bindgen does not
/// read the kernel header.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct privcmd_mmap_entry_t {
    pub va: u64,
    pub mfn: u64,
    pub npages: u64,
}

// libxenctrl 4.17 exports these (version node VERS_4.17.0) and libxenguest
// calls them, but they are declared only in libxenctrl's private
// `xc_private.h`, so bindgen cannot see them. The prototypes below follow
// that header exactly.
extern "C" {
    /// Replace each frame in `arr[0..num]` by its `XEN_DOMCTL_PFINFO_*` type.
    pub fn xc_get_pfn_type_batch(
        xch: *mut xc_interface,
        dom: u32,
        num: ::core::ffi::c_uint,
        arr: *mut xen_pfn_t,
    ) -> ::core::ffi::c_int;

    /// Map `nentries` runs of `chunksize` bytes starting at each entry's
    /// `mfn` of `dom` into one region of `size` bytes (released with
    /// `munmap`).
    pub fn xc_map_foreign_ranges(
        xch: *mut xc_interface,
        dom: u32,
        size: usize,
        prot: ::core::ffi::c_int,
        chunksize: usize,
        entries: *mut privcmd_mmap_entry_t,
        nentries: ::core::ffi::c_int,
    ) -> *mut ::core::ffi::c_void;

    /// Format a message and send it to `lg` with context "xc"; at
    /// `XTL_ERROR` and above it also becomes the interface's last error.
    pub fn xc_report(
        xch: *mut xc_interface,
        lg: *mut xentoollog_logger,
        level: xentoollog_level,
        code: ::core::ffi::c_int,
        fmt: *const ::core::ffi::c_char,
        ...
    );

    /// `xc_report` at `XTL_ERROR` on the interface's own logger.
    pub fn xc_report_error(
        xch: *mut xc_interface,
        code: ::core::ffi::c_int,
        fmt: *const ::core::ffi::c_char,
        ...
    );

    /// Set the "doing what" of later `xc_report_progress_step` calls (the
    /// pointer is stored, not copied); returns the previous one.
    pub fn xc_set_progress_prefix(
        xch: *mut xc_interface,
        doing: *const ::core::ffi::c_char,
    ) -> *const ::core::ffi::c_char;

    /// One-off progress milestone (done = total = 0).
    pub fn xc_report_progress_single(xch: *mut xc_interface, doing: *const ::core::ffi::c_char);

    /// Progress step under the current prefix.
    pub fn xc_report_progress_step(
        xch: *mut xc_interface,
        done: ::core::ffi::c_ulong,
        total: ::core::ffi::c_ulong,
    );
}
