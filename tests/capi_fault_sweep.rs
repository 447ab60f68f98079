//! The fault sweep (issue 10, item 4): every call a save or a restore makes
//! through the simulated Xen libraries, failed in turn, through the C entry
//! points with libxcmig preloaded (`xg-save`, `xg-restore`).
//!
//! For each scenario (non-live, live and Remus saves, and a restore, of an
//! HVM, a PVH, a 64-bit and a 32-bit PV guest) one run counts the fault
//! points the call checks (`$XENSIM_FAULT_TRACE`, between the harness's
//! markers), then one run per (fault point, call index) pair fails that call
//! (`$XENSIM_FAULTS=NAME:EIO:N`). Every run must return -1 with an errno,
//! log exactly one error line naming the failed call, leave log-dirty off,
//! leave the source running or suspended and resumable with its digest
//! unchanged, and leave no descriptor or foreign mapping behind (the
//! harness's `XG_HARNESS_REPORT=1` line), within [`RUN_DEADLINE`]. A run
//! that succeeds instead must be one of the [`SURVIVABLE`] cases.
//!
//! `make test` sweeps each fault point at its first, second and last call
//! index; `XCMIG_FAULT_SWEEP=full` (`make fault-sweep`) sweeps every pair,
//! and `XCMIG_FAULT_SWEEP_RESULTS=PATH` writes the tables there
//! (`bench/results/fault-sweep.md`).

mod capi_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use capi_support::host::Host;
use capi_support::{describe, run};

/// Small guests: the calls are the same in kind, and a sweep of a few
/// thousand runs stays short.
const MEMORY: &str = "16M";
/// Remus checkpoints per save.
const CHECKPOINTS: &str = "2";
/// Longest a single run may take before it counts as a hang.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Calls whose failure libxcmig survives on purpose, as libxenguest does:
/// (fault point, scenario mode, text the run's log must show, why). A run
/// that succeeds with any other call failed is a failure of the sweep.
const SURVIVABLE: &[(&str, &str, &str, &str)] = &[
    (
        "xc_domctl",
        "remus",
        "xg-save: xc_domctl(resumedomain) failed",
        "the harness's postcopy callback resumes the guest with \
         XEN_DOMCTL_resumedomain; when that fails postcopy returns 0, which \
         xenguest.h and libxenguest read as \"stop checkpointing\" (rc <= 0 \
         ends the loop, xc_domain_save returns 0); the guest is left \
         suspended, and the sweep resumes it and checks its digest",
    ),
    (
        "xc_clear_domain_pages",
        "restore",
        "Restore",
        "zeroing an HVM magic page (store, console, ioreqs) whose old \
         contents the backends overwrite anyway; libxenguest ignores this \
         call's result (xc_sr_restore_x86_hvm.c), and xcmig logs it at \
         debug level",
    ),
    (
        "xc_shadow_control",
        "save",
        "Saving domain",
        "a non-live save never enables log-dirty; the OFF at its cleanup is \
         the belt-and-braces call libxenguest makes too, retried once \
         (a failure of the retry fails the save), and the sweep checks \
         log-dirty is off after every run",
    ),
    (
        "xc_shadow_control",
        "live",
        "Saving domain",
        "the OFF at the end of a live save: xcmig retries it once (the \
         fault fails only one call) and fails the save if the retry fails \
         too (save::tests::a_live_save_that_cannot_switch_log_dirty_off_\
         fails_naming_the_call); the sweep checks log-dirty is off",
    ),
    (
        "xc_shadow_control",
        "remus",
        "Saving domain",
        "as for a live save: the OFF at the end is retried once",
    ),
];

/// Fault points not swept, because Xen's call cannot fail or its failure
/// leaves nothing for the caller to do (fault point, why). They are still
/// counted in the results.
const NOT_SWEPT: &[(&str, &str)] = &[
    (
        "xc__hypercall_bounce_post",
        "returns void in libxenctrl: it copies a bounce buffer back and \
         frees it, and cannot fail; the shim's fault point would only skip \
         the copy, which models no failure of Xen's",
    ),
    (
        "xc__hypercall_buffer_free",
        "returns void in libxenctrl (a free)",
    ),
    (
        "xc__hypercall_buffer_free_pages",
        "returns void in libxenctrl (a free)",
    ),
    (
        "xenforeignmemory_unmap",
        "a munmap of a region the caller mapped: it fails only for a bad \
         address, and a caller can do nothing but go on (libxenguest \
         ignores its result); the shim's fault point leaves the region \
         mapped, a leak of the fault's own making",
    ),
    (
        "xenforeignmemory_unmap_resource",
        "as xenforeignmemory_unmap, for the grant table's resource mapping",
    ),
];

