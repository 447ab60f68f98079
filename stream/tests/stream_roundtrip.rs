//! Property tests: random valid HVM and PV streams (every record type, both
//! byte orders, v2 and v3, checkpointed or not) go through the writer and
//! come back identical through both read paths; the writer's output does
//! not depend on how the sink splits vectored writes.

mod stream_support;

use std::io::{self, IoSlice, Write};

use proptest::prelude::*;
use xcmig_stream::{
    CpuidLeaf, DomainHeader, DomainType, Endian, HvmParam, ImageHeader, Item, MsrEntry, PageType,
    PfnEntry, Reader, Record, RecordType, StreamEnd, TscInfo, VcpuKind, Version, Writer,
    WriterOptions, X86PvInfo, PAGE_SIZE,
};

/// An owned record, for comparing what was written with what was read.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    End,
    PageData(Vec<PfnEntry>, Vec<u8>),
    PvInfo(X86PvInfo),
    P2m(u32, u32, Vec<u64>),
    Vcpu(VcpuKind, u32, Vec<u8>),
    SharedInfo(Vec<u8>),
    Tsc(TscInfo),
    HvmContext(Vec<u8>),
    HvmParams(Vec<HvmParam>),
    Toolstack(Vec<u8>),
    Verify,
    Checkpoint,
    DirtyPfns(Vec<u64>),
    StaticDataEnd,
    Cpuid(Vec<CpuidLeaf>),
    Msr(Vec<MsrEntry>),
    Optional(u32, Vec<u8>),
    Compressed(Vec<PfnEntry>, xcmig_stream::Compression, Vec<u16>, Vec<u8>),
}

fn to_op(r: &Record<'_>) -> Op {
    match r {
        Record::End => Op::End,
        Record::PageData(pd) => Op::PageData(pd.entries().to_vec(), pd.data().to_vec()),
        Record::X86PvInfo(i) => Op::PvInfo(*i),
        Record::X86PvP2mFrames(p) => Op::P2m(p.start_pfn, p.end_pfn, p.frames.to_vec()),
        Record::X86PvVcpu(v) => Op::Vcpu(v.kind, v.vcpu_id, v.context.to_vec()),
        Record::SharedInfo(b) => Op::SharedInfo(b.to_vec()),
        Record::X86TscInfo(t) => Op::Tsc(*t),
        Record::HvmContext(b) => Op::HvmContext(b.to_vec()),
        Record::HvmParams(p) => Op::HvmParams(p.to_vec()),
        Record::Toolstack(b) => Op::Toolstack(b.to_vec()),
        Record::Verify => Op::Verify,
        Record::Checkpoint => Op::Checkpoint,
        Record::CheckpointDirtyPfnList(p) => Op::DirtyPfns(p.to_vec()),
        Record::StaticDataEnd => Op::StaticDataEnd,
        Record::X86CpuidPolicy(p) => Op::Cpuid(p.to_vec()),
        Record::X86MsrPolicy(p) => Op::Msr(p.to_vec()),
        Record::Optional { record_type, body } => Op::Optional(record_type.0, body.to_vec()),
        Record::CompressedPageData(c) => Op::Compressed(
            c.entries().to_vec(),
            c.compression(),
            (0..c.data_pages()).map(|i| c.size(i)).collect(),
            c.data().to_vec(),
        ),
    }
}

fn write_op<W: Write>(w: &mut Writer<W>, op: &Op) -> Result<(), xcmig_stream::Error> {
    match op {
        Op::End => w.write_end(),
        Op::PageData(e, data) => {
            // One slice per page, as a saver passing mapped frames would.
            let pages: Vec<&[u8]> = data.chunks(PAGE_SIZE).collect();
            w.write_page_data(e, &pages)
        }
        Op::Compressed(e, c, sizes, data) => w.write_compressed_parts(e, *c, sizes, data),
        Op::PvInfo(i) => w.write_x86_pv_info(i),
        Op::P2m(s, e, f) => w.write_x86_pv_p2m_frames(*s, *e, f),
        Op::Vcpu(k, id, c) => w.write_x86_pv_vcpu(*k, *id, c),
        Op::SharedInfo(b) => w.write_shared_info(b),
        Op::Tsc(t) => w.write_x86_tsc_info(t),
        Op::HvmContext(b) => w.write_hvm_context(b),
        Op::HvmParams(p) => w.write_hvm_params(p),
        Op::Toolstack(b) => w.write_toolstack(b),
        Op::Verify => w.write_verify(),
        Op::Checkpoint => w.write_checkpoint(),
        Op::DirtyPfns(p) => w.write_checkpoint_dirty_pfn_list(p),
        Op::StaticDataEnd => w.write_static_data_end(),
        Op::Cpuid(l) => w.write_x86_cpuid_policy(l),
        Op::Msr(m) => w.write_x86_msr_policy(m),
        Op::Optional(t, b) => w.write_optional(RecordType(*t), b),
    }
}

