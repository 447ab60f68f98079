//! Hand-built libxc streams (labelled builders in `stream_support`), read
//! with the codec: every record type, both byte orders, v2 and v3, the
//! streaming PAGE_DATA path and the back channel.

mod stream_support;

use stream_support::*;
use xcmig_stream::{
    BackChannelReader, Checkpoints, CpuidLeaf, DomainType, Endian, GrammarOptions, HvmParam, Item,
    MsrEntry, PageType, PfnEntry, Reader, ReaderOptions, Record, RecordType, StreamEnd, TscInfo,
    VcpuKind, Version, WarningKind, X86PvInfo,
};

fn endian(e: E) -> Endian {
    match e {
        E::Le => Endian::Little,
        E::Be => Endian::Big,
    }
}

fn check_hvm_v3(e: E) {
    let bytes = hvm_v3(e);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.image_header().version, Version::V3);
    assert_eq!(r.image_header().endian, endian(e));
    let d = *r.domain_header();
    assert_eq!(d.domain_type, DomainType::X86Hvm);
    assert_eq!((d.page_shift, d.xen_major, d.xen_minor), (12, 4, 17));
    assert!(!d.is_legacy_converted());

    match r.next_record().unwrap().unwrap() {
        Record::X86CpuidPolicy(p) => assert_eq!(
            p.to_vec(),
            vec![CpuidLeaf {
                leaf: 0,
                subleaf: u32::MAX,
                a: 0xd,
                b: 0x756e_6547,
                c: 0x6c65_746e,
                d: 0x4965_6e69
            }]
        ),
        other => panic!("expected CPUID policy, got {other:?}"),
    }
    match r.next_record().unwrap().unwrap() {
        Record::X86MsrPolicy(p) => assert_eq!(
            p.to_vec(),
            vec![MsrEntry {
                idx: 0xce,
                flags: 0,
                val: 0x8000_0000
            }]
        ),
        other => panic!("expected MSR policy, got {other:?}"),
    }
    assert_eq!(r.next_record().unwrap(), Some(Record::StaticDataEnd));
    match r.next_record().unwrap().unwrap() {
        Record::PageData(pd) => {
            assert_eq!(
                pd.entries(),
                &[
                    PfnEntry::new(0x10, PageType::NoTab),
                    PfnEntry::new(0x11, PageType::XTab),
                    PfnEntry::new(0x12, PageType::NoTab),
                ]
            );
            assert_eq!(pd.data_pages(), 2);
            let pages: Vec<_> = pd.pages().collect();
            assert_eq!(pages[0].1.unwrap(), &page(0xaa)[..]);
            assert!(pages[1].1.is_none());
            assert_eq!(pages[2].1.unwrap(), &page(0x55)[..]);
        }
        other => panic!("expected PAGE_DATA, got {other:?}"),
    }
    assert_eq!(
        r.next_record().unwrap(),
        Some(Record::X86TscInfo(TscInfo {
            mode: 0,
            gtsc_khz: 2_000_000,
            elapsed_nsec: 123_456_789,
            incarnation: 1
        }))
    );
    match r.next_record().unwrap().unwrap() {
        Record::HvmParams(p) => assert_eq!(
            p.to_vec(),
            vec![
                HvmParam {
                    index: 1,
                    value: 0xfeff_e000
                },
                HvmParam { index: 2, value: 7 }
            ]
        ),
        other => panic!("expected HVM_PARAMS, got {other:?}"),
    }
    assert_eq!(
        r.next_record().unwrap(),
        Some(Record::HvmContext(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]))
    );
    assert_eq!(r.next_record().unwrap(), Some(Record::End));
    assert_eq!(r.next_record().unwrap(), None);
    assert_eq!(r.end(), Some(StreamEnd::End));
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    r.expect_eof().unwrap();
}

#[test]
fn hvm_v3_little_endian_stream_reads_every_field() {
    check_hvm_v3(E::Le);
}

