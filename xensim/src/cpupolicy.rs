//! CPU policy: the domain's CPUID leaves and MSRs, kept in the canonical form
//! Xen's `XEN_DOMCTL_get_cpu_policy` serialises.
//!
//! Xen stores a policy as a structure (basic leaves 0..=0xd with subleaf arrays
//! for 4, 7, 0xb and 0xd, two hypervisor limits, extended leaves
//! 0x80000000..=0x80000021, MSRs PLATFORM_INFO and ARCH_CAPABILITIES) and
//! re-serialises it on every get. `set` here parses the leaves into the same
//! shape (rejecting what `x86_cpuid_copy_from_buffer` /
//! `x86_msr_copy_from_buffer` reject) and `get` serialises it back, so what a
//! restore sets and what a later save reads match Xen's behaviour.

use crate::error::{err, Result};

/// `XEN_CPUID_NO_SUBLEAF`.
pub const CPUID_NO_SUBLEAF: u32 = 0xffff_ffff;
/// `CPUID_MAX_SERIALISED_LEAVES` of Xen 4.17.
pub const CPUID_MAX_LEAVES: usize = 120;
/// `MSR_MAX_SERIALISED_ENTRIES` of Xen 4.17.
pub const MSR_MAX_ENTRIES: usize = 2;

const NR_BASIC: usize = 0xd + 1;
const NR_CACHE: usize = 5 + 1;
const NR_FEAT: usize = 2 + 1;
const NR_TOPO: usize = 1 + 1;
const NR_XSTATE: usize = 62 + 1;
const NR_EXTD: usize = 0x21 + 1;
const MSR_PLATFORM_INFO: u32 = 0xce;
const MSR_ARCH_CAPABILITIES: u32 = 0x10a;

/// One serialised CPUID leaf (`xen_cpuid_leaf_t`, 24 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CpuidLeaf {
    /// Leaf (EAX input).
    pub leaf: u32,
    /// Subleaf (ECX input) or [`CPUID_NO_SUBLEAF`].
    pub subleaf: u32,
    /// EAX output.
    pub a: u32,
    /// EBX output.
    pub b: u32,
    /// ECX output.
    pub c: u32,
    /// EDX output.
    pub d: u32,
}

/// One serialised MSR (`xen_msr_entry_t`, 16 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct MsrEntry {
    /// MSR index.
    pub idx: u32,
    /// Must be zero.
    pub flags: u32,
    /// Value.
    pub val: u64,
}

/// A domain's CPU policy in serialised form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuPolicy {
    /// CPUID leaves, in Xen's serialisation order.
    pub leaves: Vec<CpuidLeaf>,
    /// MSRs, in Xen's serialisation order.
    pub msrs: Vec<MsrEntry>,
}

type Regs = [u32; 4];

/// The structured form, mirroring what Xen keeps per domain.
#[derive(Clone)]
struct Model {
    basic: [Regs; NR_BASIC],
    cache: [Regs; NR_CACHE],
    feat: [Regs; NR_FEAT],
    topo: [Regs; NR_TOPO],
    xstate: [Regs; NR_XSTATE],
    hv_limit: u32,
    hv2_limit: u32,
    extd: [Regs; NR_EXTD],
    platform_info: u32,
    arch_caps: u64,
}

impl Model {
    fn empty() -> Self {
        Model {
            basic: [[0; 4]; NR_BASIC],
            cache: [[0; 4]; NR_CACHE],
            feat: [[0; 4]; NR_FEAT],
            topo: [[0; 4]; NR_TOPO],
            xstate: [[0; 4]; NR_XSTATE],
            hv_limit: 0,
            hv2_limit: 0,
            extd: [[0; 4]; NR_EXTD],
            platform_info: 0,
            arch_caps: 0,
        }
    }

