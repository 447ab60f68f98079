//! x86 state every x86 guest type restores the same way (libxenguest's
//! `xg_sr_common_x86.c`): the CPU policy records, kept until the static
//! data is complete, and the TSC; and the grant-table seeding both x86
//! guest types end with (`xc_dom_gnttab_seed`).

use super::callbacks::MissingStaticData;
use super::ctx::RestoreCtx;
use super::error::RestoreError;
use crate::hv::{
    CpuPolicy, CpuidLeaf, GrantEntry, Hypervisor, MsrEntry, TscInfo, GNTTAB_RESERVED_CONSOLE,
    GNTTAB_RESERVED_XENSTORE, GTF_PERMIT_ACCESS,
};
use crate::log::Level;
use crate::stream::Array;

/// Most CPUID leaves accepted in X86_CPUID_POLICY: Xen takes at most
/// `CPUID_MAX_SERIALISED_LEAVES` (about 130 in 4.17) and refuses more with
/// E2BIG; this leaves room for growth while keeping the copy held until
/// STATIC_DATA_END at 96 KiB instead of the 128 MiB a record may be.
pub(crate) const MAX_CPUID_LEAVES: usize = 4096;

/// Most entries accepted in X86_MSR_POLICY (Xen 4.17 serialises 2,
/// `MSR_MAX_SERIALISED_ENTRIES`); 64 KiB held at most.
pub(crate) const MAX_MSR_POLICY_ENTRIES: usize = 4096;

/// A CPU policy record with more entries than Xen could take.
fn too_many(what: &'static str, n: usize, max: usize) -> RestoreError {
    RestoreError::Refused {
        what,
        msg: format!("{n} entries, more than the {max} this restore accepts (Xen takes far fewer)"),
        errno: libc::E2BIG,
    }
}

/// The CPU policy records of the stream, until STATIC_DATA_END.
#[derive(Debug, Default)]
pub(crate) struct CpuPolicyRecords {
    cpuid: Option<Vec<CpuidLeaf>>,
    msrs: Option<Vec<MsrEntry>>,
}

impl CpuPolicyRecords {
    /// X86_CPUID_POLICY (non-empty, a multiple of 24 bytes: checked by the
    /// reader).
    pub(crate) fn cpuid(&mut self, leaves: &Array<'_, CpuidLeaf>) -> Result<(), RestoreError> {
        if leaves.len() > MAX_CPUID_LEAVES {
            return Err(too_many("X86_CPUID_POLICY", leaves.len(), MAX_CPUID_LEAVES));
        }
        self.cpuid = Some(leaves.to_vec());
        Ok(())
    }

    /// X86_MSR_POLICY.
    pub(crate) fn msrs(&mut self, msrs: &Array<'_, MsrEntry>) -> Result<(), RestoreError> {
        if msrs.len() > MAX_MSR_POLICY_ENTRIES {
            return Err(too_many(
                "X86_MSR_POLICY",
                msrs.len(),
                MAX_MSR_POLICY_ENTRIES,
            ));
        }
        self.msrs = Some(msrs.to_vec());
        Ok(())
    }

    /// Static data complete: set the domain's CPU policy if the stream
    /// had any, and say which records were missing.
    pub(crate) fn apply<H: Hypervisor>(
        &mut self,
        ctx: &RestoreCtx<'_, H>,
    ) -> Result<MissingStaticData, RestoreError> {
        let missing = MissingStaticData {
            cpuid: self.cpuid.is_none(),
            msr: self.msrs.is_none(),
        };
        let policy = CpuPolicy {
            leaves: self.cpuid.take().unwrap_or_default(),
            msrs: self.msrs.take().unwrap_or_default(),
        };
        if !policy.leaves.is_empty() || !policy.msrs.is_empty() {
            ctx.hv().set_cpu_policy(ctx.domid(), &policy)?;
        }
        Ok(missing)
    }
}

/// X86_TSC_INFO.
pub(crate) fn tsc_info<H: Hypervisor>(
    ctx: &RestoreCtx<'_, H>,
    tsc: &TscInfo,
) -> Result<(), RestoreError> {
    ctx.hv().set_tsc_info(ctx.domid(), tsc)?;
    Ok(())
}

/// Grant entries 0 (console) and 1 (xenstore) for the backends, at the
/// frames in the outputs: gfns for HVM (`hvm`), MFNs for PV.
pub(crate) fn seed_grant_table<H: Hypervisor>(
    ctx: &RestoreCtx<'_, H>,
    hvm: bool,
) -> Result<(), RestoreError> {
    let domid = ctx.domid();
    let mut entries = Vec::with_capacity(2);
    for (index, backend, frame) in [
        (
            GNTTAB_RESERVED_CONSOLE,
            ctx.params.console_domid,
            ctx.outputs.console_gfn,
        ),
        (
            GNTTAB_RESERVED_XENSTORE,
            ctx.params.store_domid,
            ctx.outputs.store_gfn,
        ),
    ] {
        // The guest granting itself, or no page: nothing to seed.
        if backend == domid || frame == u64::MAX {
            continue;
        }
        let (Ok(backend_id), Ok(frame32)) = (u16::try_from(backend), u32::try_from(frame)) else {
            return Err(RestoreError::Record {
                what: if hvm { "HVM_PARAMS" } else { "X86_PV_VCPU_BASIC" },
                msg: format!(
                    "grant entry {index}: domain {backend} or frame {frame:#x} does not fit a v1 grant entry"
                ),
            });
        };
        ctx.msg(
            Level::Detail,
            &format!("seed grant table: d{domid} gnt[{index}] -> d{backend} {frame:#x}"),
        );
        entries.push(GrantEntry {
            index,
            flags: GTF_PERMIT_ACCESS,
            domid: backend_id,
            frame: frame32,
        });
    }
    ctx.hv().seed_grant_table(domid, hvm, &entries)?;
    Ok(())
}
