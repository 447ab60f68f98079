//! The error of one hypervisor call.

use std::fmt;

/// A failed hypervisor call: which call, the errno it left, and optional
/// detail (for instance the CPUID leaf Xen rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HvError {
    op: &'static str,
    errno: i32,
    detail: Option<String>,
}

/// Result of a hypervisor call.
pub type HvResult<T> = Result<T, HvError>;

impl HvError {
    /// `op` (the libxenctrl call or operation name) failed with `errno`.
    pub fn new(op: &'static str, errno: i32) -> Self {
        HvError {
            op,
            errno,
            detail: None,
        }
    }

    /// As [`HvError::new`], with a sentence of detail.
    pub fn with_detail(op: &'static str, errno: i32, detail: impl Into<String>) -> Self {
        HvError {
            op,
            errno,
            detail: Some(detail.into()),
        }
    }

    /// The same error with a sentence of detail (replacing any it had).
    pub fn and_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The failed operation.
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The errno it reported (positive).
    pub fn errno(&self) -> i32 {
        self.errno
    }
}

impl fmt::Display for HvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, strerror(self.errno))?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for HvError {}

/// The C library's text for `errno`, as libxenguest prints it (without the
/// " (os error N)" that Rust's `io::Error` appends).
pub(crate) fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let suffix = format!(" (os error {errno})");
    match text.strip_suffix(&suffix) {
        Some(plain) => plain.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_errno_once_as_plain_text() {
        let e = HvError::new("xc_get_pfn_type_batch", libc::EIO);
        assert_eq!(
            e.to_string(),
            "xc_get_pfn_type_batch failed: Input/output error"
        );
    }
}
