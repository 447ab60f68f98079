//! The legacy image codec (`xcmig_stream::legacy`) against images written
//! field by field by `xcmig_testkit::legacy_image`: every guest kind and
//! toolstack width converts to a stream the libxc reader accepts, octet for
//! octet what Debian's `convert-legacy-stream` writes where that tool is
//! right; the width is detected where the octets decide it; wrong widths,
//! truncations, bit flips and each malformed case give one error with the
//! offset and the rule.

mod legacy_support;

use legacy_support::{opts, run};
use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use xcmig_stream::legacy::{
    convert, detect_width, Detection, Guest, LegacyErrorKind, LegacyReader, OutputFormat, Trailer,
    Width,
};
use xcmig_stream::{DomainType, PageType, Reader, Record, Version};
use xcmig_testkit::legacy_image::{
    hvm_chunk, libxl_physmap, small_hvm, small_pv, toolstack, vcpu_info, LegacyImage, Part, Tail,
    XALLOC, XTAB, XTAB_FILLER,
};
use xcmig_testkit::TempDir;

const CONVERT_LEGACY_STREAM: &str = "/usr/lib/xen-4.17/bin/convert-legacy-stream";

fn width(bits: u32) -> Width {
    Width::from_bits(bits).unwrap()
}

/// Every record of a libxc stream, by type name, and the octets it used.
fn libxc_records(stream: &[u8]) -> (Vec<String>, usize, DomainType, Version) {
    let mut r = Reader::new(stream).expect("libxc headers");
    let dt = r.domain_header().domain_type;
    let v = r.image_header().version;
    let mut names = Vec::new();
    while let Some(rec) = r.next_record().expect("valid libxc record") {
        names.push(rec.record_type().name().to_string());
        if matches!(rec, Record::End) {
            break;
        }
    }
    (names, r.offset() as usize, dt, v)
}

/// The images every test runs on: (label, image, guest kind).
fn images() -> Vec<(String, LegacyImage, Guest)> {
    let mut v = Vec::new();
    for bits in [32, 64] {
        let mut hvm = small_hvm(bits, 3000);
        hvm.body.insert(
            2,
            toolstack(&libxl_physmap(
                bits,
                &[(0xf000_0000, 0xf100_0000, 0x80_0000, "vga.vram")],
            )),
        );
        v.push((format!("hvm/{bits}"), hvm, Guest::Hvm));
        for guest in [32, 64] {
            v.push((
                format!("pv{guest}/{bits}"),
                small_pv(bits, guest, 1500),
                Guest::Pv,
            ));
        }
    }
    v
}

#[test]
fn every_generated_image_converts_to_a_libxc_stream_the_reader_accepts() {
    for (label, img, guest) in images() {
        let bytes = img.to_bytes();
        for version in [Version::V2, Version::V3] {
            let mut o = opts(img.width, guest, OutputFormat::Libxc);
            o.version = version;
            let out = run(&bytes, &o).unwrap_or_else(|e| panic!("{label}: {e}"));
            let (names, used, dt, v) = libxc_records(&out);
            assert_eq!(v, version, "{label}");
            let pages = names.iter().filter(|n| *n == "PAGE_DATA").count();
            match guest {
                Guest::Hvm => {
                    assert_eq!(dt, DomainType::X86Hvm);
                    assert_eq!(pages, 3, "{label}: 3000 pages in 3 batches");
                    assert_eq!(
                        names.iter().filter(|n| *n == "HVM_PARAMS").count(),
                        2,
                        "{label}: {names:?}"
                    );
                    // The device model record stays after the libxc stream.
                    let rest = &out[used..];
                    assert_eq!(&rest[..21], b"DeviceModelRecord0002", "{label}");
                    assert_eq!(rest.len(), 21 + 4 + 333, "{label}");
                }
                Guest::Pv => {
                    assert_eq!(dt, DomainType::X86Pv);
                    assert_eq!(pages, 2, "{label}");
                    for t in [
                        "X86_PV_VCPU_BASIC",
                        "X86_PV_VCPU_EXTENDED",
                        "X86_PV_VCPU_XSAVE",
                    ] {
                        assert_eq!(names.iter().filter(|n| *n == t).count(), 2, "{label} {t}");
                    }
                    assert_eq!(used, out.len(), "{label}: nothing after END");
                }
            }
            assert_eq!(
                names.iter().any(|n| n == "STATIC_DATA_END"),
                version == Version::V3,
                "{label}"
            );
        }
    }
}

