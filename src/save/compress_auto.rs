//! `XCMIG_COMPRESS=auto`: whether to compress the next batches, from what
//! the save measures (pure: figures and times in, decision out).
//!
//! Compressing pays only while the link is slower than what compression
//! can feed it, and what compression can feed depends on everything else
//! that wants the same cores (the saver's own copying, the kernel's TCP, a
//! restorer or a guest on the same host). So `auto` does not predict it: it
//! measures both. The pages a mode moves per second (page octets of the
//! batches it handed on, over the time from the first of them to the last
//! write they caused) is measured over a short probe of each mode, then the
//! faster mode runs for a window, then the slower one is probed again, so
//! a link that slows down or speeds up is followed:
//!
//! ```text
//! probe compressed (8) -> probe plain (8) -> faster (64) -> probe slower (8) -> faster (64) ...
//! ```
//!
//! Compressing wins only when its rate beats the plain rate by
//! [`MARGIN`]; a fast local save therefore stays uncompressed after its
//! two probes (64 MiB of pages). Each mode's rate is the mean of its last
//! two windows, so one noisy window does not flip the decision. A new
//! memory round ends the current window (the gap between rounds is not
//! counted).

use std::time::Instant;

/// Batches in a probe of a mode.
pub(crate) const PROBE: u32 = 8;

/// Batches of the faster mode between probes (256 MiB of pages at most).
pub(crate) const WINDOW: u32 = 64;

/// How much faster compressing must be measured to be chosen.
pub(crate) const MARGIN: f64 = 1.1;

/// One decision, with the figures behind it (for the log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AutoVerdict {
    /// Compress the next window.
    pub(crate) compress: bool,
    /// Page octets per second moved uncompressed.
    pub(crate) plain: Option<f64>,
    /// Page octets per second moved compressed.
    pub(crate) packed: Option<f64>,
    /// Page octets over stream octets of compressed batches.
    pub(crate) ratio: Option<f64>,
}

/// What one window of batches measured.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    compress: bool,
    raw: u64,
    start: Option<Instant>,
    last: Option<Instant>,
}

impl Window {
    fn rate(&self) -> Option<f64> {
        let secs = self.last?.duration_since(self.start?).as_secs_f64();
        (secs > 1e-4 && self.raw > 0).then(|| self.raw as f64 / secs)
    }
}

/// The state of `auto` for one save.
#[derive(Debug, Clone)]
pub(crate) struct AutoCompress {
    cur: Window,
    /// Batches left in the current window.
    left: u32,
    /// Whether the current window is a probe.
    probing: bool,
    /// The last two rates of each mode: [plain, compressed].
    rates: [Vec<f64>; 2],
    /// Page octets and stream octets of compressed batches.
    raw_packed: (u64, u64),
    chosen: Option<bool>,
}

impl AutoCompress {
    /// Starts with a probe of compressing.
    pub(crate) fn new() -> AutoCompress {
        AutoCompress {
            cur: Window {
                compress: true,
                ..Window::default()
            },
            left: PROBE,
            probing: true,
            rates: [Vec::new(), Vec::new()],
            raw_packed: (0, 0),
            chosen: None,
        }
    }

    /// Whether the batch of `raw` page octets being made now is
    /// compressed; with a verdict (to log) when the chosen mode changed.
    pub(crate) fn next_batch(&mut self, raw: u64, now: Instant) -> (bool, Option<AutoVerdict>) {
        let mut verdict = None;
        if self.left == 0 {
            verdict = self.end_window();
        }
        self.left -= 1;
        self.cur.raw += raw;
        self.cur.start.get_or_insert(now);
        self.cur.last = Some(now);
        (self.cur.compress, verdict)
    }

    /// A page record was written at `now`: the window's pages have moved
    /// at least this far.
    pub(crate) fn wrote(&mut self, now: Instant) {
        if self.cur.start.is_some() {
            self.cur.last = Some(now);
        }
    }

    /// A worker made `packed` stream octets of `raw` page octets.
    pub(crate) fn compressed(&mut self, raw: u64, packed: u64) {
        self.raw_packed.0 += raw;
        self.raw_packed.1 += packed;
    }

    /// A round begins: the current window ends at its last write.
    pub(crate) fn new_round(&mut self) {
        if self.cur.raw > 0 {
            self.left = 0;
        }
    }

    fn mean(&self, compress: bool) -> Option<f64> {
        let r = &self.rates[usize::from(compress)];
        (!r.is_empty()).then(|| r.iter().sum::<f64>() / r.len() as f64)
    }

