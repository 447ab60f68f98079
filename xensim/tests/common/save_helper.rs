//! A driver for Debian's `libxl-save-helper`, playing libxl's part of the
//! protocol (Xen 4.17, `libxl_save_msgs_gen.pl`; the message codec is
//! [`xcmig_testkit::save_helper`]): the stream descriptor is inherited by
//! the helper, which calls `xc_domain_save`/`xc_domain_restore` on it.
//!
//! `suspend` is answered the way libxl does: suspend the guest, then reply
//! with 1. The guest is suspended with `xc_domain_shutdown(SHUTDOWN_suspend)`
//! through the `xg-suspend` C harness, so it goes through the simulated
//! libxenctrl exactly as an outside toolstack's call would.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{
    describe, inherit_fd, run, tee, wait_until, Host, HostHandle, CMD_TIMEOUT, CONSOLE_EVTCHN,
    OP_TIMEOUT, SAVE_HELPER, STORE_EVTCHN,
};
use xcmig_testkit::save_helper::read_message;
pub use xcmig_testkit::save_helper::{decode, Msg};

/// Callback-flag bits (1 << msgnum) libxl passes.
pub const CB_SUSPEND: u32 = 1 << 3;
/// switch_qemu_logdirty.
pub const CB_SWITCH_QEMU_LOGDIRTY: u32 = 1 << 7;
/// static_data_done.
pub const CB_STATIC_DATA_DONE: u32 = 1 << 8;
/// restore_results.
pub const CB_RESTORE_RESULTS: u32 = 1 << 9;
/// What libxl passes for a plain save (0x88).
pub const SAVE_CBFLAGS: u32 = CB_SUSPEND | CB_SWITCH_QEMU_LOGDIRTY;
/// What libxl passes for a plain restore (0x300).
pub const RESTORE_CBFLAGS: u32 = CB_STATIC_DATA_DONE | CB_RESTORE_RESULTS;
/// `XCFLAGS_LIVE`.
pub const XCFLAGS_LIVE: u32 = 1;

/// What one helper run produced.
#[derive(Debug)]
pub struct HelperRun {
    /// Every message, in order.
    pub messages: Vec<Msg>,
    /// The helper's exit status (None: killed after the timeout).
    pub status: Option<ExitStatus>,
    /// The helper's own stderr.
    pub stderr: String,
    /// A protocol error the driver saw, if any.
    pub protocol_error: Option<String>,
    /// Replies to `suspend` that reported failure, with the reason.
    pub suspend_failures: Vec<String>,
    /// The guest's digest taken in the suspend callback, after the guest
    /// stopped and before the helper was told so: the state the restored
    /// domain must equal.
    pub digest_at_suspend: Option<String>,
}

impl HelperRun {
    /// Asserts the helper exited cleanly after `complete(0, 0)`.
    pub fn assert_ok(&self, what: &str) {
        assert!(
            self.status.is_some_and(|s| s.success()) && self.protocol_error.is_none(),
            "{what} helper failed\n{}",
            self.describe()
        );
        assert_eq!(self.complete(), Some((0, 0)), "{what}\n{}", self.describe());
    }

