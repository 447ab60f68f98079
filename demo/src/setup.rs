//! Setting the stage: the built pieces, the two host directories and the
//! log directory, the opening lines, and the two domains (the filled source
//! guest and the empty destination).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::display::{secs, size_label, Screen};
use crate::procs::{last_line, run_to_end};
use crate::transport::Transport;
use crate::{netns, sys, Args, Engine, SYSTEM_XEN_LIBDIR};

/// The built pieces the demo runs.
pub struct Pieces {
    pub xensim: PathBuf,
    pub shim_dir: PathBuf,
    pub libxcmig: PathBuf,
    pub xg_save: PathBuf,
    pub xg_restore: PathBuf,
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

    /// The harnesses' library path: the simulated Xen libraries first.
    pub fn ld_library_path(&self) -> String {
        format!("{}:{SYSTEM_XEN_LIBDIR}", self.shim_dir.display())
    }
}

/// The run directory, removed on drop unless kept.
pub struct WorkDir {
    pub path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What the later phases need from the set-up. Dropping it removes the
/// run directory (unless `--keep`), so it must outlive the children.
pub struct Setup {
    /// When the whole run gives up (`--timeout`).
    pub deadline: Instant,
    pub pieces: Pieces,
    pub work: WorkDir,
    pub src_host: PathBuf,
    pub dst_host: PathBuf,
    /// The children's logs (absolute).
    pub logs: PathBuf,
    /// `--working-set` in bytes.
    pub working_set: u64,
    pub save_engine: Engine,
    pub restore_engine: Engine,
    /// The source guest's domid on the source host.
    pub src: u32,
    /// The empty destination domain's domid on the destination host.
    pub dst: u32,
}

impl Setup {
    /// `xensim domain ...` on `host`, without inherited fault rules.
    pub fn xensim(&self, host: &Path) -> Command {
        xensim_domain(&self.pieces, host)
    }
}

fn xensim_domain(pieces: &Pieces, host: &Path) -> Command {
    let mut c = Command::new(&pieces.xensim);
    c.arg("domain")
        .env_remove("XENSIM_FAULTS")
        .env("XENSIM_HOST", host);
    c
}

/// Parses a xensim SIZE (for the free-space estimate and the display).
pub fn parse_size(s: &str) -> Result<u64, String> {
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

/// Locates the pieces, makes the directories, prints the opening lines
/// and creates the two domains.
pub fn prepare(args: &Args, screen: &mut Screen) -> Result<Setup, String> {
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

    let (src, dst) = create_domains(args, &pieces, &src_host, &dst_host, deadline, screen)?;
    Ok(Setup {
        deadline,
        pieces,
        work,
        src_host,
        dst_host,
        logs,
        working_set,
        save_engine,
        restore_engine,
        src,
        dst,
    })
}

/// The two hosts' domains: the source guest, filled, and the empty,
/// paused destination. Returns their domids.
fn create_domains(
    args: &Args,
    pieces: &Pieces,
    src_host: &Path,
    dst_host: &Path,
    deadline: Instant,
    screen: &mut Screen,
) -> Result<(u32, u32), String> {
    let t = Instant::now();
    let seed = args.seed.to_string();
    let fill = ["--fill", "mixed", "--seed", &seed];
    let src = create_domain(args, pieces, src_host, &fill, "the source guest", deadline)?;
    screen.line(&format!(
        "  source         domain {src} on the source host, memory filled (mixed) in {}",
        secs(t.elapsed())
    ));
    let empty = ["--empty"];
    let dst = create_domain(
        args,
        pieces,
        dst_host,
        &empty,
        "the destination domain",
        deadline,
    )?;
    screen.line(&format!(
        "  destination    domain {dst} on the destination host, empty and paused"
    ));
    Ok((src, dst))
}

/// `xensim domain create` of the guest's type, memory and vCPUs with
/// `contents` (the fill, or `--empty`) on `host`; returns the domid.
fn create_domain(
    args: &Args,
    pieces: &Pieces,
    host: &Path,
    contents: &[&str],
    what: &str,
    deadline: Instant,
) -> Result<u32, String> {
    let vcpus = args.vcpus.to_string();
    let mut cmd = xensim_domain(pieces, host);
    cmd.args([
        "create",
        "--type",
        args.guest_type.name(),
        "--memory",
        &args.memory,
        "--vcpus",
        &vcpus,
    ])
    .args(contents);
    let out = run_to_end(&mut cmd, &format!("creating {what}"), deadline)?;
    last_line(&out)
        .parse()
        .map_err(|_| format!("xensim domain create printed no domid: {out:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
