//! The whole save engine against a simulated domain whose hypercall answers
//! the input perturbs (`xcmig_fuzz::fuzzed_hv`).
//!
//! Input: three header bytes, then rules of 8 bytes (at most 32; see
//! `fuzzed_hv::Rule`).
//! - byte 0 % 6: the guest: HVM, PVH, PV 64-bit (linear p2m), PV 64-bit
//!   (p2m tree), PV 32-bit (linear), PV 32-bit (tree);
//! - byte 1 % 3: non-live, live, Remus; bit 2: debug (the verification
//!   pass of a plain live save); bit 3: the caller gives a precopy policy
//!   (else libxenguest's classic one applies: xcmig's default measures
//!   time, which a fuzzer cannot replay); bits 4 and 5 both set: an HVM
//!   caller without `switch_qemu_logdirty`;
//! - byte 2: Remus checkpoints before `checkpoint` stops (% 4), and pages
//!   the guest rewrites after each `postcopy` (>> 2, at most 63).
//!
//! Checked on every input, beyond "no panic": the save is Ok, or fails
//! with a non-zero errno and a message; when Ok, no injected failure of a
//! call whose failure matters was swallowed, and the stream passes the
//! codec's reader to its end (END, or EOF after a CHECKPOINT for Remus);
//! afterwards nothing is mapped (`xensim::live_mappings`), log-dirty is off,
//! and the domain is running, or shut down and resumable (it is resumed),
//! with the digest it had before the save.
//!
//! Cost: one host under /dev/shm per process, six small domains (1-2 MiB)
//! made once and reused; a domain is made anew only when a run that
//! rewrote guest memory left it unable to resume or with another digest
//! (the guest's own suspend code reads that memory).
#![no_main]

use std::cell::RefCell;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use xcmig::hv::sim::SimHypervisor;
use xcmig::log::NullLog;
use xcmig::save::{
    save_domain, simple_precopy_policy, PolicyChoice, PolicyDecision, PrecopySettings,
    PrecopyStats, SaveCallbacks, SaveError, SaveHook, SaveParams,
};
use xcmig::stream::{Checkpoints, GrammarOptions, Reader, ReaderOptions, StreamEnd};
use xcmig::toolstack::{CallbackFailed, Next, StreamType};
use xcmig_fuzz::fuzzed_hv::{wide, Call, FuzzedHv, Plan, Rule};
use xensim::{Domain, DomainConfig, Fill, GuestType, Host, P2mLayout, SHUTDOWN_SUSPEND};

/// Most rules read from one input.
const MAX_RULES: usize = 32;

/// Most precopy policy calls answered as the input says; later ones stop
/// and copy, so that a policy that always continues cannot loop forever
/// (a caller's policy is followed exactly, by design).
const MAX_POLICY_CALLS: u32 = 12;

/// The guests, by header byte 0.
const GUESTS: [(GuestType, u32, P2mLayout); 6] = [
    (GuestType::Hvm, 64, P2mLayout::Linear),
    (GuestType::Pvh, 64, P2mLayout::Linear),
    (GuestType::Pv, 64, P2mLayout::Linear),
    (GuestType::Pv, 64, P2mLayout::Tree),
    (GuestType::Pv, 32, P2mLayout::Linear),
    (GuestType::Pv, 32, P2mLayout::Tree),
];

/// One reusable domain and what the checks compare against.
struct Guest {
    id: u32,
    digest: xensim::DigestReport,
    /// Frames the guest may write (MFNs for PV), and those that are page
    /// tables, for `Call::GuestWrite`.
    frames: Vec<u64>,
    tables: Vec<u64>,
}

struct World {
    host: Host,
    hv: SimHypervisor,
    guests: Vec<Option<Guest>>,
}

impl World {
    fn new() -> World {
        let dir = host_dir();
        let _ = std::fs::remove_dir_all(&dir);
        let host = Host::open(&dir).expect("open the xensim host");
        let hv = SimHypervisor::new(Host::open(&dir).expect("reopen the xensim host"));
        World {
            host,
            hv,
            guests: (0..GUESTS.len()).map(|_| None).collect(),
        }
    }

    /// Makes the domain of `kind` if there is none.
    fn guest(&mut self, kind: usize) {
        if self.guests[kind].is_none() {
            self.guests[kind] = Some(self.create(kind));
        }
    }