    /// Every `restore_results(store_gfn, console_gfn)` the helper sent.
    pub fn restore_results(&self) -> Vec<(u64, u64)> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Msg::RestoreResults {
                    store_gfn,
                    console_gfn,
                } => Some((*store_gfn, *console_gfn)),
                _ => None,
            })
            .collect()
    }

    /// `complete`'s (retval, errno), if the helper sent it.
    pub fn complete(&self) -> Option<(i32, i32)> {
        self.messages.iter().find_map(|m| match m {
            Msg::Complete { retval, errno } => Some((*retval, *errno)),
            _ => None,
        })
    }

    /// Log lines at or above a level ("context: text").
    pub fn logs_at_least(&self, level: u32) -> Vec<String> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Msg::Log {
                    level: l,
                    context,
                    text,
                    ..
                } if *l >= level => Some(format!("{context}: {text}")),
                _ => None,
            })
            .collect()
    }

    /// The distinct progress phases ("doing what") in order of appearance.
    pub fn progress_phases(&self) -> Vec<String> {
        let mut phases: Vec<String> = Vec::new();
        for m in &self.messages {
            if let Msg::Progress { what, .. } = m {
                if phases.last() != Some(what) {
                    phases.push(what.clone());
                }
            }
        }
        phases
    }

    /// How many times a callback message was received.
    pub fn count(&self, pred: impl Fn(&Msg) -> bool) -> usize {
        self.messages.iter().filter(|m| pred(m)).count()
    }

    /// Everything, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "status {:?}, complete {:?}, protocol error {:?}, suspend failures {:?}\n",
            self.status,
            self.complete(),
            self.protocol_error,
            self.suspend_failures
        );
        for m in &self.messages {
            if !matches!(m, Msg::Progress { .. }) {
                s.push_str(&format!("  {m:?}\n"));
            }
        }
        s.push_str("--- helper stderr ---\n");
        s.push_str(&super::tail(&self.stderr, 40));
        s
    }
}

/// How to start one helper.
pub enum Mode {
    /// `--save-domain io_fd -1 domid xcflags cbflags 0`.
    Save { domid: u32, xcflags: u32 },
    /// `--restore-domain io_fd -1 domid store_evtchn 0 console_evtchn 0 cbflags 0`.
    Restore {
        domid: u32,
        store_evtchn: u32,
        console_evtchn: u32,
    },
}

impl Mode {
    /// A save of `domid`, live or not.
    pub fn save(domid: u32, live: bool) -> Mode {
        Mode::Save {
            domid,
            xcflags: if live { XCFLAGS_LIVE } else { 0 },
        }
    }

    /// A restore into `domid` with the event channels [`STORE_EVTCHN`] and
    /// [`CONSOLE_EVTCHN`].
    pub fn restore(domid: u32) -> Mode {
        Mode::Restore {
            domid,
            store_evtchn: STORE_EVTCHN,
            console_evtchn: CONSOLE_EVTCHN,
        }
    }
}

/// A migration through two helpers at once, as libxl runs them on two
/// machines: a save of `src` on `from` (live or not) into a socket, a
/// restore into `dst` on `to` from another, and a copy of the stream
/// between them written to `copy`. Returns the save and restore runs and
/// the bytes copied.
pub fn migrate(
    from: &Host,
    src: u32,
    live: bool,
    to: &Host,
    dst: u32,
    copy: &Path,
) -> (HelperRun, HelperRun, u64) {
    let (save_end, tee_in) = UnixStream::pair().expect("socketpair");
    let (tee_out, restore_end) = UnixStream::pair().expect("socketpair");
    let copier = tee(
        tee_in,
        tee_out,
        File::create(copy).expect("create the copy"),
    );
    let (save, restore) = std::thread::scope(|s| {
        let saver = s.spawn(|| {
            run_helper(
                from,
                Mode::save(src, live),
                OwnedFd::from(save_end),
                &[],
                OP_TIMEOUT,
            )
        });
        let restorer = s.spawn(|| {
            run_helper(
                to,
                Mode::restore(dst),
                OwnedFd::from(restore_end),
                &[],
                OP_TIMEOUT,
            )
        });
        (
            saver.join().expect("save driver panicked"),
            restorer.join().expect("restore driver panicked"),
        )
    });
    let copied = copier
        .join()
        .expect("tee panicked")
        .expect("copying the stream failed");
    (save, restore, copied)
}