#[test]
fn hvm_v3_big_endian_stream_reads_every_field() {
    check_hvm_v3(E::Be);
}

fn check_pv_v3(e: E) {
    let bytes = pv_v3(e);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.domain_header().domain_type, DomainType::X86Pv);
    assert_eq!(
        r.next_record().unwrap(),
        Some(Record::X86PvInfo(X86PvInfo {
            guest_width: 8,
            pt_levels: 4
        }))
    );
    assert_eq!(r.next_record().unwrap(), Some(Record::StaticDataEnd));
    match r.next_record().unwrap().unwrap() {
        Record::X86PvP2mFrames(p) => {
            assert_eq!((p.start_pfn, p.end_pfn), (0, 1023));
            assert_eq!(p.frames.to_vec(), vec![0x20, 0x21]);
        }
        other => panic!("expected P2M frames, got {other:?}"),
    }
    match r.next_record().unwrap().unwrap() {
        Record::PageData(pd) => {
            assert_eq!(pd.entries()[1], PfnEntry::new(0x2, PageType::L4TabPin));
            assert_eq!(pd.data(), &[page(1), page(2)].concat()[..]);
        }
        other => panic!("expected PAGE_DATA, got {other:?}"),
    }
    assert!(matches!(
        r.next_record().unwrap(),
        Some(Record::X86TscInfo(TscInfo { mode: 1, .. }))
    ));
    assert_eq!(
        r.next_record().unwrap(),
        Some(Record::SharedInfo(&page(0x33)[..]))
    );
    for (kind, len, fill) in [
        (VcpuKind::Basic, 5168, 0x44),
        (VcpuKind::Extended, 64, 0x45),
        (VcpuKind::Xsave, 24, 0x46),
        (VcpuKind::Msrs, 32, 0x47),
    ] {
        match r.next_record().unwrap().unwrap() {
            Record::X86PvVcpu(v) => {
                assert_eq!(v.kind, kind);
                assert_eq!(v.vcpu_id, 0);
                assert_eq!(v.context, &vec![fill; len][..]);
            }
            other => panic!("expected vcpu record, got {other:?}"),
        }
    }
    assert_eq!(r.next_record().unwrap(), Some(Record::End));
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
}

#[test]
fn pv_v3_little_endian_stream_reads_every_field() {
    check_pv_v3(E::Le);
}

#[test]
fn pv_v3_big_endian_stream_reads_every_field() {
    check_pv_v3(E::Be);
}

#[test]
fn streaming_reader_reads_pages_into_caller_memory() {
    let bytes = hvm_v3(E::Le);
    let mut r = Reader::new(&bytes[..]).unwrap();
    let mut guest = vec![0u8; 0x20 * 4096];
    let mut records = 0;
    while let Some(item) = r.next_item().unwrap() {
        records += 1;
        if let Item::Pages(mut pr) = item {
            let entries: Vec<PfnEntry> = pr.entries().to_vec();
            assert_eq!(pr.data_pages(), 2);
            for e in entries.iter().filter(|e| e.page_type.has_data()) {
                let at = e.pfn as usize * 4096;
                pr.read_pages(&mut guest[at..at + 4096]).unwrap();
            }
            assert_eq!(pr.remaining_pages(), 0);
        }
    }
    assert_eq!(records, 8);
    assert_eq!(&guest[0x10 * 4096..0x11 * 4096], &page(0xaa)[..]);
    assert_eq!(&guest[0x12 * 4096..0x13 * 4096], &page(0x55)[..]);
    assert!(guest[0x11 * 4096..0x12 * 4096].iter().all(|&b| b == 0));
}

