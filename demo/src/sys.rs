//! The few system calls std does not wrap: handing a descriptor to one
//! child, noticing SIGINT/SIGTERM/SIGHUP, asking a child to stop, the
//! free space of a file system, and entering a network namespace.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// The last terminating signal received, or 0.
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    SIGNALLED.store(sig, Ordering::SeqCst);
}

/// Catches SIGINT, SIGTERM and SIGHUP so that the demo can stop its
/// children and clean up instead of dying with them still running.
pub fn catch_termination_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler only stores to an atomic, which is
        // async-signal-safe; sigaction reads the struct we own.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The terminating signal received so far, if any.
pub fn signalled() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Makes `fd` (close-on-exec here, like every descriptor Rust opens)
/// survive `exec` in the child `cmd` starts, and in that child alone.
pub fn inherit_fd(cmd: &mut Command, fd: RawFd) {
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

/// Starts the child with SIGPIPE ignored, as toolstacks run their
/// save/restore helpers: a write to a broken link then fails with EPIPE,
/// which the library reports, instead of killing the process silently.
pub fn ignore_sigpipe(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the child between fork and exec; signal(2) is
    // async-signal-safe and the disposition SIG_IGN survives exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::signal(libc::SIGPIPE, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Moves the calling thread into the network namespace `ns` (an open
/// `/run/netns/NAME`). Sockets the thread creates afterwards belong to
/// that namespace for their whole life, whichever thread uses them; so a
/// short-lived thread that only creates sockets is the way to use this.
pub fn enter_netns_this_thread(ns: BorrowedFd<'_>) -> std::io::Result<()> {
    // SAFETY: setns(2) takes a descriptor we hold open (borrowed for the
    // call) and a flag; it changes only this thread's network namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts the child `cmd` in the network namespace open as `ns_fd` (what
/// `ip netns exec` does, minus remounting /sys, which the harnesses do not
/// read). The descriptor must stay open until the child is spawned.
pub fn run_in_netns(cmd: &mut Command, ns_fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the child between fork and exec; setns(2) is a plain
    // system call on an integer descriptor inherited from the parent (still
    // open there until exec) and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes the child die with the demo: if the demo is killed outright
/// (SIGKILL, where no cleanup can run), the kernel kills the child too,
/// so no workload or harness is left behind.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: runs in the child between fork and exec; prctl(2) and
    // getppid(2) are async-signal-safe system calls on plain integers.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Sends SIGTERM to process `pid` (a child we have not reaped yet, so the
/// id cannot have been reused).
pub fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers; the pid is our unreaped child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// Free bytes available to us on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own, and reads the
    // NUL-terminated path, which lives across the call.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The width of the terminal on stdout, if it is one.
pub fn terminal_columns() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes a winsize into the zeroed struct we own.
    let ws = unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) != 0 {
            return None;
        }
        ws
    };
    (ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}
