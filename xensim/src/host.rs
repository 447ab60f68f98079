//! The host: a directory of domains shared by every process that opens it.
//!
//! Layout (see README): `host.ctl` (shared control words), `host.lock`
//! (flock serialising create/destroy), `faults` (injected faults),
//! `domains/<domid>/` (one directory per domain), `tmp/` (domains being built
//! or torn down, moved in and out with atomic renames).

use crate::cpupolicy::CpuPolicy;
use crate::domain::{self, w, Config, Domain, TscInfo, HOST_TSC_KHZ};
use crate::error::{err, Error, Result};
use crate::faults::{FaultRule, FaultState, RuleSet};
use crate::foreign::{ForeignMapping, Prot};
use crate::hvmctx::initial_records;
use crate::layout::{mix, page_content, Content, MemoryLayout, MAX_PAGES_SLACK};
use crate::machine::{self, Machine, COMPAT_M2P_MFN0, M2P_MFN0, MAX_WINDOWS, WINDOW_FRAMES};
use crate::params::{self, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_PFN};
use crate::shm::{FileLock, SharedMap};
use crate::{
    DomId, DomainConfig, GuestType, DOMID_FIRST_RESERVED, GFN_LIMIT, MAX_VCPUS, PAGE_SIZE,
};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, OnceLock};

const HOST_MAGIC: u64 = u64::from_le_bytes(*b"XSIMHST1");
const H_MAGIC: usize = 0;
const H_FAULT_GEN: usize = 1;
const H_NEXT_DOMID: usize = 2;
const H_NEXT_FRAME_WINDOW: usize = 3;
/// Words 4..8: bitmap of frame windows in use (bit w = window w).
const H_WINDOWS_USED: usize = 4;
/// Word 8: the scheduler's `XEN_SCHEDULER_*` id (0: the default, credit2).
pub(crate) const H_SCHEDULER: usize = 8;

/// Environment variable naming the host directory.
pub const ENV_HOST: &str = "XENSIM_HOST";
/// Environment variable with fault rules for this process.
pub const ENV_FAULTS: &str = "XENSIM_FAULTS";
/// Environment variable naming a file to which every fault point this
/// process checks appends its name, one line each (README §7).
pub const ENV_FAULT_TRACE: &str = "XENSIM_FAULT_TRACE";

/// Process-wide rules from `$XENSIM_FAULTS`, shared by every `Host`.
fn env_rules() -> &'static Mutex<std::result::Result<RuleSet, Error>> {
    static RULES: OnceLock<Mutex<std::result::Result<RuleSet, Error>>> = OnceLock::new();
    RULES.get_or_init(|| {
        let spec = std::env::var(ENV_FAULTS).unwrap_or_default();
        Mutex::new(FaultRule::parse_list(&spec).map(RuleSet::new))
    })
}

/// An open host directory.
pub struct Host {
    dir: PathBuf,
    ctl: SharedMap,
    lock: File,
    machine: Arc<Machine>,
    m2p_files: [File; 2],
    faults: Mutex<FaultState>,
    /// Open domains, reused while not dying (destroy marks a domain dying
    /// before removing it, so a live cached handle is always current).
    cache: Mutex<HashMap<DomId, Domain>>,
}

fn io<E: std::fmt::Display>(what: E) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn create_sized(p: &Path, len: u64) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .map_err(io(p.display()))?;
    if f.metadata().map_err(io(p.display()))?.len() < len {
        f.set_len(len).map_err(io(p.display()))?;
    }
    Ok(f)
}

