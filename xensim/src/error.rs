//! Errors carrying a Xen-style errno.
//!
//! Every failing operation reports the errno Xen (or the privcmd driver) would
//! have returned, so the shim can set `errno` and return -1 exactly like the
//! real libxenctrl, plus a message for logs.

use std::fmt;

/// An error from the simulated host: an errno and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    msg: String,
}

/// Result alias used throughout xensim.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Build an error from an errno value and a message.
    pub fn new(errno: i32, msg: impl Into<String>) -> Self {
        Error {
            errno,
            msg: msg.into(),
        }
    }

    /// The errno (positive, e.g. `libc::ESRCH`).
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The message without the errno name.
    pub fn message(&self) -> &str {
        &self.msg
    }

    /// Wrap an I/O error, keeping its OS errno (EIO when it has none).
    ///
    /// An OS error's text is left out of the message: the errno is carried
    /// beside it and every `Display` (ours, the shim's) names it once.
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Error::new(errno, context.to_string()),
            None => Error::new(libc::EIO, format!("{context}: {e}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.msg, errno_name(self.errno))
    }
}

impl std::error::Error for Error {}

/// Shorthand constructors used inside the crate.
pub(crate) fn err<T>(errno: i32, msg: impl Into<String>) -> Result<T> {
    Err(Error::new(errno, msg))
}

const NAMES: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("ENOEXEC", libc::ENOEXEC),
    ("EBADF", libc::EBADF),
    ("ECHILD", libc::ECHILD),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV),
    ("ENODEV", libc::ENODEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOTTY", libc::ENOTTY),
    ("EFBIG", libc::EFBIG),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EROFS", libc::EROFS),
    ("EPIPE", libc::EPIPE),
    ("EDOM", libc::EDOM),
    ("ERANGE", libc::ERANGE),
    ("EDEADLK", libc::EDEADLK),
    ("ENOLCK", libc::ENOLCK),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("ENODATA", libc::ENODATA),
    ("ETIME", libc::ETIME),
    ("EOVERFLOW", libc::EOVERFLOW),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ECONNRESET", libc::ECONNRESET),
    ("ENOBUFS", libc::ENOBUFS),
    ("ERESTART", libc::ERESTART),
];

/// Symbolic name of an errno ("EIO"), or its number when unknown.
pub fn errno_name(errno: i32) -> String {
    NAMES
        .iter()
        .find(|(_, v)| *v == errno)
        .map(|(n, _)| (*n).to_string())
        .unwrap_or_else(|| format!("errno {errno}"))
}

/// Parse an errno given symbolically ("EIO", case-insensitive) or as a
/// positive number ("5").
pub fn parse_errno(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (n > 0).then_some(n);
    }
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_round_trip() {
        assert_eq!(parse_errno("EIO"), Some(libc::EIO));
        assert_eq!(parse_errno("enomem"), Some(libc::ENOMEM));
        assert_eq!(parse_errno("22"), Some(22));
        assert_eq!(parse_errno("0"), None);
        assert_eq!(parse_errno("EWHAT"), None);
        assert_eq!(errno_name(libc::ESRCH), "ESRCH");
    }

    #[test]
    fn io_errors_name_the_os_errno_once() {
        let e = Error::io(
            "writing guest memory",
            std::io::Error::from_raw_os_error(libc::EIO),
        );
        assert_eq!(e.errno(), libc::EIO);
        assert_eq!(e.to_string(), "writing guest memory (EIO)");
        let e = Error::io(
            "reading state",
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short file"),
        );
        assert_eq!(e.errno(), libc::EIO);
        assert_eq!(e.to_string(), "reading state: short file (EIO)");
    }
}