    fn create(&self, kind: usize) -> Guest {
        let (guest_type, address_size, p2m_layout) = GUESTS[kind];
        let id = self
            .host
            .create_domain(&DomainConfig {
                guest_type,
                memory_bytes: 2 << 20,
                vcpus: 2,
                fill: Fill::Mixed,
                seed: kind as u64,
                empty: false,
                address_size,
                p2m_layout,
            })
            .expect("create a domain");
        let dom = self.host.domain(id).expect("open the new domain");
        // A PV guest's suspend leaves the start_info MFN in vCPU 0's rdx,
        // a cancelled one too (as Linux's suspend hypercall argument does):
        // suspend and resume once, so every later digest compares alike.
        dom.shutdown(SHUTDOWN_SUSPEND)
            .expect("suspend a new domain");
        dom.resume().expect("resume a new domain");
        let digest = dom.digest_report().expect("digest");
        let mut frames = Vec::new();
        for pfn in 0..=dom.max_gpfn() {
            let frame = if dom.is_pv() {
                dom.pfn_to_mfn(pfn)
            } else {
                dom.is_populated(pfn).then_some(pfn)
            };
            frames.extend(frame);
        }
        let mut tables = Vec::new();
        for chunk in frames.chunks(1024) {
            let mut types = chunk.to_vec();
            dom.page_types(&mut types).expect("page types");
            for (&f, &t) in chunk.iter().zip(&types) {
                if (1..=4).contains(&((t >> 28) & 7)) {
                    tables.push(f);
                }
            }
        }
        Guest {
            id,
            digest,
            frames,
            tables,
        }
    }

    fn forget(&mut self, kind: usize) {
        if let Some(g) = self.guests[kind].take() {
            self.host.destroy_domain(g.id).expect("destroy a domain");
            // The backend keeps every domain it opened (its files mapped);
            // a new one drops the destroyed domain's.
            self.hv =
                SimHypervisor::new(Host::open(self.host.dir()).expect("reopen the xensim host"));
        }
    }
}

