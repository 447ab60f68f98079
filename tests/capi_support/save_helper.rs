//! A minimal libxl stand-in that drives Debian's `libxl-save-helper`
//! (protocol: reference section 5; codec in [`xcmig_testkit::save_helper`]):
//! it starts the helper with the stream on fd 3, reads the helper's messages
//! from its stdout, and answers the callbacks on its stdin as libxl does. A
//! helper still running after [`super::TIMEOUT`] is killed and fails the test.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xcmig_testkit::process::{drain, Watched};
use xcmig_testkit::save_helper::{read_message, Msg};

/// What the helper said during one run.
#[derive(Debug, Default)]
pub struct HelperRun {
    /// `log` messages: (xentoollog level, context, text).
    pub logs: Vec<(u32, String, String)>,
    /// `progress` messages: (context, doing_what, done, total).
    pub progress: Vec<(String, String, u64, u64)>,
    /// Callback names, in order.
    pub callbacks: Vec<String>,
    /// `restore_results`: (store gfn, console gfn).
    pub restore_results: Option<(u64, u64)>,
    /// `complete`: (retval, errno).
    pub complete: Option<(i32, i32)>,
    /// The helper's exit status.
    pub exit_code: Option<i32>,
    /// The helper's stderr.
    pub stderr: String,
}

impl HelperRun {
    /// All log lines, for assertion messages.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|(l, c, t)| format!("[{l}] {c}: {t}\n"))
            .collect::<String>()
            + &self.stderr
    }
}

/// How to run the helper.
pub struct HelperCmd<'a> {
    /// `LD_LIBRARY_PATH`.
    pub ld_library_path: String,
    /// `LD_PRELOAD` (libxcmig) or none for Debian's libxenguest.
    pub preload: Option<&'a Path>,
    /// `XENSIM_HOST`.
    pub host: &'a Path,
    /// Extra environment (e.g. `LD_DEBUG`).
    pub extra_env: Vec<(&'a str, String)>,
}

/// Run the helper with `argv` (after the program name), the stream file
/// opened on fd 3 for writing (`save`) or reading, and `on_callback` called
/// with the name of each `suspend`, `postcopy`, `checkpoint` and
/// `wait_checkpoint` callback (its result is the reply);
/// `switch_qemu_logdirty` and `static_data_done` are answered 0 (success).
pub fn run_helper(
    cmd: &HelperCmd<'_>,
    argv: &[String],
    stream: &Path,
    save: bool,
    on_callback: impl FnMut(&str) -> i32,
) -> HelperRun {
    let redir = if save { Redir::Write } else { Redir::Read };
    run_helper_fds(cmd, argv, &[(3, redir, stream)], on_callback)
}

/// How a descriptor handed to the helper is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redir {
    /// `N<path`.
    Read,
    /// `N>path`.
    Write,
}

/// [`run_helper`] with any descriptors: each `(fd, how, path)` is opened by
/// the shell, in order, without close-on-exec, as libxl hands the helper
/// its descriptors (paths may be FIFOs shared with another helper).
pub fn run_helper_fds(
    cmd: &HelperCmd<'_>,
    argv: &[String],
    fds: &[(u32, Redir, &Path)],
    mut on_callback: impl FnMut(&str) -> i32,
) -> HelperRun {
    let mut script = String::from("exec \"$0\" \"$@\"");
    for (i, (fd, how, _)) in fds.iter().enumerate() {
        let op = if *how == Redir::Write { '>' } else { '<' };
        script.push_str(&format!(" {fd}{op}\"$XCMIG_TEST_FD{i}\""));
    }
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .arg(super::SAVE_HELPER)
        .args(argv)
        .env("LD_LIBRARY_PATH", &cmd.ld_library_path)
        .env("XENSIM_HOST", cmd.host)
        .env_remove("LD_PRELOAD")
        .env_remove("XENSIM_FAULTS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (i, (_, _, path)) in fds.iter().enumerate() {
        c.env(format!("XCMIG_TEST_FD{i}"), path);
    }
    if let Some(p) = cmd.preload {
        c.env("LD_PRELOAD", p);
    }
    for (k, v) in &cmd.extra_env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn libxl-save-helper");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let stderr = drain(child.stderr.take());
    // Killing a helper that overruns closes its stdout and ends the loop.
    let watched = Watched::new(child, super::TIMEOUT);
    let mut run = HelperRun::default();
    loop {
        let msg = match read_message(&mut stdout) {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(e) => panic!("libxl-save-helper protocol: {e}"),
        };
        let reply = match msg {
            Msg::Log {
                level,
                context,
                text,
                ..
            } => {
                run.logs.push((level, context, text));
                None
            }
            Msg::Progress {
                context,
                what,
                done,
                total,
            } => {
                run.progress.push((context, what, done, total));
                None
            }
            Msg::Suspend => Some(callback(&mut run, &mut on_callback, "suspend")),
            Msg::Postcopy => Some(callback(&mut run, &mut on_callback, "postcopy")),
            Msg::Checkpoint => Some(callback(&mut run, &mut on_callback, "checkpoint")),
            Msg::WaitCheckpoint => Some(callback(&mut run, &mut on_callback, "wait_checkpoint")),
            Msg::SwitchQemuLogdirty { domid, enable } => {
                run.callbacks
                    .push(format!("switch_qemu_logdirty({domid},{enable})"));
                Some(0)
            }
            Msg::StaticDataDone { missing } => {
                run.callbacks.push(format!("static_data_done({missing})"));
                Some(0)
            }
            Msg::RestoreResults {
                store_gfn,
                console_gfn,
            } => {
                run.restore_results = Some((store_gfn, console_gfn));
                None
            }
            Msg::Complete { retval, errno } => {
                run.complete = Some((retval, errno));
                Some(0)
            }
        };
        if let Some(r) = reply {
            if stdin.write_all(&r.to_le_bytes()).is_err() {
                break;
            }
        }
    }
    drop(stdin);
    let status = watched.wait();
    run.stderr = String::from_utf8_lossy(&stderr.collect(Instant::now() + Duration::from_secs(10)))
        .into_owned();
    let Some(status) = status else {
        panic!(
            "libxl-save-helper {argv:?} did not finish within {:?}; killed it.\n{}",
            super::TIMEOUT,
            run.log_text()
        );
    };
    run.exit_code = status.code();
    run
}

/// Records a callback by name and returns the test's reply to it.
fn callback(run: &mut HelperRun, on_callback: &mut impl FnMut(&str) -> i32, name: &str) -> i32 {
    run.callbacks.push(name.into());
    on_callback(name)
}