impl Host {
    /// Open (creating if missing) the host in `dir`. Fails with EINVAL if
    /// `$XENSIM_FAULTS` is malformed.
    pub fn open(dir: &Path) -> Result<Host> {
        std::fs::create_dir_all(dir.join("domains")).map_err(io(dir.display()))?;
        std::fs::create_dir_all(dir.join("tmp")).map_err(io(dir.display()))?;
        let ctl_file = create_sized(&dir.join("host.ctl"), 4096)?;
        let ctl = SharedMap::map(&ctl_file, 4096, "host.ctl")?;
        let magic = &ctl.words()[H_MAGIC];
        if magic
            .compare_exchange(0, HOST_MAGIC, SeqCst, SeqCst)
            .is_err()
            && magic.load(SeqCst) != HOST_MAGIC
        {
            return err(libc::EIO, format!("{}: not a xensim host", dir.display()));
        }
        let lock = create_sized(&dir.join("host.lock"), 0)?;
        let m2p = create_sized(&dir.join("m2p"), machine::M2P_BYTES)?;
        let compat = create_sized(&dir.join("m2p.compat"), machine::COMPAT_M2P_BYTES)?;
        let machine = Arc::new(Machine::open(&ctl_file, &m2p, &compat)?);
        if let Err(e) = &*env_rules().lock().unwrap_or_else(|p| p.into_inner()) {
            return err(libc::EINVAL, format!("${ENV_FAULTS}: {}", e.message()));
        }
        let host = Host {
            dir: dir.to_path_buf(),
            ctl,
            lock,
            machine,
            m2p_files: [m2p, compat],
            faults: Mutex::new(FaultState {
                file_gen: u64::MAX,
                ..Default::default()
            }),
            cache: Mutex::new(HashMap::new()),
        };
        Ok(host)
    }

    /// Open the host named by `$XENSIM_HOST` (EINVAL if unset).
    pub fn from_env() -> Result<Host> {
        match std::env::var_os(ENV_HOST) {
            Some(d) if !d.is_empty() => Host::open(Path::new(&d)),
            _ => err(libc::EINVAL, format!("${ENV_HOST} is not set")),
        }
    }

    pub(crate) fn ctl_word(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        &self.ctl.words()[i]
    }

