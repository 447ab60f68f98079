//! `xcmig-demo` (`make demo`): live-migrates a simulated HVM guest, with a
//! workload dirtying its memory, from one simulated Xen host to another
//! through libxcmig, and shows what happened.
//!
//! The pieces are the ones a toolstack would use: the `capi-tests`
//! harnesses `xg-save` and `xg-restore` (C programs linked to
//! `-lxenguest`) run with `LD_PRELOAD=libxcmig.so` on two xensim hosts.
//! The saver writes the stream into a socket; the demo relays it over the
//! chosen transport (TCP on 127.0.0.1 by default) to the restorer, counting
//! records, pages and octets on the way. Progress comes from the messages
//! the library reports through the harness's xentoollog logger. At the end
//! the source's digest (at suspend) is compared with the destination's.
//!
//! Exit status: 0 when the migration succeeded and the digests are equal,
//! 1 on any failure (with a message naming it), 130 when interrupted.

mod display;
mod events;
mod meter;
mod netns;
mod procs;
mod sys;
mod transport;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;

use display::{bar, bytes, millis, secs, size_label, thousands, Screen};
use events::{iteration_of, parse_line, HarnessEvent};
use meter::{StreamCounts, StreamMeter};
use procs::{check_interrupted, run_to_end, Msg, Proc, Who};
use transport::{Transport, WireSender};

/// Where Debian installs the real Xen libraries (libxenguest, libxentoollog).
const SYSTEM_XEN_LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";
/// Event channels the restorer is given (as the xensim guests use).
const STORE_EVTCHN: &str = "1";
const CONSOLE_EVTCHN: &str = "2";
/// How long to wait for the other side's exit after one side failed.
const FAILURE_GRACE: Duration = Duration::from_secs(2);

/// Which implementation of xc_domain_save/xc_domain_restore runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Engine {
    /// libxcmig, preloaded into the harnesses (the point of the demo).
    Xcmig,
    /// Debian's libxenguest, for comparison.
    Libxenguest,
}

/// The engine's name as `--engine` spells it.
fn engine_name(e: Engine) -> &'static str {
    match e {
        Engine::Xcmig => "xcmig",
        Engine::Libxenguest => "libxenguest",
    }
}

/// Guest types xensim can migrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GuestType {
    Hvm,
    Pvh,
}

impl GuestType {
    fn name(self) -> &'static str {
        match self {
            GuestType::Hvm => "hvm",
            GuestType::Pvh => "pvh",
        }
    }
}

/// Live-migrates a simulated guest between two simulated Xen hosts
/// through libxcmig and reports iterations, pages, bytes and downtime.
#[derive(Debug, Parser)]
#[command(name = "xcmig-demo", version, args_override_self = true)]
struct Args {
    /// Cargo's target directory holding the build (`make build`); default
    /// $CARGO_TARGET_DIR, else `target`.
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
    /// Guest type.
    #[arg(long = "type", value_enum, default_value = "hvm")]
    guest_type: GuestType,
    /// Guest memory (xensim SIZE: 256M, 1G, ...).
    #[arg(long, default_value = "1G")]
    memory: String,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    vcpus: u32,
    /// Guest fill seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Workload: MiB/s of guest writes while the guest runs.
    #[arg(long, default_value = "32")]
    dirty_rate: String,
    /// Workload: the memory it writes to (xensim SIZE).
    #[arg(long, default_value = "128M")]
    working_set: String,
    /// How the stream travels between the hosts.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// The save/restore implementation.
    #[arg(long, value_enum, default_value = "xcmig")]
    engine: Engine,
    /// The implementation on the saving side (default: --engine), e.g.
    /// libxenguest saving into libxcmig restoring.
    #[arg(long, value_enum, value_name = "ENGINE")]
    save_engine: Option<Engine>,
    /// The implementation on the restoring side (default: --engine).
    #[arg(long, value_enum, value_name = "ENGINE")]
    restore_engine: Option<Engine>,
    /// Give up (and clean up) after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    timeout: u64,
    /// Where to put the two host directories (default: /dev/shm when it
    /// has room, else <target>/demo).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Where the children's logs go (default <target>/demo/logs).
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
    /// Keep the host directories afterwards.
    #[arg(long)]
    keep: bool,
    /// Also write a copy of the stream to FILE (for `xcmig inspect`).
    #[arg(long, value_name = "FILE")]
    save_stream: Option<PathBuf>,
    /// Write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Inject a fault into the restorer (XENSIM_FAULTS syntax, e.g.
    /// `xc_domain_populate_physmap_exact:ENOMEM`), to see a failure handled.
    #[arg(long, value_name = "SPEC")]
    restore_fault: Option<String>,
    /// Plain output lines even on a terminal (no in-place progress).
    #[arg(long)]
    plain: bool,
}

