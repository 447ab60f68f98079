//! The records every x86 guest type writes (libxenguest's
//! `xg_sr_common_x86.c`): the CPU policy as static data and the TSC at
//! the end of each checkpoint.

use std::io::Write;

use super::ctx::Ctx;
use super::error::SaveError;
use crate::hv::Hypervisor;

/// X86_CPUID_POLICY and X86_MSR_POLICY, each only if non-empty.
pub(crate) fn write_cpu_policy<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
) -> Result<(), SaveError> {
    let policy = ctx.hv.cpu_policy(ctx.domid)?;
    if !policy.leaves.is_empty() {
        ctx.out.cpuid_policy(&policy.leaves)?;
    }
    if !policy.msrs.is_empty() {
        ctx.out.msr_policy(&policy.msrs)?;
    }
    Ok(())
}

/// X86_TSC_INFO.
pub(crate) fn write_tsc_info<H: Hypervisor, W: Write>(
    ctx: &mut Ctx<'_, H, W>,
) -> Result<(), SaveError> {
    let tsc = ctx.hv.tsc_info(ctx.domid)?;
    ctx.out.tsc_info(&tsc)?;
    Ok(())
}
