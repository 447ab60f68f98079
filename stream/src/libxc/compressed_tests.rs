use super::*;
use crate::x86::PageType;

fn text_page(seed: u8) -> Vec<u8> {
    let line = format!("fn handler_{seed}(ctx: &mut Ctx) -> Result<(), Error> {{ ctx.step() }}\n");
    line.bytes().cycle().take(PAGE_SIZE).collect()
}

fn random_page(seed: u64) -> Vec<u8> {
    // xorshift: incompressible for both compressors.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..PAGE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn entries(n: usize) -> Vec<PfnEntry> {
    (0..n as u64)
        .map(|pfn| PfnEntry::new(pfn, PageType::NoTab))
        .collect()
}

/// Encodes a whole body as the writer does.
fn body(entries: &[PfnEntry], c: Compression, pages: &CompressedPages) -> Vec<u8> {
    let mut b = Vec::new();
    encode_head(&mut b, Endian::Little, entries, c, &pages.sizes);
    b.extend_from_slice(&pages.data);
    b
}

fn compress(c: Compression, pages: &[Vec<u8>]) -> CompressedPages {
    let mut pc = PageCompressor::new(c, ZSTD_DEFAULT_LEVEL).unwrap();
    let mut out = CompressedPages::default();
    for p in pages {
        pc.push_page(p, &mut out).unwrap();
    }
    out
}

#[test]
fn both_compressors_round_trip_mixed_pages_and_store_incompressible_ones() {
    let pages = vec![
        vec![0u8; PAGE_SIZE],
        text_page(1),
        random_page(7),
        text_page(2),
        random_page(8),
    ];
    for c in [Compression::Lz4, Compression::Zstd] {
        let cp = compress(c, &pages);
        assert_eq!(cp.sizes.len(), 5);
        assert_eq!(cp.stored_pages(), 2, "{c:?}: the random pages are stored");
        assert_eq!(cp.sizes[2], STORED_PAGE);
        assert!(
            cp.sizes[0] < 64,
            "{c:?}: a zero page shrinks to {}",
            cp.sizes[0]
        );
        assert!(
            cp.sizes[1] < 512,
            "{c:?}: a text page shrinks to {}",
            cp.sizes[1]
        );
        let e = entries(5);
        let b = body(&e, c, &cp);
        let mut scratch = Vec::new();
        let rec = parse(&b, Endian::Little, Reserved::Reject, &mut scratch).unwrap();
        assert_eq!(rec.compression(), c);
        assert_eq!(rec.data_pages(), 5);
        assert_eq!(rec.stored_pages(), 2);
        let mut out = Vec::new();
        rec.decompress_all(&mut PageDecompressor::new(), &mut out)
            .unwrap();
        assert_eq!(out, pages.concat(), "{c:?}");
    }
}

#[test]
fn entries_without_data_have_no_size_entry() {
    let e = vec![
        PfnEntry::new(1, PageType::XAlloc),
        PfnEntry::new(2, PageType::NoTab),
        PfnEntry::new(3, PageType::XTab),
        PfnEntry::new(4, PageType::L1Tab),
    ];
    let cp = compress(Compression::Lz4, &[text_page(3), text_page(4)]);
    let b = body(&e, Compression::Lz4, &cp);
    let mut scratch = Vec::new();
    let rec = parse(&b, Endian::Little, Reserved::Reject, &mut scratch).unwrap();
    assert_eq!(rec.entries().len(), 4);
    assert_eq!(rec.data_pages(), 2);
}

#[test]
fn big_endian_bodies_parse() {
    let cp = compress(Compression::Zstd, &[text_page(5)]);
    let e = entries(1);
    let mut b = Vec::new();
    encode_head(&mut b, Endian::Big, &e, Compression::Zstd, &cp.sizes);
    b.extend_from_slice(&cp.data);
    let mut scratch = Vec::new();
    let rec = parse(&b, Endian::Big, Reserved::Reject, &mut scratch).unwrap();
    let mut out = Vec::new();
    rec.decompress_all(&mut PageDecompressor::new(), &mut out)
        .unwrap();
    assert_eq!(out, text_page(5));
}

