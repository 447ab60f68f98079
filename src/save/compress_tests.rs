//! Compressed page data end to end over `hv::sim`: every compressor, mixed
//! and incompressible batches, live rounds, Remus checkpoints and PV page
//! tables, each stream restored by our engine to the source's digest.

use xensim::GuestType;

use crate::toolstack::Next;

use crate::hv::{DomId, PAGE_SIZE};
use crate::restore::{restore_domain, RestoreParams};
use crate::save::testutil::{RecLog, TempHost, ToolstackRestore, ToolstackSave, STOP};
use crate::save::{
    save_domain, CompressMode, CompressionSettings, PolicyDecision, SaveParams, SaveSummary,
    StreamType,
};
use crate::stream::{
    Checkpoints, Compression, GrammarOptions, Reader, ReaderOptions, Record, RecordType,
    WarningKind,
};

const GUEST: u64 = 32 << 20;

/// A page of program text, different for each pfn.
fn text_page(pfn: u64) -> Vec<u8> {
    let line = format!(
        "static int handle_{pfn}(struct ctx *c) {{ return c->ops->step(c, {}); }}\n",
        pfn % 97
    );
    line.bytes().cycle().take(PAGE_SIZE).collect()
}

/// A guest whose RAM is a third text (compressible), the rest `mixed`
/// (zero and random pages): batches of every kind.
fn guest(h: &TempHost, t: GuestType, seed: u64) -> DomId {
    let id = h.create(t, GUEST, seed, false);
    let dom = h.domain(id);
    let mut page = vec![0u8; PAGE_SIZE];
    let top = (GUEST / PAGE_SIZE as u64).min(dom.max_gpfn());
    for pfn in (0..top).filter(|p| p % 3 == 0) {
        // Only ordinary RAM the guest already has (PV page tables and
        // special pages keep their contents).
        if t == GuestType::Pv || !dom.is_populated(pfn) {
            continue;
        }
        dom.read_frame(pfn, &mut page).expect("read");
        dom.write_frame(pfn, &text_page(pfn)).expect("write");
    }
    id
}

fn params(mode: CompressMode, threads: usize) -> SaveParams {
    SaveParams {
        compression: CompressionSettings { mode, threads },
        ..SaveParams::default()
    }
}