/// Runs Debian's `libxl-save-helper` on `host` with `io_fd` as the stream,
/// answering its callbacks, until it exits or `timeout` passes (then it is
/// killed and `status` is None). `extra_env` is added to the helper's
/// environment (fault injection).
pub fn run_helper(
    host: &Host,
    mode: Mode,
    io_fd: OwnedFd,
    extra_env: &[(&str, &str)],
    timeout: Duration,
) -> HelperRun {
    let fd = io_fd.as_raw_fd();
    let mut cmd = host.command(SAVE_HELPER);
    match mode {
        Mode::Save { domid, xcflags } => {
            cmd.args(["--save-domain", &fd.to_string(), "-1"])
                .arg(domid.to_string())
                .arg(xcflags.to_string())
                .arg(SAVE_CBFLAGS.to_string())
                .arg("0");
        }
        Mode::Restore {
            domid,
            store_evtchn,
            console_evtchn,
        } => {
            cmd.args(["--restore-domain", &fd.to_string(), "-1"])
                .arg(domid.to_string())
                .arg(store_evtchn.to_string())
                .arg("0")
                .arg(console_evtchn.to_string())
                .arg("0")
                .arg(RESTORE_CBFLAGS.to_string())
                .arg("0");
        }
    }
    let suspend_domid = match mode {
        Mode::Save { domid, .. } => Some(domid),
        Mode::Restore { .. } => None,
    };
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    inherit_fd(&mut cmd, fd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {SAVE_HELPER}: {e}"));
    // The child has its copy; ours must go so that EOF propagates.
    drop(io_fd);

    let mut to_helper = child.stdin.take().expect("piped stdin");
    let mut from_helper = child.stdout.take().expect("piped stdout");
    let err_pipe = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = err_pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let host_for_suspend = host.handle();
    let protocol = std::thread::spawn(move || {
        let mut messages = Vec::new();
        let mut suspend_failures = Vec::new();
        let mut digest_at_suspend = None;
        let error = serve(
            &mut from_helper,
            &mut to_helper,
            &mut messages,
            &mut suspend_failures,
            |_| match suspend_domid {
                Some(domid) => {
                    suspend_guest(&host_for_suspend, domid)?;
                    digest_at_suspend = Some(host_for_suspend.digest(domid)?);
                    Ok(())
                }
                None => Err("suspend asked on a plain restore".into()),
            },
        )
        .err();
        (messages, suspend_failures, digest_at_suspend, error)
    });

    let status = wait_until(&mut child, Instant::now() + timeout);
    let (messages, suspend_failures, digest_at_suspend, protocol_error) =
        protocol.join().expect("protocol thread panicked");
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    HelperRun {
        messages,
        status,
        stderr,
        protocol_error,
        suspend_failures,
        digest_at_suspend,
    }
}

/// Reads messages until EOF, answering those that need a reply. Returns
/// Err on a malformed message (the helper is then left to time out or die).
fn serve(
    from: &mut impl Read,
    to: &mut impl Write,
    messages: &mut Vec<Msg>,
    suspend_failures: &mut Vec<String>,
    mut suspend: impl FnMut(&Msg) -> Result<(), String>,
) -> Result<(), String> {
    // Until the helper closes its stdout.
    while let Some(msg) = read_message(from)? {
        let reply = match &msg {
            Msg::Log { .. } | Msg::Progress { .. } | Msg::RestoreResults { .. } => None,
            Msg::Suspend => Some(match suspend(&msg) {
                Ok(()) => 1,
                Err(e) => {
                    suspend_failures.push(e);
                    0
                }
            }),
            // Plain streams never ask these; 0 makes the helper stop.
            Msg::Postcopy | Msg::Checkpoint | Msg::WaitCheckpoint => Some(0),
            Msg::SwitchQemuLogdirty { .. } | Msg::StaticDataDone { .. } => Some(0),
            Msg::Complete { .. } => Some(0),
        };
        messages.push(msg);
        if let Some(r) = reply {
            let r: i32 = r;
            // The helper may already be gone after `complete`; that is fine.
            let _ = to.write_all(&r.to_le_bytes()).and_then(|()| to.flush());
        }
    }
    Ok(())
}

/// Suspends a guest as a toolstack does, through the `xg-suspend` harness.
pub fn suspend_guest(host: &HostHandle, domid: u32) -> Result<(), String> {
    let out = run(
        host.command(host.env.capi("xg-suspend"))
            .arg(domid.to_string()),
        CMD_TIMEOUT,
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "xg-suspend {domid} failed: {}\n{}",
            out.status,
            describe(&out)
        ))
    }
}