/// A valid two-page LZ4 body to break.
fn good_body() -> Vec<u8> {
    let cp = compress(Compression::Lz4, &[text_page(1), text_page(2)]);
    body(&entries(2), Compression::Lz4, &cp)
}

fn parse_err(b: &[u8]) -> ErrorKind {
    let mut scratch = Vec::new();
    parse(b, Endian::Little, Reserved::Reject, &mut scratch).unwrap_err()
}

fn decompress_err(b: &[u8]) -> ErrorKind {
    let mut scratch = Vec::new();
    let rec = parse(b, Endian::Little, Reserved::Reject, &mut scratch).unwrap();
    let mut out = Vec::new();
    rec.decompress_all(&mut PageDecompressor::new(), &mut out)
        .unwrap_err()
}

#[test]
fn malformed_bodies_are_refused_with_their_rule() {
    let good = good_body();
    let size0 = u16::from_le_bytes([good[24], good[25]]);
    // Shorter than the header.
    assert!(matches!(
        parse_err(&good[..7]),
        ErrorKind::BadLength {
            rule: LengthRule::AtLeast(8),
            ..
        }
    ));
    // count 0, count above a batch.
    let mut b = good.clone();
    b[0..4].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(parse_err(&b), ErrorKind::ZeroPageCount);
    b[0..4].copy_from_slice(&1025u32.to_le_bytes());
    assert_eq!(
        parse_err(&b),
        ErrorKind::TooManyEntries {
            count: 1025,
            max: 1024
        }
    );
    // Unknown compressor, reserved octets.
    let mut b = good.clone();
    b[4] = 9;
    assert_eq!(parse_err(&b), ErrorKind::UnknownCompression(9));
    b[4] = 0;
    assert_eq!(parse_err(&b), ErrorKind::UnknownCompression(0));
    let mut b = good.clone();
    b[6] = 1;
    assert!(matches!(parse_err(&b), ErrorKind::ReservedField(_)));
    // The pfn array cut short, the size table cut short.
    assert!(matches!(
        parse_err(&good[..20]),
        ErrorKind::BadLength {
            rule: LengthRule::AtLeast(24),
            ..
        }
    ));
    assert!(matches!(
        parse_err(&good[..26]),
        ErrorKind::BadLength {
            rule: LengthRule::AtLeast(28),
            ..
        }
    ));
    // A size of 0 and one above a page.
    let mut b = good.clone();
    b[24..26].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(
        parse_err(&b),
        ErrorKind::BadCompressedSize { index: 0, size: 0 }
    );
    b[24..26].copy_from_slice(&4097u16.to_le_bytes());
    assert_eq!(
        parse_err(&b),
        ErrorKind::BadCompressedSize {
            index: 0,
            size: 4097
        }
    );
    // Sizes that do not add up to the body: data missing, data left over.
    assert!(matches!(
        parse_err(&good[..good.len() - 1]),
        ErrorKind::BadLength {
            rule: LengthRule::Exactly(_),
            ..
        }
    ));
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(
        parse_err(&b),
        ErrorKind::BadLength {
            rule: LengthRule::Exactly(_),
            ..
        }
    ));
    // A size one short moves the octets: page 0 no longer decompresses to
    // a page, whatever the second size says.
    let mut b = good.clone();
    b[24..26].copy_from_slice(&(size0 - 1).to_le_bytes());
    let size1 = u16::from_le_bytes([b[26], b[27]]);
    b[26..28].copy_from_slice(&(size1 + 1).to_le_bytes());
    assert!(matches!(
        decompress_err(&b),
        ErrorKind::Decompress { index: 0, .. }
    ));
    // Garbage in place of compressed data.
    let mut b = good.clone();
    for x in &mut b[28..28 + usize::from(size0)] {
        *x = 0xff;
    }
    assert!(matches!(
        decompress_err(&b),
        ErrorKind::Decompress { index: 0, .. }
    ));
}

/// One page of data compressed by itself, outside the page compressor.
fn raw_body(c: Compression, compressed: &[u8]) -> Vec<u8> {
    let cp = CompressedPages {
        sizes: vec![compressed.len() as u16],
        data: compressed.to_vec(),
    };
    body(&entries(1), c, &cp)
}

