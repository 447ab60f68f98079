//! One simulated domain: files in `DIR/domains/<domid>/`, shared by every
//! process that opens the host.
//!
//! Hot state (flags, counters, bitmaps) lives in `MAP_SHARED` files accessed
//! with atomics; the rest (params, HVM context, TSC, CPU policy) in small
//! files replaced by atomic rename while holding the domain's `lock` flock.

use crate::cpupolicy::CpuPolicy;
use crate::error::{err, Error, Result};
use crate::foreign::{ForeignMapping, Prot};
use crate::hvmctx::Records;
use crate::params;
use crate::shm::{punch_hole, FileLock, SharedMap};
use crate::{DomId, DomainConfig, Fill, GuestType, GFN_LIMIT, MAX_PFINFO_BATCH, PAGE_SIZE};
use crate::{INVALID_FRAME, PFINFO_NOTAB, PFINFO_XTAB, SHUTDOWN_SOFT_RESET};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
}

/// Snapshot of a domain, as `XEN_DOMCTL_getdomaininfo` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    /// Domain id.
    pub domid: DomId,
    /// Guest type.
    pub guest_type: GuestType,
    /// `XEN_DOMINF_hvm_guest` (HVM and PVH).
    pub hvm: bool,
    /// `XEN_DOMINF_hap` (HVM and PVH).
    pub hap: bool,
    /// `XEN_DOMINF_dying`.
    pub dying: bool,
    /// `XEN_DOMINF_shutdown`: shut down and vCPUs stopped.
    pub shutdown: bool,
    /// A shutdown was requested (may not have completed yet).
    pub shutting_down: bool,
    /// Shutdown code (`SHUTDOWN_*`), 0xff when none was ever requested (as
    /// Xen's 8-bit field shows `SHUTDOWN_CODE_INVALID`).
    pub shutdown_reason: u32,
    /// `XEN_DOMINF_paused`: controller pause count > 0.
    pub paused: bool,
    /// `XEN_DOMINF_running`: online vCPUs, not paused, not shut down.
    pub running: bool,
    /// `XEN_DOMINF_blocked`: online vCPUs that are not running.
    pub blocked: bool,
    /// Controller pause count.
    pub pause_count: u32,
    /// Set at the first unpause; gates `set_cpu_policy`.
    pub creation_finished: bool,
    /// Highest vCPU id.
    pub max_vcpu_id: u32,
    /// vCPUs up (not `VPF_down`).
    pub nr_online_vcpus: u32,
    /// Pages allocated to the domain.
    pub tot_pages: u64,
    /// Allocation limit.
    pub max_pages: u64,
    /// `shared_info_frame`: `u64::MAX` (INVALID_M2P_ENTRY) for HVM/PVH, whose
    /// shared info is not mapped in the p2m.
    pub shared_info_frame: u64,
    /// CPU time the workload spent running the guest.
    pub cpu_time_ns: u64,
    /// The domain handle (UUID).
    pub handle: [u8; 16],
    /// First machine frame of the domain's window in the host frame space.
    pub frame_base: u64,
}

/// Log-dirty read operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDirtyOp {
    /// `XEN_DOMCTL_SHADOW_OP_CLEAN`: read, then clear bitmap and counters.
    Clean,
    /// `XEN_DOMCTL_SHADOW_OP_PEEK`: read only.
    Peek,
}

/// Log-dirty statistics (`xen_domctl_shadow_op_stats`), before any clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirtyStats {
    /// Tracked write faults since the last clean.
    pub fault_count: u32,
    /// Pages newly dirtied since the last clean.
    pub dirty_count: u32,
}

/// TSC settings (`XEN_DOMCTL_gettscinfo` / `settscinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TscInfo {
    /// 0 default, 1 always emulate, 2 never emulate.
    pub mode: u32,
    /// Guest time elapsed, ns.
    pub elapsed_nsec: u64,
    /// Guest TSC frequency, kHz.
    pub gtsc_khz: u32,
    /// Incarnation (bumped by every set).
    pub incarnation: u32,
}