/// A generated stream: headers and records.
#[derive(Debug, Clone)]
struct Stream {
    image: ImageHeader,
    domain: DomainHeader,
    ops: Vec<Op>,
}

fn arb_endian() -> impl Strategy<Value = Endian> {
    prop_oneof![Just(Endian::Little), Just(Endian::Big)]
}

fn arb_version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V2), Just(Version::V3)]
}

fn arb_blob(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), min..=max)
}

fn arb_optional() -> impl Strategy<Value = Op> {
    (0x8000_0000u32..=u32::MAX, arb_blob(0, 40)).prop_map(|(t, b)| Op::Optional(t, b))
}

fn arb_cpuid() -> impl Strategy<Value = Op> {
    prop::collection::vec(
        any::<[u32; 6]>().prop_map(|a| CpuidLeaf {
            leaf: a[0],
            subleaf: a[1],
            a: a[2],
            b: a[3],
            c: a[4],
            d: a[5],
        }),
        1..5,
    )
    .prop_map(Op::Cpuid)
}

fn arb_msr() -> impl Strategy<Value = Op> {
    prop::collection::vec(
        (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(idx, flags, val)| MsrEntry {
            idx,
            flags,
            val,
        }),
        1..5,
    )
    .prop_map(Op::Msr)
}

fn arb_tsc() -> impl Strategy<Value = Op> {
    (any::<u32>(), any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(mode, khz, nsec, inc)| {
        Op::Tsc(TscInfo {
            mode,
            gtsc_khz: khz,
            elapsed_nsec: nsec,
            incarnation: inc,
        })
    })
}

/// PAGE_DATA with `types` drawn from `types`; each page is filled with a
/// byte derived from its pfn so misplaced pages are caught.
fn arb_page_data(types: Vec<PageType>) -> impl Strategy<Value = Op> {
    prop::collection::vec((0u64..(1 << 52), prop::sample::select(types)), 1..6).prop_map(|v| {
        let entries: Vec<PfnEntry> = v.into_iter().map(|(p, t)| PfnEntry::new(p, t)).collect();
        let mut data = Vec::new();
        for e in entries.iter().filter(|e| e.page_type.has_data()) {
            let fill = (e.pfn as u8) ^ 0x5a;
            data.resize(data.len() + PAGE_SIZE - 1, fill);
            data.push(e.page_type.bits());
        }
        Op::PageData(entries, data)
    })
}

fn hvm_page_types() -> Vec<PageType> {
    vec![
        PageType::NoTab,
        PageType::NoTab,
        PageType::XTab,
        PageType::XAlloc,
        PageType::Broken,
    ]
}

/// One HVM checkpoint's records: pages, maybe VERIFY and more pages, then
/// TSC, params and context in the spec's order.
fn arb_hvm_epoch() -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(arb_page_data(hvm_page_types()), 1..4),
        prop::option::of(arb_page_data(hvm_page_types())),
        arb_tsc(),
        prop::collection::vec(
            (any::<u64>(), any::<u64>()).prop_map(|(index, value)| HvmParam { index, value }),
            1..6,
        ),
        arb_blob(1, 300),
        prop::option::of(arb_optional()),
    )
        .prop_map(|(pages, verify, tsc, params, ctx, opt)| {
            let mut ops = pages;
            if let Some(v) = verify {
                ops.push(Op::Verify);
                ops.push(v);
            }
            ops.push(tsc);
            ops.extend(opt);
            ops.push(Op::HvmParams(params));
            ops.push(Op::HvmContext(ctx));
            ops
        })
}

fn pv_page_types() -> Vec<PageType> {
    PageType::ALL.to_vec()
}

