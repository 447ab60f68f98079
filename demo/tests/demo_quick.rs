//! `make demo` in a quick mode (a 256 MiB guest), so that it cannot rot:
//! the migration succeeds, the summary's figures agree with `xcmig
//! inspect` run on a copy of the stream, and failures (an injected restore
//! fault, a SIGTERM) end with a clear message, a non-zero status and
//! nothing left behind.
//!
//! The demo runs the pieces `make build` makes, from the target directory
//! this test was built in (`<target>/release/{xensim,libxcmig.so,xcmig}`,
//! `<target>/xensim/lib`, `<target>/capi-tests`).

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn quick_demo_migrates_256m_guest_and_summary_matches_the_stream() {
    let s = Scratch::new("quick");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let stream = s.0.join("stream.img");
    let json = s.0.join("summary.json");
    let out = run(demo(&work, &["--save-stream"])
        .arg(&stream)
        .arg("--summary-json")
        .arg(&json));
    assert!(out.status.success(), "demo failed\n{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "round 0  live",
        "guest suspended at",
        "restore complete at",
        "Summary",
        "downtime",
        "total time",
        "result             OK",
    ] {
        assert!(stdout.contains(want), "no {want:?} in\n{stdout}");
    }

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["engine"], "xcmig");
    assert!(v["digests_equal"].as_bool().unwrap(), "{v}");
    let digest = v["digest_source"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{v}");
    assert_eq!(v["digest_destination"].as_str().unwrap(), digest);

    // Rounds: iteration 0 covers the whole guest; exactly one round, the
    // last, comes after the suspend.
    let rounds = v["rounds"].as_array().unwrap();
    assert!(rounds.len() >= 2, "{v}");
    assert_eq!(rounds[0]["iteration"], 0);
    assert!(json_u64(&rounds[0], "pfns") >= 65536, "{v}");
    let after: Vec<bool> = rounds
        .iter()
        .map(|r| r["after_suspend"].as_bool().unwrap())
        .collect();
    assert_eq!(after.iter().filter(|a| **a).count(), 1, "{v}");
    assert!(after.last().unwrap(), "{v}");
    let live = json_u64(&v, "precopy_iterations");
    assert_eq!(live as usize, rounds.len() - 1);
    assert_eq!(
        summary_number(&stdout, "iterations"),
        rounds.len() as u64,
        "{stdout}"
    );

    // The figures are the stream's: compare with xcmig inspect.
    let xcmig = target_dir().join("release").join("xcmig");
    assert!(
        xcmig.exists(),
        "{} missing: run make build",
        xcmig.display()
    );
    let insp = run(Command::new(&xcmig)
        .args(["inspect", "--json"])
        .arg(&stream));
    assert!(insp.status.success(), "inspect failed\n{}", describe(&insp));
    let r: serde_json::Value = serde_json::from_slice(&insp.stdout).unwrap();
    assert_eq!(r["valid"], true, "{r}");
    let bytes = json_u64(&v, "bytes_on_wire");
    let pages = json_u64(&v, "pages_sent");
    assert_eq!(json_u64(&r, "bytes"), bytes);
    assert_eq!(json_u64(&r["pages"], "data_pages"), pages);
    assert_eq!(
        json_u64(&r["pages"], "entries"),
        json_u64(&v, "page_entries")
    );
    let records: u64 = r["record_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| json_u64(t, "count"))
        .sum();
    assert_eq!(records, json_u64(&v, "records"));
    // A 256 MiB guest: every page at least once, plus what was redirtied;
    // zero pages go as entries without data, so count entries.
    assert!(json_u64(&v, "page_entries") >= 65536, "{v}");
    assert!(pages > 0 && pages <= json_u64(&v, "page_entries"), "{v}");
    assert_eq!(std::fs::metadata(&stream).unwrap().len(), bytes);

    // The printed summary says the same.
    assert_eq!(summary_number(&stdout, "pages sent"), pages, "{stdout}");
    assert_eq!(
        summary_number(&stdout, "bytes on the wire"),
        bytes,
        "{stdout}"
    );
    let downtime = v["downtime_ms"].as_f64().unwrap();
    let total = v["total_seconds"].as_f64().unwrap();
    assert!(downtime > 0.0 && downtime <= total * 1000.0, "{v}");
    assert_eq!(
        summary_number(&stdout, "downtime"),
        downtime.round() as u64,
        "{stdout}"
    );

    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
    eprintln!("{stdout}");
}

#[test]
fn demo_runs_the_reference_libxenguest_over_a_unix_socket_too() {
    let s = Scratch::new("reference");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let json = s.0.join("summary.json");
    let out = run(
        demo(&work, &["--engine", "libxenguest", "--transport", "unix"])
            .arg("--summary-json")
            .arg(&json),
    );
    assert!(out.status.success(), "demo failed\n{}", describe(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["engine"], "libxenguest");
    assert_eq!(v["transport"], "a Unix socket pair");
    assert!(v["digests_equal"].as_bool().unwrap(), "{v}");
    assert!(leftovers(&work).is_empty());
}

#[test]
fn demo_with_failing_restore_exits_1_naming_the_failure_and_cleans_up() {
    let s = Scratch::new("fault");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = run(&mut demo(
        &work,
        &["--restore-fault", "xc_domain_populate_physmap_exact:ENOMEM"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("xcmig-demo: error: xg-restore failed"),
        "{}",
        describe(&out)
    );
    assert!(err.contains("Cannot allocate memory"), "{}", describe(&out));
    // The saver, writing into the broken link, fails as a toolstack sees it
    // (-1 from xc_domain_save, not a SIGPIPE) and never suspended the guest.
    if err.contains("xg-save failed") {
        assert!(err.contains("xg-save: result rc=-1"), "{}", describe(&out));
        assert!(err.contains("suspends=0"), "{}", describe(&out));
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Summary"));
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
}

#[test]
fn demo_interrupted_by_sigterm_stops_its_children_and_exits_130() {
    let s = Scratch::new("sigterm");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (mut child, _) = start_long_demo(&work, &[]);
    assert!(send_signal(child.id(), "TERM"), "kill failed");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stderr: {err}");
    assert!(err.contains("interrupted by signal 15"), "{err}");
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
}

#[test]
fn demo_killed_outright_takes_its_children_with_it() {
    let s = Scratch::new("sigkill");
    let work = s.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (mut child, _) = start_long_demo(&work, &[]);
    assert!(send_signal(child.id(), "KILL"), "kill failed");
    let _ = child.wait();
    // The kernel delivers the children's parent-death signal at once;
    // allow for a loaded machine.
    let until = Instant::now() + Duration::from_secs(10);
    while !processes_using(&work).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        processes_using(&work).is_empty(),
        "{:?}",
        processes_using(&work)
    );
}