#[test]
fn the_libxl_format_wraps_the_stream_with_the_physmap_and_the_device_model() {
    for (label, img, guest) in images() {
        let out = run(
            &img.to_bytes(),
            &opts(img.width, guest, OutputFormat::Libxl),
        )
        .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(&out[..8], b"LibxlFmt", "{label}");
        assert_eq!(
            &out[8..16],
            &[0, 0, 0, 2, 0, 0, 0, 2],
            "{label}: v2, LE, legacy"
        );
        assert_eq!(
            &out[16..24],
            &[1, 0, 0, 0, 0, 0, 0, 0],
            "{label}: LIBXC_CONTEXT"
        );
        let (_, used, _, _) = libxc_records(&out[24..]);
        let mut rest = &out[24 + used..];
        let mut types = Vec::new();
        while !rest.is_empty() {
            let t = u32::from_le_bytes(rest[..4].try_into().unwrap());
            let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            let body = &rest[8..8 + len];
            if t == 2 {
                let kv = &body[8..];
                assert_eq!(
                    kv,
                    &b"physmap/f0000000/start_addr\0f1000000\0physmap/f0000000/size\0800000\0\
                       physmap/f0000000/name\0vga.vram\0"[..],
                    "{label}"
                );
            }
            if t == 3 {
                assert_eq!(&body[..8], &[0; 8], "{label}: emulator unknown, index 0");
                assert_eq!(&body[8..], &[0x51; 333][..], "{label}");
            }
            types.push(t);
            rest = &rest[8 + len.div_ceil(8) * 8..];
        }
        let expected: &[u32] = match guest {
            Guest::Hvm => &[2, 3, 0],
            Guest::Pv => &[0],
        };
        assert_eq!(types, expected, "{label}");
    }
}

#[test]
fn output_is_octet_for_octet_what_debians_convert_legacy_stream_writes() {
    assert!(
        Path::new(CONVERT_LEGACY_STREAM).exists(),
        "prerequisite missing: {CONVERT_LEGACY_STREAM} (package xen-utils-4.17; make deps)"
    );
    let dir = TempDir::new("legacy-vs-python");
    for (label, img, guest) in images() {
        for (format, xl) in [("libxc", false), ("libxl", false), ("libxl", true)] {
            let mut bytes = Vec::new();
            if xl {
                bytes.extend_from_slice(&legacy_xl_header(b"{\"c_info\":{}}\n\0"));
            }
            bytes.extend_from_slice(&img.to_bytes());
            let input = dir.path().join("in");
            let theirs = dir.path().join("theirs");
            std::fs::write(&input, &bytes).unwrap();
            let mut cmd = Command::new("python3");
            cmd.arg(CONVERT_LEGACY_STREAM);
            cmd.env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python");
            cmd.arg("-i").arg(&input).arg("-o").arg(&theirs);
            cmd.args(["-w", &img.width.to_string(), "-g"]);
            cmd.arg(if guest == Guest::Pv { "pv" } else { "hvm" });
            cmd.args(["-f", format]);
            if xl {
                cmd.arg("-x");
            }
            let st = cmd.output().expect("run convert-legacy-stream");
            if xl {
                // Its xl magic is a str compared with bytes under Python 3:
                // the tool refuses every xl file.
                assert!(!st.status.success(), "{label}: the tool's -x works now");
                assert!(String::from_utf8_lossy(&st.stderr).contains("No xl header"));
                continue;
            }
            assert!(
                st.status.success(),
                "{label} {format}: convert-legacy-stream: {}",
                String::from_utf8_lossy(&st.stderr)
            );
            let mut o = opts(
                img.width,
                guest,
                if format == "libxl" {
                    OutputFormat::Libxl
                } else {
                    OutputFormat::Libxc
                },
            );
            o.xl = xl;
            let ours = run(&bytes, &o).unwrap_or_else(|e| panic!("{label}: {e}"));
            let theirs = std::fs::read(&theirs).unwrap();
            assert_eq!(
                ours.len(),
                theirs.len(),
                "{label} {format} xl={xl}: lengths"
            );
            if let Some(at) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
                panic!("{label} {format} xl={xl}: first difference at octet {at}");
            }
        }
    }
}

