//! Symbols no Xen library has, exported for test harnesses on a simulated
//! host, which look them up with `dlsym` so that they still run against
//! Xen's real libraries. Listed in the version scripts of the libraries
//! named below (`tests/linked_libraries.rs` checks which).

/// The foreign mapping regions this library has handed out and its unmap
/// calls have not yet released (`xensim::live_mappings` of this library's
/// copy of xensim: each shim library is linked from the whole archive and
/// so counts its own). Exported by libxenforeignmemory (`_map`, `_map2`,
/// `_map_resource`) and libxenctrl (`xc_clear_domain_pages`; its
/// `xc_map_foreign_*` regions are released by the caller's own `munmap`
/// and leave the count when handed out). A harness sums the two after a
/// call: 0 means nothing the call mapped through them is still mapped.
#[no_mangle]
pub extern "C" fn xensim_shim_live_mappings() -> usize {
    xensim::live_mappings()
}