/// One PV checkpoint: pages, TSC, shared info, then vcpu records.
fn arb_pv_epoch(width: u8) -> impl Strategy<Value = Vec<Op>> {
    let basic_len = if width == 8 { 5168 } else { 2800 };
    (
        prop::collection::vec(arb_page_data(pv_page_types()), 1..4),
        arb_tsc(),
        any::<u8>(),
        1u32..3,
        arb_blob(1, 128),
        arb_blob(16, 200),
        prop::collection::vec(any::<[u8; 16]>(), 1..4),
    )
        .prop_map(move |(pages, tsc, fill, vcpus, ext, xsave, msrs)| {
            let mut ops = pages;
            ops.push(tsc);
            ops.push(Op::SharedInfo(vec![fill; PAGE_SIZE]));
            for id in 0..vcpus {
                ops.push(Op::Vcpu(
                    VcpuKind::Basic,
                    id,
                    vec![fill ^ id as u8; basic_len],
                ));
                ops.push(Op::Vcpu(VcpuKind::Extended, id, ext.clone()));
                ops.push(Op::Vcpu(VcpuKind::Xsave, id, xsave.clone()));
                ops.push(Op::Vcpu(VcpuKind::Msrs, id, msrs.concat()));
            }
            ops
        })
}

/// Static records: CPU policies (v3 only) and optional records.
fn arb_static(version: Version) -> impl Strategy<Value = Vec<Op>> {
    (
        prop::option::of(arb_cpuid()),
        prop::option::of(arb_msr()),
        prop::option::of(arb_optional()),
    )
        .prop_map(move |(c, m, o)| {
            let mut ops = Vec::new();
            if version == Version::V3 {
                ops.extend(c);
                ops.extend(m);
            }
            ops.extend(o);
            ops
        })
}

/// How a stream ends: END, or (checkpointed) CHECKPOINT then EOF.
fn finish(ops: &mut Vec<Op>, eof_after_checkpoint: bool) {
    if eof_after_checkpoint {
        ops.push(Op::Checkpoint);
    } else {
        ops.push(Op::End);
    }
}

fn arb_hvm_stream() -> impl Strategy<Value = Stream> {
    (arb_endian(), arb_version(), any::<bool>()).prop_flat_map(|(endian, version, cp)| {
        (
            arb_static(version),
            prop::collection::vec(arb_hvm_epoch(), 1..3),
            Just((endian, version, cp)),
        )
            .prop_map(|(stat, epochs, (endian, version, eof_cp))| {
                let mut ops = stat;
                if version == Version::V3 {
                    ops.push(Op::StaticDataEnd);
                }
                let n = epochs.len();
                for (i, e) in epochs.into_iter().enumerate() {
                    ops.extend(e);
                    if i + 1 < n {
                        ops.push(Op::Checkpoint);
                    }
                }
                finish(&mut ops, eof_cp);
                Stream {
                    image: ImageHeader { version, endian },
                    domain: DomainHeader::new(DomainType::X86Hvm, 4, 17),
                    ops,
                }
            })
    })
}

fn arb_pv_stream() -> impl Strategy<Value = Stream> {
    (
        arb_endian(),
        arb_version(),
        prop_oneof![Just(4u8), Just(8u8)],
        any::<bool>(),
    )
        .prop_flat_map(|(endian, version, width, cp)| {
            let per_frame = 4096 / u32::from(width);
            (
                arb_static(version),
                (0u32..100_000, 0u32..5_000),
                prop::collection::vec(arb_pv_epoch(width), 1..3),
                Just((endian, version, width, cp, per_frame)),
            )
                .prop_map(
                    |(stat, (start, span), epochs, (endian, version, width, cp, pf))| {
                        let mut ops = vec![Op::PvInfo(X86PvInfo {
                            guest_width: width,
                            pt_levels: if width == 8 { 4 } else { 3 },
                        })];
                        ops.extend(stat);
                        if version == Version::V3 {
                            ops.push(Op::StaticDataEnd);
                        }
                        let end = start + span;
                        let frames = (start / pf..=end / pf)
                            .map(|f| 0x1000 + u64::from(f))
                            .collect();
                        ops.push(Op::P2m(start, end, frames));
                        let n = epochs.len();
                        for (i, e) in epochs.into_iter().enumerate() {
                            ops.extend(e);
                            if i + 1 < n {
                                ops.push(Op::Checkpoint);
                            }
                        }
                        finish(&mut ops, cp);
                        Stream {
                            image: ImageHeader { version, endian },
                            domain: DomainHeader::new(DomainType::X86Pv, 4, 17),
                            ops,
                        }
                    },
                )
        })
}

