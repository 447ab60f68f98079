//! Why a save failed.

use crate::hv::{DomId, HvError};
use crate::toolstack::CallbackFailed;

/// Why a save failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// A hypervisor call failed.
    #[error("{0}")]
    Hv(#[from] HvError),
    /// Writing the stream failed, or the engine produced a record the
    /// stream layer refused (a bug, reported rather than written).
    #[error("writing the stream: {0}")]
    Stream(#[from] crate::stream::Error),
    /// Reading the COLO back channel failed or it broke a rule.
    #[error("back channel: {0}")]
    BackChannel(String),
    /// The domain does not exist.
    #[error("domain {0} does not exist")]
    NoSuchDomain(DomId),
    /// A callback the stream type or guest type needs was not given.
    #[error("the {0} callback is required for this save")]
    MissingCallback(&'static str),
    /// A callback reported failure.
    #[error("save callback {name}() failed: {rc}")]
    Callback {
        /// Callback name.
        name: &'static str,
        /// What it returned.
        rc: i32,
    },
    /// After `suspend`, the domain does not read as shut down for suspend.
    #[error("domain has not been suspended: shutdown {shutdown}, reason {reason}")]
    NotSuspended {
        /// `dominfo.shutdown`.
        shutdown: bool,
        /// `dominfo.shutdown_reason`.
        reason: u32,
    },
    /// The precopy policy returned ABORT.
    #[error("precopy policy aborted the save")]
    Aborted,
    /// xcmig's pre-copy policy gave up because the guest dirties memory too
    /// fast for the target downtime and
    /// [`PrecopySettings::abort_if_not_converging`](super::PrecopySettings::abort_if_not_converging) is set.
    #[error("live migration not converging, save aborted: {0}")]
    NotConverging(String),
    /// The guest's state cannot go into a stream: a p2m, page table or vCPU
    /// frame outside the guest, a superpage, a p2m that changed during a
    /// live save. `errno` is libxenguest's for the same failure (ERANGE,
    /// E2BIG, EINVAL, ...).
    #[error("{msg}")]
    Guest {
        /// What is wrong, naming the structure and the frame.
        msg: String,
        /// The errno reported.
        errno: i32,
    },
    /// Xen answered a request inconsistently.
    #[error("{0}")]
    Protocol(String),
    /// The save cannot be done by this implementation (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Memory the save needs (sized by what Xen reported) could not be
    /// allocated.
    #[error("{0}")]
    OutOfMemory(String),
}

impl SaveError {
    /// The guest's state is not something a stream can carry.
    pub(crate) fn guest(errno: i32, msg: impl Into<String>) -> Self {
        SaveError::Guest {
            msg: msg.into(),
            errno,
        }
    }

    /// The callback `name` reported failure.
    pub(crate) fn callback(name: &'static str, failed: CallbackFailed) -> Self {
        SaveError::Callback {
            name,
            rc: failed.code,
        }
    }

    /// The errno the C layer reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            SaveError::Hv(e) => e.errno(),
            SaveError::Stream(e) => match &e.kind {
                crate::stream::ErrorKind::Io { kind, .. } => {
                    crate::toolstack::stream_io_errno(*kind)
                }
                _ => libc::EIO,
            },
            SaveError::BackChannel(_) => libc::EIO,
            SaveError::NoSuchDomain(_) => libc::ESRCH,
            SaveError::MissingCallback(_) => libc::EINVAL,
            SaveError::Callback { .. } => libc::EINVAL,
            SaveError::NotSuspended { .. } => libc::EINVAL,
            SaveError::Aborted => libc::ECANCELED,
            SaveError::NotConverging(_) => libc::ECANCELED,
            SaveError::Guest { errno, .. } => *errno,
            SaveError::Protocol(_) => libc::EPROTO,
            SaveError::Unsupported(_) => libc::EOPNOTSUPP,
            SaveError::OutOfMemory(_) => libc::ENOMEM,
        }
    }
}
