//! Child processes with deadlines.
//!
//! A test that waits for a child without a deadline can hang the whole CI
//! run; everything here kills the child when its time is up and fails the
//! test with the output the child produced until then.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long output is still collected after a child has exited: a
/// grandchild that inherited the pipe may keep it open long after.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// A child's pipe being read to the end on a thread.
pub struct Drain(Receiver<Vec<u8>>);

impl Drain {
    /// Everything read, once the pipe closes. If something still holds the
    /// pipe open at `until`, returns what arrived so far plus a note, so
    /// that a lingering grandchild cannot hang a test.
    pub fn collect(self, until: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match self
                .0
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Disconnected) => return out,
                Err(RecvTimeoutError::Timeout) => {
                    out.extend_from_slice(b"\n[the pipe stayed open; output cut here]\n");
                    return out;
                }
            }
        }
    }
}

/// Starts reading a child's pipe to the end on a thread.
pub fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Drain {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let Some(mut p) = pipe else { return };
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match p.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    Drain(rx)
}

/// Waits for `child` until `deadline`; on timeout kills it, reaps it and
/// returns `None`.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for a child failed: {e}"),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The status [`run`] reports for a child it killed.
fn killed() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(libc::SIGKILL)
}

/// Runs `cmd` to completion with stdin from /dev/null, capturing stdout and
/// stderr. A child still running after `timeout` is killed and the test
/// fails with what it printed.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_input(cmd, None, timeout)
}

/// [`run`], feeding `input` (when given) to the child's stdin from a thread,
/// so that a large input cannot deadlock against the output pipes.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let (Some(data), Some(mut pipe)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        // Not joined: a child that exits without reading all its input is
        // fine, and the thread ends when the pipe's last reader goes.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + timeout);
    let grace = Instant::now() + DRAIN_GRACE;
    let output = Output {
        status: status.unwrap_or_else(killed),
        stdout: out.collect(grace),
        stderr: err.collect(grace),
    };
    assert!(
        status.is_some(),
        "{cmd:?} did not finish within {timeout:?}; killed it.\n{}",
        describe(&output)
    );
    output
}

/// A child's status, stdout and the end of its stderr, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        tail(&String::from_utf8_lossy(&out.stderr), 80)
    )
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child running in the background with its output captured, killed if
/// the test fails before waiting for it.
pub struct Background {
    child: Option<Child>,
    what: String,
    out: Option<Drain>,
    err: Option<Drain>,
}

impl Background {
    /// Starts `cmd` (stdin from /dev/null); `what` names it in messages.
    pub fn spawn(cmd: &mut Command, what: &str) -> Background {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let out = Some(drain(child.stdout.take()));
        let err = Some(drain(child.stderr.take()));
        Background {
            child: Some(child),
            what: what.to_string(),
            out,
            err,
        }
    }

    /// True while the child runs.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for the child to exit by itself within `timeout`; fails the
    /// test (after killing it) if it does not.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let mut child = self.child.take().expect("waited twice");
        let status = wait_until(&mut child, Instant::now() + timeout);
        let grace = Instant::now() + DRAIN_GRACE;
        let output = Output {
            status: status.unwrap_or_else(killed),
            stdout: self
                .out
                .take()
                .map(|d| d.collect(grace))
                .unwrap_or_default(),
            stderr: self
                .err
                .take()
                .map(|d| d.collect(grace))
                .unwrap_or_default(),
        };
        assert!(
            status.is_some(),
            "{} did not stop within {timeout:?}; killed it.\n{}",
            self.what,
            describe(&output)
        );
        output
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child whose output the test reads in a loop that blocks on its pipes
/// (where [`wait_until`] cannot be polled): a watchdog thread kills the
/// child when `timeout` passes, which closes its pipes and so ends the
/// blocked read.
pub struct Watched {
    child: Arc<Mutex<Child>>,
    deadline: Instant,
    disarm: Option<Sender<()>>,
    watchdog: Option<JoinHandle<bool>>,
}

impl Watched {
    /// Starts watching `child` (take its pipes first); it is killed if it
    /// has not been waited for within `timeout`.
    pub fn new(child: Child, timeout: Duration) -> Watched {
        let child = Arc::new(Mutex::new(child));
        let (tx, rx) = channel::<()>();
        let victim = Arc::clone(&child);
        let watchdog = std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                let mut c = victim.lock().unwrap_or_else(|p| p.into_inner());
                let _ = c.kill();
                return true;
            }
            false
        });
        Watched {
            child,
            deadline: Instant::now() + timeout,
            disarm: Some(tx),
            watchdog: Some(watchdog),
        }
    }

    /// Waits for the child's exit status until the deadline; `None` when
    /// the child was killed for running out of time.
    pub fn wait(mut self) -> Option<ExitStatus> {
        let fired = self.stop_watchdog();
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let status = wait_until(&mut c, self.deadline);
        if fired {
            None
        } else {
            status
        }
    }

    fn stop_watchdog(&mut self) -> bool {
        drop(self.disarm.take());
        self.watchdog
            .take()
            .map(|t| t.join().unwrap_or(false))
            .unwrap_or(false)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            self.stop_watchdog();
            let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_with_input_feeds_stdin_and_captures_stdout() {
        let out = run_with_input(
            &mut Command::new("cat"),
            Some(b"stream bytes"),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{}", describe(&out));
        assert_eq!(out.stdout, b"stream bytes");
    }

    #[test]
    fn run_kills_a_child_that_outlives_its_timeout_and_fails() {
        let start = Instant::now();
        let r = std::panic::catch_unwind(|| {
            run(
                Command::new("sh").args(["-c", "echo started; exec sleep 60"]),
                Duration::from_millis(300),
            )
        });
        let msg = *r
            .expect_err("a hung child must fail the test")
            .downcast::<String>()
            .expect("a formatted panic message");
        assert!(msg.contains("did not finish within"), "{msg}");
        assert!(msg.contains("started"), "the output so far is shown: {msg}");
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn watched_child_blocked_on_its_pipe_is_killed_at_the_deadline() {
        let mut child = Command::new("sleep")
            .arg("60")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sleep");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let start = Instant::now();
        let watched = Watched::new(child, Duration::from_millis(300));
        let mut buf = Vec::new();
        // Blocks until the watchdog kills the child.
        stdout.read_to_end(&mut buf).expect("read");
        assert_eq!(watched.wait(), None);
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn watched_child_that_exits_in_time_reports_its_status() {
        let child = Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("start sh");
        let status = Watched::new(child, Duration::from_secs(60)).wait();
        assert_eq!(status.and_then(|s| s.code()), Some(3));
    }

    #[test]
    fn run_returns_when_a_grandchild_keeps_the_pipes_open() {
        let start = Instant::now();
        let out = run(
            Command::new("sh").args(["-c", "sleep 30 & echo parent done"]),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("parent done\n"),
            "{}",
            describe(&out)
        );
        assert!(start.elapsed() < Duration::from_secs(25));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
