//! Scheduler control: `xc_sched_id` (`XEN_SYSCTL_sched_id`) and the credit
//! and credit2 per-domain parameters (`XEN_DOMCTL_scheduler_op`), as
//! libxenctrl's `xc_csched.c` and `xc_csched2.c` build them.

use std::ffi::{c_int, c_void};

use crate::abi::{self, domctl, scheduler_op, Domctl, SYSCTL_SIZE, SYSCTL_U};
use crate::ctx::{xc_call, Xch};
use crate::dispatch;
use crate::error::ShimResult;
use crate::ffi::{self, ret_int};

#[no_mangle]
pub unsafe extern "C" fn xc_sched_id(xch: *mut Xch, sched_id: *mut c_int) -> c_int {
    ret_int(xc_call(xch, "xc_sched_id", |x| {
        // SAFETY: sched_id points to an int (C contract).
        let out = unsafe { ffi::opt_mut(sched_id, "sched_id") }?;
        let mut s = [0u8; SYSCTL_SIZE];
        abi::put_u32(&mut s, 0, abi::SYSCTL_SCHED_ID);
        abi::put_u32(&mut s, 4, abi::INTERFACE_VERSION);
        dispatch::sysctl(x.host(), &mut s)?;
        *out = abi::get_u32(&s, SYSCTL_U) as c_int;
        Ok(0)
    }))
}

/// A scheduler_op domctl for `sched_id` carrying `struct
/// xen_domctl_sched_credit{,2}` at `sdom`: putinfo sends it, getinfo fills
/// it.
fn credit_op(x: &Xch, domid: u32, sched_id: u32, cmd: u32, sdom: *mut c_void) -> ShimResult<c_int> {
    // SAFETY: sdom points to the 4-byte struct (C contract).
    let p = unsafe { ffi::slice_mut(sdom.cast::<u8>(), scheduler_op::CREDIT_SIZE, "sdom") }?;
    let mut d = Domctl::new(domctl::SCHEDULER_OP, domid)
        .with_u32(scheduler_op::SCHED_ID, sched_id)
        .with_u32(scheduler_op::CMD, cmd);
    // The struct is weight then cap, two u16, at WEIGHT and WEIGHT + 2 of
    // the domctl: copied as one little-endian u32.
    if cmd == scheduler_op::PUTINFO {
        d.set_u32(scheduler_op::WEIGHT, abi::get_u32(p, 0));
    }
    let d = dispatch::run_domctl(x.host(), d)?;
    if cmd == scheduler_op::GETINFO {
        abi::put_u32(p, 0, d.u32_at(scheduler_op::WEIGHT));
    }
    Ok(0)
}

#[no_mangle]
pub unsafe extern "C" fn xc_sched_credit_domain_set(
    xch: *mut Xch,
    domid: u32,
    sdom: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_sched_credit_domain_set", |x| {
        credit_op(
            x,
            domid,
            xensim::XEN_SCHEDULER_CREDIT,
            scheduler_op::PUTINFO,
            sdom,
        )
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_sched_credit_domain_get(
    xch: *mut Xch,
    domid: u32,
    sdom: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_sched_credit_domain_get", |x| {
        credit_op(
            x,
            domid,
            xensim::XEN_SCHEDULER_CREDIT,
            scheduler_op::GETINFO,
            sdom,
        )
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_sched_credit2_domain_set(
    xch: *mut Xch,
    domid: u32,
    sdom: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_sched_credit2_domain_set", |x| {
        credit_op(
            x,
            domid,
            xensim::XEN_SCHEDULER_CREDIT2,
            scheduler_op::PUTINFO,
            sdom,
        )
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_sched_credit2_domain_get(
    xch: *mut Xch,
    domid: u32,
    sdom: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_sched_credit2_domain_get", |x| {
        credit_op(
            x,
            domid,
            xensim::XEN_SCHEDULER_CREDIT2,
            scheduler_op::GETINFO,
            sdom,
        )
    }))
}
