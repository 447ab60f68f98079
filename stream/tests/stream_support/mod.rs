//! Labelled byte builders for libxc stream test vectors, shared by the
//! `stream_*` tests. Every field is written by name, in the byte order given,
//! independently of the codec under test.
#![allow(dead_code)]

/// Byte order of a hand-built stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E {
    Le,
    Be,
}

/// A byte buffer with named-field appenders.
#[derive(Clone, Debug, Default)]
pub struct Bytes {
    pub v: Vec<u8>,
}

impl Bytes {
    pub fn new() -> Bytes {
        Bytes { v: Vec::new() }
    }
    pub fn u8(mut self, _field: &str, x: u8) -> Self {
        self.v.push(x);
        self
    }
    pub fn u16(mut self, e: E, _field: &str, x: u16) -> Self {
        self.v.extend_from_slice(&match e {
            E::Le => x.to_le_bytes(),
            E::Be => x.to_be_bytes(),
        });
        self
    }
    pub fn u32(mut self, e: E, _field: &str, x: u32) -> Self {
        self.v.extend_from_slice(&match e {
            E::Le => x.to_le_bytes(),
            E::Be => x.to_be_bytes(),
        });
        self
    }
    pub fn u64(mut self, e: E, _field: &str, x: u64) -> Self {
        self.v.extend_from_slice(&match e {
            E::Le => x.to_le_bytes(),
            E::Be => x.to_be_bytes(),
        });
        self
    }
    pub fn raw(mut self, _field: &str, b: &[u8]) -> Self {
        self.v.extend_from_slice(b);
        self
    }
    pub fn zeros(mut self, _field: &str, n: usize) -> Self {
        self.v.resize(self.v.len() + n, 0);
        self
    }
    pub fn done(self) -> Vec<u8> {
        self.v
    }
}

/// Image header: marker, id, version, options, reserved (always big-endian).
pub fn image_header(version: u32, options: u16) -> Vec<u8> {
    Bytes::new()
        .u64(E::Be, "marker", u64::MAX)
        .u32(E::Be, "id", 0x5845_4E46)
        .u32(E::Be, "version", version)
        .u16(E::Be, "options", options)
        .u16(E::Be, "reserved", 0)
        .u32(E::Be, "reserved", 0)
        .done()
}

pub const HVM: u32 = 2;
pub const PV: u32 = 1;

/// Domain header: type, page_shift, reserved, xen_major, xen_minor.
pub fn domain_header(e: E, dtype: u32, major: u32, minor: u32) -> Vec<u8> {
    Bytes::new()
        .u32(e, "type", dtype)
        .u16(e, "page_shift", 12)
        .u16(e, "reserved", 0)
        .u32(e, "xen_major", major)
        .u32(e, "xen_minor", minor)
        .done()
}

/// A record: type, body_length, body, zero padding to 8.
pub fn record(e: E, rtype: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Bytes::new()
        .u32(e, "type", rtype)
        .u32(e, "body_length", body.len() as u32)
        .raw("body", body);
    let pad = (8 - body.len() % 8) % 8;
    b = b.zeros("padding", pad);
    b.done()
}

pub const END: u32 = 0x0;
pub const PAGE_DATA: u32 = 0x1;
pub const X86_PV_INFO: u32 = 0x2;
pub const X86_PV_P2M_FRAMES: u32 = 0x3;
pub const X86_PV_VCPU_BASIC: u32 = 0x4;
pub const X86_PV_VCPU_EXTENDED: u32 = 0x5;
pub const X86_PV_VCPU_XSAVE: u32 = 0x6;
pub const SHARED_INFO: u32 = 0x7;
pub const X86_TSC_INFO: u32 = 0x8;
pub const HVM_CONTEXT: u32 = 0x9;
pub const HVM_PARAMS: u32 = 0xa;
pub const TOOLSTACK: u32 = 0xb;
pub const X86_PV_VCPU_MSRS: u32 = 0xc;
pub const VERIFY: u32 = 0xd;
pub const CHECKPOINT: u32 = 0xe;
pub const CHECKPOINT_DIRTY_PFN_LIST: u32 = 0xf;
pub const STATIC_DATA_END: u32 = 0x10;
pub const X86_CPUID_POLICY: u32 = 0x11;
pub const X86_MSR_POLICY: u32 = 0x12;
/// xcmig's extension record (docs/compressed-page-data.md).
pub const XCMIG_COMPRESSED_PAGE_DATA: u32 = 0x5843_0001;

/// A PAGE_DATA pfn entry: type nibble in bits 60-63, pfn in bits 0-51.
pub fn pfn_entry(type_bits: u8, pfn: u64) -> u64 {
    (u64::from(type_bits) << 60) | pfn
}

