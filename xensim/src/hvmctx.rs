//! HVM context blobs: Xen's chain of `hvm_save_descriptor {u16 typecode;
//! u16 instance; u32 length}` + payload, starting with HEADER and ending with
//! END. Generation of realistic records, and loading with the checks Xen's
//! `hvm_load` applies.

use crate::error::{err, Result};
use crate::layout::{mix, Rng};
use crate::GuestType;
use std::collections::BTreeMap;

/// `HVM_FILE_MAGIC`.
pub const HVM_FILE_MAGIC: u32 = 0x5438_1286;
/// `HVM_FILE_VERSION`.
pub const HVM_FILE_VERSION: u32 = 1;
/// Changeset the simulated hypervisor reports in headers.
const CHANGESET: u64 = 0x0004_0011_0000_0007;
/// CPUID.1.EAX of the simulated host (matches the default CPU policy).
pub(crate) const HOST_CPUID1_EAX: u32 = 0x0009_06ea;

pub(crate) const T_END: u16 = 0;
pub(crate) const T_HEADER: u16 = 1;
const T_CPU: u16 = 2;
const T_PIC: u16 = 3;
const T_IOAPIC: u16 = 4;
const T_LAPIC: u16 = 5;
const T_LAPIC_REGS: u16 = 6;
const T_PCI_IRQ: u16 = 7;
const T_ISA_IRQ: u16 = 8;
const T_PCI_LINK: u16 = 9;
const T_PIT: u16 = 10;
const T_RTC: u16 = 11;
const T_HPET: u16 = 12;
const T_PMTIMER: u16 = 13;
const T_MTRR: u16 = 14;
const T_VIRIDIAN_DOMAIN: u16 = 15;
const T_CPU_XSAVE: u16 = 16;
const T_VIRIDIAN_VCPU: u16 = 17;
const T_VMCE_VCPU: u16 = 18;
const T_TSC_ADJUST: u16 = 19;
const T_CPU_MSR: u16 = 20;
const HEADER_LEN: usize = 24;

/// How Xen checks a record's length on load.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Len {
    /// `hvm_load_entry`: exactly this many bytes.
    Exact(usize),
    /// `hvm_load_entry_zeroextend`: at most this many, zero-extended.
    ZeroExtend(usize),
    /// Variable: at least `min`, `min + k*step`.
    Var { min: usize, step: usize },
}

struct TypeInfo {
    per_vcpu: bool,
    len: Len,
    /// Emulated platform device absent in PVH guests (load gives ENODEV).
    platform: bool,
}

fn type_info(t: u16) -> Option<TypeInfo> {
    let ti = |per_vcpu, len, platform| {
        Some(TypeInfo {
            per_vcpu,
            len,
            platform,
        })
    };
    match t {
        T_CPU => ti(true, Len::ZeroExtend(1032), false),
        T_PIC => ti(false, Len::Exact(8), true),
        T_IOAPIC => ti(false, Len::Exact(400), true),
        T_LAPIC => ti(true, Len::ZeroExtend(24), false),
        T_LAPIC_REGS => ti(true, Len::Exact(1024), false),
        T_PCI_IRQ => ti(false, Len::Exact(16), false),
        T_ISA_IRQ => ti(false, Len::Exact(8), false),
        T_PCI_LINK => ti(false, Len::Exact(8), false),
        T_PIT => ti(false, Len::Exact(56), true),
        T_RTC => ti(false, Len::ZeroExtend(24), true),
        T_HPET => ti(false, Len::Exact(1048), true),
        T_PMTIMER => ti(false, Len::Exact(8), true),
        T_MTRR => ti(true, Len::Exact(240), false),
        T_VIRIDIAN_DOMAIN => ti(false, Len::ZeroExtend(32), false),
        T_CPU_XSAVE => ti(true, Len::Var { min: 16, step: 1 }, false),
        T_VIRIDIAN_VCPU => ti(true, Len::ZeroExtend(216), false),
        T_VMCE_VCPU => ti(true, Len::ZeroExtend(32), false),
        T_TSC_ADJUST => ti(true, Len::Exact(8), false),
        T_CPU_MSR => ti(true, Len::Var { min: 8, step: 16 }, false),
        _ => None,
    }
}

