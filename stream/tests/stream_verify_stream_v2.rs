//! Cross-check with Debian's `verify-stream-v2` (xen-utils-4.17): the
//! representative streams our writer produces pass it, and the places where
//! it is wrong (too strict on valid streams, too lenient on invalid ones)
//! are pinned down next to our verdict.
//!
//! Where verify-stream-v2 is too strict (rejects valid streams): optional
//! records (bit 31), TOOLSTACK (crashes with a "Script Error"), big-endian
//! streams ("unable to validate"), a checkpointed stream ending at EOF after
//! CHECKPOINT ("Stream truncated").
//! Where it is too lenient (accepts invalid streams): it checks no order at
//! all, so records of the other guest type, memory before STATIC_DATA_END,
//! PAGE_DATA after vcpu records and a wrong P2M frame count all pass.

mod stream_support;

use stream_support::*;
use xcmig_stream::{
    CpuidLeaf, DomainHeader, DomainType, Endian, HvmParam, ImageHeader, MsrEntry, PageType,
    PfnEntry, Reader, RecordType, StreamEnd, TscInfo, VcpuKind, Version, Writer, WriterOptions,
    X86PvInfo,
};

fn writer(dtype: DomainType, version: Version) -> Writer<Vec<u8>> {
    let opts = WriterOptions {
        image: ImageHeader {
            version,
            endian: Endian::Little,
        },
        ..WriterOptions::default()
    };
    Writer::with_options(Vec::new(), &DomainHeader::new(dtype, 4, 17), opts).unwrap()
}

fn pages(n: usize, first_pfn: u64) -> (Vec<PfnEntry>, Vec<Vec<u8>>) {
    let entries = (0..n as u64)
        .map(|i| PfnEntry::new(first_pfn + i, PageType::NoTab))
        .collect();
    let data = (0..n).map(|i| vec![i as u8; 4096]).collect();
    (entries, data)
}

fn write_pages(w: &mut Writer<Vec<u8>>, n: usize, first_pfn: u64) {
    let (entries, data) = pages(n, first_pfn);
    let slices: Vec<&[u8]> = data.iter().map(|p| &p[..]).collect();
    w.write_page_data(&entries, &slices).unwrap();
}

fn ours(bytes: &[u8]) -> Result<StreamEnd, xcmig_stream::Error> {
    Reader::new(bytes)?.verify_to_end()
}

fn hvm_end_of_checkpoint(w: &mut Writer<Vec<u8>>) {
    w.write_x86_tsc_info(&TscInfo {
        mode: 0,
        gtsc_khz: 2_400_000,
        elapsed_nsec: 1_000_000_007,
        incarnation: 3,
    })
    .unwrap();
    w.write_hvm_params(&[
        HvmParam {
            index: 1,
            value: 0xfeff_c000,
        },
        HvmParam { index: 2, value: 9 },
    ])
    .unwrap();
    w.write_hvm_context(&[0x5a; 1234]).unwrap();
}

fn hvm_v3_stream() -> Vec<u8> {
    let mut w = writer(DomainType::X86Hvm, Version::V3);
    w.write_x86_cpuid_policy(&[CpuidLeaf {
        leaf: 1,
        subleaf: u32::MAX,
        a: 0x806ec,
        b: 0,
        c: 0x7ffa_fbff,
        d: 0xbfeb_fbff,
    }])
    .unwrap();
    w.write_x86_msr_policy(&[MsrEntry {
        idx: 0xce,
        flags: 0,
        val: 0,
    }])
    .unwrap();
    w.write_static_data_end().unwrap();
    for batch in 0..4 {
        write_pages(&mut w, 64, batch * 64);
    }
    w.write_page_data(
        &[
            PfnEntry::new(0x400, PageType::XTab),
            PfnEntry::new(0x401, PageType::XAlloc),
            PfnEntry::new(0x402, PageType::Broken),
        ],
        &[],
    )
    .unwrap();
    w.write_verify().unwrap();
    write_pages(&mut w, 8, 0);
    hvm_end_of_checkpoint(&mut w);
    w.write_end().unwrap();
    w.into_inner()
}

