//! `xcmig-demo --transport netns`: the migration crosses a veth pair
//! between two network namespaces the demo creates for the run (the saver
//! in one, the restorer listening on its veth address in the other), and
//! the namespaces are gone afterwards, whether the run succeeded, failed or
//! was killed outright (the next run then removes them).
//!
//! These tests need root, as creating namespaces does; CI runs as root.
//! Without it they fail with a message saying so rather than skip, so that
//! a CI environment that lost the privilege cannot pass silently.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// One netns demo at a time: a run removes the namespaces of demos that
/// are gone, which the leftover test observes.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails the test, with the reason, unless it runs as root.
fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("a Uid line")
        .to_string();
    assert_eq!(
        euid, "0",
        "the netns demo tests create network namespaces and a veth pair with ip(8) and \
         need root (CI runs them as root); effective uid here: {euid}"
    );
}

/// The demo's namespace names for process `pid`.
fn namespaces_of(pid: u32) -> [String; 2] {
    [
        format!("xcmig-demo-{pid}-src"),
        format!("xcmig-demo-{pid}-dst"),
    ]
}

/// Which of `names` `ip netns list` still shows.
fn existing_namespaces(names: &[String]) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    assert!(out.status.success(), "ip netns list: {out:?}");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    names
        .iter()
        .filter(|n| {
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n.as_str()))
                || Path::new("/run/netns").join(n).exists()
        })
        .cloned()
        .collect()
}

