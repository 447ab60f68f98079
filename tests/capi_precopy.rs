//! The live migration settings reach a preloaded libxcmig through the
//! environment, as they would under an unmodified toolstack: the C harness
//! `xg-save --live` (no `precopy_policy` callback) saves a simulated
//! 256 MiB HVM guest while `xensim domain run` rewrites a 1 MiB working
//! set, and the messages libxcmig sends to the harness's logger (level
//! detail, on stderr) show which settings were used and why pre-copy
//! ended. With auto-converge on, xensim's record of the guest's scheduler
//! parameters shows what the save did to its CPU cap.
//! Needs `make build` (release library, shims, harnesses).

#![cfg(feature = "xen")]

mod capi_support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use capi_support::host::Host;
use capi_support::{describe, run, run_ok, TIMEOUT};

/// `xg-save --live --progress` of `domid` with libxcmig preloaded and `env`
/// set, while a workload rewrites 1 MiB of the guest at 64 MiB/s.
fn live_save(h: &Host, domid: u32, env: &[(&str, &str)]) -> Output {
    live_save_with(h, domid, env, ("64", "1M"), None)
}

/// Copies the FIFO `from` to the file `to` at most `rate` bytes per second
/// (a link slower than the machine), until the writer closes it.
fn slow_reader(from: PathBuf, to: PathBuf, rate: f64) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut input = std::fs::File::open(&from).expect("open the stream FIFO");
        let mut output = std::fs::File::create(&to).expect("create the image");
        let start = Instant::now();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = input.read(&mut buf).expect("read the stream");
            if n == 0 {
                return total;
            }
            output.write_all(&buf[..n]).expect("write the image");
            total += n as u64;
            let due = Duration::from_secs_f64(total as f64 / rate);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// [`live_save`] with the workload's `(MiB/s, working set)`, and the stream