/// Names an error line may use for a failed call other than the call's
/// own: (fault point, accepted name, why).
const ALIASES: &[(&str, &str, &str)] = &[
    (
        "xc_domctl",
        "XEN_DOMCTL_",
        "xcmig names the domctl it issued through xc_domctl",
    ),
    (
        "xc_memory_op",
        "XENMEM_",
        "xcmig names the memory op it issued through xc_memory_op",
    ),
    (
        "xc__hypercall_buffer_alloc",
        "XEN_DOMCTL_",
        "the buffer of a domctl xcmig issues, named by the domctl",
    ),
    (
        "xc__hypercall_buffer_alloc_pages",
        "xc_hypercall_buffer_alloc_pages",
        "xenctrl.h's name for it (the macro over the double-underscore call)",
    ),
    (
        "xc_domain_shutdown",
        "suspend()",
        "the harness's suspend callback makes this call; xcmig sees the \
         callback fail and names it",
    ),
];

/// libxcmig calls libxenguest's CPU policy functions (`xc_cpu_policy_*`,
/// `xc_set_domain_cpu_policy`, part of xenguest.h), which make hypercalls
/// of their own: a fault in one of those is named by the libxenguest
/// function that failed.
const POLICY_CALLS: &[&str] = &[
    "xc_cpu_policy_",
    "xc_set_domain_cpu_policy",
    "xc_get_cpu_policy",
];
const POLICY_INNER: &[&str] = &[
    "xencall1",
    "xc__hypercall_bounce_pre",
    "xc__hypercall_buffer_alloc",
];

/// Error lines Debian's libxenguest itself logs (PERROR) inside the CPU
/// policy functions above, before xcmig's own "... failed" line: not
/// xcmig's, so not counted.
const LIBXENGUEST_LINES: &[&str] = &[
    "xc: error: Failed to obtain domain ",
    "xc: error: Could not bounce buffer for ",
    "xc: error: Failed to get ",
    "xc: error: Failed to set ",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Save,
    Live,
    Remus,
    Restore,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Save => "save",
            Mode::Live => "live",
            Mode::Remus => "remus",
            Mode::Restore => "restore",
        }
    }
}

/// (name, `xensim domain create` arguments).
const GUESTS: &[(&str, &[&str])] = &[
    ("hvm", &["--type", "hvm"]),
    ("pvh", &["--type", "pvh"]),
    ("pv64", &["--type", "pv", "--address-size", "64"]),
    ("pv32", &["--type", "pv", "--address-size", "32"]),
];

/// One guest type's host: a source domain and, for restores, its stream.
struct Setup {
    h: Host,
    guest: &'static str,
    xensim: xensim::Host,
    src: u32,
    digest: String,
}

