//! valgrind memcheck over a representative subset of saves and restores
//! through the C harnesses with libxcmig preloaded on xensim (issue 10,
//! item 4): every guest type, each save mode and a restore, with and
//! without an injected fault. No invalid access, no use of undefined
//! values, no definite leak. No suppressions: nothing outside xcmig and
//! xensim has needed one (Debian's libxenguest is loaded but only its CPU
//! policy calls run, and valgrind reports nothing in them).

mod capi_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use capi_support::host::Host;
use capi_support::{describe, run};

const VALGRIND: &str = "/usr/bin/valgrind";
const MEMORY: &str = "16M";
/// valgrind slows a run about twentyfold; this only guards against hangs.
const DEADLINE: Duration = Duration::from_secs(300);

/// One run: (guest, harness, options, fault rule or "").
const RUNS: &[(&str, &str, &[&str], &str)] = &[
    ("hvm", "xg-save", &[], ""),
    ("pvh", "xg-save", &["--live"], ""),
    ("pv32", "xg-save", &["--remus", "2"], ""),
    ("pv64", "xg-restore", &[], ""),
    ("hvm", "xg-save", &["--live"], "xenforeignmemory_map:EIO:2"),
    (
        "pv32",
        "xg-save",
        &["--live"],
        "xc_get_pfn_type_batch:EIO:2",
    ),
    (
        "pv64",
        "xg-save",
        &["--remus", "2"],
        "xc_vcpu_getcontext:EIO:2",
    ),
    ("pv64", "xg-restore", &[], "xenforeignmemory_map:EIO:3"),
    ("hvm", "xg-restore", &[], "xc_domain_hvm_setcontext:EIO:1"),
];

fn create(h: &Host, guest: &str, empty: bool) -> u32 {
    let (ty, width): (&str, &[&str]) = match guest {
        "pv64" => ("pv", &["--address-size", "64"]),
        "pv32" => ("pv", &["--address-size", "32"]),
        g => (g, &[]),
    };
    let mut a = vec!["create", "--type", ty, "--memory", MEMORY];
    if empty {
        a.push("--empty");
    } else {
        a.extend_from_slice(width);
        a.extend_from_slice(&["--fill", "mixed", "--seed", "5"]);
    }
    Host::last_line(&h.xensim(&a)).parse().expect("domid")
}

/// `harness` under memcheck, in the environment of [`Host::harness`]; its
/// exit code and output.
fn memcheck(h: &Host, harness: &str, args: &[String], fault: &str) -> (Option<i32>, String) {
    let bin = h.env.capi(harness);
    let env = h.harness(harness, true);
    let mut c = Command::new(VALGRIND);
    c.args([
        "-q",
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
    ])
    .arg(&bin)
    .args(args);
    for (k, v) in env.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("XG_HARNESS_REPORT", "1");
    if !fault.is_empty() {
        c.env("XENSIM_FAULTS", fault);
    }
    let out = run(&mut c, DEADLINE);
    (out.status.code(), describe(&out))
}

#[test]
fn memcheck_finds_no_invalid_access_and_no_definite_leak_in_saves_and_restores() {
    assert!(
        Path::new(VALGRIND).exists(),
        "prerequisite missing: valgrind; install it with `make deps` (DEB_PACKAGES)"
    );
    let h = Host::new("valgrind");
    let mut failures = Vec::new();
    for (guest, harness, opts, fault) in RUNS {
        let src = create(&h, guest, false);
        let img = h.dir.join(&format!("{guest}.img"));
        let mut args: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        if *harness == "xg-restore" {
            let out = run(
                h.harness("xg-save", true).arg(src.to_string()).arg(&img),
                DEADLINE,
            );
            assert!(out.status.success(), "{}", describe(&out));
            args.push(create(&h, guest, true).to_string());
        } else {
            args.push(src.to_string());
        }
        args.push(img.display().to_string());
        let (code, text) = memcheck(&h, harness, &args, fault);
        let want = if fault.is_empty() { 0 } else { 1 };
        let reported = text.lines().any(|l| l.starts_with("=="));
        if code != Some(want) || reported {
            failures.push(format!(
                "{guest} {harness} {opts:?} {fault}: exit {code:?} (want {want})\n{text}"
            ));
        }
        println!(
            "memcheck {guest} {harness} {opts:?} {fault}: exit {code:?}, clean: {}",
            !reported
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