/// One record of an HVM context blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HvmRecord {
    /// `HVM_SAVE_CODE(...)`.
    pub typecode: u16,
    /// vCPU id for per-vCPU records, else the instance number.
    pub instance: u16,
    /// Payload.
    pub data: Vec<u8>,
}

impl HvmRecord {
    /// Split a blob into records up to and including END. Only structure is
    /// checked (descriptors fit, END present); see [`crate::Domain::set_hvm_context`]
    /// for Xen's semantic checks.
    pub fn parse_chain(blob: &[u8]) -> Result<Vec<HvmRecord>> {
        let mut out = Vec::new();
        let mut off = 0usize;
        loop {
            if blob.len() - off < 8 {
                return err(libc::ENODATA, "HVM context did not end with an END record");
            }
            let typecode = u16::from_le_bytes([blob[off], blob[off + 1]]);
            let instance = u16::from_le_bytes([blob[off + 2], blob[off + 3]]);
            let length =
                u32::from_le_bytes([blob[off + 4], blob[off + 5], blob[off + 6], blob[off + 7]])
                    as usize;
            off += 8;
            if typecode == T_END {
                out.push(HvmRecord {
                    typecode,
                    instance,
                    data: Vec::new(),
                });
                return Ok(out);
            }
            if blob.len() - off < length {
                return err(
                    libc::EINVAL,
                    format!("HVM record {typecode}/{instance} length {length} runs past the end"),
                );
            }
            out.push(HvmRecord {
                typecode,
                instance,
                data: blob[off..off + length].to_vec(),
            });
            off += length;
        }
    }

    /// Encode records as a blob (descriptors + payloads).
    pub fn encode_chain(records: &[HvmRecord]) -> Vec<u8> {
        let mut v = Vec::new();
        for r in records {
            v.extend_from_slice(&r.typecode.to_le_bytes());
            v.extend_from_slice(&r.instance.to_le_bytes());
            v.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
            v.extend_from_slice(&r.data);
        }
        v
    }
}

/// The record store of one domain: everything but HEADER and END, keyed by
/// (typecode, instance). Rendering adds a header and END and leaves out CPU
/// records of offline vCPUs, like Xen's `hvm_save`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Records(pub(crate) BTreeMap<(u16, u16), Vec<u8>>);

pub(crate) fn header(gtsc_khz: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&HVM_FILE_MAGIC.to_le_bytes());
    h.extend_from_slice(&HVM_FILE_VERSION.to_le_bytes());
    h.extend_from_slice(&CHANGESET.to_le_bytes());
    h.extend_from_slice(&HOST_CPUID1_EAX.to_le_bytes());
    h.extend_from_slice(&gtsc_khz.to_le_bytes());
    h
}

impl Records {
    pub(crate) fn render(&self, gtsc_khz: u32, online: impl Fn(u16) -> bool) -> Vec<u8> {
        let mut recs = vec![HvmRecord {
            typecode: T_HEADER,
            instance: 0,
            data: header(gtsc_khz),
        }];
        for (&(t, i), d) in &self.0 {
            if t == T_CPU && !online(i) {
                continue;
            }
            recs.push(HvmRecord {
                typecode: t,
                instance: i,
                data: d.clone(),
            });
        }
        recs.push(HvmRecord {
            typecode: T_END,
            instance: 0,
            data: Vec::new(),
        });
        HvmRecord::encode_chain(&recs)
    }

