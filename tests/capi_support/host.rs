//! A simulated host for the drop-in tests: a temporary `XENSIM_HOST`, the
//! `xensim` command on it, the C harnesses and `libxl-save-helper` set up
//! to run there, and the replies libxl gives the helper.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::save_helper::{run_helper, HelperCmd, HelperRun};
use super::{run, run_ok, Env, TempDir, TIMEOUT};

/// Issue 4 asks for guests of at least 256 MiB.
pub const GUEST_MEMORY: &str = "256M";

/// A simulated host in a temporary directory, with the commands a test
/// runs on it.
pub struct Host {
    /// Where the built pieces are.
    pub env: Env,
    /// The temporary directory; the host itself is its `host` subdirectory.
    pub dir: TempDir,
}

impl Host {
    /// A fresh host; fails the test if libxcmig is not built.
    pub fn new(tag: &str) -> Host {
        let env = Env::locate();
        env.require_libxcmig();
        Host::in_dir(env, TempDir::new(tag))
    }

    /// A host in `dir` (its `host` subdirectory, created here: the
    /// `xensim` command refuses a host directory that does not exist).
    pub fn in_dir(env: Env, dir: TempDir) -> Host {
        std::fs::create_dir_all(dir.join("host")).expect("create the host directory");
        Host { env, dir }
    }

    /// The host directory (`XENSIM_HOST`).
    pub fn path(&self) -> PathBuf {
        self.dir.join("host")
    }

    /// `xensim domain ARGS[0] --host DIR ARGS[1..]`; its stdout.
    pub fn xensim(&self, args: &[&str]) -> String {
        let mut c = Command::new(self.env.xensim());
        c.arg("domain")
            .arg(args[0])
            .arg("--host")
            .arg(self.path())
            .args(&args[1..]);
        run_ok(&mut c)
    }

    /// The last line of a command's output, trimmed.
    pub fn last_line(s: &str) -> String {
        s.lines().last().unwrap_or_default().trim().to_owned()
    }

    /// A [`GUEST_MEMORY`] guest of type `guest` filled from `seed`; its domid.
    pub fn create(&self, guest: &str, seed: u64) -> u32 {
        let out = self.xensim(&[
            "create",
            "--type",
            guest,
            "--memory",
            GUEST_MEMORY,
            "--fill",
            "mixed",
            "--seed",
            &seed.to_string(),
        ]);
        Self::last_line(&out).parse().expect("domid")
    }

    /// A [`GUEST_MEMORY`] x86 PV guest of `bits` (64 or 32) with the `p2m`
    /// layout (`linear` or `tree`) and `vcpus` vCPUs, filled from `seed`;
    /// its domid.
    pub fn create_pv(&self, bits: u32, p2m: &str, vcpus: u32, seed: u64) -> u32 {
        let out = self.xensim(&[
            "create",
            "--type",
            "pv",
            "--vcpus",
            &vcpus.to_string(),
            "--address-size",
            &bits.to_string(),
            "--p2m",
            p2m,
            "--memory",
            GUEST_MEMORY,
            "--fill",
            "mixed",
            "--seed",
            &seed.to_string(),
        ]);
        Self::last_line(&out).parse().expect("domid")
    }

    /// `xensim domain unpause`: lets a restored domain run (a PV guest's
    /// resume code then rebuilds its p2m references).
    pub fn unpause(&self, domid: u32) {
        self.xensim(&["unpause", &domid.to_string()]);
    }

    /// An empty domain to restore into; its domid.
    pub fn create_empty(&self, guest: &str) -> u32 {
        self.create_empty_with_vcpus(guest, 1)
    }

    /// An empty domain of `vcpus` vCPUs to restore into; its domid.
    pub fn create_empty_with_vcpus(&self, guest: &str, vcpus: u32) -> u32 {
        let out = self.xensim(&[
            "create",
            "--type",
            guest,
            "--vcpus",
            &vcpus.to_string(),
            "--memory",
            GUEST_MEMORY,
            "--empty",
        ]);
        Self::last_line(&out).parse().expect("domid")
    }