    fn from_policy(p: &CpuPolicy) -> Result<Self> {
        if p.leaves.len() > CPUID_MAX_LEAVES {
            return err(
                libc::E2BIG,
                format!("{} CPUID leaves (max {CPUID_MAX_LEAVES})", p.leaves.len()),
            );
        }
        if p.msrs.len() > MSR_MAX_ENTRIES {
            return err(
                libc::E2BIG,
                format!("{} MSRs (max {MSR_MAX_ENTRIES})", p.msrs.len()),
            );
        }
        let mut m = Model::empty();
        for l in &p.leaves {
            let r = [l.a, l.b, l.c, l.d];
            let bad = || {
                err::<()>(
                    libc::ERANGE,
                    format!(
                        "CPUID leaf {:#x} subleaf {:#x} out of range",
                        l.leaf, l.subleaf
                    ),
                )
            };
            let sub = l.subleaf as usize;
            match l.leaf {
                0x4 if sub < NR_CACHE => m.cache[sub] = r,
                0x7 if sub < NR_FEAT => m.feat[sub] = r,
                0xb if sub < NR_TOPO => m.topo[sub] = r,
                0xd if sub < NR_XSTATE => m.xstate[sub] = r,
                0x4 | 0x7 | 0xb | 0xd => bad()?,
                0..=0xd if l.subleaf == CPUID_NO_SUBLEAF => m.basic[l.leaf as usize] = r,
                // Xen keeps hv_limit/hv2_limit in uint8_t: only the low byte survives.
                0x4000_0000 if l.subleaf == CPUID_NO_SUBLEAF => m.hv_limit = l.a & 0xff,
                0x4000_0100 if l.subleaf == CPUID_NO_SUBLEAF => m.hv2_limit = l.a & 0xff,
                0x8000_0000..=0x8000_0021 if l.subleaf == CPUID_NO_SUBLEAF => {
                    m.extd[(l.leaf & 0xffff) as usize] = r
                }
                _ => bad()?,
            }
        }
        for e in &p.msrs {
            if e.flags != 0 {
                return err(libc::EINVAL, format!("MSR {:#x} has non-zero flags", e.idx));
            }
            match e.idx {
                MSR_PLATFORM_INFO => {
                    m.platform_info = u32::try_from(e.val).map_err(|_| {
                        crate::Error::new(libc::EOVERFLOW, "PLATFORM_INFO value too wide")
                    })?
                }
                MSR_ARCH_CAPABILITIES => m.arch_caps = e.val,
                other => return err(libc::ERANGE, format!("MSR {other:#x} not in a policy")),
            }
        }
        Ok(m)
    }

    fn serialise(&self) -> CpuPolicy {
        let mut leaves = Vec::new();
        let mut push = |leaf: u32, subleaf: u32, r: &Regs| {
            leaves.push(CpuidLeaf {
                leaf,
                subleaf,
                a: r[0],
                b: r[1],
                c: r[2],
                d: r[3],
            })
        };
        let max_basic = (self.basic[0][0] as usize).min(NR_BASIC - 1);
        for leaf in 0..=max_basic {
            match leaf {
                0x4 => {
                    for (s, r) in self.cache.iter().enumerate() {
                        push(4, s as u32, r);
                        if r[0] & 0x1f == 0 {
                            break;
                        }
                    }
                }
                0x7 => {
                    let max = (self.feat[0][0] as usize).min(NR_FEAT - 1);
                    for (s, r) in self.feat.iter().enumerate().take(max + 1) {
                        push(7, s as u32, r);
                    }
                }
                0xb => {
                    for (s, r) in self.topo.iter().enumerate() {
                        push(0xb, s as u32, r);
                        if (r[2] >> 8) & 0xff == 0 {
                            break;
                        }
                    }
                }
                0xd => {
                    let x = &self.xstate;
                    let mut xstates = u64::from(x[0][0])
                        | (u64::from(x[0][3]) << 32)
                        | u64::from(x[1][2])
                        | (u64::from(x[1][3]) << 32);
                    push(0xd, 0, &x[0]);
                    push(0xd, 1, &x[1]);
                    xstates >>= 2;
                    let mut s = 2;
                    while xstates != 0 && s < NR_XSTATE {
                        push(0xd, s as u32, &x[s]);
                        xstates >>= 1;
                        s += 1;
                    }
                }
                _ => push(leaf as u32, CPUID_NO_SUBLEAF, &self.basic[leaf]),
            }
        }
        push(0x4000_0000, CPUID_NO_SUBLEAF, &[self.hv_limit, 0, 0, 0]);
        push(0x4000_0100, CPUID_NO_SUBLEAF, &[self.hv2_limit, 0, 0, 0]);
        let max_extd = ((self.extd[0][0] & 0xffff) as usize).min(NR_EXTD - 1);
        for (i, r) in self.extd.iter().enumerate().take(max_extd + 1) {
            push(0x8000_0000 | i as u32, CPUID_NO_SUBLEAF, r);
        }
        let msrs = vec![
            MsrEntry {
                idx: MSR_PLATFORM_INFO,
                flags: 0,
                val: u64::from(self.platform_info),
            },
            MsrEntry {
                idx: MSR_ARCH_CAPABILITIES,
                flags: 0,
                val: self.arch_caps,
            },
        ];
        CpuPolicy { leaves, msrs }
    }
}