/// going through a link of `link` bytes per second when given.
fn live_save_with(
    h: &Host,
    domid: u32,
    env: &[(&str, &str)],
    workload_args: (&str, &str),
    link: Option<f64>,
) -> Output {
    let mut workload = Command::new(h.env.xensim());
    workload
        .args(["domain", "run", "--host"])
        .arg(h.path())
        .args([
            "--dirty-rate",
            workload_args.0,
            "--working-set",
            workload_args.1,
            "--duration",
            "60",
        ])
        .arg(domid.to_string());
    let worker = std::thread::spawn(move || run(&mut workload, TIMEOUT));
    std::thread::sleep(Duration::from_millis(300));
    let mut save = h.harness("xg-save", true);
    for var in [
        "XCMIG_PRECOPY_POLICY",
        "XCMIG_TARGET_DOWNTIME_MS",
        "XCMIG_MAX_ITERATIONS",
        "XCMIG_MAX_PRECOPY_SECONDS",
        "XCMIG_ABORT_IF_NOT_CONVERGING",
        "XCMIG_AUTO_CONVERGE",
        "XCMIG_AUTO_CONVERGE_INITIAL",
        "XCMIG_AUTO_CONVERGE_STEP",
        "XCMIG_AUTO_CONVERGE_FLOOR",
    ] {
        save.env_remove(var);
    }
    let img = h.dir.join("live.img");
    let reader = link.map(|rate| {
        let fifo = h.dir.join("live.fifo");
        let _ = std::fs::remove_file(&fifo);
        run_ok(Command::new("mkfifo").arg(&fifo));
        (fifo.clone(), slow_reader(fifo, img.clone(), rate))
    });
    save.envs(env.iter().copied())
        .args(["--live", "--progress"])
        .arg(domid.to_string())
        .arg(reader.as_ref().map_or(&img, |r| &r.0));
    let out = run(&mut save, TIMEOUT);
    if let Some((_, t)) = reader {
        t.join().expect("link thread");
    }
    if !out.status.success() {
        // The workload runs until the guest stops; a failed save left it
        // running.
        let _ = h.xensim(&["destroy", &domid.to_string()]);
    }
    let w = worker.join().expect("workload thread");
    assert!(
        w.status.success() || !out.status.success(),
        "workload failed\n{}",
        describe(&w)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn environment_settings_reach_a_preloaded_live_save() {
    let h = Host::new("precopy-env");
    let dom = h.create("hvm", 31);
    let out = live_save(
        &h,
        dom,
        &[
            ("XCMIG_TARGET_DOWNTIME_MS", "0"),
            ("XCMIG_MAX_ITERATIONS", "2"),
            ("XCMIG_MAX_PRECOPY_SECONDS", "ten"),
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "live save failed\n{}", describe(&out));
    // The invalid value is reported and the default applies.
    assert!(
        err.contains("ignoring XCMIG_MAX_PRECOPY_SECONDS=\"ten\"")
            && err.contains("60 s after the first pass"),
        "{err}"
    );
    assert!(
        err.contains("downtime-targeted policy: target 0 ms, at most 2 rounds"),
        "{err}"
    );
    assert!(err.contains("precopy round 1: sent"), "{err}");
    assert!(
        err.contains("precopy: stop and copy after 2 rounds: iteration cap reached"),
        "{err}"
    );
}

#[test]
fn classic_policy_from_the_environment_is_libxenguests() {
    let h = Host::new("precopy-classic");
    let dom = h.create("hvm", 32);
    // The abort option belongs to the targeted policy: ignored here.
    let out = live_save(
        &h,
        dom,
        &[
            ("XCMIG_PRECOPY_POLICY", "classic"),
            ("XCMIG_ABORT_IF_NOT_CONVERGING", "1"),
            ("XCMIG_TARGET_DOWNTIME_MS", "0"),
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "live save failed\n{}", describe(&out));
    assert!(!err.contains("precopy"), "{err}");
    // libxenguest's rule: at most 5 live rounds, then the suspend.
    let rounds: std::collections::BTreeSet<&str> = err
        .lines()
        .filter_map(|l| l.split("what=\"Frames iteration ").nth(1))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert!((2..=6).contains(&rounds.len()), "{rounds:?}\n{err}");
}

#[test]
fn abort_if_not_converging_from_the_environment_fails_the_save() {
    // A zero target is never met: reaching the 2-round cap with pages
    // still dirty aborts instead of suspending.
    let h = Host::new("precopy-abort");
    let dom = h.create("hvm", 33);
    let out = live_save(
        &h,
        dom,
        &[
            ("XCMIG_TARGET_DOWNTIME_MS", "0"),
            ("XCMIG_MAX_ITERATIONS", "2"),
            ("XCMIG_ABORT_IF_NOT_CONVERGING", "yes"),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        err.contains("live migration not converging, save aborted: iteration cap reached"),
        "{err}"
    );
    assert!(err.contains(&format!("errno={}", libc::ECANCELED)), "{err}");
    assert!(err.contains("suspends=0"), "{err}");
}

/// `(cap, weight)` of every change to `domid`'s scheduler parameters, from
/// `xensim domain sched --history`, and the scheduler named there.
fn sched_history(h: &Host, domid: u32) -> (String, Vec<(u16, u16)>) {
    let out = h.xensim(&["sched", &domid.to_string(), "--history"]);
    let mut lines = out.lines();
    let sched = lines
        .next()
        .and_then(|l| l.strip_prefix("scheduler "))
        .expect("scheduler line")
        .to_owned();
    let changes = lines
        .skip(2)
        .map(|l| {
            // <unix ns> <scheduler> weight <w> cap <c>
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 6, "{l}");
            assert_eq!(f[1], sched, "{l}");
            (f[5].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect();
    (sched, changes)
}

/// A live save with auto-converge over a slow link and a zero downtime
/// target (never met, so the stall after the first rounds throttles),
/// checked against the
/// cap history; the image restores with both implementations to the
/// guest's digest at suspend.
fn auto_converge_save(h: &Host, dom: u32, vcpus: u16, start: (u16, u16)) -> Vec<(u16, u16)> {
    let earlier = sched_history(h, dom).1.len();
    // 256 MiB/s over 16 MiB against a 96 MiB/s link: each round finds most
    // of the working set dirty again.
    let out = live_save_with(
        h,
        dom,
        &[
            ("XCMIG_AUTO_CONVERGE", "on"),
            ("XCMIG_TARGET_DOWNTIME_MS", "0"),
            ("XCMIG_AUTO_CONVERGE_INITIAL", "40"),
            ("XCMIG_AUTO_CONVERGE_STEP", "15"),
            ("XCMIG_AUTO_CONVERGE_FLOOR", "10"),
        ],
        ("256", "16M"),
        Some(96.0 * 1048576.0),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "live save failed\n{}", describe(&out));
    assert!(
        err.contains("auto-converge: when not converging, cap the guest's CPU at 40%, then 15 points lower each round, down to 10%"),
        "{err}"
    );
    let steps: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("auto-converge: round"))
        .collect();
    assert!(!steps.is_empty(), "{err}");
    assert!(err.contains("auto-converge: restored domain"), "{err}");
    let (_, all) = sched_history(h, dom);
    let history = all[earlier..].to_vec();
    // Every change but the last lowers the cap along 40, 25, 10 percent of
    // what the guest had; the last puts the original back.
    let base = if start.0 == 0 { 100 * vcpus } else { start.0 };
    let want: Vec<u16> = [40u16, 25, 10]
        .iter()
        .map(|s| (u32::from(base) * u32::from(*s)).div_ceil(100) as u16)
        .collect();
    let (last, lowered) = history.split_last().expect("cap changes");
    assert_eq!(*last, start, "{history:?}");
    assert!(!lowered.is_empty(), "{history:?}");
    assert_eq!(lowered.len(), steps.len(), "{history:?}\n{err}");
    for (i, (cap, weight)) in lowered.iter().enumerate() {
        assert_eq!(*cap, want[i.min(2)], "{history:?}");
        assert_eq!(*weight, start.1, "the weight is left alone: {history:?}");
    }
    // The image is a standard stream that both implementations restore.
    let digest = h.digest(dom);
    for xcmig in [false, true] {
        let dst = h.create_empty("hvm");
        let r = run(
            h.harness("xg-restore", xcmig)
                .arg(dst.to_string())
                .arg(h.dir.join("live.img")),
            TIMEOUT,
        );
        assert!(r.status.success(), "restore failed\n{}", describe(&r));
        assert_eq!(h.digest(dst), digest, "restore (xcmig: {xcmig}) differs");
    }
    all
}

#[test]
fn auto_converge_from_the_environment_caps_the_guest_and_restores_its_cap() {
    let h = Host::new("precopy-ac");
    let dom = h.create("hvm", 34);
    let (sched, before) = sched_history(&h, dom);
    assert_eq!(sched, "credit2", "Xen 4.17's default");
    assert!(before.is_empty());
    auto_converge_save(&h, dom, 1, (0, 256));
}

#[test]
fn auto_converge_under_credit_throttles_from_the_guests_own_cap() {
    let h = Host::new("precopy-ac-credit");
    let mut c = Command::new(h.env.xensim());
    c.args(["host", "scheduler", "--host"])
        .arg(h.path())
        .arg("credit");
    assert_eq!(capi_support::run_ok(&mut c).trim(), "credit");
    let dom = h.create("hvm", 35);
    h.xensim(&["sched", &dom.to_string(), "--cap", "60", "--weight", "384"]);
    let all = auto_converge_save(&h, dom, 1, (60, 384));
    assert_eq!(all[0], (60, 384), "the test's own setting comes first");
    assert_eq!(all[1].0, 24, "40% of the guest's cap of 60: {all:?}");
}

#[test]
fn without_the_setting_a_preloaded_live_save_never_touches_the_scheduler() {
    let h = Host::new("precopy-ac-off");
    let dom = h.create("hvm", 36);
    let out = live_save(&h, dom, &[("XCMIG_TARGET_DOWNTIME_MS", "0")]);
    assert!(out.status.success(), "live save failed\n{}", describe(&out));
    assert!(!stderr(&out).contains("auto-converge"), "{}", stderr(&out));
    assert!(sched_history(&h, dom).1.is_empty());
}
