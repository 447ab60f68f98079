//! The x86 HVM/PVH parts of a save (libxenguest's `save_ops_x86_hvm`):
//! p2m size and qemu log-dirty at setup, the CPU policy as static data, and
//! TSC, parameters and context at the end of each checkpoint.

use std::io::Write;

use super::ctx::Ctx;
use super::error::SaveError;
use super::guest::{PageFrames, SaveGuest};
use super::x86;
use crate::hv::{param, Hypervisor};
use crate::stream::DomainType;

/// Most gfns an x86 HVM guest can span: physical addresses have at most 52
/// bits. A larger `xc_domain_nr_gpfns` answer is not one Xen can give, and
/// sizing the save's tracking by it would ask for terabytes.
const MAX_GPFNS: u64 = 1 << (52 - crate::x86::PAGE_SHIFT);

/// Per-save HVM state.
#[derive(Debug, Default)]
pub(crate) struct HvmSave {
    /// qemu's log-dirty tracking was switched on and must be switched off.
    qemu_enabled_logdirty: bool,
}

/// HVM and PVH guests address memory by gfn: the frame is the pfn, and
/// pages go out as they are.
impl PageFrames for HvmSave {
    fn pfn_to_frame(&self, pfn: u64) -> u64 {
        pfn
    }
}

impl<H: Hypervisor, W: Write> SaveGuest<H, W> for HvmSave {
    fn name(&self) -> &'static str {
        "x86 HVM"
    }

    fn domain_type(&self) -> DomainType {
        DomainType::X86Hvm
    }

    fn frames(&self) -> &dyn PageFrames {
        self
    }

    /// The p2m size, then qemu log-dirty on.
    fn setup(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        let n = ctx.hv.nr_gpfns(ctx.domid)?;
        if n > MAX_GPFNS {
            return Err(SaveError::Protocol(format!(
                "xc_domain_nr_gpfns answered {n:#x} pfns, beyond the {MAX_GPFNS:#x} \
                 of a 52-bit physical address space"
            )));
        }
        ctx.summary.p2m_size = n;
        if let Err(f) = ctx.cb.switch_qemu_logdirty(ctx.domid, true) {
            ctx.msg(
                crate::log::Level::Error,
                "Couldn't enable qemu log-dirty mode",
            );
            return Err(SaveError::callback("switch_qemu_logdirty", f));
        }
        self.qemu_enabled_logdirty = true;
        Ok(())
    }

    /// X86_CPUID_POLICY and X86_MSR_POLICY, each only if non-empty.
    fn static_data(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        x86::write_cpu_policy(ctx)
    }

    /// X86_TSC_INFO, HVM_PARAMS (the non-zero members of libxenguest's set;
    /// no record when all are zero), HVM_CONTEXT — the spec's order, in
    /// which the parameters precede the context they may affect.
    fn end_of_checkpoint(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        x86::write_tsc_info(ctx)?;

        let mut params = Vec::with_capacity(param::SAVED.len());
        for index in param::SAVED {
            let value = ctx.hv.hvm_param(ctx.domid, index)?;
            if value != 0 {
                params.push((index, value));
            }
        }
        if !params.is_empty() {
            ctx.out.hvm_params(&params)?;
        }

        let blob = ctx.hv.hvm_context(ctx.domid)?;
        ctx.out.hvm_context(&blob)?;
        Ok(())
    }

    /// qemu log-dirty off, if setup switched it on.
    fn cleanup(&mut self, ctx: &mut Ctx<'_, H, W>) -> Result<(), SaveError> {
        if !self.qemu_enabled_logdirty {
            return Ok(());
        }
        self.qemu_enabled_logdirty = false;
        ctx.cb
            .switch_qemu_logdirty(ctx.domid, false)
            .map_err(|f| SaveError::callback("switch_qemu_logdirty", f))
    }
}
