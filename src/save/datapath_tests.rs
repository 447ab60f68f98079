//! The data path of issue 5 over `hv::sim`: zero-page elision (and its
//! "once sent, always data" rule), mappings kept across batches and
//! passes, and 2 MiB populates on restore. Every stream is restored by our
//! engine and must reproduce the source's digest.

use std::collections::HashMap;

use xensim::{Domain, GuestType};

use crate::hv::sim::{SimCounters, SimHypervisor};
use crate::hv::{DomId, MappingHints, PAGE_SIZE};
use crate::restore::{restore_domain, RestoreOutputs, RestoreParams};
use crate::save::mapcache::CHUNK_PAGES;
use crate::save::testutil::{RecLog, TempHost, ToolstackRestore, ToolstackSave};
use crate::save::StreamType;
use crate::save::{save_domain, PolicyDecision, SaveParams, SaveSummary};
use crate::stream::{PageType, Reader, Record};

const GUEST: u64 = 64 << 20;

/// What a stream said about one pfn, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    /// XALLOC, no data.
    XAlloc,
    /// A page of data.
    Data(Vec<u8>),
}

/// Every PAGE_DATA entry of `stream`, per pfn, in order.
fn page_events(stream: &[u8]) -> HashMap<u64, Vec<Ev>> {
    let mut r = Reader::new(stream).expect("stream headers");
    let mut ev: HashMap<u64, Vec<Ev>> = HashMap::new();
    while let Some(rec) = r.next_record().expect("record") {
        if let Record::PageData(pd) = rec {
            for (e, page) in pd.pages() {
                let x = match (e.page_type, page) {
                    (PageType::XAlloc, None) => Ev::XAlloc,
                    (PageType::NoTab, Some(p)) => Ev::Data(p.to_vec()),
                    other => panic!("pfn {:#x}: unexpected entry {other:?}", e.pfn),
                };
                ev.entry(e.pfn).or_default().push(x);
            }
        }
    }
    ev
}

fn populated(dom: &Domain) -> Vec<u64> {
    (0..=dom.max_gpfn())
        .filter(|&p| dom.is_populated(p))
        .collect()
}

fn frame(dom: &Domain, pfn: u64) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    dom.read_frame(pfn, &mut page).expect("read frame");
    page
}

fn restore_params() -> RestoreParams {
    RestoreParams {
        store_evtchn: 5,
        store_domid: 0,
        console_evtchn: 6,
        console_domid: 0,
        stream_type: StreamType::Plain,
        ..RestoreParams::default()
    }
}

/// Restores `stream` into a fresh empty domain on its own host; returns
/// the outputs, the backend's call counts and the restored digest.
fn restore(stream: &[u8]) -> (RestoreOutputs, SimCounters, String, u64) {
    let dst = TempHost::new("dp-dst");
    let did = dst.create(GuestType::Hvm, GUEST, 0, true);
    let hv = dst.hv();
    let log = RecLog::default();
    let out = restore_domain(
        &hv,
        did,
        &mut &stream[..],
        &restore_params(),
        &mut ToolstackRestore::default(),
    )
    .unwrap_or_else(|e| panic!("restore: {e}; log: {:?}", log.lines.borrow()));
    let d = dst.domain(did);
    let tot = d.info().expect("info").tot_pages;
    (out, hv.counters(), d.digest().expect("digest"), tot)
}

/// A live save of domain `sid` whose policy calls `at_round(round)` at
/// each second policy call of a round (the guest runs between rounds) and
/// stops after `rounds` rounds.
fn live_save(
    hv: &SimHypervisor,
    h: &TempHost,
    sid: DomId,
    rounds: u32,
    mut at_round: impl FnMut(u32) + 'static,
) -> (SaveSummary, Vec<u8>, String) {
    let mut cb = ToolstackSave::new(h.domain(sid));
    cb.policy = Some(Box::new(move |st| {
        if st.dirty_count == -1 {
            if st.iteration >= rounds {
                return PolicyDecision::StopAndCopy;
            }
            at_round(st.iteration);
        }
        PolicyDecision::Continue
    }));
    let params = SaveParams {
        live: true,
        ..SaveParams::default()
    };
    let mut out = Vec::new();
    let s = save_domain(hv, sid, &mut out, &params, &mut cb, &RecLog::default()).expect("save");
    (s, out, cb.digest_at_suspend.expect("suspended"))
}