fn hvm_checkpointed_stream() -> Vec<u8> {
    let mut w = writer(DomainType::X86Hvm, Version::V3);
    w.write_static_data_end().unwrap();
    for cp in 0..3 {
        write_pages(&mut w, 16, cp * 16);
        hvm_end_of_checkpoint(&mut w);
        w.write_checkpoint().unwrap();
    }
    w.write_end().unwrap();
    w.into_inner()
}

fn hvm_v2_stream() -> Vec<u8> {
    let mut w = writer(DomainType::X86Hvm, Version::V2);
    write_pages(&mut w, 32, 0);
    hvm_end_of_checkpoint(&mut w);
    w.write_end().unwrap();
    w.into_inner()
}

fn pv_stream(width: u8, version: Version) -> Vec<u8> {
    let mut w = writer(DomainType::X86Pv, version);
    w.write_x86_pv_info(&X86PvInfo {
        guest_width: width,
        pt_levels: if width == 8 { 4 } else { 3 },
    })
    .unwrap();
    if version == Version::V3 {
        w.write_static_data_end().unwrap();
    }
    let per_frame = 4096 / u32::from(width);
    let max_pfn = 4 * per_frame - 1;
    w.write_x86_pv_p2m_frames(0, max_pfn, &[0x10, 0x11, 0x12, 0x13])
        .unwrap();
    let types = [
        PageType::L4Tab,
        PageType::L3TabPin,
        PageType::L2Tab,
        PageType::L1Tab,
        PageType::NoTab,
        PageType::XTab,
    ];
    let entries: Vec<PfnEntry> = types
        .iter()
        .enumerate()
        .map(|(i, &t)| PfnEntry::new(i as u64, t))
        .collect();
    let data = vec![0x11u8; 5 * 4096];
    w.write_page_data(&entries, &[&data]).unwrap();
    write_pages(&mut w, 32, 0x20);
    w.write_x86_tsc_info(&TscInfo {
        mode: 1,
        gtsc_khz: 1_000_000,
        elapsed_nsec: 42,
        incarnation: 0,
    })
    .unwrap();
    w.write_shared_info(&[0x22; 4096]).unwrap();
    let basic = if width == 8 { 5168 } else { 2800 };
    for vcpu in 0..2 {
        w.write_x86_pv_vcpu(VcpuKind::Basic, vcpu, &vec![0x33; basic])
            .unwrap();
        w.write_x86_pv_vcpu(VcpuKind::Extended, vcpu, &[0x44; 128])
            .unwrap();
        w.write_x86_pv_vcpu(VcpuKind::Xsave, vcpu, &[0x55; 592])
            .unwrap();
        w.write_x86_pv_vcpu(VcpuKind::Msrs, vcpu, &[0x66; 32])
            .unwrap();
    }
    w.write_end().unwrap();
    w.into_inner()
}

#[test]
fn writer_streams_pass_verify_stream_v2_and_ours() {
    let streams = [
        ("hvm-v3", hvm_v3_stream()),
        ("hvm-v3-checkpointed", hvm_checkpointed_stream()),
        ("hvm-v2", hvm_v2_stream()),
        ("pv64-v3", pv_stream(8, Version::V3)),
        ("pv32-v3", pv_stream(4, Version::V3)),
        ("pv64-v2", pv_stream(8, Version::V2)),
    ];
    for (name, bytes) in &streams {
        assert_eq!(ours(bytes).unwrap(), StreamEnd::End, "{name}");
        verify_stream_v2(name, bytes).unwrap();
    }
}

#[test]
fn hand_built_vectors_pass_verify_stream_v2() {
    verify_stream_v2("vec-hvm", &hvm_v3(E::Le)).unwrap();
    verify_stream_v2("vec-pv", &pv_v3(E::Le)).unwrap();
}

