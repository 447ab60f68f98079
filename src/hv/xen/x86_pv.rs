//! [`X86Pv`] over libxenctrl: the guest's width, the live M2P, the four
//! kinds of PV vCPU state and page-table pinning, each through the call
//! libxenguest makes on the same path (`xc_domain_get_guest_width`, a raw
//! `XEN_DOMCTL_set_address_size` through `xc_domctl`,
//! `xc_maximum_ram_page` + `xc_machphys_mfn_list` +
//! `xc_map_foreign_ranges(DOMID_XEN)`, `xc_vcpu_getcontext`/`_setcontext`,
//! `xc_domctl` for the extended, xsave and MSR state, `xc_mmuext_op`).

use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{cvt, last_error, sys, XenHypervisor};
use crate::hv::{pin_cmd_offset, DomId, HvError, HvResult, M2pTable, MsrEntry, X86Pv, PAGE_SIZE};
use crate::x86::pv::GuestWidth;

/// Bytes of M2P behind one `XENMEM_machphys_mfn_list` extent (2 MiB, an L2
/// superpage of Xen's own mapping).
const M2P_CHUNK_BYTES: usize = 2 << 20;

/// `DOMID_XEN`, the owner of Xen's own frames (the header spells it with a
/// macro bindgen cannot evaluate).
const DOMID_XEN: u32 = 0x7ff2;

/// Size of the domctl union `u`, the most an ext_vcpucontext can carry.
const DOMCTL_UNION_BYTES: usize = 128;

/// `sizeof(xen_domctl_vcpu_msr_t)`: `{u32 index, u32 reserved, u64 value}`.
const VCPU_MSR_BYTES: usize = 16;

/// A domctl of `cmd` for `domid`, everything else zero.
fn domctl(cmd: u32, domid: DomId) -> sys::xen_domctl {
    sys::xen_domctl {
        cmd,
        interface_version: sys::XEN_DOMCTL_INTERFACE_VERSION,
        // domid_t is 16 bits; libxenctrl truncates the same way.
        domain: domid as u16,
        ..Default::default()
    }
}

/// The live M2P: Xen's `machine_to_phys_mapping`, mapped read-only from
/// DOMID_XEN by `xc_map_foreign_ranges` and released with `munmap`, as
/// libxenguest releases it.
struct XenM2p {
    base: NonNull<u8>,
    len: usize,
    max_mfn: u64,
}

impl M2pTable for XenM2p {
    fn max_mfn(&self) -> u64 {
        self.max_mfn
    }

    fn entry(&self, mfn: u64) -> Option<u64> {
        if mfn > self.max_mfn {
            return None;
        }
        let off = usize::try_from(mfn).ok()?.checked_mul(8)?;
        if off + 8 > self.len {
            return None;
        }
        // SAFETY: `off + 8 <= len` inside the live mapping, 8-aligned (page
        // aligned base); Xen updates entries concurrently, so the read is
        // atomic rather than through a plain reference.
        let v =
            unsafe { (*self.base.as_ptr().add(off).cast::<AtomicU64>()).load(Ordering::Relaxed) };
        Some(v)
    }
}

impl Drop for XenM2p {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are one region returned by
        // `xc_map_foreign_ranges`, which callers release with munmap.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A hypercall-safe buffer (`xc__hypercall_buffer_alloc`) for the handles
/// inside a domctl, freed on drop.
struct HcallBuf<'a> {
    hv: &'a XenHypervisor<'a>,
    desc: Box<sys::xc_hypercall_buffer_t>,
    len: usize,
}

impl<'a> HcallBuf<'a> {
    fn new(hv: &'a XenHypervisor<'a>, op: &'static str, len: usize) -> HvResult<HcallBuf<'a>> {
        let mut desc = Box::new(sys::xc_hypercall_buffer_t::default());
        let size = len.max(1);
        // SAFETY: FFI call with a live `xch`; the descriptor is boxed, so it
        // stays at one address until freed in drop.
        let p = unsafe { sys::xc__hypercall_buffer_alloc(hv.xch_ptr(), &mut *desc, size) };
        if p.is_null() {
            return Err(last_error(op));
        }
        // SAFETY: the allocation holds `size` >= len bytes; zero it so no
        // stale heap contents reach Xen.
        unsafe { ptr::write_bytes(p.cast::<u8>(), 0, size) };
        Ok(HcallBuf { hv, desc, len })
    }

    fn addr(&self) -> *mut c_void {
        self.desc.hbuf
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `hbuf` holds `len` initialised bytes (zeroed in `new`).
        unsafe { std::slice::from_raw_parts(self.desc.hbuf.cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.desc.hbuf.cast::<u8>(), self.len) }
    }
}

impl Drop for HcallBuf<'_> {
    fn drop(&mut self) {
        // SAFETY: the descriptor was filled by `xc__hypercall_buffer_alloc`
        // on the same `xch` and is not used afterwards.
        unsafe { sys::xc__hypercall_buffer_free(self.hv.xch_ptr(), &mut *self.desc) };
    }
}

