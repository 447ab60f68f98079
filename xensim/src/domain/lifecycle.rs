//! A domain's lifecycle: controller pause, shutdown and resume, and the
//! guest-write gate that lets them wait for the workload to stop.

use super::{w, Domain};
use crate::error::{err, Result};
use crate::SHUTDOWN_SOFT_RESET;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

impl Domain {
    /// Wait until no workload thread is inside a guest write, like Xen
    /// waiting for vCPUs to be descheduled. A workload killed mid-write would
    /// leave the counter raised; after 5 s it is considered gone.
    fn quiesce(&self) {
        let start = Instant::now();
        while self.ctl(w::VCPU_ACTIVE).load(SeqCst) != 0 {
            if start.elapsed() > Duration::from_secs(5) {
                self.ctl(w::VCPU_ACTIVE).store(0, SeqCst);
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Controller pause (`xc_domain_pause`): counts, and returns once the
    /// guest's workload has stopped writing.
    pub fn pause(&self) -> Result<()> {
        self.require_alive()?;
        self.ctl(w::PAUSE_COUNT).fetch_add(1, SeqCst);
        self.quiesce();
        Ok(())
    }

    /// Controller unpause; EINVAL if not paused. The first unpause that
    /// reaches zero sets `creation_finished`.
    pub fn unpause(&self) -> Result<()> {
        self.require_alive()?;
        let c = self.ctl(w::PAUSE_COUNT);
        let mut cur = c.load(SeqCst);
        loop {
            if cur == 0 {
                return err(libc::EINVAL, format!("domain {} is not paused", self.i.id));
            }
            match c.compare_exchange(cur, cur - 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 && self.ctl(w::CREATION_FINISHED).swap(1, SeqCst) == 0 && self.is_pv() {
            // A PV domain's first run: a restored guest republishes its p2m.
            crate::pvsuspend::resume_restored(self)?;
        }
        Ok(())
    }

    /// Remote shutdown (`xc_domain_shutdown`). The first reason wins, as in
    /// Xen; the domain counts as shut down once its workload has stopped.
    /// [`crate::SHUTDOWN_SUSPEND`] is what a saving toolstack uses.
    pub fn shutdown(&self, reason: u32) -> Result<()> {
        self.require_alive()?;
        if reason > SHUTDOWN_SOFT_RESET {
            return err(libc::EINVAL, format!("bad shutdown reason {reason}"));
        }
        let first = self
            .ctl(w::SHUTDOWN_CODE)
            .compare_exchange(0, u64::from(reason) + 1, SeqCst, SeqCst)
            .is_ok();
        self.quiesce();
        if first && reason == crate::SHUTDOWN_SUSPEND && self.is_pv() {
            // The guest's own suspend path ran before it made the hypercall.
            crate::pvsuspend::pre_suspend(self)?;
        }
        self.ctl(w::SHUT_DOWN).store(1, SeqCst);
        Ok(())
    }

    /// `XEN_DOMCTL_resumedomain`: clear the shutdown so the guest runs again.
    pub fn resume(&self) -> Result<()> {
        self.require_alive()?;
        if self.is_pv() {
            crate::pvsuspend::resume_cancelled(self)?;
        }
        self.ctl(w::SHUT_DOWN).store(0, SeqCst);
        self.ctl(w::SHUTDOWN_CODE).store(0, SeqCst);
        Ok(())
    }

    /// True while the guest may not run (shutting down, paused or dying).
    pub fn guest_stopped(&self) -> bool {
        self.ctl(w::SHUTDOWN_CODE).load(SeqCst) != 0
            || self.ctl(w::PAUSE_COUNT).load(SeqCst) != 0
            || self.is_dying()
    }

    /// Enter a guest write; false if the guest is stopped. Pairs with
    /// [`Domain::guest_exit`]. Dekker-style with `pause`/`shutdown`: either
    /// this sees the stop flag or the stopper waits for the write to end.
    pub(crate) fn guest_enter(&self) -> bool {
        self.ctl(w::VCPU_ACTIVE).fetch_add(1, SeqCst);
        if self.guest_stopped() {
            self.ctl(w::VCPU_ACTIVE).fetch_sub(1, SeqCst);
            return false;
        }
        true
    }

    pub(crate) fn guest_exit(&self) {
        self.ctl(w::VCPU_ACTIVE).fetch_sub(1, SeqCst);
    }
}