impl Setup {
    fn new(guest: &'static str, args: &[&str], mode: Mode) -> Setup {
        let h = Host::new(&format!("fault-sweep-{guest}-{}", mode.name()));
        let mut a = vec!["create"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--memory", MEMORY, "--fill", "mixed", "--seed", "11"]);
        let src: u32 = Host::last_line(&h.xensim(&a)).parse().expect("domid");
        if args.contains(&"pv") {
            // xensim's PV guest reaches the state that its suspend and
            // resume keep only after its first suspend (its kernel's rings
            // are rewritten then): the reference is taken from there.
            h.xensim(&["shutdown", &src.to_string()]);
            h.xensim(&["resume", &src.to_string()]);
        }
        let xensim = xensim::Host::open(&h.path()).expect("open the host");
        let digest = xensim
            .domain(src)
            .expect("source")
            .digest()
            .expect("digest");
        Setup {
            h,
            guest,
            xensim,
            src,
            digest,
        }
    }

    fn empty_target(&self) -> u32 {
        let ty = if self.guest.starts_with("pv") && self.guest != "pvh" {
            "pv"
        } else {
            self.guest
        };
        let out = self
            .h
            .xensim(&["create", "--type", ty, "--memory", MEMORY, "--empty"]);
        Host::last_line(&out).parse().expect("domid")
    }

    /// The harness command of one run of `mode` (target domain `dst` for
    /// a restore).
    fn command(&self, mode: Mode, img: &Path, dst: u32) -> Command {
        let mut c = match mode {
            Mode::Restore => {
                let mut c = self.h.harness("xg-restore", true);
                c.arg(dst.to_string());
                c
            }
            _ => {
                let mut c = self.h.harness("xg-save", true);
                match mode {
                    Mode::Live => {
                        c.arg("--live");
                    }
                    Mode::Remus => {
                        c.args(["--remus", CHECKPOINTS]);
                    }
                    _ => {}
                }
                c.arg(self.src.to_string());
                c
            }
        };
        c.arg(img).env("XG_HARNESS_REPORT", "1");
        c
    }

    /// Puts the source back as it was before a save: resumed if suspended.
    /// Errors say what is wrong with it.
    fn check_source(&self) -> Result<(), String> {
        let d = self
            .xensim
            .domain(self.src)
            .map_err(|e| format!("source: {e}"))?;
        let info = d.info().map_err(|e| format!("source info: {e}"))?;
        if d.logdirty_enabled() {
            return Err("log-dirty left on".into());
        }
        if info.paused {
            return Err("source left paused".into());
        }
        if info.shutdown {
            if info.shutdown_reason != xensim::SHUTDOWN_SUSPEND {
                return Err(format!("source shut down ({})", info.shutdown_reason));
            }
            d.resume()
                .map_err(|e| format!("source not resumable: {e}"))?;
        }
        let now = d.digest().map_err(|e| format!("digest: {e}"))?;
        if now != self.digest {
            return Err(format!("source digest {now} != {} before", self.digest));
        }
        Ok(())
    }
}

/// For each fault point the call checked, its call indices (per process,
/// counting the harness's own calls before the call too).
fn in_call_indices(trace: &str, prog: &str) -> BTreeMap<String, Vec<u64>> {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut inside = false;
    for l in trace.lines() {
        if l == format!("# {prog} call begins") {
            inside = true;
        } else if l == format!("# {prog} call ends") {
            inside = false;
        } else if !l.starts_with('#') {
            let n = seen.entry(l.to_string()).or_default();
            *n += 1;
            if inside {
                out.entry(l.to_string()).or_default().push(*n);
            }
        }
    }
    out
}

/// The (fault point, index) pairs to sweep: all, or the first, second and
/// last index of each point.
fn pairs(indices: &BTreeMap<String, Vec<u64>>, full: bool) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (name, idx) in indices {
        let mut pick: Vec<u64> = if full {
            idx.clone()
        } else {
            let mut p: Vec<u64> = idx.iter().take(2).copied().collect();
            p.extend(idx.last());
            p
        };
        pick.dedup();
        out.extend(pick.into_iter().map(|n| (name.clone(), n)));
    }
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `key=value` of the harness's report line.
fn report_field(err: &str, prog: &str, key: &str) -> Option<String> {
    let line = err
        .lines()
        .find(|l| l.starts_with(&format!("{prog}: report ")))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

/// The checks every run must pass that do not depend on its outcome.
fn check_leaks(err: &str, prog: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let f = |k| report_field(err, prog, k);
    match (f("fds_start"), f("fds_closed")) {
        (Some(a), Some(b)) if a == b => {}
        (a, b) => bad.push(format!("descriptors: {a:?} before, {b:?} after")),
    }
    for k in ["live_mappings", "guest_maps"] {
        if f(k).as_deref() != Some("0") {
            bad.push(format!("{k}={:?} at return", f(k)));
        }
    }
    bad
}

/// xcmig's xentoollog error lines of a run.
fn error_lines(err: &str) -> Vec<&str> {
    err.lines()
        .filter(|l| l.contains(": error: "))
        .filter(|l| !LIBXENGUEST_LINES.iter().any(|p| l.starts_with(p)))
        .collect()
}

/// Whether `line` names the failed call `name`.
fn names_call(line: &str, name: &str) -> bool {
    line.contains(name)
        || ALIASES
            .iter()
            .any(|(n, alias, _)| *n == name && line.contains(alias))
        || (POLICY_INNER.contains(&name) && POLICY_CALLS.iter().any(|c| line.contains(c)))
}

/// What one faulted run did wrong (empty: nothing).
fn check_run(
    s: &Setup,
    mode: Mode,
    name: &str,
    out: &Output,
    elapsed: Duration,
    dst: u32,
) -> Vec<String> {
    let prog = if mode == Mode::Restore {
        "xg-restore"
    } else {
        "xg-save"
    };
    let err = stderr(out);
    let mut bad = check_leaks(&err, prog);
    if elapsed > RUN_DEADLINE {
        bad.push(format!("took {elapsed:?}"));
    }
    let survived = out.status.code() == Some(0);
    if survived {
        let allowed = SURVIVABLE
            .iter()
            .any(|(n, m, shows, _)| *n == name && *m == mode.name() && err.contains(shows));
        if !allowed {
            bad.push("succeeded with the call failed (not a listed survivable case)".into());
        }
    } else {
        if out.status.code() != Some(1) {
            bad.push(format!("exit status {}", out.status));
        }
        let result = err
            .lines()
            .find(|l| l.starts_with(&format!("{prog}: result rc=-1 errno=")));
        match result {
            Some(l) if !l.contains("errno=0 ") => {}
            _ => bad.push("no result rc=-1 with an errno".into()),
        }
        let errors = error_lines(&err);
        if errors.len() != 1 {
            bad.push(format!("{} error lines: {errors:#?}", errors.len()));
        } else if !names_call(errors[0], name) {
            bad.push(format!("error line does not name {name}: {}", errors[0]));
        }
    }
    if mode == Mode::Restore {
        if let Err(e) = s.xensim.destroy_domain(dst) {
            bad.push(format!("target not destroyable: {e}"));
        }
    } else if let Err(e) = s.check_source() {
        bad.push(e);
    }
    bad
}

/// One scenario's tally.
struct Tally {
    scenario: String,
    points: usize,
    calls: usize,
    swept: usize,
    survived: usize,
    failures: Vec<String>,
    secs: f64,
}

fn sweep(guest: &'static str, args: &[&str], mode: Mode, full: bool) -> Tally {
    let t0 = Instant::now();
    let s = Setup::new(guest, args, mode);
    let scenario = format!("{}/{guest}", mode.name());
    let img = s.h.dir.join("stream.img");
    if mode == Mode::Restore {
        let out = run(
            s.h.harness("xg-save", true)
                .arg(s.src.to_string())
                .arg(&img),
            RUN_DEADLINE,
        );
        assert!(out.status.success(), "{scenario}: save\n{}", describe(&out));
        s.check_source().expect("source after the stream's save");
    }
    // The counting run, which must succeed and leave nothing behind.
    let trace = s.h.dir.join("trace");
    let dst = if mode == Mode::Restore {
        s.empty_target()
    } else {
        0
    };
    let out = run(
        s.command(mode, &img, dst).env("XENSIM_FAULT_TRACE", &trace),
        RUN_DEADLINE,
    );
    assert!(
        out.status.success(),
        "{scenario}: counting run\n{}",
        describe(&out)
    );
    let prog = if mode == Mode::Restore {
        "xg-restore"
    } else {
        "xg-save"
    };
    let leaks = check_leaks(&stderr(&out), prog);
    assert!(leaks.is_empty(), "{scenario}: counting run: {leaks:?}");
    if mode == Mode::Restore {
        let d = s.xensim.domain(dst).unwrap().digest().unwrap();
        assert_eq!(d, s.digest, "{scenario}: restored digest");
        s.xensim.destroy_domain(dst).unwrap();
    } else {
        s.check_source().expect("source after the counting run");
    }
    let indices = in_call_indices(&std::fs::read_to_string(&trace).unwrap(), prog);
    assert!(
        !indices.is_empty(),
        "{scenario}: no fault point in the call"
    );
    let mut todo = pairs(&indices, full);
    todo.retain(|(n, _)| !NOT_SWEPT.iter().any(|(x, _)| x == n));
    let mut tally = Tally {
        scenario,
        points: indices.len(),
        calls: indices.values().map(Vec::len).sum(),
        swept: 0,
        survived: 0,
        failures: Vec::new(),
        secs: 0.0,
    };
    for (name, n) in &todo {
        let dst = if mode == Mode::Restore {
            s.empty_target()
        } else {
            0
        };
        let start = Instant::now();
        let out = run(
            s.command(mode, &img, dst)
                .env("XENSIM_FAULTS", format!("{name}:EIO:{n}")),
            RUN_DEADLINE,
        );
        let bad = check_run(&s, mode, name, &out, start.elapsed(), dst);
        tally.swept += 1;
        if out.status.success() {
            tally.survived += 1;
        }
        if !bad.is_empty() {
            tally.failures.push(format!(
                "{} {name}:EIO:{n}: {}\n{}",
                tally.scenario,
                bad.join("; "),
                stderr(&out)
                    .lines()
                    .filter(|l| !l.contains(" progress "))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    tally.secs = t0.elapsed().as_secs_f64();
    println!(
        "fault sweep {}: {} fault points, {} calls, {} pairs swept, {} survived, {} failures ({:.1} s)",
        tally.scenario,
        tally.points,
        tally.calls,
        tally.swept,
        tally.survived,
        tally.failures.len(),
        tally.secs
    );
    tally
}

static RESULTS: Mutex<Vec<Tally>> = Mutex::new(Vec::new());

fn full() -> bool {
    std::env::var("XCMIG_FAULT_SWEEP").is_ok_and(|v| v == "full")
}

fn sweep_mode(mode: Mode) {
    let full = full();
    let mut failures = Vec::new();
    for (guest, args) in GUESTS {
        let t = sweep(guest, args, mode, full);
        failures.extend(t.failures.iter().cloned());
        RESULTS.lock().unwrap().push(t);
    }
    write_results();
    assert!(
        failures.is_empty(),
        "{} failed runs:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Writes the tables to `$XCMIG_FAULT_SWEEP_RESULTS` once every mode has
/// been swept (each test adds its four scenarios).
fn write_results() {
    let Some(path) = std::env::var_os("XCMIG_FAULT_SWEEP_RESULTS") else {
        return;
    };
    let results = RESULTS.lock().unwrap();
    if results.len() < 4 * GUESTS.len() {
        return;
    }
    let mut rows: Vec<&Tally> = results.iter().collect();
    rows.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut md = format!(
        "# Fault sweep\n\nWritten by `make fault-sweep` (tests/capi_fault_sweep.rs, \
         `XCMIG_FAULT_SWEEP={}`) at commit {commit}. Every (fault point, call index) \
         pair a save or restore checks through the simulated Xen libraries, failed \
         with EIO, through `xg-save`/`xg-restore` with libxcmig preloaded; {MEMORY} \
         guests, Remus with {CHECKPOINTS} checkpoints. A failure is a run that did \
         not return -1 with an errno and one error line naming the call, left \
         log-dirty on, a descriptor or a mapping behind, the source not resumable \
         to its digest, or ran past {} s.\n\n\
         | scenario | fault points | calls | pairs swept | survived | failures | time (s) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        if full() { "full" } else { "short" },
        RUN_DEADLINE.as_secs()
    );
    let (mut swept, mut failed, mut secs) = (0, 0, 0.0);
    for t in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} |\n",
            t.scenario,
            t.points,
            t.calls,
            t.swept,
            t.survived,
            t.failures.len(),
            t.secs
        ));
        swept += t.swept;
        failed += t.failures.len();
        secs += t.secs;
    }
    md.push_str(&format!(
        "| **all** | | | **{swept}** | | **{failed}** | {secs:.1} |\n"
    ));
    if !SURVIVABLE.is_empty() {
        md.push_str("\nCalls whose failure is survived on purpose:\n\n");
        for (n, m, _, why) in SURVIVABLE {
            md.push_str(&format!("- `{n}` ({m}): {why}\n"));
        }
    }
    md.push_str("\nFault points counted but not swept:\n\n");
    for (n, why) in NOT_SWEPT {
        md.push_str(&format!("- `{n}`: {why}\n"));
    }
    std::fs::write(path, md).expect("write the results");
}

#[test]
fn every_call_of_a_non_live_save_failed_in_turn_is_survived_cleanly() {
    sweep_mode(Mode::Save);
}

#[test]
fn every_call_of_a_live_save_failed_in_turn_is_survived_cleanly() {
    sweep_mode(Mode::Live);
}

#[test]
fn every_call_of_a_remus_save_failed_in_turn_is_survived_cleanly() {
    sweep_mode(Mode::Remus);
}

#[test]
fn every_call_of_a_restore_failed_in_turn_is_survived_cleanly() {
    sweep_mode(Mode::Restore);
}
