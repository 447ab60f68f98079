//! The shim's error type: an errno for the C caller plus a reason for the log.

use std::fmt;

/// A failed call: `errno` is what the C caller sees, `msg` is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimError {
    /// Positive errno value reported to C.
    pub errno: i32,
    /// Human-readable reason.
    pub msg: String,
}

impl ShimError {
    /// A new error with the given errno and reason.
    pub fn new(errno: i32, msg: impl Into<String>) -> Self {
        ShimError {
            errno,
            msg: msg.into(),
        }
    }

    /// `EINVAL` with a reason.
    pub fn inval(msg: impl Into<String>) -> Self {
        Self::new(libc::EINVAL, msg)
    }

    /// `ENOSYS`: an operation the simulated host does not implement.
    pub fn nosys(what: &str) -> Self {
        Self::new(
            libc::ENOSYS,
            format!("{what} is not supported by the simulated host"),
        )
    }

    /// The error of a failed libc call, taken from the current errno.
    pub fn last_os(what: &str) -> Self {
        let e = std::io::Error::last_os_error();
        Self::new(e.raw_os_error().unwrap_or(libc::EIO), format!("{what}: {e}"))
    }
}

impl fmt::Display for ShimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} = {})",
            self.msg,
            self.errno,
            std::io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl From<xensim::Error> for ShimError {
    fn from(e: xensim::Error) -> Self {
        ShimError::new(e.errno(), e.message())
    }
}

/// Result of a shim operation.
pub type ShimResult<T> = Result<T, ShimError>;