/// The built pieces the demo runs.
struct Pieces {
    xensim: PathBuf,
    shim_dir: PathBuf,
    libxcmig: PathBuf,
    xg_save: PathBuf,
    xg_restore: PathBuf,
}

fn require(path: PathBuf, what: &str) -> Result<PathBuf, String> {
    if path.exists() {
        // Absolute, so that the children and the LD_DEBUG check agree.
        path.canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))
    } else {
        Err(format!(
            "{what} not found at {}; run `make build` first",
            path.display()
        ))
    }
}

impl Pieces {
    fn locate(target: &Path) -> Result<Pieces, String> {
        Ok(Pieces {
            xensim: require(target.join("release/xensim"), "the xensim command")?,
            shim_dir: require(
                target.join("xensim/lib"),
                "the simulated Xen libraries (target/xensim/lib)",
            )?,
            libxcmig: require(target.join("release/libxcmig.so"), "libxcmig.so")?,
            xg_save: require(target.join("capi-tests/xg-save"), "the xg-save harness")?,
            xg_restore: require(
                target.join("capi-tests/xg-restore"),
                "the xg-restore harness",
            )?,
        })
    }

    fn ld_library_path(&self) -> String {
        format!("{}:{SYSTEM_XEN_LIBDIR}", self.shim_dir.display())
    }
}

/// The run directory, removed on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// One precopy round as the progress messages showed it.
#[derive(Debug, Clone, Serialize)]
struct Round {
    /// The library's phase name, e.g. `Frames iteration 2`.
    label: String,
    /// The number in the label.
    iteration: Option<u32>,
    /// The phase's total: pfns scanned (the first round covers the p2m).
    pfns: u64,
    /// Sent after the guest was suspended (the stop-and-copy round).
    after_suspend: bool,
    /// Duration of the round.
    seconds: f64,
    /// Octets the relay had passed when the round ended (the stream so
    /// far, give or take what sits in the saver's socket buffer).
    wire_bytes_at_end: u64,
    #[serde(skip)]
    done: u64,
    #[serde(skip)]
    started: Option<Instant>,
    #[serde(skip)]
    finished: bool,
}

/// The network part of the summary of a `--transport netns` run.
#[derive(Debug, Serialize)]
struct NetnsReport {
    /// The source host's namespace (xg-save and the relay's sending end).
    source_namespace: String,
    /// The destination host's namespace (the listener and xg-restore).
    destination_namespace: String,
    source_veth: String,
    destination_veth: String,
    /// Octets the source's veth end sent during the migration (its kernel
    /// counter, read with `ip -statistics`): the stream plus TCP/IP.
    source_veth_tx_bytes: u64,
    /// Octets the destination's veth end received meanwhile.
    destination_veth_rx_bytes: u64,
}

/// What `--summary-json` writes.
#[derive(Debug, Serialize)]
struct Summary {
    guest_type: &'static str,
    memory: String,
    vcpus: u32,
    /// The engine of both sides, or `mixed`.
    engine: String,
    save_engine: Engine,
    restore_engine: Engine,
    transport: String,
    /// Present for `--transport netns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<NetnsReport>,
    rounds: Vec<Round>,
    /// Rounds sent while the guest ran.
    precopy_iterations: usize,
    /// Pages of data in PAGE_DATA records.
    pages_sent: u64,
    /// PAGE_DATA entries (pfns, with or without data).
    page_entries: u64,
    /// Octets of the stream.
    bytes_on_wire: u64,
    /// Records of the stream.
    records: u64,
    /// From the suspend callback's return to the restore's return.
    downtime_ms: f64,
    /// From starting the save to the restore's return.
    total_seconds: f64,
    digest_source: String,
    digest_destination: String,
    digests_equal: bool,
    /// Pages the guest workload wrote during the migration.
    workload_pages_written: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    sys::catch_termination_signals();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xcmig-demo: error: {msg}");
            if sys::signalled().is_some() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The last non-empty line of a command's output.
fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// Parses a xensim SIZE (for the free-space estimate and the display).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mul: u64 = match suffix {
        "" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("bad size {s:?} (use K, M or G)")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("size {s:?} too large"))
}

