//! A minimal libxl stand-in that drives Debian's `libxl-save-helper`
//! (protocol: reference section 5): it starts the helper with the stream on
//! fd 3, reads the helper's messages from its stdout, and answers the
//! callbacks on its stdin as libxl does.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

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

/// Encoded `u16 len` framed messages from the helper's stdout.
fn read_msg(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; usize::from(u16::from_le_bytes(len))];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

struct Args<'b>(&'b [u8]);

impl Args<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "helper message too short");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn string(&mut self) -> String {
        let n = self.u32() as usize;
        let s = self.take(n);
        String::from_utf8_lossy(s.strip_suffix(&[0]).unwrap_or(s)).into_owned()
    }
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
    let mut stderr = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut run = HelperRun::default();
    while let Some(body) = read_msg(&mut stdout) {
        let mut a = Args(&body);
        let num = u16::from_le_bytes(a.take(2).try_into().expect("2 bytes"));
        let reply = match num {
            1 => {
                let level = a.u32();
                let _errno = a.u32();
                let ctx = a.string();
                let text = a.string();
                run.logs.push((level, ctx, text));
                None
            }
            2 => {
                let ctx = a.string();
                let what = a.string();
                let done = a.u64();
                let total = a.u64();
                run.progress.push((ctx, what, done, total));
                None
            }
            3..=6 => {
                let name =
                    ["suspend", "postcopy", "checkpoint", "wait_checkpoint"][usize::from(num - 3)];
                run.callbacks.push(name.into());
                Some(on_callback(name))
            }
            7 => {
                let domid = a.u32();
                let enable = a.u32();
                run.callbacks
                    .push(format!("switch_qemu_logdirty({domid},{enable})"));
                Some(0)
            }
            8 => {
                let missing = a.u32();
                run.callbacks.push(format!("static_data_done({missing})"));
                Some(0)
            }
            9 => {
                let store = a.u64();
                let console = a.u64();
                run.restore_results = Some((store, console));
                None
            }
            10 => {
                let rc = a.u32() as i32;
                let errno = a.u32() as i32;
                run.complete = Some((rc, errno));
                Some(0)
            }
            n => panic!("unknown helper message {n}"),
        };
        if let Some(r) = reply {
            if stdin.write_all(&r.to_le_bytes()).is_err() {
                break;
            }
        }
    }
    drop(stdin);
    run.exit_code = child.wait().expect("wait for helper").code();
    run.stderr = err_reader.join().expect("stderr reader");
    run
}
