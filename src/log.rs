//! Where the library's messages and progress reports go.
//!
//! Messages go through the [`log`] facade, so that a Rust program
//! using the library sees them in whatever logger it installed. A C
//! toolstack has no Rust logger: there, each `xc_domain_save` /
//! `xc_domain_restore` call sends them to the caller's own xentoollog logger,
//! as libxenguest does (`xch->error_handler`, context "xc"), through a
//! per-thread sink set for the duration of the call ([`scoped`]): the
//! library's own logger ([`install_forwarder`]) hands each record to the
//! calling thread's sink, so two toolstack threads with two loggers never
//! mix their messages.
//!
//! Progress reports (`xtl_progress`) are not log records; the engines hand
//! them straight to the [`Log`] sink they are given.
//!
//! A message keeps its exact xentoollog [`Level`] (the facade has fewer) and
//! the errno of a failed call (libxenguest's PERROR) as key-values
//! `xtl_level` and `errno`.

use std::cell::RefCell;
use std::rc::Rc;

/// Message levels, numbered as `xentoollog_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum Level {
    /// `XTL_DEBUG` (libxenguest's DBGPRINTF).
    Debug = 1,
    /// `XTL_VERBOSE`.
    Verbose = 2,
    /// `XTL_DETAIL` (libxenguest's DPRINTF: what `xl -v` shows).
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

impl Level {
    /// The facade's level for this one (the facade has five).
    pub fn to_log(self) -> ::log::Level {
        match self {
            Level::Critical | Level::Error => ::log::Level::Error,
            Level::Warn => ::log::Level::Warn,
            Level::Notice | Level::Info => ::log::Level::Info,
            Level::Progress | Level::Detail | Level::Verbose => ::log::Level::Debug,
            Level::Debug => ::log::Level::Trace,
        }
    }

    /// The xentoollog level of a facade level without an exact one.
    pub fn from_log(level: ::log::Level) -> Level {
        match level {
            ::log::Level::Error => Level::Error,
            ::log::Level::Warn => Level::Warn,
            ::log::Level::Info => Level::Info,
            ::log::Level::Debug => Level::Detail,
            ::log::Level::Trace => Level::Debug,
        }
    }

    /// The level numbered `n` as in `xentoollog_level`.
    pub fn from_number(n: u64) -> Option<Level> {
        Some(match n {
            1 => Level::Debug,
            2 => Level::Verbose,
            3 => Level::Detail,
            4 => Level::Progress,
            5 => Level::Info,
            6 => Level::Notice,
            7 => Level::Warn,
            8 => Level::Error,
            9 => Level::Critical,
            _ => return None,
        })
    }
}

/// A sink for messages and progress reports: the caller's logger.
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

/// Send one message through the facade, keeping its exact level and errno.
pub fn message(level: Level, errno: Option<i32>, msg: &str) {
    let xtl = level as u32;
    match errno {
        Some(errno) => ::log::log!(level.to_log(), xtl_level = xtl, errno = errno; "{msg}"),
        None => ::log::log!(level.to_log(), xtl_level = xtl; "{msg}"),
    }
}

thread_local! {
    /// The sinks set on this thread, innermost last, each with the id of
    /// the guard that set it.
    static SINKS: RefCell<Vec<(u64, Rc<dyn Log>)>> = const { RefCell::new(Vec::new()) };
}

/// The sink messages of this thread go to now: the innermost one.
fn current_sink() -> Option<Rc<dyn Log>> {
    SINKS.with(|s| s.borrow().last().map(|(_, sink)| sink.clone()))
}

/// While alive, this thread's messages go to one sink ([`scoped`]).
#[must_use = "the sink is removed when the guard is dropped"]
pub struct SinkGuard {
    id: u64,
    /// Bound to the thread whose sink it set.
    _not_send: std::marker::PhantomData<Rc<()>>,
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        // Removes its own sink wherever it stands, so that guards dropped
        // out of order never bring back a sink whose guard is gone.
        SINKS.with(|s| s.borrow_mut().retain(|(id, _)| *id != self.id));
    }
}

