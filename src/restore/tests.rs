//! Save → restore round trips and hostile streams, over temporary xensim
//! hosts (one per side, as two machines).

use std::io::{BufReader, BufWriter, Write};
use std::time::Duration;

use xensim::workload::{run, RunOptions};
use xensim::{GuestType, Host};

use super::*;
use crate::hv::sim::SimHypervisor;
use crate::hv::{param, GuestMemory, MappedPages};
use crate::save::testutil::{
    verify_stream_v2, RecLog, TempHost, ToolstackRestore, ToolstackSave, ERROR, FAILOVER, GO, STOP,
};
use crate::save::{save_domain, SaveParams, SaveSummary};
use crate::stream::{CompressedPages, Compression};
use crate::stream::{
    HvmParam, ImageHeader, PageType, PfnEntry, Record, RecordType, Version, Writer, WriterOptions,
};
use crate::toolstack::{CallbackFailed, Next};

const BIG: u64 = 256 << 20;
const SMALL: u64 = 16 << 20;

pub(super) fn restore_params() -> RestoreParams {
    RestoreParams {
        store_evtchn: 5,
        store_domid: 0,
        console_evtchn: 6,
        console_domid: 0,
        stream_type: StreamType::Plain,
        ..RestoreParams::default()
    }
}

struct RoundTrip {
    save: SaveSummary,
    restored: RestoreOutputs,
    missing: Vec<MissingStaticData>,
    workload_pages: u64,
}

/// Saves a fresh `mem`-byte guest of type `t` on one host (optionally with
/// a workload dirtying it), checks the stream with verify-stream-v2,
/// restores it into an empty domain on another host and compares digests.
fn round_trip(t: GuestType, mem: u64, params: SaveParams, workload: bool) -> RoundTrip {
    let src = TempHost::new("src");
    let dst = TempHost::new("dst");
    let sid = src.create(t, mem, 42, false);
    let did = dst.create(t, mem, 0, true);

    let worker = workload.then(|| {
        let dir = src.dir.clone();
        std::thread::spawn(move || {
            let host = Host::open(&dir).expect("host");
            let d = host.domain(sid).expect("domain");
            run(
                &d,
                &RunOptions {
                    dirty_rate_bytes: 64 << 20,
                    working_set_bytes: 8 << 20,
                    seed: 9,
                    max_duration: Some(Duration::from_secs(120)),
                    follow: false,
                    pattern: xensim::workload::Pattern::Random,
                },
            )
            .expect("workload")
        })
    });
    if workload {
        // Let the guest run a little before the save starts.
        std::thread::sleep(Duration::from_millis(200));
    }

    let path = src.dir.join("stream.xc");
    let mut cb = ToolstackSave::new(src.domain(sid));
    let save = {
        let mut f = BufWriter::new(std::fs::File::create(&path).expect("stream file"));
        let s = save_domain(&src.hv(), sid, &mut f, &params, &mut cb, &RecLog::default())
            .expect("save");
        f.flush().expect("flush");
        s
    };
    let workload_pages = worker.map_or(0, |w| w.join().expect("workload thread").pages_written);
    let src_digest = cb.digest_at_suspend.clone().expect("suspended");
    assert_eq!(save.bytes_written, std::fs::metadata(&path).unwrap().len());
    if let Err(out) = verify_stream_v2(&path) {
        panic!("verify-stream-v2 rejected our stream:\n{out}");
    }

    let mut rcb = ToolstackRestore::default();
    let log = RecLog::default();
    let mut input = BufReader::new(std::fs::File::open(&path).expect("open stream"));
    let restored = restore_domain(&dst.hv(), did, &mut input, &restore_params(), &mut rcb)
        .unwrap_or_else(|e| panic!("restore: {e}; log: {:?}", log.lines.borrow()));

    let target = dst.domain(did);
    assert_eq!(
        target.digest().expect("digest"),
        src_digest,
        "restored digest differs: source {:?}\ntarget {:?}",
        src.domain(sid).digest_report().ok(),
        target.digest_report().ok()
    );
    // Outputs and grant seeding follow the source's store/console pages.
    let source = src.domain(sid);
    let store = source.hvm_param(param::STORE_PFN).unwrap();
    let console = source.hvm_param(param::CONSOLE_PFN).unwrap();
    assert_eq!(restored.store_gfn, store);
    assert_eq!(restored.console_gfn, console);
    let g = target.grant_entries().unwrap();
    assert_eq!(g[0], (1, 0, console as u32));
    assert_eq!(g[1], (1, 0, store as u32));
    assert_eq!(target.hvm_param(param::STORE_EVTCHN).unwrap(), 5);
    assert_eq!(target.hvm_param(param::CONSOLE_EVTCHN).unwrap(), 6);
    RoundTrip {
        save,
        restored,
        missing: rcb.missing,
        workload_pages,
    }
}

#[test]
fn nonlive_hvm_256m_round_trip_restores_the_source_digest() {
    let r = round_trip(GuestType::Hvm, BIG, SaveParams::default(), false);
    assert_eq!(r.missing, vec![MissingStaticData::default()]);
    assert_eq!(r.save.precopy_iterations, 0);
    assert_eq!(r.save.pages_sent, r.restored.pages_written);
    // Zero pages went as XALLOC: populated, no data.
    assert!(r.save.pages_zero > 0);
    assert_eq!(
        r.restored.pages_populated,
        r.save.pages_sent + r.save.pages_zero
    );
    assert_eq!(r.save.pages_sent, r.save.pages_sent_suspended);
    eprintln!(
        "non-live HVM 256 MiB: {} pages, {} PAGE_DATA records, {} bytes",
        r.save.pages_sent, r.save.page_data_records, r.save.bytes_written
    );
}