/// An xl header without the "stream v2" flag (a legacy image follows),
/// JSON config.
fn legacy_xl_header(config: &[u8]) -> Vec<u8> {
    let mut h = b"Xen saved domain, xl format\n \0 \r".to_vec();
    h.extend_from_slice(&0x0102_0304u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&(4 + config.len() as u32).to_le_bytes());
    h.extend_from_slice(&(config.len() as u32).to_le_bytes());
    h.extend_from_slice(config);
    h
}

#[test]
fn the_xl_header_is_carried_with_its_stream_v2_flag_set() {
    let img = small_hvm(64, 10);
    let mut bytes = legacy_xl_header(b"{}\0");
    let hlen = bytes.len();
    bytes.extend_from_slice(&img.to_bytes());
    let mut o = opts(64, Guest::Hvm, OutputFormat::Libxl);
    o.xl = true;
    let out = run(&bytes, &o).unwrap();
    assert_eq!(&out[..32], &bytes[..32]);
    assert_eq!(u32::from_le_bytes(out[36..40].try_into().unwrap()), 3);
    assert_eq!(&out[40..hlen], &bytes[40..hlen]);
    assert_eq!(&out[hlen..hlen + 8], b"LibxlFmt");
    // An xl file holds a libxl stream: the libxc format is refused.
    o.format = OutputFormat::Libxc;
    let e = run(&bytes, &o).unwrap_err();
    assert!(matches!(e.kind, LegacyErrorKind::Usage(_)), "{e}");
}

#[test]
fn width_detection_decides_every_generated_image_and_names_the_broken_rule() {
    for (label, img, guest) in images() {
        let bytes = img.to_bytes();
        for prefix in [16, 4096, bytes.len()] {
            let d = detect_width(&bytes[..prefix.min(bytes.len())], guest);
            assert_eq!(
                d.width(),
                Some(width(img.width)),
                "{label} prefix {prefix}: {d:?}"
            );
            let line = d.explain(guest);
            assert!(
                line.contains(&format!("{}-bit toolstack", img.width)),
                "{line}"
            );
        }
    }
    // Too short to decide: both readings run out of octets.
    let img = small_hvm(64, 1).to_bytes();
    let d = detect_width(&img[..4], Guest::Hvm);
    assert_eq!(d, Detection::Ambiguous { examined: 4 });
    assert!(d.explain(Guest::Hvm).contains("give --width"));
    // Not a legacy image at all.
    let d = detect_width(&[0xff; 64], Guest::Hvm);
    assert!(matches!(d, Detection::Neither { .. }), "{d:?}");
}

#[test]
fn a_wrong_width_is_refused_never_converted() {
    for (label, img, guest) in images() {
        let bytes = img.to_bytes();
        for format in [OutputFormat::Libxc, OutputFormat::Libxl] {
            let wrong = if img.width == 32 { 64 } else { 32 };
            let e = run(&bytes, &opts(wrong, guest, format))
                .expect_err(&format!("{label} read as {wrong}-bit must fail"));
            assert!(!e.is_io(), "{label}: {e}");
        }
    }
    // Debian's tool accepts this one and writes a stream without pages.
    let img = small_hvm(64, 8);
    let e = run(&img.to_bytes(), &opts(32, Guest::Hvm, OutputFormat::Libxc)).unwrap_err();
    assert_eq!(e.kind, LegacyErrorKind::NoVcpuInfo, "{e}");
    assert_eq!(e.offset, 4);
    assert_eq!(
        e.to_string(),
        "offset 4, legacy body: body ends without a VCPU_INFO chunk, which every Xen 4 saver \
         writes (wrong --width?)"
    );
}

