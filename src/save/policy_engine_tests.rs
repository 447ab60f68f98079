//! The downtime-targeted policy inside the save engine, over a temporary
//! xensim host, with a guest workload thread dirtying pages at a fixed rate
//! and a stream sink limited to a fixed bandwidth (a network link), so
//! that rounds last long enough for the workload's rate to shape them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xensim::GuestType;

use crate::hv::DomId;
use crate::log::Level;
use crate::save::testutil::{RecLog, TempHost, ToolstackSave};
use crate::save::{
    save_domain, PolicyDecision, PrecopySettings, SaveError, SaveParams, SaveSummary,
};

const GUEST: u64 = 64 << 20;
/// The link: 128 MiB/s, so the first pass over 64 MiB takes half a second.
const LINK: f64 = 128.0 * 1048576.0;

/// A sink that accepts bytes no faster than `rate` bytes per second, with
/// no credit for idle time (a link that is idle is not faster later).
struct Link {
    out: Vec<u8>,
    rate: f64,
    free_at: Option<Instant>,
}

impl Link {
    fn new(rate: f64) -> Self {
        Link {
            out: Vec::new(),
            rate,
            free_at: None,
        }
    }
}

impl std::io::Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let now = Instant::now();
        let start = self.free_at.map_or(now, |t| t.max(now));
        let done = start + Duration::from_secs_f64(buf.len() as f64 / self.rate);
        self.free_at = Some(done);
        self.out.extend_from_slice(buf);
        if let Some(wait) = done.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A guest thread that rewrites the pages of `ws`, in order and
