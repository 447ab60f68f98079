//! Why a restore failed.

use crate::hv::{DomId, HvError};
use crate::stream;
use crate::toolstack::CallbackFailed;

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A hypervisor call failed.
    #[error("{0}")]
    Hv(#[from] HvError),
    /// The stream broke a rule of the format or grammar, or reading failed.
    #[error("stream: {0}")]
    Stream(#[from] stream::Error),
    /// A record's content cannot be applied.
    #[error("{what} record: {msg}")]
    Record {
        /// The record type.
        what: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// A record's content cannot be applied, with the errno libxenguest
    /// gives that failure (ERANGE for a frame outside the guest, or the
    /// errno of the hypervisor call that refused it).
    #[error("{what} record: {msg}")]
    Refused {
        /// The record type.
        what: &'static str,
        /// What is wrong.
        msg: String,
        /// The errno reported.
        errno: i32,
    },
    /// A legacy image (Xen 4.5 and earlier) that cannot be converted.
    #[error("legacy image: {0}")]
    Legacy(String),
    /// The domain does not exist.
    #[error("domain {0} does not exist")]
    NoSuchDomain(DomId),
    /// The stream is for another guest type than the domain.
    #[error("unable to restore {stream} domain into an {domain} domain")]
    WrongGuestType {
        /// The stream's domain header type.
        stream: String,
        /// The domain's type.
        domain: &'static str,
    },
    /// The stream ended without a record the restore needs.
    #[error("stream complete without {0}")]
    Incomplete(&'static str),
    /// A callback the stream type needs was not given.
    #[error("the {0} callback is required for this restore")]
    MissingCallback(&'static str),
    /// A callback reported failure.
    #[error("restore callback {name}() failed: {rc}")]
    Callback {
        /// Callback name.
        name: &'static str,
        /// What it returned.
        rc: i32,
    },
    /// The records of one checkpoint of a checkpointed stream need more
    /// memory than [`RestoreParams::checkpoint_buffer_limit`](super::RestoreParams)
    /// allows (ENOBUFS).
    #[error(
        "checkpoint {checkpoint}: its records need more than the checkpoint buffer limit of {limit} bytes \
         ({held} bytes held, the next record, {record}, needs {needed} more); \
         raise the limit (XCMIG_CHECKPOINT_BUFFER_MAX, xcmig_set_checkpoint_buffer_limit) or checkpoint more often"
    )]
    CheckpointBufferFull {
        /// The checkpoint being received, numbered as the CHECKPOINT record
        /// that completes it (the initial copy is checkpoint 1, the first
        /// one buffered 2).
        checkpoint: u64,
        /// The limit, in bytes.
        limit: u64,
        /// Bytes held for this checkpoint so far.
        held: u64,
        /// The record that did not fit.
        record: stream::RecordType,
        /// The bytes it needed.
        needed: u64,
    },
    /// Not supported by this implementation (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl RestoreError {
    /// The callback `name` reported failure.
    pub(crate) fn callback(name: &'static str, failed: CallbackFailed) -> Self {
        RestoreError::Callback {
            name,
            rc: failed.code,
        }
    }

    /// The errno the C layer reports for this error.
    pub fn errno(&self) -> i32 {
        use libc as e;
        match self {
            RestoreError::Hv(h) => h.errno(),
            RestoreError::Stream(s) => match &s.kind {
                stream::ErrorKind::Io { kind, .. } => crate::toolstack::stream_io_errno(*kind),
                _ => e::EINVAL,
            },
            RestoreError::Record { .. } => e::EINVAL,
            RestoreError::Refused { errno, .. } => *errno,
            RestoreError::Legacy(_) => e::EINVAL,
            RestoreError::NoSuchDomain(_) => e::ESRCH,
            RestoreError::WrongGuestType { .. } => e::EINVAL,
            RestoreError::Incomplete(_) => e::EINVAL,
            RestoreError::MissingCallback(_) => e::EINVAL,
            RestoreError::Callback { .. } => e::EINVAL,
            RestoreError::CheckpointBufferFull { .. } => e::ENOBUFS,
            RestoreError::Unsupported(_) => e::EOPNOTSUPP,
        }
    }
}
