//! `xc_version`: what the simulated Xen says about itself.

use std::ffi::{c_int, c_void};

use crate::abi;
use crate::ctx::{xc_call, Xch};
use crate::error::{ShimError, ShimResult};
use crate::ffi::{self, ret_int};
use crate::hcall::PAGE_SIZE;

/// `XENVER_version`.
const XENVER_VERSION: c_int = 0;
/// `XENVER_extraversion`: `char[16]`.
const XENVER_EXTRAVERSION: c_int = 1;
/// `XENVER_capabilities`: `char[1024]`.
const XENVER_CAPABILITIES: c_int = 3;
/// `XENVER_changeset`: `char[64]`.
const XENVER_CHANGESET: c_int = 4;
/// `XENVER_platform_parameters`: `{ u64 virt_start }`.
const XENVER_PLATFORM_PARAMETERS: c_int = 5;
/// `XENVER_pagesize`.
const XENVER_PAGESIZE: c_int = 7;
/// Hypervisor virtual start on x86-64 (`HYPERVISOR_VIRT_START`).
const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;

#[no_mangle]
pub unsafe extern "C" fn xc_version(xch: *mut Xch, cmd: c_int, arg: *mut c_void) -> c_int {
    ret_int(xc_call(xch, "xc_version", |_| {
        let put_str = |len: usize, s: &str| -> ShimResult<c_int> {
            // SAFETY: the caller passes a buffer of the documented size.
            let out = unsafe { ffi::slice_mut(arg.cast::<u8>(), len, "arg") }?;
            out.fill(0);
            let n = s.len().min(len - 1);
            out[..n].copy_from_slice(&s.as_bytes()[..n]);
            Ok(0)
        };
        match cmd {
            XENVER_VERSION => Ok(xensim::XEN_VERSION as c_int),
            XENVER_EXTRAVERSION => put_str(16, ".7-xensim"),
            XENVER_CAPABILITIES => put_str(
                1024,
                "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64",
            ),
            XENVER_CHANGESET => put_str(64, "xensim"),
            XENVER_PLATFORM_PARAMETERS => {
                // SAFETY: xen_platform_parameters_t is one u64.
                let out = unsafe { ffi::slice_mut(arg.cast::<u8>(), 8, "arg") }?;
                abi::put_u64(out, 0, HYPERVISOR_VIRT_START);
                Ok(0)
            }
            XENVER_PAGESIZE => Ok(PAGE_SIZE as c_int),
            other => Err(ShimError::new(
                libc::ENOSYS,
                format!("xen_version {other} is not simulated"),
            )),
        }
    }))
}
