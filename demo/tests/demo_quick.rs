//! `make demo` in a quick mode (a 256 MiB guest), so that it cannot rot:
//! the migration succeeds, the summary's figures agree with `xcmig
//! inspect` run on a copy of the stream, and failures (an injected restore
//! fault, a SIGTERM) end with a clear message, a non-zero status and
//! nothing left behind.
//!
//! The demo runs the pieces `make build` makes, from the target directory
//! this test was built in (`<target>/release/{xensim,libxcmig.so,xcmig}`,
//! `<target>/xensim/lib`, `<target>/capi-tests`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = env!("CARGO_BIN_EXE_xcmig-demo");
const TIMEOUT: Duration = Duration::from_secs(280);

/// `<target>`, from this test binary's path `<target>/<profile>/deps/<exe>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("test binaries live in <target>/<profile>/deps/")
        .to_path_buf()
}

/// A fresh directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("xcmig-demo-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn demo(work: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(DEMO);
    c.arg("--target-dir")
        .arg(target_dir())
        .args([
            "--memory",
            "256M",
            "--dirty-rate",
            "16",
            "--working-set",
            "32M",
        ])
        .args(["--timeout", "240", "--plain", "--workdir"])
        .arg(work)
        .arg("--logs")
        .arg(work.with_file_name("logs"))
        .args(extra)
        .env_remove("LD_PRELOAD")
        .env_remove("XENSIM_FAULTS");
    c
}

fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xcmig-demo");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xcmig-demo did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().expect("stdout reader"),
        stderr: t_err.join().expect("stderr reader"),
    }
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The integer after `label` in the summary (digits and commas).
fn summary_number(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in\n{stdout}"));
    let rest = line.trim_start()[label.len()..].trim_start();
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number in {line:?}"))
}

