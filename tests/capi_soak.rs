//! Endurance (issue 10, item 5), through the C entry points on xensim.
//!
//! * **Hops**: one HVM guest live-migrated again and again between two
//!   simulated hosts, A → B → A → …, its workload (`xensim domain run`)
//!   dirtying memory on whichever host it runs, the saver and the restorer
//!   cycling through xcmig → xcmig, xcmig → libxenguest, libxenguest →
//!   xcmig and libxenguest → libxenguest (`xg-save --live` piped into
//!   `xg-restore`, libxcmig preloaded or not). After every hop the source's
//!   digest (taken once the save suspended it) must equal the destination's
//!   (taken before it is unpaused), each engine must be the one asked for
//!   (told apart by libxenguest's own log lines), and the workload must have
//!   written pages during the hop.
//! * **Cycles**: `xg-cycle` (capi-tests/xg-cycle.c) saves and restores the
//!   guest in one long-lived process with libxcmig preloaded, sampling its
//!   descriptors, mapping regions and RSS after every cycle: the descriptor
//!   and mapping counts must stay exactly those of the first cycle, and the
//!   RSS must not grow by more than [`RSS_ALLOWANCE_KIB`] (see
//!   [`RssTrend`]). The same series with libxenguest is recorded beside it
//!   in the full run, not asserted.
//!
//! The short form runs in `make test`; `make soak` runs the full one
//! (`--ignored`): 1000 hops and 500 cycles by default (`SOAK_HOPS`,
//! `SOAK_CYCLES`, `SOAK_MEMORY`, `SOAK_CYCLE_MEMORY`, `SOAK_DIRTY_RATE`,
//! `SOAK_WORKING_SET`), writing `bench/results/soak.md` with the raw series
//! in `soak-hops.csv` and `soak-cycles.csv` beside it. Hosts live on
//! `/dev/shm` when it is writable (`SOAK_DIR` overrides), so a thousand
//! restores write nothing to disk.

#![cfg(feature = "xen")]

mod capi_support;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capi_support::host::Host;
use capi_support::{Env, TempDir};
use xcmig_testkit::process::{drain, tail, wait_until, Drain, Watched};

/// Time allowed for one migration, one cycle, or a workload to stop.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// How much the harness's RSS may grow between the start and the end of
/// the cycles (medians of the first and last fifth after the warm-up; see
/// [`RssTrend`]). A leak of one mapping's bookkeeping per cycle (the
/// xensim bug this soak found: 64 KiB per mapped 64 MiB chunk) exceeds it
/// within a few cycles; allocator noise (glibc trimming or keeping a few
/// pages of its heap) stays well inside it.
const RSS_ALLOWANCE_KIB: i64 = 512;

/// Cycles left out of the trend at the start: the first uses of the
/// libraries allocate their lasting state (logger, caches, arenas).
fn warmup_cycles(cycles: usize) -> usize {
    (cycles / 10).max(3)
}

/// What a run does.
#[derive(Debug, Clone)]
struct Config {
    hops: usize,
    cycles: usize,
    /// Guest memory of the hops and of the cycles.
    hop_memory: String,
    cycle_memory: String,
    vcpus: u32,
    /// The workload: MiB/s written over a working set.
    dirty_rate: String,
    working_set: String,
    /// Cycles recorded with libxenguest beside xcmig's (not asserted; 0 for
    /// none).
    libxenguest_cycles: usize,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

impl Config {
    /// The form in `make test`: every combination twice, a few dozen cycles.
    fn short() -> Config {
        Config {
            hops: 8,
            cycles: 30,
            hop_memory: "64M".into(),
            cycle_memory: "32M".into(),
            vcpus: 2,
            dirty_rate: "64".into(),
            working_set: "16M".into(),
            libxenguest_cycles: 0,
        }
    }

    /// `make soak`, with the `SOAK_*` overrides.
    fn full() -> Config {
        Config {
            hops: env_usize("SOAK_HOPS", 1000),
            cycles: env_usize("SOAK_CYCLES", 500),
            hop_memory: env_or("SOAK_MEMORY", "64M"),
            cycle_memory: env_or("SOAK_CYCLE_MEMORY", "32M"),
            vcpus: 2,
            dirty_rate: env_or("SOAK_DIRTY_RATE", "64"),
            working_set: env_or("SOAK_WORKING_SET", "16M"),
            libxenguest_cycles: env_usize("SOAK_LIBXENGUEST_CYCLES", 100),
        }
    }
}

/// Which library serves `xc_domain_save`/`xc_domain_restore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Xcmig,
    Libxenguest,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Xcmig => "xcmig",
            Engine::Libxenguest => "libxenguest",
        }
    }

    fn preloaded(self) -> bool {
        self == Engine::Xcmig
    }
}

/// Saver and restorer, in the order the hops cycle through them.
const COMBINATIONS: [(Engine, Engine); 4] = [
    (Engine::Xcmig, Engine::Xcmig),
    (Engine::Xcmig, Engine::Libxenguest),
    (Engine::Libxenguest, Engine::Xcmig),
    (Engine::Libxenguest, Engine::Libxenguest),
];

/// Which engine wrote a harness's log: Debian's libxenguest logs lines of
/// its own that xcmig never writes (its save's opening "fd N, dom D, flags
/// F, hvm H" detail and its restore's domain builder seeding the grant
/// table through `xc_dom_set_gnttab_entry`).
fn engine_of_save(log: &str) -> Engine {
    let libxenguest = log
        .lines()
        .any(|l| l.contains(": detail: fd ") && l.contains(", flags "));
    if libxenguest {
        Engine::Libxenguest
    } else {
        Engine::Xcmig
    }
}

