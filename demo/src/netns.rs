//! Two network namespaces joined by a veth pair, for `--transport netns`:
//! one for the source host (where `xg-save` and the relay's sending socket
//! live) and one for the destination host (where the listening socket and
//! `xg-restore` live), so that the stream crosses a real network device.
//!
//! Everything is made with iproute2's `ip`, as an administrator would:
//! `ip netns add`, a veth pair created straight into the two namespaces
//! (the host's own namespace never sees it), loopback up in each, and one
//! link-local address per end (169.254.77.1 and .2 in a /30). Nothing is
//! routed anywhere else. IPv6 address generation is off on the veth ends,
//! so that the device counters show the migration and little else.
//!
//! Names carry the demo's pid (`xcmig-demo-<pid>-src`, `-dst`; veth ends
//! `xcmd<pid>s`, `xcmd<pid>d`), so concurrent runs never collide. The pair
//! deletes its namespaces when dropped, on success and on every error
//! path. A demo killed outright (SIGKILL) cannot clean up; the next netns
//! run removes such leftovers (names whose pid no longer exists).

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;

/// Where `ip netns add` publishes namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Prefix of the namespaces the demo creates.
const NAME_PREFIX: &str = "xcmig-demo-";
/// The source end's address (link-local: valid on this link only).
pub const ADDR_SRC: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);
/// The destination end's address.
pub const ADDR_DST: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 2);
/// A /30: the two ends and nothing else.
const PREFIX_LEN: u8 = 30;

/// One network namespace, held open so that children can be started in it
/// and sockets created in it.
pub struct Netns {
    /// Its name (`ip netns list`).
    pub name: String,
    file: File,
}

impl Netns {
    /// The open namespace file, for [`sys::run_in_netns`].
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// True when process `pid` is in this namespace.
    pub fn holds(&self, pid: u32) -> bool {
        let (Ok(ours), Ok(theirs)) = (
            self.file.metadata(),
            std::fs::metadata(format!("/proc/{pid}/ns/net")),
        ) else {
            return false;
        };
        ours.dev() == theirs.dev() && ours.ino() == theirs.ino()
    }

    /// Runs `f` on a thread that has entered this namespace (the sockets
    /// it creates stay in the namespace).
    fn run<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        let fd = self.file.as_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                sys::enter_netns_this_thread(fd)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        })
    }
}

/// Octets a veth end has sent and received (its kernel counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Received.
    pub rx_bytes: u64,
    /// Sent.
    pub tx_bytes: u64,
}

/// The two namespaces and the veth between them; deleted on drop.
pub struct NetnsPair {
    /// The source host's namespace.
    pub src: Netns,
    /// The destination host's namespace.
    pub dst: Netns,
    /// The veth end in `src`.
    pub veth_src: String,
    /// The veth end in `dst`.
    pub veth_dst: String,
    _cleanup: Cleanup,
}

/// Deletes the namespaces it lists when dropped (the veth goes with them).
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("xcmig-demo: warning: could not delete network namespace {name}: {e}");
            }
        }
    }
}

/// Runs `ip ARGS`; its stdout, or an error with its stderr.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run iproute2's `ip` ({e}); install iproute2"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The effective uid, from /proc/self/status.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// An error unless this process runs as root, which creating namespaces
/// and a veth pair needs.
pub fn require_root() -> Result<(), String> {
    match effective_uid() {
        Some(0) => Ok(()),
        uid => Err(format!(
            "--transport netns creates network namespaces and a veth pair with ip(8), \
             which needs root (effective uid {})",
            uid.map_or("unknown".to_string(), |u| u.to_string())
        )),
    }
}

/// The pid in a namespace name the demo made (`xcmig-demo-<pid>-src|dst`).
fn pid_of_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let pid = rest
        .strip_suffix("-src")
        .or_else(|| rest.strip_suffix("-dst"))?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// True while process `pid` exists (its namespaces are then left alone,
/// even if the pid now belongs to another program: better a leftover than
/// a live run's namespace deleted).
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes namespaces left by demos that were killed outright. Returns the
/// names removed.
pub fn sweep_leftovers() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut removed = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = pid_of_name(&name) else {
            continue;
        };
        // Our own pid here can only be a leftover of an earlier process
        // that had it: this one has not created its namespaces yet.
        if (pid == me || !process_exists(pid)) && ip(&["netns", "del", &name]).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// Reads a veth end's counters from `ip -json -statistics link show`.
pub fn parse_counters(json: &str) -> Result<Counters, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("ip's JSON output: {e}"))?;
    let stats = &v[0]["stats64"];
    let get = |dir: &str| {
        stats[dir]["bytes"]
            .as_u64()
            .ok_or_else(|| format!("no stats64.{dir}.bytes in ip's output: {json}"))
    };
    Ok(Counters {
        rx_bytes: get("rx")?,
        tx_bytes: get("tx")?,
    })
}

