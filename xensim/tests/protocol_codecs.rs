//! The test-support decoders themselves: the libxl-save-helper message
//! decoder and the migration-stream walker, on hand-built inputs, so that a
//! bug in the driver cannot pass for a bug (or a success) in xensim.

mod common;

use common::save_helper::{decode, Msg};
use common::stream::{summarise, REC_END, REC_PAGE_DATA};

fn string(s: &str) -> Vec<u8> {
    let mut v = ((s.len() + 1) as u32).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

#[test]
fn decodes_switch_qemu_logdirty_as_in_the_reference_example() {
    // Body of switch_qemu_logdirty(5, 1): 07 00 | 05 00 00 00 | 01 00 00 00.
    let body = [7, 0, 5, 0, 0, 0, 1, 0, 0, 0];
    assert_eq!(
        decode(&body),
        Ok(Msg::SwitchQemuLogdirty {
            domid: 5,
            enable: 1
        })
    );
}

#[test]
fn decodes_log_and_progress_with_nul_terminated_strings() {
    let mut log = vec![1, 0];
    log.extend_from_slice(&8u32.to_le_bytes());
    log.extend_from_slice(&(-1i32).to_le_bytes());
    log.extend(string("xc"));
    log.extend(string("Failed to map"));
    assert_eq!(
        decode(&log),
        Ok(Msg::Log {
            level: 8,
            errno: -1,
            context: "xc".into(),
            text: "Failed to map".into()
        })
    );
    let mut progress = vec![2, 0];
    progress.extend(string("xc"));
    progress.extend(string("Frames iteration 1"));
    progress.extend_from_slice(&1024u64.to_le_bytes());
    progress.extend_from_slice(&4096u64.to_le_bytes());
    assert_eq!(
        decode(&progress),
        Ok(Msg::Progress {
            context: "xc".into(),
            what: "Frames iteration 1".into(),
            done: 1024,
            total: 4096
        })
    );
}

#[test]
fn decodes_restore_results_and_complete() {
    let mut rr = vec![9, 0];
    rr.extend_from_slice(&0xfeffcu64.to_le_bytes());
    rr.extend_from_slice(&0xfefffu64.to_le_bytes());
    assert_eq!(
        decode(&rr),
        Ok(Msg::RestoreResults {
            store_gfn: 0xfeffc,
            console_gfn: 0xfefff
        })
    );
    let mut c = vec![10, 0];
    c.extend_from_slice(&(-1i32).to_le_bytes());
    c.extend_from_slice(&5i32.to_le_bytes());
    assert_eq!(
        decode(&c),
        Ok(Msg::Complete {
            retval: -1,
            errno: 5
        })
    );
}

#[test]
fn rejects_truncated_unknown_and_padded_messages() {
    assert!(decode(&[7, 0, 5, 0, 0, 0]).is_err(), "truncated");
    assert!(decode(&[11, 0]).is_err(), "unknown number");
    assert!(decode(&[3, 0, 0]).is_err(), "trailing byte");
    let mut bad_string = vec![1, 0, 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    bad_string.extend_from_slice(&2u32.to_le_bytes());
    bad_string.extend_from_slice(b"xc"); // no NUL
    assert!(decode(&bad_string).is_err(), "string without NUL");
    assert!(decode(&[]).is_err(), "empty");
}

/// Builds a v3 HVM stream with the given PAGE_DATA batches of (type, pfn).
fn stream(batches: &[&[(u64, u64)]], end: bool) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&u64::MAX.to_be_bytes());
    s.extend_from_slice(&0x5845_4e46u32.to_be_bytes());
    s.extend_from_slice(&3u32.to_be_bytes());
    s.extend_from_slice(&[0; 8]); // options (little-endian), reserved
    s.extend_from_slice(&2u32.to_le_bytes()); // x86 HVM
    s.extend_from_slice(&12u16.to_le_bytes());
    s.extend_from_slice(&[0; 2]);
    s.extend_from_slice(&4u32.to_le_bytes());
    s.extend_from_slice(&17u32.to_le_bytes());
    for batch in batches {
        let data_pages = batch.iter().filter(|(t, _)| *t == 0).count();
        let len = 8 + batch.len() * 8 + data_pages * 4096;
        s.extend_from_slice(&REC_PAGE_DATA.to_le_bytes());
        s.extend_from_slice(&(len as u32).to_le_bytes());
        s.extend_from_slice(&(batch.len() as u32).to_le_bytes());
        s.extend_from_slice(&[0; 4]);
        for (t, pfn) in *batch {
            s.extend_from_slice(&((t << 60) | pfn).to_le_bytes());
        }
        s.extend(vec![0xa5u8; data_pages * 4096]);
    }
    if end {
        s.extend_from_slice(&REC_END.to_le_bytes());
        s.extend_from_slice(&0u32.to_le_bytes());
    }
    s
}

#[test]
fn stream_walker_counts_pages_and_resends() {
    let s = stream(&[&[(0, 1), (0, 2), (0xf, 3)], &[(0, 2)]], true);
    let sum = summarise(&s).expect("valid stream");
    assert_eq!(sum.version, 3);
    assert_eq!(sum.guest_type, 2);
    assert_eq!(sum.count(REC_PAGE_DATA), 2);
    assert_eq!(sum.pages_with_data, 3);
    assert_eq!(sum.distinct_pfns, 2);
    assert_eq!(sum.resent_pfns, 1);
    assert_eq!(sum.max_sends_per_pfn, 2);
    assert!(sum.ended);
}

#[test]
fn stream_walker_rejects_truncation_and_bad_headers() {
    let s = stream(&[&[(0, 1)]], true);
    assert!(summarise(&s[..s.len() - 4100]).is_err(), "truncated page");
    assert!(summarise(&s[..30]).is_err(), "truncated headers");
    let mut bad = s.clone();
    bad[8] = b'Y';
    assert!(summarise(&bad).is_err(), "bad id");
    let unended = stream(&[&[(0, 1)]], false);
    assert!(!summarise(&unended).expect("valid so far").ended);
}
