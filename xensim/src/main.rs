//! The `xensim` command: create, inspect, run and destroy simulated domains,
//! and inject faults. The contract is in xensim/README.md.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xensim::workload::{self, RunOptions};
use xensim::{parse_size, DomId, DomainConfig, FaultRule, Fill, GuestType, Host, P2mLayout};

#[derive(Parser)]
#[command(
    name = "xensim",
    version,
    about = "A simulated Xen 4.17 host in a directory"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Manage domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Inject faults into named calls of every process using the host.
    #[command(subcommand)]
    Fault(FaultCmd),
    /// Host-wide settings.
    #[command(subcommand)]
    Host(HostCmd),
    /// Print a shell completion script for xensim to stdout.
    Completions {
        /// The shell: bash or zsh (fish, elvish and powershell also work).
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
struct HostArg {
    /// Host directory (default: $XENSIM_HOST).
    #[arg(long)]
    host: Option<PathBuf>,
}

impl HostArg {
    /// The host directory: `--host`, else `$XENSIM_HOST`.
    fn dir(&self) -> xensim::Result<PathBuf> {
        match &self.host {
            Some(d) => Ok(d.clone()),
            None => match std::env::var_os("XENSIM_HOST") {
                Some(d) if !d.is_empty() => Ok(PathBuf::from(d)),
                _ => Err(fail("$XENSIM_HOST is not set (or give --host DIR)")),
            },
        }
    }

    /// Opens an existing host directory; a missing one is an error (the
    /// Rust API's `Host::open` would create it, hiding a mistyped path).
    fn open(&self) -> xensim::Result<Host> {
        let dir = self.dir()?;
        if !dir.is_dir() {
            let what = if dir.exists() {
                "is not a directory"
            } else {
                "does not exist"
            };
            return Err(xensim::Error::new(
                libc::ENOENT,
                format!(
                    "host directory {} {what} (create it first, or pass --create-host to \
                     `xensim domain create`)",
                    dir.display()
                ),
            ));
        }
        Host::open(&dir)
    }

    /// Opens the host directory, creating it (and its parents) when asked.
    fn open_or_create(&self, create: bool) -> xensim::Result<Host> {
        if create {
            let dir = self.dir()?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                xensim::Error::new(
                    e.raw_os_error().unwrap_or(libc::EIO),
                    format!("cannot create host directory {}: {e}", dir.display()),
                )
            })?;
        }
        self.open()
    }
}

