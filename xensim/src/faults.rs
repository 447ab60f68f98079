//! Fault injection: make a named call fail with a chosen errno.
//!
//! Rules come from `$XENSIM_FAULTS` (read once per process) and from the host
//! file `DIR/faults` (re-read whenever `xensim fault set|clear` bumps the
//! host's fault generation). Syntax, comma-separated:
//! `NAME:ERRNO[:N[:once|always]]` — ERRNO symbolic (`EIO`) or numeric; `N` is
//! the 1-based call index (per process, counted from when the rule became
//! active in that process) at which the rule fires: `once` (default) fails
//! only that call, `always` fails it and every later call.

use crate::error::{err, errno_name, parse_errno, Error, Result};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// The file `$XENSIM_FAULT_TRACE` names, read at the first fault point of
/// the process.
fn trace_path() -> Option<&'static std::path::Path> {
    static TRACE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    TRACE
        .get_or_init(|| {
            std::env::var_os(crate::host::ENV_FAULT_TRACE)
                .filter(|p| !p.is_empty())
                .map(Into::into)
        })
        .as_deref()
}

/// Appends `name` to the trace, if one is set: one `write` of the whole
/// line on an `O_APPEND` file, so lines of concurrent processes and
/// threads never interleave. The order of the lines is the order of the
/// checks, hence the N-th line naming a call is its N-th call, the index a
/// `$XENSIM_FAULTS` rule counts. The file is opened for each line and
/// closed again, so a traced process holds no descriptor more than an
/// untraced one (a leak check counts them); a trace that cannot be written
/// is skipped, never made the call's failure.
pub(crate) fn trace(name: &str) {
    static LOCK: Mutex<()> = Mutex::new(());
    if let Some(path) = trace_path() {
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(format!("{name}\n").as_bytes());
        }
    }
}

/// Whether a rule fires once or keeps firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Fail only the N-th call.
    Once,
    /// Fail the N-th call and every later one.
    Always,
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Call name, as the libxenctrl function (`xc_get_pfn_type_batch`).
    pub call: String,
    /// Positive errno to fail with.
    pub errno: i32,
    /// 1-based index of the first failing call.
    pub start: u64,
    /// Once or from `start` on.
    pub mode: FaultMode,
}

impl FaultRule {
    /// Parse a comma-separated list of rules (empty → no rules).
    pub fn parse_list(spec: &str) -> Result<Vec<FaultRule>> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(FaultRule::parse)
            .collect()
    }

    /// Parse one `NAME:ERRNO[:N[:once|always]]`.
    pub fn parse(s: &str) -> Result<FaultRule> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() < 2 || parts.len() > 4 || parts[0].is_empty() {
            return err(
                libc::EINVAL,
                format!("fault rule {s:?}: expected NAME:ERRNO[:N[:once|always]]"),
            );
        }
        let errno = parse_errno(parts[1]).ok_or_else(|| {
            Error::new(
                libc::EINVAL,
                format!("fault rule {s:?}: unknown errno {:?}", parts[1]),
            )
        })?;
        let start = match parts.get(2) {
            Some(n) => n.parse::<u64>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                Error::new(libc::EINVAL, format!("fault rule {s:?}: N must be >= 1"))
            })?,
            None => 1,
        };
        let mode = match parts.get(3).copied() {
            None | Some("once") => FaultMode::Once,
            Some("always") => FaultMode::Always,
            Some(m) => {
                return err(
                    libc::EINVAL,
                    format!("fault rule {s:?}: mode {m:?} is not once|always"),
                )
            }
        };
        Ok(FaultRule {
            call: parts[0].to_string(),
            errno,
            start,
            mode,
        })
    }

    /// The rule in spec syntax (errno symbolic).
    pub fn to_spec(&self) -> String {
        let m = match self.mode {
            FaultMode::Once => "once",
            FaultMode::Always => "always",
        };
        format!(
            "{}:{}:{}:{}",
            self.call,
            errno_name(self.errno),
            self.start,
            m
        )
    }
}

/// Rules with their per-process call counters.
#[derive(Debug, Default)]
pub(crate) struct RuleSet {
    rules: Vec<(FaultRule, u64)>,
}

impl RuleSet {
    pub(crate) fn new(rules: Vec<FaultRule>) -> Self {
        RuleSet {
            rules: rules.into_iter().map(|r| (r, 0)).collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Count a call of `name`; the errno of the first rule that fires.
    pub(crate) fn hit(&mut self, name: &str) -> Option<i32> {
        let mut fired = None;
        for (r, count) in &mut self.rules {
            if r.call != name {
                continue;
            }
            *count += 1;
            let fires = match r.mode {
                FaultMode::Once => *count == r.start,
                FaultMode::Always => *count >= r.start,
            };
            if fires && fired.is_none() {
                fired = Some(r.errno);
            }
        }
        fired
    }
}

/// Per-process fault state of a host: env rules plus the host file's rules
/// at a given generation.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub(crate) env: RuleSet,
    pub(crate) file: RuleSet,
    pub(crate) file_gen: u64,
}

impl FaultState {
    pub(crate) fn check(&mut self, name: &str) -> Result<()> {
        let a = self.env.hit(name);
        let b = self.file.hit(name);
        match a.or(b) {
            Some(e) => err(e, format!("{name}: injected fault")),
            None => Ok(()),
        }
    }

    pub(crate) fn quiet(&self) -> bool {
        self.env.is_empty() && self.file.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_symbolic_and_numeric_errnos() {
        let r = FaultRule::parse("xc_get_pfn_type_batch:EIO").unwrap();
        assert_eq!((r.errno, r.start, r.mode), (libc::EIO, 1, FaultMode::Once));
        let r = FaultRule::parse("xenforeignmemory_map:12:3:always").unwrap();
        assert_eq!((r.errno, r.start, r.mode), (12, 3, FaultMode::Always));
        assert_eq!(FaultRule::parse(&r.to_spec()).unwrap(), r);
        assert!(FaultRule::parse("x:EBOGUS").is_err());
        assert!(FaultRule::parse("x:EIO:0").is_err());
        assert!(FaultRule::parse("x:EIO:1:sometimes").is_err());
        assert!(FaultRule::parse("nocolon").is_err());
        assert_eq!(
            FaultRule::parse_list(" a:EIO , b:ENOMEM:2 ").unwrap().len(),
            2
        );
    }

    #[test]
    fn once_rule_fires_only_at_the_nth_call() {
        let mut s = RuleSet::new(FaultRule::parse_list("f:EIO:3").unwrap());
        let fired: Vec<bool> = (0..6).map(|_| s.hit("f").is_some()).collect();
        assert_eq!(fired, [false, false, true, false, false, false]);
        assert_eq!(s.hit("other"), None);
    }

    #[test]
    fn always_rule_fires_from_the_nth_call_on() {
        let mut s = RuleSet::new(FaultRule::parse_list("f:ENOMEM:2:always").unwrap());
        let fired: Vec<Option<i32>> = (0..4).map(|_| s.hit("f")).collect();
        assert_eq!(
            fired,
            [
                None,
                Some(libc::ENOMEM),
                Some(libc::ENOMEM),
                Some(libc::ENOMEM)
            ]
        );
    }
}