impl XenHypervisor<'_> {
    /// `xc_domctl(d)`, failing as `op`.
    fn pv_domctl(&self, op: &'static str, d: &mut sys::xen_domctl) -> HvResult<()> {
        // SAFETY: FFI call on a fully initialised domctl; handles in it
        // point at hypercall buffers that outlive the call.
        let rc = unsafe { sys::xc_domctl(self.xch_ptr(), d) };
        cvt(rc, op)?;
        Ok(())
    }
}

/// Raw bytes of a vCPU context union (plain data, all bytes initialised).
fn context_bytes(c: &sys::vcpu_guest_context_any_t) -> &[u8] {
    // SAFETY: the union is plain old data of that size, zero-initialised
    // by `default()` before Xen wrote into it.
    unsafe {
        std::slice::from_raw_parts(
            (c as *const sys::vcpu_guest_context_any_t).cast::<u8>(),
            std::mem::size_of::<sys::vcpu_guest_context_any_t>(),
        )
    }
}

impl X86Pv for XenHypervisor<'_> {
    fn pv_address_size(&self, domid: DomId) -> HvResult<u32> {
        let mut width: std::ffi::c_uint = 0;
        // SAFETY: FFI call writing one unsigned int.
        let rc = unsafe { sys::xc_domain_get_guest_width(self.xch_ptr(), domid, &mut width) };
        // It fails with 1, not -1.
        if rc != 0 {
            return Err(last_error("xc_domain_get_guest_width"));
        }
        Ok(width * 8)
    }

    fn set_pv_address_size(&self, domid: DomId, bits: u32) -> HvResult<()> {
        let mut d = domctl(sys::XEN_DOMCTL_set_address_size, domid);
        d.u.address_size.size = bits;
        self.pv_domctl("XEN_DOMCTL_set_address_size", &mut d)
            .map_err(|e| e.and_detail(format!("to {bits} bits")))
    }

    fn map_m2p(&self) -> HvResult<Box<dyn M2pTable + '_>> {
        let mut max_mfn: libc::c_ulong = 0;
        // SAFETY: FFI call writing one unsigned long.
        let rc = unsafe { sys::xc_maximum_ram_page(self.xch_ptr(), &mut max_mfn) };
        cvt(rc, "xc_maximum_ram_page")?;
        let too_big = || {
            HvError::with_detail(
                "xc_maximum_ram_page",
                libc::E2BIG,
                format!("max_mfn {max_mfn:#x}"),
            )
        };
        let bytes = usize::try_from(max_mfn)
            .ok()
            .and_then(|m| m.checked_mul(8))
            .ok_or_else(too_big)?;
        let chunks = bytes.div_ceil(M2P_CHUNK_BYTES).max(1);
        let nentries = i32::try_from(chunks).map_err(|_| too_big())?;
        let mut extents = vec![0 as sys::xen_pfn_t; chunks];
        // SAFETY: FFI call writing `chunks` extents.
        let rc = unsafe {
            sys::xc_machphys_mfn_list(
                self.xch_ptr(),
                chunks as libc::c_ulong,
                extents.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(last_error("xc_machphys_mfn_list")
                .and_detail(format!("{chunks} chunks for max_mfn {max_mfn:#x}")));
        }
        let mut entries: Vec<sys::privcmd_mmap_entry_t> = extents
            .iter()
            .map(|&mfn| sys::privcmd_mmap_entry_t {
                va: 0,
                mfn,
                npages: 0,
            })
            .collect();
        let len = chunks * M2P_CHUNK_BYTES;
        // SAFETY: FFI call reading `nentries` entries; the region it returns
        // is ours, released by munmap in `XenM2p::drop`.
        let p = unsafe {
            sys::xc_map_foreign_ranges(
                self.xch_ptr(),
                DOMID_XEN,
                len,
                libc::PROT_READ,
                M2P_CHUNK_BYTES,
                entries.as_mut_ptr(),
                nentries,
            )
        };
        let base = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| last_error("xc_map_foreign_ranges(DOMID_XEN)"))?;
        Ok(Box::new(XenM2p { base, len, max_mfn }))
    }

    fn compat_m2p_mfn0(&self) -> HvResult<u64> {
        let mut mfn0: sys::xen_pfn_t = 0;
        let mut xmml = sys::xen_machphys_mfn_list {
            max_extents: 1,
            ..Default::default()
        };
        xmml.extent_start.p = &mut mfn0;
        // SAFETY: FFI call reading and writing `xmml`, whose handle points
        // at `mfn0` for one extent (as libxenguest passes it).
        let rc = unsafe {
            sys::xc_memory_op(
                self.xch_ptr(),
                sys::XENMEM_machphys_compat_mfn_list,
                (&mut xmml as *mut sys::xen_machphys_mfn_list).cast(),
                std::mem::size_of::<sys::xen_machphys_mfn_list>(),
            )
        };
        if rc != 0 {
            return Err(last_error("XENMEM_machphys_compat_mfn_list"));
        }
        if xmml.nr_extents != 1 {
            return Err(HvError::with_detail(
                "XENMEM_machphys_compat_mfn_list",
                libc::EPROTO,
                format!("{} extents, expected 1", xmml.nr_extents),
            ));
        }
        Ok(mfn0)
    }

    fn vcpu_online(&self, domid: DomId, vcpu: u32) -> HvResult<bool> {
        let mut info = sys::xc_vcpuinfo_t::default();
        // SAFETY: FFI call writing one xc_vcpuinfo_t.
        let rc = unsafe { sys::xc_vcpu_getinfo(self.xch_ptr(), domid, vcpu, &mut info) };
        cvt(rc, "xc_vcpu_getinfo").map_err(|e| e.and_detail(format!("vcpu {vcpu}")))?;
        Ok(info.online != 0)
    }

    fn vcpu_context(&self, domid: DomId, vcpu: u32, width: GuestWidth) -> HvResult<Vec<u8>> {
        let mut ctx = Box::new(sys::vcpu_guest_context_any_t::default());
        // SAFETY: FFI call writing at most one vcpu_guest_context_any_t.
        let rc = unsafe { sys::xc_vcpu_getcontext(self.xch_ptr(), domid, vcpu, &mut *ctx) };
        cvt(rc, "xc_vcpu_getcontext").map_err(|e| e.and_detail(format!("vcpu {vcpu}")))?;
        Ok(context_bytes(&ctx)[..width.vcpu_context_size()].to_vec())
    }

    fn set_vcpu_context(&self, domid: DomId, vcpu: u32, context: &[u8]) -> HvResult<()> {
        let sizes = [
            GuestWidth::Bits64.vcpu_context_size(),
            GuestWidth::Bits32.vcpu_context_size(),
        ];
        if !sizes.contains(&context.len()) {
            return Err(HvError::with_detail(
                "xc_vcpu_setcontext",
                libc::EINVAL,
                format!(
                    "context of {} bytes (expected {} or {})",
                    context.len(),
                    sizes[0],
                    sizes[1]
                ),
            ));
        }
        let mut ctx = Box::new(sys::vcpu_guest_context_any_t::default());
        // SAFETY: `context.len()` <= the union's size (both layouts are
        // members of it) and the two do not overlap.
        unsafe {
            ptr::copy_nonoverlapping(
                context.as_ptr(),
                (&mut *ctx as *mut sys::vcpu_guest_context_any_t).cast::<u8>(),
                context.len(),
            )
        };
        // SAFETY: FFI call reading one vcpu_guest_context_any_t.
        let rc = unsafe { sys::xc_vcpu_setcontext(self.xch_ptr(), domid, vcpu, &mut *ctx) };
        cvt(rc, "xc_vcpu_setcontext").map_err(|e| e.and_detail(format!("vcpu {vcpu}")))?;
        Ok(())
    }

    fn ext_vcpu_context(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<u8>> {
        let mut d = domctl(sys::XEN_DOMCTL_get_ext_vcpucontext, domid);
        d.u.ext_vcpucontext.vcpu = vcpu;
        self.pv_domctl("XEN_DOMCTL_get_ext_vcpucontext", &mut d)
            .map_err(|e| e.and_detail(format!("vcpu {vcpu}")))?;
        // SAFETY: Xen filled the ext_vcpucontext member for this command.
        let size = unsafe { d.u.ext_vcpucontext.size } as usize;
        if size > DOMCTL_UNION_BYTES {
            return Err(HvError::with_detail(
                "XEN_DOMCTL_get_ext_vcpucontext",
                libc::EPROTO,
                format!("size {size} exceeds the {DOMCTL_UNION_BYTES}-byte union"),
            ));
        }
        // SAFETY: `u` is plain data of at least 128 bytes, all initialised
        // (zeroed by `default()`, then written by Xen).
        let u = unsafe {
            std::slice::from_raw_parts(ptr::addr_of!(d.u).cast::<u8>(), DOMCTL_UNION_BYTES)
        };
        Ok(u[..size].to_vec())
    }

    fn set_ext_vcpu_context(&self, domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        if blob.len() > DOMCTL_UNION_BYTES || blob.len() < 8 {
            return Err(HvError::with_detail(
                "XEN_DOMCTL_set_ext_vcpucontext",
                libc::EINVAL,
                format!("blob of {} bytes (8 to {DOMCTL_UNION_BYTES})", blob.len()),
            ));
        }
        let mut d = domctl(sys::XEN_DOMCTL_set_ext_vcpucontext, domid);
        // SAFETY: `u` holds at least 128 bytes of plain data; the blob is
        // copied over its start as libxenguest copies the record body.
        unsafe {
            ptr::copy_nonoverlapping(
                blob.as_ptr(),
                ptr::addr_of_mut!(d.u).cast::<u8>(),
                blob.len(),
            )
        };
        // The record's vCPU is the one the caller names.
        d.u.ext_vcpucontext.vcpu = vcpu;
        self.pv_domctl("XEN_DOMCTL_set_ext_vcpucontext", &mut d)
            .map_err(|e| e.and_detail(format!("vcpu {vcpu}")))
    }

    fn vcpu_xsave(&self, domid: DomId, vcpu: u32) -> HvResult<Option<Vec<u8>>> {
        const OP: &str = "XEN_DOMCTL_getvcpuextstate";
        let mut d = domctl(sys::XEN_DOMCTL_getvcpuextstate, domid);
        d.u.vcpuextstate.vcpu = vcpu;
        self.pv_domctl(OP, &mut d)
            .map_err(|e| e.and_detail(format!("vcpu {vcpu} size query")))?;
        // SAFETY: Xen filled the vcpuextstate member for this command.
        let (mask, size) = unsafe { (d.u.vcpuextstate.xfeature_mask, d.u.vcpuextstate.size) };
        if mask == 0 {
            return Ok(None);
        }
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= 1 << 20)
            .ok_or_else(|| HvError::with_detail(OP, libc::EPROTO, format!("size {size}")))?;
        let buf = HcallBuf::new(self, OP, size)?;
        let mut d = domctl(sys::XEN_DOMCTL_getvcpuextstate, domid);
        d.u.vcpuextstate.vcpu = vcpu;
        d.u.vcpuextstate.xfeature_mask = mask;
        d.u.vcpuextstate.size = size as u64;
        d.u.vcpuextstate.buffer.p = buf.addr().cast();
        self.pv_domctl(OP, &mut d)
            .map_err(|e| e.and_detail(format!("vcpu {vcpu}")))?;
        // SAFETY: Xen filled the vcpuextstate member for this command.
        let got = unsafe { d.u.vcpuextstate.size };
        let got = usize::try_from(got)
            .ok()
            .filter(|&g| g <= size)
            .ok_or_else(|| {
                HvError::with_detail(OP, libc::EPROTO, format!("wrote {got} bytes into {size}"))
            })?;
        Ok(Some(buf.bytes()[..got].to_vec()))
    }

    fn set_vcpu_xsave(&self, domid: DomId, vcpu: u32, blob: &[u8]) -> HvResult<()> {
        const OP: &str = "XEN_DOMCTL_setvcpuextstate";
        let mut buf = HcallBuf::new(self, OP, blob.len())?;
        buf.bytes_mut().copy_from_slice(blob);
        let mut d = domctl(sys::XEN_DOMCTL_setvcpuextstate, domid);
        d.u.vcpuextstate.vcpu = vcpu;
        d.u.vcpuextstate.size = blob.len() as u64;
        d.u.vcpuextstate.buffer.p = buf.addr().cast();
        self.pv_domctl(OP, &mut d)
            .map_err(|e| e.and_detail(format!("vcpu {vcpu}, {} bytes", blob.len())))
    }

    fn vcpu_msrs(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<MsrEntry>> {
        const OP: &str = "XEN_DOMCTL_get_vcpu_msrs";
        let mut d = domctl(sys::XEN_DOMCTL_get_vcpu_msrs, domid);
        d.u.vcpu_msrs.vcpu = vcpu;
        self.pv_domctl(OP, &mut d)
            .map_err(|e| e.and_detail(format!("vcpu {vcpu} count query")))?;
        // SAFETY: Xen filled the vcpu_msrs member for this command.
        let max = unsafe { d.u.vcpu_msrs.msr_count } as usize;
        if max == 0 {
            return Ok(Vec::new());
        }
        if max > 1024 {
            return Err(HvError::with_detail(
                OP,
                libc::EPROTO,
                format!("{max} MSRs"),
            ));
        }
        let buf = HcallBuf::new(self, OP, max * VCPU_MSR_BYTES)?;
        let mut d = domctl(sys::XEN_DOMCTL_get_vcpu_msrs, domid);
        d.u.vcpu_msrs.vcpu = vcpu;
        d.u.vcpu_msrs.msr_count = max as u32;
        d.u.vcpu_msrs.msrs.p = buf.addr().cast();
        self.pv_domctl(OP, &mut d)
            .map_err(|e| e.and_detail(format!("vcpu {vcpu}")))?;
        // SAFETY: Xen filled the vcpu_msrs member for this command.
        let n = unsafe { d.u.vcpu_msrs.msr_count } as usize;
        if n > max {
            return Err(HvError::with_detail(
                OP,
                libc::EPROTO,
                format!("{n} MSRs in room for {max}"),
            ));
        }
        Ok(buf.bytes()[..n * VCPU_MSR_BYTES]
            .chunks_exact(VCPU_MSR_BYTES)
            .map(|e| MsrEntry {
                idx: u32::from_le_bytes(e[0..4].try_into().expect("4 bytes")),
                flags: u32::from_le_bytes(e[4..8].try_into().expect("4 bytes")),
                val: u64::from_le_bytes(e[8..16].try_into().expect("8 bytes")),
            })
            .collect())
    }

    fn set_vcpu_msrs(&self, domid: DomId, vcpu: u32, msrs: &[MsrEntry]) -> HvResult<()> {
        const OP: &str = "XEN_DOMCTL_set_vcpu_msrs";
        let count = u32::try_from(msrs.len())
            .map_err(|_| HvError::with_detail(OP, libc::E2BIG, format!("{} MSRs", msrs.len())))?;
        let mut buf = HcallBuf::new(self, OP, msrs.len() * VCPU_MSR_BYTES)?;
        for (e, m) in buf.bytes_mut().chunks_exact_mut(VCPU_MSR_BYTES).zip(msrs) {
            e[0..4].copy_from_slice(&m.idx.to_le_bytes());
            e[4..8].copy_from_slice(&m.flags.to_le_bytes());
            e[8..16].copy_from_slice(&m.val.to_le_bytes());
        }
        let mut d = domctl(sys::XEN_DOMCTL_set_vcpu_msrs, domid);
        d.u.vcpu_msrs.vcpu = vcpu;
        d.u.vcpu_msrs.msr_count = count;
        d.u.vcpu_msrs.msrs.p = buf.addr().cast();
        self.pv_domctl(OP, &mut d)
            .map_err(|e| e.and_detail(format!("vcpu {vcpu}, {count} MSRs")))
    }

    fn pin_page_tables(&self, domid: DomId, pins: &[(u8, u64)]) -> HvResult<()> {
        const OP: &str = "xc_mmuext_op";
        if pins.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::with_capacity(pins.len());
        for &(level, mfn) in pins {
            let mut op = sys::mmuext_op {
                cmd: sys::MMUEXT_PIN_L1_TABLE + pin_cmd_offset(OP, level, mfn)?,
                ..Default::default()
            };
            op.arg1.mfn = mfn;
            ops.push(op);
        }
        let n = u32::try_from(ops.len())
            .map_err(|_| HvError::with_detail(OP, libc::E2BIG, format!("{} pins", ops.len())))?;
        // SAFETY: FFI call reading (and bouncing back) `n` ops.
        let rc = unsafe { sys::xc_mmuext_op(self.xch_ptr(), ops.as_mut_ptr(), n, domid) };
        if rc != 0 {
            return Err(last_error(OP).and_detail(format!("{n} pins")));
        }
        Ok(())
    }
}

/// Guest pages are 4 KiB; the M2P chunk is a whole number of them.
const _: () = assert!(M2P_CHUNK_BYTES % PAGE_SIZE == 0);
