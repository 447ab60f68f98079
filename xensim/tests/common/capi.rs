//! The C harnesses of `capi-tests/` (`xg-save`, `xg-restore`): running them
//! on a host and reading what they report on stderr.

use std::path::Path;
use std::process::Output;

use super::{
    describe, field, parse_num, run, tagged_lines, Host, CONSOLE_EVTCHN, OP_TIMEOUT, STORE_EVTCHN,
};

/// `xg-save OPTS DOMID IMG`, with `faults` as `XENSIM_FAULTS`.
pub fn xg_save(host: &Host, domid: u32, opts: &[&str], img: &Path, faults: Option<&str>) -> Output {
    let mut cmd = host.command(host.env.capi("xg-save"));
    cmd.args(opts).arg(domid.to_string()).arg(img);
    if let Some(f) = faults {
        cmd.env("XENSIM_FAULTS", f);
    }
    run(&mut cmd, OP_TIMEOUT)
}

/// `xg-restore DOMID IMG` with the event channels [`STORE_EVTCHN`] and
/// [`CONSOLE_EVTCHN`], with `faults` as `XENSIM_FAULTS`.
pub fn xg_restore(host: &Host, domid: u32, img: &Path, faults: Option<&str>) -> Output {
    let mut cmd = host.command(host.env.capi("xg-restore"));
    cmd.args(["--store-evtchn", &STORE_EVTCHN.to_string()])
        .args(["--console-evtchn", &CONSOLE_EVTCHN.to_string()])
        .arg(domid.to_string())
        .arg(img);
    if let Some(f) = faults {
        cmd.env("XENSIM_FAULTS", f);
    }
    run(&mut cmd, OP_TIMEOUT)
}

/// A harness's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The harness's final "result" line.
pub fn result_line(out: &Output, prefix: &str) -> String {
    let err = stderr(out);
    tagged_lines(&err, prefix)
        .into_iter()
        .rfind(|l| l.starts_with("result "))
        .unwrap_or_else(|| panic!("no {prefix}result line\n{}", describe(out)))
        .to_string()
}

/// Progress phases ("what") the harness reported, in order, with the total
/// of the phase's last report.
pub fn progress_phases(out: &Output, prefix: &str) -> Vec<(String, u64)> {
    let err = stderr(out);
    let mut phases: Vec<(String, u64)> = Vec::new();
    for line in tagged_lines(&err, prefix) {
        let Some(rest) = line.strip_prefix("progress ") else {
            continue;
        };
        let what = rest
            .split_once("what=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(w, _)| w.to_string())
            .unwrap_or_default();
        let total = field(rest, "total").and_then(parse_num).unwrap_or(0);
        match phases.last_mut() {
            Some((w, t)) if *w == what => *t = total,
            _ => phases.push((what, total)),
        }
    }
    phases
}

/// `(iteration, dirty_count)` of each precopy round `xg-save --stats`
/// reported, as libxenguest hands them to the policy callback (-1: no
/// count given).
pub fn precopy_stats(out: &Output) -> Vec<(u64, i64)> {
    let err = stderr(out);
    tagged_lines(&err, "xg-save: ")
        .into_iter()
        .filter(|l| l.starts_with("precopy "))
        .map(|l| {
            (
                field(l, "iteration").and_then(parse_num).unwrap_or(0),
                field(l, "dirty_count")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(-1),
            )
        })
        .collect()
}

/// Precopy rounds after the first that found dirty pages.
pub fn dirty_rounds(stats: &[(u64, i64)]) -> usize {
    stats.iter().filter(|(i, d)| *i >= 1 && *d > 0).count()
}
