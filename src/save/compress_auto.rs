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
//! probe compressed (4) -> probe plain (4) -> faster (64) -> probe slower (4) -> faster (128) ...
//! ```
//!
//! Compressing wins only when its rate beats the plain rate by
//! [`MARGIN`]; a fast local save therefore stays uncompressed after its
//! two probes (32 MiB of pages). Each time a probe confirms the choice the
//! next window doubles (up to [`MAX_WINDOW`]), so the cost of probing the
//! slower mode shrinks as the save goes on; a change of choice starts
//! again at [`WINDOW`]. Each mode's rate is the mean of its last two
//! windows, so one noisy window does not flip the decision. Windows run
//! across memory rounds, but the time between rounds (scanning the dirty
//! bitmap, the policy) is not counted.

use std::time::{Duration, Instant};

/// Batches in a probe of a mode.
pub(crate) const PROBE: u32 = 4;

/// Batches of the faster mode after a change of choice.
pub(crate) const WINDOW: u32 = 64;

/// The longest window between probes (4 GiB of pages).
pub(crate) const MAX_WINDOW: u32 = 1024;

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
    /// Time counted in earlier rounds.
    elapsed: Duration,
    start: Option<Instant>,
    last: Option<Instant>,
}

impl Window {
    fn busy(&self) -> Duration {
        match (self.start, self.last) {
            (Some(s), Some(l)) => self.elapsed + l.duration_since(s),
            _ => self.elapsed,
        }
    }

    fn rate(&self) -> Option<f64> {
        let secs = self.busy().as_secs_f64();
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
    /// The length of the next window of the chosen mode.
    window: u32,
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
            window: WINDOW,
        }
    }

    /// Whether the batch of `raw` page octets being made now is
    /// compressed; with a verdict (to log) when the chosen mode changed.
    pub(crate) fn next_batch(&mut self, raw: u64, now: Instant) -> (bool, Option<AutoVerdict>) {
        let mut verdict = None;
        if self.left > 0 && self.overtaken() {
            // The chosen mode fell behind what the other one measured:
            // its old figures no longer hold.
            self.rates[usize::from(self.cur.compress)].clear();
            self.window = WINDOW;
            self.left = 0;
        }
        if self.left == 0 {
            verdict = self.end_window();
        }
        self.left -= 1;
        self.cur.raw += raw;
        self.cur.start.get_or_insert(now);
        self.cur.last = Some(now);
        (self.cur.compress, verdict)
    }

    /// Whether the next batch ends the current window: the caller first
    /// writes every batch still with the workers, so that the window's
    /// time covers its pages' writes.
    pub(crate) fn window_ends(&self) -> bool {
        self.left == 0 || self.overtaken()
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

    /// A round begins: the time until its first batch is not counted.
    pub(crate) fn new_round(&mut self) {
        self.cur.elapsed = self.cur.busy();
        self.cur.start = None;
        self.cur.last = None;
    }

    /// Whether the window of the chosen mode, a probe's length into it, is
    /// slower than the other mode was measured.
    fn overtaken(&self) -> bool {
        if self.probing || self.left + PROBE > self.window {
            return false;
        }
        let (Some(now), Some(other)) = (self.cur.rate(), self.mean(!self.cur.compress)) else {
            return false;
        };
        if self.cur.compress {
            now < other
        } else {
            now * MARGIN < other
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
        let both = plain.is_some() && packed.is_some();
        let changed = both && self.chosen != Some(best);
        if both {
            if changed {
                self.window = WINDOW;
            } else if !probing && self.chosen.is_some() {
                // The probe just ended confirmed the choice.
                self.window = (self.window * 2).min(MAX_WINDOW);
            }
            self.chosen = Some(best);
        }
        self.cur = Window {
            compress,
            ..Window::default()
        };
        self.probing = probing;
        self.left = if probing { PROBE } else { self.window };
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
        // Plain runs only in its probes, ever rarer.
        assert!(n >= 512 - 5 * PROBE, "compressed {n}");
    }

    #[test]
    fn a_fast_local_save_stays_uncompressed_but_for_the_probes() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        let n = run(&mut a, &mut t, 512, 2000.0, 600.0);
        assert!(n <= 4 * PROBE, "compressed {n}");
    }

    #[test]
    fn compressing_must_be_faster_by_the_margin() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        let n = run(&mut a, &mut t, 512, 500.0, 520.0);
        assert!(n <= 4 * PROBE, "compressed {n}");
    }

    #[test]
    fn the_decision_follows_a_link_that_slows_down() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        assert!(run(&mut a, &mut t, 200, 2000.0, 600.0) <= 4 * PROBE);
        // The link drops to 100 MiB/s: at the next probes it compresses.
        let n = run(&mut a, &mut t, 600, 100.0, 250.0);
        assert!(n >= 300, "compressed {n}");
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
    fn the_time_between_rounds_is_not_counted() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        run(&mut a, &mut t, 2, 100.0, 100.0);
        a.new_round();
        // A long pause between rounds.
        t += std::time::Duration::from_secs(10);
        run(&mut a, &mut t, 2, 100.0, 100.0);
        let (c, _) = a.next_batch(BATCH, t);
        assert!(!c, "the plain probe starts");
        let r = a.mean(true).expect("the compressed probe was measured");
        assert!((r / MIB - 100.0).abs() < 1.0, "{}", r / MIB);
    }

    #[test]
    fn windows_double_while_probes_confirm_the_choice() {
        let mut a = AutoCompress::new();
        let mut t = Instant::now();
        let mut lens = Vec::new();
        let mut last = None;
        let mut n = 0;
        for _ in 0..3000 {
            let (c, _) = a.next_batch(BATCH, t);
            t += at(if c { 300.0 } else { 1000.0 } * MIB, BATCH);
            a.wrote(t);
            if last != Some(c) {
                if let Some(false) = last {
                    lens.push(n);
                }
                n = 0;
            }
            n += 1;
            last = Some(c);
        }
        // Plain runs: the first probe joined to the first window, then
        // windows of 128, 256, 512, 1024 (each ended by a probe).
        assert_eq!(&lens[..4], &[PROBE + WINDOW, 128, 256, 512], "{lens:?}");
    }
}
