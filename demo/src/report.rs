//! Reporting: once both harnesses are done, the stream's counts, the veth
//! traffic, the workload's end, which library each harness really ran,
//! the two digests, and the summary (on the screen and as JSON).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::display::{bytes, millis, secs, thousands, Screen};
use crate::launch::Launched;
use crate::meter::StreamCounts;
use crate::netns::{Counters, NetnsPair};
use crate::procs::{last_line, run_to_end, Msg, Proc, Who};
use crate::setup::Setup;
use crate::watch::{Migration, Round, Watched};
use crate::{engine_name, Args, Engine, SYSTEM_XEN_LIBDIR};

/// The network part of the summary of a `--transport netns` run.
#[derive(Debug, Serialize)]
pub struct NetnsReport {
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
struct Summary<'a> {
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
    network: Option<&'a NetnsReport>,
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

/// The figures of a finished migration.
struct Results {
    counts: StreamCounts,
    network: Option<NetnsReport>,
    /// Rounds sent while the guest ran, and after the suspend.
    live: usize,
    last: usize,
    downtime: Duration,
    total: Duration,
    workload_pages: Option<u64>,
    d_src: String,
    d_dst: String,
    equal: bool,
}

/// Finishes the run: collects what the children left, checks which
/// library ran and that the destination is the source, and prints the
/// summary. An error names the first check that failed.
pub fn report(
    args: &Args,
    setup: &Setup,
    mut run: Launched,
    watched: Watched,
    screen: &mut Screen,
) -> Result<(), String> {
    let Watched {
        migration: mut m,
        mut closed,
    } = watched;
    screen.clear_status();
    let counts = run
        .relay
        .join()
        .map_err(|_| "the relay thread panicked".to_string())??;
    // Both sockets are closed now: the veth has carried the whole stream.
    let network = network_report(&run.netns, &run.counters_before)?;
    m.saved.as_ref().ok_or("xg-save printed no result")?;
    let (t_restored, _, _) = m.restored.clone().ok_or("xg-restore printed no result")?;
    let t_suspend = m
        .suspended_at
        .ok_or("the suspend callback never ran (no suspend line from xg-save)")?;
    wait_for_workload(setup, &mut run.workload, &run.rx, &mut m, &mut closed)?;
    check_engines(setup, run.saver.pid(), run.restorer.pid())?;
    let (d_src, d_dst) = digests(setup)?;

    // Both harnesses stamp CLOCK_MONOTONIC when they can; else the times
    // their lines were read here (a pipe's latency later) serve.
    let downtime = match (m.suspended_ns, m.restored_ns) {
        (Some(a), Some(b)) if b >= a => Duration::from_nanos(b - a),
        _ => t_restored.saturating_duration_since(t_suspend),
    };
    let equal = d_src == d_dst && !d_src.is_empty();
    let r = Results {
        counts,
        network,
        live: m.rounds.iter().filter(|r| !r.after_suspend).count(),
        last: m.rounds.iter().filter(|r| r.after_suspend).count(),
        downtime,
        total: t_restored.saturating_duration_since(run.t0),
        workload_pages: m
            .workload_last
            .as_deref()
            .and_then(|l| l.trim().parse::<u64>().ok()),
        d_src,
        d_dst,
        equal,
    };
    r.print(screen);
    if let Some(p) = &args.summary_json {
        r.write_json(args, setup, &run.link_description, &m.rounds, p)?;
    }
    if !r.equal {
        return Err(format!(
            "the digests differ: the destination is not the guest the source suspended (source {}, destination {})",
            r.d_src, r.d_dst
        ));
    }
    screen.line("  result             OK: the destination is identical to the suspended source");
    screen.line(&format!(
        "  logs               {}",
        crate::display::relative_to_cwd(&setup.logs).display()
    ));
    if args.keep {
        screen.line(&format!(
            "  kept               {}",
            setup.work.path.display()
        ));
    }
    Ok(())
}

/// The veth traffic of a `netns` run: the counters now less those before.
fn network_report(
    netns: &Option<NetnsPair>,
    before: &Option<(Counters, Counters)>,
) -> Result<Option<NetnsReport>, String> {
    Ok(match (netns, before) {
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
    })
}

/// Waits for the workload, which ends with the guest's suspend, and reads
/// its last lines (its last stdout line is the pages it wrote).
fn wait_for_workload(
    setup: &Setup,
    workload: &mut Proc,
    rx: &Receiver<Msg>,
    m: &mut Migration,
    closed: &mut [bool; 3],
) -> Result<(), String> {
    let ws = workload.wait_until((Instant::now() + Duration::from_secs(30)).min(setup.deadline))?;
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
            m.failure(Who::Workload, format!("the guest workload failed ({ws})")),
            setup.logs.display()
        ));
    }
    Ok(())
}

