//! `XCMIG_COMPRESS=auto`: whether to compress the next batches, from what
//! the save measures (pure: figures in, decision out).
//!
//! Compressing pays only while the link is slower than what the workers
//! can feed it. Two rates are measured as the stream goes:
//!
//! * **link**: stream octets over the time spent inside the writes of page
//!   records, so a blocked socket reads as the link it waits for, and a
//!   file in the page cache as the fast local save it is;
//! * **feed**: page octets the workers compress per second of their own
//!   time, times the workers (less a share for the engine's own thread,
//!   which also needs the cores), and the ratio achieved.
//!
//! Compressed, the link carries `min(feed, link x ratio)` octets of pages a
//! second instead of `link`: the next window of batches is compressed when
//! that beats `link` by [`MARGIN`]. The first batches are compressed to
//! measure the feed; the decision is taken again every [`WINDOW`] batches
//! and at every round.

use std::time::Duration;

/// Batches compressed at the start to measure the workers.
pub(crate) const PROBE: u32 = 8;

/// Batches between decisions (256 MiB of pages at most).
pub(crate) const WINDOW: u32 = 64;

/// How much faster the compressed stream must be predicted to be.
pub(crate) const MARGIN: f64 = 1.15;

/// The share of each worker's core counted as available to it: the
/// engine's thread, the kernel and the restorer use the same cores.
const CPU_SHARE: f64 = 0.8;

/// One decision, with the figures behind it (for the log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AutoVerdict {
    /// Compress the next window.
    pub(crate) compress: bool,
    /// Link rate, octets per second (`None` before any write).
    pub(crate) link: Option<f64>,
    /// What the workers can compress, page octets per second.
    pub(crate) feed: Option<f64>,
    /// Page octets over stream octets of compressed batches.
    pub(crate) ratio: Option<f64>,
}

/// The state of `auto` for one save.
#[derive(Debug, Clone)]
pub(crate) struct AutoCompress {
    threads: usize,
    /// Stream octets and write time of page records in this window.
    wire: (u64, Duration),
    link: Option<f64>,
    /// Page octets, their compressed octets, and worker time, all batches.
    raw: u64,
    packed: u64,
    busy: Duration,
    compressing: bool,
    /// Batches until the next decision.
    left: u32,
}

impl AutoCompress {
    /// Starts with [`PROBE`] compressed batches.
    pub(crate) fn new(threads: usize) -> AutoCompress {
        AutoCompress {
            threads: threads.max(1),
            wire: (0, Duration::ZERO),
            link: None,
            raw: 0,
            packed: 0,
            busy: Duration::ZERO,
            compressing: true,
            left: PROBE,
        }
    }

    /// A page record of `octets` took `time` to write.
    pub(crate) fn wrote(&mut self, octets: u64, time: Duration) {
        self.wire.0 += octets;
        self.wire.1 += time;
    }

    /// A worker made `packed` octets of `raw` page octets in `time`.
    pub(crate) fn compressed(&mut self, raw: u64, packed: u64, time: Duration) {
        self.raw += raw;
        self.packed += packed;
        self.busy += time;
    }

    /// Whether the batch being made is compressed. `None` when the
    /// decision stands; `Some` with a new verdict (to log) when it was
    /// taken again.
    pub(crate) fn next_batch(&mut self) -> (bool, Option<AutoVerdict>) {
        if self.left > 0 {
            self.left -= 1;
            return (self.compressing, None);
        }
        let v = self.decide();
        self.left = WINDOW - 1;
        let changed = v.compress != self.compressing;
        self.compressing = v.compress;
        (v.compress, changed.then_some(v))
    }

    /// A round begins: the next batch decides afresh (after the probe).
    pub(crate) fn new_round(&mut self) {
        if self.raw > 0 {
            self.left = 0;
        }
    }

