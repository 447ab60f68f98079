//! Blocking I/O on a file descriptor the caller owns (the stream `io_fd`, the
//! COLO back channel). Never closes it; retries on EINTR, as libxenctrl's
//! `read_exact`/`write_exact` do.
//!
//! With a timeout (`XCMIG_IO_TIMEOUT`, `xcmig_set_io_timeout`) every read
//! and write first polls the descriptor for at most that long, so a peer
//! that died or a link that was cut ends the call with `ETIMEDOUT` instead
//! of blocking it forever on a dead connection: a reader on an idle TCP
//! connection is never told the peer is gone, and a writer only after TCP's
//! retransmissions give up (about 15 minutes). Regular files and block
//! devices are never polled: their I/O cannot wait on a peer.
//!
//! Where the descriptor is a TCP socket the timeout also becomes its
//! `TCP_USER_TIMEOUT` for the call (the previous value is put back when
//! the `FdIo` is dropped). What that adds over polling: the kernel counts
//! from the first segment left unacknowledged, not from the moment the send
//! buffer (megabytes, with autotuning) is full, and it fails the
//! connection even while the library is not in a read or write (during a
//! callback such as suspend), so the next call fails at once.
//!
//! Writes to sockets use `MSG_NOSIGNAL`: a peer that went away fails the
//! write with `EPIPE`, which is reported, rather than killing a toolstack
//! helper that left SIGPIPE at its default (libxl's helpers do).

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::settings::ENV_IO_TIMEOUT;

/// A borrowed, caller-owned descriptor.
#[derive(Debug)]
pub struct FdIo {
    fd: RawFd,
    /// What the descriptor carries, for messages ("the stream").
    what: &'static str,
    timeout: Option<Duration>,
    /// Not a regular file or block device: I/O may wait on a peer.
    pollable: bool,
    socket: bool,
    /// `TCP_USER_TIMEOUT` before this call changed it.
    saved_user_timeout: Option<libc::c_uint>,
    received: u64,
    sent: u64,
}

/// Which way the bytes were going.
#[derive(Debug, Clone, Copy)]
enum Dir {
    Receive,
    Send,
}

impl Dir {
    fn verb(self) -> &'static str {
        match self {
            Dir::Receive => "receiving",
            Dir::Send => "sending",
        }
    }
    fn done(self) -> &'static str {
        match self {
            Dir::Receive => "received",
            Dir::Send => "sent",
        }
    }
}

impl FdIo {
    /// Borrow `fd`, which carries `what`, failing any read or write that
    /// makes no progress for `timeout` (`None`: wait forever).
    pub fn with_timeout(fd: RawFd, what: &'static str, timeout: Option<Duration>) -> Self {
        // SAFETY: a zeroed `stat` is a valid value for fstat to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: FFI call writing into the `stat` we own.
        let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
        let fmt = st.st_mode & libc::S_IFMT;
        let pollable = !ok || !(fmt == libc::S_IFREG || fmt == libc::S_IFBLK);
        let socket = ok && fmt == libc::S_IFSOCK;
        let mut io = FdIo {
            fd,
            what,
            timeout,
            pollable,
            socket,
            saved_user_timeout: None,
            received: 0,
            sent: 0,
        };
        if let (true, Some(t)) = (socket, timeout) {
            io.set_tcp_user_timeout(t);
        }
        io
    }

