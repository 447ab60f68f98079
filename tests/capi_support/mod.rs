//! Support for the `capi_*` integration tests: where the built pieces are
//! (found from the test binary's own location, `<target>/<profile>/deps/`),
//! child processes with timeouts, and small helpers.
//!
//! A missing prerequisite fails the test with the build step that makes it.

#![allow(dead_code, unused_imports)] // each test crate uses a different part of this module

pub mod host;
pub mod records;
pub mod save_helper;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use xcmig_testkit::process::{describe, run};
pub use xcmig_testkit::TempDir;

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
    /// `<profile>/libxcmig.so`, linked by `scripts/link-lib.sh` from the
    /// staticlib built with this test.
    pub libxcmig: PathBuf,
}

/// `cargo test` rebuilds the staticlib in `<profile>/deps/` (cargo copies
/// it up to `<profile>/` only on `cargo build`), but only
/// `scripts/link-lib.sh` turns it into the shared library: relink when that
/// archive is newer than the library, once per test process.
fn relink_libxcmig(profile_dir: &Path, lib: &Path) {
    static LINKED: std::sync::Once = std::sync::Once::new();
    LINKED.call_once(|| {
        let archive = profile_dir.join("deps").join("libxcmig.a");
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let Some(built) = mtime(&archive) else { return };
        if mtime(lib).is_some_and(|linked| linked >= built) {
            return;
        }
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile directory name");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/link-lib.sh");
        let st = Command::new(&script)
            .arg(profile)
            .env("XCMIG_ARCHIVE", &archive)
            .env("XCMIG_OUT", lib)
            .env(
                "CARGO_TARGET_DIR",
                profile_dir.parent().expect("<target>/<profile>"),
            )
            .status()
            .expect("run scripts/link-lib.sh");
        assert!(st.success(), "scripts/link-lib.sh {profile} failed");
    });
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
        let libxcmig = profile_dir.join("libxcmig.so");
        relink_libxcmig(&profile_dir, &libxcmig);
        Env {
            libxcmig,
            target,
            profile_dir,
        }
    }

    /// The shared library under test, which must exist.
    pub fn require_libxcmig(&self) -> PathBuf {
        require(
            &self.libxcmig,
            "libxcmig",
            "make lib (cargo build --release -p xcmig && scripts/link-lib.sh)",
        );
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

    /// The `xcmig` stream tool (crate xcmig-cli): this profile's, else the
    /// release one.
    pub fn xcmig_cli(&self) -> PathBuf {
        let here = self.profile_dir.join("xcmig");
        let p = if here.exists() {
            here
        } else {
            self.target.join("release").join("xcmig")
        };
        require(
            &p,
            "xcmig command",
            "make build (cargo build --release -p xcmig-cli)",
        );
        p
    }

    /// `LD_LIBRARY_PATH` with the simulated libraries first.
    pub fn ld_library_path(&self) -> String {
        format!("{}:{SYSTEM_XEN_LIBDIR}", self.shim_dir().display())
    }
}

/// Run a command that must succeed; returns its stdout as text.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd, TIMEOUT);
    assert!(out.status.success(), "{cmd:?} failed\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Debian's `verify-stream-v2` accepts the libxc stream in `img`.
pub fn verify_stream(img: &Path) {
    let out = run(
        Command::new("python3")
            .arg(VERIFY_STREAM)
            .args(["-f", "libxc", "-i"])
            .arg(img)
            .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python"),
        TIMEOUT,
    );
    assert!(
        out.status.success(),
        "verify-stream-v2 rejected {}\n{}",
        img.display(),
        describe(&out)
    );
}

/// `LD_DEBUG=bindings` output shows `symbol` of `consumer` bound to libxcmig.
/// (`lib` is libxcmig's path, or another library's where the test expects
/// the call to stay there.)
pub fn assert_bound_to_xcmig(ld_debug: &str, consumer: &str, symbol: &str, lib: &Path) {
    let want_to = format!("to {} [0]: normal symbol `{symbol}'", lib.display());
    let found = ld_debug
        .lines()
        .any(|l| l.contains(consumer) && l.contains(&want_to));
    let ours: Vec<&str> = ld_debug
        .lines()
        .filter(|l| l.contains(&format!("`{symbol}'")))
        .collect();
    assert!(
        found,
        "{consumer}'s {symbol} is not bound to {}:\n{ours:#?}",
        lib.display()
    );
}
