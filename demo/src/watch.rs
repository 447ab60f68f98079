//! Watching the migration: the harnesses' lines become rounds, the
//! suspend and the two results on the screen, until both harnesses have
//! exited and said all they had to say, or one of them failed.

use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::display::{bar, bytes, secs, thousands, Screen};
use crate::events::{iteration_of, parse_line, HarnessEvent};
use crate::launch::Launched;
use crate::procs::{check_interrupted, Msg, Who};
use crate::setup::Setup;
use crate::Args;

/// How long to wait for the other side's exit after one side failed.
const FAILURE_GRACE: Duration = Duration::from_secs(2);

/// One precopy round as the progress messages showed it.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// The library's phase name, e.g. `Frames iteration 2`.
    pub label: String,
    /// The number in the label.
    pub iteration: Option<u32>,
    /// The phase's total: pfns scanned (the first round covers the p2m).
    pub pfns: u64,
    /// Sent after the guest was suspended (the stop-and-copy round).
    pub after_suspend: bool,
    /// Duration of the round.
    pub seconds: f64,
    /// Octets the relay had passed when the round ended (the stream so
    /// far, give or take what sits in the saver's socket buffer).
    pub wire_bytes_at_end: u64,
    #[serde(skip)]
    done: u64,
    #[serde(skip)]
    started: Option<Instant>,
    #[serde(skip)]
    finished: bool,
}

/// Progress state of the migration, fed by the harnesses' lines.
pub struct Migration {
    t0: Instant,
    pub rounds: Vec<Round>,
    pub suspended_at: Option<Instant>,
    /// CLOCK_MONOTONIC of the suspend and of the restore's return, when
    /// the harnesses report them (more precise than reading times).
    pub suspended_ns: Option<u64>,
    pub restored_ns: Option<u64>,
    pub saved: Option<(Instant, i64, String)>,
    pub restored: Option<(Instant, i64, String)>,
    pub workload_last: Option<String>,
    tails: [Vec<String>; 3],
    /// The guest's memory in pages: the part of a first pass that costs.
    guest_pages: u64,
}

impl Migration {
    /// No progress yet; the save started at `t0`, of a guest with
    /// `guest_pages` pages of memory.
    fn new(t0: Instant, guest_pages: u64) -> Migration {
        Migration {
            t0,
            guest_pages,
            rounds: Vec::new(),
            suspended_at: None,
            suspended_ns: None,
            restored_ns: None,
            saved: None,
            restored: None,
            workload_last: None,
            tails: Default::default(),
        }
    }

    /// The last lines `who` wrote (at most 12 are kept).
    pub fn tail_of(&mut self, who: Who) -> &mut Vec<String> {
        &mut self.tails[who as usize]
    }

    /// The last lines `who` wrote, for an error message.
    fn tail_text(&self, who: Who) -> String {
        self.tails[who as usize]
            .iter()
            .map(|l| format!("\n    {l}"))
            .collect()
    }

    /// `what` went wrong with `who`, followed by its last lines.
    pub fn failure(&self, who: Who, what: String) -> String {
        format!("{what}; its last lines:{}", self.tail_text(who))
    }

    /// Takes in one line of `who`'s output, read at `at`, with `wire`
    /// octets relayed so far: kept in its tail, and the harnesses' events
    /// turned into rounds, the suspend and the results.
    fn line(
        &mut self,
        who: Who,
        stderr: bool,
        at: Instant,
        text: String,
        wire: u64,
        screen: &mut Screen,
    ) {
        let t0 = self.t0;
        let tail = self.tail_of(who);
        tail.push(text.clone());
        if tail.len() > 12 {
            tail.remove(0);
        }
        match who {
            Who::Workload if !stderr => self.workload_last = Some(text),
            Who::Workload => {}
            Who::Saver => match parse_line("xg-save", &text) {
                Some(HarnessEvent::Progress { what, done, total }) => {
                    self.progress(at, &what, done, total, wire, screen)
                }
                Some(HarnessEvent::Suspend { rc }) => self.suspended(at, rc, wire, screen),
                Some(HarnessEvent::Timestamp { event, ns }) if event == "suspended" => {
                    self.suspended_ns = Some(ns)
                }
                Some(HarnessEvent::Result { rc, detail }) => {
                    self.finish_round(at, wire, screen);
                    self.saved = Some((at, rc, detail));
                    if rc == 0 {
                        screen.line(&format!("  save complete at {}", secs(at - t0)));
                    }
                }
                Some(HarnessEvent::Timestamp { .. }) | None => {}
            },
            Who::Restorer => match parse_line("xg-restore", &text) {
                Some(HarnessEvent::Timestamp { event, ns }) if event == "restored" => {
                    self.restored_ns = Some(ns)
                }
                Some(HarnessEvent::Result { rc, detail }) => {
                    self.restored = Some((at, rc, detail));
                    if rc == 0 {
                        screen.line(&format!("  restore complete at {}", secs(at - t0)));
                    }
                }
                _ => {}
            },
        }
    }

