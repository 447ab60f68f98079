//! Test fixtures shared by the save and restore engine tests: temporary
//! xensim hosts, callbacks that act like a toolstack, a recording logger,
//! and a hypervisor wrapper that dirties pages between log-dirty rounds.

use std::cell::RefCell;
use std::rc::Rc;

use crate::log::{Level, Log};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use xensim::{Domain, DomainConfig, Fill, GuestType, Host};

use super::{PolicyDecision, PrecopyStats, SaveCallbacks, SaveHook};
use crate::hv::sim::SimHypervisor;
use crate::hv::{
    CpuPolicy, DomId, DomainCtl, DomainInfo, GrantEntry, GrantTable, GuestMemory, HvResult,
    LogDirty, LogDirtyReport, TscInfo, X86Cpu, X86Hvm,
};
use crate::restore::{MissingStaticData, Proceed, RestoreCallbacks, RestoreHook};
use crate::toolstack::{CallbackFailed, Next};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A xensim host in a fresh temporary directory, removed on drop.
pub(crate) struct TempHost {
    pub(crate) dir: PathBuf,
    pub(crate) host: Host,
}

impl TempHost {
    pub(crate) fn new(tag: &str) -> TempHost {
        let dir = std::env::temp_dir().join(format!(
            "xcmig-engine-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let host = Host::open(&dir).expect("open temp xensim host");
        TempHost { dir, host }
    }

    /// Another handle on the same host (what a second process would open).
    pub(crate) fn reopen(&self) -> Host {
        Host::open(&self.dir).expect("reopen xensim host")
    }

    pub(crate) fn hv(&self) -> SimHypervisor {
        SimHypervisor::new(self.reopen())
    }

    pub(crate) fn create(&self, t: GuestType, mem: u64, seed: u64, empty: bool) -> DomId {
        self.host
            .create_domain(&DomainConfig {
                guest_type: t,
                memory_bytes: mem,
                vcpus: 2,
                fill: Fill::Mixed,
                seed,
                empty,
                ..DomainConfig::default()
            })
            .expect("create domain")
    }

    pub(crate) fn domain(&self, id: DomId) -> Domain {
        self.host.domain(id).expect("open domain")
    }
}

impl Drop for TempHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a [`RecLog`] kept.
#[derive(Default)]
pub(crate) struct Recorded {
    pub(crate) lines: RefCell<Vec<(Level, String)>>,
    pub(crate) progress: RefCell<Vec<(String, u64, u64)>>,
}

impl Log for Recorded {
    fn log(&self, level: Level, _errno: Option<i32>, msg: &str) {
        self.lines.borrow_mut().push((level, msg.to_string()));
    }
    fn progress(&self, doing_what: &str, done: u64, total: u64) {
        self.progress
            .borrow_mut()
            .push((doing_what.to_string(), done, total));
    }
}

impl Recorded {
    pub(crate) fn errors(&self) -> Vec<String> {
        self.lines
            .borrow()
            .iter()
            .filter(|(l, _)| *l >= Level::Error)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

/// A [`Log`] that keeps everything: the progress it is handed, and, while
/// it lives, every message of its thread (it is this thread's sink, as the
/// C layer's logger is during a call).
pub(crate) struct RecLog {
    rec: Rc<Recorded>,
    _sink: crate::log::SinkGuard,
}

impl Default for RecLog {
    fn default() -> Self {
        crate::log::install_forwarder();
        let rec = Rc::new(Recorded::default());
        let _sink = crate::log::scoped(rec.clone());
        RecLog { rec, _sink }
    }
}

impl std::ops::Deref for RecLog {
    type Target = Recorded;
    fn deref(&self) -> &Recorded {
        &self.rec
    }
}

impl Log for RecLog {
    fn log(&self, level: Level, errno: Option<i32>, msg: &str) {
        self.rec.log(level, errno, msg);
    }
    fn progress(&self, doing_what: &str, done: u64, total: u64) {
        self.rec.progress(doing_what, done, total);
    }
}

/// A precopy policy under test.
pub(crate) type Policy = Box<dyn FnMut(PrecopyStats) -> PolicyDecision>;

/// Save callbacks acting like libxl: suspend shuts the domain down for
/// suspend (and records its digest there), qemu log-dirty answers 0.
pub(crate) struct ToolstackSave {
    pub(crate) dom: Domain,
    pub(crate) policy: Option<Policy>,
    pub(crate) policy_calls: Vec<PrecopyStats>,
    pub(crate) qemu_logdirty: Vec<bool>,
    /// `switch_qemu_logdirty` fails with this.
    pub(crate) qemu_failure: Option<CallbackFailed>,
    /// `suspend` fails with this.
    pub(crate) suspend_failure: Option<CallbackFailed>,
    /// Whether `suspend` really shuts the domain down.
    pub(crate) shutdown_on_suspend: bool,
    /// Whether `switch_qemu_logdirty` is provided.
    pub(crate) has_qemu: bool,
    pub(crate) suspends: u32,
    pub(crate) digest_at_suspend: Option<String>,
    /// Digests at every suspend (one per checkpoint).
    pub(crate) digests: Vec<String>,
    /// Pages the guest rewrites (and dirties) after each resume.
    pub(crate) dirty_on_resume: u64,
    /// Remus: postcopy resumes the domain; checkpoint answers from here.
    /// (COLO: the notification succeeds on `Continue`, fails with the
    /// code of `Stop`.)
    pub(crate) checkpoint_answers: VecDeque<Next>,
    /// COLO: wait_checkpoint answers from here (provided when non-empty).
    pub(crate) wait_answers: VecDeque<Next>,
}

impl ToolstackSave {
    pub(crate) fn new(dom: Domain) -> Self {
        ToolstackSave {
            dom,
            policy: None,
            policy_calls: Vec::new(),
            qemu_logdirty: Vec::new(),
            qemu_failure: None,
            suspend_failure: None,
            shutdown_on_suspend: true,
            has_qemu: true,
            suspends: 0,
            digest_at_suspend: None,
            digests: Vec::new(),
            dirty_on_resume: 0,
            checkpoint_answers: VecDeque::new(),
            wait_answers: VecDeque::new(),
        }
    }
}

impl SaveCallbacks for ToolstackSave {
    fn has(&self, hook: SaveHook) -> bool {
        match hook {
            SaveHook::PrecopyPolicy => self.policy.is_some(),
            SaveHook::SwitchQemuLogdirty => self.has_qemu,
            SaveHook::Postcopy | SaveHook::Checkpoint => !self.checkpoint_answers.is_empty(),
            SaveHook::WaitCheckpoint => !self.wait_answers.is_empty(),
        }
    }

    fn suspend(&mut self) -> Result<(), CallbackFailed> {
        self.suspends += 1;
        if self.suspend_failure.is_none() && self.shutdown_on_suspend {
            self.dom
                .shutdown(xensim::SHUTDOWN_SUSPEND)
                .expect("shutdown for suspend");
            let d = self.dom.digest().expect("digest at suspend");
            self.digests.push(d.clone());
            self.digest_at_suspend = Some(d);
        }
        self.suspend_failure.map_or(Ok(()), Err)
    }

    fn precopy_policy(&mut self, stats: PrecopyStats) -> PolicyDecision {
        self.policy_calls.push(stats);
        match self.policy.as_mut() {
            Some(p) => p(stats),
            None => super::simple_precopy_policy(stats),
        }
    }

    fn postcopy(&mut self) -> Next {
        self.dom.resume().expect("resume");
        // The guest runs on: rewrite a few pages, as its own writes would.
        let ram = xensim::workload::working_set(&self.dom, self.dirty_on_resume * 4096, 1);
        for (i, &pfn) in ram.iter().enumerate() {
            let fill = (self.digests.len() * 31 + i) as u8;
            self.dom
                .write_frame(pfn, &[fill; 4096])
                .expect("guest write");
            self.dom.mark_dirty(pfn);
        }
        Next::Continue
    }

    fn checkpoint(&mut self) -> Next {
        self.checkpoint_answers.pop_front().unwrap_or(STOP)
    }

    fn wait_checkpoint(&mut self) -> Next {
        self.wait_answers.pop_front().unwrap_or(STOP)
    }

    fn switch_qemu_logdirty(&mut self, _domid: DomId, enable: bool) -> Result<(), CallbackFailed> {
        self.qemu_logdirty.push(enable);
        self.qemu_failure.map_or(Ok(()), Err)
    }
}

/// A checkpoint callback's "stop".
pub(crate) const STOP: Next = Next::Stop { code: 0 };
/// A restore checkpoint callback's "continue".
pub(crate) const GO: Result<Proceed, CallbackFailed> = Ok(Proceed::Continue);
/// A restore checkpoint callback's "fail over".
pub(crate) const FAILOVER: Result<Proceed, CallbackFailed> = Ok(Proceed::Failover);
/// A restore checkpoint callback's error.
pub(crate) const ERROR: Result<Proceed, CallbackFailed> = Err(CallbackFailed { code: 0 });

/// Restore callbacks that record `static_data_done` and answer
/// `checkpoint` from a script (continue when it runs out).
#[derive(Default)]
pub(crate) struct ToolstackRestore {
    pub(crate) missing: Vec<MissingStaticData>,
    /// `static_data_done` fails with this.
    pub(crate) static_data_failure: Option<CallbackFailed>,
    pub(crate) checkpoint_answers: VecDeque<Result<Proceed, CallbackFailed>>,
    pub(crate) checkpoints: u32,
}

impl RestoreCallbacks for ToolstackRestore {
    fn has(&self, hook: RestoreHook) -> bool {
        matches!(hook, RestoreHook::StaticDataDone | RestoreHook::Checkpoint)
    }
    fn static_data_done(&mut self, missing: MissingStaticData) -> Result<(), CallbackFailed> {
        self.missing.push(missing);
        self.static_data_failure.map_or(Ok(()), Err)
    }
    fn checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        self.checkpoints += 1;
        self.checkpoint_answers.pop_front().unwrap_or(GO)
    }
}

/// A hypervisor that, before each non-final log-dirty CLEAN, has the guest
/// dirty the next scripted number of distinct RAM pages, and counts calls.
pub(crate) struct ScriptedDirty {
    pub(crate) inner: SimHypervisor,
    dom: Domain,
    script: RefCell<VecDeque<u32>>,
    ram: Vec<u64>,
    pub(crate) cleans: RefCell<Vec<(u32, bool)>>,
    pub(crate) enables: RefCell<u32>,
    /// `nr_gpfns` answers this instead of the simulator's value.
    pub(crate) nr_gpfns_answer: Option<u64>,
}

impl ScriptedDirty {
    pub(crate) fn new(inner: SimHypervisor, dom: Domain, script: &[u32]) -> Self {
        let ram = xensim::workload::working_set(&dom, 64 << 20, 7);
        ScriptedDirty {
            inner,
            dom,
            script: RefCell::new(script.iter().copied().collect()),
            ram,
            cleans: RefCell::new(Vec::new()),
            enables: RefCell::new(0),
            nr_gpfns_answer: None,
        }
    }
}

// Only log-dirty is scripted; the other calls go to the simulator (mapping
// hints and 2 MiB populates keep the trait defaults).
impl DomainCtl for ScriptedDirty {
    fn xen_version(&self) -> HvResult<(u16, u16)> {
        self.inner.xen_version()
    }
    fn domain_info(&self, domid: DomId) -> HvResult<DomainInfo> {
        self.inner.domain_info(domid)
    }
    fn nr_gpfns(&self, domid: DomId) -> HvResult<u64> {
        let n = self.inner.nr_gpfns(domid)?;
        Ok(self.nr_gpfns_answer.unwrap_or(n))
    }
}

impl LogDirty for ScriptedDirty {
    fn logdirty_enable(&self, domid: DomId) -> HvResult<()> {
        *self.enables.borrow_mut() += 1;
        self.inner.logdirty_enable(domid)
    }
    fn logdirty_off(&self, domid: DomId) -> HvResult<()> {
        self.inner.logdirty_off(domid)
    }
    fn logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
        final_pass: bool,
    ) -> HvResult<LogDirtyReport> {
        if !final_pass {
            let n = self.script.borrow_mut().pop_front().unwrap_or(0) as usize;
            // Rotate through the RAM list so consecutive rounds differ.
            let start = self.cleans.borrow().len() * 97;
            for i in 0..n {
                let pfn = self.ram[(start + i) % self.ram.len()];
                self.dom.mark_dirty(pfn);
            }
        }
        let r = self
            .inner
            .logdirty_clean(domid, bitmap, pages, final_pass)?;
        self.cleans.borrow_mut().push((r.dirty_count, final_pass));
        Ok(r)
    }
    fn logdirty_peek(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        pages: u64,
    ) -> HvResult<LogDirtyReport> {
        self.inner.logdirty_peek(domid, bitmap, pages)
    }
}

impl GuestMemory for ScriptedDirty {
    type ReadMapping<'a> = <SimHypervisor as GuestMemory>::ReadMapping<'a>;
    type WriteMapping<'a> = <SimHypervisor as GuestMemory>::WriteMapping<'a>;

    fn page_types(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        self.inner.page_types(domid, frames)
    }
    fn map_read(&self, domid: DomId, frames: &[u64]) -> HvResult<Self::ReadMapping<'_>> {
        self.inner.map_read(domid, frames)
    }
    fn map_write(&self, domid: DomId, frames: &[u64]) -> HvResult<Self::WriteMapping<'_>> {
        self.inner.map_write(domid, frames)
    }
    fn populate_physmap(&self, domid: DomId, frames: &mut [u64]) -> HvResult<()> {
        self.inner.populate_physmap(domid, frames)
    }
    fn clear_pages(&self, domid: DomId, gfn: u64, count: u64) -> HvResult<()> {
        self.inner.clear_pages(domid, gfn, count)
    }
}