fn str_regs(s: &[u8; 16]) -> Regs {
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

impl CpuPolicy {
    /// Validate a policy the way Xen's set path parses it and return its
    /// canonical serialisation (what a later get returns).
    pub fn canonical(&self) -> Result<CpuPolicy> {
        Ok(Model::from_policy(self)?.serialise())
    }

    /// The policy a freshly built simulated guest gets: an Intel-like CPU with
    /// basic leaves up to 0xd (x87/SSE/AVX xstate), Xen hypervisor leaves and
    /// extended leaves up to 0x80000008 with a brand string.
    pub fn default_guest() -> CpuPolicy {
        let mut m = Model::empty();
        // "GenuineIntel" in EBX, EDX, ECX order.
        m.basic[0] = [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69];
        // Family 6 model 0x9e stepping 0xa; SSE3..AVX, hypervisor bit; FPU..SSE2.
        m.basic[1] = [0x0009_06ea, 0x0000_0800, 0xf7fa_3203, 0x178b_fbff];
        m.basic[2] = [0x0076_036c, 0x00f0_b5ff, 0, 0x00c3_0000];
        m.cache[0] = [0x0000_0121, 0x01c0_003f, 0x0000_003f, 0];
        m.cache[1] = [0x0000_0122, 0x01c0_003f, 0x0000_003f, 0];
        m.cache[2] = [0x0000_0143, 0x00c0_003f, 0x0000_03ff, 0];
        m.basic[6] = [0x4, 0, 0, 0];
        m.feat[0] = [0, 0x009c_47ab, 0, 0xbc00_0400];
        m.topo[0] = [0x1, 0x1, 0x100, 0];
        m.xstate[0] = [0x7, 0x340, 0x340, 0];
        m.xstate[1] = [0x1, 0, 0, 0];
        m.xstate[2] = [0x100, 0x240, 0, 0];
        // A value that survives Xen's uint8_t hv_limit (libxenguest round-trips it).
        m.hv_limit = 5;
        m.extd[0] = [0x8000_0008, 0, 0, 0];
        m.extd[1] = [0, 0, 0x0000_0121, 0x2c10_0800];
        m.extd[2] = str_regs(b"xensim simulated");
        m.extd[3] = str_regs(b" Xen 4.17 vCPU @");
        m.extd[4] = str_regs(b" 2.00GHz\0\0\0\0\0\0\0\0");
        m.extd[6] = [0, 0, 0x0100_6040, 0];
        m.extd[7] = [0, 0, 0, 0x100];
        m.extd[8] = [0x3027, 0, 0, 0];
        m.serialise()
    }

    /// Encode the leaves as Xen's 24-byte records, little-endian.
    pub fn leaves_to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.leaves.len() * 24);
        for l in &self.leaves {
            for w in [l.leaf, l.subleaf, l.a, l.b, l.c, l.d] {
                v.extend_from_slice(&w.to_le_bytes());
            }
        }
        v
    }

    /// Encode the MSRs as Xen's 16-byte records, little-endian.
    pub fn msrs_to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.msrs.len() * 16);
        for m in &self.msrs {
            v.extend_from_slice(&m.idx.to_le_bytes());
            v.extend_from_slice(&m.flags.to_le_bytes());
            v.extend_from_slice(&m.val.to_le_bytes());
        }
        v
    }

    /// Decode 24-byte leaf records and 16-byte MSR records.
    pub fn from_bytes(leaves: &[u8], msrs: &[u8]) -> Result<CpuPolicy> {
        if leaves.len() % 24 != 0 || msrs.len() % 16 != 0 {
            return err(
                libc::EINVAL,
                "CPU policy buffer not a multiple of the record size",
            );
        }
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let leaves = leaves
            .chunks_exact(24)
            .map(|c| CpuidLeaf {
                leaf: u32_at(c, 0),
                subleaf: u32_at(c, 4),
                a: u32_at(c, 8),
                b: u32_at(c, 12),
                c: u32_at(c, 16),
                d: u32_at(c, 20),
            })
            .collect();
        let msrs = msrs
            .chunks_exact(16)
            .map(|c| MsrEntry {
                idx: u32_at(c, 0),
                flags: u32_at(c, 4),
                val: u64::from(u32_at(c, 8)) | (u64::from(u32_at(c, 12)) << 32),
            })
            .collect();
        Ok(CpuPolicy { leaves, msrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_canonical_and_within_limits() {
        let p = CpuPolicy::default_guest();
        assert!(p.leaves.len() <= CPUID_MAX_LEAVES);
        assert_eq!(p.msrs.len(), 2);
        assert_eq!(p.canonical().unwrap(), p);
        assert_eq!(p.leaves[0].a as usize, 0xd);
        // 20 basic entries (leaf 4: 4 subleaves, 7: 1, 0xb: 2, 0xd: 3), two
        // hypervisor leaves, extended 0x80000000..=0x80000008 (README).
        assert_eq!(p.leaves.len(), 31);
        let enc = CpuPolicy::from_bytes(&p.leaves_to_bytes(), &p.msrs_to_bytes()).unwrap();
        assert_eq!(enc, p);
    }

    #[test]
    fn minimal_policy_from_reference_is_accepted() {
        let l = |leaf, a| CpuidLeaf {
            leaf,
            subleaf: CPUID_NO_SUBLEAF,
            a,
            ..Default::default()
        };
        let p = CpuPolicy {
            leaves: vec![
                l(0, 1),
                l(1, 0x906ea),
                l(0x4000_0000, 0),
                l(0x4000_0100, 0),
                l(0x8000_0000, 0x8000_0001),
                l(0x8000_0001, 0),
            ],
            msrs: vec![
                MsrEntry {
                    idx: 0xce,
                    flags: 0,
                    val: 0,
                },
                MsrEntry {
                    idx: 0x10a,
                    flags: 0,
                    val: 0,
                },
            ],
        };
        assert_eq!(p.canonical().unwrap(), p);
    }

    #[test]
    fn out_of_range_leaves_and_msrs_are_rejected() {
        let mut p = CpuPolicy::default_guest();
        p.leaves.push(CpuidLeaf {
            leaf: 0x8000_0030,
            subleaf: CPUID_NO_SUBLEAF,
            ..Default::default()
        });
        assert_eq!(p.canonical().unwrap_err().errno(), libc::ERANGE);
        let mut p = CpuPolicy::default_guest();
        p.leaves.push(CpuidLeaf {
            leaf: 7,
            subleaf: 3,
            ..Default::default()
        });
        assert_eq!(p.canonical().unwrap_err().errno(), libc::ERANGE);
        let mut p = CpuPolicy::default_guest();
        p.msrs[0].flags = 1;
        assert_eq!(p.canonical().unwrap_err().errno(), libc::EINVAL);
        let mut p = CpuPolicy::default_guest();
        p.msrs[1].idx = 0x10;
        assert_eq!(p.canonical().unwrap_err().errno(), libc::ERANGE);
        let mut p = CpuPolicy::default_guest();
        p.leaves = vec![CpuidLeaf::default(); CPUID_MAX_LEAVES + 1];
        assert_eq!(p.canonical().unwrap_err().errno(), libc::E2BIG);
    }
}