/// Valid streams verify-stream-v2 refuses.
#[test]
fn verify_stream_v2_is_too_strict_on_these_valid_streams() {
    let mut w = writer(DomainType::X86Hvm, Version::V3);
    w.write_optional(RecordType(0x8000_0042), b"optional data")
        .unwrap();
    w.write_static_data_end().unwrap();
    w.write_end().unwrap();
    let optional = w.into_inner();

    let mut w = writer(DomainType::X86Hvm, Version::V3);
    w.write_static_data_end().unwrap();
    w.write_toolstack(b"toolstack").unwrap();
    w.write_end().unwrap();
    let toolstack = w.into_inner();

    let big_endian = hvm_v3(E::Be);

    let mut w = writer(DomainType::X86Hvm, Version::V3);
    w.write_static_data_end().unwrap();
    write_pages(&mut w, 1, 0);
    w.write_checkpoint().unwrap();
    let eof_after_checkpoint = w.into_inner();

    for (name, bytes, end) in [
        ("optional", &optional, StreamEnd::End),
        ("toolstack", &toolstack, StreamEnd::End),
        ("big-endian", &big_endian, StreamEnd::End),
        (
            "eof-after-checkpoint",
            &eof_after_checkpoint,
            StreamEnd::EofAfterCheckpoint,
        ),
    ] {
        assert_eq!(ours(bytes).unwrap(), end, "{name}");
        assert!(
            verify_stream_v2(name, bytes).is_err(),
            "{name}: verify-stream-v2 now accepts it; update the notes"
        );
    }
}

/// Invalid streams verify-stream-v2 accepts (it checks no record order).
#[test]
fn verify_stream_v2_is_too_lenient_on_these_invalid_streams() {
    let e = E::Le;
    let hdr = |t| cat(&[image_header(3, 0), domain_header(e, t, 4, 17)]);
    let pd = record(
        e,
        PAGE_DATA,
        &page_data_body(e, &[pfn_entry(0, 1)], &[page(1)]),
    );
    let cases = [
        (
            "hvm-context-in-pv",
            cat(&[
                hdr(PV),
                record(e, X86_PV_INFO, &pv_info_body(8, 4)),
                record(e, STATIC_DATA_END, &[]),
                record(e, X86_PV_P2M_FRAMES, &p2m_frames_body(e, 0, 511, &[1])),
                pd.clone(),
                record(e, HVM_CONTEXT, &[1; 8]),
                record(e, END, &[]),
            ]),
        ),
        (
            "page-data-before-static-data-end",
            cat(&[
                hdr(HVM),
                pd.clone(),
                record(e, STATIC_DATA_END, &[]),
                record(e, END, &[]),
            ]),
        ),
        (
            "page-data-after-vcpu",
            cat(&[
                hdr(PV),
                record(e, X86_PV_INFO, &pv_info_body(8, 4)),
                record(e, STATIC_DATA_END, &[]),
                record(e, X86_PV_P2M_FRAMES, &p2m_frames_body(e, 0, 511, &[1])),
                pd.clone(),
                record(e, X86_PV_VCPU_BASIC, &vcpu_body(e, 0, &[0; 5168])),
                pd.clone(),
                record(e, END, &[]),
            ]),
        ),
        (
            "p2m-frame-count",
            cat(&[
                hdr(PV),
                record(e, X86_PV_INFO, &pv_info_body(8, 4)),
                record(e, STATIC_DATA_END, &[]),
                record(e, X86_PV_P2M_FRAMES, &p2m_frames_body(e, 0, 5000, &[1])),
                pd,
                record(e, X86_PV_VCPU_BASIC, &vcpu_body(e, 0, &[0; 5168])),
                record(e, END, &[]),
            ]),
        ),
    ];
    for (name, bytes) in &cases {
        assert!(ours(bytes).unwrap_err().violation().is_some(), "{name}");
        verify_stream_v2(name, bytes)
            .unwrap_or_else(|e| panic!("{name}: verify-stream-v2 now rejects it ({e})"));
    }
}
