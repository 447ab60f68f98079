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
        let os = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "{} failed: {}", self.op, os)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for HvError {}
