//! [`CpuScheduler`] over `xc_sched_id` and the credit/credit2 domain calls
//! of libxenctrl.

use super::{cvt, sys, XenHypervisor};
use crate::hv::{CpuScheduler, DomId, HvError, HvResult, SchedCredit, SchedulerKind};

/// The error for a scheduler without per-domain caps.
fn no_cap(op: &'static str, kind: SchedulerKind) -> HvError {
    HvError::with_detail(op, libc::EINVAL, format!("{kind} has no per-domain cap"))
}

impl CpuScheduler for XenHypervisor<'_> {
    fn scheduler(&self) -> HvResult<SchedulerKind> {
        let mut id: std::ffi::c_int = 0;
        // SAFETY: FFI call writing one int.
        let rc = unsafe { sys::xc_sched_id(self.xch_ptr(), &mut id) };
        cvt(rc, "xc_sched_id")?;
        Ok(SchedulerKind::from_id(id as u32))
    }

    fn sched_credit(&self, domid: DomId, kind: SchedulerKind) -> HvResult<SchedCredit> {
        match kind {
            SchedulerKind::Credit => {
                let mut s = sys::xen_domctl_sched_credit::default();
                // SAFETY: FFI call writing one struct xen_domctl_sched_credit.
                let rc = unsafe { sys::xc_sched_credit_domain_get(self.xch_ptr(), domid, &mut s) };
                cvt(rc, "xc_sched_credit_domain_get")?;
                Ok(SchedCredit {
                    weight: s.weight,
                    cap: s.cap,
                })
            }
            SchedulerKind::Credit2 => {
                let mut s = sys::xen_domctl_sched_credit2::default();
                // SAFETY: FFI call writing one struct xen_domctl_sched_credit2.
                let rc = unsafe { sys::xc_sched_credit2_domain_get(self.xch_ptr(), domid, &mut s) };
                cvt(rc, "xc_sched_credit2_domain_get")?;
                Ok(SchedCredit {
                    weight: s.weight,
                    cap: s.cap,
                })
            }
            other => Err(no_cap("xc_sched_credit_domain_get", other)),
        }
    }

    fn set_sched_credit(
        &self,
        domid: DomId,
        kind: SchedulerKind,
        params: SchedCredit,
    ) -> HvResult<()> {
        match kind {
            SchedulerKind::Credit => {
                let mut s = sys::xen_domctl_sched_credit {
                    weight: params.weight,
                    cap: params.cap,
                };
                // SAFETY: FFI call reading one struct xen_domctl_sched_credit.
                let rc = unsafe { sys::xc_sched_credit_domain_set(self.xch_ptr(), domid, &mut s) };
                cvt(rc, "xc_sched_credit_domain_set").map(|_| ())
            }
            SchedulerKind::Credit2 => {
                let mut s = sys::xen_domctl_sched_credit2 {
                    weight: params.weight,
                    cap: params.cap,
                };
                // SAFETY: FFI call reading one struct xen_domctl_sched_credit2.
                let rc = unsafe { sys::xc_sched_credit2_domain_set(self.xch_ptr(), domid, &mut s) };
                cvt(rc, "xc_sched_credit2_domain_set").map(|_| ())
            }
            other => Err(no_cap("xc_sched_credit_domain_set", other)),
        }
    }
}
