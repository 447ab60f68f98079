//! Domain information and control: getinfo, pause, shutdown, destroy,
//! guest width.

use std::ffi::{c_int, c_uint, c_void};

use xensim::DomId;

use super::domain;
use crate::abi::{self, domaininfo, domctl, dominfo, Domctl};
use crate::ctx::{xc_call, Xch};
use crate::dispatch;
use crate::error::{ShimError, ShimResult};
use crate::ffi::{self, ret_int};

fn getinfo_raw(x: &Xch, first: u32) -> ShimResult<[u8; domaininfo::SIZE]> {
    let d = dispatch::run_domctl(x.host(), Domctl::new(domctl::GETDOMAININFO, first))?;
    let mut out = [0u8; domaininfo::SIZE];
    out.copy_from_slice(&d.u()[..domaininfo::SIZE]);
    Ok(out)
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_getinfo(
    xch: *mut Xch,
    first_domid: u32,
    max_doms: c_uint,
    info: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_getinfo", |x| {
        let n = max_doms as usize;
        // SAFETY: info holds max_doms xc_dominfo_t (C contract).
        let out = unsafe { ffi::slice_mut(info.cast::<u8>(), n * dominfo::SIZE, "info") }?;
        let mut next = first_domid;
        let mut count = 0;
        while count < n && next < xensim::DOMID_FIRST_RESERVED {
            // As libxenctrl: stop at the first failure and report what was
            // found, leaving the failure's errno (ESRCH past the last
            // domain) for a caller that got fewer domains than it asked for.
            let di = match getinfo_raw(x, next) {
                Ok(di) => di,
                Err(e) => {
                    ffi::set_errno(e.errno);
                    break;
                }
            };
            dispatch::fill_dominfo(
                &mut out[count * dominfo::SIZE..(count + 1) * dominfo::SIZE],
                &di,
            );
            next = u32::from(abi::get_u16(&di, domaininfo::DOMAIN)) + 1;
            count += 1;
        }
        Ok(count as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_getinfolist(
    xch: *mut Xch,
    first_domain: u32,
    max_domains: c_uint,
    info: *mut c_void,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_getinfolist", |x| {
        let n = max_domains as usize;
        // SAFETY: info holds max_domains xc_domaininfo_t (C contract).
        let out = unsafe { ffi::slice_mut(info.cast::<u8>(), n * domaininfo::SIZE, "info") }?;
        let ids = x.host().domain_ids()?;
        let mut count = 0;
        for id in ids.into_iter().filter(|&d| d >= first_domain).take(n) {
            let Ok(d) = x.host().domain(id) else { continue };
            let Ok(i) = d.info() else { continue };
            dispatch::fill_domaininfo(
                &mut out[count * domaininfo::SIZE..(count + 1) * domaininfo::SIZE],
                &i,
            );
            count += 1;
        }
        Ok(count as c_int)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_shutdown(xch: *mut Xch, domid: u32, reason: c_int) -> c_int {
    ret_int(xc_call(xch, "xc_domain_shutdown", |x| {
        let r = u32::try_from(reason)
            .map_err(|_| ShimError::inval(format!("shutdown reason {reason}")))?;
        domain(x, domid)?.shutdown(r)?;
        Ok(0)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_pause(xch: *mut Xch, domid: u32) -> c_int {
    ret_int(xc_call(xch, "xc_domain_pause", |x| {
        Ok(domain(x, domid)?.pause().map(|_| 0)?)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_unpause(xch: *mut Xch, domid: u32) -> c_int {
    ret_int(xc_call(xch, "xc_domain_unpause", |x| {
        Ok(domain(x, domid)?.unpause().map(|_| 0)?)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_destroy(xch: *mut Xch, domid: u32) -> c_int {
    ret_int(xc_call(xch, "xc_domain_destroy", |x| {
        Ok(x.host().destroy_domain(domid as DomId).map(|_| 0)?)
    }))
}

#[no_mangle]
pub unsafe extern "C" fn xc_domain_get_guest_width(
    xch: *mut Xch,
    domid: u32,
    guest_width: *mut c_uint,
) -> c_int {
    ret_int(xc_call(xch, "xc_domain_get_guest_width", |x| {
        let d = dispatch::run_domctl(x.host(), Domctl::new(domctl::GET_ADDRESS_SIZE, domid))?;
        // `u` is a xen_domctl_address_size: one u32, the width in bits.
        // SAFETY: guest_width points to an unsigned int (C contract).
        *unsafe { ffi::opt_mut(guest_width, "guest_width") }? = d.u32_at(0) / 8;
        Ok(0)
    }))
}