#[test]
fn zero_pages_never_sent_go_as_xalloc_without_data_and_restore_identically() {
    let h = TempHost::new("dp-zero");
    let sid = h.create(GuestType::Hvm, GUEST, 5, false);
    let mut cb = ToolstackSave::new(h.domain(sid));
    let mut out = Vec::new();
    let s = save_domain(
        &h.hv(),
        sid,
        &mut out,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .expect("save");
    let dom = h.domain(sid);
    let ev = page_events(&out);
    let pfns = populated(&dom);
    // Every populated pfn appears once, holes not at all.
    assert_eq!(ev.len(), pfns.len());
    let (mut zero, mut data) = (0u64, 0u64);
    for &pfn in &pfns {
        let page = frame(&dom, pfn);
        let e = &ev[&pfn];
        if page.iter().all(|&b| b == 0) {
            assert_eq!(e, &[Ev::XAlloc], "zero pfn {pfn:#x}");
            zero += 1;
        } else {
            assert_eq!(e, &[Ev::Data(page)], "pfn {pfn:#x}");
            data += 1;
        }
    }
    assert_eq!((s.pages_zero, s.pages_sent), (zero, data));
    // The `mixed` fill leaves about half the pages zero.
    assert!(zero * 3 > pfns.len() as u64, "{zero} of {}", pfns.len());
    // The stream is the data pages plus 8 bytes an entry, and little else.
    let bound = data * PAGE_SIZE as u64 + pfns.len() as u64 * 8 + (64 << 10);
    assert!(s.bytes_written <= bound, "{} > {bound}", s.bytes_written);

    let (restored, _, digest, tot) = restore(&out);
    assert_eq!(Some(digest), cb.digest_at_suspend);
    assert_eq!(restored.pages_written, data);
    assert_eq!(restored.pages_populated, zero + data);
    assert_eq!(tot, pfns.len() as u64);
}

#[test]
fn a_pfn_sent_with_data_that_becomes_zero_is_sent_with_data_again() {
    let h = TempHost::new("dp-resend");
    let sid = h.create(GuestType::Hvm, GUEST, 6, false);
    let dom = h.domain(sid);
    let ram: Vec<u64> = populated(&dom)
        .into_iter()
        .filter(|&p| p < 0x4000)
        .collect();
    let is_zero = |p: u64| frame(&dom, p).iter().all(|&b| b == 0);
    let nonzero: Vec<u64> = ram.iter().copied().filter(|&p| !is_zero(p)).collect();
    let zeros: Vec<u64> = ram.iter().copied().filter(|&p| is_zero(p)).collect();
    // P: sent with data, then zeroed. Q: zero, then written. Z: zero,
    // dirtied without a change.
    let (p, q, z) = (nonzero[100], zeros[100], zeros[200]);
    let p_before = frame(&dom, p);
    let guest = h.domain(sid);
    let (s, out, digest) = live_save(&h.hv(), &h, sid, 2, move |round| {
        if round == 1 {
            guest.write_frame(p, &[0u8; PAGE_SIZE]).expect("write");
            guest.write_frame(q, &[0x5a; PAGE_SIZE]).expect("write");
            for pfn in [p, q, z] {
                assert!(guest.mark_dirty(pfn), "log-dirty is on");
            }
        }
    });
    assert_eq!(s.precopy_iterations, 2);
    let ev = page_events(&out);
    assert_eq!(
        ev[&p],
        vec![Ev::Data(p_before), Ev::Data(vec![0; PAGE_SIZE])],
        "once sent, a pfn always carries data"
    );
    assert_eq!(ev[&q], vec![Ev::XAlloc, Ev::Data(vec![0x5a; PAGE_SIZE])]);
    assert_eq!(ev[&z], vec![Ev::XAlloc, Ev::XAlloc]);
    let (_, _, restored, _) = restore(&out);
    assert_eq!(restored, digest);
}

/// Aligned runs of 512 pfns that are all populated.
fn full_2m_runs(dom: &Domain) -> u64 {
    (0..=dom.max_gpfn() / 512)
        .filter(|r| (r * 512..(r + 1) * 512).all(|p| dom.is_populated(p)))
        .count() as u64
}

#[test]
fn whole_aligned_runs_of_512_pfns_are_populated_as_2m_extents() {
    let h = TempHost::new("dp-2m");
    let sid = h.create(GuestType::Hvm, GUEST, 7, false);
    let mut cb = ToolstackSave::new(h.domain(sid));
    let mut out = Vec::new();
    save_domain(
        &h.hv(),
        sid,
        &mut out,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .expect("save");
    let runs = full_2m_runs(&h.domain(sid));
    // 64 MiB of RAM from gfn 0: every run but the first (VGA hole).
    assert_eq!(runs, 31);
    let (restored, c, digest, tot) = restore(&out);
    assert_eq!(Some(digest), cb.digest_at_suspend);
    assert_eq!(c.populated_2m, runs);
    // At most one 2 MiB call per record, and the 4 KiB remainder.
    assert!(c.populate_calls_2m <= restored.page_data_records, "{c:?}");
    assert_eq!(c.populated_4k + 512 * c.populated_2m, tot);
    assert_eq!(restored.pages_populated, tot);
}

/// Chunks of the p2m that hold populated frames.
fn chunks_with_pages(dom: &Domain) -> u64 {
    let mut chunks: Vec<u64> = populated(dom).iter().map(|p| p / CHUNK_PAGES).collect();
    chunks.dedup();
    chunks.len() as u64
}

/// A live save of 4 rounds in which the guest dirties 100 scattered pages
/// before each round after the first, through a backend with `hints`;
/// the stream must restore the digest. Returns the map calls and records.
fn live_save_with_hints(tag: &str, hints: MappingHints) -> (u64, SaveSummary, u64) {
    let h = TempHost::new(tag);
    let sid = h.create(GuestType::Hvm, GUEST, 8, false);
    let dom = h.domain(sid);
    let chunks = chunks_with_pages(&dom);
    let ram: Vec<u64> = populated(&dom)
        .into_iter()
        .filter(|&p| p < 0x4000)
        .collect();
    let guest = h.domain(sid);
    let hv = h.hv().with_mapping_hints(hints);
    let (s, out, digest) = live_save(&hv, &h, sid, 4, move |round| {
        for k in 0..100u64 {
            let pfn = ram[((k * 97 + u64::from(round) * 13) as usize) % ram.len()];
            guest
                .write_frame(pfn, &[round as u8 + 1; PAGE_SIZE])
                .expect("write");
            guest.mark_dirty(pfn);
        }
    });
    assert_eq!(s.precopy_iterations, 4, "{tag}");
    let (_, _, restored, _) = restore(&out);
    assert_eq!(restored, digest, "{tag}");
    (hv.counters().map_calls, s, chunks)
}

#[test]
fn mappings_are_kept_across_batches_and_passes() {
    // xensim's mappings follow the p2m: each chunk is mapped once for the
    // whole save, however many batches and passes use it.
    let (maps, s, chunks) = live_save_with_hints(
        "dp-map-keep",
        MappingHints {
            follows_p2m: true,
            max_cached_pages: 4 << 20,
        },
    );
    // RAM (64 MiB from gfn 0, past the VGA hole) and the special pages.
    assert_eq!(chunks, 3);
    assert_eq!(maps, chunks, "{s:?}");
    assert!(s.page_data_records > 4 * maps, "{s:?}");

    // Xen's do not: chunks are mapped again each pass that needs many of
    // their pages; the later, sparse passes map their few pages per batch.
    let (maps, s, chunks) = live_save_with_hints("dp-map-xen", MappingHints::default());
    assert!(maps <= chunks + 4, "{maps} map calls: {s:?}");

    // No budget: one mapping per batch with data, as libxenguest does.
    let (maps, s, _) = live_save_with_hints(
        "dp-map-none",
        MappingHints {
            follows_p2m: true,
            max_cached_pages: 0,
        },
    );
    assert_eq!(maps, s.page_data_records, "{s:?}");

    // A budget of one chunk: the two chunks evict each other, and the
    // stream is still right.
    let (maps, s, chunks) = live_save_with_hints(
        "dp-map-one",
        MappingHints {
            follows_p2m: true,
            max_cached_pages: CHUNK_PAGES as usize,
        },
    );
    assert!(maps > chunks, "{maps} map calls: {s:?}");
}