#[test]
fn the_guest_kind_is_not_guessed_a_wrong_one_is_refused() {
    let pv = small_pv(64, 64, 4).to_bytes();
    assert!(run(&pv, &opts(64, Guest::Hvm, OutputFormat::Libxc)).is_err());
    let hvm = small_hvm(64, 4).to_bytes();
    let e = run(&hvm, &opts(64, Guest::Pv, OutputFormat::Libxc)).unwrap_err();
    assert!(
        matches!(e.kind, LegacyErrorKind::NoExtendedInfo { .. }),
        "{e}"
    );
}

/// (case, image, expected rule, expected offset)
fn malformed() -> Vec<(&'static str, LegacyImage, LegacyErrorKind, u64)> {
    let base = || small_hvm(64, 2);
    let mut v = Vec::new();
    let mut i = base();
    i.p2m_size = 0;
    v.push(("p2m size zero", i, LegacyErrorKind::BadP2mSize(0), 0));
    let mut i = base();
    i.p2m_size = (1 << 28) + 1;
    v.push((
        "p2m size beyond 28-bit pfns",
        i,
        LegacyErrorKind::BadP2mSize((1 << 28) + 1),
        0,
    ));
    let mut i = base();
    i.body.insert(0, Part::Chunk(1025, vec![]));
    v.push((
        "batch above 1024",
        i,
        LegacyErrorKind::UnknownChunk(1025),
        8,
    ));
    let mut i = base();
    i.body.insert(0, Part::Chunk(-21, vec![]));
    v.push(("unknown chunk id", i, LegacyErrorKind::UnknownChunk(-21), 8));
    let mut i = base();
    i.body.insert(
        0,
        Part::Batch {
            entries: vec![1, 1 | (1 << 32)],
            pages: vec![0; 8192],
        },
    );
    v.push((
        "high entry bits",
        i,
        LegacyErrorKind::HighEntryBits {
            index: 1,
            entry: 1 | (1 << 32),
        },
        20,
    ));
    let mut i = base();
    i.body.insert(
        0,
        Part::Batch {
            entries: vec![0x5 << 28 | 3],
            pages: vec![],
        },
    );
    v.push((
        "reserved page type",
        i,
        LegacyErrorKind::BadPageType { index: 0, bits: 5 },
        12,
    ));
    let mut i = base();
    i.body.insert(
        0,
        Part::Batch {
            entries: vec![XTAB | 100],
            pages: vec![],
        },
    );
    v.push((
        "pfn beyond p2m_size",
        i,
        LegacyErrorKind::PfnOutOfRange {
            index: 0,
            pfn: 100,
            p2m_size: 18,
        },
        12,
    ));
    let mut i = base();
    i.body.insert(
        0,
        Part::Batch {
            entries: vec![3, XALLOC | 3],
            pages: vec![0; 4096],
        },
    );
    v.push(("duplicate pfn", i, LegacyErrorKind::DuplicatePfn(3), 12));
    let mut i = base();
    i.body
        .insert(0, Part::Chunk(-2, 4096i32.to_le_bytes().to_vec()));
    v.push((
        "max vcpu id 4096",
        i,
        LegacyErrorKind::BadMaxVcpuId(4096),
        12,
    ));
    let mut i = base();
    i.body.insert(0, vcpu_info(0, &[3]));
    v.push((
        "vcpu above max",
        i,
        LegacyErrorKind::BadVcpuMap("sets vCPU 3, above max_vcpu_id 0".into()),
        16,
    ));
    let mut i = base();
    i.body.retain(|p| !matches!(p, Part::Chunk(-2, _)));
    // p2m_size 8, TSC_INFO 24, a batch of 2 (4 + 16 + 8192), two HVM chunks
    // of 16, LAST_CHECKPOINT 4.
    v.push((
        "no vcpu info",
        i,
        LegacyErrorKind::NoVcpuInfo,
        8 + 24 + 8212 + 32 + 4,
    ));
    let mut i = base();
    i.body.push(hvm_chunk(-19, 0xff000));
    v.push((
        "ioreq server pfn alone",
        i,
        LegacyErrorKind::IoreqServerPair,
        8 + 24 + 8212 + 16 + 32 + 4 + 16,
    ));
    let mut i = base();
    i.body
        .insert(0, Part::Chunk(-3, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    v.push((
        "hvm chunk padding",
        i,
        LegacyErrorKind::NonZeroChunkPad(xcmig_stream::legacy::ChunkId::HvmIdentPt),
        12,
    ));
    let mut i = base();
    i.body.insert(0, Part::Chunk(-5, vec![]));
    v.push((
        "tmem",
        i,
        LegacyErrorKind::Unsupported {
            chunk: xcmig_stream::legacy::ChunkId::Tmem,
            why: "",
        },
        8,
    ));
    let mut i = base();
    i.body.insert(0, Part::Chunk(-12, vec![]));
    v.push((
        "compressed data",
        i,
        LegacyErrorKind::Unsupported {
            chunk: xcmig_stream::legacy::ChunkId::CompressedData,
            why: "",
        },
        8,
    ));
    let mut i = base();
    if let Tail::Hvm { context, .. } = &mut i.tail {
        context.clear();
    }
    v.push((
        "empty hvm context",
        i,
        LegacyErrorKind::BadLength {
            what: "HVM context length",
            len: 0,
        },
        0,
    ));
    let mut i = base();
    i.qemu = Some((b"DeviceModelRecord0001".to_vec(), vec![1]));
    v.push((
        "bad qemu signature",
        i,
        LegacyErrorKind::BadQemuSignature(*b"DeviceModelRecord0001"),
        0,
    ));
    let mut i = base();
    i.trailing = vec![0];
    v.push((
        "trailing octets",
        i,
        LegacyErrorKind::TrailingData {
            checkpointed: false,
        },
        0,
    ));
    let mut i = base();
    i.body.retain(|p| !matches!(p, Part::Chunk(-9, _)));
    i.trailing = vec![1, 0, 0, 0];
    v.push((
        "a checkpointed stream",
        i,
        LegacyErrorKind::TrailingData { checkpointed: true },
        0,
    ));
    let mut i = small_pv(64, 64, 2);
    if let Some(pv) = &mut i.pv {
        pv.vcpu_block.truncate(100);
    }
    v.push((
        "pv vcpu block size",
        i,
        LegacyErrorKind::BadVcpuBlockSize(100),
        24,
    ));
    let mut i = small_pv(64, 64, 2);
    if let Some(pv) = &mut i.pv {
        pv.frames[0] = 1 << 20;
    }
    v.push((
        "p2m frame out of range",
        i,
        LegacyErrorKind::P2mFrameOutOfRange {
            index: 0,
            pfn: 1 << 20,
        },
        0,
    ));
    let mut i = small_pv(32, 32, 2);
    i.body.insert(0, hvm_chunk(-8, 5));
    v.push((
        "hvm chunk in pv",
        i,
        LegacyErrorKind::HvmChunkInPv(xcmig_stream::legacy::ChunkId::HvmConsolePfn),
        0,
    ));
    let mut i = small_pv(64, 64, 2);
    if let Some(pv) = &mut i.pv {
        pv.xcnt = None;
        pv.extra_blocks
            .push((*b"xcnt", vec![0x40, 3, 0, 0, 0, 0, 0, 0]));
    }
    v.push((
        "xcnt block of 8 octets",
        i,
        LegacyErrorKind::BadXcntBlock(8),
        0,
    ));
    v
}

/// Rules compared by variant and fields, the explanation text aside.
fn same_rule(a: &LegacyErrorKind, b: &LegacyErrorKind) -> bool {
    match (a, b) {
        (
            LegacyErrorKind::Unsupported { chunk: x, .. },
            LegacyErrorKind::Unsupported { chunk: y, .. },
        ) => x == y,
        _ => a == b,
    }
}

#[test]
fn each_malformed_image_is_refused_with_its_rule_at_its_offset() {
    for (case, img, rule, offset) in malformed() {
        let guest = if img.pv.is_some() {
            Guest::Pv
        } else {
            Guest::Hvm
        };
        let bytes = img.to_bytes();
        let e = run(&bytes, &opts(img.width, guest, OutputFormat::Libxl))
            .expect_err(&format!("{case}: must be refused"));
        assert!(same_rule(&e.kind, &rule), "{case}: got {e}, want {rule:?}");
        // Offsets of 0 in the table mean "somewhere in the tail": checked
        // to be inside the image.
        if offset > 0 {
            assert_eq!(e.offset, offset, "{case}: {e}");
        } else {
            assert!(e.offset < bytes.len() as u64 + 1, "{case}: {e}");
        }
        let line = e.to_string();
        assert!(!line.contains('\n'), "{case}: one line: {line}");
        assert!(
            line.starts_with(&format!("offset {}, legacy ", e.offset)),
            "{line}"
        );
    }
}

#[test]
fn every_truncation_of_a_small_image_is_an_error_never_a_stream() {
    for (label, img, guest) in [
        ("hvm", small_hvm(32, 2), Guest::Hvm),
        ("pv", small_pv(64, 64, 2), Guest::Pv),
    ] {
        let bytes = img.to_bytes();
        // The device model record is optional: cutting exactly before it
        // leaves a whole image.
        let dm_start = bytes.len() - img.qemu.as_ref().map_or(0, |(s, d)| s.len() + 4 + d.len());
        for cut in (0..bytes.len())
            .step_by(7)
            .chain([dm_start - 1, bytes.len() - 1])
        {
            let r = run(&bytes[..cut], &opts(img.width, guest, OutputFormat::Libxc));
            if cut == dm_start {
                assert!(r.is_ok(), "{label}: cut at the device model");
                continue;
            }
            let e = r.expect_err(&format!("{label}: cut at {cut}"));
            assert!(
                matches!(e.kind, LegacyErrorKind::Truncated { .. }),
                "{label} cut {cut}: {e}"
            );
            assert_eq!(e.offset, cut as u64, "{label} cut {cut}: {e}");
        }
    }
}

#[test]
fn an_hvm_image_converts_without_its_device_model_record() {
    let mut img = small_hvm(64, 4);
    img.qemu = None;
    for format in [OutputFormat::Libxc, OutputFormat::Libxl] {
        let out = run(&img.to_bytes(), &opts(64, Guest::Hvm, format)).unwrap();
        assert!(!out.windows(21).any(|w| w == b"DeviceModelRecord0002"));
    }
}

#[test]
fn filler_entries_are_dropped_and_a_batch_of_only_fillers_writes_no_record() {
    let mut img = small_hvm(32, 0);
    img.body.insert(
        0,
        Part::Batch {
            entries: vec![XTAB_FILLER, 7, XTAB_FILLER, XTAB | 9],
            pages: vec![0x77; 4096],
        },
    );
    img.body.insert(
        0,
        Part::Batch {
            entries: vec![XTAB_FILLER; 5],
            pages: vec![],
        },
    );
    let out = run(&img.to_bytes(), &opts(32, Guest::Hvm, OutputFormat::Libxc)).unwrap();
    let mut r = Reader::new(&out[..]).unwrap();
    let mut batches = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        if let Record::PageData(pd) = &rec {
            batches.push(
                pd.entries()
                    .iter()
                    .map(|e| (e.pfn, e.page_type))
                    .collect::<Vec<_>>(),
            );
        }
        if matches!(rec, Record::End) {
            break;
        }
    }
    assert_eq!(
        batches,
        vec![vec![(7, PageType::NoTab), (9, PageType::XTab)]]
    );
}

#[test]
fn the_reader_reads_nothing_past_the_libxc_part_when_told_to_stop() {
    let img = small_hvm(64, 3);
    let bytes = img.to_bytes();
    let mut input = &bytes[..];
    let mut o = opts(64, Guest::Hvm, OutputFormat::Libxc);
    o.trailer = Trailer::Stop;
    let mut out = Vec::new();
    convert(&mut input, &mut out, &o).unwrap();
    assert_eq!(
        &input[..21],
        b"DeviceModelRecord0002",
        "the record is left for the caller"
    );
}

#[test]
fn the_reader_walks_a_pv_image_part_by_part() {
    let img = small_pv(32, 32, 1030);
    let bytes = img.to_bytes();
    let mut r = LegacyReader::new(&bytes[..], Width::Bits32, Guest::Pv, 0);
    let mut kinds = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        kinds.push(
            format!("{item:?}")
                .split(['(', ' ', '{'])
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        kinds,
        [
            "P2mSize",
            "ExtendedInfo",
            "P2mFrames",
            "Chunk",
            "Batch",
            "Batch",
            "Chunk",
            "Chunk",
            "BodyEnd",
            "UnmappedPfns",
            "Vcpu",
            "Vcpu",
            "SharedInfo",
            "End"
        ]
    );
    assert_eq!(r.offset(), bytes.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_octets_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                    w in prop_oneof![Just(32u32), Just(64)], pv in any::<bool>()) {
        let guest = if pv { Guest::Pv } else { Guest::Hvm };
        let _ = run(&data, &opts(w, guest, OutputFormat::Libxl));
        let _ = detect_width(&data, guest);
    }

    #[test]
    fn bit_flips_give_an_error_or_a_stream_the_reader_accepts(
        flip in 0usize..40_000, bit in 0u8..8, w in prop_oneof![Just(32u32), Just(64)], pv in any::<bool>()
    ) {
        let (img, guest) = if pv { (small_pv(w, 64, 3), Guest::Pv) } else { (small_hvm(w, 3), Guest::Hvm) };
        let mut bytes = img.to_bytes();
        let at = flip % bytes.len();
        bytes[at] ^= 1 << bit;
        if let Ok(out) = run(&bytes, &opts(w, guest, OutputFormat::Libxc)) {
            let mut r = Reader::new(&out[..]).expect("headers");
            loop {
                match r.next_record().expect("a converted stream is valid") {
                    Some(Record::End) | None => break,
                    Some(_) => {}
                }
            }
        }
    }
}

// ---- the fuzz seeds --------------------------------------------------------

/// The seeds of the `legacy_reader` fuzz target, as (name, selector byte,
/// image). The selector (see `fuzz/fuzz_targets/legacy_reader.rs`): bit 0
/// 64-bit toolstack, bit 1 HVM, bit 2 libxl output, bit 3 version 2.
fn legacy_reader_seeds() -> Vec<(&'static str, u8, LegacyImage)> {
    let mut physmap = small_hvm(64, 2);
    physmap.body.insert(
        2,
        toolstack(&libxl_physmap(
            64,
            &[(0xf000_0000, 0xf100_0000, 0x80_0000, "vga.vram")],
        )),
    );
    let mut chunks = small_hvm(32, 1);
    // Every HVM-parameter chunk Xen 4.5 saves (the ioreq server pair too).
    for id in [-4, -10, -11, -14, -15, -16, -17, -19, -20] {
        chunks
            .body
            .insert(3, hvm_chunk(id, 0x1000 + id.unsigned_abs() as u64));
    }
    vec![
        ("hvm-32-libxc-v3", 0b0010, small_hvm(32, 2)),
        ("hvm-64-libxl-v3", 0b0111, small_hvm(64, 2)),
        ("hvm-64-libxl-v2-physmap", 0b1111, physmap),
        ("hvm-32-libxc-v2-chunks", 0b1010, chunks),
        ("pv64-32-libxc-v3", 0b0000, small_pv(32, 64, 2)),
        ("pv32-64-libxl-v3", 0b0101, small_pv(64, 32, 2)),
        ("pv64-64-libxc-v2", 0b1001, small_pv(64, 64, 1)),
        ("pv32-32-libxl-v2", 0b1100, small_pv(32, 32, 1)),
    ]
}

/// The seeds of the `legacy_reader` fuzz target
/// (`fuzz/corpus/legacy_reader/seed-*`): each committed file must equal the
/// selector byte and the generated image, and the image must convert with
/// the options the selector chooses. `XCMIG_REGEN_CORPUS=1 cargo test -p
/// xcmig-stream --test stream_legacy fuzz_seeds` rewrites them.
#[test]
fn fuzz_seeds_are_the_generated_images() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/legacy_reader");
    let regen = std::env::var_os("XCMIG_REGEN_CORPUS").is_some();
    for (name, sel, img) in legacy_reader_seeds() {
        let guest = if sel & 2 == 0 { Guest::Pv } else { Guest::Hvm };
        let bits = if sel & 1 == 0 { 32 } else { 64 };
        assert_eq!(bits, img.width, "{name}: selector width");
        let format = if sel & 4 == 0 {
            OutputFormat::Libxc
        } else {
            OutputFormat::Libxl
        };
        let mut o = opts(bits, guest, format);
        o.version = if sel & 8 == 0 {
            Version::V3
        } else {
            Version::V2
        };
        let image = img.to_bytes();
        run(&image, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut bytes = vec![sel];
        bytes.extend_from_slice(&image);
        let path = dir.join(format!("seed-{name}"));
        if regen {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with XCMIG_REGEN_CORPUS=1)",
                path.display()
            )
        });
        assert!(
            committed == bytes,
            "{name}: stale seed (regenerate with XCMIG_REGEN_CORPUS=1)"
        );
    }
}

