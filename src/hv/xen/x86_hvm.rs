//! [`X86Hvm`] over libxenctrl: the HVM context blob and HVM parameters.

use std::ptr;

use super::{cvt, sys, XenHypervisor};
use crate::hv::{DomId, HvError, HvResult, X86Hvm};

impl X86Hvm for XenHypervisor<'_> {
    fn hvm_context(&self, domid: DomId) -> HvResult<Vec<u8>> {
        // SAFETY: FFI call; a null buffer asks only for the size.
        let size =
            unsafe { sys::xc_domain_hvm_getcontext(self.xch_ptr(), domid, ptr::null_mut(), 0) };
        let size = cvt(size, "xc_domain_hvm_getcontext")?;
        let mut buf = vec![0u8; size as usize];
        // SAFETY: FFI call writing at most `buf.len()` bytes into `buf`.
        let len = unsafe {
            sys::xc_domain_hvm_getcontext(self.xch_ptr(), domid, buf.as_mut_ptr(), buf.len() as u32)
        };
        let len = cvt(len, "xc_domain_hvm_getcontext")?;
        if len as usize > buf.len() {
            return Err(HvError::with_detail(
                "xc_domain_hvm_getcontext",
                libc::EPROTO,
                format!("context of {len} bytes exceeds the {size} bytes announced"),
            ));
        }
        buf.truncate(len as usize);
        Ok(buf)
    }

    fn set_hvm_context(&self, domid: DomId, blob: &[u8]) -> HvResult<()> {
        let size = u32::try_from(blob.len()).map_err(|_| {
            HvError::with_detail(
                "xc_domain_hvm_setcontext",
                libc::E2BIG,
                format!("{} bytes", blob.len()),
            )
        })?;
        // The C prototype takes a mutable pointer; give it a private copy.
        let mut copy = blob.to_vec();
        // SAFETY: FFI call reading `size` bytes from `copy`.
        let rc = unsafe {
            sys::xc_domain_hvm_setcontext(self.xch_ptr(), domid, copy.as_mut_ptr(), size)
        };
        cvt(rc, "xc_domain_hvm_setcontext")?;
        Ok(())
    }

    fn hvm_param(&self, domid: DomId, index: u32) -> HvResult<u64> {
        let mut v = 0u64;
        // SAFETY: FFI call writing one u64.
        let rc = unsafe { sys::xc_hvm_param_get(self.xch_ptr(), domid, index, &mut v) };
        cvt(rc, "xc_hvm_param_get").map_err(|e| e.and_detail(format!("parameter {index}")))?;
        Ok(v)
    }

    fn set_hvm_param(&self, domid: DomId, index: u32, value: u64) -> HvResult<()> {
        // SAFETY: FFI call with scalar arguments.
        let rc = unsafe { sys::xc_hvm_param_set(self.xch_ptr(), domid, index, value) };
        cvt(rc, "xc_hvm_param_set")
            .map_err(|e| e.and_detail(format!("parameter {index} = {value:#x}")))?;
        Ok(())
    }
}