fn choose_base(args: &Args, target: &Path, memory: u64) -> PathBuf {
    if let Some(w) = &args.workdir {
        return w.clone();
    }
    // Both hosts' memory files on tmpfs keep the disk out of the timings.
    let shm = Path::new("/dev/shm");
    let need = memory.saturating_mul(2).saturating_add(512 << 20);
    if sys::free_bytes(shm).is_some_and(|f| f >= need) {
        shm.to_path_buf()
    } else {
        target.join("demo")
    }
}

/// Reads the LD_DEBUG=bindings output of `pid` and checks that the
/// program's `symbol` was bound to `lib` (then removes that output).
fn check_binding(
    ld_debug_base: &Path,
    pid: u32,
    program: &str,
    symbol: &str,
    lib: &str,
) -> Result<(), String> {
    let file = PathBuf::from(format!("{}.{pid}", ld_debug_base.display()));
    let mut text = String::new();
    File::open(&file)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("cannot read the loader's log {}: {e}", file.display()))?;
    let sym = format!("normal symbol `{symbol}'");
    let bound: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(program) && l.contains(&sym))
        .collect();
    if bound.iter().any(|l| l.contains(&format!("to {lib} ["))) {
        // Checked; the rest of the loader's log is of no further use.
        let _ = std::fs::remove_file(&file);
        Ok(())
    } else {
        Err(format!(
            "{program}'s {symbol} was not bound to {lib}: {bound:?}"
        ))
    }
}

/// Progress state of the migration, fed by the harnesses' lines.
struct Migration {
    t0: Instant,
    rounds: Vec<Round>,
    suspended_at: Option<Instant>,
    /// CLOCK_MONOTONIC of the suspend and of the restore's return, when
    /// the harnesses report them (more precise than reading times).
    suspended_ns: Option<u64>,
    restored_ns: Option<u64>,
    saved: Option<(Instant, i64, String)>,
    restored: Option<(Instant, i64, String)>,
    workload_last: Option<String>,
    tails: [Vec<String>; 3],
}

impl Migration {
    fn tail_of(&mut self, who: Who) -> &mut Vec<String> {
        &mut self.tails[who as usize]
    }