#[test]
fn a_page_that_decompresses_to_less_or_more_than_a_page_is_refused() {
    for n in [100usize, 4095, 4097, 8192] {
        let lz4 = lz4_flex::block::compress(&vec![b'a'; n]);
        let err = decompress_err(&raw_body(Compression::Lz4, &lz4));
        assert!(
            matches!(err, ErrorKind::Decompress { index: 0, .. }),
            "lz4 {n}: {err:?}"
        );
        let z = zstd::bulk::compress(&vec![b'a'; n], 1).unwrap();
        let err = decompress_err(&raw_body(Compression::Zstd, &z));
        assert!(
            matches!(err, ErrorKind::Decompress { index: 0, .. }),
            "zstd {n}: {err:?}"
        );
    }
}

#[test]
fn a_decompression_bomb_fails_within_one_page_of_output() {
    // 64 MiB of zeros in a few hundred octets: the decompressor writes at
    // most the page it is given and fails, allocating nothing.
    let big = vec![0u8; 64 << 20];
    let z = zstd::bulk::compress(&big, 19).unwrap();
    assert!(z.len() < 4096, "the bomb is {} octets", z.len());
    let err = decompress_err(&raw_body(Compression::Zstd, &z));
    assert!(
        matches!(err, ErrorKind::Decompress { index: 0, .. }),
        "{err:?}"
    );
    let lz4 = lz4_flex::block::compress(&big[..512 << 10]);
    assert!(lz4.len() < 4096, "the lz4 bomb is {} octets", lz4.len());
    let err = decompress_err(&raw_body(Compression::Lz4, &lz4));
    assert!(
        matches!(err, ErrorKind::Decompress { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn the_compressor_refuses_partial_pages_and_bad_levels() {
    let mut pc = PageCompressor::new(Compression::Lz4, 1).unwrap();
    let mut out = CompressedPages::default();
    assert!(pc.push_page(&[0; 100], &mut out).is_err());
    assert!(pc.push_pages(&[0; 5000], &mut out).is_err());
    assert!(out.sizes.is_empty());
    assert!(PageCompressor::new(Compression::Zstd, 0).is_err());
    assert!(PageCompressor::new(Compression::Zstd, 20).is_err());
    assert!(PageCompressor::new(Compression::Zstd, 19).is_ok());
}

#[test]
fn compressor_ids_are_stable() {
    assert_eq!(Compression::Lz4.id(), 1);
    assert_eq!(Compression::Zstd.id(), 2);
    for id in 0..=255u8 {
        if let Some(c) = Compression::from_id(id) {
            assert_eq!(c.id(), id);
        }
    }
    assert_eq!(Compression::from_id(3), None);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut scratch = Vec::new();
            if let Ok(rec) = parse(&b, Endian::Little, Reserved::Ignore, &mut scratch) {
                let mut out = Vec::new();
                let _ = rec.decompress_all(&mut PageDecompressor::new(), &mut out);
                prop_assert!(out.len() <= rec.data_pages() * PAGE_SIZE);
            }
        }

        #[test]
        fn any_pages_round_trip(kinds in proptest::collection::vec(0u8..3, 1..16), seed in any::<u64>(), zstd in any::<bool>()) {
            let pages: Vec<Vec<u8>> = kinds.iter().enumerate().map(|(i, k)| match k {
                0 => vec![0u8; PAGE_SIZE],
                1 => text_page(i as u8),
                _ => random_page(seed ^ i as u64),
            }).collect();
            let c = if zstd { Compression::Zstd } else { Compression::Lz4 };
            let cp = compress(c, &pages);
            let e = entries(pages.len());
            let b = body(&e, c, &cp);
            let mut scratch = Vec::new();
            let rec = parse(&b, Endian::Little, Reserved::Reject, &mut scratch).unwrap();
            let mut out = Vec::new();
            rec.decompress_all(&mut PageDecompressor::new(), &mut out).unwrap();
            prop_assert_eq!(out, pages.concat());
        }
    }
}