#[test]
fn nonlive_pvh_256m_round_trip_restores_the_source_digest() {
    let r = round_trip(GuestType::Pvh, BIG, SaveParams::default(), false);
    assert_eq!(r.missing, vec![MissingStaticData::default()]);
    assert_eq!(r.save.pages_sent, r.restored.pages_written);
}

#[test]
fn live_hvm_256m_with_workload_and_verify_pass_restores_the_source_digest() {
    let params = SaveParams {
        live: true,
        debug: true,
        ..SaveParams::default()
    };
    let r = round_trip(GuestType::Hvm, BIG, params, true);
    assert!(r.workload_pages > 0, "the workload dirtied nothing");
    assert!(r.save.precopy_iterations >= 2);
    // The verify pass resends every page; the restorer compares them all.
    let ram = r.restored.pages_populated;
    assert_eq!(r.restored.pages_verified, ram);
    assert_eq!(r.restored.verify_mismatches, 0);
    assert_eq!(r.restored.pages_written + ram, r.save.pages_sent);
    assert_eq!(r.save.pages_sent_verify, ram);
    assert!(r.save.suspended_time <= r.save.total_time);
    eprintln!(
        "live HVM 256 MiB: save took {:?}, guest stopped for {:?} of it (verify pass included)",
        r.save.total_time, r.save.suspended_time
    );
    eprintln!(
        "live HVM 256 MiB + workload ({} page writes): {} rounds, {} pages sent ({} while suspended, {} verify), {} bytes; policy calls {:?}",
        r.workload_pages,
        r.save.precopy_iterations,
        r.save.pages_sent,
        r.save.pages_sent_suspended,
        r.save.pages_sent_verify,
        r.save.bytes_written,
        r.save.policy_calls
    );
}

#[test]
fn live_pvh_256m_with_workload_restores_the_source_digest() {
    let params = SaveParams {
        live: true,
        ..SaveParams::default()
    };
    let r = round_trip(GuestType::Pvh, BIG, params, true);
    assert!(r.workload_pages > 0);
    // Pages dirtied during the rounds went more than once.
    assert!(r.save.pages_sent + r.save.pages_zero > r.restored.pages_populated);
    assert_eq!(r.restored.pages_verified, 0);
    assert!(r.save.suspended_time <= r.save.total_time);
    eprintln!(
        "live PVH 256 MiB: save took {:?}, guest stopped for {:?} of it",
        r.save.total_time, r.save.suspended_time
    );
    eprintln!(
        "live PVH 256 MiB + workload ({} page writes): {} rounds, {} pages sent ({} while suspended), {} bytes",
        r.workload_pages,
        r.save.precopy_iterations,
        r.save.pages_sent,
        r.save.pages_sent_suspended,
        r.save.bytes_written
    );
}