/// This process's host directory, in memory; those of processes that are
/// gone are removed first (libFuzzer ends a process with `exit`).
fn host_dir() -> PathBuf {
    let base = PathBuf::from("/dev/shm");
    let base = if base.is_dir() {
        base
    } else {
        std::env::temp_dir()
    };
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("xcmig-fuzz-save-") {
                if !PathBuf::from(format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    base.join(format!("xcmig-fuzz-save-{}", std::process::id()))
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// The toolstack side, answering from the plan.
struct Callbacks<'a> {
    dom: &'a Domain,
    plan: &'a Plan,
    has_qemu: bool,
    has_policy: bool,
    checkpoints_left: u32,
    dirty_on_resume: usize,
    ram: &'a [u64],
    /// A reason other than suspend that `suspend` shut the domain down with.
    odd_shutdown: bool,
    /// Injected callback failures the save must not swallow.
    must_fail: Vec<&'static str>,
}

impl SaveCallbacks for Callbacks<'_> {
    fn has(&self, hook: SaveHook) -> bool {
        match hook {
            SaveHook::PrecopyPolicy => self.has_policy,
            SaveHook::SwitchQemuLogdirty => self.has_qemu,
            SaveHook::Postcopy | SaveHook::Checkpoint => true,
            SaveHook::WaitCheckpoint => false,
        }
    }

    /// Actions: 0 fails, 1 succeeds without suspending, 2 shuts the domain
    /// down for reason `v % 6`, 3 suspends and then reports failure.
    fn suspend(&mut self) -> Result<(), CallbackFailed> {
        let rule = self.plan.next(Call::Suspend);
        let fail = CallbackFailed { code: -1 };
        match rule.map(|r| (r.action % 4, r.v)) {
            Some((0, _)) => {
                self.must_fail.push("suspend");
                Err(fail)
            }
            Some((1, _)) => Ok(()),
            Some((2, v)) => {
                let reason = v % 6;
                self.odd_shutdown |= reason != SHUTDOWN_SUSPEND;
                self.dom.shutdown(reason).map_err(|_| fail)
            }
            Some((_, _)) => {
                let _ = self.dom.shutdown(SHUTDOWN_SUSPEND);
                self.must_fail.push("suspend");
                Err(fail)
            }
            // The guest's own suspend code can fail on memory a rule rewrote.
            None => self.dom.shutdown(SHUTDOWN_SUSPEND).map_err(|_| fail),
        }
    }

    /// Actions: 1 abort, 2 continue, 3 stop and copy, others the classic
    /// policy.
    fn precopy_policy(&mut self, stats: PrecopyStats) -> PolicyDecision {
        let rule = self.plan.next(Call::PrecopyPolicy);
        if self.plan.count(Call::PrecopyPolicy) > MAX_POLICY_CALLS {
            return PolicyDecision::StopAndCopy;
        }
        match rule.map(|r| r.action % 4) {
            Some(1) => PolicyDecision::Abort,
            Some(2) => PolicyDecision::Continue,
            Some(3) => PolicyDecision::StopAndCopy,
            _ => simple_precopy_policy(stats),
        }
    }

    /// Any rule stops; otherwise the guest runs again and rewrites some
    /// pages with what they hold (dirty, same digest).
    fn postcopy(&mut self) -> Next {
        if let Some(r) = self.plan.next(Call::Postcopy) {
            return Next::Stop { code: r.v as i32 };
        }
        if self.dom.resume().is_err() {
            return Next::Stop { code: -1 };
        }
        let mut page = vec![0u8; 4096];
        for &frame in self.ram.iter().take(self.dirty_on_resume) {
            if self.dom.read_frame(frame, &mut page).is_ok() {
                let _ = self.dom.write_frame(frame, &page);
                let pfn = if self.dom.is_pv() {
                    self.dom.mfn_to_pfn(frame)
                } else {
                    Some(frame)
                };
                if let Some(pfn) = pfn {
                    self.dom.mark_dirty(pfn);
                }
            }
        }
        Next::Continue
    }

    /// Any rule stops; otherwise continues for the header's count.
    fn checkpoint(&mut self) -> Next {
        if let Some(r) = self.plan.next(Call::Checkpoint) {
            return Next::Stop { code: r.v as i32 };
        }
        if self.checkpoints_left == 0 {
            return Next::Stop { code: 0 };
        }
        self.checkpoints_left -= 1;
        Next::Continue
    }

    /// Any rule fails the call.
    fn switch_qemu_logdirty(&mut self, _domid: u32, enable: bool) -> Result<(), CallbackFailed> {
        if self.plan.next(Call::QemuLogdirty).is_some() {
            if enable {
                self.must_fail.push("switch_qemu_logdirty");
            }
            return Err(CallbackFailed { code: -1 });
        }
        Ok(())
    }
}

/// Applies the plan's guest writes; returns the frames' former contents.
fn guest_writes(dom: &Domain, g: &Guest, plan: &Plan) -> Vec<(u64, Vec<u8>)> {
    let mut saved: Vec<(u64, Vec<u8>)> = Vec::new();
    for r in plan.rules().iter().filter(|r| r.call == Call::GuestWrite) {
        let list = if r.action & 1 == 1 && !g.tables.is_empty() {
            &g.tables
        } else {
            &g.frames
        };
        let index = usize::from(r.nth) | (usize::from((r.action >> 1) & 0x3f) << 8);
        let frame = list[index % list.len()];
        let offset = usize::from(r.a) * 16 + usize::from(r.action >> 7) * 8;
        let mut page = vec![0u8; 4096];
        dom.read_frame(frame, &mut page)
            .expect("read a guest frame");
        if !saved.iter().any(|(f, _)| *f == frame) {
            saved.push((frame, page.clone()));
        }
        page[offset..offset + 8].copy_from_slice(&wide(r.v).to_le_bytes());
        dom.write_frame(frame, &page).expect("write a guest frame");
    }
    saved
}

/// Failures the engine may get over, as libxenguest does: log-dirty off
/// (ignored at cleanup), and a log-dirty enable that the next enable call
/// (after switching off, for log-dirty already on for VRAM tracking)
/// retried successfully.
fn may_be_ignored(plan: &Plan, fired: &[(Rule, u32)], r: &Rule, n: u32) -> bool {
    match r.call {
        Call::LogdirtyOff => true,
        Call::LogdirtyEnable => {
            plan.count(Call::LogdirtyEnable) > n + 1
                && !fired
                    .iter()
                    .any(|(f, m)| f.call == Call::LogdirtyEnable && *m == n + 1)
        }
        _ => false,
    }
}

fn run(data: &[u8], world: &mut World) {
    if data.len() < 3 {
        return;
    }
    let kind = usize::from(data[0]) % GUESTS.len();
    let mode = data[1] % 3;
    let plan = Plan::parse(&data[3..], MAX_RULES);
    world.guest(kind);
    let (id, guest_digest, writes, ram) = {
        let g = world.guests[kind].as_ref().expect("made above");
        let dom = world_domain(&world.host, g.id);
        let writes = guest_writes(&dom, g, &plan);
        (g.id, g.digest.clone(), writes, g.frames.clone())
    };
    let dom = world_domain(&world.host, id);
    let hvm = GUESTS[kind].0 != GuestType::Pv;
    let params = SaveParams {
        live: mode >= 1,
        debug: data[1] & 4 != 0,
        stream_type: if mode == 2 {
            StreamType::Remus
        } else {
            StreamType::Plain
        },
        precopy: PrecopySettings {
            policy: PolicyChoice::Classic,
            ..PrecopySettings::default()
        },
        // Standard page data: the hypercall answers are what is fuzzed
        // here; the compressed record has the reader and restore targets.
        compression: Default::default(),
    };
    let mut cb = Callbacks {
        dom: &dom,
        plan: &plan,
        has_qemu: hvm && data[1] & 0x30 != 0x30,
        has_policy: data[1] & 8 != 0,
        checkpoints_left: u32::from(data[2] % 4),
        dirty_on_resume: usize::from(data[2] >> 2),
        ram: &ram,
        odd_shutdown: false,
        must_fail: Vec::new(),
    };
    let hv = FuzzedHv::new(&world.hv, &plan);
    let mut out = Vec::new();
    let res = save_domain(&hv, id, &mut out, &params, &mut cb, &NullLog);
    let must_fail = std::mem::take(&mut cb.must_fail);
    drop(cb);

    // Nothing mapped, log-dirty off.
    assert_eq!(xensim::live_mappings(), 0, "mappings left after the save");
    assert!(!dom.logdirty_enabled(), "log-dirty left on after the save");

    match &res {
        Ok(_) => {
            let fired = plan.fired();
            let swallowed: Vec<_> = fired
                .iter()
                .filter(|(r, n)| {
                    r.action == 0 && is_hv_call(r.call) && !may_be_ignored(&plan, &fired, r, *n)
                })
                .collect();
            assert!(
                swallowed.is_empty() && must_fail.is_empty(),
                "the save succeeded over injected failures: {swallowed:?} {must_fail:?}"
            );
            check_stream(&out, params.stream_type);
        }
        Err(e) => check_error(e),
    }

    // The domain: running, or shut down and resumable, with its digest.
    let info = dom.info().expect("domain info");
    assert!(!info.dying, "the save left the domain dying");
    assert_eq!(info.pause_count, 0, "the save left the domain paused");
    let resumed = if info.shutdown {
        assert!(
            info.shutdown_reason == SHUTDOWN_SUSPEND || cb_odd(&plan),
            "the domain is shut down for reason {}",
            info.shutdown_reason
        );
        dom.resume()
    } else {
        Ok(())
    };
    for (frame, page) in writes.iter().rev() {
        dom.write_frame(*frame, page)
            .expect("put a guest frame back");
    }
    let after = dom.digest_report().expect("digest");
    if resumed.is_err() || after.total != guest_digest.total {
        let changed: Vec<_> = after
            .components
            .iter()
            .zip(&guest_digest.components)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| &a.0)
            .collect();
        // A rewritten kernel page can break the guest's own suspend and
        // resume code; the engine is not to blame for that, but the
        // domain cannot be reused.
        assert!(
            !writes.is_empty(),
            "the domain after the save: resume {resumed:?}, digest changed in {changed:?}"
        );
        world.forget(kind);
    }
}