/// A page filled with `fill`.
pub fn page(fill: u8) -> Vec<u8> {
    vec![fill; 4096]
}

/// XCMIG_COMPRESSED_PAGE_DATA body, field by field from the extension's
/// documented layout: count, compressor id, 3 reserved octets, pfn
/// entries, one u16 size per data page, then the pages' octets.
pub fn compressed_body(
    e: E,
    compressor: u8,
    entries: &[u64],
    sizes: &[u16],
    data: &[u8],
) -> Vec<u8> {
    let mut b = Bytes::new()
        .u32(e, "count", entries.len() as u32)
        .u8("compression", compressor)
        .zeros("reserved", 3);
    for &p in entries {
        b = b.u64(e, "pfn", p);
    }
    for &s in sizes {
        b = b.u16(e, "size", s);
    }
    b.raw("page_data", data).done()
}

/// PAGE_DATA body: count, reserved, pfn entries, then the pages.
pub fn page_data_body(e: E, entries: &[u64], pages: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Bytes::new()
        .u32(e, "count", entries.len() as u32)
        .u32(e, "reserved", 0);
    for &p in entries {
        b = b.u64(e, "pfn", p);
    }
    for p in pages {
        b = b.raw("page_data", p);
    }
    b.done()
}

/// X86_PV_INFO body: guest_width, pt_levels, 6 reserved bytes.
pub fn pv_info_body(width: u8, levels: u8) -> Vec<u8> {
    Bytes::new()
        .u8("guest_width", width)
        .u8("pt_levels", levels)
        .zeros("reserved", 6)
        .done()
}

/// X86_PV_P2M_FRAMES body: start, end, frame pfns.
pub fn p2m_frames_body(e: E, start: u32, end: u32, frames: &[u64]) -> Vec<u8> {
    let mut b = Bytes::new()
        .u32(e, "p2m_start_pfn", start)
        .u32(e, "p2m_end_pfn", end);
    for &f in frames {
        b = b.u64(e, "p2m_pfn", f);
    }
    b.done()
}

/// X86_PV_VCPU_* body: vcpu_id, reserved, context.
pub fn vcpu_body(e: E, vcpu: u32, ctx: &[u8]) -> Vec<u8> {
    Bytes::new()
        .u32(e, "vcpu_id", vcpu)
        .u32(e, "reserved", 0)
        .raw("context", ctx)
        .done()
}

/// X86_TSC_INFO body: mode, khz, nsec, incarnation, reserved.
pub fn tsc_body(e: E, mode: u32, khz: u32, nsec: u64, inc: u32) -> Vec<u8> {
    Bytes::new()
        .u32(e, "mode", mode)
        .u32(e, "khz", khz)
        .u64(e, "nsec", nsec)
        .u32(e, "incarnation", inc)
        .u32(e, "reserved", 0)
        .done()
}

/// HVM_PARAMS body: count, reserved, (index, value) pairs.
pub fn hvm_params_body(e: E, params: &[(u64, u64)]) -> Vec<u8> {
    let mut b = Bytes::new()
        .u32(e, "count", params.len() as u32)
        .u32(e, "reserved", 0);
    for &(i, v) in params {
        b = b.u64(e, "index", i).u64(e, "value", v);
    }
    b.done()
}

/// X86_CPUID_POLICY body: xen_cpuid_leaf_t entries.
pub fn cpuid_body(e: E, leaves: &[[u32; 6]]) -> Vec<u8> {
    let mut b = Bytes::new();
    for l in leaves {
        b = b
            .u32(e, "leaf", l[0])
            .u32(e, "subleaf", l[1])
            .u32(e, "a", l[2])
            .u32(e, "b", l[3])
            .u32(e, "c", l[4])
            .u32(e, "d", l[5]);
    }
    b.done()
}

/// X86_MSR_POLICY body: xen_msr_entry_t entries.
pub fn msr_body(e: E, msrs: &[(u32, u32, u64)]) -> Vec<u8> {
    let mut b = Bytes::new();
    for &(idx, flags, val) in msrs {
        b = b
            .u32(e, "idx", idx)
            .u32(e, "flags", flags)
            .u64(e, "val", val);
    }
    b.done()
}