/// The run directories the demo made under `work` (it must remove them).
fn leftovers(work: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(work)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Processes whose environment names `work` (the demo's children all have
/// XENSIM_HOST under it).
fn processes_using(work: &Path) -> Vec<String> {
    let needle = work.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if String::from_utf8_lossy(&env).contains(&needle) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{name}: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    found
}

fn json_u64(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

#[test]
fn quick_demo_migrates_256m_guest_and_summary_matches_the_stream() {
    let s = Scratch::new("quick");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let stream = s.0.join("stream.img");
    let json = s.0.join("summary.json");
    let out = run(demo(&work, &["--save-stream"])
        .arg(&stream)
        .arg("--summary-json")
        .arg(&json));
    assert!(out.status.success(), "demo failed\n{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "round 0  live",
        "guest suspended at",
        "restore complete at",
        "Summary",
        "downtime",
        "total time",
        "result             OK",
    ] {
        assert!(stdout.contains(want), "no {want:?} in\n{stdout}");
    }

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["engine"], "xcmig");
    assert!(v["digests_equal"].as_bool().unwrap(), "{v}");
    let digest = v["digest_source"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{v}");
    assert_eq!(v["digest_destination"].as_str().unwrap(), digest);

    // Rounds: iteration 0 covers the whole guest; exactly one round, the
    // last, comes after the suspend.
    let rounds = v["rounds"].as_array().unwrap();
    assert!(rounds.len() >= 2, "{v}");
    assert_eq!(rounds[0]["iteration"], 0);
    assert!(json_u64(&rounds[0], "pfns") >= 65536, "{v}");
    let after: Vec<bool> = rounds
        .iter()
        .map(|r| r["after_suspend"].as_bool().unwrap())
        .collect();
    assert_eq!(after.iter().filter(|a| **a).count(), 1, "{v}");
    assert!(after.last().unwrap(), "{v}");
    let live = json_u64(&v, "precopy_iterations");
    assert_eq!(live as usize, rounds.len() - 1);
    assert_eq!(
        summary_number(&stdout, "iterations"),
        rounds.len() as u64,
        "{stdout}"
    );

    // The figures are the stream's: compare with xcmig inspect.
    let xcmig = target_dir().join("release").join("xcmig");
    assert!(
        xcmig.exists(),
        "{} missing: run make build",
        xcmig.display()
    );
    let insp = run(Command::new(&xcmig)
        .args(["inspect", "--json"])
        .arg(&stream));
    assert!(insp.status.success(), "inspect failed\n{}", describe(&insp));
    let r: serde_json::Value = serde_json::from_slice(&insp.stdout).unwrap();
    assert_eq!(r["valid"], true, "{r}");
    let bytes = json_u64(&v, "bytes_on_wire");
    let pages = json_u64(&v, "pages_sent");
    assert_eq!(json_u64(&r, "bytes"), bytes);
    assert_eq!(json_u64(&r["pages"], "data_pages"), pages);
    assert_eq!(
        json_u64(&r["pages"], "entries"),
        json_u64(&v, "page_entries")
    );
    let records: u64 = r["record_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| json_u64(t, "count"))
        .sum();
    assert_eq!(records, json_u64(&v, "records"));
    // A 256 MiB guest: every page at least once, plus what was redirtied.
    assert!(pages >= 65536, "{v}");
    assert_eq!(std::fs::metadata(&stream).unwrap().len(), bytes);

    // The printed summary says the same.
    assert_eq!(summary_number(&stdout, "pages sent"), pages, "{stdout}");
    assert_eq!(
        summary_number(&stdout, "bytes on the wire"),
        bytes,
        "{stdout}"
    );
    let downtime = v["downtime_ms"].as_f64().unwrap();
    let total = v["total_seconds"].as_f64().unwrap();
    assert!(downtime > 0.0 && downtime <= total * 1000.0, "{v}");
    assert_eq!(
        summary_number(&stdout, "downtime"),
        downtime.round() as u64,
        "{stdout}"
    );

    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
    eprintln!("{stdout}");
}

#[test]
fn demo_runs_the_reference_libxenguest_over_a_unix_socket_too() {
    let s = Scratch::new("reference");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let json = s.0.join("summary.json");
    let out = run(
        demo(&work, &["--engine", "libxenguest", "--transport", "unix"])
            .arg("--summary-json")
            .arg(&json),
    );
    assert!(out.status.success(), "demo failed\n{}", describe(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["engine"], "libxenguest");
    assert_eq!(v["transport"], "a Unix socket pair");
    assert!(v["digests_equal"].as_bool().unwrap(), "{v}");
    assert!(leftovers(&work).is_empty());
}

#[test]
fn demo_with_failing_restore_exits_1_naming_the_failure_and_cleans_up() {
    let s = Scratch::new("fault");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = run(&mut demo(
        &work,
        &["--restore-fault", "xc_domain_populate_physmap_exact:ENOMEM"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("xcmig-demo: error: xg-restore failed"),
        "{}",
        describe(&out)
    );
    assert!(err.contains("Cannot allocate memory"), "{}", describe(&out));
    // The saver, writing into the broken link, fails as a toolstack sees it
    // (-1 from xc_domain_save, not a SIGPIPE) and never suspended the guest.
    if err.contains("xg-save failed") {
        assert!(err.contains("xg-save: result rc=-1"), "{}", describe(&out));
        assert!(err.contains("suspends=0"), "{}", describe(&out));
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Summary"));
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
}

/// Starts a demo big and busy enough that the migration is still running
/// a moment later, and returns once it has opened the link (its children
/// are running then).
fn start_long_demo(work: &Path) -> std::process::Child {
    let mut cmd = demo(work, &[]);
    cmd.args(["--memory", "1G", "--dirty-rate", "2000"])
        .args(["--working-set", "512M"]);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xcmig-demo");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push(l.clone());
        if l.trim_start().starts_with("link") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.trim_start().starts_with("link")),
        "the demo stopped before opening the link: {seen:?}"
    );
    // Keep draining stdout so that the demo never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(!processes_using(work).is_empty(), "no children running");
    child
}

#[test]
fn demo_interrupted_by_sigterm_stops_its_children_and_exits_130() {
    let s = Scratch::new("sigterm");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut child = start_long_demo(&work);
    assert!(send_signal(child.id(), "TERM"), "kill failed");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stderr: {err}");
    assert!(err.contains("interrupted by signal 15"), "{err}");
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
}

#[test]
fn demo_killed_outright_takes_its_children_with_it() {
    let s = Scratch::new("sigkill");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut child = start_long_demo(&work);
    assert!(send_signal(child.id(), "KILL"), "kill failed");
    let _ = child.wait();
    // The kernel delivers the children's parent-death signal at once;
    // allow for a loaded machine.
    let until = Instant::now() + Duration::from_secs(10);
    while !processes_using(&work).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
}

/// A signal via kill(1), to keep this test free of unsafe code.
fn send_signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