/// Counts of (PAGE_DATA, XCMIG_COMPRESSED_PAGE_DATA) records and the
/// compressors seen; checks every page decompresses.
fn census(stream: &[u8], checkpoints: bool) -> (u64, u64, Vec<Compression>, Vec<WarningKind>) {
    let opts = ReaderOptions {
        grammar: GrammarOptions {
            checkpoints: if checkpoints {
                Checkpoints::Accept
            } else {
                Checkpoints::Reject
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let mut r = Reader::with_options(stream, opts).expect("headers");
    let (mut plain, mut packed, mut kinds) = (0, 0, Vec::new());
    let mut d = crate::stream::PageDecompressor::new();
    let mut buf = Vec::new();
    while let Some(rec) = r.next_record().expect("record") {
        match rec {
            Record::PageData(_) => plain += 1,
            Record::CompressedPageData(c) => {
                packed += 1;
                if !kinds.contains(&c.compression()) {
                    kinds.push(c.compression());
                }
                c.decompress_all(&mut d, &mut buf)
                    .expect("pages decompress");
            }
            _ => {}
        }
    }
    let warnings = r.warnings().iter().map(|w| w.kind).collect();
    (plain, packed, kinds, warnings)
}

fn restore_into(stream: &[u8], t: GuestType, stream_type: StreamType) -> String {
    let dst = TempHost::new("cz-dst");
    let did = dst.create(t, GUEST, 0, true);
    let params = RestoreParams {
        store_evtchn: 5,
        console_evtchn: 6,
        stream_type,
        ..RestoreParams::default()
    };
    let mut cb = ToolstackRestore::default();
    if stream_type != StreamType::Plain {
        cb.checkpoint_answers =
            std::iter::repeat_n(Ok(crate::restore::Proceed::Continue), 8).collect();
    }
    let r = restore_domain(&dst.hv(), did, &mut &stream[..], &params, &mut cb);
    if let Err(e) = r {
        panic!("restore: {e}");
    }
    dst.domain(did).digest().expect("digest")
}

fn save(h: &TempHost, id: DomId, p: &SaveParams) -> (SaveSummary, Vec<u8>, String) {
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut out = Vec::new();
    let s = save_domain(&h.hv(), id, &mut out, p, &mut cb, &RecLog::default()).expect("save");
    let digest = h.domain(id).digest().expect("digest");
    (s, out, digest)
}

#[test]
fn every_compressor_restores_digest_equal_with_mixed_batches_and_fewer_bytes() {
    let h = TempHost::new("cz-all");
    let id = guest(&h, GuestType::Hvm, 3);
    let (plain_sum, plain, digest) = save(&h, id, &params(CompressMode::Off, 0));
    assert_eq!(census(&plain, false).1, 0, "off: standard PAGE_DATA only");
    for (mode, want) in [
        (CompressMode::Lz4, Compression::Lz4),
        (CompressMode::Zstd { level: 1 }, Compression::Zstd),
        (CompressMode::Zstd { level: 9 }, Compression::Zstd),
    ] {
        let (s, out, d) = save(&h, id, &params(mode, 2));
        assert_eq!(d, digest);
        let (_, packed, kinds, warnings) = census(&out, false);
        assert!(packed > 0, "{mode:?}: no compressed record");
        assert_eq!(kinds, vec![want]);
        assert_eq!(
            warnings
                .iter()
                .filter(|w| **w == WarningKind::XcmigExtension)
                .count(),
            1,
            "{mode:?}: warned once"
        );
        assert_eq!(s.compressed_records, packed);
        assert!(s.compressed_pages > 0 && s.compressed_bytes > 0);
        assert_eq!(s.pages_sent, plain_sum.pages_sent);
        // A third of the guest is text that shrinks many times; the rest
        // is zero (elided either way) or random (stored).
        assert!(
            s.bytes_written * 10 < plain_sum.bytes_written * 9,
            "{mode:?}: {} vs {} bytes",
            s.bytes_written,
            plain_sum.bytes_written
        );
        assert_eq!(
            restore_into(&out, GuestType::Hvm, StreamType::Plain),
            digest,
            "{mode:?}"
        );
    }
}

#[test]
fn the_stream_is_the_same_whatever_the_number_of_threads() {
    let h = TempHost::new("cz-threads");
    let id = guest(&h, GuestType::Hvm, 4);
    let (_, one, _) = save(&h, id, &params(CompressMode::Lz4, 1));
    for threads in [2, 3, 8] {
        let (_, many, _) = save(&h, id, &params(CompressMode::Lz4, threads));
        assert!(one == many, "{threads} threads: the record order changed");
    }
}

#[test]
fn incompressible_batches_go_as_standard_page_data() {
    // `mixed` without text: the RAM's data pages are random, so their
    // batches do not shrink and go as PAGE_DATA; only batches with a page
    // that shrinks (firmware, special pages) are written compressed.
    let h = TempHost::new("cz-random");
    let id = h.create(GuestType::Hvm, GUEST, 5, false);
    let (s, out, digest) = save(&h, id, &params(CompressMode::Zstd { level: 3 }, 2));
    let (plain, packed, _, _) = census(&out, false);
    assert!(plain > 0);
    assert!(packed < plain, "{packed} compressed, {plain} plain");
    assert_eq!(s.compressed_records, packed);
    let mut r = Reader::new(&out[..]).expect("headers");
    while let Some(rec) = r.next_record().expect("record") {
        if let Record::CompressedPageData(c) = rec {
            assert!(c.stored_pages() < c.data_pages(), "a page shrank");
        }
    }
    assert_eq!(
        restore_into(&out, GuestType::Hvm, StreamType::Plain),
        digest
    );
}

#[test]
fn live_rounds_compress_and_restore_what_the_guest_had_at_suspend() {
    for mode in [CompressMode::Lz4, CompressMode::Auto] {
        let h = TempHost::new("cz-live");
        let id = guest(&h, GuestType::Hvm, 6);
        let mut cb = ToolstackSave::new(h.domain(id));
        let dom = h.domain(id);
        cb.policy = Some(Box::new(move |st| {
            if st.dirty_count == -1 {
                if st.iteration >= 3 {
                    return PolicyDecision::StopAndCopy;
                }
                // The guest rewrites text pages between rounds.
                for pfn in (0..600u64).map(|k| k * 3) {
                    let mut p = text_page(pfn + u64::from(st.iteration));
                    p[0] = st.iteration as u8;
                    if dom.is_populated(pfn) {
                        dom.write_frame(pfn, &p).expect("guest write");
                        dom.mark_dirty(pfn);
                    }
                }
            }
            PolicyDecision::Continue
        }));
        let p = SaveParams {
            live: true,
            ..params(mode, 2)
        };
        let mut out = Vec::new();
        let s = save_domain(&h.hv(), id, &mut out, &p, &mut cb, &RecLog::default()).expect("save");
        assert!(s.precopy_iterations >= 2, "{mode:?}: {s:?}");
        // Auto compresses its probe at least; into a Vec the link is
        // fast, so it may stop there.
        assert!(s.compressed_records > 0, "{mode:?}");
        let digest = cb.digest_at_suspend.expect("suspended");
        assert_eq!(
            restore_into(&out, GuestType::Hvm, StreamType::Plain),
            digest,
            "{mode:?}"
        );
    }
}

#[test]
fn remus_checkpoints_compress_and_fail_over_to_the_last_one() {
    let h = TempHost::new("cz-remus");
    let id = guest(&h, GuestType::Hvm, 7);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.checkpoint_answers = [Next::Continue, Next::Continue, STOP].into_iter().collect();
    cb.dirty_on_resume = 300;
    let p = SaveParams {
        live: true,
        stream_type: StreamType::Remus,
        ..params(CompressMode::Zstd { level: 1 }, 2)
    };
    let mut out = Vec::new();
    let s = save_domain(&h.hv(), id, &mut out, &p, &mut cb, &RecLog::default()).expect("save");
    assert_eq!(s.checkpoints, 3);
    let (_, packed, _, _) = census(&out, true);
    assert!(packed > 0);
    // The restorer holds each checkpoint's records (decompressed) until the
    // next CHECKPOINT, then fails over at the end of the stream.
    let digest = restore_into(&out, GuestType::Hvm, StreamType::Remus);
    assert_eq!(&digest, cb.digests.last().expect("digests"));
}

#[test]
fn pv_page_tables_compress_and_are_localised_on_restore() {
    let h = TempHost::new("cz-pv");
    let id = guest(&h, GuestType::Pv, 8);
    let (_, plain, digest) = save(&h, id, &params(CompressMode::Off, 0));
    let (s, out, d) = save(&h, id, &params(CompressMode::Lz4, 2));
    assert_eq!(d, digest);
    assert!(s.compressed_records > 0);
    assert!(out.len() < plain.len(), "{} vs {}", out.len(), plain.len());
    assert_eq!(restore_into(&out, GuestType::Pv, StreamType::Plain), digest);
}

#[test]
fn a_bad_zstd_level_fails_the_save_before_any_page_and_leaves_the_guest_running() {
    let h = TempHost::new("cz-level");
    let id = h.create(GuestType::Hvm, GUEST, 9, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut out = Vec::new();
    let e = save_domain(
        &h.hv(),
        id,
        &mut out,
        &params(CompressMode::Zstd { level: 99 }, 1),
        &mut cb,
        &RecLog::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("level 99"), "{e}");
    assert_eq!(cb.suspends, 0);
    let mut r = Reader::new(&out[..]).expect("headers were written");
    while let Ok(Some(rec)) = r.next_record() {
        assert_ne!(rec.record_type(), RecordType::PAGE_DATA);
    }
}
