//! Where the engines send messages and progress.
//!
//! In libxenguest both go to the `xentoollog_logger` of the `xc_interface`
//! (`xch->error_handler`), with context "xc"; the C layer implements [`Log`]
//! over that logger, so `libxl-save-helper` forwards them unchanged.

/// Message levels, numbered as `xentoollog_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum Level {
    /// `XTL_DEBUG` (libxenguest's DPRINTF).
    Debug = 1,
    /// `XTL_VERBOSE`.
    Verbose = 2,
    /// `XTL_DETAIL`.
    Detail = 3,
    /// `XTL_PROGRESS`.
    Progress = 4,
    /// `XTL_INFO` (IPRINTF).
    Info = 5,
    /// `XTL_NOTICE`.
    Notice = 6,
    /// `XTL_WARN`.
    Warn = 7,
    /// `XTL_ERROR` (ERROR, PERROR).
    Error = 8,
    /// `XTL_CRITICAL`.
    Critical = 9,
}

/// A sink for engine messages and progress reports.
pub trait Log {
    /// One message. `errno` is set for messages about a failed call
    /// (libxenguest's PERROR), as `xtl_log`'s `errnoval`.
    fn log(&self, level: Level, errno: Option<i32>, msg: &str);

    /// Progress: `doing_what` has done `done` of `total` (both 0 for a
    /// one-off milestone such as "Start of stream"), as `xtl_progress`.
    fn progress(&self, doing_what: &str, done: u64, total: u64);
}

/// A [`Log`] that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullLog;

impl Log for NullLog {
    fn log(&self, _level: Level, _errno: Option<i32>, _msg: &str) {}
    fn progress(&self, _doing_what: &str, _done: u64, _total: u64) {}
}