impl TscInfo {
    pub(crate) fn to_bytes(self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&self.mode.to_le_bytes());
        b[4..8].copy_from_slice(&self.gtsc_khz.to_le_bytes());
        b[8..16].copy_from_slice(&self.elapsed_nsec.to_le_bytes());
        b[16..20].copy_from_slice(&self.incarnation.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() != 24 {
            return err(libc::EIO, "corrupt tsc state file");
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut n = [0u8; 8];
        n.copy_from_slice(&b[8..16]);
        Ok(TscInfo {
            mode: u32_at(0),
            gtsc_khz: u32_at(4),
            elapsed_nsec: u64::from_le_bytes(n),
            incarnation: u32_at(16),
        })
    }
}

/// Host TSC frequency, used when a domain sets gtsc_khz 0.
pub(crate) const HOST_TSC_KHZ: u32 = 2_000_000;

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
            "type={}\nmemory={}\nvcpus={}\nfill={}\nseed={}\nempty={}\nmax_pages={}\nhandle={}\nframe_base={}\n",
            c.guest_type.as_str(),
            c.memory_bytes,
            c.vcpus,
            c.fill.as_str(),
            c.seed,
            u8::from(c.empty),
            self.max_pages,
            handle,
            self.frame_base
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
            },
            max_pages: num("max_pages")?,
            handle,
            frame_base: num("frame_base")?,
        })
    }
}

/// An open domain. Cheap to clone and keep: clones share one set of
/// mappings, and every method sees the latest shared state.
#[derive(Clone)]
pub struct Domain {
    i: Arc<Inner>,
}

struct Inner {
    id: DomId,
    dir: PathBuf,
    conf: Config,
    ctl: SharedMap,
    populated: SharedMap,
    dirty: SharedMap,
    mem: File,
    grant: File,
    lock: File,
}

fn open_rw(p: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .map_err(|e| Error::io(p.display(), e))
}

