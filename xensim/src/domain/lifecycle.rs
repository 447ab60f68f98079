//! A domain's lifecycle: controller pause, shutdown and resume, and the
//! guest-write gate that lets them wait for the workload to stop.

use super::{w, Domain};
use crate::error::{err, Result};
use crate::SHUTDOWN_SOFT_RESET;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

/// How long a raised writer count is trusted before the writer's process
/// is looked for.
const QUIESCE_GRACE: Duration = Duration::from_secs(5);

/// How long a pause waits at most for a live workload to leave a guest
/// write (one page copy; only a machine stalled for this long takes it).
const QUIESCE_LIMIT: Duration = Duration::from_secs(120);

/// Whether process `pid` exists (0: no process recorded). Read from
/// /proc, which needs no signal permission (the workload may run as
/// another user).
fn process_alive(pid: u64) -> bool {
    pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Domain {
    /// Wait until no workload thread is inside a guest write, like Xen
    /// waiting for vCPUs to be descheduled. A workload killed mid-write
    /// leaves the counter raised: after 5 s, if the last writer's process is
    /// gone, the count is cleared. A writer that is alive but slow (a loaded
    /// machine) is waited for: clearing the count under it would let its
    /// write land after the pause, changing a guest the toolstack believes
    /// stopped. After [`QUIESCE_LIMIT`] it is cleared anyway, with a warning.
    fn quiesce(&self) {
        self.quiesce_within(QUIESCE_GRACE, QUIESCE_LIMIT);
    }

    /// [`Domain::quiesce`] with its two times: after `grace` a raised count
    /// with no live writer is cleared; after `limit` any raised count is.
    fn quiesce_within(&self, grace: Duration, limit: Duration) {
        let start = Instant::now();
        let mut warned = false;
        while self.ctl(w::VCPU_ACTIVE).load(SeqCst) != 0 {
            let waited = start.elapsed();
            if waited > grace {
                let pid = self.ctl(w::WRITER_PID).load(SeqCst);
                if !process_alive(pid) || waited > limit {
                    if process_alive(pid) {
                        eprintln!(
                            "xensim: domain {}: workload process {pid} still inside a guest write after {} s; no longer waiting",
                            self.i.id,
                            waited.as_secs()
                        );
                    }
                    self.ctl(w::VCPU_ACTIVE).store(0, SeqCst);
                    break;
                }
                if !warned {
                    eprintln!(
                        "xensim: domain {}: waiting for workload process {pid} to leave a guest write",
                        self.i.id
                    );
                    warned = true;
                }
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
        self.ctl(w::WRITER_PID)
            .store(u64::from(std::process::id()), SeqCst);
        if self.guest_stopped() {
            self.ctl(w::VCPU_ACTIVE).fetch_sub(1, SeqCst);
            return false;
        }
        true
    }

    /// Leave a guest write. Never below zero: a pause that gave up on this
    /// writer has already cleared the count.
    pub(crate) fn guest_exit(&self) {
        let _ = self
            .ctl(w::VCPU_ACTIVE)
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempHost;
    use crate::{DomainConfig, GuestType};

    fn domain(t: &TempHost) -> Domain {
        let id = t
            .host
            .create_domain(&DomainConfig {
                guest_type: GuestType::Hvm,
                memory_bytes: 2 << 20,
                vcpus: 1,
                empty: true,
                ..Default::default()
            })
            .unwrap();
        t.host.domain(id).unwrap()
    }

    #[test]
    fn a_pause_waits_for_a_live_writer_past_the_grace_period() {
        let t = TempHost::new("quiesce-live");
        let d = domain(&t);
        // Created paused, as a restore target is: let it run.
        d.unpause().unwrap();
        assert!(d.guest_enter());
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                d.guest_exit();
            });
            d.quiesce_within(Duration::from_millis(20), Duration::from_secs(60));
        });
        // This process is the writer and alive: the count was not cleared
        // under it, the pause returned when the write ended.
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(d.ctl(w::VCPU_ACTIVE).load(SeqCst), 0);
    }

    #[test]
    fn a_pause_clears_the_count_a_dead_writer_left_and_a_late_exit_does_not_wrap() {
        let t = TempHost::new("quiesce-dead");
        let d = domain(&t);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        d.ctl(w::VCPU_ACTIVE).store(1, SeqCst);
        d.ctl(w::WRITER_PID).store(u64::from(dead), SeqCst);
        d.quiesce_within(Duration::from_millis(20), Duration::from_secs(60));
        assert_eq!(d.ctl(w::VCPU_ACTIVE).load(SeqCst), 0);
        d.guest_exit();
        assert_eq!(d.ctl(w::VCPU_ACTIVE).load(SeqCst), 0);
    }
}