fn engine_of_restore(log: &str) -> Engine {
    if log.contains("xc_dom_set_gnttab_entry") {
        Engine::Libxenguest
    } else {
        Engine::Xcmig
    }
}

/// A child with its output being collected; killed if dropped unreaped.
struct Proc {
    child: Option<Child>,
    out: Option<Drain>,
    err: Option<Drain>,
}

/// What a finished child said.
struct Finished {
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Proc {
    /// Takes `child`'s piped stdout (if any) and stderr.
    fn new(mut child: Child) -> Proc {
        let out = Some(drain(child.stdout.take()));
        let err = Some(drain(child.stderr.take()));
        Proc {
            child: Some(child),
            out,
            err,
        }
    }

    /// Waits until `deadline`; a child still running then is killed and
    /// reported as such.
    fn finish(mut self, deadline: Instant) -> Finished {
        let mut child = self.child.take().expect("finished twice");
        let status = wait_until(&mut child, deadline);
        let grace = Instant::now() + Duration::from_secs(10);
        let text = |d: Option<Drain>| {
            String::from_utf8_lossy(&d.map(|d| d.collect(grace)).unwrap_or_default()).into_owned()
        };
        Finished {
            ok: status.is_some_and(|s| s.success()),
            status: match status {
                Some(s) => s.to_string(),
                None => "killed at its deadline".to_string(),
            },
            stdout: text(self.out.take()),
            stderr: text(self.err.take()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The last line of a text, trimmed.
fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or_default().trim()
}

/// The value of `key=` in the first line of `text` containing `marker`.
fn field<'a>(text: &'a str, marker: &str, key: &str) -> Option<&'a str> {
    let line = text.lines().find(|l| l.contains(marker))?;
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..].split_whitespace().next()
}

fn xensim(h: &Host, args: &[&str]) -> String {
    h.xensim(args)
}

/// An HVM domain of `memory` on `h` with the soak's vCPUs, made with the
/// extra `create` arguments `what`; its domid.
fn create_hvm(h: &Host, cfg: &Config, memory: &str, what: &[&str]) -> u32 {
    let vcpus = cfg.vcpus.to_string();
    let mut args = vec![
        "create", "--type", "hvm", "--vcpus", &vcpus, "--memory", memory,
    ];
    args.extend_from_slice(what);
    last_line(&xensim(h, &args)).parse().expect("domid")
}

/// A running HVM guest of `memory` on `h`, filled from `seed`; its domid.
fn create_guest(h: &Host, cfg: &Config, memory: &str, seed: u64) -> u32 {
    create_hvm(
        h,
        cfg,
        memory,
        &["--fill", "mixed", "--seed", &seed.to_string()],
    )
}

/// An empty domain to restore into; its domid.
fn create_empty(h: &Host, cfg: &Config, memory: &str) -> u32 {
    create_hvm(h, cfg, memory, &["--empty"])
}

/// `xensim domain run` on `domid` until the domain is suspended.
fn start_workload(h: &Host, cfg: &Config, domid: u32, seed: usize) -> Proc {
    let child = Command::new(h.env.xensim())
        .args(["domain", "run", "--host"])
        .arg(h.path())
        .arg(domid.to_string())
        .args(["--dirty-rate", &cfg.dirty_rate])
        .args(["--working-set", &cfg.working_set])
        .args(["--seed", &seed.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xensim domain run");
    Proc::new(child)
}

/// One hop's outcome.
#[derive(Debug, Clone)]
struct Hop {
    n: usize,
    saver: Engine,
    restorer: Engine,
    /// 'A' → 'B' or 'B' → 'A'.
    from: char,
    src: u32,
    dst: u32,
    /// Why the hop failed, if it did.
    error: Option<String>,
    /// From starting the harnesses until both exited.
    migrate_ms: f64,
    /// From the saver's suspend to the restorer's return.
    downtime_ms: Option<f64>,
    /// The whole hop: target creation, migration, digests, hand-over.
    hop_ms: f64,
    /// Precopy iterations the saver reported (the last "Frames iteration").
    iterations: u32,
    /// Pages the workload wrote on the source during this hop.
    pages_written: u64,
    /// The digest both sides agreed on (empty on failure).
    digest: String,
}

/// The guest between hops.
struct Guest {
    /// Index of the host it runs on (0 = A, 1 = B).
    host: usize,
    domid: u32,
    workload: Proc,
}

/// Migrates the guest from its host to the other one with `saver` and
/// `restorer`. On success the guest runs on the other host (its workload
/// restarted there); on failure it runs again where it was (resumed) and
/// the destination is destroyed, so the soak goes on.
fn hop(hosts: &[Host; 2], cfg: &Config, guest: Guest, n: usize) -> (Guest, Hop) {
    let (saver, restorer) = COMBINATIONS[(n - 1) % COMBINATIONS.len()];
    let t_hop = Instant::now();
    let (si, di) = (guest.host, 1 - guest.host);
    let (src_h, dst_h) = (&hosts[si], &hosts[di]);
    let src = guest.domid;
    let dst = create_empty(dst_h, cfg, &cfg.hop_memory);
    let mut record = Hop {
        n,
        saver,
        restorer,
        from: if si == 0 { 'A' } else { 'B' },
        src,
        dst,
        error: None,
        migrate_ms: 0.0,
        downtime_ms: None,
        hop_ms: 0.0,
        iterations: 0,
        pages_written: 0,
        digest: String::new(),
    };

    // xg-restore reads the stream on its stdin, which xg-save writes as its
    // stdout: a pipe, as between two hosts' sockets.
    let t0 = Instant::now();
    let mut restore_child = dst_h
        .harness("xg-restore", restorer.preloaded())
        .arg(dst.to_string())
        .arg("fd:0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xg-restore");
    let link = restore_child.stdin.take().expect("piped stdin");
    let restore = Proc::new(restore_child);
    let save_child = src_h
        .harness("xg-save", saver.preloaded())
        .args(["--live", &src.to_string(), "fd:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(link))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xg-save");
    let save = Proc::new(save_child);
    let deadline = Instant::now() + STEP_TIMEOUT;
    let saved = save.finish(deadline);
    let restored = restore.finish(deadline);
    record.migrate_ms = ms(t0.elapsed());
    // The workload stops once the save has suspended the guest; after a
    // failed save it may still be running, and is stopped here.
    let workload_wait = if saved.ok && restored.ok {
        STEP_TIMEOUT
    } else {
        Duration::from_secs(2)
    };
    let worked = guest.workload.finish(Instant::now() + workload_wait);
    record.pages_written = last_line(&worked.stdout).parse().unwrap_or(0);
    record.iterations = saved
        .stderr
        .lines()
        .filter_map(|l| l.split("what=\"Frames iteration ").nth(1))
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .max()
        .unwrap_or(0);
    let suspended = field(&saved.stderr, "timestamp event=suspended", "monotonic_ns")
        .and_then(|v| v.parse::<u64>().ok());
    let done = field(&restored.stderr, "timestamp event=restored", "monotonic_ns")
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(s), Some(d)) = (suspended, done) {
        record.downtime_ms = Some(d.saturating_sub(s) as f64 / 1e6);
    }

    let mut error = None;
    if !saved.ok || !restored.ok {
        error = Some(format!(
            "save {} / restore {}\n--- xg-save ---\n{}\n--- xg-restore ---\n{}",
            saved.status,
            restored.status,
            tail(&saved.stderr, 30),
            tail(&restored.stderr, 30)
        ));
    } else if engine_of_save(&saved.stderr) != saver
        || engine_of_restore(&restored.stderr) != restorer
    {
        error = Some(format!(
            "asked for {} -> {}, the logs show {} -> {}",
            saver.name(),
            restorer.name(),
            engine_of_save(&saved.stderr).name(),
            engine_of_restore(&restored.stderr).name()
        ));
    } else if !worked.ok || record.pages_written == 0 {
        error = Some(format!(
            "the workload on the source ({}) wrote {} pages\n{}",
            worked.status,
            record.pages_written,
            tail(&worked.stderr, 10)
        ));
    } else {
        // Both hosts are read at once: each digest reads the whole guest.
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| src_h.digest(src));
            let b = dst_h.digest(dst);
            (a.join().expect("digest thread"), b)
        });
        if a == b {
            record.digest = a;
        } else {
            error = Some(format!(
                "digest of the source {a}, of the destination {b}\n{}",
                explain_divergence(src_h, src, dst_h, dst)
            ));
        }
    }

