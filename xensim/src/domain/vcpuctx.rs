//! PV vCPU state: the guest-width `vcpu_guest_context` (get/set with Xen's
//! checks, typing the page tables reachable from cr3), the extended context,
//! xsave state and the PV MSR list. Kept per vCPU in the `vcpus` file,
//! replaced whole under the domain lock.

use super::files::F_VCPUS;
use super::pv::{get_word, put_word, TYPE_LEVEL_MASK};
use super::Domain;
use crate::error::{err, Result};

/// `VGCF_i387_valid`.
pub(crate) const VGCF_I387_VALID: u64 = 1 << 0;
/// `VGCF_in_kernel`.
pub(crate) const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `VGCF_online`.
pub(crate) const VGCF_ONLINE: u64 = 1 << 5;
/// Size of `xen_domctl_ext_vcpucontext`.
pub const EXT_VCPU_CONTEXT_SIZE: usize = 64;
/// The host's XSAVE features: x87, SSE, AVX.
const XFEATURE_MASK: u64 = 0x7;
/// XSAVE area size for [`XFEATURE_MASK`] (legacy 512 + header 64 + AVX 256).
const XSAVE_AREA: usize = 832;
/// `PV_XSAVE_HDR_SIZE`: xcr0 and xcr0_accum ahead of the area.
const XSAVE_HDR: usize = 16;
/// Xen's PV MSR list (`msrs_to_send`, XEN_DOMCTL_get_vcpu_msrs).
pub(crate) const PV_MSRS: [u32; 7] = [
    0x48,        // MSR_SPEC_CTRL
    0x140,       // MSR_INTEL_MISC_FEATURES_ENABLES
    0xc000_0103, // MSR_TSC_AUX
    0xc001_1027, // MSR_AMD64_DR0_ADDRESS_MASK
    0xc001_1019, // MSR_AMD64_DR1_ADDRESS_MASK
    0xc001_101a, // MSR_AMD64_DR2_ADDRESS_MASK
    0xc001_101b, // MSR_AMD64_DR3_ADDRESS_MASK
];
/// MCG_CAP bits a guest may have (`guest_mcg_cap` plus count and CTL_P).
const MCG_CAP_ALLOWED: u64 = 0xff | (1 << 8) | (1 << 10) | (1 << 11) | (1 << 24);

/// Offsets of the fields of `vcpu_guest_context_x86_{64,32}` that xensim
/// reads or checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CtxLayout {
    pub size: usize,
    pub word: usize,
    pub flags: usize,
    pub rdx: usize,
    pub rip: usize,
    pub rsp: usize,
    pub ldt_base: usize,
    pub ldt_ents: usize,
    pub gdt_frames: usize,
    pub gdt_ents: usize,
    pub kernel_sp: usize,
    pub ctrlreg: usize,
    /// Addresses a 64-bit context must hold canonical.
    pub canonical: &'static [usize],
}

impl CtxLayout {
    pub(crate) fn for_bits(bits: u32) -> CtxLayout {
        if bits == 32 {
            CtxLayout {
                size: 2800,
                word: 4,
                flags: 512,
                rdx: 524,
                rip: 548,
                rsp: 560,
                ldt_base: 2632,
                ldt_ents: 2636,
                gdt_frames: 2640,
                gdt_ents: 2704,
                kernel_sp: 2712,
                ctrlreg: 2716,
                canonical: &[],
            }
        } else {
            CtxLayout {
                size: 5168,
                word: 8,
                flags: 512,
                rdx: 616,
                rip: 648,
                rsp: 672,
                ldt_base: 4816,
                ldt_ents: 4824,
                gdt_frames: 4832,
                gdt_ents: 4960,
                kernel_sp: 4976,
                ctrlreg: 4984,
                // rip, rsp, ldt_base, kernel_sp, callbacks, fs/gs bases.
                canonical: &[648, 672, 4816, 4976, 5112, 5120, 5128, 5144, 5152, 5160],
            }
        }
    }

    pub(crate) fn get(&self, c: &[u8], off: usize) -> u64 {
        get_word(c, off, self.word)
    }

    pub(crate) fn put(&self, c: &mut [u8], off: usize, v: u64) {
        put_word(c, off, self.word, v)
    }

    /// The root table MFN in `ctrlreg[3]`.
    pub(crate) fn cr3_frame(&self, c: &[u8]) -> u64 {
        cr3_to_frame(self.word == 4, self.get(c, self.ctrlreg + 3 * self.word))
    }
}

/// cr3 in a guest's format -> frame (32-bit: `(cr3 >> 12) | (cr3 << 20)`).
pub(crate) fn cr3_to_frame(bits32: bool, cr3: u64) -> u64 {
    if bits32 {
        let c = cr3 as u32;
        u64::from(c.rotate_right(12))
    } else {
        cr3 >> 12
    }
}