fn write_stream<W: Write>(s: &Stream, out: W) -> W {
    let opts = WriterOptions {
        image: s.image,
        ..WriterOptions::default()
    };
    let mut w = Writer::with_options(out, &s.domain, opts).unwrap();
    for op in &s.ops {
        write_op(&mut w, op).unwrap_or_else(|e| panic!("writing {op:?}: {e}"));
    }
    assert!(w.warnings().is_empty(), "{:?}", w.warnings());
    w.into_inner()
}

fn read_full(bytes: &[u8]) -> (ImageHeader, DomainHeader, Vec<Op>, StreamEnd) {
    let mut r = Reader::new(bytes).unwrap();
    let mut ops = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        ops.push(to_op(&rec));
    }
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    (*r.image_header(), *r.domain_header(), ops, r.end().unwrap())
}

fn read_streaming(bytes: &[u8]) -> Vec<Op> {
    let mut r = Reader::new(bytes).unwrap();
    let mut ops = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        ops.push(match item {
            Item::Record(rec) => to_op(&rec),
            Item::Pages(mut pr) => {
                let entries = pr.entries().to_vec();
                let mut data = vec![0u8; pr.data_pages() * PAGE_SIZE];
                // Read one page at a time, as into scattered guest frames.
                for chunk in data.chunks_mut(PAGE_SIZE) {
                    pr.read_pages(chunk).unwrap();
                }
                Op::PageData(entries, data)
            }
        });
    }
    ops
}

fn check_round_trip(s: &Stream) {
    let bytes = write_stream(s, Vec::new());
    let (image, domain, ops, end) = read_full(&bytes);
    assert_eq!(image, s.image);
    assert_eq!(domain, s.domain);
    assert_eq!(ops, s.ops);
    let expect_end = if s.ops.last() == Some(&Op::End) {
        StreamEnd::End
    } else {
        StreamEnd::EofAfterCheckpoint
    };
    assert_eq!(end, expect_end);
    assert_eq!(read_streaming(&bytes), s.ops);
    if checkable_by_verify_stream_v2(s) {
        stream_support::verify_stream_v2("roundtrip", &bytes).unwrap();
    }
}

/// Whether Debian's verify-stream-v2 can judge `s`: it refuses big-endian
/// streams, optional and TOOLSTACK records, and streams that end at EOF
/// after a CHECKPOINT (all valid; see stream_verify_stream_v2.rs).
fn checkable_by_verify_stream_v2(s: &Stream) -> bool {
    s.image.endian == Endian::Little
        && s.ops.last() == Some(&Op::End)
        && !s
            .ops
            .iter()
            .any(|o| matches!(o, Op::Optional(..) | Op::Toolstack(_)))
}

/// A sink that takes at most `max` bytes and `max_iov` slices per call.
struct Dribble {
    out: Vec<u8>,
    max: usize,
    calls: usize,
}