    fn finish_round(&mut self, at: Instant, wire: u64, screen: &mut Screen) {
        let index = self.rounds.len().saturating_sub(1);
        let Some(r) = self.rounds.last_mut() else {
            return;
        };
        if r.finished {
            return;
        }
        r.finished = true;
        if let Some(s) = r.started {
            r.seconds = at.duration_since(s).as_secs_f64();
        }
        r.wire_bytes_at_end = wire;
        let kind = if r.after_suspend {
            "stop-and-copy"
        } else {
            "live"
        };
        let line = format!(
            "  round {:<2} {:<13} {:>11} pfns  {:>8}   relayed so far {:>10}",
            index,
            kind,
            thousands(r.pfns),
            secs(Duration::from_secs_f64(r.seconds)),
            bytes(r.wire_bytes_at_end),
        );
        screen.line(&line);
    }

    /// The suspend callback returned: the live rounds are over.
    fn suspended(&mut self, at: Instant, rc: i64, wire: u64, screen: &mut Screen) {
        self.finish_round(at, wire, screen);
        self.suspended_at = Some(at);
        screen.line(&format!(
            "  guest suspended at {} (suspend callback rc={rc}); the last round follows",
            secs(at.saturating_duration_since(self.t0))
        ));
    }

    /// A progress message: rounds are the `Frames iteration N` phases. A
    /// label seen again (the last live round and the one after suspend
    /// share it) or a count going back starts a new round.
    fn progress(
        &mut self,
        at: Instant,
        what: &str,
        done: u64,
        total: u64,
        wire: u64,
        screen: &mut Screen,
    ) {
        if iteration_of(what).is_none() {
            return;
        }
        let new_round = match self.rounds.last() {
            None => true,
            Some(r) => r.finished || r.label != what || done < r.done,
        };
        if new_round {
            self.finish_round(at, wire, screen);
            self.rounds.push(Round {
                label: what.to_string(),
                iteration: iteration_of(what),
                pfns: total,
                after_suspend: self.suspended_at.is_some(),
                seconds: 0.0,
                wire_bytes_at_end: wire,
                done,
                started: Some(at),
                finished: false,
            });
        }
        let r = self.rounds.last_mut().expect("a round");
        r.done = done;
        r.pfns = total;
        if done >= total {
            self.finish_round(at, wire, screen);
        }
    }

    /// What a round's bar counts: (done, total, unit). A first pass scans
    /// the whole p2m (1,044,480 pfns for a 1 GiB HVM guest, whose p2m runs
    /// to the special pages below 4 GiB), but only the guest's pages, at
    /// the front, take time: the holes after them pass in an instant. So a
    /// round larger than the guest is measured against the guest's pages.
    fn bar_measure(&self, r: &Round) -> (u64, u64, &'static str) {
        if self.guest_pages > 0 && r.pfns > self.guest_pages {
            (r.done.min(self.guest_pages), self.guest_pages, "pages")
        } else {
            (r.done, r.pfns, "pfns")
        }
    }

    fn status_text(&self, wire: u64, pages: u64) -> String {
        let elapsed = secs(self.t0.elapsed());
        match self.rounds.last() {
            Some(r) if !r.finished => {
                let (done, total, unit) = self.bar_measure(r);
                format!(
                    // Short enough for 80 columns with a 1 GiB guest.
                    "  round {} {} {} {:>3}%  {}/{} {unit}  {}  {}",
                    self.rounds.len() - 1,
                    if r.after_suspend { "final" } else { "live" },
                    bar(done, total, 12),
                    (done.min(total) * 100).checked_div(total).unwrap_or(100),
                    thousands(done),
                    thousands(total),
                    bytes(wire),
                    elapsed
                )
            }
            _ if self.saved.is_some() => format!(
                "  waiting for the restore to finish  wire {}  {} pages  {elapsed}",
                bytes(wire),
                thousands(pages)
            ),
            _ => format!(
                "  saving  wire {}  {} pages  {elapsed}",
                bytes(wire),
                thousands(pages)
            ),
        }
    }
}

/// What the watch saw.
pub struct Watched {
    /// The rounds, the suspend and the results.
    pub migration: Migration,
    /// Which children closed their output, by [`Who`].
    pub closed: [bool; 3],
}