impl Domain {
    /// Open the domain stored in `dir`.
    pub(crate) fn open_dir(id: DomId, dir: &Path) -> Result<Domain> {
        let text = std::fs::read_to_string(dir.join(F_CONFIG)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(libc::ESRCH, format!("no domain {id}"))
            } else {
                Error::io(dir.join(F_CONFIG).display(), e)
            }
        })?;
        let conf = Config::parse(&text)?;
        let ctl = SharedMap::map(&open_rw(&dir.join(F_CTL))?, CTL_SIZE, "ctl")?;
        if ctl.words()[w::MAGIC].load(SeqCst) != CTL_MAGIC {
            return err(libc::EIO, format!("domain {id}: bad ctl file"));
        }
        let populated = SharedMap::map(
            &open_rw(&dir.join(F_POPULATED))?,
            BITMAP_BYTES,
            "populated bitmap",
        )?;
        let dirty = SharedMap::map(&open_rw(&dir.join(F_DIRTY))?, BITMAP_BYTES, "dirty bitmap")?;
        Ok(Domain {
            i: Arc::new(Inner {
                id,
                dir: dir.to_path_buf(),
                conf,
                ctl,
                populated,
                dirty,
                mem: open_rw(&dir.join(F_MEM))?,
                grant: open_rw(&dir.join(F_GRANT))?,
                lock: open_rw(&dir.join(F_LOCK))?,
            }),
        })
    }

    pub(crate) fn ctl(&self, i: usize) -> &AtomicU64 {
        &self.i.ctl.words()[i]
    }

    /// Domain id.
    pub fn id(&self) -> DomId {
        self.i.id
    }

    /// Guest type.
    pub fn guest_type(&self) -> GuestType {
        self.i.conf.cfg.guest_type
    }

    /// The configuration the domain was created with.
    pub fn config(&self) -> &DomainConfig {
        &self.i.conf.cfg
    }

    /// Number of vCPUs allocated (`max_vcpu_id + 1`).
    pub fn vcpus(&self) -> u32 {
        self.i.conf.cfg.vcpus
    }

    /// Directory holding the domain's files.
    pub fn dir(&self) -> &Path {
        &self.i.dir
    }

    /// True once the domain is being (or has been) destroyed.
    pub fn is_dying(&self) -> bool {
        self.ctl(w::DYING).load(SeqCst) != 0
    }

    fn require_alive(&self) -> Result<()> {
        if self.is_dying() {
            return err(libc::ESRCH, format!("domain {} is dying", self.i.id));
        }
        Ok(())
    }

    fn require_hvm(&self) -> Result<()> {
        if !self.guest_type().is_hvm() {
            return err(
                libc::EINVAL,
                format!("domain {} is not an HVM domain", self.i.id),
            );
        }
        Ok(())
    }

    /// Whether vCPU `v` is up.
    pub fn vcpu_online(&self, v: u32) -> bool {
        if v >= self.vcpus() || v >= 128 {
            return false;
        }
        let word = self.ctl(w::ONLINE + (v / 64) as usize).load(SeqCst);
        word & (1 << (v % 64)) != 0
    }

    pub(crate) fn set_online(&self, up: &[u16]) {
        let mut m = [0u64; 2];
        for &v in up {
            if u32::from(v) < self.vcpus() && v < 128 {
                m[usize::from(v / 64)] |= 1 << (v % 64);
            }
        }
        self.ctl(w::ONLINE).store(m[0], SeqCst);
        self.ctl(w::ONLINE + 1).store(m[1], SeqCst);
    }

    /// getdomaininfo.
    pub fn info(&self) -> Result<DomainInfo> {
        let code = self.ctl(w::SHUTDOWN_CODE).load(SeqCst);
        let shut = self.ctl(w::SHUT_DOWN).load(SeqCst) != 0;
        let pause = self.ctl(w::PAUSE_COUNT).load(SeqCst);
        let online = (0..self.vcpus()).filter(|&v| self.vcpu_online(v)).count() as u32;
        let running = online > 0 && pause == 0 && !shut && !self.is_dying();
        Ok(DomainInfo {
            domid: self.i.id,
            guest_type: self.guest_type(),
            hvm: self.guest_type().is_hvm(),
            hap: self.guest_type().is_hvm(),
            dying: self.is_dying(),
            shutdown: shut,
            shutting_down: code != 0,
            shutdown_reason: if code == 0 { 0xff } else { (code - 1) as u32 },
            paused: pause > 0,
            running,
            blocked: online > 0 && !running,
            pause_count: pause as u32,
            creation_finished: self.ctl(w::CREATION_FINISHED).load(SeqCst) != 0,
            max_vcpu_id: self.vcpus() - 1,
            nr_online_vcpus: online,
            tot_pages: self.ctl(w::TOT_PAGES).load(SeqCst),
            max_pages: self.i.conf.max_pages,
            shared_info_frame: u64::MAX,
            cpu_time_ns: self.ctl(w::CPU_TIME_NS).load(SeqCst),
            handle: self.i.conf.handle,
            frame_base: self.i.conf.frame_base,
        })
    }

    /// Wait until no workload thread is inside a guest write, like Xen
    /// waiting for vCPUs to be descheduled. A workload killed mid-write would
    /// leave the counter raised; after 5 s it is considered gone.
    fn quiesce(&self) {
        let start = Instant::now();
        while self.ctl(w::VCPU_ACTIVE).load(SeqCst) != 0 {
            if start.elapsed() > Duration::from_secs(5) {
                self.ctl(w::VCPU_ACTIVE).store(0, SeqCst);
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Controller pause (`xc_domain_pause`): counts, and returns once the
    /// guest's workload has stopped writing.
    pub fn pause(&self) -> Result<()> {
        self.require_alive()?;
        self.ctl(w::PAUSE_COUNT).fetch_add(1, SeqCst);
        self.quiesce();
        Ok(())
    }

    /// Controller unpause; EINVAL if not paused. The first unpause that
    /// reaches zero sets `creation_finished`.
    pub fn unpause(&self) -> Result<()> {
        self.require_alive()?;
        let c = self.ctl(w::PAUSE_COUNT);
        let mut cur = c.load(SeqCst);
        loop {
            if cur == 0 {
                return err(libc::EINVAL, format!("domain {} is not paused", self.i.id));
            }
            match c.compare_exchange(cur, cur - 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            self.ctl(w::CREATION_FINISHED).store(1, SeqCst);
        }
        Ok(())
    }

    /// Remote shutdown (`xc_domain_shutdown`). The first reason wins, as in
    /// Xen; the domain counts as shut down once its workload has stopped.
    /// [`crate::SHUTDOWN_SUSPEND`] is what a saving toolstack uses.
    pub fn shutdown(&self, reason: u32) -> Result<()> {
        self.require_alive()?;
        if reason > SHUTDOWN_SOFT_RESET {
            return err(libc::EINVAL, format!("bad shutdown reason {reason}"));
        }
        let _ =
            self.ctl(w::SHUTDOWN_CODE)
                .compare_exchange(0, u64::from(reason) + 1, SeqCst, SeqCst);
        self.quiesce();
        self.ctl(w::SHUT_DOWN).store(1, SeqCst);
        Ok(())
    }

    /// `XEN_DOMCTL_resumedomain`: clear the shutdown so the guest runs again.
    pub fn resume(&self) -> Result<()> {
        self.require_alive()?;
        self.ctl(w::SHUT_DOWN).store(0, SeqCst);
        self.ctl(w::SHUTDOWN_CODE).store(0, SeqCst);
        Ok(())
    }

    /// True while the guest may not run (shutting down, paused or dying).
    pub fn guest_stopped(&self) -> bool {
        self.ctl(w::SHUTDOWN_CODE).load(SeqCst) != 0
            || self.ctl(w::PAUSE_COUNT).load(SeqCst) != 0
            || self.is_dying()
    }

    /// Enter a guest write; false if the guest is stopped. Pairs with
    /// [`Domain::guest_exit`]. Dekker-style with `pause`/`shutdown`: either
    /// this sees the stop flag or the stopper waits for the write to end.
    pub(crate) fn guest_enter(&self) -> bool {
        self.ctl(w::VCPU_ACTIVE).fetch_add(1, SeqCst);
        if self.guest_stopped() {
            self.ctl(w::VCPU_ACTIVE).fetch_sub(1, SeqCst);
            return false;
        }
        true
    }

    pub(crate) fn guest_exit(&self) {
        self.ctl(w::VCPU_ACTIVE).fetch_sub(1, SeqCst);
    }

    // ---- memory ----------------------------------------------------------

    /// `XENMEM_maximum_gpfn`: the highest gfn ever populated (0 if none).
    pub fn max_gpfn(&self) -> u64 {
        self.ctl(w::MAX_GPFN).load(SeqCst)
    }

    /// Whether `gfn` currently has a page.
    pub fn is_populated(&self, gfn: u64) -> bool {
        gfn < GFN_LIMIT
            && self.i.populated.words()[(gfn / 64) as usize].load(SeqCst) & (1 << (gfn % 64)) != 0
    }

    pub(crate) fn populated_words(&self) -> &[AtomicU64] {
        self.i.populated.words()
    }

    pub(crate) fn mem_file(&self) -> &File {
        &self.i.mem
    }

    /// Mark `gfn` populated without touching contents (domain build).
    pub(crate) fn set_populated(&self, gfn: u64) -> bool {
        let bit = 1u64 << (gfn % 64);
        let old = self.i.populated.words()[(gfn / 64) as usize].fetch_or(bit, SeqCst);
        self.ctl(w::TOT_PAGES).fetch_add(1, SeqCst);
        self.ctl(w::MAX_GPFN).fetch_max(gfn, SeqCst);
        old & bit != 0
    }

    /// `getpageframeinfo3`: rewrite each frame with its `XEN_DOMCTL_PFINFO_*`
    /// type in place. HVM/PVH frames are gfns: NOTAB for populated RAM
    /// (special pages included), XTAB for holes, out-of-range and
    /// `INVALID_FRAME`. More than [`MAX_PFINFO_BATCH`] entries: E2BIG.
    pub fn page_types(&self, frames: &mut [u64]) -> Result<()> {
        self.require_alive()?;
        if frames.len() > MAX_PFINFO_BATCH {
            return err(
                libc::E2BIG,
                format!("{} frames in one type query (max 1024)", frames.len()),
            );
        }
        for f in frames.iter_mut() {
            *f = if *f != INVALID_FRAME && self.is_populated(*f) {
                PFINFO_NOTAB
            } else {
                PFINFO_XTAB
            };
        }
        Ok(())
    }

    /// `XENMEM_populate_physmap` (order 0): give each gfn a fresh, zeroed
    /// page and return the frames (the gfns themselves for HVM/PVH). A gfn
    /// that already has a page gets a new zero page; as in Xen the old page
    /// stays allocated to the domain (counted in tot_pages) until it dies.
    /// Stops at the first failure (ENOMEM over `max_pages`, EINVAL for a gfn
    /// outside the address space); earlier gfns stay populated.
    pub fn populate(&self, gfns: &[u64]) -> Result<Vec<u64>> {
        let (done, e) = self.populate_partial(gfns);
        match e {
            None => Ok(done),
            Some(e) => Err(e),
        }
    }

    /// Like [`Domain::populate`], returning what was done before a failure
    /// (what `XENMEM_populate_physmap` reports as its extent count).
    pub fn populate_partial(&self, gfns: &[u64]) -> (Vec<u64>, Option<Error>) {
        let mut done = Vec::with_capacity(gfns.len());
        if let Err(e) = self.require_alive() {
            return (done, Some(e));
        }
        for &g in gfns {
            if g >= GFN_LIMIT {
                let e = Error::new(
                    libc::EINVAL,
                    format!("gfn {g:#x} beyond the guest address space"),
                );
                return (done, Some(e));
            }
            if self.ctl(w::TOT_PAGES).load(SeqCst) >= self.i.conf.max_pages {
                let e = Error::new(
                    libc::ENOMEM,
                    format!(
                        "populate: domain {} at max_pages {}",
                        self.i.id, self.i.conf.max_pages
                    ),
                );
                return (done, Some(e));
            }
            if self.set_populated(g) {
                if let Err(e) = punch_hole(&self.i.mem, g * PAGE_SIZE, PAGE_SIZE) {
                    return (done, Some(e));
                }
            }
            done.push(g);
        }
        (done, None)
    }

    /// The file that holds guest memory; see [`Domain::frame_offset`].
    pub fn memory_file(&self) -> &File {
        &self.i.mem
    }

    /// Offset in [`Domain::memory_file`] of a populated frame (the value a
    /// toolstack maps: a gfn for HVM/PVH), or None for holes and invalid
    /// frames. Map it `MAP_SHARED` to access the page.
    pub fn frame_offset(&self, frame: u64) -> Option<u64> {
        (frame != INVALID_FRAME && self.is_populated(frame)).then(|| frame * PAGE_SIZE)
    }

    /// Foreign-map `frames` (one `mmap` per contiguous run). Unpopulated or
    /// invalid frames leave their slot unmapped with error `-EINVAL`.
    pub fn map_frames(&self, frames: &[u64], prot: Prot) -> Result<ForeignMapping> {
        self.require_alive()?;
        let offs: Vec<Option<u64>> = frames.iter().map(|&f| self.frame_offset(f)).collect();
        ForeignMapping::map(&self.i.mem, &offs, prot, libc::EINVAL)
    }

    /// Read a populated frame (toolstack access; no log-dirty effect).
    pub fn read_frame(&self, frame: u64, out: &mut [u8]) -> Result<()> {
        let off = self
            .frame_offset(frame)
            .ok_or_else(|| Error::new(libc::EINVAL, format!("frame {frame:#x} not populated")))?;
        let n = out.len().min(PAGE_SIZE as usize);
        self.i
            .mem
            .read_exact_at(&mut out[..n], off)
            .map_err(|e| Error::io("reading guest memory", e))
    }

    /// Write a populated frame (toolstack access: does NOT mark it dirty,
    /// as dom0's foreign writes don't go through the guest's log-dirty).
    pub fn write_frame(&self, frame: u64, data: &[u8]) -> Result<()> {
        let off = self
            .frame_offset(frame)
            .ok_or_else(|| Error::new(libc::EINVAL, format!("frame {frame:#x} not populated")))?;
        let n = data.len().min(PAGE_SIZE as usize);
        self.i
            .mem
            .write_all_at(&data[..n], off)
            .map_err(|e| Error::io("writing guest memory", e))
    }

    /// Zero `count` frames from `first` (`xc_clear_domain_pages`); EINVAL,
    /// with nothing changed, if any of them is not populated.
    pub fn clear_frames(&self, first: u64, count: u64) -> Result<()> {
        self.require_alive()?;
        let end = first
            .checked_add(count)
            .ok_or_else(|| Error::new(libc::EINVAL, "frame range overflows"))?;
        if let Some(f) = (first..end).find(|&f| !self.is_populated(f)) {
            return err(libc::EINVAL, format!("frame {f:#x} not populated"));
        }
        punch_hole(&self.i.mem, first * PAGE_SIZE, count * PAGE_SIZE)
    }

    // ---- log-dirty -------------------------------------------------------

    /// Whether log-dirty mode is on.
    pub fn logdirty_enabled(&self) -> bool {
        self.ctl(w::LOGDIRTY_ENABLED).load(SeqCst) != 0
    }

    fn clear_dirty_bitmap(&self) {
        let limit = (self.max_gpfn() / 64 + 1) as usize;
        for word in &self.i.dirty.words()[..limit.min(BITMAP_BYTES / 8)] {
            word.store(0, SeqCst);
        }
    }

    /// `SHADOW_OP_ENABLE_LOGDIRTY`: EINVAL if already enabled (Xen's answer,
    /// which libxenguest handles with OFF + ENABLE). Starts a clean bitmap.
    pub fn logdirty_enable(&self) -> Result<()> {
        self.require_alive()?;
        if self
            .ctl(w::LOGDIRTY_ENABLED)
            .compare_exchange(0, 1, SeqCst, SeqCst)
            .is_err()
        {
            return err(libc::EINVAL, "log-dirty already enabled");
        }
        self.clear_dirty_bitmap();
        self.ctl(w::DIRTY_COUNT).store(0, SeqCst);
        self.ctl(w::FAULT_COUNT).store(0, SeqCst);
        Ok(())
    }

    /// `SHADOW_OP_OFF`: always succeeds; drops the bitmap.
    pub fn logdirty_disable(&self) -> Result<()> {
        self.ctl(w::LOGDIRTY_ENABLED).store(0, SeqCst);
        self.clear_dirty_bitmap();
        Ok(())
    }

    /// `SHADOW_OP_CLEAN` / `PEEK` over the first `pages` pfns. Copies the
    /// bits LSB-first into `bitmap` (at least `ceil(pages/8)` bytes, else
    /// EFAULT) when given, returns the statistics from before the operation;
    /// CLEAN then zeroes those bits and the counters. With log-dirty off it
    /// reports zeros. `final_pass` is Xen's LOGDIRTY_FINAL mode: accepted; the
    /// simulator has no hypervisor-internal mappings to add.
    pub fn logdirty_op(
        &self,
        op: LogDirtyOp,
        bitmap: Option<&mut [u8]>,
        pages: u64,
        final_pass: bool,
    ) -> Result<DirtyStats> {
        let _ = final_pass;
        self.require_alive()?;
        let nbytes = pages.div_ceil(8) as usize;
        if let Some(b) = &bitmap {
            if b.len() < nbytes {
                return err(
                    libc::EFAULT,
                    format!("bitmap of {} bytes for {pages} pages", b.len()),
                );
            }
        }
        if !self.logdirty_enabled() {
            if let Some(b) = bitmap {
                b[..nbytes].fill(0);
            }
            return Ok(DirtyStats::default());
        }
        let cap = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let stats = match op {
            LogDirtyOp::Clean => DirtyStats {
                fault_count: cap(self.ctl(w::FAULT_COUNT).swap(0, SeqCst)),
                dirty_count: cap(self.ctl(w::DIRTY_COUNT).swap(0, SeqCst)),
            },
            LogDirtyOp::Peek => DirtyStats {
                fault_count: cap(self.ctl(w::FAULT_COUNT).load(SeqCst)),
                dirty_count: cap(self.ctl(w::DIRTY_COUNT).load(SeqCst)),
            },
        };
        let words = self.i.dirty.words();
        let covered = pages.min(GFN_LIMIT);
        let nwords = covered.div_ceil(64) as usize;
        let mut out = bitmap;
        for (i, word) in words.iter().enumerate().take(nwords) {
            let lo = i as u64 * 64;
            let mask = if covered - lo >= 64 {
                u64::MAX
            } else {
                (1u64 << (covered - lo)) - 1
            };
            let v = match op {
                LogDirtyOp::Clean if mask == u64::MAX => word.swap(0, SeqCst),
                LogDirtyOp::Clean => word.fetch_and(!mask, SeqCst) & mask,
                LogDirtyOp::Peek => word.load(SeqCst) & mask,
            };
            if let Some(b) = out.as_deref_mut() {
                let bytes = v.to_le_bytes();
                let start = i * 8;
                let end = (start + 8).min(nbytes);
                b[start..end].copy_from_slice(&bytes[..end - start]);
            }
        }
        if let Some(b) = out {
            let done = (nwords * 8).min(nbytes);
            b[done..nbytes].fill(0);
        }
        Ok(stats)
    }

    /// The guest's write path: mark `pfn` dirty if log-dirty is on and the
    /// pfn is populated. Counts a
    /// fault per call and a dirty page per newly set bit. Returns whether the
    /// bit was newly set.
    pub fn mark_dirty(&self, pfn: u64) -> bool {
        if !self.logdirty_enabled() || !self.is_populated(pfn) {
            return false;
        }
        let bit = 1u64 << (pfn % 64);
        let old = self.i.dirty.words()[(pfn / 64) as usize].fetch_or(bit, SeqCst);
        self.ctl(w::FAULT_COUNT).fetch_add(1, SeqCst);
        if old & bit == 0 {
            self.ctl(w::DIRTY_COUNT).fetch_add(1, SeqCst);
            true
        } else {
            false
        }
    }

    // ---- state files -----------------------------------------------------

    fn read_state(&self, name: &str) -> Result<Vec<u8>> {
        std::fs::read(self.i.dir.join(name)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && self.is_dying() {
                Error::new(libc::ESRCH, format!("domain {} was destroyed", self.i.id))
            } else {
                Error::io(self.i.dir.join(name).display(), e)
            }
        })
    }

    /// Replace a state file atomically. Callers hold the domain lock.
    pub(crate) fn write_state(&self, name: &str, data: &[u8]) -> Result<()> {
        write_atomic(&self.i.dir.join(name), data)
    }

    fn locked(&self) -> Result<FileLock<'_>> {
        FileLock::exclusive(&self.i.lock)
    }

    pub(crate) fn params_raw(&self) -> Result<Vec<u64>> {
        let b = self.read_state(F_PARAMS)?;
        if b.len() != params::HVM_NR_PARAMS as usize * 8 {
            return err(libc::EIO, "corrupt params file");
        }
        Ok(b.chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                u64::from_le_bytes(a)
            })
            .collect())
    }

    pub(crate) fn store_params(&self, p: &[u64]) -> Result<()> {
        let bytes: Vec<u8> = p.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.write_state(F_PARAMS, &bytes)
    }

    /// `HVMOP_get_param`.
    pub fn hvm_param(&self, idx: u32) -> Result<u64> {
        self.require_alive()?;
        self.require_hvm()?;
        params::get_value(idx, &self.params_raw()?)
    }

    /// `HVMOP_set_param`, with Xen's checks (see README).
    pub fn set_hvm_param(&self, idx: u32, value: u64) -> Result<()> {
        self.require_alive()?;
        self.require_hvm()?;
        let _g = self.locked()?;
        let mut p = self.params_raw()?;
        let (i, v) = params::apply_set(idx, &p, value)?;
        p[i] = v;
        self.store_params(&p)
    }

    pub(crate) fn records(&self) -> Result<Records> {
        Records::from_bytes(&self.read_state(F_HVMCTX)?)
    }

    /// `XEN_DOMCTL_gethvmcontext` with a buffer: the full blob (HEADER,
    /// records in ascending typecode order, END).
    pub fn hvm_context(&self) -> Result<Vec<u8>> {
        self.require_alive()?;
        self.require_hvm()?;
        let khz = self.tsc_info()?.gtsc_khz;
        Ok(self
            .records()?
            .render(khz, |v| self.vcpu_online(u32::from(v))))
    }

    /// `XEN_DOMCTL_gethvmcontext` without a buffer: an upper bound of the
    /// blob's size.
    pub fn hvm_context_size(&self) -> Result<usize> {
        self.require_alive()?;
        self.require_hvm()?;
        Ok(self.records()?.max_size())
    }

    /// `XEN_DOMCTL_sethvmcontext`: validate the chain like Xen's `hvm_load`
    /// (HEADER first with magic and version, else ENODATA/EINVAL; known
    /// typecodes; per-type lengths; vCPU instances in range; no emulated
    /// platform devices for PVH (ENODEV); END present, else ENODATA), then
    /// replace the records it carries. vCPUs without a CPU record go down.
    pub fn set_hvm_context(&self, blob: &[u8]) -> Result<()> {
        if self.is_dying() {
            return err(libc::EINVAL, "domain is dying");
        }
        self.require_hvm()?;
        let _g = self.locked()?;
        let (next, up, khz) = self
            .records()?
            .load(blob, self.guest_type(), self.vcpus())?;
        self.write_state(F_HVMCTX, &next.to_bytes())?;
        self.set_online(&up);
        if khz != 0 {
            let mut t = self.tsc_info()?;
            t.gtsc_khz = khz;
            self.write_state(F_TSC, &t.to_bytes())?;
        }
        Ok(())
    }

    /// `XEN_DOMCTL_gettscinfo`.
    pub fn tsc_info(&self) -> Result<TscInfo> {
        TscInfo::from_bytes(&self.read_state(F_TSC)?)
    }

    /// `XEN_DOMCTL_settscinfo`: mode must be 0..=2 (EINVAL), gtsc_khz 0 means
    /// the host's, and Xen stores `incarnation + 1`.
    pub fn set_tsc_info(&self, t: TscInfo) -> Result<()> {
        self.require_alive()?;
        if t.mode > 2 {
            return err(libc::EINVAL, format!("bad TSC mode {}", t.mode));
        }
        let _g = self.locked()?;
        let stored = TscInfo {
            mode: t.mode,
            elapsed_nsec: t.elapsed_nsec,
            gtsc_khz: if t.gtsc_khz == 0 {
                HOST_TSC_KHZ
            } else {
                t.gtsc_khz
            },
            incarnation: t.incarnation.wrapping_add(1),
        };
        self.write_state(F_TSC, &stored.to_bytes())
    }

    /// `XEN_DOMCTL_get_cpu_policy`.
    pub fn cpu_policy(&self) -> Result<CpuPolicy> {
        self.require_alive()?;
        let b = self.read_state(F_CPU_POLICY)?;
        if b.len() < 8 {
            return err(libc::EIO, "corrupt cpu policy file");
        }
        let nl = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let nm = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
        if b.len() != 8 + nl * 24 + nm * 16 {
            return err(libc::EIO, "corrupt cpu policy file");
        }
        CpuPolicy::from_bytes(&b[8..8 + nl * 24], &b[8 + nl * 24..])
    }

    pub(crate) fn store_cpu_policy(&self, p: &CpuPolicy) -> Result<()> {
        let mut b = Vec::new();
        b.extend_from_slice(&(p.leaves.len() as u32).to_le_bytes());
        b.extend_from_slice(&(p.msrs.len() as u32).to_le_bytes());
        b.extend_from_slice(&p.leaves_to_bytes());
        b.extend_from_slice(&p.msrs_to_bytes());
        self.write_state(F_CPU_POLICY, &b)
    }

    /// `XEN_DOMCTL_set_cpu_policy`: EEXIST once the domain has been unpaused
    /// (creation finished); the policy is validated and stored in Xen's
    /// canonical serialisation.
    pub fn set_cpu_policy(&self, p: &CpuPolicy) -> Result<()> {
        self.require_alive()?;
        let _g = self.locked()?;
        if self.ctl(w::CREATION_FINISHED).load(SeqCst) != 0 {
            return err(
                libc::EEXIST,
                "CPU policy can't change after the domain first ran",
            );
        }
        let canon = p.canonical()?;
        self.store_cpu_policy(&canon)
    }

    /// Grant table frame 0 (shared v1 entries): the file and the offset of
    /// the page in it. Map it `MAP_SHARED` (`XENMEM_acquire_resource`).
    pub fn grant_frame(&self) -> (&File, u64) {
        (&self.i.grant, 0)
    }

    /// Map grant frame 0 (`xenforeignmemory_map_resource`, grant table,
    /// shared, frame 0, one frame).
    pub fn map_grant_frame(&self, prot: Prot) -> Result<ForeignMapping> {
        self.require_alive()?;
        ForeignMapping::map(&self.i.grant, &[Some(0)], prot, libc::EINVAL)
    }

    /// Grant entries v1 of frame 0 as `(flags, domid, frame)`.
    pub fn grant_entries(&self) -> Result<Vec<(u16, u16, u32)>> {
        let mut b = vec![0u8; PAGE_SIZE as usize];
        self.i
            .grant
            .read_exact_at(&mut b, 0)
            .map_err(|e| Error::io("reading grant frame", e))?;
        Ok(b.chunks_exact(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect())
    }

    /// SHA-256 digest of the guest state that a save/restore must preserve
    /// (see README for what it leaves out and why).
    pub fn digest(&self) -> Result<String> {
        Ok(crate::digest::digest(self)?.total)
    }

    /// The digest with a per-component breakdown.
    pub fn digest_report(&self) -> Result<crate::DigestReport> {
        crate::digest::digest(self)
    }
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