    /// The last lines `who` wrote, for an error message.
    fn tail_text(&self, who: Who) -> String {
        self.tails[who as usize]
            .iter()
            .map(|l| format!("\n    {l}"))
            .collect()
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

    fn status_text(&self, wire: u64, pages: u64) -> String {
        let elapsed = secs(self.t0.elapsed());
        match self.rounds.last() {
            Some(r) if !r.finished => format!(
                // Short enough for 80 columns with a 1 GiB guest.
                "  round {} {} {} {:>3}%  {}/{} pfns  {}  {}",
                self.rounds.len() - 1,
                if r.after_suspend { "final" } else { "live" },
                bar(r.done, r.pfns, 12),
                (r.done.min(r.pfns) * 100)
                    .checked_div(r.pfns)
                    .unwrap_or(100),
                thousands(r.done),
                thousands(r.pfns),
                bytes(wire),
                elapsed
            ),
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

/// Copies the saver's stream to the link (and the optional copy), metering
/// it. Returns the counts, or why the relay stopped.
fn relay(
    mut from: UnixStream,
    mut to: Box<dyn WireSender>,
    mut copy: Option<File>,
    wire: Arc<AtomicU64>,
    pages: Arc<AtomicU64>,
) -> Result<StreamCounts, String> {
    let mut meter = StreamMeter::new();
    let mut meter_error: Option<String> = None;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the saver's stream: {e}")),
        };
        let piece = &buf[..n];
        if meter_error.is_none() {
            if let Err(e) = meter.feed(piece) {
                meter_error = Some(e);
            }
        }
        to.write_all(piece)
            .map_err(|e| format!("sending the stream to the destination: {e}"))?;
        if let Some(c) = copy.as_mut() {
            c.write_all(piece)
                .map_err(|e| format!("writing the stream copy: {e}"))?;
        }
        wire.fetch_add(n as u64, Ordering::Relaxed);
        pages.store(meter.counts().data_pages, Ordering::Relaxed);
    }
    to.close_write()
        .map_err(|e| format!("closing the link: {e}"))?;
    if let Some(c) = copy.as_mut() {
        c.flush()
            .map_err(|e| format!("writing the stream copy: {e}"))?;
    }
    if let Some(e) = meter_error {
        return Err(format!("could not follow the stream: {e}"));
    }
    if !meter.counts().ended {
        return Err("the stream ended without an END record".into());
    }
    Ok(meter.counts().clone())
}

fn run(args: &Args) -> Result<(), String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.timeout);
    let target = args
        .target_dir
        .clone()
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"));
    let pieces = Pieces::locate(&target)?;
    if args.transport == Transport::Netns {
        // Before any host is made: say at once that this run cannot work.
        netns::require_root()?;
    }
    let memory = parse_size(&args.memory)?;
    let working_set = parse_size(&args.working_set)?;
    let guest = format!(
        "{} {} guest ({} vCPU{})",
        size_label(memory),
        args.guest_type.name().to_uppercase(),
        args.vcpus,
        if args.vcpus == 1 { "" } else { "s" }
    );

    let base = choose_base(args, &target, memory);
    let work = WorkDir {
        path: base.join(format!("xcmig-demo-{}", std::process::id())),
        keep: args.keep,
    };
    let src_host = work.path.join("source-host");
    let dst_host = work.path.join("destination-host");
    for d in [&src_host, &dst_host] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let logs = args
        .logs
        .clone()
        .unwrap_or_else(|| target.join("demo").join("logs"));
    std::fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let logs = logs
        .canonicalize()
        .map_err(|e| format!("{}: {e}", logs.display()))?;

    let tty = !args.plain && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut screen = Screen::new(tty);
    let save_engine = args.save_engine.unwrap_or(args.engine);
    let restore_engine = args.restore_engine.unwrap_or(args.engine);
    let engine_text = |e: Engine| match e {
        Engine::Xcmig => format!(
            "libxcmig ({}), preloaded",
            target.join("release/libxcmig.so").display()
        ),
        Engine::Libxenguest => "Debian's libxenguest (reference run)".to_string(),
    };
    screen.line(&format!(
        "xcmig demo: live migration of a {guest} between two simulated Xen hosts"
    ));
    if save_engine == restore_engine {
        screen.line(&format!(
            "  save/restore   xg-save and xg-restore (linked to -lxenguest) running {}",
            engine_text(save_engine)
        ));
    } else {
        screen.line(&format!(
            "  save           xg-save (linked to -lxenguest) running {}",
            engine_text(save_engine)
        ));
        screen.line(&format!(
            "  restore        xg-restore (linked to -lxenguest) running {}",
            engine_text(restore_engine)
        ));
    }
    screen.line(&format!(
        "  hosts          {}/{{source,destination}}-host",
        work.path.display()
    ));