    fn decide(&mut self) -> AutoVerdict {
        // The link over the last window (up to 256 MiB, enough to see
        // past a socket's buffers), the previous figure kept when the
        // window wrote nothing measurable.
        if self.wire.1 > Duration::from_micros(100) && self.wire.0 > 0 {
            self.link = Some(self.wire.0 as f64 / self.wire.1.as_secs_f64());
        }
        self.wire = (0, Duration::ZERO);
        let feed = (self.busy > Duration::ZERO && self.raw > 0)
            .then(|| self.raw as f64 / self.busy.as_secs_f64() * self.threads as f64 * CPU_SHARE);
        let ratio = (self.packed > 0).then(|| self.raw as f64 / self.packed as f64);
        let compress = match (self.link, feed, ratio) {
            (Some(link), Some(feed), Some(ratio)) => feed.min(link * ratio) > link * MARGIN,
            // Nothing measured yet: keep probing.
            _ => true,
        };
        AutoVerdict {
            compress,
            link: self.link,
            feed,
            ratio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Runs `batches` batches of 4 MiB through `a`, each written at
    /// `link` MiB/s (compressed to 1/`ratio` when compressing) and
    /// compressed by one worker at `worker` MiB/s; returns how many were
    /// compressed.
    fn run(a: &mut AutoCompress, batches: u32, link: f64, worker: f64, ratio: f64) -> u32 {
        let mut n = 0;
        for _ in 0..batches {
            let (c, _) = a.next_batch();
            let wire = if c {
                n += 1;
                a.compressed(
                    4 * MIB,
                    (4.0 * MIB as f64 / ratio) as u64,
                    Duration::from_secs_f64(4.0 / worker),
                );
                4.0 * MIB as f64 / ratio
            } else {
                4.0 * MIB as f64
            };
            a.wrote(
                wire as u64,
                Duration::from_secs_f64(wire / (link * MIB as f64)),
            );
        }
        n
    }

    #[test]
    fn a_slow_link_keeps_compressing() {
        // 1 Gbit/s against two workers at 400 MiB/s each, ratio 2.
        let mut a = AutoCompress::new(2);
        let n = run(&mut a, 512, 117.0, 400.0, 2.0);
        assert_eq!(n, 512);
    }

    #[test]
    fn a_fast_local_save_stops_compressing_after_the_probe() {
        // A page cache at 3 GiB/s against the same workers.
        let mut a = AutoCompress::new(2);
        let n = run(&mut a, 512, 3000.0, 400.0, 2.0);
        assert_eq!(n, PROBE);
    }

    #[test]
    fn incompressible_pages_are_not_worth_compressing_even_on_a_slow_link() {
        let mut a = AutoCompress::new(2);
        let n = run(&mut a, 512, 117.0, 400.0, 1.02);
        assert_eq!(n, PROBE);
    }

    #[test]
    fn a_link_about_as_fast_as_the_workers_is_left_uncompressed() {
        // 10 Gbit/s (1190 MiB/s) against 2 x 700 MiB/s x 0.8 = 1120 MiB/s.
        let mut a = AutoCompress::new(2);
        let n = run(&mut a, 512, 1190.0, 700.0, 2.5);
        assert_eq!(n, PROBE);
    }

    #[test]
    fn the_decision_is_taken_again_when_the_link_slows() {
        let mut a = AutoCompress::new(2);
        assert_eq!(run(&mut a, 200, 3000.0, 400.0, 2.0), PROBE);
        a.new_round();
        // The link drops to 100 MiB/s: within two windows it compresses.
        let n = run(&mut a, 3 * WINDOW, 100.0, 400.0, 2.0);
        assert!(n >= WINDOW, "compressed {n} batches");
    }

    #[test]
    fn a_verdict_is_reported_only_when_the_decision_changes() {
        let mut a = AutoCompress::new(1);
        let mut verdicts = 0;
        for _ in 0..(PROBE + 4 * WINDOW) {
            let (c, v) = a.next_batch();
            verdicts += u32::from(v.is_some());
            if c {
                a.compressed(4 * MIB, MIB, Duration::from_millis(10));
            }
            a.wrote(4 * MIB, Duration::from_millis(1));
        }
        assert_eq!(verdicts, 1);
    }
}
