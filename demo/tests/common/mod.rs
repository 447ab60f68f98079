//! Helpers shared by the demo's integration tests: running `xcmig-demo`
//! from the target directory the tests were built in, with a deadline,
//! and checking what it left behind.

// Each test file uses its own subset of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const DEMO: &str = env!("CARGO_BIN_EXE_xcmig-demo");
pub const TIMEOUT: Duration = Duration::from_secs(280);

/// `<target>`, from this test binary's path `<target>/<profile>/deps/<exe>`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("test binaries live in <target>/<profile>/deps/")
        .to_path_buf()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
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

pub fn demo(work: &Path, extra: &[&str]) -> Command {
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

/// Runs `cmd` to its end (killed after [`TIMEOUT`]) with its output.
pub fn run(cmd: &mut Command) -> Output {
    run_with_pid(cmd).0
}

/// [`run`], also returning the process id it had.
pub fn run_with_pid(cmd: &mut Command) -> (Output, u32) {
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
    let out = Output {
        status,
        stdout: t_out.join().expect("stdout reader"),
        stderr: t_err.join().expect("stderr reader"),
    };
    (out, child.id())
}

pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The integer after `label` in the summary (digits and commas).
pub fn summary_number(stdout: &str, label: &str) -> u64 {
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
pub fn leftovers(work: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(work)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Processes whose environment names `work` (the demo's children all have
/// XENSIM_HOST under it).
pub fn processes_using(work: &Path) -> Vec<String> {
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

pub fn json_u64(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

/// Starts a demo big and busy enough that the migration is still running
/// a moment later, with `extra` options, and returns once it has opened
/// the link (its workload is running then), with the lines it printed.
pub fn start_long_demo(work: &Path, extra: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut cmd = demo(work, &[]);
    cmd.args(["--memory", "1G", "--dirty-rate", "2000"])
        .args(["--working-set", "512M"])
        .args(extra);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xcmig-demo");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut linked = false;
    // The link's lines end with an empty one.
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push(l.clone());
        linked |= l.trim_start().starts_with("link");
        if linked && l.trim().is_empty() {
            break;
        }
    }
    assert!(linked, "the demo stopped before opening the link: {seen:?}");
    // Keep draining stdout so that the demo never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(!processes_using(work).is_empty(), "no children running");
    (child, seen)
}

/// A signal via kill(1), to keep this test free of unsafe code.
pub fn send_signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
