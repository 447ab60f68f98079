//! The guest workload (`xensim domain run`): writes pages of the guest
//! through a shared mapping of its memory at a set rate and marks them in the
//! log-dirty bitmap, like a running guest under Xen's log-dirty tracking,
//! until the domain is shut down (suspended), paused or destroyed (or, with
//! `follow`, across suspend/resume cycles until it is destroyed).

use crate::domain::{w, Domain};
use crate::error::Result;
use crate::layout::{mix, Rng};
use crate::realistic::{fill_page, page_kind, PageKind};
use crate::shm::SharedMap;
use crate::{GFN_LIMIT, PAGE_SIZE, SPECIAL_PFN_BASE};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

/// What the workload writes into a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pattern {
    /// Whole pages of random data (incompressible, never zero).
    #[default]
    Random,
    /// New content of the page's own kind in a realistic guest
    /// ([`crate::realistic::page_kind`] with the domain's seed): text stays
    /// text, heap stays heap, random stays random; a zero page is mostly
    /// cleared again and otherwise becomes heap.
    Realistic,
}

impl Pattern {
    /// Parse "random" / "realistic".
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "random" => Some(Pattern::Random),
            "realistic" => Some(Pattern::Realistic),
            _ => None,
        }
    }

    /// Name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Random => "random",
            Pattern::Realistic => "realistic",
        }
    }
}

/// One in this many writes to a zero-kind page allocates it (heap content);
/// the rest clear it again, as freed memory is zeroed and stays free.
const ZERO_TO_HEAP: u64 = 4;

/// The content of a realistic write to `pfn` (kind by `kind_seed`, the
/// domain's fill seed; content by the workload's generator).
pub(crate) fn realistic_write(kind_seed: u64, pfn: u64, rng: &mut Rng, page: &mut [u8]) {
    let r = rng.next_u64();
    let kind = match page_kind(kind_seed, pfn) {
        PageKind::Zero if r % ZERO_TO_HEAP == 0 => PageKind::Heap,
        k => k,
    };
    fill_page(kind, rng.next_u64(), page);
}

/// Workload parameters.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Bytes per second to dirty (whole pages).
    pub dirty_rate_bytes: u64,
    /// Size of the set of pages written, in bytes (capped at the guest's RAM).
    pub working_set_bytes: u64,
    /// Seed choosing the working set and page contents.
    pub seed: u64,
    /// Stop after this long even if the guest keeps running.
    pub max_duration: Option<Duration>,
    /// Keep going across pauses and suspend/resume cycles (checkpointed
    /// streams): wait while the guest is stopped, stop only when it is
    /// destroyed or `max_duration` passes.
    pub follow: bool,
    /// What each write puts in the page.
    pub pattern: Pattern,
}

/// What a workload run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStats {
    /// Page writes performed.
    pub pages_written: u64,
    /// Distinct pages in the working set.
    pub working_set_pages: u64,
    /// Wall time run.
    pub elapsed: Duration,
}

/// First gfn of the special-page region the workload leaves alone (ioreq
/// server pages and the special pages: rings the guest does not dirty
/// through RAM writes, some of which restore clears).
const SPECIAL_REGION: std::ops::Range<u64> = (SPECIAL_PFN_BASE - 8)..(SPECIAL_PFN_BASE + 8);

/// The working set: `pages` populated RAM gfns starting at a seed-chosen
/// position (wrapping), excluding the special region.
pub fn working_set(d: &Domain, bytes: u64, seed: u64) -> Vec<u64> {
    let mut ram = Vec::new();
    // A PV guest's kernel structures (start_info, rings, GDTs, p2m, page
    // tables) are not written as plain RAM; its page tables are dirtied
    // through mmu_update instead (see `run`).
    let kernel_end = crate::pvguest::Kvars::read(d).map_or(0, |k| k.pt0 + k.pts);
    let words = d.populated_words();
    let last = (d.highest_pfn() / 64) as usize;
    for (wi, word) in words.iter().enumerate().take(last + 1) {
        let mut bits = word.load(SeqCst);
        while bits != 0 {
            let pfn = wi as u64 * 64 + u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            if (d.is_pv() && pfn >= kernel_end) || (!d.is_pv() && !SPECIAL_REGION.contains(&pfn)) {
                ram.push(pfn);
            }
        }
    }
    let n = ((bytes / PAGE_SIZE) as usize).min(ram.len());
    if n == 0 {
        return Vec::new();
    }
    let start = (mix(seed, 0, 40) % ram.len() as u64) as usize;
    (0..n).map(|i| ram[(start + i) % ram.len()]).collect()
}