    /// Sets `TCP_USER_TIMEOUT` if `fd` is a TCP socket (only TCP knows the
    /// option: on any other socket getsockopt fails and nothing changes).
    fn set_tcp_user_timeout(&mut self, t: Duration) {
        let mut old: libc::c_uint = 0;
        let mut len = std::mem::size_of::<libc::c_uint>() as libc::socklen_t;
        // SAFETY: FFI call writing at most `len` bytes into `old`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                (&mut old as *mut libc::c_uint).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return;
        }
        let ms = libc::c_uint::try_from(t.as_millis()).unwrap_or(libc::c_uint::MAX);
        if set_user_timeout(self.fd, ms) {
            self.saved_user_timeout = Some(old);
        }
    }

    /// Waits until `fd` is ready for `events` (or reports a hangup or an
    /// error, which the following call returns), for at most the timeout.
    fn wait(&self, events: libc::c_short, dir: Dir) -> io::Result<()> {
        let Some(limit) = self.timeout else {
            return Ok(());
        };
        if !self.pollable {
            return Ok(());
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out(dir, limit));
            }
            // Rounded up, so that the deadline has passed when poll says 0.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
            let mut p = libc::pollfd {
                fd: self.fd,
                events,
                revents: 0,
            };
            // SAFETY: FFI call on one `pollfd` we own.
            let n = unsafe { libc::poll(&mut p, 1, ms) };
            if n > 0 {
                return Ok(());
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }

    /// Waits for a descriptor the caller left non-blocking after `EAGAIN`:
    /// within the timeout if there is one, else for as long as it takes.
    fn wait_again(&self, events: libc::c_short, dir: Dir) -> io::Result<()> {
        if self.timeout.is_some() && self.pollable {
            return self.wait(events, dir);
        }
        let mut p = libc::pollfd {
            fd: self.fd,
            events,
            revents: 0,
        };
        loop {
            // SAFETY: FFI call on one `pollfd` we own.
            if unsafe { libc::poll(&mut p, 1, -1) } >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn moved(&self, dir: Dir) -> u64 {
        match dir {
            Dir::Receive => self.received,
            Dir::Send => self.sent,
        }
    }

    /// The poll timed out: nothing moved for `limit`.
    fn timed_out(&self, dir: Dir, limit: Duration) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "timed out {} {} (fd {}): no progress for {} s after {} bytes {}; the peer or \
                 the link is gone (limit: {ENV_IO_TIMEOUT} or xcmig_set_io_timeout(), 0 = none)",
                dir.verb(),
                self.what,
                self.fd,
                limit.as_secs_f64(),
                self.moved(dir),
                dir.done()
            ),
        )
    }

    /// A failed call, with what it was doing and how far it got; the
    /// kernel's ETIMEDOUT on a TCP socket is its `TCP_USER_TIMEOUT`.
    fn failed(&self, e: io::Error, dir: Dir) -> io::Error {
        let why = match (e.raw_os_error(), self.saved_user_timeout, self.timeout) {
            (Some(libc::ETIMEDOUT), Some(_), Some(t)) => format!(
                "the TCP connection timed out: data sent went unacknowledged for {} s \
                 (TCP_USER_TIMEOUT from {ENV_IO_TIMEOUT} or xcmig_set_io_timeout(), 0 = none)",
                t.as_secs_f64()
            ),
            _ => e.to_string(),
        };
        io::Error::new(
            e.kind(),
            format!(
                "{} {} (fd {}) failed after {} bytes {}: {why}",
                dir.verb(),
                self.what,
                self.fd,
                self.moved(dir),
                dir.done()
            ),
        )
    }
}

fn set_user_timeout(fd: RawFd, ms: libc::c_uint) -> bool {
    // SAFETY: FFI call reading one `c_uint` we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        ) == 0
    }
}

impl Drop for FdIo {
    fn drop(&mut self) {
        if let Some(old) = self.saved_user_timeout {
            // The descriptor is the caller's: leave it as it was given.
            set_user_timeout(self.fd, old);
        }
    }
}

/// Runs one system call until it does something other than EINTR; EAGAIN
/// (a descriptor the caller left non-blocking) waits as `wait_again` does.
fn retry(
    io: &FdIo,
    events: libc::c_short,
    dir: Dir,
    mut call: impl FnMut() -> isize,
) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => io.wait_again(events, dir)?,
            _ => return Err(io.failed(e, dir)),
        }
    }
}

impl Read for FdIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait(libc::POLLIN, Dir::Receive)?;
        let fd = self.fd;
        let n = retry(self, libc::POLLIN, Dir::Receive, || {
            // SAFETY: FFI call writing at most `buf.len()` bytes into `buf`.
            unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
        })?;
        self.received += n as u64;
        Ok(n)
    }
}

