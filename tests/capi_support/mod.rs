//! Support for the `capi_*` integration tests: where the built pieces are
//! (found from the test binary's own location, `<target>/<profile>/deps/`),
//! child processes with timeouts, and small helpers.
//!
//! A missing prerequisite fails the test with the build step that makes it.

#![allow(dead_code)] // each test crate uses a different part of this module

pub mod save_helper;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Debian's save/restore helper (package xen-utils-4.17).
pub const SAVE_HELPER: &str = "/usr/lib/xen-4.17/bin/libxl-save-helper";
/// Debian's stream verifier (package xen-utils-4.17).
pub const VERIFY_STREAM: &str = "/usr/lib/xen-4.17/bin/verify-stream-v2";
/// Where Debian installs the real Xen libraries (libxenguest, libxentoollog).
pub const SYSTEM_XEN_LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";
/// Time allowed for one command.
pub const TIMEOUT: Duration = Duration::from_secs(240);

/// The built pieces.
#[derive(Debug, Clone)]
pub struct Env {
    /// Cargo's target directory.
    pub target: PathBuf,
    /// `<target>/<profile>`, where this test binary's crate was built.
    pub profile_dir: PathBuf,
    /// The libxcmig built with this test (`<profile>/deps/libxcmig.so`, else
    /// `<profile>/libxcmig.so`).
    pub libxcmig: PathBuf,
}

fn require(path: &Path, what: &str, step: &str) {
    assert!(
        path.exists(),
        "prerequisite missing: {what} ({}) does not exist; build it with `{step}`",
        path.display()
    );
}

impl Env {
    /// Locate the target directory from the running test binary.
    pub fn locate() -> Env {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binaries live in <target>/<profile>/deps/")
            .to_path_buf();
        let target = profile_dir
            .parent()
            .expect("<target>/<profile>")
            .to_path_buf();
        // `cargo test` rebuilds the cdylib in deps/ but copies it up to
        // <profile>/ only on `cargo build`; test the one built with us.
        let fresh = profile_dir.join("deps").join("libxcmig.so");
        let libxcmig = if fresh.exists() {
            fresh
        } else {
            profile_dir.join("libxcmig.so")
        };
        Env {
            libxcmig,
            target,
            profile_dir,
        }
    }

    /// The cdylib under test, which must exist.
    pub fn require_libxcmig(&self) -> PathBuf {
        require(&self.libxcmig, "libxcmig", "cargo build -p xcmig");
        self.libxcmig.clone()
    }

    /// The `xensim` command: this profile's, else the release one.
    pub fn xensim(&self) -> PathBuf {
        let here = self.profile_dir.join("xensim");
        let p = if here.exists() {
            here
        } else {
            self.target.join("release").join("xensim")
        };
        require(
            &p,
            "xensim command",
            "make build (cargo build --release -p xensim)",
        );
        p
    }

    /// `<target>/xensim/lib`, the simulated libxenctrl family.
    pub fn shim_dir(&self) -> PathBuf {
        let d = self.target.join("xensim").join("lib");
        require(
            &d.join("libxenctrl.so.4.17"),
            "simulated Xen libraries",
            "make build (scripts/link-shims.sh)",
        );
        d
    }

    /// A C harness from `capi-tests/`.
    pub fn capi(&self, name: &str) -> PathBuf {
        let p = self.target.join("capi-tests").join(name);
        require(
            &p,
            "C harness",
            "make build (make -C capi-tests OUT=<target>/capi-tests)",
        );
        p
    }

    /// `LD_LIBRARY_PATH` with the simulated libraries first.
    pub fn ld_library_path(&self) -> String {
        format!("{}:{SYSTEM_XEN_LIBDIR}", self.shim_dir().display())
    }
}

/// A fresh temporary directory, removed on drop unless `XCMIG_TEST_KEEP` is set.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Create `<tmp>/xcmig-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "xcmig-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// A path inside.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("XCMIG_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Run `cmd` to completion with a timeout, capturing stdout and stderr.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
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
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().expect("stdout reader"),
        stderr: t_err.join().expect("stderr reader"),
    }
}

/// stdout and stderr of `out`, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run a command that must succeed; returns its stdout as text.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd, TIMEOUT);
    assert!(out.status.success(), "{cmd:?} failed\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
