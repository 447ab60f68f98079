//! [`GrantTable`] over libxenforeignmemory: seeding frame 0 of the shared
//! grant table through `xenforeignmemory_map_resource`.

use std::ffi::c_void;
use std::ptr;

use super::{errno, sys, XenHypervisor};
use crate::hv::{DomId, GrantEntry, GrantTable, HvError, HvResult, PAGE_SIZE};

impl GrantTable for XenHypervisor<'_> {
    fn seed_grant_table(&self, domid: DomId, _hvm: bool, entries: &[GrantEntry]) -> HvResult<()> {
        const ENTRY_SIZE: usize = std::mem::size_of::<sys::grant_entry_v1_t>();
        if let Some(e) = entries
            .iter()
            .find(|e| (e.index as usize + 1) * ENTRY_SIZE > PAGE_SIZE)
        {
            return Err(HvError::with_detail(
                "grant table seeding",
                libc::EINVAL,
                format!("grant entry {} is beyond frame 0", e.index),
            ));
        }
        let domid16 = u16::try_from(domid).map_err(|_| {
            HvError::with_detail(
                "xenforeignmemory_map_resource",
                libc::EINVAL,
                format!("domid {domid}"),
            )
        })?;
        let mut addr: *mut c_void = ptr::null_mut();
        // SAFETY: FFI call; on success `addr` receives a mapping of one
        // frame (the shared grant table's frame 0), released below.
        let res = unsafe {
            sys::xenforeignmemory_map_resource(
                self.fmem.as_ptr(),
                domid16,
                sys::XENMEM_resource_grant_table,
                sys::XENMEM_resource_grant_table_id_shared,
                0,
                1,
                &mut addr,
                libc::PROT_READ | libc::PROT_WRITE,
                0,
            )
        };
        if res.is_null() || addr.is_null() {
            let e = errno();
            let detail = if e == libc::EOPNOTSUPP {
                "this Xen cannot map grant tables as a resource (Xen >= 4.13 can); \
                 the compat seeding path is not implemented"
            } else {
                "mapping the shared grant table frame 0"
            };
            return Err(HvError::with_detail(
                "xenforeignmemory_map_resource",
                e,
                detail,
            ));
        }
        for e in entries {
            let mut bytes = [0u8; ENTRY_SIZE];
            bytes[0..2].copy_from_slice(&e.flags.to_le_bytes());
            bytes[2..4].copy_from_slice(&e.domid.to_le_bytes());
            bytes[4..8].copy_from_slice(&e.frame.to_le_bytes());
            // SAFETY: the entry lies inside the mapped frame (checked above);
            // a raw copy avoids references into memory Xen also uses.
            unsafe {
                ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    addr.cast::<u8>().add(e.index as usize * ENTRY_SIZE),
                    ENTRY_SIZE,
                )
            };
        }
        // SAFETY: `res` came from `xenforeignmemory_map_resource` on `fmem`
        // and is released once. libxenguest ignores the result (the entries
        // are written by then), and so do we.
        unsafe { sys::xenforeignmemory_unmap_resource(self.fmem.as_ptr(), res) };
        Ok(())
    }
}
