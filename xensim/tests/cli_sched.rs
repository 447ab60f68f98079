//! `xensim host scheduler` and `xensim domain sched`: the host's scheduler
//! is chosen before any domain exists, and a domain's weight and cap are
//! set under that scheduler's rules and recorded.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_xensim");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xensim-cli-sched-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn xensim(host: &PathBuf, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("XENSIM_HOST", host)
        .env_remove("XENSIM_FAULTS")
        .output()
        .expect("run xensim")
}

fn ok(host: &PathBuf, args: &[&str]) -> String {
    let o = xensim(host, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn create(host: &PathBuf, vcpus: &str) -> String {
    let out = ok(
        host,
        &[
            "domain", "create", "--type", "hvm", "--memory", "4M", "--fill", "zero", "--vcpus",
            vcpus,
        ],
    );
    out.lines().last().unwrap().trim().to_owned()
}

#[test]
fn the_scheduler_is_chosen_before_the_first_domain_and_credit2_by_default() {
    let h = scratch("choose");
    assert_eq!(ok(&h, &["host", "scheduler"]).trim(), "credit2");
    assert_eq!(ok(&h, &["host", "scheduler", "credit"]).trim(), "credit");
    let o = xensim(&h, &["host", "scheduler", "rtds"]);
    assert_eq!(o.status.code(), Some(1));
    let d = create(&h, "1");
    let o = xensim(&h, &["host", "scheduler", "credit2"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("EBUSY") && e.contains("stays credit"), "{e}");
    // Naming the scheduler it already runs is fine.
    assert_eq!(ok(&h, &["host", "scheduler", "credit"]).trim(), "credit");
    assert_eq!(
        ok(&h, &["domain", "sched", &d]),
        "scheduler credit\nweight 256\ncap 0\n"
    );
    std::fs::remove_dir_all(&h).ok();
}

#[test]
fn domain_parameters_follow_credit2_rules_and_every_change_is_recorded() {
    let h = scratch("credit2");
    let d = create(&h, "2");
    ok(
        &h,
        &["domain", "sched", &d, "--cap", "150", "--weight", "512"],
    );
    // Over 100 per vCPU: refused, nothing changes.
    let o = xensim(&h, &["domain", "sched", &d, "--cap", "201"]);
    assert_eq!(o.status.code(), Some(1));
    // A weight alone keeps the cap (the command passes the current one).
    ok(&h, &["domain", "sched", &d, "--weight", "128"]);
    let out = ok(&h, &["domain", "sched", &d, "--history"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["scheduler credit2", "weight 128", "cap 150"]);
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[3].ends_with("credit2 weight 512 cap 150"), "{out}");
    assert!(lines[4].ends_with("credit2 weight 128 cap 150"), "{out}");
    let json = ok(&h, &["domain", "sched", &d, "--history", "--json"]);
    assert!(
        json.starts_with(&format!(
            "{{\"domid\":{d},\"scheduler\":\"credit2\",\"weight\":128,\"cap\":150,\"history\":[{{\"time_ns\":"
        )),
        "{json}"
    );
    assert_eq!(json.matches("\"time_ns\"").count(), 2, "{json}");
    // Weight 0 is refused by the command line, as xl does.
    let o = xensim(&h, &["domain", "sched", &d, "--weight", "0"]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&h).ok();
}
