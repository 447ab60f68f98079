//! x86 state every x86 guest type restores the same way (libxenguest's
//! `xg_sr_common_x86.c`): the CPU policy records, kept until the static
//! data is complete, and the TSC.

use super::callbacks::MissingStaticData;
use super::ctx::RestoreCtx;
use super::error::RestoreError;
use crate::hv::{CpuPolicy, CpuidLeaf, Hypervisor, MsrEntry, TscInfo};
use crate::stream::Array;

/// The CPU policy records of the stream, until STATIC_DATA_END.
#[derive(Debug, Default)]
pub(crate) struct CpuPolicyRecords {
    cpuid: Option<Vec<CpuidLeaf>>,
    msrs: Option<Vec<MsrEntry>>,
}

impl CpuPolicyRecords {
    /// X86_CPUID_POLICY (non-empty, a multiple of 24 bytes: checked by the
    /// reader).
    pub(crate) fn cpuid(&mut self, leaves: &Array<'_, CpuidLeaf>) {
        self.cpuid = Some(leaves.to_vec());
    }

    /// X86_MSR_POLICY.
    pub(crate) fn msrs(&mut self, msrs: &Array<'_, MsrEntry>) {
        self.msrs = Some(msrs.to_vec());
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
