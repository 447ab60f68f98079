//! What both engines share about the toolstack that drives them: the kind
//! of stream it asked for, and the outcome of its callbacks.
//!
//! The engines see only these typed values; how a C callback's integer maps
//! onto them (which differs per callback in `xenguest.h`) is the business
//! of `capi`.

use std::fmt;

/// Kind of stream (`xc_stream_type_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamType {
    /// One-shot save or migration.
    #[default]
    Plain,
    /// Remus: checkpointed replication.
    Remus,
    /// COLO: checkpointed replication with a dirty-page back channel.
    Colo,
}

impl StreamType {
    /// Whether the stream is a sequence of checkpoints (Remus or COLO).
    pub fn is_checkpointed(self) -> bool {
        self != StreamType::Plain
    }
}

impl fmt::Display for StreamType {
    /// `xc_stream_type_t`'s number and name, as in libxenguest's
    /// "stream_type %d" messages: `0 (plain)`, `1 (remus)`, `2 (colo)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamType::Plain => "0 (plain)",
            StreamType::Remus => "1 (remus)",
            StreamType::Colo => "2 (colo)",
        })
    }
}

/// A toolstack callback reported failure.
///
/// `code` is the value the callback itself returned, kept only so that
/// messages can quote it (libxenguest's messages do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackFailed {
    /// What the callback returned.
    pub code: i32,
}

impl fmt::Display for CallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)
    }
}

/// What a checkpointed stream's callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on with the next checkpoint.
    Continue,
    /// Stop checkpointing; `code` is what the callback returned, for the log.
    Stop {
        /// What the callback returned.
        code: i32,
    },
}

/// The errno reported for a failed read or write on the toolstack's stream
/// descriptor, from the kind the I/O error kept: a timeout, a broken pipe
/// and a reset connection keep their own errno (a toolstack tells a dead
/// peer from a bad stream by it), anything else is `EIO`.
pub fn stream_io_errno(kind: std::io::ErrorKind) -> i32 {
    use std::io::ErrorKind as K;
    match kind {
        K::TimedOut => libc::ETIMEDOUT,
        K::BrokenPipe => libc::EPIPE,
        K::ConnectionReset => libc::ECONNRESET,
        _ => libc::EIO,
    }
}