// The PV role forwards to the simulator, as the other roles do.
impl crate::hv::X86Pv for ScriptedDirty {
    fn pv_address_size(&self, domid: DomId) -> HvResult<u32> {
        self.inner.pv_address_size(domid)
    }
    fn map_m2p(&self) -> HvResult<Box<dyn crate::hv::M2pTable + '_>> {
        self.inner.map_m2p()
    }
    fn compat_m2p_mfn0(&self) -> HvResult<u64> {
        self.inner.compat_m2p_mfn0()
    }
    fn vcpu_online(&self, domid: DomId, vcpu: u32) -> HvResult<bool> {
        self.inner.vcpu_online(domid, vcpu)
    }
    fn vcpu_context(
        &self,
        domid: DomId,
        vcpu: u32,
        width: crate::x86::pv::GuestWidth,
    ) -> HvResult<Vec<u8>> {
        self.inner.vcpu_context(domid, vcpu, width)
    }
    fn ext_vcpu_context(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<u8>> {
        self.inner.ext_vcpu_context(domid, vcpu)
    }
    fn vcpu_xsave(&self, domid: DomId, vcpu: u32) -> HvResult<Option<Vec<u8>>> {
        self.inner.vcpu_xsave(domid, vcpu)
    }
    fn vcpu_msrs(&self, domid: DomId, vcpu: u32) -> HvResult<Vec<crate::hv::MsrEntry>> {
        self.inner.vcpu_msrs(domid, vcpu)
    }
}