impl Write for FdIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.wait(libc::POLLOUT, Dir::Send)?;
        let cnt = bufs.len().min(libc::UIO_MAXIOV as usize);
        let (fd, socket) = (self.fd, self.socket);
        let n = retry(self, libc::POLLOUT, Dir::Send, || {
            if socket {
                // SAFETY: a zeroed msghdr is "no address, no control data";
                // `IoSlice` is ABI-compatible with `struct iovec`, and `cnt`
                // slices of `bufs` are valid for reading during the call.
                unsafe {
                    let mut msg: libc::msghdr = std::mem::zeroed();
                    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                    msg.msg_iovlen = cnt;
                    libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
                }
            } else {
                // SAFETY: as above, for writev.
                unsafe { libc::writev(fd, bufs.as_ptr().cast(), cnt as libc::c_int) }
            }
        })?;
        self.sent += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    const SHORT: Duration = Duration::from_millis(300);

    #[test]
    fn read_from_a_silent_peer_times_out_naming_the_direction_bytes_and_setting() {
        let (mut peer, ours) = UnixStream::pair().unwrap();
        peer.write_all(b"12345").unwrap();
        let mut io = FdIo::with_timeout(ours.as_raw_fd(), "the stream", Some(SHORT));
        let mut buf = [0u8; 5];
        io.read_exact(&mut buf).unwrap();
        let started = Instant::now();
        let e = io.read(&mut buf).unwrap_err();
        let waited = started.elapsed();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(waited >= SHORT && waited < SHORT * 10, "{waited:?}");
        let msg = e.to_string();
        for want in ["receiving the stream", "after 5 bytes received", "0.3 s"] {
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
        assert!(msg.contains(ENV_IO_TIMEOUT), "{msg}");
    }

    #[test]
    fn write_to_a_peer_that_stopped_reading_times_out() {
        let (_peer, ours) = UnixStream::pair().unwrap();
        let mut io = FdIo::with_timeout(ours.as_raw_fd(), "the stream", Some(SHORT));
        let chunk = vec![0u8; 64 << 10];
        let e = loop {
            if let Err(e) = io.write(&chunk) {
                break e;
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let msg = e.to_string();
        assert!(msg.contains("sending the stream"), "{msg}");
        assert!(
            msg.contains(&format!("after {} bytes sent", io.sent)),
            "{msg}"
        );
        assert!(io.sent > 0);
    }

    #[test]
    fn progress_within_the_timeout_never_times_out() {
        let (mut peer, ours) = UnixStream::pair().unwrap();
        let mut io = FdIo::with_timeout(ours.as_raw_fd(), "the stream", Some(SHORT));
        let writer = std::thread::spawn(move || {
            for _ in 0..6 {
                std::thread::sleep(SHORT / 3);
                peer.write_all(b"x").unwrap();
            }
        });
        let mut got = [0u8; 6];
        io.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(&got, b"xxxxxx");
    }

    #[test]
    fn a_closed_peer_reads_as_end_of_stream_and_fails_writes_with_epipe() {
        let (peer, ours) = UnixStream::pair().unwrap();
        drop(peer);
        let mut io = FdIo::with_timeout(ours.as_raw_fd(), "the stream", Some(SHORT));
        assert_eq!(io.read(&mut [0u8; 4]).unwrap(), 0);
        // MSG_NOSIGNAL: this test process would die of SIGPIPE otherwise.
        let e = io.write(b"data").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert!(e.to_string().contains("sending the stream"), "{e}");
    }

    #[test]
    fn tcp_user_timeout_is_set_for_the_call_and_put_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let get = || {
            let mut v: libc::c_uint = 0;
            let mut len = std::mem::size_of::<libc::c_uint>() as libc::socklen_t;
            // SAFETY: FFI call writing at most `len` bytes into `v`.
            let rc = unsafe {
                libc::getsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_USER_TIMEOUT,
                    (&mut v as *mut libc::c_uint).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0);
            v
        };
        assert!(set_user_timeout(s.as_raw_fd(), 1234));
        {
            let _io = FdIo::with_timeout(s.as_raw_fd(), "the stream", Some(SHORT));
            assert_eq!(get(), 300);
        }
        assert_eq!(get(), 1234);
        // No timeout, no change.
        drop(FdIo::with_timeout(s.as_raw_fd(), "the stream", None));
        assert_eq!(get(), 1234);
    }

    #[test]
    fn regular_files_are_read_without_polling() {
        let path = std::env::temp_dir().join(format!("xcmig-fd-test-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let mut io = FdIo::with_timeout(f.as_raw_fd(), "the stream", Some(SHORT));
        assert!(!io.pollable);
        let mut got = Vec::new();
        io.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abc");
        std::fs::remove_file(&path).unwrap();
    }
}
