//! State files replaced whole under the domain lock: HVM params, HVM
//! context, TSC settings and the CPU policy.

use super::files::{write_atomic, F_CPU_POLICY, F_HVMCTX, F_PARAMS, F_TSC};
use super::{w, Domain};
use crate::cpupolicy::CpuPolicy;
use crate::error::{err, Error, Result};
use crate::hvmctx::Records;
use crate::params;
use crate::shm::FileLock;
use std::sync::atomic::Ordering::SeqCst;

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

impl Domain {
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

    pub(crate) fn locked(&self) -> Result<FileLock<'_>> {
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
}