/// Follows the harnesses until both exited with all their output read;
/// an error when one failed (naming both when both did), on a timeout or
/// an interruption.
pub fn watch(
    args: &Args,
    setup: &Setup,
    run: &mut Launched,
    screen: &mut Screen,
) -> Result<Watched, String> {
    let guest_pages = crate::setup::parse_size(&args.memory).map_or(0, |b| b / 4096);
    let mut m = Migration::new(run.t0, guest_pages);
    let mut closed = [false; 3];
    let mut saver_status = None;
    let mut restorer_status = None;
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let mut first_failure: Option<Instant> = None;
    loop {
        check_interrupted()?;
        if Instant::now() >= setup.deadline {
            return Err(format!(
                "the migration did not finish within {} s (--timeout); logs: {}",
                args.timeout,
                setup.logs.display()
            ));
        }
        match run.rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Line {
                who,
                stderr,
                at,
                text,
            }) => m.line(
                who,
                stderr,
                at,
                text,
                run.wire.load(Ordering::Relaxed),
                screen,
            ),
            Ok(Msg::Closed(who)) => closed[who as usize] = true,
            Err(RecvTimeoutError::Timeout) => {}
            // Cannot happen while `tx` lives, but never spin on it.
            Err(RecvTimeoutError::Disconnected) => {
                return Err("internal error: the message channel closed".into())
            }
        }
        if saver_status.is_none() {
            saver_status = run.saver.poll()?;
        }
        if restorer_status.is_none() {
            restorer_status = run.restorer.poll()?;
        }
        // Judge a child once it has exited and all its output is read.
        // When one fails, the other usually follows (a broken link); wait
        // a moment for it so that the message shows both, restorer first.
        let mut failures = Vec::new();
        let mut judged = 0;
        for (who, status, name) in [
            (Who::Restorer, restorer_status, "xg-restore"),
            (Who::Saver, saver_status, "xg-save"),
        ] {
            if let (Some(s), true) = (status, closed[who as usize]) {
                judged += 1;
                let result = if who == Who::Saver {
                    &m.saved
                } else {
                    &m.restored
                };
                if !s.success() {
                    let what = match result {
                        Some((_, _, d)) => format!("{name} failed ({s}): {d}"),
                        None => format!("{name} failed ({s})"),
                    };
                    failures.push(m.failure(who, what));
                }
            }
        }
        if !failures.is_empty() {
            let since = *first_failure.get_or_insert_with(Instant::now);
            if judged == 2 || since.elapsed() >= FAILURE_GRACE {
                screen.clear_status();
                return Err(format!(
                    "{}\n  logs: {}",
                    failures.join("\n"),
                    setup.logs.display()
                ));
            }
        }
        let done = matches!((saver_status, restorer_status), (Some(_), Some(_)))
            && closed[Who::Saver as usize]
            && closed[Who::Restorer as usize];
        if done {
            break;
        }
        if screen.is_tty() && last_draw.elapsed() >= Duration::from_millis(100) {
            screen.status(&m.status_text(
                run.wire.load(Ordering::Relaxed),
                run.pages.load(Ordering::Relaxed),
            ));
            last_draw = Instant::now();
        }
    }
    Ok(Watched {
        migration: m,
        closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration() -> Migration {
        // A 1 GiB guest.
        Migration::new(Instant::now(), 262_144)
    }

    #[test]
    fn rounds_follow_iteration_phases_and_the_suspend_starts_the_last_one() {
        let mut m = migration();
        let mut screen = Screen::new(false);
        let t = Instant::now();
        let steps: [(&str, u64, u64); 7] = [
            ("Start of stream", 0, 0),
            ("Frames iteration 0", 0, 100),
            ("Frames iteration 0", 50, 100),
            ("Frames iteration 0", 100, 100),
            ("Frames iteration 1", 0, 10),
            ("Frames iteration 1", 10, 10),
            ("Frames iteration 2", 0, 3),
        ];
        for (what, done, total) in steps {
            m.progress(t, what, done, total, 0, &mut screen);
        }
        m.suspended(t, 0, 0, &mut screen);
        // The same label again, after the suspend.
        m.progress(t, "Frames iteration 2", 0, 0, 0, &mut screen);
        m.progress(t, "End of stream", 0, 0, 0, &mut screen);
        let got: Vec<(Option<u32>, u64, bool, bool)> = m
            .rounds
            .iter()
            .map(|r| (r.iteration, r.pfns, r.after_suspend, r.finished))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(0), 100, false, true),
                (Some(1), 10, false, true),
                (Some(2), 3, false, true),
                (Some(2), 0, true, true),
            ]
        );
    }

    #[test]
    fn a_count_going_back_under_one_label_is_a_new_round() {
        let mut m = migration();
        let mut screen = Screen::new(false);
        let t = Instant::now();
        m.progress(t, "Frames iteration 4", 0, 20, 0, &mut screen);
        m.progress(t, "Frames iteration 4", 10, 20, 0, &mut screen);
        m.progress(t, "Frames iteration 4", 0, 5, 0, &mut screen);
        assert_eq!(m.rounds.len(), 2);
        assert!(m.rounds[0].finished);
        assert_eq!(m.rounds[1].pfns, 5);
    }

    #[test]
    fn a_first_pass_over_the_p2m_is_measured_against_the_guests_pages() {
        let mut m = migration();
        let mut screen = Screen::new(false);
        let t = Instant::now();
        // Halfway through the guest's memory, an eighth of the p2m.
        m.progress(t, "Frames iteration 0", 131_072, 1_044_480, 0, &mut screen);
        let text = m.status_text(0, 0);
        assert!(text.contains(" 50%"), "{text}");
        assert!(text.contains("131,072/262,144 pages"), "{text}");
        // A later round smaller than the guest counts its own pfns.
        m.progress(t, "Frames iteration 1", 500, 1_000, 0, &mut screen);
        let text = m.status_text(0, 0);
        assert!(
            text.contains(" 50%") && text.contains("500/1,000 pfns"),
            "{text}"
        );
    }
}
