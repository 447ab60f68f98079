//! Exports libxenguest links against but that a simulated HVM/PVH host
//! does not provide: each fails with ENOSYS.

use std::ffi::{c_int, c_uint, c_ulong, c_void};

use crate::ctx::{xc_call, Xch};
use crate::error::ShimError;
use crate::ffi::{ret_int, ret_ptr};

macro_rules! unsupported_int {
    ($( $(#[$m:meta])* fn $name:ident( $($arg:ident : $ty:ty),* ); )*) => {
        $(
            $(#[$m])*
            #[no_mangle]
            pub unsafe extern "C" fn $name(xch: *mut Xch, $($arg: $ty),*) -> c_int {
                $( let _ = $arg; )*
                ret_int(xc_call(xch, stringify!($name), |_| Err(ShimError::nosys(stringify!($name)))))
            }
        )*
    };
}

unsupported_int! {
    /// PV page-table updates (domain builder, page offlining).
    fn xc_add_mmu_update(mmu: *mut c_void, ptr: u64, val: u64);
    /// PV page-table updates.
    fn xc_flush_mmu_updates(mmu: *mut c_void);
    /// Domain builder.
    fn xc_domain_add_to_physmap(domid: u32, space: c_uint, idx: c_ulong, gpfn: u64);
    /// Domain builder (memory claims).
    fn xc_domain_claim_pages(domid: u32, nr_pages: c_ulong);
    /// Domain builder (populate-on-demand).
    fn xc_domain_set_pod_target(domid: u32, target: u64, tot: *mut u64, cache: *mut u64, entries: *mut u64);
    /// Page offlining.
    fn xc_domain_memory_exchange_pages(domid: u32, nr_in: c_ulong, in_order: c_uint, in_ext: *mut u64, nr_out: c_ulong, out_order: c_uint, out_ext: *mut u64);
    /// Grant-table hypercalls (the seeding fallback; map_resource is used instead).
    fn xc_gnttab_op(cmd: c_int, op: *mut c_void, op_size: c_int, count: c_int);
    /// Suspend event channels (libxl's own process).
    fn xc_domain_subscribe_for_suspend(domid: u32, port: u32);
}

/// PV page-table updates: NULL with ENOSYS.
#[no_mangle]
pub unsafe extern "C" fn xc_alloc_mmu_updates(xch: *mut Xch, _subject: c_uint) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_alloc_mmu_updates", |_| {
        Err(ShimError::nosys("xc_alloc_mmu_updates"))
    }))
}

/// Page offlining: returns 0 (no frame) with ENOSYS.
#[no_mangle]
pub unsafe extern "C" fn xc_make_page_below_4G(
    xch: *mut Xch,
    _domid: u32,
    _mfn: c_ulong,
) -> c_ulong {
    let _ = ret_int(xc_call(xch, "xc_make_page_below_4G", |_| {
        Err(ShimError::nosys("xc_make_page_below_4G"))
    }));
    0
}

/// Grant-table v1 mapping (page offlining): NULL with ENOSYS.
#[no_mangle]
pub unsafe extern "C" fn xc_gnttab_map_table_v1(
    xch: *mut Xch,
    _domid: u32,
    _gnt_num: *mut c_int,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_gnttab_map_table_v1", |_| {
        Err(ShimError::nosys("xc_gnttab_map_table_v1"))
    }))
}

/// Grant-table v2 mapping: NULL with ENOSYS.
#[no_mangle]
pub unsafe extern "C" fn xc_gnttab_map_table_v2(
    xch: *mut Xch,
    _domid: u32,
    _gnt_num: *mut c_int,
) -> *mut c_void {
    ret_ptr(xc_call(xch, "xc_gnttab_map_table_v2", |_| {
        Err(ShimError::nosys("xc_gnttab_map_table_v2"))
    }))
}