impl X86Hvm for ScriptedDirty {
    fn hvm_context(&self, domid: DomId) -> HvResult<Vec<u8>> {
        self.inner.hvm_context(domid)
    }
    fn set_hvm_context(&self, domid: DomId, blob: &[u8]) -> HvResult<()> {
        self.inner.set_hvm_context(domid, blob)
    }
    fn hvm_param(&self, domid: DomId, index: u32) -> HvResult<u64> {
        self.inner.hvm_param(domid, index)
    }
    fn set_hvm_param(&self, domid: DomId, index: u32, value: u64) -> HvResult<()> {
        self.inner.set_hvm_param(domid, index, value)
    }
}

impl X86Cpu for ScriptedDirty {
    fn tsc_info(&self, domid: DomId) -> HvResult<TscInfo> {
        self.inner.tsc_info(domid)
    }
    fn set_tsc_info(&self, domid: DomId, tsc: &TscInfo) -> HvResult<()> {
        self.inner.set_tsc_info(domid, tsc)
    }
    fn cpu_policy(&self, domid: DomId) -> HvResult<CpuPolicy> {
        self.inner.cpu_policy(domid)
    }
    fn set_cpu_policy(&self, domid: DomId, policy: &CpuPolicy) -> HvResult<()> {
        self.inner.set_cpu_policy(domid, policy)
    }
}

