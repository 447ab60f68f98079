//! The x86 HVM/PVH parts of a restore (libxenguest's
//! `restore_ops_x86_hvm`): HVM parameters and context, the magic pages,
//! the event channels and the grant table; with the x86 CPU policy and TSC
//! records of `x86.rs`. HVM and PVH guests address memory by gfn, so the
//! frame behind a pfn is the pfn itself and pages go in unchanged.

use super::callbacks::MissingStaticData;
use super::ctx::RestoreCtx;
use super::error::RestoreError;
use super::guest::{unhandled, RestoreGuest};
use super::memory::PageHooks;
use super::x86::{self, CpuPolicyRecords};
use crate::hv::{param, Hypervisor};
use crate::log::Level;
use crate::stream::{DomainType, HvmParam, Record};

/// Largest HVM_CONTEXT kept: Xen's context is about 16 KiB per vCPU (CPU
/// registers, XSAVE area, LAPIC, MTRRs) plus small domain-wide parts, so a
/// 128-vCPU guest (Xen's HVM maximum) needs about 2 MiB; 16 MiB leaves
/// room for larger XSAVE areas while keeping the copy held until the end
/// of the stream (and libxenctrl's bounce buffer for it) small.
pub(crate) const MAX_HVM_CONTEXT: usize = 16 << 20;

/// The HVM/PVH state of one restore.
#[derive(Debug, Default)]
pub(crate) struct HvmRestore {
    cpu_policy: CpuPolicyRecords,
    /// HVM_CONTEXT, applied when the stream is complete.
    context: Option<Vec<u8>>,
}

impl PageHooks for HvmRestore {
    fn pfn_to_frame(&self, pfn: u64) -> u64 {
        pfn
    }
}

impl<H: Hypervisor> RestoreGuest<H> for HvmRestore {
    fn name(&self) -> &'static str {
        "x86 HVM"
    }

    fn domain_type(&self) -> DomainType {
        DomainType::X86Hvm
    }

    fn page_hooks(&mut self) -> &mut dyn PageHooks {
        self
    }

    fn process_record(
        &mut self,
        ctx: &mut RestoreCtx<'_, H>,
        rec: &Record<'_>,
    ) -> Result<(), RestoreError> {
        match rec {
            Record::X86CpuidPolicy(a) => self.cpu_policy.cpuid(a),
            Record::X86MsrPolicy(a) => self.cpu_policy.msrs(a),
            Record::X86TscInfo(t) => x86::tsc_info(ctx, t),
            Record::HvmContext(blob) => {
                if blob.len() > MAX_HVM_CONTEXT {
                    return Err(RestoreError::Refused {
                        what: "HVM_CONTEXT",
                        msg: format!(
                            "{} bytes, more than the {MAX_HVM_CONTEXT} this restore accepts (Xen's context is about 16 KiB per vCPU)",
                            blob.len()
                        ),
                        errno: libc::E2BIG,
                    });
                }
                self.context = Some(blob.to_vec());
                Ok(())
            }
            Record::HvmParams(a) => {
                if a.is_empty() {
                    ctx.msg(Level::Debug, "Skipping empty HVM_PARAMS record");
                }
                for HvmParam { index, value } in a.iter() {
                    apply_param(ctx, index, value)?;
                }
                Ok(())
            }
            other => Err(unhandled("x86 HVM", other)),
        }
    }

    fn static_data_complete(
        &mut self,
        ctx: &mut RestoreCtx<'_, H>,
    ) -> Result<MissingStaticData, RestoreError> {
        self.cpu_policy.apply(ctx)
    }

    fn stream_complete(&mut self, ctx: &mut RestoreCtx<'_, H>) -> Result<(), RestoreError> {
        let (hv, domid) = (ctx.hv(), ctx.domid());
        let params = ctx.params;
        hv.set_hvm_param(domid, param::STORE_EVTCHN, u64::from(params.store_evtchn))?;
        hv.set_hvm_param(
            domid,
            param::CONSOLE_EVTCHN,
            u64::from(params.console_evtchn),
        )?;
        let Some(context) = self.context.as_deref() else {
            return Err(RestoreError::Incomplete("an HVM_CONTEXT record"));
        };
        hv.set_hvm_context(domid, context)?;
        x86::seed_grant_table(ctx, true)
    }
}

/// One HVM_PARAMS entry, as libxenguest applies it.
fn apply_param<H: Hypervisor>(
    ctx: &mut RestoreCtx<'_, H>,
    index: u64,
    value: u64,
) -> Result<(), RestoreError> {
    let Ok(idx) = u32::try_from(index) else {
        return Err(RestoreError::Record {
            what: "HVM_PARAMS",
            msg: format!("parameter index {index:#x} out of range"),
        });
    };
    match idx {
        param::CONSOLE_PFN => {
            ctx.outputs.console_gfn = value;
            clear_page(ctx, value);
        }
        param::STORE_PFN => {
            ctx.outputs.store_gfn = value;
            clear_page(ctx, value);
        }
        param::IOREQ_PFN | param::BUFIOREQ_PFN => clear_page(ctx, value),
        // Obsolete: it only ever fed xc_cpuid_apply_policy(); Xen now
        // refuses it, so old streams carrying it must not fail.
        param::PAE_ENABLED => return Ok(()),
        _ => {}
    }
    // The error names the parameter and its value; "Restore failed" is
    // its one error line.
    ctx.hv()
        .set_hvm_param(ctx.domid(), idx, value)
        .map_err(RestoreError::Hv)
}

/// Zero a magic page whose old contents must not survive (rings the
/// backends set up afresh). libxenguest ignores failures here.
fn clear_page<H: Hypervisor>(ctx: &RestoreCtx<'_, H>, gfn: u64) {
    if let Err(e) = ctx.hv().clear_pages(ctx.domid(), gfn, 1) {
        ctx.msg_errno(
            Level::Debug,
            e.errno(),
            &format!("clearing page {gfn:#x}: {e}"),
        );
    }
}
