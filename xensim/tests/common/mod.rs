//! Support shared by the xensim integration tests: where the built pieces
//! are, temporary hosts, the `xensim` command, child processes with
//! timeouts, and Debian's stream verifier.
//!
//! Every test runs real processes the way an outside toolstack would: the
//! `xensim` command, the C harnesses from `capi-tests/` and Debian's
//! `libxl-save-helper`, with `LD_LIBRARY_PATH` selecting the simulated
//! libxenctrl family ahead of the system's Xen libraries and `XENSIM_HOST`
//! naming a fresh host directory per test.
//!
//! A missing prerequisite fails the test with the build step that makes it.

#![allow(dead_code, unused_imports)] // each test crate uses a different part of this module

pub mod capi;
pub mod save_helper;
pub mod stream;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use xcmig_testkit::process::{describe, run, tail, wait_until, Background};

/// Debian's save/restore helper (package xen-utils-4.17).
pub const SAVE_HELPER: &str = "/usr/lib/xen-4.17/bin/libxl-save-helper";
/// Debian's stream verifier (package xen-utils-4.17).
pub const VERIFY_STREAM: &str = "/usr/lib/xen-4.17/bin/verify-stream-v2";
/// Python modules `verify-stream-v2` imports.
pub const VERIFY_PYTHONPATH: &str = "/usr/lib/xen-4.17/lib/python";
/// Where Debian installs the real Xen libraries (libxenguest, libxentoollog).
pub const SYSTEM_XEN_LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

/// Guest size used by the interop evidence (issue 3 asks for at least 256 MiB).
pub const GUEST_MEMORY: &str = "256M";
/// Frames in a [`GUEST_MEMORY`] guest.
pub const GUEST_PAGES: u64 = 256 * 256;

/// Event channels handed to a restore, as a toolstack allocates them.
pub const STORE_EVTCHN: u32 = 5;
/// The console's.
pub const CONSOLE_EVTCHN: u32 = 6;

/// Time allowed for one save or restore of a [`GUEST_MEMORY`] guest.
pub const OP_TIMEOUT: Duration = Duration::from_secs(240);
/// Time allowed for a short `xensim` command.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// The built pieces the tests run, found from the `xensim` binary's location
/// (`<target>/<profile>/xensim`).
#[derive(Clone, Debug)]
pub struct Env {
    /// Cargo's target directory.
    pub target: PathBuf,
    /// The `xensim` command built with these tests.
    pub xensim: PathBuf,
    /// `<target>/xensim/lib`: the simulated libxenctrl family.
    pub shim_dir: PathBuf,
    /// `<target>/capi-tests`: the C harnesses.
    pub capi_dir: PathBuf,
}

fn require(path: &Path, what: &str, step: &str) {
    assert!(
        path.exists(),
        "prerequisite missing: {what} ({}) does not exist; build it with `{step}`",
        path.display()
    );
}

impl Env {
    /// Where the pieces should be, without checking that they are.
    pub fn locate() -> Env {
        let xensim = PathBuf::from(env!("CARGO_BIN_EXE_xensim"));
        let target = xensim
            .parent()
            .and_then(Path::parent)
            .expect("the xensim binary lives in <target>/<profile>/")
            .to_path_buf();
        Env {
            shim_dir: target.join("xensim").join("lib"),
            capi_dir: target.join("capi-tests"),
            target,
            xensim,
        }
    }

    /// A C harness that must exist.
    pub fn require_capi(&self, name: &str) -> PathBuf {
        let p = self.capi(name);
        require(
            &p,
            "C harness",
            "make build (or make -C capi-tests OUT=<target>/capi-tests)",
        );
        p
    }