impl NetnsPair {
    /// Creates the namespaces `xcmig-demo-<tag>-src|dst` and the veth
    /// pair between them, addressed and up.
    pub fn create(tag: u32) -> Result<NetnsPair, String> {
        require_root()?;
        sweep_leftovers();
        let src_name = format!("{NAME_PREFIX}{tag}-src");
        let dst_name = format!("{NAME_PREFIX}{tag}-dst");
        let veth_src = format!("xcmd{tag}s");
        let veth_dst = format!("xcmd{tag}d");
        let mut cleanup = Cleanup(Vec::new());
        for name in [&src_name, &dst_name] {
            ip(&["netns", "add", name])?;
            cleanup.0.push(name.clone());
        }
        ip(&[
            "link", "add", &veth_src, "netns", &src_name, "type", "veth", "peer", "name",
            &veth_dst, "netns", &dst_name,
        ])?;
        for (ns, dev, addr) in [
            (&src_name, &veth_src, ADDR_SRC),
            (&dst_name, &veth_dst, ADDR_DST),
        ] {
            let cidr = format!("{addr}/{PREFIX_LEN}");
            ip(&["-n", ns, "link", "set", "dev", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", "dev", dev, "addrgenmode", "none"])?;
            ip(&["-n", ns, "address", "add", &cidr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", "dev", dev, "up"])?;
        }
        let open = |name: &str| -> Result<Netns, String> {
            let path = Path::new(NETNS_DIR).join(name);
            let file =
                File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            Ok(Netns {
                name: name.to_string(),
                file,
            })
        };
        Ok(NetnsPair {
            src: open(&src_name)?,
            dst: open(&dst_name)?,
            veth_src,
            veth_dst,
            _cleanup: cleanup,
        })
    }

    /// Opens a TCP connection from the source namespace to a listener on
    /// the destination's veth address. Returns the sending socket (in
    /// `src`), the accepted one (in `dst`) and the listening address.
    pub fn connect(&self) -> io::Result<(TcpStream, TcpStream, SocketAddr)> {
        let listener = self
            .dst
            .run(|| TcpListener::bind(SocketAddrV4::new(ADDR_DST, 0)))?;
        let addr = listener.local_addr()?;
        let sender = self.src.run(|| {
            // The veth reports carrier as soon as both ends are up; allow
            // a moment anyway on a loaded machine.
            let until = Instant::now() + Duration::from_secs(3);
            loop {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(s) => return Ok(s),
                    Err(e) if Instant::now() >= until => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })?;
        let (receiver, peer) = listener.accept()?;
        if peer.ip() != ADDR_SRC {
            return Err(io::Error::other(format!(
                "the connection came from {peer}, not from the source namespace's {ADDR_SRC}"
            )));
        }
        Ok((sender, receiver, addr))
    }

    /// The counters of the source's veth end and of the destination's.
    pub fn counters(&self) -> Result<(Counters, Counters), String> {
        let read = |ns: &Netns, dev: &str| {
            parse_counters(&ip(&[
                "-n",
                &ns.name,
                "-json",
                "-statistics",
                "link",
                "show",
                "dev",
                dev,
            ])?)
        };
        Ok((
            read(&self.src, &self.veth_src)?,
            read(&self.dst, &self.veth_dst)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn names_of_demo_namespaces_yield_their_pid() {
        assert_eq!(pid_of_name("xcmig-demo-1234-src"), Some(1234));
        assert_eq!(pid_of_name("xcmig-demo-7-dst"), Some(7));
        assert_eq!(pid_of_name("xcmig-demo--src"), None);
        assert_eq!(pid_of_name("xcmig-demo-12a-src"), None);
        assert_eq!(pid_of_name("xcmig-demo-12-mid"), None);
        assert_eq!(pid_of_name("other-12-src"), None);
    }

    #[test]
    fn veth_counters_come_from_ip_json() {
        let json = r#"[{"ifindex":2,"ifname":"xcmd1s","stats64":{"rx":{"bytes":70,"packets":1},"tx":{"bytes":123456789,"packets":9}}}]"#;
        assert_eq!(
            parse_counters(json),
            Ok(Counters {
                rx_bytes: 70,
                tx_bytes: 123_456_789
            })
        );
        assert!(parse_counters("[]").is_err());
        assert!(parse_counters("not json").is_err());
    }

    /// Needs root, as the demo's netns mode does (CI runs as root): a
    /// missing permission fails the test rather than skipping it.
    #[test]
    fn pair_carries_tcp_over_the_veth_and_is_deleted_on_drop() {
        // This process's pid: no demo has it while it runs.
        let tag = std::process::id();
        let pair = NetnsPair::create(tag).expect("create the namespaces (root needed)");
        let names = [pair.src.name.clone(), pair.dst.name.clone()];
        for n in &names {
            assert!(Path::new(NETNS_DIR).join(n).exists(), "{n}");
        }
        let (before_src, before_dst) = pair.counters().unwrap();
        let (mut tx, rx, addr) = pair.connect().unwrap();
        assert_eq!(addr.ip(), ADDR_DST);
        let payload = vec![0x5au8; 1 << 20];
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::from(std::os::fd::OwnedFd::from(rx))
                .read_to_end(&mut got)
                .map(|_| got.len())
        });
        tx.write_all(&payload).unwrap();
        tx.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), payload.len());
        let (after_src, after_dst) = pair.counters().unwrap();
        let sent = after_src.tx_bytes - before_src.tx_bytes;
        let arrived = after_dst.rx_bytes - before_dst.rx_bytes;
        assert!(sent >= payload.len() as u64, "veth sent only {sent} octets");
        assert!(
            arrived >= payload.len() as u64,
            "veth received only {arrived}"
        );
        drop(tx);
        drop(pair);
        for n in &names {
            assert!(!Path::new(NETNS_DIR).join(n).exists(), "{n} left behind");
        }
    }
}