    /// Closes the current window and opens the next; a verdict when the
    /// chosen mode changed.
    fn end_window(&mut self) -> Option<AutoVerdict> {
        if let Some(rate) = self.cur.rate() {
            let r = &mut self.rates[usize::from(self.cur.compress)];
            r.push(rate);
            if r.len() > 2 {
                r.remove(0);
            }
        }
        let (plain, packed) = (self.mean(false), self.mean(true));
        let next = match (plain, packed) {
            // Probe the mode not measured yet.
            (None, _) => Some(false),
            (_, None) => Some(true),
            _ => None,
        };
        let best = match (plain, packed) {
            (Some(p), Some(c)) => c > p * MARGIN,
            _ => self.cur.compress,
        };
        let (compress, probing) = match next {
            Some(m) => (m, true),
            // After a window of the best mode, probe the other.
            None if !self.probing => (!best, true),
            None => (best, false),
        };
        self.cur = Window {
            compress,
            ..Window::default()
        };
        self.probing = probing;
        self.left = if probing { PROBE } else { WINDOW };
        let changed = plain.is_some() && packed.is_some() && self.chosen != Some(best);
        if plain.is_some() && packed.is_some() {
            self.chosen = Some(best);
        }
        changed.then(|| AutoVerdict {
            compress: best,
            plain,
            packed,
            ratio: (self.raw_packed.1 > 0)
                .then(|| self.raw_packed.0 as f64 / self.raw_packed.1 as f64),
        })
    }
}

impl Default for AutoCompress {
    fn default() -> Self {
        AutoCompress::new()
    }
}

/// How long a batch of `raw` octets takes at `rate` octets per second.
#[cfg(test)]
fn at(rate: f64, raw: u64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(raw as f64 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1048576.0;
    const BATCH: u64 = 4 << 20;

    /// Runs `batches` batches through `a`, each taking the time its mode's
    /// rate (MiB/s of pages) gives; returns how many were compressed.
    fn run(a: &mut AutoCompress, t: &mut Instant, batches: u32, plain: f64, packed: f64) -> u32 {
        let mut n = 0;
        for _ in 0..batches {
            let (c, _) = a.next_batch(BATCH, *t);
            let rate = if c { packed } else { plain };
            *t += at(rate * MIB, BATCH);
            if c {
                n += 1;
                a.compressed(BATCH, BATCH / 2);
            }
            a.wrote(*t);
        }
        n
    }

    #[test]
    fn a_slow_link_compresses_but_for_the_plain_probes() {
        // 1 Gbit/s: plain 113 MiB/s of pages, compressed 250.
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        let n = run(&mut a, &mut t, 512, 113.0, 250.0);
        // Plain runs only in its probes: one per 72 batches after the first.
        assert!(n >= 512 - 8 * 8, "compressed {n}");
    }

    #[test]
    fn a_fast_local_save_stays_uncompressed_but_for_the_probes() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        let n = run(&mut a, &mut t, 512, 2000.0, 600.0);
        assert!(n <= 8 * 8, "compressed {n}");
    }

    #[test]
    fn compressing_must_be_faster_by_the_margin() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        let n = run(&mut a, &mut t, 512, 500.0, 520.0);
        assert!(n <= 8 * 8, "compressed {n}");
    }

    #[test]
    fn the_decision_follows_a_link_that_slows_down() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        assert!(run(&mut a, &mut t, 200, 2000.0, 600.0) <= 4 * 8);
        // The link drops to 100 MiB/s: within a few probes it compresses.
        let n = run(&mut a, &mut t, 400, 100.0, 250.0);
        assert!(n >= 250, "compressed {n}");
    }

    #[test]
    fn a_verdict_is_reported_only_when_the_chosen_mode_changes() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        let mut verdicts = Vec::new();
        for i in 0..600u32 {
            let fast_link = i < 300;
            let (c, v) = a.next_batch(BATCH, t);
            let rate = match (c, fast_link) {
                (true, _) => 300.0,
                (false, true) => 1000.0,
                (false, false) => 100.0,
            };
            t += at(rate * MIB, BATCH);
            a.wrote(t);
            if let Some(v) = v {
                verdicts.push(v.compress);
            }
        }
        assert_eq!(verdicts, vec![false, true]);
    }

    #[test]
    fn a_new_round_ends_the_window_without_counting_the_gap() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        run(&mut a, &mut t, 4, 100.0, 100.0);
        a.new_round();
        // A long pause between rounds.
        t += std::time::Duration::from_secs(10);
        let (c, _) = a.next_batch(BATCH, t);
        // The compressed probe's rate was measured without the pause.
        assert!(!c, "the plain probe starts");
        let r = a.mean(true).expect("the compressed probe was measured");
        assert!((r / MIB - 100.0).abs() < 1.0, "{}", r / MIB);
    }
}