/// Concatenates parts into one stream.
pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A minimal valid v3 HVM stream in byte order `e`: headers, CPUID and MSR
/// policy, STATIC_DATA_END, one PAGE_DATA of two pages (plus one XTAB),
/// TSC, HVM_PARAMS, HVM_CONTEXT, END.
pub fn hvm_v3(e: E) -> Vec<u8> {
    let opts = if e == E::Be { 1 } else { 0 };
    cat(&[
        image_header(3, opts),
        domain_header(e, HVM, 4, 17),
        record(
            e,
            X86_CPUID_POLICY,
            &cpuid_body(
                e,
                &[[0, u32::MAX, 0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]],
            ),
        ),
        record(e, X86_MSR_POLICY, &msr_body(e, &[(0xce, 0, 0x8000_0000)])),
        record(e, STATIC_DATA_END, &[]),
        record(
            e,
            PAGE_DATA,
            &page_data_body(
                e,
                &[
                    pfn_entry(0x0, 0x10),
                    pfn_entry(0xf, 0x11),
                    pfn_entry(0x0, 0x12),
                ],
                &[page(0xaa), page(0x55)],
            ),
        ),
        record(e, X86_TSC_INFO, &tsc_body(e, 0, 2_000_000, 123_456_789, 1)),
        record(
            e,
            HVM_PARAMS,
            &hvm_params_body(e, &[(1, 0xfeff_e000), (2, 7)]),
        ),
        record(e, HVM_CONTEXT, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        record(e, END, &[]),
    ])
}

/// A minimal valid v3 64-bit PV stream in byte order `e`.
pub fn pv_v3(e: E) -> Vec<u8> {
    let opts = if e == E::Be { 1 } else { 0 };
    cat(&[
        image_header(3, opts),
        domain_header(e, PV, 4, 17),
        record(e, X86_PV_INFO, &pv_info_body(8, 4)),
        record(e, STATIC_DATA_END, &[]),
        // pfns 0..=1023 at 512 entries per frame: 2 frames.
        record(
            e,
            X86_PV_P2M_FRAMES,
            &p2m_frames_body(e, 0, 1023, &[0x20, 0x21]),
        ),
        record(
            e,
            PAGE_DATA,
            &page_data_body(
                e,
                &[pfn_entry(0x0, 0x1), pfn_entry(0xc, 0x2)],
                &[page(1), page(2)],
            ),
        ),
        record(e, X86_TSC_INFO, &tsc_body(e, 1, 1_000_000, 5, 0)),
        record(e, SHARED_INFO, &page(0x33)),
        record(e, X86_PV_VCPU_BASIC, &vcpu_body(e, 0, &vec![0x44; 5168])),
        record(e, X86_PV_VCPU_EXTENDED, &vcpu_body(e, 0, &[0x45; 64])),
        record(e, X86_PV_VCPU_XSAVE, &vcpu_body(e, 0, &[0x46; 24])),
        record(e, X86_PV_VCPU_MSRS, &vcpu_body(e, 0, &[0x47; 32])),
        record(e, END, &[]),
    ])
}

/// Offsets of every structure boundary of a stream built from the parts
/// above: end of image header, domain header, each record header and body.
pub fn boundaries(stream: &[u8], e: E) -> Vec<usize> {
    let mut b = vec![0, 24, 40];
    let mut off = 40;
    while off + 8 <= stream.len() {
        let len = match e {
            E::Le => u32::from_le_bytes(stream[off + 4..off + 8].try_into().unwrap()),
            E::Be => u32::from_be_bytes(stream[off + 4..off + 8].try_into().unwrap()),
        } as usize;
        b.push(off + 8);
        off += 8 + len.div_ceil(8) * 8;
        b.push(off);
    }
    b
}

/// Debian's checker for libxc streams (from `xen-utils-4.17`).
pub const VERIFY_STREAM_V2: &str = "/usr/lib/xen-4.17/bin/verify-stream-v2";

/// Runs `verify-stream-v2 -f libxc` on `bytes`, written to a file under the
/// test's temporary directory; `Err` carries its output. Panics when the tool
/// is missing (`make test` installs it).
pub fn verify_stream_v2(name: &str, bytes: &[u8]) -> Result<(), String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    assert!(
        std::path::Path::new(VERIFY_STREAM_V2).exists(),
        "{VERIFY_STREAM_V2} is missing: install xen-utils-4.17 (make test does)"
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("verify-stream-v2");
    std::fs::create_dir_all(&dir).unwrap();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{}-{}-{seq}.xc", std::process::id(), name));
    std::fs::write(&path, bytes).unwrap();
    let out = xcmig_testkit::process::run(
        std::process::Command::new(VERIFY_STREAM_V2)
            .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python")
            .args(["-f", "libxc", "-i"])
            .arg(&path),
        std::time::Duration::from_secs(120),
    );
    let _ = std::fs::remove_file(&path);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name}: verify-stream-v2 exit {:?}: {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