/// frame -> cr3 in a guest's format.
pub(crate) fn frame_to_cr3(bits32: bool, frame: u64) -> u64 {
    if bits32 {
        let f = frame as u32;
        u64::from(f.rotate_left(12))
    } else {
        frame << 12
    }
}

fn canonical(a: u64) -> bool {
    let top = a >> 47;
    top == 0 || top == 0x1_ffff
}

/// One vCPU's saved state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VcpuState {
    /// The guest-width context (empty until first set).
    pub ctx: Vec<u8>,
    /// `xen_domctl_ext_vcpucontext` (64 bytes, or empty).
    pub ext: Vec<u8>,
    /// `{xcr0, xcr0_accum, area}` (or empty).
    pub xsave: Vec<u8>,
    /// Non-zero MSRs of the PV list.
    pub msrs: Vec<(u32, u64)>,
}

fn put_blob(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if b.len() < n {
        return err(libc::EIO, "corrupt vcpus state file");
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Ok(h)
}

fn take_blob<'a>(b: &mut &'a [u8]) -> Result<&'a [u8]> {
    let n = get_word(take(b, 4)?, 0, 4) as usize;
    take(b, n)
}

fn encode(states: &[VcpuState]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in states {
        put_blob(&mut out, &s.ctx);
        put_blob(&mut out, &s.ext);
        put_blob(&mut out, &s.xsave);
        let m: Vec<u8> = s
            .msrs
            .iter()
            .flat_map(|&(i, v)| [i.to_le_bytes().as_slice(), &v.to_le_bytes()].concat())
            .collect();
        put_blob(&mut out, &m);
    }
    out
}

fn decode(mut b: &[u8], n: u32) -> Result<Vec<VcpuState>> {
    let mut v = Vec::new();
    if b.is_empty() {
        return Ok(vec![VcpuState::default(); n as usize]);
    }
    for _ in 0..n {
        let ctx = take_blob(&mut b)?.to_vec();
        let ext = take_blob(&mut b)?.to_vec();
        let xsave = take_blob(&mut b)?.to_vec();
        let msrs = take_blob(&mut b)?
            .chunks_exact(12)
            .map(|c| (get_word(c, 0, 4) as u32, get_word(c, 4, 8)))
            .collect();
        v.push(VcpuState {
            ctx,
            ext,
            xsave,
            msrs,
        });
    }
    Ok(v)
}

impl Domain {
    fn require_pv_vcpu(&self, vcpu: u32) -> Result<()> {
        self.require_alive()?;
        if !self.is_pv() {
            return err(libc::EINVAL, "PV vCPU state of a non-PV domain");
        }
        if vcpu >= self.vcpus() {
            return err(libc::ESRCH, format!("no vCPU {vcpu}"));
        }
        Ok(())
    }

    pub(crate) fn vcpu_states(&self) -> Result<Vec<VcpuState>> {
        let b = match std::fs::read(self.dir().join(F_VCPUS)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(crate::error::Error::io("vcpus state", e)),
        };
        decode(&b, self.vcpus())
    }

    fn update_vcpu(&self, vcpu: u32, f: impl FnOnce(&mut VcpuState)) -> Result<()> {
        let _g = self.locked()?;
        let mut all = self.vcpu_states()?;
        f(&mut all[vcpu as usize]);
        self.write_state(F_VCPUS, &encode(&all))
    }

    /// `XEN_DOMCTL_getvcpucontext`: the guest-width context (5168 or 2800
    /// bytes), cr3 and GDT frames as MFNs, `flags` with VGCF_online while the
    /// vCPU is up. A vCPU never set reads as zeros (plus its online flag).
    pub fn vcpu_context(&self, vcpu: u32) -> Result<Vec<u8>> {
        self.require_pv_vcpu(vcpu)?;
        let l = CtxLayout::for_bits(self.address_size());
        let mut c = self.vcpu_states()?.swap_remove(vcpu as usize).ctx;
        c.resize(l.size, 0);
        let mut flags = l.get(&c, l.flags) & !VGCF_ONLINE;
        if self.vcpu_online(vcpu) {
            flags |= VGCF_ONLINE;
        }
        l.put(&mut c, l.flags, flags);
        Ok(c)
    }