    /// `xensim domain digest` of a domain.
    pub fn digest(&self, domid: u32) -> String {
        Self::last_line(&self.xensim(&["digest", &domid.to_string()]))
    }

    /// How to run `libxl-save-helper` on this host (`host` is [`Host::path`]).
    pub fn helper_cmd<'a>(&self, host: &'a Path, preload: Option<&'a Path>) -> HelperCmd<'a> {
        HelperCmd {
            ld_library_path: self.env.ld_library_path(),
            preload,
            host,
            extra_env: Vec::new(),
        }
    }

    /// libxl's answer to the helper's `suspend`: 1 once `xg-suspend` has
    /// suspended `domid` through libxenctrl, 0 if it failed.
    pub fn suspend_reply(&self, domid: u32) -> i32 {
        let out = run(
            Command::new(self.env.capi("xg-suspend"))
                .arg(domid.to_string())
                .env("LD_LIBRARY_PATH", self.env.ld_library_path())
                .env("XENSIM_HOST", self.path())
                .env_remove("LD_PRELOAD"),
            TIMEOUT,
        );
        i32::from(out.status.success())
    }

    /// libxl's answer to `postcopy` on a checkpointed stream: 1 once
    /// `domid` runs again, 0 if it could not be resumed.
    pub fn resume_reply(&self, domid: u32) -> i32 {
        let out = run(
            Command::new(self.env.xensim())
                .args(["domain", "resume", "--host"])
                .arg(self.path())
                .arg(domid.to_string()),
            TIMEOUT,
        );
        i32::from(out.status.success())
    }