#[test]
fn streaming_reader_skips_unread_pages() {
    let bytes = hvm_v3(E::Be);
    let mut r = Reader::new(&bytes[..]).unwrap();
    let mut types = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        types.push(match item {
            Item::Record(rec) => rec.record_type(),
            Item::Pages(_) => RecordType::PAGE_DATA,
        });
    }
    assert_eq!(types.len(), 8);
    assert_eq!(types[3], RecordType::PAGE_DATA);
    assert_eq!(r.end(), Some(StreamEnd::End));
    assert_eq!(r.offset(), bytes.len() as u64);
}

#[test]
fn v2_stream_infers_static_data_end_from_first_page_data() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(2, 0),
        domain_header(e, HVM, 4, 6),
        record(
            e,
            PAGE_DATA,
            &page_data_body(e, &[pfn_entry(0, 1)], &[page(9)]),
        ),
        record(e, HVM_PARAMS, &hvm_params_body(e, &[(5, 6)])),
        record(e, HVM_CONTEXT, &[1; 16]),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.image_header().version, Version::V2);
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
}

#[test]
fn legacy_converted_stream_reports_xen_major_zero() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(2, 0),
        domain_header(e, HVM, 0, 1),
        record(e, END, &[]),
    ]);
    let r = Reader::new(&bytes[..]).unwrap();
    assert!(r.domain_header().is_legacy_converted());
    assert_eq!(r.domain_header().xen_minor, 1);
}

#[test]
fn toolstack_record_is_read_with_a_deprecation_warning() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, TOOLSTACK, b"libxl toolstack blob"),
        record(e, STATIC_DATA_END, &[]),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(
        r.next_record().unwrap(),
        Some(Record::Toolstack(b"libxl toolstack blob"))
    );
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
    let w = r.warnings();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].kind, WarningKind::DeprecatedToolstack);
    assert_eq!((w[0].offset, w[0].record_index), (40, 0));
}

#[test]
fn optional_record_is_carried_through_opaque() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, 0x8000_1234, b"anything at all"),
        record(e, STATIC_DATA_END, &[]),
        record(e, 0xffff_ffff, &[]),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(
        r.next_record().unwrap(),
        Some(Record::Optional {
            record_type: RecordType(0x8000_1234),
            body: b"anything at all"
        })
    );
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
    assert!(r.warnings().is_empty());
}

#[test]
fn verify_record_then_more_page_data_is_valid() {
    let e = E::Le;
    let pd = record(
        e,
        PAGE_DATA,
        &page_data_body(e, &[pfn_entry(0, 7)], &[page(7)]),
    );
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, STATIC_DATA_END, &[]),
        pd.clone(),
        record(e, VERIFY, &[]),
        pd,
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
}

#[test]
fn page_types_without_data_carry_no_page_bytes() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, STATIC_DATA_END, &[]),
        record(
            e,
            PAGE_DATA,
            &page_data_body(
                e,
                &[pfn_entry(0xd, 1), pfn_entry(0xe, 2), pfn_entry(0xf, 3)],
                &[],
            ),
        ),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    r.next_record().unwrap();
    match r.next_record().unwrap().unwrap() {
        Record::PageData(pd) => {
            let types: Vec<_> = pd.entries().iter().map(|e| e.page_type).collect();
            assert_eq!(types, [PageType::Broken, PageType::XAlloc, PageType::XTab]);
            assert_eq!(pd.data_pages(), 0);
            assert!(pd.data().is_empty());
        }
        other => panic!("expected PAGE_DATA, got {other:?}"),
    }
}

#[test]
fn every_valid_page_type_decodes_and_counts_data_pages() {
    let e = E::Le;
    let all: Vec<u8> = vec![0x0, 0x1, 0x2, 0x3, 0x4, 0x9, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf];
    let entries: Vec<u64> = all
        .iter()
        .enumerate()
        .map(|(i, &t)| pfn_entry(t, i as u64))
        .collect();
    let pages: Vec<Vec<u8>> = (0..9).map(page).collect();
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, STATIC_DATA_END, &[]),
        record(e, PAGE_DATA, &page_data_body(e, &entries, &pages)),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    r.next_record().unwrap();
    match r.next_record().unwrap().unwrap() {
        Record::PageData(pd) => {
            let bits: Vec<u8> = pd.entries().iter().map(|e| e.page_type.bits()).collect();
            assert_eq!(bits, all);
            assert_eq!(pd.data_pages(), 9);
            for (i, (_, p)) in pd.pages().take(9).enumerate() {
                assert_eq!(p.unwrap()[0], i as u8);
            }
        }
        other => panic!("expected PAGE_DATA, got {other:?}"),
    }
}