    // The two hosts and the guest.
    let xensim = |host: &Path| {
        let mut c = Command::new(&pieces.xensim);
        c.arg("domain")
            .env_remove("XENSIM_FAULTS")
            .env("XENSIM_HOST", host);
        c
    };
    let t = Instant::now();
    let out = run_to_end(
        xensim(&src_host).args([
            "create",
            "--type",
            args.guest_type.name(),
            "--memory",
            &args.memory,
            "--vcpus",
            &args.vcpus.to_string(),
            "--fill",
            "mixed",
            "--seed",
            &args.seed.to_string(),
        ]),
        "creating the source guest",
        deadline,
    )?;
    let src: u32 = last_line(&out)
        .parse()
        .map_err(|_| format!("xensim domain create printed no domid: {out:?}"))?;
    screen.line(&format!(
        "  source         domain {src} on the source host, memory filled (mixed) in {}",
        secs(t.elapsed())
    ));
    let out = run_to_end(
        xensim(&dst_host).args([
            "create",
            "--type",
            args.guest_type.name(),
            "--memory",
            &args.memory,
            "--vcpus",
            &args.vcpus.to_string(),
            "--empty",
        ]),
        "creating the destination domain",
        deadline,
    )?;
    let dst: u32 = last_line(&out)
        .parse()
        .map_err(|_| format!("xensim domain create printed no domid: {out:?}"))?;
    screen.line(&format!(
        "  destination    domain {dst} on the destination host, empty and paused"
    ));

    let (tx, rx) = mpsc::channel::<Msg>();
    let mut workload = Proc::spawn(
        xensim(&src_host).args([
            "run",
            &src.to_string(),
            "--dirty-rate",
            &args.dirty_rate,
            "--working-set",
            &args.working_set,
            "--seed",
            &args.seed.to_string(),
        ]),
        "the guest workload (xensim domain run)",
        Who::Workload,
        &logs.join("workload.log"),
        &tx,
    )?;
    std::thread::sleep(Duration::from_millis(500));
    if let Some(s) = workload.poll()? {
        // Its output is all in the channel (or about to be): show it.
        let mut said = Vec::new();
        while let Ok(msg) = rx.recv_timeout(Duration::from_secs(1)) {
            match msg {
                Msg::Line { text, .. } => said.push(format!("\n    {text}")),
                Msg::Closed(_) => break,
            }
        }
        return Err(format!(
            "the guest workload (xensim domain run) exited early ({s}):{}",
            said.concat()
        ));
    }
    screen.line(&format!(
        "  workload       the guest writes {} MiB/s over a {} working set (xensim domain run)",
        args.dirty_rate,
        size_label(working_set)
    ));

    // The link between the hosts, and the relay that meters it.
    let link = args
        .transport
        .open()
        .map_err(|e| format!("cannot open the link between the hosts: {e}"))?;
    let (saver_end, relay_in) =
        UnixStream::pair().map_err(|e| format!("cannot create the saver's socket: {e}"))?;
    let copy = match &args.save_stream {
        Some(p) => {
            Some(File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?)
        }
        None => None,
    };
    screen.line(&format!("  link           {}", link.description));
    if let Some(pair) = &link.netns {
        screen.line(&format!(
            "  namespaces     xg-save in {}, xg-restore in {}",
            pair.src.name, pair.dst.name
        ));
    }
    screen.line("");
    // The veth counters before any of the stream has passed.
    let counters_before = match &link.netns {
        Some(pair) => Some(pair.counters()?),
        None => None,
    };

    let harness = |exe: &Path, host: &Path, name: &str, engine: Engine| {
        let mut c = Command::new(exe);
        c.env("LD_LIBRARY_PATH", pieces.ld_library_path())
            .env("XENSIM_HOST", host)
            .env_remove("XENSIM_FAULTS")
            .env_remove("LD_PRELOAD")
            .env("LD_DEBUG", "bindings")
            .env("LD_DEBUG_OUTPUT", logs.join(format!("{name}.ld-debug")));
        if engine == Engine::Xcmig {
            c.env("LD_PRELOAD", &pieces.libxcmig);
        }
        sys::ignore_sigpipe(&mut c);
        c
    };
    let receiver_fd = link.receiver.as_raw_fd();
    let mut restore = harness(&pieces.xg_restore, &dst_host, "restorer", restore_engine);
    restore
        .args([
            "--store-evtchn",
            STORE_EVTCHN,
            "--console-evtchn",
            CONSOLE_EVTCHN,
        ])
        .arg(dst.to_string())
        .arg(format!("fd:{receiver_fd}"));
    if let Some(f) = &args.restore_fault {
        restore.env("XENSIM_FAULTS", f);
    }
    sys::inherit_fd(&mut restore, receiver_fd);
    let saver_fd = saver_end.as_raw_fd();
    let mut save = harness(&pieces.xg_save, &src_host, "saver", save_engine);
    save.args(["--live", "--progress"])
        .arg(src.to_string())
        .arg(format!("fd:{saver_fd}"));
    sys::inherit_fd(&mut save, saver_fd);
    if let Some(pair) = &link.netns {
        sys::run_in_netns(&mut restore, pair.dst.raw_fd());
        sys::run_in_netns(&mut save, pair.src.raw_fd());
    }