/// Send this thread's messages to `sink` until the guard is dropped (an
/// enclosing sink, if any, gets them again then). They reach it where the
/// library's own logger is the process's logger ([`install_forwarder`]).
pub fn scoped(sink: Rc<dyn Log>) -> SinkGuard {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    SINKS.with(|s| s.borrow_mut().push((id, sink)));
    SinkGuard {
        id,
        _not_send: std::marker::PhantomData,
    }
}

/// The library's logger: each record goes to the calling thread's sink, and
/// is dropped where the thread has none.
struct Forwarder;

impl ::log::Log for Forwarder {
    fn enabled(&self, _metadata: &::log::Metadata<'_>) -> bool {
        SINKS.with(|s| !s.borrow().is_empty())
    }

    fn log(&self, record: &::log::Record<'_>) {
        let Some(sink) = current_sink() else {
            return;
        };
        let kv = record.key_values();
        let level = kv
            .get(::log::kv::Key::from_str("xtl_level"))
            .and_then(|v| v.to_u64())
            .and_then(Level::from_number)
            .unwrap_or_else(|| Level::from_log(record.level()));
        let errno = kv
            .get(::log::kv::Key::from_str("errno"))
            .and_then(|v| v.to_i64())
            .and_then(|e| i32::try_from(e).ok());
        sink.log(level, errno, &record.args().to_string());
    }

    fn flush(&self) {}
}

static FORWARDER: Forwarder = Forwarder;

/// Make the library's logger the process's logger, unless another one is
/// installed already. Returns whether the library's is in place. The C
/// entry points call this; a Rust program that wants per-call sinks
/// instead of its own logger may too.
pub fn install_forwarder() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let ok = ::log::set_logger(&FORWARDER).is_ok();
        if ok {
            ::log::set_max_level(::log::LevelFilter::Trace);
        }
        ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Lines(RefCell<Vec<(Level, Option<i32>, String)>>);

    impl Log for Lines {
        fn log(&self, level: Level, errno: Option<i32>, msg: &str) {
            self.0.borrow_mut().push((level, errno, msg.to_string()));
        }
        fn progress(&self, _doing_what: &str, _done: u64, _total: u64) {}
    }

    #[test]
    fn messages_reach_the_sink_of_their_thread_with_level_and_errno() {
        assert!(install_forwarder());
        let outer = Rc::new(Lines::default());
        let inner = Rc::new(Lines::default());
        {
            let _g = scoped(outer.clone());
            message(Level::Detail, None, "one");
            {
                let _g = scoped(inner.clone());
                message(Level::Error, Some(22), "two");
                // Another thread's messages go nowhere near this sink.
                std::thread::spawn(|| message(Level::Info, None, "elsewhere"))
                    .join()
                    .unwrap();
            }
            ::log::warn!("plain facade record");
        }
        message(Level::Info, None, "after every scope");
        // Guards dropped out of order: the one dropped first no longer
        // receives anything, the other still does.
        let first = Rc::new(Lines::default());
        let second = Rc::new(Lines::default());
        let g1 = scoped(first.clone());
        let g2 = scoped(second.clone());
        drop(g1);
        message(Level::Info, None, "to the second");
        drop(g2);
        message(Level::Info, None, "to nobody");
        assert!(first.0.borrow().is_empty());
        assert_eq!(
            *second.0.borrow(),
            vec![(Level::Info, None, "to the second".to_string())]
        );
        assert_eq!(
            *outer.0.borrow(),
            vec![
                (Level::Detail, None, "one".to_string()),
                (Level::Warn, None, "plain facade record".to_string())
            ]
        );
        assert_eq!(
            *inner.0.borrow(),
            vec![(Level::Error, Some(22), "two".to_string())]
        );
    }
}