    /// Locates everything and fails, naming the build step, if a piece is missing.
    pub fn get() -> Env {
        let env = Env::locate();
        for lib in [
            "libxenctrl.so.4.17",
            "libxenforeignmemory.so.1",
            "libxencall.so.1",
            "libxenevtchn.so.1",
        ] {
            require(
                &env.shim_dir.join(lib),
                "simulated Xen library",
                "make build (scripts/link-shims.sh links target/xensim/lib)",
            );
        }
        for prog in ["xg-save", "xg-restore", "xg-suspend", "xg-hvmparam"] {
            env.require_capi(prog);
        }
        for lib in ["libxenguest.so.4.17", "libxentoollog.so.1"] {
            require(
                &Path::new(SYSTEM_XEN_LIBDIR).join(lib),
                "Debian's Xen library",
                "make deps (package libxenmisc4.17)",
            );
        }
        require(
            Path::new(SAVE_HELPER),
            "libxl-save-helper",
            "make deps (package xen-utils-4.17)",
        );
        require(
            Path::new(VERIFY_STREAM),
            "verify-stream-v2",
            "make deps (package xen-utils-4.17)",
        );
        let python = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("python3"))
                    .find(|p| p.exists())
            })
            .unwrap_or_default();
        assert!(
            python.is_some(),
            "prerequisite missing: python3 (verify-stream-v2 runs on it) is not on PATH; \
             install it with `make deps` (package python3)"
        );
        env
    }

    /// Path of a C harness.
    pub fn capi(&self, name: &str) -> PathBuf {
        self.capi_dir.join(name)
    }

    /// `LD_LIBRARY_PATH` with the simulated libraries first.
    pub fn ld_library_path(&self) -> String {
        format!("{}:{SYSTEM_XEN_LIBDIR}", self.shim_dir.display())
    }
}

static HOST_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A simulated host in a fresh temporary directory, removed on drop unless
/// `XENSIM_TEST_KEEP` is set (for post-mortems).
pub struct Host {
    /// The host directory (`XENSIM_HOST`).
    pub dir: PathBuf,
    /// Where the built pieces are.
    pub env: Env,
}