#[derive(Subcommand)]
enum DomainCmd {
    /// Create a domain; prints its id on the last line.
    Create {
        #[command(flatten)]
        host: HostArg,
        /// hvm, pvh or pv.
        #[arg(long = "type", value_name = "TYPE")]
        guest_type: String,
        /// RAM size: bytes or with K/M/G suffix (256M, 1G).
        #[arg(long)]
        memory: String,
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// random, zero, mixed or realistic.
        #[arg(long, default_value = "mixed")]
        fill: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Unpopulated, paused restore target (PV: always 64-bit).
        #[arg(long)]
        empty: bool,
        /// PV guest width: 64 or 32.
        #[arg(long, default_value_t = 64)]
        address_size: u32,
        /// PV p2m layout: linear or tree.
        #[arg(long, default_value = "linear")]
        p2m: String,
        /// Create the host directory if it does not exist (otherwise a
        /// missing directory is an error).
        #[arg(long)]
        create_host: bool,
    },
    /// Print the digest of a domain's state (one hex line).
    Digest {
        #[command(flatten)]
        host: HostArg,
        domid: DomId,
        /// Also print each component (before the digest line).
        #[arg(long, short)]
        verbose: bool,
        /// Print the components and digest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the guest workload until the domain is suspended or paused;
    /// prints the number of pages written on the last line.
    Run {
        #[command(flatten)]
        host: HostArg,
        domid: DomId,
        /// MiB per second to dirty.
        #[arg(long = "dirty-rate", value_name = "MiB/s")]
        dirty_rate: f64,
        /// Size of the set of pages written.
        #[arg(long = "working-set", value_name = "SIZE")]
        working_set: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop after this many seconds even if the domain keeps running.
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        /// Keep running across pauses and suspend/resume cycles; stop only
        /// when the domain is destroyed or --duration passes.
        #[arg(long)]
        follow: bool,
        /// What each write puts in a page: random, or realistic (new
        /// content of the page's kind in a realistic guest).
        #[arg(long, default_value = "random")]
        pattern: String,
    },
    /// List domains.
    List {
        #[command(flatten)]
        host: HostArg,
    },
    /// Destroy domains.
    Destroy {
        #[command(flatten)]
        host: HostArg,
        #[arg(required = true)]
        domids: Vec<DomId>,
    },
    /// Print a domain's info as key=value lines.
    Info {
        #[command(flatten)]
        host: HostArg,
        domid: DomId,
    },
    /// Shut a domain down (default reason: suspend).
    Shutdown {
        #[command(flatten)]
        host: HostArg,
        domid: DomId,
        /// poweroff, reboot, suspend, crash, watchdog, soft_reset, or a number.
        #[arg(long, default_value = "suspend")]
        reason: String,
    },
    /// Controller-pause a domain.
    Pause {
        #[command(flatten)]
        host: HostArg,
        domid: DomId,
    },
    /// Controller-unpause a domain.
    Unpause {
        #[command(flatten)]
        host: HostArg,
        domid: DomId,
    },
    /// Resume a domain after a (suspend) shutdown.
    Resume {
        #[command(flatten)]
        host: HostArg,
        domid: DomId,
    },
    /// Print a domain's scheduler weight and cap, or set them (as `xl
    /// sched-credit2 -d DOMID -w W -c C` does).
    Sched {
        #[command(flatten)]
        host: HostArg,
        domid: DomId,
        /// New weight (1..65535).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        weight: Option<u16>,
        /// New cap, in percent of one CPU (0: no cap).
        #[arg(long)]
        cap: Option<u16>,
        /// Also print every change, oldest first: `<unix ns> <scheduler>
        /// weight <w> cap <c>`.
        #[arg(long)]
        history: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum HostCmd {
    /// Print the host's scheduler, or choose it (credit or credit2; only
    /// while the host has no domains).
    Scheduler {
        #[command(flatten)]
        host: HostArg,
        /// credit or credit2.
        scheduler: Option<String>,
    },
}

#[derive(Subcommand)]
enum FaultCmd {
    /// Set the host's fault rules: NAME:ERRNO[:N[:once|always]],...
    Set {
        #[command(flatten)]
        host: HostArg,
        spec: String,
    },
    /// Remove all host fault rules.
    Clear {
        #[command(flatten)]
        host: HostArg,
    },
    /// Print the host's fault rules.
    List {
        #[command(flatten)]
        host: HostArg,
    },
}

fn parse_reason(s: &str) -> Option<u32> {
    let names = [
        "poweroff",
        "reboot",
        "suspend",
        "crash",
        "watchdog",
        "soft_reset",
    ];
    names
        .iter()
        .position(|n| *n == s)
        .map(|i| i as u32)
        .or_else(|| s.parse().ok())
}

fn fail(msg: impl std::fmt::Display) -> xensim::Error {
    xensim::Error::new(libc::EINVAL, msg.to_string())
}

fn run(cli: Cli) -> xensim::Result<()> {
    match cli.cmd {
        Cmd::Domain(DomainCmd::Create {
            host,
            guest_type,
            memory,
            vcpus,
            fill,
            seed,
            empty,
            address_size,
            p2m,
            create_host,
        }) => {
            let p2m_layout =
                P2mLayout::parse(&p2m).ok_or_else(|| fail(format!("bad --p2m {p2m:?}")))?;
            if address_size != 64 && address_size != 32 {
                return Err(fail(format!("bad --address-size {address_size}")));
            }
            let guest_type = GuestType::parse(&guest_type)
                .ok_or_else(|| fail(format!("bad --type {guest_type:?}")))?;
            let memory_bytes =
                parse_size(&memory).ok_or_else(|| fail(format!("bad --memory {memory:?}")))?;
            let fill = Fill::parse(&fill).ok_or_else(|| fail(format!("bad --fill {fill:?}")))?;
            let h = host.open_or_create(create_host)?;
            let id = h.create_domain(&DomainConfig {
                guest_type,
                memory_bytes,
                vcpus,
                fill,
                seed,
                empty,
                address_size,
                p2m_layout,
            })?;
            println!("{id}");
        }
        Cmd::Domain(DomainCmd::Digest {
            host,
            domid,
            verbose,
            json,
        }) => {
            let d = host.open()?.domain(domid)?;
            let r = d.digest_report()?;
            if json {
                let comps: Vec<String> = r
                    .components
                    .iter()
                    .map(|(n, v)| format!("\"{n}\":\"{v}\""))
                    .collect();
                let excl: Vec<String> = r.excluded_pages.iter().map(|p| p.to_string()).collect();
                println!(
                    "{{\"domid\":{domid},\"pages\":{},\"excluded_pages\":[{}],\"components\":{{{}}},\"digest\":\"{}\"}}",
                    r.pages,
                    excl.join(","),
                    comps.join(","),
                    r.total
                );
            } else {
                if verbose {
                    println!("pages {}", r.pages);
                    for (n, v) in &r.components {
                        println!("{n} {v}");
                    }
                }
                println!("{}", r.total);
            }
        }
        Cmd::Domain(DomainCmd::Run {
            host,
            domid,
            dirty_rate,
            working_set,
            seed,
            duration,
            follow,
            pattern,
        }) => {
            let pattern = workload::Pattern::parse(&pattern)
                .ok_or_else(|| fail(format!("bad --pattern {pattern:?}")))?;
            if !(dirty_rate >= 0.0 && dirty_rate.is_finite()) {
                return Err(fail("--dirty-rate must be a non-negative number"));
            }
            let ws = parse_size(&working_set)
                .ok_or_else(|| fail(format!("bad --working-set {working_set:?}")))?;
            let max_duration = match duration {
                Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
                Some(_) => return Err(fail("--duration must be a non-negative number")),
                None => None,
            };
            let d = host.open()?.domain(domid)?;
            let opts = RunOptions {
                dirty_rate_bytes: (dirty_rate * 1048576.0) as u64,
                working_set_bytes: ws,
                seed,
                max_duration,
                follow,
                pattern,
            };
            let s = workload::run(&d, &opts)?;
            eprintln!(
                "xensim: domain {domid}: wrote {} pages over a working set of {} pages in {:.3}s",
                s.pages_written,
                s.working_set_pages,
                s.elapsed.as_secs_f64()
            );
            println!("{}", s.pages_written);
        }
        Cmd::Domain(DomainCmd::List { host }) => {
            let h = host.open()?;
            println!(
                "{:>5} {:<4} {:>5} {:>10} {:>10} state",
                "domid", "type", "vcpus", "tot_pages", "max_gpfn"
            );
            for id in h.domain_ids()? {
                let Ok(d) = h.domain(id) else { continue };
                let i = d.info()?;
                let mut state = String::new();
                for (flag, c) in [
                    (i.running, 'r'),
                    (i.blocked, 'b'),
                    (i.paused, 'p'),
                    (i.shutdown, 's'),
                    (i.dying, 'd'),
                ] {
                    state.push(if flag { c } else { '-' });
                }
                if i.shutdown {
                    state.push_str(&format!(" reason={}", i.shutdown_reason));
                }
                println!(
                    "{:>5} {:<4} {:>5} {:>10} {:>#10x} {}",
                    id,
                    i.guest_type.as_str(),
                    i.max_vcpu_id + 1,
                    i.tot_pages,
                    d.max_gpfn(),
                    state
                );
            }
        }
        Cmd::Domain(DomainCmd::Destroy { host, domids }) => {
            let h = host.open()?;
            for id in domids {
                h.destroy_domain(id)?;
            }
        }
        Cmd::Domain(DomainCmd::Info { host, domid }) => {
            let d = host.open()?.domain(domid)?;
            let i = d.info()?;
            let t = d.tsc_info()?;
            println!("domid={}", i.domid);
            println!("type={}", i.guest_type.as_str());
            println!("vcpus={}", i.max_vcpu_id + 1);
            println!("online_vcpus={}", i.nr_online_vcpus);
            println!("tot_pages={}", i.tot_pages);
            println!("max_pages={}", i.max_pages);
            println!("max_gpfn={:#x}", d.max_gpfn());
            println!("paused={}", u8::from(i.paused));
            println!("shutdown={}", u8::from(i.shutdown));
            println!("shutdown_reason={}", i.shutdown_reason);
            println!("dying={}", u8::from(i.dying));
            println!("creation_finished={}", u8::from(i.creation_finished));
            println!("logdirty={}", u8::from(d.logdirty_enabled()));
            println!(
                "tsc_mode={} gtsc_khz={} elapsed_nsec={} incarnation={}",
                t.mode, t.gtsc_khz, t.elapsed_nsec, t.incarnation
            );
        }
        Cmd::Domain(DomainCmd::Shutdown {
            host,
            domid,
            reason,
        }) => {
            let r =
                parse_reason(&reason).ok_or_else(|| fail(format!("bad --reason {reason:?}")))?;
            host.open()?.domain(domid)?.shutdown(r)?;
        }
        Cmd::Domain(DomainCmd::Pause { host, domid }) => host.open()?.domain(domid)?.pause()?,
        Cmd::Domain(DomainCmd::Unpause { host, domid }) => host.open()?.domain(domid)?.unpause()?,
        Cmd::Domain(DomainCmd::Resume { host, domid }) => host.open()?.domain(domid)?.resume()?,
        Cmd::Fault(FaultCmd::Set { host, spec }) => {
            let rules = FaultRule::parse_list(&spec)?;
            host.open()?.set_faults(&rules)?;
        }
        Cmd::Fault(FaultCmd::Clear { host }) => host.open()?.clear_faults()?,
        Cmd::Host(HostCmd::Scheduler { host, scheduler }) => {
            let h = host.open()?;
            if let Some(name) = scheduler {
                h.set_scheduler(name.parse()?)?;
            }
            println!("{}", h.scheduler());
        }
        Cmd::Domain(DomainCmd::Sched {
            host,
            domid,
            weight,
            cap,
            history,
            json,
        }) => {
            let h = host.open()?;
            let sched = h.scheduler();
            let mut p = h.sched_getinfo(domid, sched.id())?;
            if weight.is_some() || cap.is_some() {
                let req = xensim::SchedParams {
                    weight: weight.unwrap_or(0),
                    cap: cap.unwrap_or(match sched {
                        xensim::Scheduler::Credit => u16::MAX,
                        xensim::Scheduler::Credit2 => p.cap,
                    }),
                };
                p = h.sched_putinfo(domid, sched.id(), req)?;
            }
            let events = if history {
                h.domain(domid)?.sched_history()?
            } else {
                Vec::new()
            };
            if json {
                // Every field is a number or a fixed name: no escaping needed.
                let ev: Vec<String> = events
                    .iter()
                    .map(|e| {
                        format!(
                            "{{\"time_ns\":{},\"scheduler\":\"{}\",\"weight\":{},\"cap\":{}}}",
                            e.time_ns, e.scheduler, e.params.weight, e.params.cap
                        )
                    })
                    .collect();
                let hist = if history {
                    format!(",\"history\":[{}]", ev.join(","))
                } else {
                    String::new()
                };
                println!(
                    "{{\"domid\":{domid},\"scheduler\":\"{sched}\",\"weight\":{},\"cap\":{}{hist}}}",
                    p.weight, p.cap
                );
            } else {
                println!("scheduler {sched}\nweight {}\ncap {}", p.weight, p.cap);
                for e in &events {
                    println!("{}", e.to_line());
                }
            }
        }
        Cmd::Fault(FaultCmd::List { host }) => {
            for r in host.open()?.faults()? {
                println!("{}", r.to_spec());
            }
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "xensim", &mut std::io::stdout());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xensim: error: {e}");
            ExitCode::FAILURE
        }
    }
}
