//! Arbitrary bytes through the libxc stream reader and grammar.
//!
//! Properties checked on every input, beyond "no panic, no unbounded
//! allocation": the full-record and streaming read paths agree on the
//! verdict, and every accepted stream copied record by record through the
//! writer gives back exactly the bytes that were read (so the reader's
//! checks and the writer's encoding are the same rules), and every page of
//! an accepted compressed record decompresses into exactly its page or
//! fails, never writing or allocating past one page per data entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcmig_stream::{
    BackChannelReader, Endian, Error, Item, PageDecompressor, Reader, Record, Writer, WriterOptions,
};

/// Full records; on success also re-encodes them and returns the bytes.
fn full(data: &[u8]) -> Result<(u64, Vec<u8>), Error> {
    let mut r = Reader::new(data)?;
    let opts = WriterOptions {
        image: *r.image_header(),
        ..WriterOptions::default()
    };
    let mut w = Writer::with_options(Vec::new(), r.domain_header(), opts)
        .expect("writing headers to a Vec");
    let mut d = PageDecompressor::new();
    let mut pages = Vec::new();
    while let Some(rec) = r.next_record()? {
        if let Record::CompressedPageData(c) = &rec {
            let _ = c.decompress_all(&mut d, &mut pages);
            assert_eq!(pages.len(), c.data_pages() * 4096);
        }
        w.write_record(&rec)
            .unwrap_or_else(|e| panic!("writer refused a record the reader accepted: {e}"));
    }
    Ok((r.offset(), w.into_inner()))
}

/// Streaming path, reading pages into a scratch page.
fn streaming(data: &[u8]) -> Result<u64, Error> {
    let mut r = Reader::new(data)?;
    let mut page = vec![0u8; 4096];
    while let Some(item) = r.next_item()? {
        if let Item::Pages(mut p) = item {
            // Read half the pages, leave the rest to the reader's skip.
            let n = p.remaining_pages() / 2;
            for _ in 0..n {
                p.read_pages(&mut page)?;
            }
        }
    }
    Ok(r.offset())
}

fuzz_target!(|data: &[u8]| {
    let a = full(data);
    let b = streaming(data);
    match (&a, &b) {
        (Ok((consumed, rewritten)), Ok(consumed2)) => {
            assert_eq!(consumed, consumed2);
            assert_eq!(&data[..*consumed as usize], &rewritten[..]);
        }
        (Err(ea), Err(eb)) => assert_eq!(ea, eb),
        _ => panic!("read paths disagree: {:?} vs {:?}", a.map(|x| x.0), b),
    }
    for endian in [Endian::Little, Endian::Big] {
        let mut r = BackChannelReader::new(data, endian);
        while let Ok(Some(_)) = r.next_record() {}
    }
});