impl Host {
    /// Creates an empty host directory named after the test.
    pub fn new(test: &str) -> Host {
        let env = Env::get();
        let n = HOST_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("xensim-test-{}-{n}-{test}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove a stale host directory");
        }
        std::fs::create_dir_all(&dir).expect("create the host directory");
        Host { dir, env }
    }

    /// A path inside the host directory's scratch area (for stream files).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let d = self.dir.join("test-scratch");
        std::fs::create_dir_all(&d).expect("create the scratch directory");
        d.join(name)
    }

    /// A non-owning handle that other threads can use to run commands on
    /// this host.
    pub fn handle(&self) -> HostHandle {
        HostHandle {
            dir: self.dir.clone(),
            env: self.env.clone(),
        }
    }

    /// A command with this host and the simulated libraries in its environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.handle().command(program)
    }

    /// `xensim domain SUB --host DIR ARGS...`.
    pub fn xensim_cmd(&self, sub: &str, args: &[&str]) -> Command {
        let mut cmd = self.command(&self.env.xensim);
        cmd.arg("domain").arg(sub).arg("--host").arg(&self.dir);
        cmd.args(args);
        cmd
    }

    /// Runs `xensim domain SUB ...` and returns stdout; fails the test on error.
    pub fn xensim(&self, sub: &str, args: &[&str]) -> String {
        let out = run(&mut self.xensim_cmd(sub, args), CMD_TIMEOUT);
        assert!(
            out.status.success(),
            "xensim domain {sub} {args:?} failed: {}\n{}",
            out.status,
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a populated guest and returns its domid (the last output line).
    pub fn create(&self, guest_type: &str, memory: &str, fill: &str, seed: u64) -> u32 {
        let seed = seed.to_string();
        let out = self.xensim(
            "create",
            &[
                "--type", guest_type, "--memory", memory, "--fill", fill, "--seed", &seed,
            ],
        );
        parse_domid(&out)
    }

    /// Creates the empty domain a toolstack restores into.
    pub fn create_empty(&self, guest_type: &str, memory: &str) -> u32 {
        let out = self.xensim(
            "create",
            &["--type", guest_type, "--memory", memory, "--empty"],
        );
        parse_domid(&out)
    }

    /// The digest `xensim domain digest` prints for a domain.
    pub fn digest(&self, domid: u32) -> String {
        self.handle()
            .digest(domid)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `xensim domain info` as a key=value map.
    pub fn info(&self, domid: u32) -> std::collections::HashMap<String, String> {
        let out = self.xensim("info", &[&domid.to_string()]);
        out.lines()
            .flat_map(|l| l.split_whitespace())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Asserts what `xensim domain info` reports for some keys.
    pub fn assert_info(&self, domid: u32, expect: &[(&str, &str)], context: &str) {
        let info = self.info(domid);
        for (k, v) in expect {
            assert_eq!(
                info.get(*k).map(String::as_str),
                Some(*v),
                "{context}: domain {domid} reports {k}={:?}, expected {v} (info {info:?})",
                info.get(*k)
            );
        }
    }

    /// Asserts `domid` is as a save leaves it: suspended, log-dirty off.
    pub fn assert_saved(&self, domid: u32, context: &str) {
        self.assert_info(
            domid,
            &[
                ("shutdown", "1"),
                ("shutdown_reason", "2"),
                ("logdirty", "0"),
            ],
            context,
        );
    }

    /// Starts the guest workload `xensim domain run` in the background.
    pub fn start_workload(&self, domid: u32, dirty_rate: &str, working_set: &str) -> Background {
        let mut cmd = self.xensim_cmd(
            "run",
            &[
                &domid.to_string(),
                "--dirty-rate",
                dirty_rate,
                "--working-set",
                working_set,
            ],
        );
        Background::spawn(&mut cmd, "xensim domain run")
    }
}

/// A host's paths without ownership of its directory.
#[derive(Clone, Debug)]
pub struct HostHandle {
    /// The host directory (`XENSIM_HOST`).
    pub dir: PathBuf,
    /// Where the built pieces are.
    pub env: Env,
}

impl HostHandle {
    /// The digest `xensim domain digest` prints for a domain (its last line).
    pub fn digest(&self, domid: u32) -> Result<String, String> {
        let mut cmd = self.command(&self.env.xensim);
        cmd.args(["domain", "digest", "--host"])
            .arg(&self.dir)
            .arg(domid.to_string());
        let out = run(&mut cmd, CMD_TIMEOUT);
        if !out.status.success() {
            return Err(format!(
                "xensim domain digest {domid} failed: {}\n{}",
                out.status,
                describe(&out)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        if line.len() >= 32 && line.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(line)
        } else {
            Err(format!(
                "xensim domain digest printed {line:?}, not a hex digest"
            ))
        }
    }

    /// A command with this host and the simulated libraries in its environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("XENSIM_HOST", &self.dir)
            .env("LD_LIBRARY_PATH", self.env.ld_library_path())
            .env_remove("XENSIM_FAULTS")
            .env_remove("LD_PRELOAD");
        cmd
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::env::var_os("XENSIM_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Parses the domid `xensim domain create` prints on its last line.
pub fn parse_domid(out: &str) -> u32 {
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("xensim domain create printed nothing"));
    last.trim()
        .parse()
        .unwrap_or_else(|_| panic!("xensim domain create's last line {last:?} is not a domid"))
}

/// Runs Debian's `verify-stream-v2 -f libxc` on a stream file and fails the
/// test if it rejects it.
pub fn verify_stream(path: &Path) {
    let mut cmd = Command::new("python3");
    cmd.arg(VERIFY_STREAM)
        .args(["-v", "-f", "libxc", "-i"])
        .arg(path)
        .env("PYTHONPATH", VERIFY_PYTHONPATH);
    let out = run(&mut cmd, OP_TIMEOUT);
    assert!(
        out.status.success(),
        "verify-stream-v2 rejected {}: {}\n{}",
        path.display(),
        out.status,
        describe(&out)
    );
}

/// Asserts a stream is accepted by Debian's verifier, ends with END and
/// carries every page of a [`GUEST_MEMORY`] guest; summarises it.
pub fn check_stream(img: &Path) -> stream::StreamSummary {
    verify_stream(img);
    let data = std::fs::read(img).expect("read the stream file");
    let s = stream::summarise(&data).unwrap_or_else(|e| panic!("stream walk failed: {e}"));
    assert!(s.ended, "the stream has no END record: {s:?}");
    assert!(
        s.distinct_pfns >= GUEST_PAGES,
        "the stream carries {} distinct pages, fewer than the guest's {GUEST_PAGES}: {s:?}",
        s.distinct_pfns
    );
    s
}

/// Lines of a harness's stderr that start with `prefix` (e.g. "xg-save: ").
pub fn tagged_lines<'a>(stderr: &'a str, prefix: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

/// The value of `key=VALUE` in a line of space-separated fields.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Parses `0x`-prefixed hex or decimal.
pub fn parse_num(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Copies a stream from `from` to both `to` and `copy` until EOF on `from`,
/// on a thread, and returns the bytes copied. If `to` stops accepting data
/// (the restorer died), the rest still goes to `copy`, so the saver never
/// blocks forever on a full pipe.
pub fn tee(
    mut from: std::os::unix::net::UnixStream,
    to: std::os::unix::net::UnixStream,
    mut copy: std::fs::File,
) -> JoinHandle<std::io::Result<u64>> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut to = Some(to);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            copy.write_all(&buf[..n])?;
            if let Some(t) = to.as_mut() {
                if t.write_all(&buf[..n]).is_err() {
                    to = None;
                }
            }
            total += n as u64;
        }
        copy.flush()?;
        Ok(total)
    })
}

/// Makes `fd` (CLOEXEC in this process, like every descriptor Rust opens)
/// survive `exec` in the child `cmd` starts, and in that child alone, the
/// way a toolstack hands a stream descriptor to a helper.
pub fn inherit_fd(cmd: &mut Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls fcntl(2), which is async-signal-safe and touches no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// HVM param indices a restore sets on purpose (xen/hvm/params.h).
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// Xenstore event channel.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// Console ring gfn.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// Console event channel.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;

impl Host {
    /// HVM params read through libxenctrl (`xg-hvmparam`).
    pub fn hvm_params(&self, domid: u32, indices: &[u32]) -> Vec<u64> {
        let mut cmd = self.command(self.env.capi("xg-hvmparam"));
        cmd.arg(domid.to_string())
            .args(indices.iter().map(u32::to_string));
        let out = run(&mut cmd, CMD_TIMEOUT);
        assert!(
            out.status.success(),
            "xg-hvmparam failed\n{}",
            describe(&out)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        indices
            .iter()
            .map(|i| {
                let prefix = format!("param {i} ");
                text.lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .and_then(parse_num)
                    .unwrap_or_else(|| panic!("xg-hvmparam printed no param {i}:\n{text}"))
            })
            .collect()
    }

    /// Reads one page of a domain's memory from its file (README section 3:
    /// `domains/<domid>/mem`, frame F at offset F*4096).
    pub fn read_page(&self, domid: u32, gfn: u64) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let path = self.dir.join("domains").join(domid.to_string()).join("mem");
        let f =
            std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut page = vec![0u8; 4096];
        f.read_exact_at(&mut page, gfn * 4096)
            .unwrap_or_else(|e| panic!("read gfn {gfn:#x} of {}: {e}", path.display()));
        page
    }

    /// Grant-table entry `n` (v1: u16 flags, u16 domid, u32 frame) of a
    /// domain's grant frame 0 (README section 3: `domains/<domid>/grant`).
    pub fn grant_entry(&self, domid: u32, n: u64) -> (u16, u16, u32) {
        use std::os::unix::fs::FileExt;
        let path = self
            .dir
            .join("domains")
            .join(domid.to_string())
            .join("grant");
        let f =
            std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut e = [0u8; 8];
        f.read_exact_at(&mut e, n * 8)
            .unwrap_or_else(|err| panic!("read grant entry {n} of {}: {err}", path.display()));
        (
            u16::from_le_bytes([e[0], e[1]]),
            u16::from_le_bytes([e[2], e[3]]),
            u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
        )
    }

    /// What a restore must leave beyond the digest (which leaves these out
    /// on purpose): the event channels from its arguments, the magic-page
    /// params equal to the gfns it reported, those pages cleared, and grant
    /// entries 0 (console) and 1 (xenstore) seeded for dom0.
    pub fn assert_restore_plumbing(
        &self,
        domid: u32,
        store_gfn: u64,
        console_gfn: u64,
        store_evtchn: u64,
        console_evtchn: u64,
    ) {
        let p = self.hvm_params(
            domid,
            &[
                HVM_PARAM_STORE_PFN,
                HVM_PARAM_STORE_EVTCHN,
                HVM_PARAM_CONSOLE_PFN,
                HVM_PARAM_CONSOLE_EVTCHN,
            ],
        );
        assert_eq!(
            p,
            vec![store_gfn, store_evtchn, console_gfn, console_evtchn],
            "restored params STORE_PFN, STORE_EVTCHN, CONSOLE_PFN, CONSOLE_EVTCHN"
        );
        for (what, gfn) in [("xenstore", store_gfn), ("console", console_gfn)] {
            assert!(
                self.read_page(domid, gfn).iter().all(|&b| b == 0),
                "the restored {what} page {gfn:#x} was not cleared"
            );
        }
        self.assert_grants_seeded(domid, store_gfn, console_gfn);
    }

    /// Asserts grant entries 0 (console) and 1 (xenstore) of `domid` let
    /// dom0 at the frames a restore reported (gfns, or MFNs for PV).
    pub fn assert_grants_seeded(&self, domid: u32, store: u64, console: u64) {
        const GTF_PERMIT_ACCESS: u16 = 1;
        assert_eq!(
            self.grant_entry(domid, 0),
            (GTF_PERMIT_ACCESS, 0, console as u32),
            "grant entry 0 (console) of domain {domid}"
        );
        assert_eq!(
            self.grant_entry(domid, 1),
            (GTF_PERMIT_ACCESS, 0, store as u32),
            "grant entry 1 (xenstore) of domain {domid}"
        );
    }
}
