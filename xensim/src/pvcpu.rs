//! A booted PV guest's vCPUs: registers of a kernel at work, its GDT and
//! page-table root, the extended context, xsave state and MSRs, set through
//! the same calls a restore uses (so creation is checked like a restore).

use crate::domain::{frame_to_cr3, put_word, CtxLayout, Domain, VGCF_I387_VALID, VGCF_IN_KERNEL};
use crate::error::Result;
use crate::layout::{mix, Rng};
use crate::EXT_VCPU_CONTEXT_SIZE;

/// Flat ring-3 (64-bit PV kernel) and ring-1 (32-bit) selectors.
const KERNEL_CS_64: u64 = 0xe033;
const KERNEL_SS_64: u64 = 0xe02b;
const KERNEL_CS_32: u64 = 0xe019;
const KERNEL_SS_32: u64 = 0xe021;

/// Give vCPU `v` the context of a running kernel: cr3 = the root at
/// `root_mfn`, one GDT frame (16 entries), kernel text and stack addresses.
pub(crate) fn init_vcpu(d: &Domain, v: u32, seed: u64, root_mfn: u64, gdt_mfn: u64) -> Result<()> {
    let bits32 = d.address_size() == 32;
    let l = CtxLayout::for_bits(d.address_size());
    let mut c = vec![0u8; l.size];
    let mut rng = Rng::new(mix(seed, u64::from(v), 70));
    // FXSAVE image: FCW, MXCSR, then register contents.
    put_word(&mut c, 0, 2, 0x37f);
    put_word(&mut c, 24, 4, 0x1f80);
    rng.fill(&mut c[32..416]);
    l.put(&mut c, l.flags, VGCF_IN_KERNEL | VGCF_I387_VALID);
    let regs = l.flags + l.word;
    let (text, stack, cs, ss) = if bits32 {
        (0xc100_0000u64, 0xc080_0000u64, KERNEL_CS_32, KERNEL_SS_32)
    } else {
        (
            0xffff_ffff_8100_0000,
            0xffff_c900_4000_0000,
            KERNEL_CS_64,
            KERNEL_SS_64,
        )
    };
    // General-purpose registers (r15..rdi / ebx..eax) random.
    let gprs = if bits32 { 7 } else { 15 };
    for i in 0..gprs {
        let val = rng.next_u64();
        l.put(
            &mut c,
            regs + i * l.word,
            if bits32 { val & 0xffff_ffff } else { val },
        );
    }
    let rip = text + (rng.next_u64() % 0x80_0000);
    let rsp = stack + u64::from(v) * 0x4000 + 0x3f00;
    l.put(&mut c, l.rip, rip);
    l.put(&mut c, l.rsp, rsp);
    if bits32 {
        put_word(&mut c, l.rip + 4, 2, cs);
        put_word(&mut c, l.rip + 8, 4, 0x246);
        put_word(&mut c, l.rsp + 4, 2, ss);
    } else {
        put_word(&mut c, l.rip + 8, 2, cs);
        put_word(&mut c, l.rip + 16, 8, 0x246);
        put_word(&mut c, l.rsp + 8, 8, ss);
    }
    l.put(&mut c, l.gdt_frames, gdt_mfn);
    l.put(&mut c, l.gdt_ents, 16);
    l.put(&mut c, l.kernel_sp - l.word, ss);
    l.put(&mut c, l.kernel_sp, rsp + 0x100);
    l.put(&mut c, l.ctrlreg, 0x8005_003b); // cr0: PG, WP, NE, ET, TS, MP, PE
    l.put(
        &mut c,
        l.ctrlreg + 3 * l.word,
        frame_to_cr3(bits32, root_mfn),
    );
    l.put(&mut c, l.ctrlreg + 4 * l.word, 0x0010_06f0);
    if bits32 {
        put_word(&mut c, 2780, 4, KERNEL_CS_32);
        put_word(&mut c, 2784, 4, text + 0x1000);
        put_word(&mut c, 2788, 4, KERNEL_CS_32);
        put_word(&mut c, 2792, 4, text + 0x1100);
        put_word(&mut c, 2796, 4, 0x9);
    } else {
        put_word(&mut c, 5112, 8, text + 0x1000);
        put_word(&mut c, 5120, 8, text + 0x1100);
        put_word(&mut c, 5128, 8, text + 0x1200);
        put_word(&mut c, 5136, 8, 0x9);
        put_word(
            &mut c,
            5152,
            8,
            0xffff_8880_7fc0_0000 + u64::from(v) * 0x2_0000,
        );
    }
    d.set_vcpu_context(v, &c)?;

    let mut e = vec![0u8; EXT_VCPU_CONTEXT_SIZE];
    put_word(&mut e, 4, 4, EXT_VCPU_CONTEXT_SIZE as u64);
    if !bits32 {
        put_word(&mut e, 8, 8, text + 0x1300);
        put_word(&mut e, 16, 8, text + 0x1400);
        put_word(&mut e, 24, 2, 0xe023);
        put_word(&mut e, 26, 2, KERNEL_CS_64);
    }
    put_word(&mut e, 32, 8, 0x0100_0802); // MCG_CAP: SER, CTL_P, 2 banks
    d.set_ext_vcpu_context(v, &e)?;

    let mut x = vec![0u8; d.xsave_size()];
    put_word(&mut x, 0, 8, 0x7);
    put_word(&mut x, 8, 8, 0x7);
    x[16..16 + 512].copy_from_slice(&c[..512]);
    put_word(&mut x, 16 + 512, 8, 0x7);
    rng.fill(&mut x[16 + 576..]);
    d.set_vcpu_xsave(v, &x)?;
    d.set_vcpu_msrs(v, &[(0xc000_0103, u64::from(v)), (0x48, u64::from(v % 2))])
}
