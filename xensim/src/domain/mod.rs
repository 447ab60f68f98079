//! One simulated domain: files in `DIR/domains/<domid>/`, shared by every
//! process that opens the host.
//!
//! Hot state (flags, counters, bitmaps) lives in `MAP_SHARED` files accessed
//! with atomics; the rest (params, HVM context, TSC, CPU policy) in small
//! files replaced by atomic rename while holding the domain's `lock` flock.
//!
//! The files and their layout are in `files`; the methods of [`Domain`] are
//! split by job: `lifecycle` (pause, shutdown), `memory` (populate, frames,
//! mappings, grant frame), `logdirty` and `state` (params, HVM context, TSC,
//! CPU policy).

mod files;
mod lifecycle;
mod logdirty;
mod memory;
mod pagetable;
mod pv;
mod state;
mod vcpuctx;

pub(crate) use files::{
    w, write_atomic, Config, BITMAP_BYTES, CTL_MAGIC, CTL_SIZE, F_CONFIG, F_CTL, F_DIRTY, F_FRAMES,
    F_GRANT, F_HVMCTX, F_LOCK, F_MEM, F_PHYSMAP, F_POPULATED, F_SCHED_HISTORY, F_SHINFO, F_TSC,
    F_TYPES,
};
pub use logdirty::{DirtyStats, LogDirtyOp};
pub(crate) use pagetable::{
    pte_frame, L4_XEN_SLOTS, PAE_L2_XEN_SLOTS, PT_ACCESSED, PT_DIRTY, PT_FRAME_MASK, PT_NX,
    PT_PRESENT, PT_RW, PT_USER,
};
pub use pagetable::{
    MmuextOp, MMUEXT_FLUSH_CACHE, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL,
    MMUEXT_UNPIN_TABLE, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD,
};
pub(crate) use pv::{
    get_word, put_word, ShinfoLayout, ARCH_FLL, ARCH_P2M_CR3, PHYSMAP_BYTES, TYPE_LEVEL_MASK,
};
pub use state::TscInfo;
pub(crate) use state::HOST_TSC_KHZ;
pub use vcpuctx::EXT_VCPU_CONTEXT_SIZE;
#[cfg_attr(not(test), allow(unused_imports))]
pub(crate) use vcpuctx::{cr3_to_frame, frame_to_cr3, CtxLayout, VGCF_I387_VALID, VGCF_IN_KERNEL};

use crate::error::{err, Error, Result};
use crate::machine::Machine;
use crate::shm::SharedMap;
use crate::{DomId, DomainConfig, GuestType};
use files::open_rw;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

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
    /// `shared_info_frame`: the shared_info MFN for PV (a xenheap frame
    /// outside the p2m); `u64::MAX` (INVALID_M2P_ENTRY) for HVM/PVH, whose
    /// shared info is not mapped in the p2m.
    pub shared_info_frame: u64,
    /// CPU time the workload spent running the guest.
    pub cpu_time_ns: u64,
    /// The domain handle (UUID).
    pub handle: [u8; 16],
    /// First machine frame of the domain's window in the host frame space.
    pub frame_base: u64,
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
    machine: Arc<Machine>,
    /// PV: frames of the window this domain owns (bit per frame index).
    frames: SharedMap,
    /// PV: pfn -> MFN as populated.
    physmap: SharedMap,
    /// PV: page-type byte per frame index.
    types: SharedMap,
    /// PV: the shared_info page.
    shinfo: File,
}

impl Domain {
    /// Open the domain stored in `dir`.
    pub(crate) fn open_dir(id: DomId, dir: &Path, machine: Arc<Machine>) -> Result<Domain> {
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
        let frames = SharedMap::map(&open_rw(&dir.join(F_FRAMES))?, BITMAP_BYTES, "frames")?;
        let physmap = SharedMap::map(&open_rw(&dir.join(F_PHYSMAP))?, PHYSMAP_BYTES, "physmap")?;
        let types = SharedMap::map(
            &open_rw(&dir.join(F_TYPES))?,
            crate::GFN_LIMIT as usize,
            "types",
        )?;
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
                machine,
                frames,
                physmap,
                types,
                shinfo: open_rw(&dir.join(F_SHINFO))?,
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

    pub(crate) fn require_alive(&self) -> Result<()> {
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
            shared_info_frame: self.shared_info_frame(),
            cpu_time_ns: self.ctl(w::CPU_TIME_NS).load(SeqCst),
            handle: self.i.conf.handle,
            frame_base: self.i.conf.frame_base,
        })
    }
}