// The scheduler role forwards to the simulator.
impl crate::hv::CpuScheduler for ScriptedDirty {
    fn scheduler(&self) -> HvResult<crate::hv::SchedulerKind> {
        self.inner.scheduler()
    }
    fn sched_credit(
        &self,
        domid: DomId,
        kind: crate::hv::SchedulerKind,
    ) -> HvResult<crate::hv::SchedCredit> {
        self.inner.sched_credit(domid, kind)
    }
    fn set_sched_credit(
        &self,
        domid: DomId,
        kind: crate::hv::SchedulerKind,
        params: crate::hv::SchedCredit,
    ) -> HvResult<()> {
        self.inner.set_sched_credit(domid, kind, params)
    }
}

impl GrantTable for ScriptedDirty {
    fn seed_grant_table(&self, domid: DomId, hvm: bool, entries: &[GrantEntry]) -> HvResult<()> {
        self.inner.seed_grant_table(domid, hvm, entries)
    }
}

/// Runs `verify-stream-v2 -f libxc` on `path`; returns its output on
/// failure. The tool ships with Debian's xen-utils-4.17 (`make deps`).
pub(crate) fn verify_stream_v2(path: &Path) -> Result<(), String> {
    let tool = "/usr/lib/xen-4.17/bin/verify-stream-v2";
    let out = std::process::Command::new("python3")
        .arg(tool)
        .args(["-f", "libxc", "-i"])
        .arg(path)
        .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python")
        .output()
        .map_err(|e| format!("running {tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