    /// The host directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn domain_dir(&self, id: DomId) -> PathBuf {
        self.dir.join("domains").join(id.to_string())
    }

    /// Ids of all domains, ascending.
    pub fn domain_ids(&self) -> Result<Vec<DomId>> {
        let mut ids: Vec<DomId> = std::fs::read_dir(self.dir.join("domains"))
            .map_err(io(self.dir.display()))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// getdomaininfo's lookup: the first domain with id >= `id`.
    pub fn first_domain_at_or_after(&self, id: DomId) -> Result<Option<DomId>> {
        Ok(self.domain_ids()?.into_iter().find(|&d| d >= id))
    }

    /// Open domain `id` (ESRCH if it doesn't exist). Handles are cached per
    /// `Host`: a lookup of a live domain costs a hash lookup and an atomic
    /// load, not a re-open.
    pub fn domain(&self, id: DomId) -> Result<Domain> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = cache.get(&id) {
            if !d.is_dying() {
                return Ok(d.clone());
            }
            cache.remove(&id);
        }
        // Drop handles of domains destroyed meanwhile, so their (unlinked)
        // files don't stay allocated while this process lives.
        cache.retain(|_, d| !d.is_dying());
        let d = Domain::open_dir(id, &self.domain_dir(id), self.machine.clone())?;
        cache.insert(id, d.clone());
        Ok(d)
    }

    /// Check the fault rules for a call named after the libxenctrl function
    /// (`"xc_get_pfn_type_batch"`, `"xenforeignmemory_map"`, ...): Err with the
    /// rule's errno when one fires. Env rules count per process; host-file
    /// rules count per `Host` from when this process first saw them.
    pub fn fault_point(&self, call: &str) -> Result<()> {
        crate::faults::trace(call);
        if let Ok(rules) = &mut *env_rules().lock().unwrap_or_else(|p| p.into_inner()) {
            if let Some(e) = rules.hit(call) {
                return err(e, format!("{call}: injected fault (${ENV_FAULTS})"));
            }
        }
        let gen = self.ctl.words()[H_FAULT_GEN].load(SeqCst);
        let mut st = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        if st.file_gen != gen {
            let rules = self.faults().unwrap_or_default();
            st.file = RuleSet::new(rules);
            st.file_gen = gen;
        }
        if st.quiet() {
            return Ok(());
        }
        st.check(call)
    }

    /// Rules currently in the host file.
    pub fn faults(&self) -> Result<Vec<FaultRule>> {
        match std::fs::read_to_string(self.dir.join("faults")) {
            Ok(s) => FaultRule::parse_list(&s.replace('\n', ",")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("faults file", e)),
        }
    }

    /// Replace the host file's rules; every process sees them at its next
    /// fault point, with fresh counters.
    pub fn set_faults(&self, rules: &[FaultRule]) -> Result<()> {
        let text: String = rules.iter().map(|r| r.to_spec() + "\n").collect();
        domain::write_atomic(&self.dir.join("faults"), text.as_bytes())?;
        self.ctl.words()[H_FAULT_GEN].fetch_add(1, SeqCst);
        Ok(())
    }

    /// Remove every host-file rule.
    pub fn clear_faults(&self) -> Result<()> {
        self.set_faults(&[])
    }

    /// Destroy a domain: it turns dying for every process that has it open,
    /// then its directory goes away.
    pub fn destroy_domain(&self, id: DomId) -> Result<()> {
        let _g = FileLock::exclusive(&self.lock)?;
        let d = self.domain(id)?;
        d.ctl(w::DYING).store(1, SeqCst);
        let window = d.info()?.frame_base / WINDOW_FRAMES;
        self.machine.set_span(window, 0);
        self.ctl.words()[H_WINDOWS_USED + (window / 64) as usize]
            .fetch_and(!(1 << (window % 64)), SeqCst);
        let grave = self.dir.join("tmp").join(format!(
            "dead-{id}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|t| t.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::rename(self.domain_dir(id), &grave).map_err(io("moving domain away"))?;
        drop(d);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        std::fs::remove_dir_all(&grave).map_err(io(grave.display()))
    }

    /// Create a domain and return its id. See [`DomainConfig`]; the new
    /// domain appears to other processes only once complete.
    pub fn create_domain(&self, cfg: &DomainConfig) -> Result<DomId> {
        if cfg.address_size != 64 && cfg.address_size != 32 {
            return err(libc::EINVAL, "address size must be 64 or 32");
        }
        if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
            return err(libc::EINVAL, format!("vcpus must be 1..={MAX_VCPUS}"));
        }
        let layout = MemoryLayout::for_config(cfg)?;
        let _g = FileLock::exclusive(&self.lock)?;
        let words = self.ctl.words();
        let existing = self.domain_ids()?;
        let mut id = words[H_NEXT_DOMID].load(SeqCst).max(1) as DomId;
        let mut tries = 0;
        while existing.contains(&id) {
            id = if id + 1 >= DOMID_FIRST_RESERVED {
                1
            } else {
                id + 1
            };
            tries += 1;
            if tries > DOMID_FIRST_RESERVED {
                return err(libc::ENOSPC, "no free domain id");
            }
        }
        words[H_NEXT_DOMID].store(
            u64::from(if id + 1 >= DOMID_FIRST_RESERVED {
                1
            } else {
                id + 1
            }),
            SeqCst,
        );
        let window = self.claim_window()?;
        let build = self
            .dir
            .join("tmp")
            .join(format!("build-{id}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&build);
        std::fs::create_dir_all(&build).map_err(io(build.display()))?;
        if cfg.guest_type == GuestType::Pv {
            self.machine.set_span(
                window,
                machine::span_for(layout.ram_pages() + MAX_PAGES_SLACK),
            );
        }
        let r = self.build(id, cfg, &layout, window * GFN_LIMIT, &build);
        if let Err(e) = r {
            let _ = std::fs::remove_dir_all(&build);
            self.release_window(window);
            return Err(e);
        }
        std::fs::rename(&build, self.domain_dir(id)).map_err(io("publishing domain"))?;
        Ok(id)
    }

    /// Take the next free frame window (1..MAX_WINDOWS, round robin; window
    /// 0 is Xen's). ENOSPC when every window is in use.
    fn claim_window(&self) -> Result<u64> {
        let words = self.ctl.words();
        for _ in 0..MAX_WINDOWS {
            let n = words[H_NEXT_FRAME_WINDOW].fetch_add(1, SeqCst);
            let w = 1 + n % (MAX_WINDOWS - 1);
            let bit = 1u64 << (w % 64);
            if words[H_WINDOWS_USED + (w / 64) as usize].fetch_or(bit, SeqCst) & bit == 0 {
                return Ok(w);
            }
        }
        err(libc::ENOSPC, "no free machine frame window")
    }

    fn release_window(&self, w: u64) {
        self.machine.set_span(w, 0);
        self.ctl.words()[H_WINDOWS_USED + (w / 64) as usize].fetch_and(!(1 << (w % 64)), SeqCst);
    }

    /// `XENMEM_maximum_ram_page`: the highest MFN of the host (what
    /// libxenguest takes as `max_mfn` and sizes its M2P mapping by).
    pub fn max_mfn(&self) -> Result<u64> {
        Ok(self.machine.max_mfn())
    }

    /// `XENMEM_machphys_mfn_list`: the MFN of each 2 MiB chunk of the M2P, in
    /// order, at most `max` (all `M2P_CHUNKS(max_mfn)` of them when `max` is
    /// large enough). Chunk k is the Xen frames `M2P_MFN0 + 512 k ..`.
    pub fn m2p_chunk_mfns(&self, max: usize) -> Result<Vec<u64>> {
        let n = machine::m2p_chunks(self.machine.max_mfn()).min(max as u64);
        let per_chunk = machine::M2P_CHUNK_BYTES / PAGE_SIZE;
        Ok((0..n).map(|k| M2P_MFN0 + k * per_chunk).collect())
    }

    /// `XENMEM_machphys_compat_mfn_list` with one extent: the first frame of
    /// the compat (32-bit) M2P.
    pub fn compat_m2p_mfn0(&self) -> Result<u64> {
        Ok(COMPAT_M2P_MFN0)
    }

    /// Foreign-map `DOMID_XEN` frames: pages of the M2P and the compat M2P,
    /// live `MAP_SHARED` views of the host's M2P files. Other frames leave
    /// their slot unmapped with `-EINVAL`.
    pub fn map_xen_frames(&self, mfns: &[u64], prot: Prot) -> Result<ForeignMapping> {
        let srcs: Vec<Option<(&File, u64)>> = mfns
            .iter()
            .map(|&m| {
                self.machine
                    .xen_frame_offset(m)
                    .map(|(f, off)| (&self.m2p_files[f], off))
            })
            .collect();
        ForeignMapping::map_sources(&srcs, prot, libc::EINVAL)
    }

    /// The M2P entry of `mfn`: the pfn its owner gave it, or
    /// `INVALID_M2P_ENTRY` (`u64::MAX`) for frames no domain owns.
    pub fn m2p_entry(&self, mfn: u64) -> u64 {
        self.machine.m2p(mfn)
    }

    fn build(
        &self,
        id: DomId,
        cfg: &DomainConfig,
        layout: &MemoryLayout,
        frame_base: u64,
        dir: &Path,
    ) -> Result<()> {
        let mut handle = [0u8; 16];
        handle[..8].copy_from_slice(&mix(cfg.seed, u64::from(id), 30).to_le_bytes());
        handle[8..].copy_from_slice(&mix(cfg.seed, u64::from(id), 31).to_le_bytes());
        handle[6] = (handle[6] & 0x0f) | 0x40;
        handle[8] = (handle[8] & 0x3f) | 0x80;
        let conf = Config {
            cfg: cfg.clone(),
            max_pages: layout.ram_pages() + MAX_PAGES_SLACK,
            handle,
            frame_base,
        };
        domain::write_atomic(&dir.join(domain::F_CONFIG), conf.to_text().as_bytes())?;
        let ctl_file = create_sized(&dir.join(domain::F_CTL), domain::CTL_SIZE as u64)?;
        {
            let ctl = SharedMap::map(&ctl_file, domain::CTL_SIZE, "ctl")?;
            ctl.words()[w::MAGIC].store(domain::CTL_MAGIC, SeqCst);
        }
        create_sized(&dir.join(domain::F_POPULATED), domain::BITMAP_BYTES as u64)?;
        create_sized(&dir.join(domain::F_DIRTY), domain::BITMAP_BYTES as u64)?;
        create_sized(&dir.join(domain::F_MEM), GFN_LIMIT * PAGE_SIZE)?;
        create_sized(&dir.join(domain::F_GRANT), PAGE_SIZE)?;
        create_sized(&dir.join(domain::F_LOCK), 0)?;
        create_sized(&dir.join(domain::F_FRAMES), domain::BITMAP_BYTES as u64)?;
        create_sized(&dir.join(domain::F_PHYSMAP), domain::PHYSMAP_BYTES as u64)?;
        create_sized(&dir.join(domain::F_TYPES), GFN_LIMIT)?;
        create_sized(&dir.join(domain::F_SHINFO), PAGE_SIZE)?;
        let d = Domain::open_dir(id, dir, self.machine.clone())?;
        let nr = params::HVM_NR_PARAMS as usize;
        let mut p = vec![0u64; nr];
        let records = initial_records(cfg.guest_type, cfg.vcpus, cfg.seed, cfg.empty);
        d.write_state(domain::F_HVMCTX, &records.to_bytes())?;
        d.store_cpu_policy(&CpuPolicy::default_guest())?;
        if cfg.guest_type == GuestType::Pv && !cfg.empty {
            d.ctl(w::ADDRESS_SIZE)
                .store(u64::from(cfg.address_size), SeqCst);
        }
        if cfg.empty {
            d.ctl(w::PAUSE_COUNT).store(1, SeqCst);
            d.set_online(&[]);
            d.store_params(&p)?;
            let tsc = TscInfo {
                mode: 0,
                elapsed_nsec: 0,
                gtsc_khz: HOST_TSC_KHZ,
                incarnation: 0,
            };
            d.write_state(domain::F_TSC, &tsc.to_bytes())?;
            return Ok(());
        }
        for &(i, v) in &layout.params {
            let (slot, stored) = params::apply_set(i, &p, v)?;
            p[slot] = stored;
        }
        d.store_params(&p)?;
        let tsc = TscInfo {
            mode: 0,
            elapsed_nsec: mix(cfg.seed, 0, 20) % (86_400 * 1_000_000_000),
            gtsc_khz: 1_800_000 + (mix(cfg.seed, 0, 21) % 1_000) as u32 * 1_000,
            incarnation: (mix(cfg.seed, 0, 22) % 4) as u32,
        };
        d.write_state(domain::F_TSC, &tsc.to_bytes())?;
        let all: Vec<u16> = (0..cfg.vcpus as u16).collect();
        d.set_online(&all);
        d.ctl(w::CREATION_FINISHED).store(1, SeqCst);
        let (console, store) = if cfg.guest_type == GuestType::Pv {
            let (store, console) = crate::pvguest::build(&d, cfg)?;
            (console as u32, store as u32)
        } else {
            fill_memory(&d, cfg, layout)?;
            (
                p[HVM_PARAM_CONSOLE_PFN as usize] as u32,
                p[HVM_PARAM_STORE_PFN as usize] as u32,
            )
        };
        // The builder seeds grant entries 0 (console) and 1 (xenstore) for
        // backends in dom0 (frames: gfns for HVM, MFNs for PV).
        let mut g = vec![0u8; 16];
        for (k, frame) in [console, store].into_iter().enumerate() {
            g[k * 8..k * 8 + 2].copy_from_slice(&1u16.to_le_bytes());
            g[k * 8 + 4..k * 8 + 8].copy_from_slice(&frame.to_le_bytes());
        }
        d.grant_frame()
            .0
            .write_all_at(&g, 0)
            .map_err(io("grant frame"))?;
        Ok(())
    }
}

/// Populate the layout and write every non-zero page, batching contiguous
/// runs into large writes; zero pages stay holes in the sparse file.
fn fill_memory(d: &Domain, cfg: &DomainConfig, layout: &MemoryLayout) -> Result<()> {
    const BATCH: usize = 256;
    let extra: HashMap<u64, Content> = layout
        .extra
        .iter()
        .copied()
        .zip(layout.extra_content.iter().copied())
        .collect();
    let mut buf = vec![0u8; BATCH * PAGE_SIZE as usize];
    let mut run_start = 0u64;
    let mut run_len = 0usize;
    let file = d.mem_file();
    let flush = |start: u64, len: usize, buf: &[u8]| -> Result<()> {
        if len > 0 {
            file.write_all_at(&buf[..len * PAGE_SIZE as usize], start * PAGE_SIZE)
                .map_err(io("writing guest memory"))?;
        }
        Ok(())
    };
    for gfn in layout.populated_gfns() {
        d.set_populated(gfn);
        let content = extra.get(&gfn).copied().unwrap_or(Content::Ram);
        let contiguous = run_len > 0 && run_start + run_len as u64 == gfn && run_len < BATCH;
        if !contiguous {
            flush(run_start, run_len, &buf)?;
            run_len = 0;
            run_start = gfn;
        }
        let off = run_len * PAGE_SIZE as usize;
        let page = &mut buf[off..off + PAGE_SIZE as usize];
        if page_content(cfg.fill, cfg.seed, gfn, content, page) {
            run_len += 1;
        } else {
            flush(run_start, run_len, &buf)?;
            run_len = 0;
        }
    }
    flush(run_start, run_len, &buf)
}