#[test]
fn checkpointed_stream_may_end_at_eof_after_checkpoint() {
    let e = E::Le;
    let pd = record(
        e,
        PAGE_DATA,
        &page_data_body(e, &[pfn_entry(0, 1)], &[page(1)]),
    );
    let ctx = record(e, HVM_CONTEXT, &[1; 8]);
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, STATIC_DATA_END, &[]),
        pd.clone(),
        ctx.clone(),
        record(e, CHECKPOINT, &[]),
        pd,
        ctx,
        record(e, CHECKPOINT, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::EofAfterCheckpoint);
    assert_eq!(r.grammar().checkpoints(), 2);
    assert_eq!(r.end(), Some(StreamEnd::EofAfterCheckpoint));
}

#[test]
fn checkpointed_stream_may_end_with_end_after_checkpoint() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, STATIC_DATA_END, &[]),
        record(
            e,
            PAGE_DATA,
            &page_data_body(e, &[pfn_entry(0, 1)], &[page(1)]),
        ),
        record(e, CHECKPOINT, &[]),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
}

#[test]
fn plain_stream_option_rejects_checkpoint() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, STATIC_DATA_END, &[]),
        record(e, CHECKPOINT, &[]),
        record(e, END, &[]),
    ]);
    let opts = ReaderOptions {
        grammar: GrammarOptions {
            checkpoints: Checkpoints::Reject,
            ..GrammarOptions::default()
        },
        ..ReaderOptions::default()
    };
    let mut r = Reader::with_options(&bytes[..], opts).unwrap();
    let err = r.verify_to_end().unwrap_err();
    assert_eq!(
        err.violation(),
        Some(xcmig_stream::Violation::CheckpointNotAllowed)
    );
    assert_eq!((err.offset, err.record_index), (48, Some(1)));
}

#[test]
fn back_channel_reads_dirty_pfn_lists_until_eof() {
    let e = E::Le;
    let bytes = cat(&[
        record(
            e,
            CHECKPOINT_DIRTY_PFN_LIST,
            &Bytes::new().u64(e, "pfn", 5).u64(e, "pfn", 9).done(),
        ),
        record(e, CHECKPOINT_DIRTY_PFN_LIST, &[]),
    ]);
    let mut r = BackChannelReader::new(&bytes[..], Endian::Little);
    match r.next_record().unwrap().unwrap() {
        Record::CheckpointDirtyPfnList(p) => assert_eq!(p.to_vec(), vec![5, 9]),
        other => panic!("expected dirty pfn list, got {other:?}"),
    }
    match r.next_record().unwrap().unwrap() {
        Record::CheckpointDirtyPfnList(p) => assert!(p.is_empty()),
        other => panic!("expected dirty pfn list, got {other:?}"),
    }
    assert_eq!(r.next_record().unwrap(), None);
}

#[test]
fn pv_32bit_p2m_frames_use_1024_entries_per_frame() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, PV, 4, 17),
        record(e, X86_PV_INFO, &pv_info_body(4, 3)),
        record(e, STATIC_DATA_END, &[]),
        // pfns 1000..=3000: frames 0, 1, 2 at 1024 entries per frame.
        record(
            e,
            X86_PV_P2M_FRAMES,
            &p2m_frames_body(e, 1000, 3000, &[7, 8, 9]),
        ),
        record(
            e,
            PAGE_DATA,
            &page_data_body(e, &[pfn_entry(0, 1)], &[page(1)]),
        ),
        record(e, X86_PV_VCPU_BASIC, &vcpu_body(e, 0, &vec![0; 2800])),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
    assert_eq!(r.grammar().pv_width(), Some(4));
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
}