    /// libxl's answers as a COLO primary saving `src` through the helper:
    /// suspend suspends it, postcopy resumes it, checkpoint acknowledges (0
    /// would be an error for COLO), wait_checkpoint asks for one more
    /// checkpoint, then stops.
    pub fn colo_primary_replies(&self, src: u32) -> impl FnMut(&str) -> i32 + '_ {
        let mut waits = 0;
        move |name: &str| match name {
            "suspend" => self.suspend_reply(src),
            "postcopy" => self.resume_reply(src),
            "checkpoint" => 1,
            "wait_checkpoint" => {
                waits += 1;
                i32::from(waits < 2)
            }
            _ => 0,
        }
    }

    /// A Remus save of `src` through the helper as libxl drives it: suspend;
    /// postcopy resumes the guest; checkpoint asks for another one (1)
    /// twice, then ends replication (0). Asserts that the save succeeded
    /// (a checkpointed save ends without an END record) with three of each
    /// callback. The guest runs again afterwards.
    pub fn remus_save(&self, cmd: &HelperCmd<'_>, src: u32, img: &Path, who: &str) -> HelperRun {
        let mut checkpoints = 0;
        let on_callback = |name: &str| match name {
            "suspend" => self.suspend_reply(src),
            "postcopy" => self.resume_reply(src),
            "checkpoint" => {
                checkpoints += 1;
                i32::from(checkpoints < 3)
            }
            _ => 0,
        };
        // xcflags 1 (live first round), cbflags 0xb8 = suspend + postcopy +
        // checkpoint + switch_qemu_logdirty, stream type 1 = Remus.
        let argv = save_argv(-1, src, 1, 0xb8, 1);
        let save = run_helper(cmd, &argv, img, true, on_callback);
        assert_eq!(
            save.complete,
            Some((0, 0)),
            "{who}: Remus save failed\n{}",
            save.log_text()
        );
        assert_eq!(save.exit_code, Some(0), "{who}\n{}", save.log_text());
        let n = |name: &str| save.callbacks.iter().filter(|c| *c == name).count();
        assert_eq!(
            (n("suspend"), n("postcopy"), n("checkpoint")),
            (3, 3, 3),
            "{who}: {:?}",
            save.callbacks
        );
        save
    }

    /// The failover restore of a Remus stream `img` into `dst` through the
    /// helper (each checkpoint answered 1, as libxl's secondary does until
    /// the stream ends). Asserts that it succeeded after three checkpoints
    /// and that `dst` digests as `digest`.
    pub fn remus_failover(
        &self,
        cmd: &HelperCmd<'_>,
        dst: u32,
        img: &Path,
        digest: &str,
        who: &str,
    ) -> HelperRun {
        // cbflags 0x320 = checkpoint + static_data_done + restore_results.
        let argv = restore_argv(-1, dst, 0x320, 1);
        let restore = run_helper(cmd, &argv, img, false, |name| {
            i32::from(name == "checkpoint")
        });
        assert_eq!(
            restore.complete,
            Some((0, 0)),
            "{who}: Remus restore failed\n{}",
            restore.log_text()
        );
        assert_eq!(restore.exit_code, Some(0), "{who}\n{}", restore.log_text());
        let checkpoints = restore
            .callbacks
            .iter()
            .filter(|c| *c == "checkpoint")
            .count();
        assert_eq!(checkpoints, 3, "{who}: {:?}", restore.callbacks);
        assert_eq!(
            self.digest(dst),
            digest,
            "{who}: Remus failover state differs\n{}",
            restore.log_text()
        );
        restore
    }

    /// Starts the guest workload `xensim domain run` on `domid` (dirtying
    /// `dirty_rate` MiB/s of a `working_set` for at most `seconds`, or
    /// until the domain is suspended) on a thread; join it for its output.
    pub fn start_workload(
        &self,
        domid: u32,
        dirty_rate: &str,
        working_set: &str,
        seconds: &str,
    ) -> std::thread::JoinHandle<std::process::Output> {
        let mut workload = Command::new(self.env.xensim());
        workload
            .args(["domain", "run", "--host"])
            .arg(self.path())
            .args(["--dirty-rate", dirty_rate, "--working-set", working_set])
            .args(["--duration", seconds])
            .arg(domid.to_string());
        std::thread::spawn(move || run(&mut workload, TIMEOUT))
    }

    /// A harness command with the simulated libraries and, if `xcmig`,
    /// libxcmig preloaded.
    pub fn harness(&self, name: &str, xcmig: bool) -> Command {
        let mut c = Command::new(self.env.capi(name));
        c.env("LD_LIBRARY_PATH", self.env.ld_library_path())
            .env("XENSIM_HOST", self.path())
            .env_remove("LD_PRELOAD")
            .env_remove("XENSIM_FAULTS");
        if xcmig {
            c.env("LD_PRELOAD", &self.env.libxcmig);
        }
        c
    }
}

/// `libxl-save-helper --save-domain` arguments as libxl builds them, the
/// stream on fd 3: the COLO back channel's fd (-1 without), the domain,
/// xcflags, callback flags and stream type (0 plain, 1 Remus, 2 COLO).
pub fn save_argv(
    recv_fd: i32,
    domid: u32,
    xcflags: u32,
    cbflags: u32,
    stream_type: u32,
) -> Vec<String> {
    [
        "--save-domain".to_string(),
        "3".into(),
        recv_fd.to_string(),
        domid.to_string(),
        xcflags.to_string(),
        cbflags.to_string(),
        stream_type.to_string(),
    ]
    .into()
}

/// `libxl-save-helper --restore-domain` arguments, the stream on fd 3: the
/// COLO back channel's fd (-1 without), the domain, xenstore event channel
/// 5 and console event channel 6 (both served by dom0), callback flags and
/// stream type.
pub fn restore_argv(send_back_fd: i32, domid: u32, cbflags: u32, stream_type: u32) -> Vec<String> {
    [
        "--restore-domain".to_string(),
        "3".into(),
        send_back_fd.to_string(),
        domid.to_string(),
        "5".into(),
        "0".into(),
        "6".into(),
        "0".into(),
        cbflags.to_string(),
        stream_type.to_string(),
    ]
    .into()
}
