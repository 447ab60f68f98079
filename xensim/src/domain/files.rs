//! A domain's on-disk layout: the file names in `DIR/domains/<domid>/`, the
//! word indices of the shared `ctl` file, and the `config` text.

use crate::error::{Error, Result};
use crate::{DomainConfig, Fill, GuestType, P2mLayout, GFN_LIMIT};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

pub(crate) const F_CONFIG: &str = "config";
pub(crate) const F_CTL: &str = "ctl";
pub(crate) const F_POPULATED: &str = "populated";
pub(crate) const F_DIRTY: &str = "dirty";
pub(crate) const F_MEM: &str = "mem";
pub(crate) const F_GRANT: &str = "grant";
pub(crate) const F_LOCK: &str = "lock";
pub(crate) const F_PARAMS: &str = "params";
pub(crate) const F_HVMCTX: &str = "hvmctx";
pub(crate) const F_TSC: &str = "tsc";
pub(crate) const F_CPU_POLICY: &str = "cpu_policy";
/// PV: bitmap of the frames of the domain's window it owns.
pub(crate) const F_FRAMES: &str = "frames";
/// PV: u64 per pfn, the MFN populate gave it (valid where `populated`).
pub(crate) const F_PHYSMAP: &str = "physmap";
/// PV: one page-type byte per frame of the window.
pub(crate) const F_TYPES: &str = "types";
/// PV: the shared_info page (a xenheap frame).
pub(crate) const F_SHINFO: &str = "shinfo";
/// PV: per-vCPU state (contexts, extended context, xsave, MSRs).
pub(crate) const F_VCPUS: &str = "vcpus";
/// Every scheduler parameter change, one line each (`sched::SchedEvent`).
pub(crate) const F_SCHED_HISTORY: &str = "sched-history";

pub(crate) const CTL_SIZE: usize = 4096;
pub(crate) const BITMAP_BYTES: usize = (GFN_LIMIT / 8) as usize;
pub(crate) const CTL_MAGIC: u64 = u64::from_le_bytes(*b"XSIMCTL1");

/// Word indices in the `ctl` file.
pub(crate) mod w {
    pub const MAGIC: usize = 0;
    /// 0 alive, 1 dying (being destroyed).
    pub const DYING: usize = 1;
    /// 0 none, else shutdown reason + 1 (is_shutting_down).
    pub const SHUTDOWN_CODE: usize = 2;
    /// 1 once the vCPUs stopped for the shutdown (is_shut_down).
    pub const SHUT_DOWN: usize = 3;
    pub const PAUSE_COUNT: usize = 4;
    pub const CREATION_FINISHED: usize = 5;
    pub const LOGDIRTY_ENABLED: usize = 6;
    pub const DIRTY_COUNT: usize = 7;
    pub const FAULT_COUNT: usize = 8;
    pub const TOT_PAGES: usize = 9;
    pub const MAX_GPFN: usize = 10;
    /// Workload threads currently inside a guest write.
    pub const VCPU_ACTIVE: usize = 11;
    pub const CPU_TIME_NS: usize = 12;
    pub const PAGES_WRITTEN: usize = 13;
    /// vCPU online mask, two words (128 vCPUs).
    pub const ONLINE: usize = 14;
    /// PV guest width in bits (0 means 64).
    pub const ADDRESS_SIZE: usize = 16;
    /// PV guest state flags (`pvguest::GS_*`).
    pub const GUEST_STATE: usize = 17;
    /// PV frame allocations so far (seeds the random choice of MFNs).
    pub const ALLOC_COUNT: usize = 18;
    /// Highest pfn ever populated, plus one (PV; 0 = none).
    pub const PFN_END: usize = 19;
    /// Process id of the last workload to enter a guest write (0: none), so
    /// that a pause can tell a slow writer from a dead one.
    pub const WRITER_PID: usize = 20;
    /// Scheduler parameters (`sched::SchedParams::to_word`; 0 = defaults).
    pub const SCHED: usize = 21;
}

/// Immutable facts about a domain, kept in its `config` file.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) cfg: DomainConfig,
    pub(crate) max_pages: u64,
    pub(crate) handle: [u8; 16],
    pub(crate) frame_base: u64,
}

impl Config {
    pub(crate) fn to_text(&self) -> String {
        let c = &self.cfg;
        let handle: String = self.handle.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "type={}\nmemory={}\nvcpus={}\nfill={}\nseed={}\nempty={}\nmax_pages={}\nhandle={}\nframe_base={}\naddress_size={}\np2m={}\n",
            c.guest_type.as_str(),
            c.memory_bytes,
            c.vcpus,
            c.fill.as_str(),
            c.seed,
            u8::from(c.empty),
            self.max_pages,
            handle,
            self.frame_base,
            c.address_size,
            c.p2m_layout.as_str()
        )
    }

    pub(crate) fn parse(text: &str) -> Result<Config> {
        let bad = |what: &str| Error::new(libc::EIO, format!("corrupt domain config: {what}"));
        let get = |k: &str| -> Result<&str> {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .ok_or_else(|| bad(k))
        };
        let num = |k: &str| -> Result<u64> { get(k)?.parse().map_err(|_| bad(k)) };
        let hs = get("handle")?;
        let mut handle = [0u8; 16];
        if hs.len() != 32 || !hs.is_ascii() {
            return Err(bad("handle"));
        }
        for (i, b) in handle.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hs[2 * i..2 * i + 2], 16).map_err(|_| bad("handle"))?;
        }
        Ok(Config {
            cfg: DomainConfig {
                guest_type: GuestType::parse(get("type")?).ok_or_else(|| bad("type"))?,
                memory_bytes: num("memory")?,
                vcpus: u32::try_from(num("vcpus")?).map_err(|_| bad("vcpus"))?,
                fill: Fill::parse(get("fill")?).ok_or_else(|| bad("fill"))?,
                seed: num("seed")?,
                empty: num("empty")? != 0,
                address_size: u32::try_from(num("address_size").unwrap_or(64))
                    .map_err(|_| bad("address_size"))?,
                p2m_layout: match get("p2m") {
                    Ok(v) => P2mLayout::parse(v).ok_or_else(|| bad("p2m"))?,
                    Err(_) => P2mLayout::Linear,
                },
            },
            max_pages: num("max_pages")?,
            handle,
            frame_base: num("frame_base")?,
        })
    }
}

/// Open an existing domain file for reading and writing.
pub(super) fn open_rw(p: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .map_err(|e| Error::io(p.display(), e))
}

/// Write `data` to `path` via a temporary file and rename, so readers see
/// either the old or the new contents.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = File::create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
    f.write_all(data).map_err(|e| Error::io(tmp.display(), e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e))
}