    /// Size of the blob if every vCPU were online: the upper bound the size
    /// query reports.
    pub(crate) fn max_size(&self) -> usize {
        8 + HEADER_LEN + self.0.values().map(|d| 8 + d.len()).sum::<usize>() + 8
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let recs: Vec<HvmRecord> = self
            .0
            .iter()
            .map(|(&(t, i), d)| HvmRecord {
                typecode: t,
                instance: i,
                data: d.clone(),
            })
            .chain(std::iter::once(HvmRecord {
                typecode: T_END,
                instance: 0,
                data: Vec::new(),
            }))
            .collect();
        HvmRecord::encode_chain(&recs)
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Result<Records> {
        let mut m = BTreeMap::new();
        for r in HvmRecord::parse_chain(b)? {
            if r.typecode != T_END {
                m.insert((r.typecode, r.instance), r.data);
            }
        }
        Ok(Records(m))
    }

    /// Load `blob` on top of these records the way `hvm_load` does. Returns
    /// the new records, the set of vCPUs that had a CPU record (all others go
    /// down), and the header's gtsc_khz.
    pub(crate) fn load(
        &self,
        blob: &[u8],
        guest: GuestType,
        vcpus: u32,
    ) -> Result<(Records, Vec<u16>, u32)> {
        let recs = match HvmRecord::parse_chain(blob) {
            Ok(r) => r,
            Err(e) if e.errno() == libc::ENODATA => return Err(e),
            Err(e) => {
                // A truncated first record is a missing header to Xen.
                if blob.len() < 8 + HEADER_LEN {
                    return err(libc::ENODATA, "HVM context too short for a header");
                }
                return Err(e);
            }
        };
        let first = &recs[0];
        if first.typecode != T_HEADER || first.data.len() != HEADER_LEN {
            return err(
                libc::ENODATA,
                "HVM context does not start with a valid HEADER",
            );
        }
        let h = &first.data;
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let version = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let gtsc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
        if magic != HVM_FILE_MAGIC {
            return err(libc::EINVAL, format!("HVM context: bad magic {magic:#x}"));
        }
        if version != HVM_FILE_VERSION {
            return err(
                libc::EINVAL,
                format!("HVM context: unsupported version {version}"),
            );
        }
        let mut next = self.clone();
        let mut up = Vec::new();
        for r in &recs[1..] {
            if r.typecode == T_END {
                break;
            }
            let (t, i) = (r.typecode, r.instance);
            let Some(ti) = type_info(t) else {
                return err(libc::EINVAL, format!("HVM context: unknown typecode {t}"));
            };
            if ti.platform && guest == GuestType::Pvh {
                return err(
                    libc::ENODEV,
                    format!("HVM context: record {t} for a device a PVH guest lacks"),
                );
            }
            if ti.per_vcpu && u32::from(i) >= vcpus {
                return err(
                    libc::EINVAL,
                    format!("HVM context: record {t} for vcpu {i}, domain has {vcpus}"),
                );
            }
            if t == T_PIC && i > 1 {
                return err(libc::EINVAL, format!("HVM context: PIC instance {i}"));
            }
            let data = match ti.len {
                Len::Exact(n) if r.data.len() == n => r.data.clone(),
                Len::ZeroExtend(n) if r.data.len() <= n => {
                    let mut d = r.data.clone();
                    d.resize(n, 0);
                    d
                }
                Len::Var { min, step }
                    if r.data.len() >= min && (r.data.len() - min) % step == 0 =>
                {
                    r.data.clone()
                }
                _ => {
                    return err(
                        libc::EINVAL,
                        format!(
                            "HVM context: record {t}/{i} has bad length {}",
                            r.data.len()
                        ),
                    )
                }
            };
            if t == T_PCI_LINK && data[..4].iter().any(|&route| route > 15) {
                return err(libc::EINVAL, "HVM context: PCI-ISA link route out of range");
            }
            if t == T_CPU {
                up.push(i);
            }
            next.0.insert((t, i), data);
        }
        Ok((next, up, gtsc))
    }
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// `struct hvm_hw_cpu` of a 64-bit guest kernel in the middle of its work.
fn cpu_record(seed: u64, vcpu: u16, running: bool) -> Vec<u8> {
    let mut b = vec![0u8; 1032];
    if !running {
        // Reset state: CR0.ET|NW|CD, flat real mode at the reset vector.
        put64(&mut b, 640, 0xfff0);
        put64(&mut b, 648, 0x2);
        put64(&mut b, 656, 0x6000_0010);
        return b;
    }
    let mut r = Rng::new(mix(seed, u64::from(vcpu), 10));
    // FXSAVE area: FCW, MXCSR, then random x87/XMM contents.
    put32(&mut b, 0, 0x037f);
    put32(&mut b, 24, 0x1f80);
    put32(&mut b, 28, 0xffff);
    r.fill(&mut b[32..416]);
    for g in 0..16 {
        put64(&mut b, 512 + 8 * g, r.next_u64());
    }
    put64(
        &mut b,
        640,
        0xffff_ffff_8100_0000 | (r.next_u64() & 0x00ff_fff0),
    ); // rip
    put64(&mut b, 648, 0x246); // rflags
    put64(&mut b, 656, 0x8005_0033); // cr0: PG|AM|WP|NE|ET|MP|PE
    put64(&mut b, 664, r.next_u64() & 0x0000_7fff_ffff_f000); // cr2
    put64(&mut b, 672, (r.next_u64() & 0x0fff_f000) | 0x1000); // cr3
    put64(&mut b, 680, 0x0004_06b0); // cr4: PSE|PAE|PGE|OSFXSR|OSXMMEXCPT|OSXSAVE
    put64(&mut b, 720, 0xffff_0ff0); // dr6
    put64(&mut b, 728, 0x400); // dr7
    let sels = [0x10u32, 0x18, 0x18, 0, 0, 0x18, 0x40, 0];
    for (i, s) in sels.iter().enumerate() {
        put32(&mut b, 736 + 4 * i, *s);
    }
    let limits = [
        0xffff_ffffu32,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0x206f,
        0,
        0xfff,
        0x7f,
    ];
    for (i, l) in limits.iter().enumerate() {
        put32(&mut b, 768 + 4 * i, *l);
    }
    let percpu = 0xffff_8880_0000_0000 | (u64::from(vcpu) << 21);
    put64(&mut b, 808 + 8 * 3, r.next_u64() & 0x0000_7fff_ffff_f000); // fs_base
    put64(&mut b, 808 + 8 * 4, percpu); // gs_base
    put64(&mut b, 808 + 8 * 6, percpu + 0x6000); // tr_base
    put64(&mut b, 808 + 8 * 8, 0xffff_fe00_0000_0000); // idtr_base
    put64(&mut b, 808 + 8 * 9, percpu + 0x9000); // gdtr_base
    let ar = [
        0xa09bu32, 0xc093, 0xc093, 0x1_0000, 0x1_0000, 0xc093, 0x8b, 0x1_0000,
    ];
    for (i, a) in ar.iter().enumerate() {
        put32(&mut b, 888 + 4 * i, *a);
    }
    put64(&mut b, 944, r.next_u64() & 0x0000_7fff_ffff_f000); // shadow_gs
    put64(&mut b, 960, 0xffff_ffff_8200_0080); // lstar
    put64(&mut b, 968, 0x0023_0010_0000_0000); // star
    put64(&mut b, 976, 0xffff_ffff_8200_1560); // cstar
    put64(&mut b, 984, 0x4_7700); // syscall_mask
    put64(&mut b, 992, 0xd01); // efer: SCE|LME|LMA|NXE
    put64(&mut b, 1000, u64::from(vcpu)); // tsc_aux
    put64(
        &mut b,
        1008,
        0x0000_1000_0000_0000 | (r.next_u64() & 0xffff_ffff_ffff),
    ); // tsc
    put32(&mut b, 1024, 1); // XEN_X86_FPU_INITIALISED
    b
}

fn lapic_record(vcpu: u16) -> Vec<u8> {
    let mut b = vec![0u8; 24];
    let bsp = if vcpu == 0 { 0x100 } else { 0 };
    put64(&mut b, 0, 0xfee0_0000 | 0x800 | bsp);
    put32(&mut b, 12, 1);
    b
}

fn lapic_regs_record(seed: u64, vcpu: u16) -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    put32(&mut b, 0x20, (u32::from(vcpu) * 2) << 24); // APIC ID
    put32(&mut b, 0x30, 0x0005_0014); // version
    put32(&mut b, 0xd0, 1 << (24 + (vcpu % 8))); // LDR
    put32(&mut b, 0xe0, 0xffff_ffff); // DFR
    put32(&mut b, 0xf0, 0x1ff); // SVR: enabled, spurious vector 0xff
    put32(&mut b, 0x320, 0x0002_00ec); // LVT timer: periodic, vector 0xec
    for off in [0x330, 0x340, 0x360, 0x370] {
        put32(&mut b, off, 0x1_0000);
    }
    put32(&mut b, 0x350, 0x700); // LINT0: ExtINT
    put32(
        &mut b,
        0x380,
        (mix(seed, u64::from(vcpu), 11) & 0xffff) as u32 | 0x1_0000,
    ); // TMICT
    put32(&mut b, 0x3e0, 0xb); // divide by 1
    b
}

fn mtrr_record() -> Vec<u8> {
    let mut b = vec![0u8; 240];
    put64(&mut b, 0, 0x0007_0406_0007_0406); // PAT
    put64(&mut b, 8, 0xf000_0000); // var0 base: UC
    put64(&mut b, 16, 0xf_f000_0800); // var0 mask: 256 MiB, valid
    for i in 0..11 {
        put64(&mut b, 136 + 8 * i, 0x0606_0606_0606_0606);
    }
    put64(&mut b, 224, 0x508); // cap: WC, FIX, 8 variable
    put64(&mut b, 232, 0xc06); // def type: enabled, fixed enabled, WB
    b
}

/// The records a running (or, for `empty`, freshly created) domain has.
pub(crate) fn initial_records(guest: GuestType, vcpus: u32, seed: u64, empty: bool) -> Records {
    let mut m = BTreeMap::new();
    for v in 0..vcpus as u16 {
        m.insert((T_CPU, v), cpu_record(seed, v, !empty));
        m.insert((T_LAPIC, v), lapic_record(v));
        m.insert((T_LAPIC_REGS, v), lapic_regs_record(seed, v));
        m.insert((T_MTRR, v), mtrr_record());
        let mut vmce = vec![0u8; 32];
        put64(&mut vmce, 0, 0x0100_0802); // MCG_CAP: 2 banks, CTL, SER
        m.insert((T_VMCE_VCPU, v), vmce);
        m.insert((T_TSC_ADJUST, v), vec![0u8; 8]);
    }
    m.insert((T_PCI_IRQ, 0), vec![0u8; 16]);
    m.insert((T_ISA_IRQ, 0), vec![0u8; 8]);
    m.insert((T_PCI_LINK, 0), vec![5, 10, 11, 5, 0, 0, 0, 0]);
    if guest == GuestType::Hvm {
        // Master PIC: vector base 0x30, timer unmasked; slave at 0x38.
        m.insert((T_PIC, 0), vec![0, 0xb8, 0, 0x30, 0x04, 0x01, 0x00, 0x00]);
        m.insert((T_PIC, 1), vec![0, 0xff, 0, 0x38, 0x02, 0x01, 0x00, 0x00]);
        let mut io = vec![0u8; 400];
        put64(&mut io, 0, 0xfec0_0000);
        for pin in 0..48 {
            put64(&mut io, 16 + 8 * pin, 0x1_0000); // masked
        }
        m.insert((T_IOAPIC, 0), io);
        let mut pit = vec![0u8; 56];
        put32(&mut pit, 0, 0x1_0000);
        pit[13] = 2; // channel 0 mode 2
        pit[15] = 1; // gate
        m.insert((T_PIT, 0), pit);
        let mut rtc = vec![0u8; 24];
        rtc[..14].copy_from_slice(&[
            0x30, 0, 0x15, 0, 0x23, 0, 6, 0x21, 0x11, 0x26, 0x26, 0x02, 0x00, 0x80,
        ]);
        m.insert((T_RTC, 0), rtc);
        let mut hpet = vec![0u8; 1048];
        put64(&mut hpet, 0, 0x0098_9680_8086_a201); // capabilities: 10 MHz, 3 timers
        put64(&mut hpet, 16, 1); // config: enabled
        m.insert((T_HPET, 0), hpet);
        m.insert((T_PMTIMER, 0), vec![0x10, 0x32, 0x54, 0, 0, 0, 0, 0]);
    }
    Records(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(guest: GuestType, vcpus: u32) -> Vec<u8> {
        initial_records(guest, vcpus, 1, false).render(2_000_000, |_| true)
    }

    fn types(b: &[u8]) -> Vec<(u16, u16, usize)> {
        HvmRecord::parse_chain(b)
            .unwrap()
            .iter()
            .map(|r| (r.typecode, r.instance, r.data.len()))
            .collect()
    }

    #[test]
    fn generated_hvm_context_has_xen_order_and_sizes() {
        let t = types(&blob(GuestType::Hvm, 2));
        assert_eq!(t[0], (T_HEADER, 0, 24));
        assert_eq!(t[1], (T_CPU, 0, 1032));
        assert_eq!(t[2], (T_CPU, 1, 1032));
        assert!(t.contains(&(T_PIC, 1, 8)));
        assert!(t.contains(&(T_IOAPIC, 0, 400)));
        assert!(t.contains(&(T_HPET, 0, 1048)));
        assert!(t.contains(&(T_MTRR, 1, 240)));
        assert_eq!(*t.last().unwrap(), (T_END, 0, 0));
        let codes: Vec<u16> = t[..t.len() - 1].iter().map(|x| x.0).collect();
        assert!(
            codes.windows(2).all(|w| w[0] <= w[1]),
            "ascending typecodes"
        );
    }

    #[test]
    fn pvh_context_has_no_platform_devices() {
        let t = types(&blob(GuestType::Pvh, 1));
        for dev in [T_PIC, T_IOAPIC, T_PIT, T_RTC, T_HPET, T_PMTIMER] {
            assert!(!t.iter().any(|x| x.0 == dev), "type {dev}");
        }
        assert!(t.iter().any(|x| x.0 == T_LAPIC));
    }

    #[test]
    fn load_accepts_generated_context_and_round_trips() {
        let src = initial_records(GuestType::Hvm, 2, 9, false);
        let b = src.render(1_500_000, |_| true);
        let dst = initial_records(GuestType::Hvm, 2, 0, true);
        let (loaded, up, khz) = dst.load(&b, GuestType::Hvm, 2).unwrap();
        assert_eq!(up, vec![0, 1]);
        assert_eq!(khz, 1_500_000);
        assert_eq!(loaded.render(1_500_000, |_| true), b);
    }

    #[test]
    fn load_rejects_broken_chains() {
        let dst = initial_records(GuestType::Hvm, 1, 0, true);
        let good = blob(GuestType::Hvm, 1);
        let load = |b: &[u8]| dst.load(b, GuestType::Hvm, 1).unwrap_err().errno();
        // No END: ENODATA.
        assert_eq!(load(&good[..good.len() - 8]), libc::ENODATA);
        // Header missing.
        assert_eq!(load(&good[8 + 24..]), libc::ENODATA);
        // Bad magic.
        let mut b = good.clone();
        b[8] ^= 1;
        assert_eq!(load(&b), libc::EINVAL);
        // Bad version.
        let mut b = good.clone();
        b[12] = 2;
        assert_eq!(load(&b), libc::EINVAL);
        // Unknown typecode.
        let mut b = good.clone();
        b[32] = 99;
        assert_eq!(load(&b), libc::EINVAL);
        // Wrong length of a strict record (LAPIC_REGS 1024 -> 1000).
        let mut recs = HvmRecord::parse_chain(&good).unwrap();
        let i = recs
            .iter()
            .position(|r| r.typecode == T_LAPIC_REGS)
            .unwrap();
        recs[i].data.truncate(1000);
        assert_eq!(load(&HvmRecord::encode_chain(&recs)), libc::EINVAL);
        // CPU record for a vCPU the domain lacks.
        let mut recs = HvmRecord::parse_chain(&good).unwrap();
        recs[1].instance = 3;
        assert_eq!(load(&HvmRecord::encode_chain(&recs)), libc::EINVAL);
        // PIC record into a PVH guest.
        let pvh = initial_records(GuestType::Pvh, 1, 0, true);
        assert_eq!(
            pvh.load(&good, GuestType::Pvh, 1).unwrap_err().errno(),
            libc::ENODEV
        );
    }

    #[test]
    fn zero_extended_records_accept_short_lengths() {
        let dst = initial_records(GuestType::Hvm, 1, 0, true);
        let mut recs = HvmRecord::parse_chain(&blob(GuestType::Hvm, 1)).unwrap();
        recs[1].data.truncate(1024); // CPU record from an older Xen
        let (loaded, _, _) = dst
            .load(&HvmRecord::encode_chain(&recs), GuestType::Hvm, 1)
            .unwrap();
        assert_eq!(loaded.0[&(T_CPU, 0)].len(), 1032);
    }
}
