//! The live migration settings reach a preloaded libxcmig through the
//! environment, as they would under an unmodified toolstack: the C harness
//! `xg-save --live` (no `precopy_policy` callback) saves a simulated
//! 256 MiB HVM guest while `xensim domain run` rewrites a 1 MiB working
//! set, and the messages libxcmig sends to the harness's logger (level
//! detail, on stderr) show which settings were used and why pre-copy
//! ended.
//! Needs `make build` (release library, shims, harnesses).

#![cfg(feature = "xen")]

mod capi_support;

use std::process::{Command, Output};
use std::time::Duration;

use capi_support::host::Host;
use capi_support::{describe, run, TIMEOUT};

/// `xg-save --live --progress` of `domid` with libxcmig preloaded and `env`
/// set, while a workload rewrites 1 MiB of the guest at 64 MiB/s.
fn live_save(h: &Host, domid: u32, env: &[(&str, &str)]) -> Output {
    let mut workload = Command::new(h.env.xensim());
    workload
        .args(["domain", "run", "--host"])
        .arg(h.path())
        .args([
            "--dirty-rate",
            "64",
            "--working-set",
            "1M",
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
    ] {
        save.env_remove(var);
    }
    save.envs(env.iter().copied())
        .args(["--live", "--progress"])
        .arg(domid.to_string())
        .arg(h.dir.join("live.img"));
    let out = run(&mut save, TIMEOUT);
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
