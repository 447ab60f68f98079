//! The PV guest's part of suspend and resume, as Linux does it.
//!
//! * Before `SHUTDOWN_suspend` takes effect (`xen_pre_suspend`): start_info's
//!   xenstore and console frames become pfns, and the suspend hypercall's
//!   argument, the start_info MFN, is in vCPU 0's rdx/edx.
//! * When the guest runs again in the same domain (`resume`: the suspend was
//!   cancelled), it turns those fields back into MFNs.
//! * When it runs for the first time after a restore (the first unpause of a
//!   domain that was never unpaused), the toolstack has already rewritten
//!   start_info; the guest republishes its p2m in shared_info against its new
//!   MFNs (the frame-list tree rebuilt, or `p2m_cr3`), which the restore left
//!   zeroed (fll) or naming the source's frames (p2m_cr3).
//!
//! A PV domain without a xensim kernel page (populated by hand) has no guest
//! code: these steps do nothing for it.

use crate::domain::{w, CtxLayout, Domain};
use crate::error::Result;
use crate::pvguest::{publish_p2m, Kvars, StartInfoLayout, START_INFO_PFN};
use crate::PAGE_SIZE;
use std::sync::atomic::Ordering::SeqCst;

/// Guest-state flag: start_info is in its suspended (pfn) form.
const GS_SUSPENDED: u64 = 1;

/// Convert start_info's xenstore and console frames with `f`.
fn convert_rings(d: &Domain, kv: &Kvars, f: impl Fn(u64) -> Option<u64>) -> Result<u64> {
    let si = d
        .pfn_to_mfn(START_INFO_PFN)
        .ok_or_else(|| crate::Error::new(libc::EINVAL, "guest has no start_info page"))?;
    let l = StartInfoLayout::for_bits(kv.bits);
    let mut p = vec![0u8; PAGE_SIZE as usize];
    d.read_frame(si, &mut p)?;
    for o in [l.store_mfn, l.console_mfn] {
        let v = crate::domain::get_word(&p, o, l.word);
        if let Some(n) = f(v) {
            crate::domain::put_word(&mut p, o, l.word, n);
        }
    }
    d.write_frame(si, &p)?;
    // The guest's own store: seen by log-dirty, so a live save resends the
    // page in its last pass rather than keep its pre-suspend contents.
    d.mark_dirty(START_INFO_PFN);
    Ok(si)
}

/// `xen_pre_suspend` and the suspend hypercall's register.
pub(crate) fn pre_suspend(d: &Domain) -> Result<()> {
    let Ok(kv) = Kvars::read(d) else {
        return Ok(());
    };
    if d.ctl(w::GUEST_STATE).load(SeqCst) & GS_SUSPENDED != 0 {
        return Ok(());
    }
    let si = convert_rings(d, &kv, |mfn| d.mfn_to_pfn(mfn))?;
    let l = CtxLayout::for_bits(d.address_size());
    let mut c = d.vcpu_context(0)?;
    l.put(&mut c, l.rdx, si);
    d.store_vcpu_context(0, &c)?;
    d.ctl(w::GUEST_STATE).fetch_or(GS_SUSPENDED, SeqCst);
    Ok(())
}

/// The suspend was cancelled (`xen_post_suspend(1)`): rings back to MFNs.
pub(crate) fn resume_cancelled(d: &Domain) -> Result<()> {
    let Ok(kv) = Kvars::read(d) else {
        return Ok(());
    };
    if d.ctl(w::GUEST_STATE).fetch_and(!GS_SUSPENDED, SeqCst) & GS_SUSPENDED == 0 {
        return Ok(());
    }
    convert_rings(d, &kv, |pfn| d.pfn_to_mfn(pfn))?;
    Ok(())
}

/// First run after a restore: republish the p2m against the new MFNs.
pub(crate) fn resume_restored(d: &Domain) -> Result<()> {
    let Ok(kv) = Kvars::read(d) else {
        return Ok(());
    };
    d.ctl(w::GUEST_STATE).fetch_and(!GS_SUSPENDED, SeqCst);
    publish_p2m(d, &kv)
}
