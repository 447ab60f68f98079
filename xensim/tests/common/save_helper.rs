//! A driver for Debian's `libxl-save-helper`, playing libxl's part of the
//! protocol (Xen 4.17, `libxl_save_msgs_gen.pl`):
//!
//! ```text
//!  driver                                 libxl-save-helper
//!    | argv: --save-domain / --restore-domain ...  |
//!    |  stream fd inherited (io_fd) ---------------|--> xc_domain_save/restore
//!    |<-- stdout: u16 len, u16 msgnum, args -------|
//!    |--> stdin: i32 reply (callbacks that need one)|
//! ```
//!
//! Messages: 1 log, 2 progress, 3 suspend, 4 postcopy, 5 checkpoint,
//! 6 wait_checkpoint, 7 switch_qemu_logdirty, 8 static_data_done,
//! 9 restore_results, 10 complete. Integers are native (little-endian)
//! 4 bytes, `unsigned long`/`xen_pfn_t` 8 bytes, strings a u32 length
//! including the trailing NUL and the bytes.
//!
//! `suspend` is answered the way libxl does: suspend the guest, then reply
//! with 1. The guest is suspended with `xc_domain_shutdown(SHUTDOWN_suspend)`
//! through the `xg-suspend` C harness, so it goes through the simulated
//! libxenctrl exactly as an outside toolstack's call would.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{describe, inherit_fd, run, wait_until, Host, HostHandle, CMD_TIMEOUT, SAVE_HELPER};

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

/// One decoded message from the helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// A log line (xentoollog level, errno or -1, context, text).
    Log {
        level: u32,
        errno: i32,
        context: String,
        text: String,
    },
    /// A progress report.
    Progress {
        context: String,
        what: String,
        done: u64,
        total: u64,
    },
    /// Suspend the guest; reply non-zero when done.
    Suspend,
    /// Checkpointed streams only.
    Postcopy,
    /// Checkpointed streams only.
    Checkpoint,
    /// COLO only.
    WaitCheckpoint,
    /// Switch the device model's log-dirty tracking; reply 0 for success.
    SwitchQemuLogdirty { domid: u32, enable: u32 },
    /// Static data (CPU policy) is in place; reply 0 for success.
    StaticDataDone { missing: u32 },
    /// Restore outputs.
    RestoreResults { store_gfn: u64, console_gfn: u64 },
    /// The helper's final result; reply 0, then it exits.
    Complete { retval: i32, errno: i32 },
}

/// Cursor over a message body with bounds-checked little-endian reads.
struct Body<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() - self.at < n {
            return Err(format!(
                "message body of {} bytes ends at {} while {n} more were expected",
                self.b.len(),
                self.at
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        match bytes.split_last() {
            Some((0, text)) => Ok(String::from_utf8_lossy(text).into_owned()),
            _ => Err(format!("string of {n} bytes is not NUL-terminated")),
        }
    }
    fn end(&self) -> Result<(), String> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(format!(
                "{} trailing bytes in a message",
                self.b.len() - self.at
            ))
        }
    }
}

/// Decodes one message body (without its u16 length).
pub fn decode(body: &[u8]) -> Result<Msg, String> {
    let mut b = Body { b: body, at: 0 };
    let num = b.u16()?;
    let msg = match num {
        1 => Msg::Log {
            level: b.u32()?,
            errno: b.i32()?,
            context: b.string()?,
            text: b.string()?,
        },
        2 => Msg::Progress {
            context: b.string()?,
            what: b.string()?,
            done: b.u64()?,
            total: b.u64()?,
        },
        3 => Msg::Suspend,
        4 => Msg::Postcopy,
        5 => Msg::Checkpoint,
        6 => Msg::WaitCheckpoint,
        7 => Msg::SwitchQemuLogdirty {
            domid: b.u32()?,
            enable: b.u32()?,
        },
        8 => Msg::StaticDataDone { missing: b.u32()? },
        9 => Msg::RestoreResults {
            store_gfn: b.u64()?,
            console_gfn: b.u64()?,
        },
        10 => Msg::Complete {
            retval: b.i32()?,
            errno: b.i32()?,
        },
        n => return Err(format!("unknown message number {n}")),
    };
    b.end()?;
    Ok(msg)
}

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
    loop {
        let mut len = [0u8; 2];
        match read_full(from, &mut len) {
            Ok(true) => {}
            Ok(false) => return Ok(()), // the helper closed its stdout
            Err(e) => return Err(format!("reading a message length: {e}")),
        }
        let mut body = vec![0u8; u16::from_le_bytes(len) as usize];
        match read_full(from, &mut body) {
            Ok(true) => {}
            Ok(false) => return Err("EOF inside a message".into()),
            Err(e) => return Err(format!("reading a message body: {e}")),
        }
        let msg = decode(&body)?;
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
}

/// Fills `buf`; Ok(false) on EOF before the first byte.
fn read_full(from: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match from.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "EOF inside a message",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
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
