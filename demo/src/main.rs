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
mod launch;
mod meter;
mod netns;
mod procs;
mod report;
mod setup;
mod sys;
mod transport;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;

use display::Screen;
use transport::Transport;

/// Where Debian installs the real Xen libraries (libxenguest, libxentoollog).
const SYSTEM_XEN_LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

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

/// The demo in its four phases: set the stage, launch the migration,
/// watch it, report on it. `setup` outlives the others (it holds the run
/// directory), `launched` the watch (it holds the children and the link).
fn run(args: &Args) -> Result<(), String> {
    let tty = !args.plain && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut screen = Screen::new(tty);
    let setup = setup::prepare(args, &mut screen)?;
    let mut launched = launch::start(args, &setup, &mut screen)?;
    let watched = watch::watch(args, &setup, &mut launched, &mut screen)?;
    report::report(args, &setup, launched, watched, &mut screen)
}