/// cyclically, at `pages_per_ms` times its CPU share (its scheduler cap),
/// marking each dirty, while the guest runs.
struct Workload {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Workload {
    fn start(h: &TempHost, id: DomId, ws_bytes: u64, pages_per_ms: f64) -> Workload {
        let dom = h.domain(id);
        let ws = xensim::workload::working_set(&dom, ws_bytes, 3);
        assert_eq!(ws.len() as u64, ws_bytes / 4096);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last = Instant::now();
            let mut allowance = 0.0f64;
            let mut written = 0u64;
            let mut page = [0u8; 4096];
            while !flag.load(Ordering::SeqCst) {
                let now = Instant::now();
                let ran = now.duration_since(last).as_secs_f64();
                last = now;
                allowance += ran * 1e3 * pages_per_ms * dom.cpu_share();
                let due = allowance as u64;
                while written < due && !dom.guest_stopped() {
                    let pfn = ws[(written % ws.len() as u64) as usize];
                    page[..8].copy_from_slice(&written.to_le_bytes());
                    dom.write_frame(pfn, &page).expect("guest write");
                    dom.mark_dirty(pfn);
                    written += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            written
        });
        Workload {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().expect("workload thread")
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn live_with(precopy: PrecopySettings) -> SaveParams {
    SaveParams {
        live: true,
        precopy,
        ..SaveParams::default()
    }
}

/// A live save of a fresh 64 MiB guest over the link while the workload
/// rewrites `ws_bytes` at `pages_per_ms`.
fn migrate(
    tag: &str,
    precopy: PrecopySettings,
    ws_bytes: u64,
    pages_per_ms: f64,
) -> (Result<SaveSummary, SaveError>, RecLog, ToolstackSave, bool) {
    let h = TempHost::new(tag);
    let id = h.create(GuestType::Hvm, GUEST, 21, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    let log = RecLog::default();
    let mut link = Link::new(LINK);
    let work = Workload::start(&h, id, ws_bytes, pages_per_ms);
    let r = save_domain(&h.hv(), id, &mut link, &live_with(precopy), &mut cb, &log);
    let written = work.finish();
    assert!(written > 0, "the workload wrote nothing");
    let logdirty = h.domain(id).logdirty_enabled();
    (r, log, cb, logdirty)
}

fn lines_at(log: &RecLog, level: Level, needle: &str) -> Vec<String> {
    log.lines
        .borrow()
        .iter()
        .filter(|(l, m)| *l == level && m.contains(needle))
        .map(|(_, m)| m.clone())
        .collect()
}

#[test]
fn targeted_policy_stops_earlier_than_classic_on_a_hot_working_set() {
    // 1 MiB rewritten in full every 4 ms: after the first pass, every round
    // finds about the same 256 pages dirty. libxenguest's rule goes on for
    // 5 rounds; their stop-and-copy (1 MiB at 128 MiB/s, ~8 ms) fits 300 ms
    // as soon as the set stops shrinking.
    let (classic, _, _, _) = migrate("hot-classic", PrecopySettings::classic(), 1 << 20, 64.0);
    let classic = classic.expect("classic save");
    let (targeted, log, cb, logdirty) =
        migrate("hot-targeted", PrecopySettings::default(), 1 << 20, 64.0);
    let targeted = targeted.expect("targeted save");
    assert!(!logdirty);
    assert_eq!(cb.suspends, 1);
    assert_eq!(classic.precopy_iterations, 5, "{classic:?}");
    assert!(
        targeted.precopy_iterations < classic.precopy_iterations,
        "targeted {} rounds, classic {}: {:#?}",
        targeted.precopy_iterations,
        classic.precopy_iterations,
        log.lines.borrow()
    );
    assert!(
        targeted.pages_sent < classic.pages_sent,
        "targeted sent {} pages, classic {}",
        targeted.pages_sent,
        classic.pages_sent
    );
    // The stop-and-copy stays within the hot set.
    assert!(targeted.pages_sent_suspended <= 256, "{targeted:?}");
    // Each measured round and the final decision reached the log.
    let rounds = lines_at(&log, Level::Detail, "precopy round");
    assert_eq!(
        rounds.len() as u32,
        targeted.precopy_iterations - 1,
        "{rounds:#?}"
    );
    assert!(rounds.iter().all(|l| l.contains("MiB/s")), "{rounds:#?}");
    eprintln!("{}", rounds.join("\n"));
    let stop = lines_at(&log, Level::Info, "precopy: stop and copy");
    assert_eq!(stop.len(), 1, "{:#?}", log.lines.borrow());
    assert!(stop[0].contains("fits the target"), "{stop:?}");
    // The policy answered every call; the caller's (absent) one never ran.
    assert!(cb.policy_calls.is_empty());
    assert_eq!(
        targeted.policy_calls.last().map(|c| c.1),
        Some(PolicyDecision::StopAndCopy)
    );
}

#[test]
fn targeted_policy_respects_the_iteration_cap_on_a_non_converging_guest() {
    // A zero target never fits and stall detection is off: only the cap
    // ends pre-copy.
    let s = PrecopySettings {
        target_downtime: Duration::ZERO,
        max_iterations: 4,
        stall_rounds: 1000,
        ..PrecopySettings::default()
    };
    let (r, log, cb, logdirty) = migrate("cap", s, 1 << 20, 64.0);
    let r = r.expect("save");
    assert_eq!(r.precopy_iterations, 4, "{r:?}");
    assert_eq!(cb.suspends, 1);
    assert!(!logdirty);
    let warn = lines_at(&log, Level::Warn, "precopy: stop and copy after 4 rounds");
    assert_eq!(warn.len(), 1, "{:#?}", log.lines.borrow());
    assert!(warn[0].contains("iteration cap"), "{warn:?}");
}

#[test]
fn non_converging_guest_is_stopped_after_the_stall_rounds_by_default() {
    let s = PrecopySettings {
        target_downtime: Duration::ZERO,
        ..PrecopySettings::default()
    };
    let (r, log, cb, _) = migrate("stall", s, 1 << 20, 64.0);
    let r = r.expect("save");
    // First pass, one round that shrinks the set to the hot pages, then
    // (at least) two rounds without progress: the second decides to stop,
    // and its set is sent once more.
    assert!(r.precopy_iterations >= 4, "{r:?}");
    assert!(r.precopy_iterations < 30, "{r:?}");
    assert_eq!(cb.suspends, 1);
    assert_eq!(
        lines_at(&log, Level::Warn, "dirty set stopped shrinking").len(),
        1,
        "{:#?}",
        log.lines.borrow()
    );
}

#[test]
fn abort_if_not_converging_fails_the_save_without_suspending() {
    let s = PrecopySettings {
        target_downtime: Duration::ZERO,
        abort_if_not_converging: true,
        ..PrecopySettings::default()
    };
    let (r, log, cb, logdirty) = migrate("abort", s, 1 << 20, 64.0);
    let e = r.expect_err("not converging");
    assert!(matches!(e, SaveError::NotConverging(_)), "{e}");
    assert_eq!(e.errno(), libc::ECANCELED);
    let msg = e.to_string();
    assert!(msg.contains("not converging"), "{msg}");
    assert!(msg.contains("target 0 ms"), "{msg}");
    assert_eq!(cb.suspends, 0, "the guest was never stopped");
    assert!(!logdirty, "log-dirty left on");
    assert_eq!(cb.qemu_logdirty, vec![true, false]);
    assert!(
        log.errors().iter().any(|m| m.contains("not converging")),
        "{:#?}",
        log.lines.borrow()
    );
}

#[test]
fn a_callers_policy_overrides_the_settings() {
    // Settings that would abort at once are ignored when the caller
    // decides: its STOP_AND_COPY at the first call is followed exactly.
    let s = PrecopySettings {
        target_downtime: Duration::ZERO,
        max_iterations: 1,
        abort_if_not_converging: true,
        ..PrecopySettings::default()
    };
    let h = TempHost::new("caller-policy");
    let id = h.create(GuestType::Hvm, 16 << 20, 22, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut n = 0;
    cb.policy = Some(Box::new(move |_| {
        n += 1;
        if n < 4 {
            PolicyDecision::Continue
        } else {
            PolicyDecision::StopAndCopy
        }
    }));
    let mut out = Vec::new();
    let r = save_domain(
        &h.hv(),
        id,
        &mut out,
        &live_with(s),
        &mut cb,
        &RecLog::default(),
    )
    .expect("save");
    assert_eq!(cb.policy_calls.len(), 4);
    assert_eq!(r.policy_calls.len(), 4);
}

#[test]
fn a_guest_that_out_dirties_the_link_converges_only_with_auto_converge() {
    // 48 MiB rewritten at about 390 MiB/s, three times the link: every
    // round finds almost all of it dirty again, and its stop-and-copy
    // (48 MiB at 128 MiB/s, ~375 ms) never fits 300 ms. Capping the guest
    // brings its rate under the link.
    let stalled = PrecopySettings::default();
    let (plain, _, _, _) = migrate("out-dirty-plain", stalled, 48 << 20, 100.0);
    let plain = plain.expect("save without auto-converge");
    let ac = PrecopySettings {
        auto_converge: crate::save::AutoConverge::on(),
        ..PrecopySettings::default()
    };
    let h = TempHost::new("out-dirty-ac");
    let id = h.create(GuestType::Hvm, GUEST, 21, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    let log = RecLog::default();
    let mut link = Link::new(LINK);
    let work = Workload::start(&h, id, 48 << 20, 100.0);
    let r = save_domain(&h.hv(), id, &mut link, &live_with(ac), &mut cb, &log);
    work.finish();
    let throttled = r.unwrap_or_else(|e| panic!("save: {e}: {:#?}", log.lines.borrow()));
    eprintln!(
        "without: {} rounds, {} pages stopped; with: {} rounds, {} pages stopped, shares {:?}",
        plain.precopy_iterations,
        plain.pages_sent_suspended,
        throttled.precopy_iterations,
        throttled.pages_sent_suspended,
        throttled.throttle_shares
    );
    assert!(plain.throttle_shares.is_empty());
    assert!(!throttled.throttle_shares.is_empty(), "{throttled:?}");
    assert!(
        throttled.pages_sent_suspended * 2 < plain.pages_sent_suspended,
        "with auto-converge {} pages left for the stop-and-copy, without {}: {:#?}",
        throttled.pages_sent_suspended,
        plain.pages_sent_suspended,
        log.lines.borrow()
    );
    // The cap is back, and the guest ran throttled only during the save.
    assert_eq!(h.domain(id).sched_params(), xensim::SchedParams::default());
    assert!(
        throttled.throttled_time < throttled.total_time,
        "{throttled:?}"
    );
    let history = h.domain(id).sched_history().unwrap();
    assert_eq!(history.last().map(|e| e.params.cap), Some(0), "{history:?}");
}
