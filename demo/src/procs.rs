//! Child processes of the demo: started with their output read line by
//! line on threads (each line logged to a file and forwarded, timestamped,
//! to the main loop), stopped when dropped, waited for with a deadline.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::sys;

/// Which child a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// `xg-save` on the source host.
    Saver,
    /// `xg-restore` on the destination host.
    Restorer,
    /// `xensim domain run`, the guest's workload.
    Workload,
}

/// A message to the main loop.
#[derive(Debug)]
pub enum Msg {
    /// A line of output.
    Line {
        /// From whom.
        who: Who,
        /// True for stderr.
        stderr: bool,
        /// When it was read.
        at: Instant,
        /// The line, without its newline.
        text: String,
    },
    /// The child closed its stdout and stderr.
    Closed(Who),
}

/// A running child, stopped (SIGTERM, then SIGKILL) and reaped on drop.
pub struct Proc {
    /// For messages.
    pub name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr read on threads: each line is
    /// appended to `log` and sent to `tx`; `Msg::Closed` follows the last.
    pub fn spawn(
        cmd: &mut Command,
        name: &str,
        who: Who,
        log: &Path,
        tx: &Sender<Msg>,
    ) -> Result<Proc, String> {
        let log_file = File::create(log)
            .map_err(|e| format!("cannot create the log {}: {e}", log.display()))?;
        sys::die_with_parent(cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let log_out = log_file
            .try_clone()
            .map_err(|e| format!("log {}: {e}", log.display()))?;
        let (tx_out, tx_err) = (tx.clone(), tx.clone());
        let t_out = std::thread::spawn(move || forward(out, who, false, log_out, tx_out));
        std::thread::spawn(move || {
            forward(err, who, true, log_file, tx_err.clone());
            let _ = t_out.join();
            let _ = tx_err.send(Msg::Closed(who));
        });
        Ok(Proc {
            name: name.to_string(),
            child,
            status: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has exited (reaped once, remembered).
    pub fn poll(&mut self) -> Result<Option<ExitStatus>, String> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| format!("waiting for {}: {e}", self.name))?;
        }
        Ok(self.status)
    }

    /// Waits until the child exits or `deadline` passes (then an error).
    pub fn wait_until(&mut self, deadline: Instant) -> Result<ExitStatus, String> {
        loop {
            if let Some(s) = self.poll()? {
                return Ok(s);
            }
            check_interrupted()?;
            if Instant::now() >= deadline {
                return Err(format!("{} did not finish in time", self.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.poll(), Ok(Some(_))) {
            return;
        }
        sys::terminate(self.child.id());
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(r: impl Read, who: Who, stderr: bool, mut log: File, tx: Sender<Msg>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let at = Instant::now();
                let _ = log.write_all(&buf);
                let text = String::from_utf8_lossy(&buf).trim_end().to_string();
                // The main loop may be gone (error path); keep draining so
                // the child never blocks on a full pipe.
                let _ = tx.send(Msg::Line {
                    who,
                    stderr,
                    at,
                    text,
                });
            }
        }
    }
}

/// An error if SIGINT, SIGTERM or SIGHUP arrived.
pub fn check_interrupted() -> Result<(), String> {
    match sys::signalled() {
        Some(sig) => Err(format!("interrupted by signal {sig}")),
        None => Ok(()),
    }
}

/// Runs a short command to completion (stopped at `deadline`); returns its
/// stdout, or an error naming `what` with its stderr.
pub fn run_to_end(cmd: &mut Command, what: &str, deadline: Instant) -> Result<String, String> {
    sys::die_with_parent(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what} ({:?}): {e}", cmd.get_program()))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut p = Proc {
        name: what.to_string(),
        child,
        status: None,
    };
    let status = p.wait_until(deadline)?;
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{what} failed ({status}): {}", stderr.trim()));
    }
    Ok(stdout)
}

/// The last non-empty line of a command's output.
pub fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}
