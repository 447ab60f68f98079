//! [`X86Cpu`] over libxenctrl and libxenguest: TSC information and the
//! CPU policy (through libxenguest's public `xc_cpu_policy_*` API).

use std::ptr;

use super::{cvt, sys, XenHypervisor};
use crate::hv::{CpuPolicy, CpuidLeaf, DomId, HvError, HvResult, MsrEntry, TscInfo, X86Cpu};

/// Frees an `xc_cpu_policy_t` on every path.
struct PolicyGuard(*mut sys::xc_cpu_policy_t);

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `xc_cpu_policy_init` (non-null
        // checked at construction) and is freed once.
        unsafe { sys::xc_cpu_policy_destroy(self.0) };
    }
}

impl X86Cpu for XenHypervisor<'_> {
    fn tsc_info(&self, domid: DomId) -> HvResult<TscInfo> {
        let mut t = TscInfo::default();
        // SAFETY: FFI call writing four scalars.
        let rc = unsafe {
            sys::xc_domain_get_tsc_info(
                self.xch_ptr(),
                domid,
                &mut t.mode,
                &mut t.elapsed_nsec,
                &mut t.gtsc_khz,
                &mut t.incarnation,
            )
        };
        cvt(rc, "xc_domain_get_tsc_info")?;
        Ok(t)
    }

    fn set_tsc_info(&self, domid: DomId, tsc: &TscInfo) -> HvResult<()> {
        // SAFETY: FFI call with scalar arguments.
        let rc = unsafe {
            sys::xc_domain_set_tsc_info(
                self.xch_ptr(),
                domid,
                tsc.mode,
                tsc.elapsed_nsec,
                tsc.gtsc_khz,
                tsc.incarnation,
            )
        };
        cvt(rc, "xc_domain_set_tsc_info")?;
        Ok(())
    }

    fn cpu_policy(&self, domid: DomId) -> HvResult<CpuPolicy> {
        let (mut nr_leaves, mut nr_msrs) = (0u32, 0u32);
        // SAFETY: FFI call writing two u32s.
        let rc =
            unsafe { sys::xc_cpu_policy_get_size(self.xch_ptr(), &mut nr_leaves, &mut nr_msrs) };
        cvt(rc, "xc_cpu_policy_get_size")?;
        // SAFETY: FFI call allocating a policy object.
        let raw = unsafe { sys::xc_cpu_policy_init() };
        if raw.is_null() {
            return Err(HvError::new("xc_cpu_policy_init", libc::ENOMEM));
        }
        let policy = PolicyGuard(raw);
        // SAFETY: FFI call filling the live policy object.
        let rc = unsafe { sys::xc_cpu_policy_get_domain(self.xch_ptr(), domid, policy.0) };
        cvt(rc, "xc_cpu_policy_get_domain")?;
        let mut leaves = vec![sys::xen_cpuid_leaf_t::default(); nr_leaves as usize];
        let mut msrs = vec![sys::xen_msr_entry_t::default(); nr_msrs as usize];
        // SAFETY: FFI call writing at most `nr_leaves` leaves and `nr_msrs`
        // MSRs (the capacities passed in) and the counts actually written.
        let rc = unsafe {
            sys::xc_cpu_policy_serialise(
                self.xch_ptr(),
                policy.0,
                leaves.as_mut_ptr(),
                &mut nr_leaves,
                msrs.as_mut_ptr(),
                &mut nr_msrs,
            )
        };
        cvt(rc, "xc_cpu_policy_serialise")?;
        leaves.truncate(nr_leaves as usize);
        msrs.truncate(nr_msrs as usize);
        Ok(CpuPolicy {
            leaves: leaves
                .iter()
                .map(|l| CpuidLeaf {
                    leaf: l.leaf,
                    subleaf: l.subleaf,
                    a: l.a,
                    b: l.b,
                    c: l.c,
                    d: l.d,
                })
                .collect(),
            msrs: msrs
                .iter()
                .map(|m| MsrEntry {
                    idx: m.idx,
                    flags: m.flags,
                    val: m.val,
                })
                .collect(),
        })
    }

    fn set_cpu_policy(&self, domid: DomId, policy: &CpuPolicy) -> HvResult<()> {
        let mut leaves: Vec<sys::xen_cpuid_leaf_t> = policy
            .leaves
            .iter()
            .map(|l| sys::xen_cpuid_leaf_t {
                leaf: l.leaf,
                subleaf: l.subleaf,
                a: l.a,
                b: l.b,
                c: l.c,
                d: l.d,
            })
            .collect();
        let mut msrs: Vec<sys::xen_msr_entry_t> = policy
            .msrs
            .iter()
            .map(|m| sys::xen_msr_entry_t {
                idx: m.idx,
                flags: m.flags,
                val: m.val,
            })
            .collect();
        let too_big = |what: &str, n: usize| {
            HvError::with_detail(
                "xc_set_domain_cpu_policy",
                libc::E2BIG,
                format!("{n} {what}"),
            )
        };
        let nr_leaves = u32::try_from(leaves.len()).map_err(|_| too_big("leaves", leaves.len()))?;
        let nr_msrs = u32::try_from(msrs.len()).map_err(|_| too_big("MSRs", msrs.len()))?;
        // libxenguest passes NULL for a record the stream did not carry.
        let leaves_ptr = if leaves.is_empty() {
            ptr::null_mut()
        } else {
            leaves.as_mut_ptr()
        };
        let msrs_ptr = if msrs.is_empty() {
            ptr::null_mut()
        } else {
            msrs.as_mut_ptr()
        };
        let (mut err_leaf, mut err_subleaf, mut err_msr) = (!0u32, !0u32, !0u32);
        // SAFETY: FFI call reading `nr_leaves` leaves and `nr_msrs` MSRs
        // from live vectors (or null for none) and writing three u32s.
        let rc = unsafe {
            sys::xc_set_domain_cpu_policy(
                self.xch_ptr(),
                domid,
                nr_leaves,
                leaves_ptr,
                nr_msrs,
                msrs_ptr,
                &mut err_leaf,
                &mut err_subleaf,
                &mut err_msr,
            )
        };
        cvt(rc, "xc_set_domain_cpu_policy").map_err(|e| {
            e.and_detail(format!(
                "leaf {err_leaf:#x}, subleaf {err_subleaf:#x}, msr {err_msr:#x}"
            ))
        })?;
        Ok(())
    }
}