/// A PV guest's page-table write: flip the accessed bit of one of its user
/// mappings with `mmu_update` (the entry stays valid; the p2m is untouched),
/// and mark the L1's pfn dirty, as Xen's shadow log-dirty does.
fn touch_user_pte(d: &Domain, rng: &mut Rng) {
    let Ok(kv) = crate::pvguest::Kvars::read(d) else {
        return;
    };
    let Some(l1) = d.pfn_to_mfn(kv.user_l1) else {
        return;
    };
    let k = rng.next_u64() % crate::pvguest::USER_PAGES;
    let mut e = [0u8; 8];
    let ptr = (l1 << 12) | (k * 8);
    if d.read_frame_at(l1, k * 8, &mut e).is_err() {
        return;
    }
    let pte = u64::from_le_bytes(e);
    if pte & 1 != 0
        && d.mmu_update(&[(ptr, pte ^ crate::domain::PT_ACCESSED)])
            .is_ok()
    {
        d.mark_dirty(kv.user_l1);
    }
}

/// Run the workload until the guest stops (or `max_duration` passes).
pub fn run(d: &Domain, opts: &RunOptions) -> Result<RunStats> {
    let set = working_set(d, opts.working_set_bytes, opts.seed);
    let map = if set.is_empty() {
        None
    } else {
        Some(SharedMap::map(
            d.mem_file(),
            (GFN_LIMIT * PAGE_SIZE) as usize,
            "guest memory",
        )?)
    };
    let rate = opts.dirty_rate_bytes as f64 / PAGE_SIZE as f64;
    let mut rng = Rng::new(mix(opts.seed, 0, 41));
    // Kinds follow the guest's own fill seed, so a realistic guest's pages
    // keep the kind they were built with.
    let kind_seed = d.config().seed;
    let mut page = vec![0u8; PAGE_SIZE as usize];
    let start = Instant::now();
    let mut written = 0u64;
    // Pages the guest may write by now: the rate times its CPU share (its
    // scheduler cap), summed over the time it ran. Time stopped doesn't
    // count, and a cap changed while running applies from then on.
    let mut allowance = 0.0f64;
    let mut last_tick = start;
    'outer: loop {
        let now = Instant::now();
        let ran = now.duration_since(last_tick);
        last_tick = now;
        let elapsed = now.duration_since(start);
        if opts.max_duration.is_some_and(|m| elapsed >= m) || d.is_dying() {
            break;
        }
        if d.guest_stopped() {
            if !opts.follow {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            last_tick = Instant::now();
            continue;
        }
        allowance += ran.as_secs_f64() * rate * d.cpu_share();
        if let Some(map) = &map {
            let due = allowance as u64;
            while written < due {
                let pfn = set[(rng.next_u64() % set.len() as u64) as usize];
                match opts.pattern {
                    Pattern::Random => rng.fill(&mut page),
                    Pattern::Realistic => realistic_write(kind_seed, pfn, &mut rng, &mut page),
                }
                if !d.guest_enter() {
                    continue 'outer;
                }
                // Write first, then mark: a CLEAN between the two leaves the
                // bit set for the next round, never a sent-but-stale page.
                // A PV guest writes through its p2m to the page's frame.
                let off = if d.is_pv() {
                    d.pfn_to_mfn(pfn).and_then(|m| d.frame_offset(m))
                } else {
                    Some(pfn * PAGE_SIZE)
                };
                let r = match off {
                    Some(off) => map.write_at(off as usize, &page),
                    None => Ok(()),
                };
                d.mark_dirty(pfn);
                if written % 16 == 0 {
                    touch_user_pte(d, &mut rng);
                }
                d.guest_exit();
                r?;
                written += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    d.ctl(w::CPU_TIME_NS)
        .fetch_add(elapsed.as_nanos() as u64, SeqCst);
    d.ctl(w::PAGES_WRITTEN).fetch_add(written, SeqCst);
    Ok(RunStats {
        pages_written: written,
        working_set_pages: set.len() as u64,
        elapsed,
    })
}