/// A valid non-live stream of a small HVM guest.
fn small_stream(seed: u64) -> Vec<u8> {
    let h = TempHost::new("small");
    let id = h.create(GuestType::Hvm, SMALL, seed, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut out = Vec::new();
    save_domain(
        &h.hv(),
        id,
        &mut out,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .expect("save");
    out
}

/// Re-encodes `stream` record by record; `f` may write replacements (and
/// return true) or leave the record to be copied.
pub(super) fn rewrite(
    stream: &[u8],
    image: Option<ImageHeader>,
    mut f: impl FnMut(&Record<'_>, &mut Writer<&mut Vec<u8>>) -> bool,
) -> Vec<u8> {
    let mut r = stream::Reader::new(stream).expect("valid input");
    let dh = *r.domain_header();
    let ih = image.unwrap_or(*r.image_header());
    let mut out = Vec::new();
    {
        let mut w = Writer::with_options(
            &mut out,
            &dh,
            WriterOptions {
                image: ih,
                check_grammar: false,
                ..WriterOptions::default()
            },
        )
        .expect("headers");
        while let Some(rec) = r.next_record().expect("record") {
            if !f(&rec, &mut w) {
                w.write_record(&rec).expect("copy record");
            }
        }
    }
    out
}

/// The head of an XCMIG_COMPRESSED_PAGE_DATA body with one entry and
/// size entry `size`.
fn compressed_head(e: PfnEntry, c: Compression, size: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&[c.id(), 0, 0, 0]);
    b.extend_from_slice(&e.to_raw().to_le_bytes());
    b.extend_from_slice(&size.to_le_bytes());
    b
}

/// Restores `stream` into a fresh empty HVM domain.
fn restore_into_fresh(stream: &[u8]) -> (Result<RestoreOutputs, RestoreError>, ToolstackRestore) {
    let h = TempHost::new("bad");
    let id = h.create(GuestType::Hvm, SMALL, 0, true);
    let mut cb = ToolstackRestore::default();
    let mut input = stream;
    let r = restore_domain(
        &SimHypervisor::new(h.reopen()),
        id,
        &mut input,
        &restore_params(),
        &mut cb,
    );
    (r, cb)
}

#[test]
fn malformed_streams_each_stop_the_restore_with_a_clear_error() {
    let good = small_stream(3);
    assert!(restore_into_fresh(&good).0.is_ok(), "baseline restore");

    let set = |b: &[u8], off: usize, v: &[u8]| {
        let mut c = b.to_vec();
        c[off..off + v.len()].copy_from_slice(v);
        c
    };
    let first_rec = 40;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty input", Vec::new(), "truncated in image header"),
        (
            "cut in domain header",
            good[..30].to_vec(),
            "truncated in domain header",
        ),
        (
            "cut mid stream",
            good[..good.len() / 2].to_vec(),
            "truncated",
        ),
        ("no END", good[..good.len() - 8].to_vec(), "without an END"),
        ("bad marker", set(&good, 0, &[0]), "bad image marker"),
        ("bad id", set(&good, 8, b"XENG"), "bad image id"),
        (
            "version 4",
            set(&good, 12, &4u32.to_be_bytes()),
            "unsupported stream version 4",
        ),
        (
            "version 1",
            set(&good, 12, &1u32.to_be_bytes()),
            "unsupported stream version 1",
        ),
        (
            "PV stream",
            set(&good, 24, &1u32.to_le_bytes()),
            "x86 PV domain into an x86 HVM",
        ),
        (
            "reserved domain type",
            set(&good, 24, &7u32.to_le_bytes()),
            "reserved domain type",
        ),
        (
            "page shift 13",
            set(&good, 28, &13u16.to_le_bytes()),
            "page_shift 13",
        ),
        (
            "record too long",
            set(&good, first_rec + 4, &(200u32 << 20).to_le_bytes()),
            "128 MiB",
        ),
        (
            "unknown mandatory record",
            set(&good, first_rec, &0x13u32.to_le_bytes()),
            "unknown mandatory record type 0x13",
        ),
    ];
    let mut cases = cases;

    let rw = |f: &mut dyn FnMut(&Record<'_>, &mut Writer<&mut Vec<u8>>) -> bool| {
        rewrite(&good, None, |r, w| f(r, w))
    };
    cases.push((
        "no STATIC_DATA_END",
        rw(&mut |r, _| matches!(r, Record::StaticDataEnd)),
        "STATIC_DATA_END",
    ));
    cases.push((
        "two STATIC_DATA_END",
        rw(&mut |r, w| {
            if matches!(r, Record::StaticDataEnd) {
                w.write_static_data_end().unwrap();
                w.write_static_data_end().unwrap();
                true
            } else {
                false
            }
        }),
        "STATIC_DATA_END",
    ));
    cases.push((
        "PAGE_DATA count 0",
        rw(&mut |r, w| {
            if matches!(r, Record::StaticDataEnd) {
                w.write_static_data_end().unwrap();
                w.write_raw(RecordType::PAGE_DATA, &[&[0u8; 8]]).unwrap();
                true
            } else {
                false
            }
        }),
        "count is zero",
    ));
    cases.push((
        "PAGE_DATA short of its page",
        rw(&mut |r, w| {
            if matches!(r, Record::StaticDataEnd) {
                w.write_static_data_end().unwrap();
                let mut b = Vec::new();
                b.extend_from_slice(&1u32.to_le_bytes());
                b.extend_from_slice(&0u32.to_le_bytes());
                b.extend_from_slice(&5u64.to_le_bytes());
                b.extend_from_slice(&[0xaa; 100]);
                w.write_raw(RecordType::PAGE_DATA, &[&b]).unwrap();
                true
            } else {
                false
            }
        }),
        "body_length",
    ));
    cases.push((
        "PAGE_DATA reserved page type",
        rw(&mut |r, w| {
            if matches!(r, Record::StaticDataEnd) {
                w.write_static_data_end().unwrap();
                let mut b = Vec::new();
                b.extend_from_slice(&1u32.to_le_bytes());
                b.extend_from_slice(&0u32.to_le_bytes());
                b.extend_from_slice(&((5u64 << 60) | 7).to_le_bytes());
                w.write_raw(RecordType::PAGE_DATA, &[&b]).unwrap();
                true
            } else {
                false
            }
        }),
        "reserved page type",
    ));
    cases.push((
        "PAGE_DATA pfn beyond the guest address space",
        rw(&mut |r, w| {
            if matches!(r, Record::StaticDataEnd) {
                w.write_static_data_end().unwrap();
                let page = [0x5a_u8; 4096];
                w.write_page_data(&[PfnEntry::new(1 << 40, PageType::NoTab)], &[&page])
                    .unwrap();
                true
            } else {
                false
            }
        }),
        "xc_domain_populate_physmap_exact failed",
    ));
    cases.push((
        "CHECKPOINT in a plain stream",
        rw(&mut |r, w| {
            if matches!(r, Record::X86TscInfo(_)) {
                w.write_checkpoint().unwrap();
            }
            false
        }),
        "CHECKPOINT in a plain stream",
    ));
    cases.push((
        "PV record in an HVM stream",
        rw(&mut |r, w| {
            if matches!(r, Record::X86TscInfo(_)) {
                w.write_raw(RecordType::X86_PV_INFO, &[&[8, 4, 0, 0, 0, 0, 0, 0]])
                    .unwrap();
            }
            false
        }),
        "not valid in an x86 HVM stream",
    ));
    cases.push((
        "no HVM_CONTEXT",
        rw(&mut |r, _| matches!(r, Record::HvmContext(_))),
        "without an HVM_CONTEXT record",
    ));
    cases.push((
        "HVM_CONTEXT without header",
        rw(&mut |r, w| {
            if matches!(r, Record::HvmContext(_)) {
                w.write_hvm_context(&[0u8; 16]).unwrap();
                true
            } else {
                false
            }
        }),
        "xc_domain_hvm_setcontext failed",
    ));
    cases.push((
        "TSC mode 7",
        rw(&mut |r, w| {
            if let Record::X86TscInfo(t) = r {
                let mut t = *t;
                t.mode = 7;
                w.write_x86_tsc_info(&t).unwrap();
                true
            } else {
                false
            }
        }),
        "xc_domain_set_tsc_info failed",
    ));
    cases.push((
        "HVM param index out of range",
        rw(&mut |r, w| {
            if matches!(r, Record::HvmParams(_)) {
                w.write_hvm_params(&[HvmParam {
                    index: 1000,
                    value: 1,
                }])
                .unwrap();
                true
            } else {
                false
            }
        }),
        "xc_hvm_param_set failed",
    ));
    cases.push((
        "HVM_PARAMS count disagrees with length",
        rw(&mut |r, w| {
            if matches!(r, Record::HvmParams(_)) {
                let mut b = Vec::new();
                b.extend_from_slice(&3u32.to_le_bytes());
                b.extend_from_slice(&0u32.to_le_bytes());
                b.extend_from_slice(&[0u8; 16]);
                w.write_raw(RecordType::HVM_PARAMS, &[&b]).unwrap();
                true
            } else {
                false
            }
        }),
        "body_length",
    ));
    cases.push((
        "CPUID policy of 25 bytes",
        rw(&mut |r, w| {
            if matches!(r, Record::X86CpuidPolicy(_)) {
                w.write_raw(RecordType::X86_CPUID_POLICY, &[&[0u8; 25]])
                    .unwrap();
                true
            } else {
                false
            }
        }),
        "multiple of 24",
    ));
    // xcmig's compressed page data: the first PAGE_DATA replaced by one
    // compressed record whose page is `data` (with size entry `size`).
    let compressed = |c: Compression, size: Option<u16>, data: Vec<u8>| {
        let size = size.unwrap_or(data.len() as u16);
        let mut done = false;
        rewrite(&good, None, move |r, w| {
            let Record::PageData(pd) = r else {
                return false;
            };
            if done {
                return false;
            }
            done = true;
            let e = pd
                .entries()
                .iter()
                .find(|e| e.page_type.has_data())
                .unwrap();
            let pages = CompressedPages {
                sizes: vec![size],
                data: data.clone(),
            };
            w.write_raw(
                RecordType::XCMIG_COMPRESSED_PAGE_DATA,
                &[&compressed_head(*e, c, size), &pages.data],
            )
            .unwrap();
            true
        })
    };
    cases.push((
        "compressed page of 100 octets",
        compressed(
            Compression::Lz4,
            None,
            lz4_flex::block::compress(&[7u8; 100]),
        ),
        "decompressed to 100 octets, not a page",
    ));
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
    cases.push((
        "compressed page that inflates to 64 MiB",
        compressed(Compression::Zstd, None, bomb),
        "more than a page",
    ));
    cases.push((
        "compressed page of garbage",
        compressed(Compression::Lz4, None, vec![0xff; 300]),
        "invalid LZ4 block",
    ));
    cases.push((
        "compressed size entry of 0",
        compressed(Compression::Lz4, Some(0), Vec::new()),
        "size 0, not 1 to 4096",
    ));
    for (name, stream, expect) in cases {
        let (r, _) = restore_into_fresh(&stream);
        let e = match r {
            Ok(_) => panic!("{name}: restore accepted a malformed stream"),
            Err(e) => e,
        };
        let msg = e.to_string();
        assert!(
            msg.contains(expect),
            "{name}: error {msg:?} does not mention {expect:?}"
        );
        assert!(e.errno() > 0, "{name}: errno");
    }
}

#[test]
fn every_truncation_of_a_stream_fails_cleanly() {
    let good = small_stream(4);
    // Cut points across headers, the first records and the tail.
    let mut cuts: Vec<usize> = (0..200).step_by(7).collect();
    cuts.extend((good.len() - 200..good.len()).step_by(13));
    cuts.extend((1..8).map(|i| good.len() * i / 8));
    for cut in cuts {
        let (r, _) = restore_into_fresh(&good[..cut]);
        let e = match r {
            Ok(_) => panic!("restore accepted a stream cut at {cut} of {}", good.len()),
            Err(e) => e,
        };
        assert!(matches!(e, RestoreError::Stream(_)), "cut at {cut}: {e}");
    }
}

#[test]
fn v2_stream_infers_static_data_end_and_reports_missing_policies() {
    let good = small_stream(5);
    let v2 = ImageHeader {
        version: Version::V2,
        ..ImageHeader::V3_LE
    };
    let stream = rewrite(&good, Some(v2), |r, _| {
        matches!(
            r,
            Record::StaticDataEnd | Record::X86CpuidPolicy(_) | Record::X86MsrPolicy(_)
        )
    });
    let (r, cb) = restore_into_fresh(&stream);
    let out = r.expect("v2 restore");
    assert_eq!(out.stream_version, 2);
    assert_eq!(
        cb.missing,
        vec![MissingStaticData {
            cpuid: true,
            msr: true
        }]
    );
}

#[test]
fn static_data_done_failure_stops_the_restore() {
    let good = small_stream(6);
    let h = TempHost::new("sdd");
    let id = h.create(GuestType::Hvm, SMALL, 0, true);
    let mut cb = ToolstackRestore {
        static_data_failure: Some(CallbackFailed { code: 1 }),
        ..Default::default()
    };
    let mut input = &good[..];
    let e = restore_domain(&h.hv(), id, &mut input, &restore_params(), &mut cb)
        .expect_err("callback failure");
    assert!(
        matches!(
            e,
            RestoreError::Callback {
                name: "static_data_done",
                rc: 1
            }
        ),
        "{e}"
    );
    assert_eq!(cb.missing, vec![MissingStaticData::default()]);
}

#[test]
fn deprecated_pae_param_is_skipped_and_magic_pages_are_cleared() {
    let h = TempHost::new("magic");
    let id = h.create(GuestType::Hvm, SMALL, 7, false);
    let src = h.domain(id);
    let store = src.hvm_param(param::STORE_PFN).unwrap();
    let mut page = [0u8; 4096];
    src.read_frame(store, &mut page).unwrap();
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut good = Vec::new();
    save_domain(
        &h.hv(),
        id,
        &mut good,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .unwrap();
    let stream = rewrite(&good, None, |r, w| {
        if let Record::HvmParams(p) = r {
            let mut v = p.to_vec();
            v.push(HvmParam {
                index: u64::from(param::PAE_ENABLED),
                value: 1,
            });
            w.write_hvm_params(&v).unwrap();
            true
        } else {
            false
        }
    });
    let d = TempHost::new("magic-dst");
    let did = d.create(GuestType::Hvm, SMALL, 0, true);
    let mut rcb = ToolstackRestore::default();
    let mut input = &stream[..];
    let out = restore_domain(&d.hv(), did, &mut input, &restore_params(), &mut rcb)
        .expect("PAE_ENABLED must be skipped");
    assert_eq!(out.store_gfn, store);
    let target = d.domain(did);
    let mut after = [0xffu8; 4096];
    target.read_frame(store, &mut after).unwrap();
    assert!(after.iter().all(|&b| b == 0), "store page not cleared");
    assert_eq!(target.hvm_param(param::PAE_ENABLED).unwrap_or(0), 0);
    assert_eq!(target.digest().unwrap(), cb.digest_at_suspend.unwrap());
}

#[test]
fn grant_entries_are_skipped_for_a_backend_that_is_the_guest_itself() {
    let good = small_stream(8);
    let h = TempHost::new("gnt");
    let id = h.create(GuestType::Hvm, SMALL, 0, true);
    let params = RestoreParams {
        console_domid: id,
        store_domid: 7,
        ..restore_params()
    };
    let mut input = &good[..];
    let out = restore_domain(
        &h.hv(),
        id,
        &mut input,
        &params,
        &mut ToolstackRestore::default(),
    )
    .expect("restore");
    let g = h.domain(id).grant_entries().unwrap();
    assert_eq!(g[0], (0, 0, 0), "console entry must stay empty");
    assert_eq!(g[1], (1, 7, out.store_gfn as u32));
}

#[test]
fn restoring_into_a_running_domain_fails_on_the_cpu_policy() {
    let good = small_stream(9);
    let h = TempHost::new("running");
    // Not empty: created and already run, so Xen refuses a new CPU policy.
    let id = h.create(GuestType::Hvm, SMALL, 1, false);
    let mut input = &good[..];
    let e = restore_domain(
        &h.hv(),
        id,
        &mut input,
        &restore_params(),
        &mut ToolstackRestore::default(),
    )
    .expect_err("EEXIST");
    assert_eq!(e.errno(), 17, "{e}");
}

#[test]
fn sim_mapping_reports_unpopulated_frames_per_slot() {
    let h = TempHost::new("map");
    let id = h.create(GuestType::Hvm, SMALL, 1, false);
    let hv = h.hv();
    let m = hv.map_read(id, &[0, 0xfff_ffff, 1]).expect("map");
    assert_eq!(m.count(), 3);
    assert_eq!(m.error(0), 0);
    assert_ne!(m.error(1), 0);
    assert_eq!(m.error(2), 0);
}

#[test]
fn live_migration_over_a_socket_restores_while_the_save_runs() {
    use std::os::unix::net::UnixStream;

    let src = TempHost::new("mig-src");
    let dst = TempHost::new("mig-dst");
    let sid = src.create(GuestType::Hvm, 64 << 20, 11, false);
    let did = dst.create(GuestType::Hvm, 64 << 20, 0, true);
    let (tx, rx) = UnixStream::pair().expect("socketpair");

    let wdir = src.dir.clone();
    let worker = std::thread::spawn(move || {
        let d = Host::open(&wdir).unwrap().domain(sid).unwrap();
        run(
            &d,
            &RunOptions {
                dirty_rate_bytes: 32 << 20,
                working_set_bytes: 4 << 20,
                seed: 3,
                max_duration: Some(Duration::from_secs(120)),
                follow: false,
                pattern: xensim::workload::Pattern::Random,
            },
        )
        .expect("workload")
    });
    std::thread::sleep(Duration::from_millis(100));

    let sdir = src.dir.clone();
    let saver = std::thread::spawn(move || {
        let host = Host::open(&sdir).unwrap();
        let mut cb = ToolstackSave::new(host.domain(sid).unwrap());
        let hv = SimHypervisor::new(host);
        let mut w = BufWriter::new(tx);
        let params = SaveParams {
            live: true,
            ..SaveParams::default()
        };
        let s = save_domain(&hv, sid, &mut w, &params, &mut cb, &RecLog::default())
            .map_err(|e| e.to_string());
        drop(w);
        (s, cb.digest_at_suspend)
    });

    let mut input = BufReader::new(rx);
    let restored = restore_domain(
        &dst.hv(),
        did,
        &mut input,
        &restore_params(),
        &mut ToolstackRestore::default(),
    )
    .expect("restore");
    let (saved, digest) = saver.join().expect("saver thread");
    let saved = saved.expect("save");
    let written = worker.join().expect("workload thread").pages_written;
    assert!(written > 0);
    assert_eq!(
        dst.domain(did).digest().unwrap(),
        digest.expect("suspended")
    );
    assert_eq!(restored.pages_written, saved.pages_sent);
    eprintln!(
        "socket migration 64 MiB HVM: {} rounds, {} pages, {} bytes, {} pages after suspend",
        saved.precopy_iterations, saved.pages_sent, saved.bytes_written, saved.pages_sent_suspended
    );
}

/// A Remus stream of three checkpoints of a guest that rewrites 300 pages
/// after each resume, with the digest at each suspend.
fn remus_stream() -> (Vec<u8>, Vec<String>) {
    let h = TempHost::new("remus-src");
    let id = h.create(GuestType::Hvm, SMALL, 21, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    cb.checkpoint_answers = [Next::Continue, Next::Continue, STOP].into_iter().collect();
    cb.dirty_on_resume = 300;
    let params = SaveParams {
        live: true,
        debug: false,
        stream_type: StreamType::Remus,
        ..SaveParams::default()
    };
    let mut out = Vec::new();
    let s = save_domain(&h.hv(), id, &mut out, &params, &mut cb, &RecLog::default())
        .expect("remus save");
    assert_eq!(s.checkpoints, 3);
    assert_eq!(cb.digests.len(), 3);
    assert_ne!(
        cb.digests[1], cb.digests[2],
        "the guest changed between checkpoints"
    );
    (out, cb.digests)
}

fn remus_restore(
    stream: &[u8],
    answers: &[Result<Proceed, CallbackFailed>],
) -> (Result<RestoreOutputs, RestoreError>, String) {
    remus_restore_limited(stream, answers, DEFAULT_CHECKPOINT_BUFFER_LIMIT)
}

fn remus_restore_limited(
    stream: &[u8],
    answers: &[Result<Proceed, CallbackFailed>],
    checkpoint_buffer_limit: u64,
) -> (Result<RestoreOutputs, RestoreError>, String) {
    let mut input = stream;
    remus_restore_from(&mut input, answers, checkpoint_buffer_limit)
}

fn remus_restore_from(
    mut input: &mut dyn std::io::Read,
    answers: &[Result<Proceed, CallbackFailed>],
    checkpoint_buffer_limit: u64,
) -> (Result<RestoreOutputs, RestoreError>, String) {
    let h = TempHost::new("remus-dst");
    let id = h.create(GuestType::Hvm, SMALL, 0, true);
    let mut cb = ToolstackRestore {
        checkpoint_answers: answers.iter().copied().collect(),
        ..Default::default()
    };
    let params = RestoreParams {
        stream_type: StreamType::Remus,
        checkpoint_buffer_limit,
        ..restore_params()
    };
    let r = restore_domain(&h.hv(), id, &mut input, &params, &mut cb);
    let digest = h.domain(id).digest().unwrap();
    (r, digest)
}

/// Offset just after the `n`th CHECKPOINT record of a Remus stream.
fn after_checkpoint(stream: &[u8], n: usize) -> usize {
    let mut r = stream::Reader::with_options(
        stream,
        stream::ReaderOptions {
            grammar: stream::GrammarOptions {
                checkpoints: stream::Checkpoints::Accept,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let mut seen = 0;
    while let Some(rec) = r.next_record().unwrap() {
        if matches!(rec, Record::Checkpoint) {
            seen += 1;
            if seen == n {
                return r.offset() as usize;
            }
        }
    }
    panic!("fewer than {n} checkpoints");
}

#[cfg(feature = "xen")]
/// The first `len` bytes of `stream` on a socket whose sending end then
/// stays open and silent (a primary that hung, or a cut link), read
/// through the C layer's descriptor I/O with a short timeout.
fn remus_restore_from_silent_primary(
    stream: &[u8],
    len: usize,
) -> (Result<RestoreOutputs, RestoreError>, String, Duration) {
    use std::os::fd::AsRawFd;
    let (mut primary, secondary) = std::os::unix::net::UnixStream::pair().unwrap();
    let bytes = stream[..len].to_vec();
    let writer = std::thread::spawn(move || {
        primary.write_all(&bytes).unwrap();
        primary // kept open: no end of stream
    });
    let timeout = Duration::from_millis(500);
    let mut io =
        crate::capi::fd::FdIo::with_timeout(secondary.as_raw_fd(), "the stream", Some(timeout));
    let started = std::time::Instant::now();
    let (r, digest) = remus_restore_from(&mut io, &[], DEFAULT_CHECKPOINT_BUFFER_LIMIT);
    let took = started.elapsed();
    drop(writer.join().unwrap());
    (r, digest, took)
}

#[cfg(feature = "xen")]
#[test]
fn remus_restore_treats_an_io_timeout_as_a_dead_primary_and_fails_over() {
    let (stream, digests) = remus_stream();
    // Silent after the second checkpoint plus part of the third: libxl's
    // secondary fails over on a broken stream, and a timeout is one.
    let cut = after_checkpoint(&stream, 2) + 8 + 4096;
    let (r, digest, took) = remus_restore_from_silent_primary(&stream, cut);
    let out = r.expect("failover after the timeout");
    assert_eq!(out.checkpoints, 2);
    assert_eq!(digest, digests[1]);
    assert!(took < Duration::from_secs(30), "{took:?}");

    // Silent before the first checkpoint completed: nothing consistent to
    // fail over to, so the restore fails with ETIMEDOUT and says why.
    let (r, _, _) = remus_restore_from_silent_primary(&stream, after_checkpoint(&stream, 1) - 8);
    let e = r.expect_err("no checkpoint to fail over to");
    assert_eq!(e.errno(), libc::ETIMEDOUT, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("timed out receiving the stream"), "{msg}");
    assert!(msg.contains("XCMIG_IO_TIMEOUT"), "{msg}");
}

#[test]
fn remus_restore_fails_over_to_the_last_complete_checkpoint() {
    let (stream, digests) = remus_stream();
    // The primary stopped after its third checkpoint: EOF after CHECKPOINT.
    let (r, digest) = remus_restore(&stream, &[]);
    let out = r.expect("failover restore");
    assert_eq!(out.checkpoints, 3);
    assert_eq!(digest, digests[2]);

    // The primary died in the middle of the third checkpoint's records: the
    // partial set is dropped and the second checkpoint is restored. The
    // cut is inside the third checkpoint's PAGE_DATA.
    let cut = after_checkpoint(&stream, 2) + 8 + 4096;
    let (r, digest) = remus_restore(&stream[..cut], &[]);
    let out = r.expect("failover to checkpoint 2");
    assert_eq!(out.checkpoints, 2);
    assert_eq!(digest, digests[1]);

    // checkpoint() asking for failover at the second checkpoint restores the first.
    let (r, digest) = remus_restore(&stream, &[GO, FAILOVER]);
    assert_eq!(r.expect("failover on request").checkpoints, 1);
    assert_eq!(digest, digests[0]);
}

#[test]
fn remus_checkpoint_over_the_buffer_limit_is_an_error_naming_the_limit_not_a_failover() {
    let (stream, digests) = remus_stream();
    // Each checkpoint after the first carries the 300 pages the guest
    // rewrote (1.2 MiB): 256 KiB cannot hold one.
    let limit = 256 << 10;
    let (r, _) = remus_restore_limited(&stream, &[], limit);
    let e = r.expect_err("a checkpoint over the limit must fail the restore");
    match &e {
        RestoreError::CheckpointBufferFull {
            checkpoint,
            limit: l,
            held,
            needed,
            ..
        } => {
            assert_eq!(
                *checkpoint, 2,
                "the first checkpoint after the initial copy"
            );
            assert_eq!(*l, limit);
            assert!(held + needed > limit && *held <= limit, "{e}");
        }
        other => panic!("wrong error: {other}"),
    }
    assert_eq!(e.errno(), libc::ENOBUFS);
    let msg = e.to_string();
    assert!(
        msg.contains("checkpoint 2") && msg.contains("262144 bytes"),
        "{msg}"
    );
    assert!(msg.contains("XCMIG_CHECKPOINT_BUFFER_MAX"), "{msg}");

    // Under the limit the same stream restores its last checkpoint.
    let (r, digest) = remus_restore_limited(&stream, &[], 4 << 20);
    assert_eq!(r.expect("4 MiB holds a checkpoint").checkpoints, 3);
    assert_eq!(digest, digests[2]);
}

#[test]
fn remus_failover_before_any_checkpoint_is_an_error() {
    let (stream, _) = remus_stream();
    let (r, _) = remus_restore(&stream, &[FAILOVER]);
    let e = r.expect_err("no consistent state yet");
    assert!(
        matches!(e, RestoreError::Record { what: "CHECKPOINT", ref msg } if msg.contains("failover")),
        "{e}"
    );
    let (r, _) = remus_restore(&stream, &[ERROR]);
    assert!(r.is_err());
}

/// The secondary side of a COLO pair: its guest rewrites pfn 0 while it
/// runs between the first two checkpoints.
struct ColoSecondary {
    dom: xensim::Domain,
    results: Vec<(u64, u64)>,
    waits: u32,
}

impl RestoreCallbacks for ColoSecondary {
    fn has(&self, _hook: RestoreHook) -> bool {
        true
    }
    fn checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        GO
    }
    fn postcopy(&mut self) -> Result<Proceed, CallbackFailed> {
        GO
    }
    fn wait_checkpoint(&mut self) -> Result<Proceed, CallbackFailed> {
        self.waits += 1;
        if self.waits <= 2 {
            self.dom.write_frame(0, &[0xee; 4096]).unwrap();
            assert!(self.dom.mark_dirty(0), "secondary log-dirty is on");
        }
        GO
    }
    fn suspend(&mut self) -> Result<Proceed, CallbackFailed> {
        GO
    }
    fn restore_results(&mut self, store_gfn: u64, console_gfn: u64) {
        self.results.push((store_gfn, console_gfn));
    }
}

#[test]
fn colo_pair_merges_the_secondarys_dirty_pages_and_fails_over_to_the_last_checkpoint() {
    use std::os::unix::net::UnixStream;

    let src = TempHost::new("colo-p");
    let dst = TempHost::new("colo-s");
    let sid = src.create(GuestType::Hvm, SMALL, 31, false);
    let did = dst.create(GuestType::Hvm, SMALL, 0, true);
    // libxl, not libxenguest, turns log-dirty on for the secondary.
    dst.domain(did).logdirty_enable().unwrap();
    let (fwd_tx, fwd_rx) = UnixStream::pair().unwrap();
    let (back_tx, back_rx) = UnixStream::pair().unwrap();

    let sdir = src.dir.clone();
    let primary = std::thread::spawn(move || {
        let host = Host::open(&sdir).unwrap();
        let mut cb = ToolstackSave::new(host.domain(sid).unwrap());
        cb.checkpoint_answers = [Next::Continue; 3].into_iter().collect();
        cb.wait_answers = [Next::Continue, Next::Continue, STOP].into_iter().collect();
        cb.dirty_on_resume = 50;
        let hv = SimHypervisor::new(host);
        let mut w = BufWriter::new(fwd_tx);
        let mut back = BufReader::new(back_rx);
        let params = SaveParams {
            live: true,
            debug: false,
            stream_type: StreamType::Colo,
            ..SaveParams::default()
        };
        let r = crate::save::save_domain_with_back_channel(
            &hv,
            sid,
            &mut w,
            Some(&mut back),
            &params,
            &mut cb,
            &RecLog::default(),
        )
        .map_err(|e| e.to_string());
        drop(w);
        // Like libxl, keep the back channel open after the save: the
        // secondary still reports its last dirty set.
        (r, cb.digests, back)
    });

    let mut cb = ColoSecondary {
        dom: dst.domain(did),
        results: Vec::new(),
        waits: 0,
    };
    let mut input = BufReader::new(fwd_rx);
    let mut back = back_tx;
    let params = RestoreParams {
        stream_type: StreamType::Colo,
        ..restore_params()
    };
    let out = restore_domain_with_back_channel(
        &dst.hv(),
        did,
        &mut input,
        Some(&mut back),
        &params,
        &mut cb,
    )
    .expect("COLO restore");
    let (saved, digests, _back) = primary.join().unwrap();
    let saved = saved.expect("COLO save");
    assert_eq!(saved.checkpoints, 3);
    assert_eq!(out.checkpoints, 3);
    assert_eq!(cb.results.len(), 3);
    assert_eq!(cb.results[0], (out.store_gfn, out.console_gfn));
    // pfn 0, rewritten on the secondary, came back from the primary at the
    // next checkpoint: the secondary holds exactly the last checkpoint.
    assert_eq!(digests.len(), 3);
    assert_eq!(dst.domain(did).digest().unwrap(), digests[2]);
}

#[test]
fn randomly_corrupted_streams_never_panic_the_restore() {
    let good = small_stream(12);
    // Where the interesting bytes are: headers and static records at the
    // front, TSC/params/context/END at the back, one PAGE_DATA header in
    // the middle.
    let regions = [
        0..400,
        good.len() - 2048..good.len(),
        good.len() / 2..good.len() / 2 + 64,
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut failed) = (0, 0);
    for case in 0..60 {
        let mut s = good.clone();
        let flips = 1 + next() % 4;
        for _ in 0..flips {
            let r = &regions[(next() % regions.len() as u64) as usize];
            let at = r.start + (next() % (r.end - r.start) as u64) as usize;
            s[at] ^= 1 << (next() % 8);
        }
        match restore_into_fresh(&s).0 {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty(), "case {case}");
                assert!(e.errno() > 0, "case {case}: {e}");
                failed += 1;
            }
        }
    }
    // Most corruptions break a rule; some only change data.
    assert!(failed > 0 && ok + failed == 60);
    eprintln!("corrupted streams: {failed} refused, {ok} restored");
}

#[test]
fn reserved_fields_are_ignored_as_the_spec_asks_of_a_restorer() {
    let h = TempHost::new("reserved-src");
    let id = h.create(GuestType::Hvm, SMALL, 13, false);
    let mut cb = ToolstackSave::new(h.domain(id));
    let mut good = Vec::new();
    save_domain(
        &h.hv(),
        id,
        &mut good,
        &SaveParams::default(),
        &mut cb,
        &RecLog::default(),
    )
    .unwrap();
    let mut first = true;
    let mut s = rewrite(&good, None, |r, w| match r {
        Record::PageData(pd) if first && pd.data_pages() > 0 => {
            first = false;
            let mut b = Vec::new();
            b.extend_from_slice(&(pd.entries().len() as u32).to_le_bytes());
            b.extend_from_slice(&0xdeadu32.to_le_bytes());
            for (i, e) in pd.entries().iter().enumerate() {
                let junk = if i == 0 { 0x5a << 52 } else { 0 };
                b.extend_from_slice(&(e.to_raw() | junk).to_le_bytes());
            }
            w.write_raw(RecordType::PAGE_DATA, &[&b, pd.data()])
                .unwrap();
            true
        }
        _ => false,
    });
    s[20] = 1; // image header reserved bytes
    s[30] = 1; // domain header reserved field
    let d = TempHost::new("reserved-dst");
    let did = d.create(GuestType::Hvm, SMALL, 0, true);
    let mut input = &s[..];
    restore_domain(
        &d.hv(),
        did,
        &mut input,
        &restore_params(),
        &mut ToolstackRestore::default(),
    )
    .expect("reserved fields must not stop a restore");
    assert_eq!(
        d.domain(did).digest().unwrap(),
        cb.digest_at_suspend.unwrap()
    );
}