#[test]
fn v2_pv_stream_infers_static_data_end_from_p2m_frames() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(2, 0),
        domain_header(e, PV, 4, 6),
        record(e, X86_PV_INFO, &pv_info_body(8, 4)),
        record(e, X86_PV_P2M_FRAMES, &p2m_frames_body(e, 0, 511, &[3])),
        record(
            e,
            PAGE_DATA,
            &page_data_body(e, &[pfn_entry(1, 1)], &[page(1)]),
        ),
        record(e, SHARED_INFO, &page(0)),
        record(e, X86_PV_VCPU_BASIC, &vcpu_body(e, 0, &vec![0; 5168])),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
}

#[test]
fn errata_empty_hvm_params_and_vcpu_records_warn() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, PV, 4, 17),
        record(e, X86_PV_INFO, &pv_info_body(8, 4)),
        record(e, STATIC_DATA_END, &[]),
        record(e, X86_PV_P2M_FRAMES, &p2m_frames_body(e, 0, 0, &[3])),
        record(
            e,
            PAGE_DATA,
            &page_data_body(e, &[pfn_entry(0, 0)], &[page(1)]),
        ),
        record(e, X86_PV_VCPU_BASIC, &vcpu_body(e, 0, &vec![0; 5168])),
        record(e, X86_PV_VCPU_EXTENDED, &vcpu_body(e, 0, &[])),
        record(e, X86_PV_VCPU_XSAVE, &vcpu_body(e, 0, &[])),
        record(e, X86_PV_VCPU_MSRS, &vcpu_body(e, 0, &[])),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
    let kinds: Vec<_> = r
        .warnings()
        .iter()
        .map(|w| (w.record_index, w.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (5, WarningKind::EmptyRecord),
            (6, WarningKind::EmptyRecord),
            (7, WarningKind::EmptyRecord)
        ]
    );

    let hvm = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, STATIC_DATA_END, &[]),
        record(e, HVM_PARAMS, &hvm_params_body(e, &[])),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&hvm[..]).unwrap();
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
    assert_eq!(r.warnings()[0].kind, WarningKind::EmptyRecord);
}

#[test]
fn libxenguest_order_hvm_context_before_params_warns() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, HVM, 4, 17),
        record(e, STATIC_DATA_END, &[]),
        record(
            e,
            PAGE_DATA,
            &page_data_body(e, &[pfn_entry(0, 1)], &[page(1)]),
        ),
        record(e, X86_TSC_INFO, &tsc_body(e, 0, 0, 0, 0)),
        record(e, HVM_CONTEXT, &[1; 40]),
        record(e, HVM_PARAMS, &hvm_params_body(e, &[(1, 2)])),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
    assert_eq!(r.warnings().len(), 1);
    assert_eq!(r.warnings()[0].kind, WarningKind::HvmParamsAfterHvmContext);
    assert_eq!(r.warnings()[0].record_type, RecordType::HVM_PARAMS);
}

#[test]
fn vcpu_sizes_xen_would_refuse_warn() {
    let e = E::Le;
    let bytes = cat(&[
        image_header(3, 0),
        domain_header(e, PV, 4, 17),
        record(e, X86_PV_INFO, &pv_info_body(8, 4)),
        record(e, STATIC_DATA_END, &[]),
        record(e, X86_PV_P2M_FRAMES, &p2m_frames_body(e, 0, 0, &[3])),
        record(
            e,
            PAGE_DATA,
            &page_data_body(e, &[pfn_entry(0, 0)], &[page(1)]),
        ),
        record(e, X86_PV_VCPU_BASIC, &vcpu_body(e, 0, &[0; 16])),
        record(e, X86_PV_VCPU_EXTENDED, &vcpu_body(e, 0, &[0; 136])),
        record(e, X86_PV_VCPU_XSAVE, &vcpu_body(e, 0, &[0; 8])),
        record(e, X86_PV_VCPU_MSRS, &vcpu_body(e, 0, &[0; 24])),
        record(e, END, &[]),
    ]);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
    let n = r
        .warnings()
        .iter()
        .filter(|w| matches!(w.kind, WarningKind::VcpuContextSize { .. }))
        .count();
    assert_eq!(n, 4);
}