    let next = if error.is_none() {
        xensim(src_h, &["destroy", &src.to_string()]);
        dst_h.unpause(dst);
        Guest {
            host: di,
            domid: dst,
            workload: start_workload(dst_h, cfg, dst, n),
        }
    } else {
        // The source is suspended, or still running if the save stopped
        // early; either way it runs again and is the next hop's source.
        // (`resume` of a running domain changes nothing.)
        xensim(dst_h, &["destroy", &dst.to_string()]);
        xensim(src_h, &["resume", &src.to_string()]);
        Guest {
            host: si,
            domid: src,
            workload: start_workload(src_h, cfg, src, n),
        }
    };
    record.error = error;
    record.hop_ms = ms(t_hop.elapsed());
    (next, record)
}

/// Where two domains that should be identical differ: the digest
/// components that differ and, for memory, the first pfns whose contents
/// or population differ (read through xensim's API).
fn explain_divergence(src_h: &Host, src: u32, dst_h: &Host, dst: u32) -> String {
    let components = |h: &Host, id: u32| -> Vec<String> {
        xensim(h, &["digest", &id.to_string(), "--verbose"])
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (ca, cb) = (components(src_h, src), components(dst_h, dst));
    let mut out = String::from("components that differ:");
    for (la, lb) in ca.iter().zip(&cb) {
        if la != lb {
            let _ = write!(out, "\n  source {la}\n  destination {lb}");
        }
    }
    let open = |h: &Host, id: u32| {
        xensim::Host::open(&h.path())
            .and_then(|host| host.domain(id))
            .map_err(|e| format!("open domain {id}: {e}"))
    };
    let (da, db) = match (open(src_h, src), open(dst_h, dst)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return format!("{out}\n{e}"),
    };
    let last = da.max_gpfn().max(db.max_gpfn());
    let (mut pa, mut pb) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut differing = Vec::new();
    let mut count = 0usize;
    for pfn in 0..=last {
        let (ia, ib) = (da.is_populated(pfn), db.is_populated(pfn));
        let same = match (ia, ib) {
            (false, false) => true,
            (true, true) => {
                da.read_frame(pfn, &mut pa).is_ok()
                    && db.read_frame(pfn, &mut pb).is_ok()
                    && pa == pb
            }
            _ => false,
        };
        if !same {
            count += 1;
            if differing.len() < 16 {
                differing.push(format!(
                    "{pfn:#x}{}",
                    match (ia, ib) {
                        (true, false) => " (only the source has it)",
                        (false, true) => " (only the destination has it)",
                        _ => "",
                    }
                ));
            }
        }
    }
    let _ = write!(out, "\n{count} pfns differ: {}", differing.join(", "));
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One in-process cycle, as `xg-cycle` reported it.
#[derive(Debug, Clone)]
struct Cycle {
    n: usize,
    ok: bool,
    save_ms: f64,
    restore_ms: f64,
    fds: i64,
    maps: i64,
    rss_kib: i64,
    hwm_kib: i64,
    /// The restored guest digests as the suspended source did.
    digest_ok: bool,
}

/// A series of in-process cycles and how the harness ended.
struct CycleRun {
    engine: Engine,
    /// Cycles asked for.
    wanted: usize,
    cycles: Vec<Cycle>,
    /// Set when the harness failed, stopped early or a digest differed.
    error: Option<String>,
    total: Duration,
}

/// Runs `xg-cycle` for `count` cycles with `engine` on a host of its own,
/// creating each cycle's empty target and checking its digest.
fn cycle_run(base: &Path, cfg: &Config, engine: Engine, count: usize) -> CycleRun {
    let started = Instant::now();
    let h = Host::in_dir(Env::locate(), TempDir::new_in(base, "soak-cycles"));
    let mut src = create_guest(&h, cfg, &cfg.cycle_memory, 7);
    let mut child = h
        .harness("xg-cycle", engine.preloaded())
        .arg("--live")
        .arg(src.to_string())
        .arg(h.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xg-cycle");
    let mut to_harness = child.stdin.take().expect("piped stdin");
    let mut from_harness = BufReader::new(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take());
    let timeout = STEP_TIMEOUT + Duration::from_secs(30) * count as u32;
    let watched = Watched::new(child, timeout);
    let mut cycles = Vec::new();
    let mut error = None;
    for n in 1..=count {
        let dst = create_empty(&h, cfg, &cfg.cycle_memory);
        if writeln!(to_harness, "{dst}").is_err() {
            error = Some(format!("xg-cycle stopped reading before cycle {n}"));
            break;
        }
        let mut buf = String::new();
        let line = loop {
            buf.clear();
            match from_harness.read_line(&mut buf) {
                Ok(0) | Err(_) => break None,
                Ok(_) if buf.starts_with("xg-cycle: cycle ") => break Some(buf.clone()),
                Ok(_) => {}
            }
        };
        let Some(line) = line else {
            error = Some(format!("xg-cycle ended before reporting cycle {n}"));
            break;
        };
        let num = |key: &str| -> i64 {
            field(&line, "xg-cycle: cycle ", key)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        };
        let ok = num("save_rc") == 0 && num("restore_rc") == 0;
        let digest_ok = ok
            && std::thread::scope(|s| {
                let a = s.spawn(|| h.digest(src));
                let b = h.digest(dst);
                a.join().expect("digest thread") == b
            });
        cycles.push(Cycle {
            n,
            ok,
            save_ms: num("save_ns") as f64 / 1e6,
            restore_ms: num("restore_ns") as f64 / 1e6,
            fds: num("fds"),
            maps: num("maps"),
            rss_kib: num("rss_kib"),
            hwm_kib: num("hwm_kib"),
            digest_ok,
        });
        if !digest_ok {
            error = Some(format!("cycle {n} failed or differs: {}", line.trim()));
            break;
        }
        xensim(&h, &["destroy", &src.to_string()]);
        src = dst;
    }
    drop(to_harness);
    let status = watched.wait();
    let err = String::from_utf8_lossy(&stderr.collect(Instant::now() + Duration::from_secs(10)))
        .into_owned();
    if error.is_none() && !status.is_some_and(|s| s.success()) {
        error = Some(format!("xg-cycle exited {status:?}"));
    }
    if let Some(e) = error.as_mut() {
        let _ = write!(e, "\n--- xg-cycle stderr ---\n{}", tail(&err, 30));
    }
    CycleRun {
        engine,
        wanted: count,
        cycles,
        error,
        total: started.elapsed(),
    }
}

/// The RSS trend of a cycle series: after [`warmup_cycles`], the median of
/// the first fifth against the median of the last fifth, and the
/// least-squares slope over the same cycles (reported, not judged).
#[derive(Debug, Clone, Copy)]
struct RssTrend {
    first_median_kib: i64,
    last_median_kib: i64,
    growth_kib: i64,
    slope_kib_per_cycle: f64,
}

fn median_i64(v: &[i64]) -> i64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s[s.len() / 2]
}

fn rss_trend(cycles: &[Cycle]) -> Option<RssTrend> {
    let warmup = warmup_cycles(cycles.len());
    let rest: Vec<i64> = cycles.iter().skip(warmup).map(|c| c.rss_kib).collect();
    if rest.len() < 5 {
        return None;
    }
    let k = (rest.len() / 5).max(1);
    let first = median_i64(&rest[..k]);
    let last = median_i64(&rest[rest.len() - k..]);
    let n = rest.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = rest.iter().sum::<i64>() as f64 / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, &y) in rest.iter().enumerate() {
        let dx = i as f64 - mean_x;
        num += dx * (y as f64 - mean_y);
        den += dx * dx;
    }
    Some(RssTrend {
        first_median_kib: first,
        last_median_kib: last,
        growth_kib: last - first,
        slope_kib_per_cycle: if den > 0.0 { num / den } else { 0.0 },
    })
}

/// What is wrong with a cycle series, judged by the flatness rules.
fn cycle_problems(run: &CycleRun) -> Vec<String> {
    let want = run.wanted;
    let mut p = Vec::new();
    if let Some(e) = &run.error {
        p.push(e.clone());
    }
    if run.cycles.len() != want {
        p.push(format!("{} of {want} cycles ran", run.cycles.len()));
    }
    if let Some(first) = run.cycles.first() {
        for c in &run.cycles {
            if c.fds != first.fds {
                p.push(format!(
                    "cycle {}: {} descriptors open, {} after cycle 1",
                    c.n, c.fds, first.fds
                ));
                break;
            }
        }
        for c in &run.cycles {
            if c.maps != first.maps {
                p.push(format!(
                    "cycle {}: {} mapping regions, {} after cycle 1",
                    c.n, c.maps, first.maps
                ));
                break;
            }
        }
    }
    match rss_trend(&run.cycles) {
        Some(t) if t.growth_kib > RSS_ALLOWANCE_KIB => p.push(format!(
            "RSS grew by {} KiB ({} -> {} KiB, medians), allowance {RSS_ALLOWANCE_KIB} KiB",
            t.growth_kib, t.first_median_kib, t.last_median_kib
        )),
        Some(_) => {}
        None => p.push("too few cycles to judge the RSS trend".into()),
    }
    p
}

/// Everything one soak measured.
struct Soak {
    cfg: Config,
    hops: Vec<Hop>,
    hops_time: Duration,
    cycles: Vec<CycleRun>,
    total: Duration,
    load_before: String,
    load_after: String,
}

/// Runs the hops and then the cycles of `cfg`.
fn run_soak(cfg: &Config, progress: bool) -> Soak {
    let t_start = Instant::now();
    let load_before = loadavg();
    let base = soak_base();
    let env = Env::locate();
    env.require_libxcmig();
    let hosts = [
        Host::in_dir(env.clone(), TempDir::new_in(&base, "soak-a")),
        Host::in_dir(env.clone(), TempDir::new_in(&base, "soak-b")),
    ];
    let domid = create_guest(&hosts[0], cfg, &cfg.hop_memory, 1);
    let mut guest = Guest {
        host: 0,
        domid,
        workload: start_workload(&hosts[0], cfg, domid, 0),
    };
    let mut hops = Vec::with_capacity(cfg.hops);
    for n in 1..=cfg.hops {
        // The guest runs a moment on its new host before it moves again.
        std::thread::sleep(Duration::from_millis(100));
        let (next, h) = hop(&hosts, cfg, guest, n);
        guest = next;
        if progress && (n % 50 == 0 || h.error.is_some()) {
            let failed = hops.iter().filter(|h: &&Hop| h.error.is_some()).count()
                + usize::from(h.error.is_some());
            eprintln!(
                "soak: hop {n}/{} {} -> {} {:.0} ms, failures so far {failed}, {:.0} s",
                cfg.hops,
                h.saver.name(),
                h.restorer.name(),
                h.hop_ms,
                t_start.elapsed().as_secs_f64()
            );
            if let Some(e) = &h.error {
                eprintln!("soak: hop {n} failed: {e}");
            }
        }
        hops.push(h);
    }
    drop(guest);
    let hops_time = t_start.elapsed();

    let mut engines = vec![(Engine::Xcmig, cfg.cycles)];
    if cfg.libxenguest_cycles > 0 {
        engines.push((Engine::Libxenguest, cfg.libxenguest_cycles));
    }
    let cycles = engines
        .into_iter()
        .map(|(e, count)| {
            let r = cycle_run(&base, cfg, e, count);
            if progress {
                eprintln!(
                    "soak: {} cycles with {}: {:.0} s",
                    r.cycles.len(),
                    e.name(),
                    r.total.as_secs_f64()
                );
            }
            r
        })
        .collect();
    Soak {
        cfg: cfg.clone(),
        hops,
        hops_time,
        cycles,
        total: t_start.elapsed(),
        load_before,
        load_after: loadavg(),
    }
}

/// Where the hosts go: `SOAK_DIR`, else `/dev/shm` when writable, else the
/// temporary directory.
fn soak_base() -> PathBuf {
    if let Some(d) = std::env::var_os("SOAK_DIR") {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    let probe = shm.join(format!("xcmig-soak-probe-{}", std::process::id()));
    if std::fs::create_dir(&probe).is_ok() {
        let _ = std::fs::remove_dir(&probe);
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What the report says about the machine and the code.
fn provenance() -> (String, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let mut commit = git(&["rev-parse", "--short=12", "HEAD"]);
    if !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        commit.push_str(" (with uncommitted changes)");
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    (commit, format!("{cpu}, {cores} cores, Linux {kernel}"))
}

/// min, p50, p90, p99, max and mean of `v` (ms), one Markdown row.
fn distribution_row(what: &str, v: &[f64]) -> String {
    if v.is_empty() {
        return format!("| {what} | 0 | – | – | – | – | – | – |\n");
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    let mean = s.iter().sum::<f64>() / s.len() as f64;
    format!(
        "| {what} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
        s.len(),
        s[0],
        q(0.5),
        q(0.9),
        q(0.99),
        s[s.len() - 1],
        mean
    )
}

/// A series as at most `points` evenly spaced samples, for the report.
fn sampled(v: &[i64], points: usize) -> String {
    if v.is_empty() {
        return String::new();
    }
    let step = v.len().div_ceil(points).max(1);
    let mut out: Vec<String> = v.iter().step_by(step).map(|x| x.to_string()).collect();
    if (v.len() - 1) % step != 0 {
        out.push(v[v.len() - 1].to_string());
    }
    out.join(" ")
}

/// Writes `soak.md`, `soak-hops.csv` and `soak-cycles.csv` into `dir`.
fn write_report(s: &Soak, dir: &Path) {
    let (commit, machine) = provenance();
    let failures: Vec<&Hop> = s.hops.iter().filter(|h| h.error.is_some()).collect();
    let divergent = failures
        .iter()
        .filter(|h| h.error.as_deref().is_some_and(|e| e.starts_with("digest")))
        .count();
    let mut md = String::new();
    let _ = writeln!(md, "# Soak: live migrations and in-process cycles\n");
    let _ = writeln!(
        md,
        "Written by `make soak` (tests/capi_soak.rs, `--ignored`); the short \
         form runs in `make test`. Commit {commit}; {machine}; load average \
         {} before, {} after (the machine is shared). Total time {:.1} min.\n",
        s.load_before,
        s.load_after,
        s.total.as_secs_f64() / 60.0
    );
    let _ = writeln!(md, "## Hops\n");
    let _ = writeln!(
        md,
        "One HVM guest ({}, {} vCPUs, `mixed` fill) live-migrated between two \
         xensim hosts (A and B, on tmpfs) with `xg-save --live` piped into \
         `xg-restore`, while `xensim domain run --dirty-rate {} \
         --working-set {}` writes to it on whichever host it runs. The \
         saver → restorer pair cycles through the four combinations; after \
         every hop the source's digest (suspended) must equal the \
         destination's (before it runs), the engines must be the ones asked \
         for, and the workload must have written pages during the hop.\n",
        s.cfg.hop_memory, s.cfg.vcpus, s.cfg.dirty_rate, s.cfg.working_set
    );
    let _ = writeln!(
        md,
        "- hops: {}\n- failures: {}\n- divergent digests: {}\n- time for the hops: {:.1} min\n",
        s.hops.len(),
        failures.len(),
        divergent,
        s.hops_time.as_secs_f64() / 60.0
    );
    let _ = writeln!(
        md,
        "| saver → restorer | hops | failures | median migration ms | median downtime ms | median precopy iterations |\n|---|---|---|---|---|---|"
    );
    for (sv, rs) in COMBINATIONS {
        let these: Vec<&Hop> = s
            .hops
            .iter()
            .filter(|h| h.saver == sv && h.restorer == rs)
            .collect();
        let med = |mut v: Vec<f64>| {
            if v.is_empty() {
                return "–".to_string();
            }
            v.sort_by(f64::total_cmp);
            format!("{:.0}", v[v.len() / 2])
        };
        let _ = writeln!(
            md,
            "| {} → {} | {} | {} | {} | {} | {} |",
            sv.name(),
            rs.name(),
            these.len(),
            these.iter().filter(|h| h.error.is_some()).count(),
            med(these.iter().map(|h| h.migrate_ms).collect()),
            med(these.iter().filter_map(|h| h.downtime_ms).collect()),
            med(these.iter().map(|h| f64::from(h.iterations)).collect()),
        );
    }
    let _ = writeln!(
        md,
        "\nTimes in ms (migration: both harnesses started until both exited; \
         downtime: the saver's suspend to the restorer's return; hop: the \
         whole hop with the target's creation, both digests and the \
         hand-over):\n"
    );
    let _ = writeln!(
        md,
        "| | n | min | p50 | p90 | p99 | max | mean |\n|---|---|---|---|---|---|---|---|"
    );
    md.push_str(&distribution_row(
        "migration",
        &s.hops.iter().map(|h| h.migrate_ms).collect::<Vec<_>>(),
    ));
    md.push_str(&distribution_row(
        "downtime",
        &s.hops
            .iter()
            .filter_map(|h| h.downtime_ms)
            .collect::<Vec<_>>(),
    ));
    md.push_str(&distribution_row(
        "hop",
        &s.hops.iter().map(|h| h.hop_ms).collect::<Vec<_>>(),
    ));
    if !failures.is_empty() {
        let _ = writeln!(md, "\nFailures:\n");
        for h in &failures {
            let mut lines = h.error.as_deref().unwrap_or_default().lines();
            let _ = writeln!(
                md,
                "- hop {} ({} → {}, from {}): {}",
                h.n,
                h.saver.name(),
                h.restorer.name(),
                h.from,
                lines.next().unwrap_or_default()
            );
            let rest: Vec<&str> = lines.take(20).collect();
            if !rest.is_empty() {
                let _ = writeln!(md, "\n  ```\n  {}\n  ```", rest.join("\n  "));
            }
        }
    }

    let _ = writeln!(md, "\n## Cycles in one process\n");
    let _ = writeln!(
        md,
        "`xg-cycle --live` (capi-tests/xg-cycle.c): one process, one \
         `xc_interface`, saving a {} HVM guest to a file and restoring it \
         into a fresh empty domain, the restored guest saved next; after \
         every cycle it samples its open descriptors (/proc/self/fd), \
         mapping regions (/proc/self/maps) and VmRSS/VmHWM. Flat means: \
         descriptors and regions exactly as after cycle 1, and the RSS \
         median of the last fifth of the cycles at most {RSS_ALLOWANCE_KIB} \
         KiB above that of the first fifth, the first tenth of the cycles \
         (at least 3) left out as warm-up. Asserted for xcmig; libxenguest \
         is recorded beside it.\n",
        s.cfg.cycle_memory,
    );
    let _ = writeln!(
        md,
        "| library | cycles | failed | fds | regions | RSS KiB first → last fifth | growth KiB | slope KiB/cycle | peak (VmHWM) KiB | median save ms | median restore ms | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in &s.cycles {
        let range = |f: fn(&Cycle) -> i64| {
            let v: Vec<i64> = r.cycles.iter().map(f).collect();
            match (v.iter().min(), v.iter().max()) {
                (Some(a), Some(b)) if a == b => a.to_string(),
                (Some(a), Some(b)) => format!("{a}–{b}"),
                _ => "–".into(),
            }
        };
        let med = |f: fn(&Cycle) -> f64| {
            let mut v: Vec<f64> = r.cycles.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).map_or("–".into(), |x| format!("{x:.0}"))
        };
        let trend = rss_trend(&r.cycles);
        let problems = cycle_problems(r);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.engine.name(),
            r.cycles.len(),
            r.cycles.iter().filter(|c| !c.digest_ok).count(),
            range(|c| c.fds),
            range(|c| c.maps),
            trend.map_or("–".into(), |t| format!(
                "{} → {}",
                t.first_median_kib, t.last_median_kib
            )),
            trend.map_or("–".into(), |t| t.growth_kib.to_string()),
            trend.map_or("–".into(), |t| format!("{:.2}", t.slope_kib_per_cycle)),
            r.cycles.iter().map(|c| c.hwm_kib).max().unwrap_or(0),
            med(|c| c.save_ms),
            med(|c| c.restore_ms),
            if problems.is_empty() {
                "flat".to_string()
            } else {
                problems[0].lines().next().unwrap_or_default().to_string()
            }
        );
    }
    for r in &s.cycles {
        let _ = writeln!(
            md,
            "\nRSS KiB, {} ({} samples, evenly spaced): {}\n\nDescriptors, {}: {}",
            r.engine.name(),
            r.cycles.len(),
            sampled(&r.cycles.iter().map(|c| c.rss_kib).collect::<Vec<_>>(), 26),
            r.engine.name(),
            sampled(&r.cycles.iter().map(|c| c.fds).collect::<Vec<_>>(), 26),
        );
    }
    let _ = writeln!(
        md,
        "\nRaw series: `soak-hops.csv` (one row per hop) and `soak-cycles.csv` \
         (one row per cycle and library), beside this file.\n\nRe-run: \
         `make soak` (`SOAK_HOPS`, `SOAK_CYCLES`, `SOAK_MEMORY`, \
         `SOAK_CYCLE_MEMORY`, `SOAK_DIRTY_RATE`, `SOAK_WORKING_SET`, \
         `SOAK_DIR`)."
    );

    let mut hops_csv = String::from(
        "hop,from,saver,restorer,src,dst,ok,migrate_ms,downtime_ms,hop_ms,iterations,pages_written,digest\n",
    );
    for h in &s.hops {
        let _ = writeln!(
            hops_csv,
            "{},{},{},{},{},{},{},{:.1},{},{:.1},{},{},{}",
            h.n,
            h.from,
            h.saver.name(),
            h.restorer.name(),
            h.src,
            h.dst,
            u8::from(h.error.is_none()),
            h.migrate_ms,
            h.downtime_ms.map_or(String::new(), |d| format!("{d:.1}")),
            h.hop_ms,
            h.iterations,
            h.pages_written,
            h.digest
        );
    }
    let mut cycles_csv = String::from(
        "library,cycle,calls_ok,digest_ok,save_ms,restore_ms,fds,maps,rss_kib,hwm_kib\n",
    );
    for r in &s.cycles {
        for c in &r.cycles {
            let _ = writeln!(
                cycles_csv,
                "{},{},{},{},{:.1},{:.1},{},{},{},{}",
                r.engine.name(),
                c.n,
                u8::from(c.ok),
                u8::from(c.digest_ok),
                c.save_ms,
                c.restore_ms,
                c.fds,
                c.maps,
                c.rss_kib,
                c.hwm_kib
            );
        }
    }
    std::fs::create_dir_all(dir).expect("report directory");
    for (name, text) in [
        ("soak.md", md),
        ("soak-hops.csv", hops_csv),
        ("soak-cycles.csv", cycles_csv),
    ] {
        std::fs::write(dir.join(name), text)
            .unwrap_or_else(|e| panic!("write {}: {e}", dir.join(name).display()));
    }
}

/// Fails with every problem the soak found: failed hops, and the flatness
/// rules for the xcmig cycles.
fn assert_soak_clean(s: &Soak) {
    let mut problems: Vec<String> = s
        .hops
        .iter()
        .filter_map(|h| {
            h.error.as_ref().map(|e| {
                format!(
                    "hop {} ({} -> {}, {} {} -> {}): {e}",
                    h.n,
                    h.saver.name(),
                    h.restorer.name(),
                    h.from,
                    h.src,
                    h.dst
                )
            })
        })
        .collect();
    for r in s.cycles.iter().filter(|r| r.engine == Engine::Xcmig) {
        problems.extend(
            cycle_problems(r)
                .into_iter()
                .map(|p| format!("xcmig cycles: {p}")),
        );
    }
    assert_eq!(s.hops.len(), s.cfg.hops);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn short_soak_bounces_a_live_guest_through_every_pair_and_cycles_flat_in_one_process() {
    let cfg = Config::short();
    let soak = run_soak(&cfg, false);
    let out = TempDir::new("soak-report");
    write_report(&soak, out.path());
    let hops_csv = std::fs::read_to_string(out.join("soak-hops.csv")).expect("hops csv");
    assert_eq!(hops_csv.lines().count(), cfg.hops + 1, "{hops_csv}");
    let md = std::fs::read_to_string(out.join("soak.md")).expect("report");
    assert!(md.contains(&format!("- hops: {}", cfg.hops)), "{md}");
    for (sv, rs) in COMBINATIONS {
        let n = soak
            .hops
            .iter()
            .filter(|h| h.saver == sv && h.restorer == rs && h.error.is_none())
            .count();
        assert_eq!(n, cfg.hops / 4, "{} -> {} hops", sv.name(), rs.name());
    }
    // The guest really moved with its workload running: some hop needed
    // more than the first pass.
    assert!(
        soak.hops.iter().any(|h| h.iterations >= 2),
        "no hop iterated: {:?}",
        soak.hops.iter().map(|h| h.iterations).collect::<Vec<_>>()
    );
    assert_soak_clean(&soak);
}

/// `make soak`: the full soak, results into bench/results/.
#[test]
#[ignore = "long: run by `make soak`"]
fn full_soak_writes_bench_results() {
    let cfg = Config::full();
    eprintln!("soak: {cfg:?}");
    let soak = run_soak(&cfg, true);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    write_report(&soak, &dir);
    eprintln!("soak: wrote {}", dir.join("soak.md").display());
    assert_soak_clean(&soak);
}

#[test]
fn rss_trend_ignores_the_warmup_and_sees_steady_growth() {
    let cycle = |n: usize, rss: i64| Cycle {
        n,
        ok: true,
        save_ms: 0.0,
        restore_ms: 0.0,
        fds: 16,
        maps: 96,
        rss_kib: rss,
        hwm_kib: rss,
        digest_ok: true,
    };
    // A big first-use allocation, then flat with noise: no growth.
    let flat: Vec<Cycle> = (1..=50)
        .map(|n| {
            cycle(
                n,
                if n <= 2 {
                    9000
                } else {
                    5500 + (n as i64 % 3) * 4
                },
            )
        })
        .collect();
    let t = rss_trend(&flat).unwrap();
    assert!(t.growth_kib.abs() <= 8, "{t:?}");
    // 200 KiB a cycle, the leak the soak found.
    let leaking: Vec<Cycle> = (1..=50).map(|n| cycle(n, 5500 + 200 * n as i64)).collect();
    let t = rss_trend(&leaking).unwrap();
    assert!(t.growth_kib > RSS_ALLOWANCE_KIB, "{t:?}");
    assert!((t.slope_kib_per_cycle - 200.0).abs() < 1e-6, "{t:?}");
    let run = CycleRun {
        engine: Engine::Xcmig,
        wanted: 50,
        cycles: leaking,
        error: None,
        total: Duration::ZERO,
    };
    assert!(cycle_problems(&run)[0].contains("RSS grew"));
}

#[test]
fn divergence_report_names_the_differing_component_and_pfns() {
    let env = Env::locate();
    let base = soak_base();
    let hosts: Vec<Host> = ["div-a", "div-b"]
        .iter()
        .map(|t| Host::in_dir(env.clone(), TempDir::new_in(&base, t)))
        .collect();
    let cfg = Config::short();
    let a = create_guest(&hosts[0], &cfg, "16M", 5);
    let b = create_guest(&hosts[1], &cfg, "16M", 5);
    assert_eq!(
        hosts[0].digest(a),
        hosts[1].digest(b),
        "same seed, same guest"
    );
    assert!(explain_divergence(&hosts[0], a, &hosts[1], b).contains("0 pfns differ"));
    let dom = xensim::Host::open(&hosts[1].path())
        .and_then(|h| h.domain(b))
        .expect("open the second guest");
    dom.write_frame(0x123, &[0xa5; 4096])
        .expect("write a frame");
    let why = explain_divergence(&hosts[0], a, &hosts[1], b);
    assert!(why.contains("source memory "), "{why}");
    assert!(why.contains("1 pfns differ: 0x123"), "{why}");
}

#[test]
fn engines_are_told_apart_by_libxenguests_own_log_lines() {
    assert_eq!(
        engine_of_save("xc: detail: fd 1, dom 3, flags 1, hvm 1\nxc: info: Saving domain 3"),
        Engine::Libxenguest
    );
    assert_eq!(
        engine_of_save("xc: info: Saving domain 3, type x86 HVM"),
        Engine::Xcmig
    );
    assert_eq!(
        engine_of_restore(
            "domainbuilder: detail: xc_dom_set_gnttab_entry: d1 gnt[0] -> d0 0xfefff"
        ),
        Engine::Libxenguest
    );
    assert_eq!(
        engine_of_restore("xc: detail: seed grant table: d1 gnt[0] -> d0 0xfefff"),
        Engine::Xcmig
    );
}
