//! Starting the migration: the guest's workload, the link between the
//! hosts, the relay that meters the stream on it, and the two harnesses
//! (`xg-restore` first, then `xg-save`), each in its namespace for
//! `--transport netns`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::display::{size_label, Screen};
use crate::meter::{StreamCounts, StreamMeter};
use crate::netns::{Counters, NetnsPair};
use crate::procs::{Msg, Proc, Who};
use crate::setup::Setup;
use crate::transport::WireSender;
use crate::{sys, Args, Engine};

/// Event channels the restorer is given (as the xensim guests use).
const STORE_EVTCHN: &str = "1";
const CONSOLE_EVTCHN: &str = "2";

/// The running migration. Fields drop in order: the harnesses are stopped
/// before their namespaces go, and the workload after them.
pub struct Launched {
    pub saver: Proc,
    pub restorer: Proc,
    /// The namespaces of a `netns` link; they must outlive the harnesses.
    pub netns: Option<NetnsPair>,
    pub workload: Proc,
    /// Where every child's lines arrive.
    pub rx: Receiver<Msg>,
    /// Kept so that `rx` never reports a disconnection.
    _tx: Sender<Msg>,
    /// When xg-save was started.
    pub t0: Instant,
    /// The relay thread; its result is the stream's counts.
    pub relay: JoinHandle<Result<StreamCounts, String>>,
    /// Octets the relay has passed so far.
    pub wire: Arc<AtomicU64>,
    /// Pages of data the relay has seen so far.
    pub pages: Arc<AtomicU64>,
    /// The link, for the display, e.g. `TCP 127.0.0.1:41234`.
    pub link_description: String,
    /// The veth counters before any of the stream passed (`netns` only).
    pub counters_before: Option<(Counters, Counters)>,
}

/// Starts the workload, opens the link and starts the relay and the two
/// harnesses, printing what each is.
pub fn start(args: &Args, setup: &Setup, screen: &mut Screen) -> Result<Launched, String> {
    let logs = &setup.logs;
    let (tx, rx) = mpsc::channel::<Msg>();
    let workload = start_workload(args, setup, &tx, &rx)?;
    screen.line(&format!(
        "  workload       the guest writes {} MiB/s over a {} working set (xensim domain run)",
        args.dirty_rate,
        size_label(setup.working_set)
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

    let receiver_fd = link.receiver.as_raw_fd();
    let mut restore = harness(
        setup,
        &setup.pieces.xg_restore,
        &setup.dst_host,
        "restorer",
        setup.restore_engine,
    );
    restore
        .args([
            "--store-evtchn",
            STORE_EVTCHN,
            "--console-evtchn",
            CONSOLE_EVTCHN,
        ])
        .arg(setup.dst.to_string())
        .arg(format!("fd:{receiver_fd}"));
    if let Some(f) = &args.restore_fault {
        restore.env("XENSIM_FAULTS", f);
    }
    sys::inherit_fd(&mut restore, receiver_fd);
    let saver_fd = saver_end.as_raw_fd();
    let mut save = harness(
        setup,
        &setup.pieces.xg_save,
        &setup.src_host,
        "saver",
        setup.save_engine,
    );
    save.args(["--live", "--progress"])
        .arg(setup.src.to_string())
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
    // its failure reported later instead).
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
    let relay = {
        let (wire, pages) = (wire.clone(), pages.clone());
        let sender = link.sender;
        std::thread::spawn(move || relay(relay_in, sender, copy, wire, pages))
    };
    Ok(Launched {
        saver,
        restorer,
        netns: link.netns,
        workload,
        rx,
        _tx: tx,
        t0,
        relay,
        wire,
        pages,
        link_description: link.description,
        counters_before,
    })
}

/// Starts `xensim domain run` on the source guest and checks that it is
/// still running half a second later.
fn start_workload(
    args: &Args,
    setup: &Setup,
    tx: &Sender<Msg>,
    rx: &Receiver<Msg>,
) -> Result<Proc, String> {
    let mut workload = Proc::spawn(
        setup.xensim(&setup.src_host).args([
            "run",
            &setup.src.to_string(),
            "--dirty-rate",
            &args.dirty_rate,
            "--working-set",
            &args.working_set,
            "--seed",
            &args.seed.to_string(),
        ]),
        "the guest workload (xensim domain run)",
        Who::Workload,
        &setup.logs.join("workload.log"),
        tx,
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
    Ok(workload)
}

/// A harness command on `host`: the simulated Xen libraries first on the
/// library path, the loader's bindings logged (to check which engine ran),
/// and libxcmig preloaded for [`Engine::Xcmig`].
fn harness(setup: &Setup, exe: &Path, host: &Path, name: &str, engine: Engine) -> Command {
    let mut c = Command::new(exe);
    c.env("LD_LIBRARY_PATH", setup.pieces.ld_library_path())
        .env("XENSIM_HOST", host)
        .env_remove("XENSIM_FAULTS")
        .env_remove("LD_PRELOAD")
        .env("LD_DEBUG", "bindings")
        .env(
            "LD_DEBUG_OUTPUT",
            setup.logs.join(format!("{name}.ld-debug")),
        );
    if engine == Engine::Xcmig {
        c.env("LD_PRELOAD", &setup.pieces.libxcmig);
    }
    sys::ignore_sigpipe(&mut c);
    c
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