/// Every reserved field and padding byte set, in an HVM and a PV stream.
fn dirty_streams() -> Vec<Vec<u8>> {
    let e = E::Le;
    let mut ih = image_header(3, 0x0002);
    ih[20] = 0xee;
    let mut dh_hvm = domain_header(e, HVM, 4, 17);
    dh_hvm[6] = 0xdd;
    let mut pd = page_data_body(e, &[pfn_entry(0, 0x10) | (0xab << 52)], &[page(1)]);
    pd[4] = 0xcc;
    let mut tsc = tsc_body(e, 1, 2, 3, 4);
    tsc[23] = 0xbb;
    let mut params = hvm_params_body(e, &[(1, 2)]);
    params[7] = 0xaa;
    let mut ctx = record(e, HVM_CONTEXT, &[1, 2, 3]);
    ctx[8 + 3 + 2] = 0x99;
    let hvm = cat(&[
        ih.clone(),
        dh_hvm,
        record(e, STATIC_DATA_END, &[]),
        record(e, PAGE_DATA, &pd),
        record(e, X86_TSC_INFO, &tsc),
        record(e, HVM_PARAMS, &params),
        ctx,
        record(e, END, &[]),
    ]);
    let mut info = pv_info_body(8, 4);
    info[5] = 0x88;
    let mut basic = vcpu_body(e, 0, &[0; 5168]);
    basic[6] = 0x77;
    let pv = cat(&[
        ih,
        domain_header(e, PV, 4, 17),
        record(e, X86_PV_INFO, &info),
        record(e, STATIC_DATA_END, &[]),
        record(e, X86_PV_P2M_FRAMES, &p2m_frames_body(e, 0, 0, &[1])),
        record(
            e,
            PAGE_DATA,
            &page_data_body(e, &[pfn_entry(0, 0)], &[page(1)]),
        ),
        record(e, X86_PV_VCPU_BASIC, &basic),
        record(e, END, &[]),
    ]);
    vec![hvm, pv]
}

#[test]
fn reserved_fields_are_errors_by_default_and_ignored_on_request() {
    use xcmig_stream::Reserved;
    for bytes in dirty_streams() {
        // Default: the first reserved field (image options) is an error.
        let e = Reader::new(&bytes[..]).unwrap_err();
        assert_eq!(e.kind, xcmig_stream::ErrorKind::ReservedOptions(2));
        let opts = ReaderOptions {
            reserved: Reserved::Ignore,
            ..ReaderOptions::default()
        };
        let mut r = Reader::with_options(&bytes[..], opts).unwrap();
        assert_eq!(r.image_header().endian, Endian::Little);
        let mut pfns = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            match rec {
                Record::PageData(pd) => pfns.extend(pd.entries().iter().map(|e| e.pfn)),
                Record::HvmContext(c) => assert_eq!(c, &[1, 2, 3]),
                Record::X86TscInfo(t) => assert_eq!(t.incarnation, 4),
                _ => {}
            }
        }
        assert_eq!(r.end(), Some(StreamEnd::End));
        // Bits 52-59 of a pfn entry are masked off, not part of the pfn.
        assert!(pfns.iter().all(|&p| p < 0x100));
        let mut r = Reader::with_options(&bytes[..], opts).unwrap();
        assert_eq!(r.verify_to_end().unwrap(), StreamEnd::End);
    }
}