/// Whether a suspend rule shut the domain down for another reason.
fn cb_odd(plan: &Plan) -> bool {
    plan.fired()
        .iter()
        .any(|(r, _)| r.call == Call::Suspend && r.action % 4 == 2 && r.v % 6 != SHUTDOWN_SUSPEND)
}

fn is_hv_call(c: Call) -> bool {
    !matches!(
        c,
        Call::Suspend
            | Call::QemuLogdirty
            | Call::Checkpoint
            | Call::Postcopy
            | Call::PrecopyPolicy
            | Call::GuestWrite
    )
}

fn world_domain(host: &Host, id: u32) -> Domain {
    host.domain(id).expect("open the domain")
}

/// A failed save reports an errno and says something.
fn check_error(e: &SaveError) {
    assert!(e.errno() > 0, "error without an errno: {e:?}");
    assert!(!e.to_string().trim().is_empty(), "error without a message");
}

/// The stream the save wrote is one the codec reads to its end.
fn check_stream(out: &[u8], stream_type: StreamType) {
    let checkpointed = stream_type.is_checkpointed();
    let opts = ReaderOptions {
        grammar: GrammarOptions {
            checkpoints: if checkpointed {
                Checkpoints::Accept
            } else {
                Checkpoints::Reject
            },
            ..GrammarOptions::default()
        },
        ..ReaderOptions::default()
    };
    let mut r = Reader::with_options(out, opts)
        .unwrap_or_else(|e| panic!("the stream's headers do not read: {e}"));
    let end = r
        .verify_to_end()
        .unwrap_or_else(|e| panic!("the stream written does not read: {e}"));
    let want = if checkpointed {
        StreamEnd::EofAfterCheckpoint
    } else {
        StreamEnd::End
    };
    assert_eq!(end, want, "the stream ends wrongly");
    assert_eq!(r.offset(), out.len() as u64, "bytes after the stream's end");
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        let world = w.get_or_insert_with(World::new);
        run(data, world);
    });
});