    /// `XEN_DOMCTL_setvcpucontext`, with the checks of Xen's
    /// `arch_set_info_guest` (each EINVAL): the size of the guest's width;
    /// canonical addresses (64-bit); `ldt_base` page-aligned and at most 8192
    /// LDT entries; at most 7168 GDT entries, each GDT frame the domain's and
    /// not a page table; cr3 a frame of the domain that validates as a root
    /// table of the guest's levels (typing every table under it). Then the
    /// context is stored and the vCPU comes online.
    pub fn set_vcpu_context(&self, vcpu: u32, ctx: &[u8]) -> Result<()> {
        self.require_pv_vcpu(vcpu)?;
        let bits32 = self.address_size() == 32;
        let l = CtxLayout::for_bits(self.address_size());
        if ctx.len() != l.size {
            return err(
                libc::EINVAL,
                format!("vCPU context of {} bytes, wanted {}", ctx.len(), l.size),
            );
        }
        if let Some(&o) = l.canonical.iter().find(|&&o| !canonical(l.get(ctx, o))) {
            return err(libc::EINVAL, format!("non-canonical address at offset {o}"));
        }
        if l.get(ctx, l.ldt_base) & 0xfff != 0 || l.get(ctx, l.ldt_ents) > 8192 {
            return err(libc::EINVAL, "bad LDT base or size");
        }
        let gdt_ents = l.get(ctx, l.gdt_ents);
        if gdt_ents > 14 * 512 {
            return err(libc::EINVAL, format!("{gdt_ents} GDT entries"));
        }
        for i in 0..gdt_ents.div_ceil(512) as usize {
            let f = l.get(ctx, l.gdt_frames + i * l.word);
            if !self.owns_frame(f) || self.frame_type(f) & TYPE_LEVEL_MASK != 0 {
                return err(
                    libc::EINVAL,
                    format!("GDT frame {f:#x} is not a usable page"),
                );
            }
        }
        let root = cr3_to_frame(bits32, l.get(ctx, l.ctrlreg + 3 * l.word));
        self.validate_table(root, self.pt_levels())?;
        self.update_vcpu(vcpu, |s| s.ctx = ctx.to_vec())?;
        self.set_vcpu_up(vcpu, true);
        Ok(())
    }

    pub(crate) fn set_vcpu_up(&self, vcpu: u32, up: bool) {
        let mut on: Vec<u16> = (0..self.vcpus())
            .filter(|&v| self.vcpu_online(v))
            .map(|v| v as u16)
            .collect();
        on.retain(|&v| u32::from(v) != vcpu);
        if up {
            on.push(vcpu as u16);
        }
        self.set_online(&on);
    }

    /// Overwrite vCPU `vcpu`'s stored context without checks (the guest's own
    /// register changes, e.g. rdx at suspend).
    pub(crate) fn store_vcpu_context(&self, vcpu: u32, ctx: &[u8]) -> Result<()> {
        self.update_vcpu(vcpu, |s| s.ctx = ctx.to_vec())
    }

    /// `XEN_DOMCTL_get_ext_vcpucontext`: 64 bytes, `vcpu` and `size` (64)
    /// filled in as Xen does.
    pub fn ext_vcpu_context(&self, vcpu: u32) -> Result<Vec<u8>> {
        self.require_pv_vcpu(vcpu)?;
        let mut e = self.vcpu_states()?.swap_remove(vcpu as usize).ext;
        e.resize(EXT_VCPU_CONTEXT_SIZE, 0);
        put_word(&mut e, 0, 4, u64::from(vcpu));
        put_word(&mut e, 4, 4, EXT_VCPU_CONTEXT_SIZE as u64);
        Ok(e)
    }

    /// `XEN_DOMCTL_set_ext_vcpucontext`: EINVAL when `size` is below the
    /// vMCE part (32) or above 64, or a callback address is non-canonical;
    /// EPERM for MCG_CAP bits the host can't give (`vmce_restore_vcpu`).
    pub fn set_ext_vcpu_context(&self, vcpu: u32, ext: &[u8]) -> Result<()> {
        self.require_pv_vcpu(vcpu)?;
        if ext.len() < 8 {
            return err(libc::EINVAL, "extended context too short");
        }
        let size = get_word(ext, 4, 4) as usize;
        if !(32..=EXT_VCPU_CONTEXT_SIZE).contains(&size) || ext.len() < size {
            return err(libc::EINVAL, format!("extended context size {size}"));
        }
        if !canonical(get_word(ext, 8, 8)) || !canonical(get_word(ext, 16, 8)) {
            return err(libc::EINVAL, "non-canonical sysenter/syscall32 callback");
        }
        if size >= 40 && get_word(ext, 32, 8) & !MCG_CAP_ALLOWED != 0 {
            return err(libc::EPERM, "MCG_CAP bits the host doesn't offer");
        }
        let mut e = ext[..size].to_vec();
        e.resize(EXT_VCPU_CONTEXT_SIZE, 0);
        self.update_vcpu(vcpu, |s| s.ext = e)
    }