/// Which implementation actually ran: each harness's entry point was
/// bound to the library its engine names.
fn check_engines(setup: &Setup, saver_pid: u32, restorer_pid: u32) -> Result<(), String> {
    let lib = |e: Engine| match e {
        Engine::Xcmig => setup.pieces.libxcmig.display().to_string(),
        Engine::Libxenguest => format!("{SYSTEM_XEN_LIBDIR}/libxenguest.so.4.17"),
    };
    check_binding(
        &setup.logs.join("saver.ld-debug"),
        saver_pid,
        "xg-save",
        "xc_domain_save",
        &lib(setup.save_engine),
    )?;
    check_binding(
        &setup.logs.join("restorer.ld-debug"),
        restorer_pid,
        "xg-restore",
        "xc_domain_restore",
        &lib(setup.restore_engine),
    )
}

/// Digests: the source as it was at suspend (it has not run since), the
/// destination as restored. Both at once.
fn digests(setup: &Setup) -> Result<(String, String), String> {
    let digest = |host: &Path, dom: u32| {
        let mut c = setup.xensim(host);
        c.args(["digest", &dom.to_string()]);
        c
    };
    let (mut c_src, mut c_dst) = (
        digest(&setup.src_host, setup.src),
        digest(&setup.dst_host, setup.dst),
    );
    let deadline = setup.deadline;
    let (d_src, d_dst) = std::thread::scope(|s| {
        let a = s.spawn(|| run_to_end(&mut c_src, "digest of the source", deadline));
        let b = s.spawn(|| run_to_end(&mut c_dst, "digest of the destination", deadline));
        (a.join(), b.join())
    });
    let d_src = last_line(&d_src.map_err(|_| "digest thread panicked")??).to_string();
    let d_dst = last_line(&d_dst.map_err(|_| "digest thread panicked")??).to_string();
    Ok((d_src, d_dst))
}

impl Results {
    /// The summary lines.
    fn print(&self, screen: &mut Screen) {
        let (live, last, counts) = (self.live, self.last, &self.counts);
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
        // Entries without data: pages of zeros, which xcmig sends as a pfn
        // alone (libxenguest sends them whole), and pfns not populated.
        screen.line(&format!(
            "  pfns without data  {} (zero pages elided, or not populated)",
            thousands(counts.page_entries.saturating_sub(counts.data_pages))
        ));
        screen.line(&format!(
            "  bytes on the wire  {} ({}, {} records)",
            thousands(counts.bytes),
            bytes(counts.bytes),
            thousands(counts.records)
        ));
        if let Some(n) = &self.network {
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
            millis(self.downtime)
        ));
        screen.line(&format!(
            "  total time         {} (save started -> restore complete)",
            secs(self.total)
        ));
        if let Some(p) = self.workload_pages {
            screen.line(&format!(
                "  guest workload     {} page writes while migrating",
                thousands(p)
            ));
        }
        screen.line(&format!("  source digest      {} (at suspend)", self.d_src));
        screen.line(&format!(
            "  destination digest {} (after restore)",
            self.d_dst
        ));
    }

    /// Writes `--summary-json` to `path`.
    fn write_json(
        &self,
        args: &Args,
        setup: &Setup,
        link_description: &str,
        rounds: &[Round],
        path: &Path,
    ) -> Result<(), String> {
        let mut rounds = rounds.to_vec();
        for r in &mut rounds {
            r.seconds = (r.seconds * 1000.0).round() / 1000.0;
        }
        let (save_engine, restore_engine) = (setup.save_engine, setup.restore_engine);
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
            transport: link_description.to_string(),
            network: self.network.as_ref(),
            rounds,
            precopy_iterations: self.live,
            pages_sent: self.counts.data_pages,
            page_entries: self.counts.page_entries,
            bytes_on_wire: self.counts.bytes,
            records: self.counts.records,
            downtime_ms: self.downtime.as_secs_f64() * 1000.0,
            total_seconds: self.total.as_secs_f64(),
            digest_source: self.d_src.clone(),
            digest_destination: self.d_dst.clone(),
            digests_equal: self.equal,
            workload_pages_written: self.workload_pages,
        };
        let text = serde_json::to_string_pretty(&s).map_err(|e| format!("summary JSON: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
