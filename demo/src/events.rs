//! Reads the harnesses' parsable stderr lines (`capi-tests/xg-save.c`,
//! `xg-restore.c`): progress the library reports through the caller's
//! xentoollog logger, the suspend callback, and the result of the call.

/// One line of interest from a harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HarnessEvent {
    /// `<prog>: progress context=C what="W" done=N total=N`
    Progress {
        /// The phase, e.g. `Frames iteration 2`.
        what: String,
        /// Done so far.
        done: u64,
        /// The phase's total.
        total: u64,
    },
    /// `xg-save: suspend domid=D rc=R`: the suspend callback returned.
    Suspend {
        /// The return code of `xc_domain_shutdown`.
        rc: i64,
    },
    /// `<prog>: timestamp event=E monotonic_ns=N`: CLOCK_MONOTONIC at an
    /// event (`suspended` in xg-save, `restored` in xg-restore), comparable
    /// across processes.
    Timestamp {
        /// The event's name.
        event: String,
        /// CLOCK_MONOTONIC in nanoseconds.
        ns: u64,
    },
    /// `<prog>: result rc=R errno=E (text) ...`: the library call returned.
    Result {
        /// The return value of `xc_domain_save`/`xc_domain_restore`.
        rc: i64,
        /// The text after `rc=`, for messages.
        detail: String,
    },
}

/// The value of `key=` among space-separated words.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Parses a harness line of program `prog` (`xg-save`, `xg-restore`).
/// Lines of other shapes (the library's own log messages) give `None`.
pub fn parse_line(prog: &str, line: &str) -> Option<HarnessEvent> {
    let rest = line.strip_prefix(prog)?.strip_prefix(": ")?;
    if let Some(p) = rest.strip_prefix("progress ") {
        let start = p.find("what=\"")? + "what=\"".len();
        let len = p[start..].find('"')?;
        let what = p[start..start + len].to_string();
        let tail = &p[start + len + 1..];
        let done = field(tail, "done")?.parse().ok()?;
        let total = field(tail, "total")?.parse().ok()?;
        return Some(HarnessEvent::Progress { what, done, total });
    }
    if let Some(p) = rest.strip_prefix("suspend ") {
        let rc = field(p, "rc")?.parse().ok()?;
        return Some(HarnessEvent::Suspend { rc });
    }
    if let Some(p) = rest.strip_prefix("timestamp ") {
        let event = field(p, "event")?.to_string();
        let ns = field(p, "monotonic_ns")?.parse().ok()?;
        return Some(HarnessEvent::Timestamp { event, ns });
    }
    if let Some(p) = rest.strip_prefix("result ") {
        let rc = field(p, "rc")?.parse().ok()?;
        return Some(HarnessEvent::Result {
            rc,
            detail: p.to_string(),
        });
    }
    None
}

/// The precopy round a `Frames iteration N` phase names, if it is one.
pub fn iteration_of(what: &str) -> Option<u32> {
    what.strip_prefix("Frames iteration ")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_progress_suspend_and_result_lines() {
        assert_eq!(
            parse_line(
                "xg-save",
                "xg-save: progress context=xc what=\"Frames iteration 3\" done=1024 total=5000"
            ),
            Some(HarnessEvent::Progress {
                what: "Frames iteration 3".into(),
                done: 1024,
                total: 5000
            })
        );
        assert_eq!(
            parse_line("xg-save", "xg-save: suspend domid=1 rc=0"),
            Some(HarnessEvent::Suspend { rc: 0 })
        );
        assert_eq!(
            parse_line(
                "xg-restore",
                "xg-restore: result rc=-1 errno=12 (Cannot allocate memory) store_gfn=0x0"
            ),
            Some(HarnessEvent::Result {
                rc: -1,
                detail: "rc=-1 errno=12 (Cannot allocate memory) store_gfn=0x0".into()
            })
        );
    }

    #[test]
    fn parses_timestamp_lines() {
        assert_eq!(
            parse_line(
                "xg-restore",
                "xg-restore: timestamp event=restored monotonic_ns=123456789"
            ),
            Some(HarnessEvent::Timestamp {
                event: "restored".into(),
                ns: 123456789
            })
        );
        assert_eq!(
            parse_line(
                "xg-save",
                "xg-save: timestamp event=suspended monotonic_ns=x"
            ),
            None
        );
    }

    #[test]
    fn ignores_other_programs_and_log_messages() {
        assert_eq!(parse_line("xg-save", "xg-restore: result rc=0"), None);
        assert_eq!(parse_line("xg-save", "xc: detail: some message"), None);
        assert_eq!(
            parse_line("xg-save", "xg-save: progress what=\"unterminated"),
            None
        );
        assert_eq!(parse_line("xg-save", "xg-save: suspend domid=1"), None);
    }

    #[test]
    fn recognises_precopy_round_phases() {
        assert_eq!(iteration_of("Frames iteration 0"), Some(0));
        assert_eq!(iteration_of("Frames iteration 12"), Some(12));
        assert_eq!(iteration_of("Frames"), None);
        assert_eq!(iteration_of("Start of stream"), None);
    }
}