impl Write for Dribble {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.max);
        self.out.extend_from_slice(&buf[..n]);
        self.calls += 1;
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        let mut left = self.max;
        let mut n = 0;
        for b in bufs {
            let k = b.len().min(left);
            self.out.extend_from_slice(&b[..k]);
            n += k;
            left -= k;
            if left == 0 {
                break;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hvm_streams_round_trip(s in arb_hvm_stream()) {
        check_round_trip(&s);
    }

    #[test]
    fn pv_streams_round_trip(s in arb_pv_stream()) {
        check_round_trip(&s);
    }

    #[test]
    fn partial_vectored_writes_produce_the_same_bytes(s in arb_hvm_stream(), max in 1usize..9000) {
        let whole = write_stream(&s, Vec::new());
        let sink = write_stream(&s, Dribble { out: Vec::new(), max, calls: 0 });
        prop_assert_eq!(sink.out, whole);
    }

    #[test]
    fn records_copied_through_write_record_are_identical(s in arb_pv_stream()) {
        let bytes = write_stream(&s, Vec::new());
        let mut r = Reader::new(&bytes[..]).unwrap();
        let opts = WriterOptions { image: *r.image_header(), ..WriterOptions::default() };
        let mut w = Writer::with_options(Vec::new(), r.domain_header(), opts).unwrap();
        while let Some(rec) = r.next_record().unwrap() {
            w.write_record(&rec).unwrap();
        }
        prop_assert_eq!(w.into_inner(), bytes);
    }

    #[test]
    fn optional_and_toolstack_records_round_trip(
        t in 0x8000_0000u32..=u32::MAX,
        body in arb_blob(0, 100),
        ts in arb_blob(0, 100),
        endian in arb_endian(),
    ) {
        let s = Stream {
            image: ImageHeader { version: Version::V3, endian },
            domain: DomainHeader::new(DomainType::X86Hvm, 4, 17),
            ops: vec![Op::Optional(t, body), Op::Toolstack(ts), Op::StaticDataEnd, Op::End],
        };
        let opts = WriterOptions { image: s.image, ..WriterOptions::default() };
        let mut w = Writer::with_options(Vec::new(), &s.domain, opts).unwrap();
        for op in &s.ops {
            write_op(&mut w, op).unwrap();
        }
        let bytes = w.into_inner();
        let mut r = Reader::new(&bytes[..]).unwrap();
        let mut ops = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            ops.push(to_op(&rec));
        }
        prop_assert_eq!(ops, s.ops);
        prop_assert_eq!(r.warnings().len(), 1);
    }

    #[test]
    fn back_channel_round_trips(lists in prop::collection::vec(prop::collection::vec(any::<u64>(), 0..50), 0..5)) {
        let mut w = Writer::back_channel(Vec::new());
        for l in &lists {
            w.write_checkpoint_dirty_pfn_list(l).unwrap();
        }
        let bytes = w.into_inner();
        let mut r = xcmig_stream::BackChannelReader::new(&bytes[..], Endian::Little);
        let mut got = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            match rec {
                Record::CheckpointDirtyPfnList(p) => got.push(p.to_vec()),
                other => panic!("unexpected {other:?}"),
            }
        }
        prop_assert_eq!(got, lists);
    }
}

#[test]
fn writer_refuses_records_out_of_spec_order() {
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    let e = w
        .write_page_data(&[PfnEntry::new(1, PageType::NoTab)], &[&[0u8; 4096]])
        .unwrap_err();
    assert_eq!(
        e.violation(),
        Some(xcmig_stream::Violation::BeforeStaticDataEnd)
    );
    // Nothing was written for the refused record.
    assert_eq!(w.offset(), 40);
    assert_eq!(w.get_ref().len(), 40);
}

#[test]
fn writer_checks_page_data_against_entries() {
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    let e = w
        .write_page_data(
            &[
                PfnEntry::new(1, PageType::NoTab),
                PfnEntry::new(2, PageType::XTab),
            ],
            &[&[0u8; 8192]],
        )
        .unwrap_err();
    assert_eq!(
        e.kind,
        xcmig_stream::ErrorKind::PageDataMismatch {
            expected: 4096,
            got: 8192
        }
    );
    let e = w
        .write_page_data(&[PfnEntry::new(1 << 52, PageType::XTab)], &[])
        .unwrap_err();
    assert_eq!(e.kind, xcmig_stream::ErrorKind::PfnTooLarge(1 << 52));
    let e = w.write_page_data(&[], &[]).unwrap_err();
    assert_eq!(e.kind, xcmig_stream::ErrorKind::ZeroPageCount);
}

#[test]
fn writer_accepts_pages_from_one_contiguous_mapping() {
    let mapping = vec![7u8; 3 * 4096];
    let entries = [
        PfnEntry::new(10, PageType::NoTab),
        PfnEntry::new(11, PageType::NoTab),
        PfnEntry::new(12, PageType::NoTab),
    ];
    let mut w = Writer::new(Vec::new(), &DomainHeader::new(DomainType::X86Hvm, 4, 17)).unwrap();
    w.write_static_data_end().unwrap();
    w.write_page_data(&entries, &[&mapping]).unwrap();
    w.write_end().unwrap();
    let bytes = w.into_inner();
    let (_, _, ops, _) = read_full(&bytes);
    assert_eq!(ops[1], Op::PageData(entries.to_vec(), mapping));
}
