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
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        Self::new(e, what.to_string())
    }
}

/// The C library's text for an errno ("Input/output error"), without the
/// "(os error N)" suffix Rust's `io::Error` adds.
pub fn strerror(errno: i32) -> String {
    let mut buf = [0u8; 128];
    // SAFETY: buf is writable for its full length; the XSI strerror_r always
    // NUL-terminates within it on success.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return format!("Unknown error {errno}");
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

impl fmt::Display for ShimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} = {})",
            self.msg,
            self.errno,
            strerror(self.errno)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_errno_like_libxenctrl() {
        let e = ShimError::new(libc::EIO, "xc_foo: injected fault");
        assert_eq!(
            e.to_string(),
            "xc_foo: injected fault (5 = Input/output error)"
        );
        assert_eq!(strerror(libc::ENOSYS), "Function not implemented");
    }
}