    /// The host's XSAVE feature mask (`xfeature_mask`; 0 would mean no XSAVE).
    pub fn xsave_features(&self) -> u64 {
        XFEATURE_MASK
    }

    /// `XEN_DOMCTL_getvcpuextstate` size: `16 + xsave area` for the host's
    /// features.
    pub fn xsave_size(&self) -> usize {
        XSAVE_HDR + XSAVE_AREA
    }

    /// `XEN_DOMCTL_getvcpuextstate`: `{u64 xcr0, u64 xcr0_accum, area}`.
    pub fn vcpu_xsave(&self, vcpu: u32) -> Result<Vec<u8>> {
        self.require_pv_vcpu(vcpu)?;
        let mut x = self.vcpu_states()?.swap_remove(vcpu as usize).xsave;
        if x.is_empty() {
            x = vec![0u8; self.xsave_size()];
            put_word(&mut x, 0, 8, 1);
            put_word(&mut x, 8, 8, 1);
            put_word(&mut x, XSAVE_HDR, 2, 0x37f); // FCW after FNINIT
            put_word(&mut x, XSAVE_HDR + 24, 4, 0x1f80); // MXCSR
        }
        Ok(x)
    }

    /// `XEN_DOMCTL_setvcpuextstate`, as Xen's `validate_xstate` (EINVAL):
    /// at least the 16-byte header and at most the host's size; xcr0 has x87,
    /// AVX only with SSE, xcr0 within xcr0_accum within the host's features;
    /// with an area, its `xstate_bv` within xcr0_accum and `xcomp_bv` zero.
    pub fn set_vcpu_xsave(&self, vcpu: u32, blob: &[u8]) -> Result<()> {
        self.require_pv_vcpu(vcpu)?;
        if blob.len() < XSAVE_HDR || blob.len() > self.xsave_size() {
            return err(libc::EINVAL, format!("xsave state of {} bytes", blob.len()));
        }
        let xcr0 = get_word(blob, 0, 8);
        let accum = get_word(blob, 8, 8);
        if xcr0 & 1 == 0
            || (xcr0 & 4 != 0 && xcr0 & 2 == 0)
            || xcr0 & !accum != 0
            || accum & !XFEATURE_MASK != 0
        {
            return err(
                libc::EINVAL,
                format!("bad xcr0 {xcr0:#x} / accum {accum:#x}"),
            );
        }
        if blob.len() >= XSAVE_HDR + 512 + 16 {
            let bv = get_word(blob, XSAVE_HDR + 512, 8);
            let comp = get_word(blob, XSAVE_HDR + 520, 8);
            if bv & !accum != 0 || comp != 0 {
                return err(libc::EINVAL, "bad XSAVE header");
            }
        }
        let mut x = blob.to_vec();
        x.resize(self.xsave_size(), 0);
        self.update_vcpu(vcpu, |s| s.xsave = x)
    }

    /// `XEN_DOMCTL_get_vcpu_msrs` without a buffer: the most MSRs a vCPU
    /// reports (Xen's PV list).
    pub fn max_vcpu_msrs(&self) -> u32 {
        PV_MSRS.len() as u32
    }

    /// `XEN_DOMCTL_get_vcpu_msrs`: the non-zero MSRs of Xen's PV list.
    pub fn vcpu_msrs(&self, vcpu: u32) -> Result<Vec<(u32, u64)>> {
        self.require_pv_vcpu(vcpu)?;
        let mut m = self.vcpu_states()?.swap_remove(vcpu as usize).msrs;
        m.retain(|&(_, v)| v != 0);
        Ok(m)
    }

    /// `XEN_DOMCTL_set_vcpu_msrs`, as Xen's `guest_wrmsr` on this host
    /// (EINVAL): SPEC_CTRL only IBRS/STIBP/SSBD, MISC_FEATURES_ENABLES only
    /// CPUID faulting, TSC_AUX 32 bits; the AMD DR address masks need DBEXT,
    /// which the host lacks; any other index is refused.
    pub fn set_vcpu_msrs(&self, vcpu: u32, msrs: &[(u32, u64)]) -> Result<()> {
        self.require_pv_vcpu(vcpu)?;
        for &(i, v) in msrs {
            let ok = match i {
                0x48 => v & !0x7 == 0,
                0x140 => v & !1 == 0,
                0xc000_0103 => v >> 32 == 0,
                _ => false,
            };
            if !ok {
                return err(libc::EINVAL, format!("MSR {i:#x} = {v:#x} refused"));
            }
        }
        self.update_vcpu(vcpu, |s| {
            for &(i, v) in msrs {
                s.msrs.retain(|&(j, _)| j != i);
                s.msrs.push((i, v));
            }
            s.msrs.sort_unstable();
        })
    }
}