#[test]
fn an_xend_save_file_converts_its_header_and_config_dropped_and_its_qemu_record_carried() {
    let mut img = small_hvm(32, 4);
    img.qemu = None;
    img.trailing = b"QemuDeviceModelRecord".to_vec();
    img.trailing.extend_from_slice(&[0x5e; 777]);
    let config = b"(vm (name guest) (memory 512))";
    let mut bytes = b"LinuxGuestRecord".to_vec();
    bytes.extend_from_slice(&(config.len() as i32).to_be_bytes());
    bytes.extend_from_slice(config);
    let image_at = bytes.len();
    bytes.extend_from_slice(&img.to_bytes());
    assert_eq!(
        xcmig_stream::legacy::xend_header_len(&bytes),
        Some(image_at)
    );
    assert_eq!(
        detect_width(&bytes[image_at..], Guest::Hvm).width(),
        Some(Width::Bits32)
    );
    let mut out = Vec::new();
    let summary = convert(
        &bytes[..],
        &mut out,
        &opts(32, Guest::Hvm, OutputFormat::Libxl),
    )
    .unwrap();
    assert!(
        summary.notes[0].contains("an xend save file"),
        "{:?}",
        summary.notes
    );
    assert_eq!(summary.device_model, Some(777));
    assert_eq!(summary.input_octets, bytes.len() as u64);
    // The libxl stream ends with EMULATOR_CONTEXT (id unknown, index 0,
    // the data) and END.
    let tail = &out[out.len() - 8 - (8 + 8 + 784)..];
    assert_eq!(&tail[..8], &[3, 0, 0, 0, 0x11, 3, 0, 0]);
    assert_eq!(&tail[16..16 + 777], &[0x5e; 777][..]);
    assert_eq!(&out[out.len() - 8..], &[0; 8]);
    // libxc keeps the record as it was, after the stream.
    let out = run(&bytes, &opts(32, Guest::Hvm, OutputFormat::Libxc)).unwrap();
    assert!(out.ends_with(&img.trailing));
}