    let mut restorer = Proc::spawn(
        &mut restore,
        "xg-restore",
        Who::Restorer,
        &logs.join("restorer.log"),
        &tx,
    )?;
    let t0 = Instant::now();
    let mut saver = Proc::spawn(
        &mut save,
        "xg-save",
        Who::Saver,
        &logs.join("saver.log"),
        &tx,
    )?;
    // Each side runs in its namespace (a child that already exited has
    // its failure reported below instead).
    if let Some(pair) = &link.netns {
        for (p, ns) in [(&mut restorer, &pair.dst), (&mut saver, &pair.src)] {
            if !ns.holds(p.pid()) && p.poll()?.is_none() {
                return Err(format!(
                    "{} (pid {}) is not in network namespace {}",
                    p.name,
                    p.pid(),
                    ns.name
                ));
            }
        }
    }
    // Only the children hold their ends now, so either side's exit is seen.
    drop(saver_end);
    drop(link.receiver);
    let wire = Arc::new(AtomicU64::new(0));
    let pages = Arc::new(AtomicU64::new(0));
    let relay_thread = {
        let (wire, pages) = (wire.clone(), pages.clone());
        let sender = link.sender;
        std::thread::spawn(move || relay(relay_in, sender, copy, wire, pages))
    };

    let mut m = Migration {
        t0,
        rounds: Vec::new(),
        suspended_at: None,
        suspended_ns: None,
        restored_ns: None,
        saved: None,
        restored: None,
        workload_last: None,
        tails: Default::default(),
    };
    let mut closed = [false; 3];
    let mut saver_status = None;
    let mut restorer_status = None;
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let mut first_failure: Option<Instant> = None;
    let fail = |m: &Migration, who: Who, what: String| -> String {
        format!("{what}; its last lines:{}", m.tail_text(who))
    };
    loop {
        check_interrupted()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "the migration did not finish within {} s (--timeout); logs: {}",
                args.timeout,
                logs.display()
            ));
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Line {
                who,
                stderr,
                at,
                text,
            }) => {
                let tail = m.tail_of(who);
                tail.push(text.clone());
                if tail.len() > 12 {
                    tail.remove(0);
                }
                let w = wire.load(Ordering::Relaxed);
                match who {
                    Who::Workload if !stderr => m.workload_last = Some(text),
                    Who::Workload => {}
                    Who::Saver => match parse_line("xg-save", &text) {
                        Some(HarnessEvent::Progress { what, done, total }) => {
                            m.progress(at, &what, done, total, w, &mut screen)
                        }
                        Some(HarnessEvent::Suspend { rc }) => m.suspended(at, rc, w, &mut screen),
                        Some(HarnessEvent::Timestamp { event, ns }) if event == "suspended" => {
                            m.suspended_ns = Some(ns)
                        }
                        Some(HarnessEvent::Result { rc, detail }) => {
                            m.finish_round(at, w, &mut screen);
                            m.saved = Some((at, rc, detail));
                            if rc == 0 {
                                screen.line(&format!("  save complete at {}", secs(at - t0)));
                            }
                        }
                        Some(HarnessEvent::Timestamp { .. }) | None => {}
                    },
                    Who::Restorer => match parse_line("xg-restore", &text) {
                        Some(HarnessEvent::Timestamp { event, ns }) if event == "restored" => {
                            m.restored_ns = Some(ns)
                        }
                        Some(HarnessEvent::Result { rc, detail }) => {
                            m.restored = Some((at, rc, detail));
                            if rc == 0 {
                                screen.line(&format!("  restore complete at {}", secs(at - t0)));
                            }
                        }
                        _ => {}
                    },
                }
            }
            Ok(Msg::Closed(who)) => closed[who as usize] = true,
            Err(RecvTimeoutError::Timeout) => {}
            // Cannot happen while `tx` lives, but never spin on it.
            Err(RecvTimeoutError::Disconnected) => {
                return Err("internal error: the message channel closed".into())
            }
        }
        if saver_status.is_none() {
            saver_status = saver.poll()?;
        }
        if restorer_status.is_none() {
            restorer_status = restorer.poll()?;
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
                    failures.push(fail(&m, who, what));
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
                    logs.display()
                ));
            }
        }
        let done = matches!((saver_status, restorer_status), (Some(_), Some(_)))
            && closed[Who::Saver as usize]
            && closed[Who::Restorer as usize];
        if done {
            break;
        }
        if tty && last_draw.elapsed() >= Duration::from_millis(100) {
            screen.status(
                &m.status_text(wire.load(Ordering::Relaxed), pages.load(Ordering::Relaxed)),
            );
            last_draw = Instant::now();
        }
    }
    screen.clear_status();
    let counts = relay_thread
        .join()
        .map_err(|_| "the relay thread panicked".to_string())??;
    // Both sockets are closed now: the veth has carried the whole stream.
    let network = match (&link.netns, counters_before) {
        (Some(pair), Some((src0, dst0))) => {
            let (src1, dst1) = pair.counters()?;
            Some(NetnsReport {
                source_namespace: pair.src.name.clone(),
                destination_namespace: pair.dst.name.clone(),
                source_veth: pair.veth_src.clone(),
                destination_veth: pair.veth_dst.clone(),
                source_veth_tx_bytes: src1.tx_bytes.saturating_sub(src0.tx_bytes),
                destination_veth_rx_bytes: dst1.rx_bytes.saturating_sub(dst0.rx_bytes),
            })
        }
        _ => None,
    };
    m.saved.as_ref().ok_or("xg-save printed no result")?;
    let (t_restored, _, _) = m.restored.clone().ok_or("xg-restore printed no result")?;
    let t_suspend = m
        .suspended_at
        .ok_or("the suspend callback never ran (no suspend line from xg-save)")?;

    // The guest stopped at suspend, so its workload has ended.
    let ws = workload.wait_until((Instant::now() + Duration::from_secs(30)).min(deadline))?;
    while !closed[Who::Workload as usize] {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Msg::Line {
                who: Who::Workload,
                stderr: false,
                text,
                ..
            }) => m.workload_last = Some(text),
            Ok(Msg::Closed(Who::Workload)) => closed[Who::Workload as usize] = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if !ws.success() {
        return Err(format!(
            "{}\n  logs: {}",
            fail(
                &m,
                Who::Workload,
                format!("the guest workload failed ({ws})")
            ),
            logs.display()
        ));
    }

    // Which implementation actually ran.
    let lib = |e: Engine| match e {
        Engine::Xcmig => pieces.libxcmig.display().to_string(),
        Engine::Libxenguest => format!("{SYSTEM_XEN_LIBDIR}/libxenguest.so.4.17"),
    };
    check_binding(
        &logs.join("saver.ld-debug"),
        saver.pid(),
        "xg-save",
        "xc_domain_save",
        &lib(save_engine),
    )?;
    check_binding(
        &logs.join("restorer.ld-debug"),
        restorer.pid(),
        "xg-restore",
        "xc_domain_restore",
        &lib(restore_engine),
    )?;

    // Digests: the source as it was at suspend (it has not run since),
    // the destination as restored. Both at once.
    let digest = |host: &Path, dom: u32| {
        let mut c = xensim(host);
        c.args(["digest", &dom.to_string()]);
        c
    };
    let (mut c_src, mut c_dst) = (digest(&src_host, src), digest(&dst_host, dst));
    let (d_src, d_dst) = std::thread::scope(|s| {
        let a = s.spawn(|| run_to_end(&mut c_src, "digest of the source", deadline));
        let b = s.spawn(|| run_to_end(&mut c_dst, "digest of the destination", deadline));
        (a.join(), b.join())
    });
    let d_src = last_line(&d_src.map_err(|_| "digest thread panicked")??).to_string();
    let d_dst = last_line(&d_dst.map_err(|_| "digest thread panicked")??).to_string();

    // Both harnesses stamp CLOCK_MONOTONIC when they can; else the times
    // their lines were read here (a pipe's latency later) serve.
    let downtime = match (m.suspended_ns, m.restored_ns) {
        (Some(a), Some(b)) if b >= a => Duration::from_nanos(b - a),
        _ => t_restored.saturating_duration_since(t_suspend),
    };
    let total = t_restored.saturating_duration_since(t0);
    let live = m.rounds.iter().filter(|r| !r.after_suspend).count();
    let last = m.rounds.iter().filter(|r| r.after_suspend).count();
    let workload_pages = m
        .workload_last
        .as_deref()
        .and_then(|l| l.trim().parse::<u64>().ok());
    let equal = d_src == d_dst && !d_src.is_empty();

    screen.line("");
    screen.line("Summary");
    screen.line(&format!(
        "  iterations         {} ({live} live precopy round{} + {last} after suspend)",
        live + last,
        if live == 1 { "" } else { "s" }
    ));
    screen.line(&format!(
        "  pages sent         {} ({} of page data, {} pfn entries)",
        thousands(counts.data_pages),
        bytes(counts.data_pages * 4096),
        thousands(counts.page_entries)
    ));
    screen.line(&format!(
        "  bytes on the wire  {} ({}, {} records)",
        thousands(counts.bytes),
        bytes(counts.bytes),
        thousands(counts.records)
    ));
    if let Some(n) = &network {
        screen.line(&format!(
            "  veth traffic       {} octets sent by {} (source namespace)",
            thousands(n.source_veth_tx_bytes),
            n.source_veth,
        ));
        screen.line(&format!(
            "                     {} octets received by {} (destination namespace)",
            thousands(n.destination_veth_rx_bytes),
            n.destination_veth,
        ));
    }
    screen.line(&format!(
        "  downtime           {} (guest suspended -> restore complete)",
        millis(downtime)
    ));
    screen.line(&format!(
        "  total time         {} (save started -> restore complete)",
        secs(total)
    ));
    if let Some(p) = workload_pages {
        screen.line(&format!(
            "  guest workload     {} page writes while migrating",
            thousands(p)
        ));
    }
    screen.line(&format!("  source digest      {d_src} (at suspend)"));
    screen.line(&format!("  destination digest {d_dst} (after restore)"));

    if let Some(p) = &args.summary_json {
        let mut rounds = m.rounds.clone();
        for r in &mut rounds {
            r.seconds = (r.seconds * 1000.0).round() / 1000.0;
        }
        let s = Summary {
            guest_type: args.guest_type.name(),
            memory: args.memory.clone(),
            vcpus: args.vcpus,
            engine: if save_engine == restore_engine {
                engine_name(save_engine).to_string()
            } else {
                "mixed".to_string()
            },
            save_engine,
            restore_engine,
            transport: link.description.clone(),
            network,
            rounds,
            precopy_iterations: live,
            pages_sent: counts.data_pages,
            page_entries: counts.page_entries,
            bytes_on_wire: counts.bytes,
            records: counts.records,
            downtime_ms: downtime.as_secs_f64() * 1000.0,
            total_seconds: total.as_secs_f64(),
            digest_source: d_src.clone(),
            digest_destination: d_dst.clone(),
            digests_equal: equal,
            workload_pages_written: workload_pages,
        };
        let text = serde_json::to_string_pretty(&s).map_err(|e| format!("summary JSON: {e}"))?;
        std::fs::write(p, text + "\n").map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if !equal {
        return Err(format!(
            "the digests differ: the destination is not the guest the source suspended (source {d_src}, destination {d_dst})"
        ));
    }
    screen.line("  result             OK: the destination is identical to the suspended source");
    if args.keep {
        screen.line(&format!("  kept               {}", work.path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration() -> Migration {
        Migration {
            t0: Instant::now(),
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
    fn sizes_parse_like_xensim() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096K"), Ok(4 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("12345"), Ok(12345));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