/// Runs a netns demo with `extra` options and a summary; returns it.
fn run_netns_demo(s: &Scratch, extra: &[&str]) -> serde_json::Value {
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let json = s.0.join("summary.json");
    let stream = s.0.join("stream.img");
    let started = Instant::now();
    let (out, pid) = run_with_pid(
        demo(&work, &["--transport", "netns"])
            .args(extra)
            .arg("--summary-json")
            .arg(&json)
            .arg("--save-stream")
            .arg(&stream),
    );
    let took = started.elapsed();
    assert!(out.status.success(), "demo failed\n{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let [src, dst] = namespaces_of(pid);
    assert!(
        stdout.contains(&format!(
            "namespaces     xg-save in {src}, xg-restore in {dst}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("TCP 169.254.77.1 -> 169.254.77.2:"),
        "{stdout}"
    );
    assert!(stdout.contains("result             OK"), "{stdout}");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["digests_equal"].as_bool().unwrap(), "{v}");
    assert_eq!(v["digest_source"], v["digest_destination"], "{v}");
    assert_eq!(v["digest_source"].as_str().unwrap().len(), 64, "{v}");
    let n = &v["network"];
    assert_eq!(n["source_namespace"], src.as_str(), "{v}");
    assert_eq!(n["destination_namespace"], dst.as_str(), "{v}");

    // The whole stream crossed the veth: the source end's kernel counter
    // grew by at least the stream's size, and so did the destination's.
    let bytes = json_u64(&v, "bytes_on_wire");
    assert_eq!(std::fs::metadata(&stream).unwrap().len(), bytes);
    // Zero pages never sent go without data, so the stream carries at least
    // the data pages it counted, not the whole guest.
    let data_pages = json_u64(&v, "pages_sent");
    assert!(data_pages > 0, "no page data crossed: {v}");
    assert!(
        bytes >= data_pages * 4096,
        "{data_pages} data pages in {bytes} octets: {v}"
    );
    let tx = json_u64(n, "source_veth_tx_bytes");
    let rx = json_u64(n, "destination_veth_rx_bytes");
    assert!(
        tx >= bytes,
        "the veth sent {tx} octets, the stream has {bytes}: {v}"
    );
    assert!(
        rx >= bytes,
        "the veth received {rx} octets, the stream has {bytes}: {v}"
    );
    // And little else: TCP/IP headers, the handshake, ARP.
    assert!(
        tx <= bytes + bytes / 10 + (1 << 20),
        "the veth sent {tx} octets for a stream of {bytes}: {v}"
    );
    assert_eq!(
        summary_number(&stdout, "veth traffic"),
        tx,
        "the printed figure is the JSON's\n{stdout}"
    );

    assert!(
        existing_namespaces(&[src, dst]).is_empty(),
        "namespaces left behind"
    );
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
    eprintln!("{stdout}\n(the demo took {:.1} s)", took.as_secs_f64());
    v
}

#[test]
fn netns_demo_migrates_across_the_veth_and_removes_its_namespaces() {
    require_root();
    let _g = serial();
    let s = Scratch::new("netns");
    let v = run_netns_demo(&s, &[]);
    assert_eq!(v["engine"], "xcmig");
}

#[test]
fn netns_demo_libxenguest_saves_in_one_namespace_libxcmig_restores_in_the_other() {
    require_root();
    let _g = serial();
    let s = Scratch::new("netns-interop");
    let v = run_netns_demo(
        &s,
        &["--save-engine", "libxenguest", "--restore-engine", "xcmig"],
    );
    assert_eq!(v["engine"], "mixed");
    assert_eq!(v["save_engine"], "libxenguest");
    assert_eq!(v["restore_engine"], "xcmig");
}

#[test]
fn netns_demo_libxcmig_saves_in_one_namespace_libxenguest_restores_in_the_other() {
    require_root();
    let _g = serial();
    let s = Scratch::new("netns-interop-back");
    let v = run_netns_demo(
        &s,
        &["--save-engine", "xcmig", "--restore-engine", "libxenguest"],
    );
    assert_eq!(v["engine"], "mixed");
    assert_eq!(v["save_engine"], "xcmig");
    assert_eq!(v["restore_engine"], "libxenguest");
}

#[test]
fn netns_demo_with_failing_restore_exits_1_and_removes_its_namespaces() {
    require_root();
    let _g = serial();
    let s = Scratch::new("netns-fault");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (out, pid) = run_with_pid(&mut demo(
        &work,
        &[
            "--transport",
            "netns",
            "--restore-fault",
            "xc_domain_populate_physmap_exact:ENOMEM",
        ],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("xcmig-demo: error: xg-restore failed"),
        "{}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("namespaces     xg-save in"),
        "{}",
        describe(&out)
    );
    assert!(
        existing_namespaces(&namespaces_of(pid)).is_empty(),
        "namespaces left behind"
    );
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
}

#[test]
fn netns_demo_interrupted_by_sigterm_removes_its_namespaces() {
    require_root();
    let _g = serial();
    let s = Scratch::new("netns-sigterm");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (mut child, seen) = start_long_demo(&work, &["--transport", "netns"]);
    let names = namespaces_of(child.id());
    assert!(
        seen.iter().any(|l| l.contains(&names[0])),
        "no namespaces line in {seen:?}"
    );
    assert_eq!(existing_namespaces(&names), names, "the run's namespaces");
    assert!(send_signal(child.id(), "TERM"), "kill failed");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        existing_namespaces(&names).is_empty(),
        "namespaces left behind"
    );
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

#[test]
fn namespaces_of_a_demo_killed_outright_are_removed_by_the_next_netns_run() {
    require_root();
    let _g = serial();
    let s = Scratch::new("netns-sigkill");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (mut child, _) = start_long_demo(&work, &["--transport", "netns"]);
    let names = namespaces_of(child.id());
    assert!(send_signal(child.id(), "KILL"), "kill failed");
    let _ = child.wait();
    // No cleanup can run on SIGKILL: the named namespaces stay (their
    // processes die with the demo).
    assert_eq!(existing_namespaces(&names), names);
    let until = Instant::now() + Duration::from_secs(10);
    while !processes_using(&work).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
    // The next netns run removes them before making its own.
    let next = Scratch::new("netns-next");
    run_netns_demo(&next, &[]);
    assert!(
        existing_namespaces(&names).is_empty(),
        "the leftovers of the killed demo are still there"
    );
}
