//! The C view of xenguest.h's callback structs, printed by the `xg-layout`
//! harness (compiled against the installed header), checked against the
//! x86-64 ABI xcmig's `#[repr(C)]` mirrors are written for. The parsed
//! output is also what a mirror test compares with.

mod common;

use std::collections::HashMap;

use common::{describe, run, Env, CMD_TIMEOUT};

/// Parses "size S N", "align S N", "offset S F N", "fieldsize S F N",
/// "const C V" lines into a map keyed by everything but the value.
fn layout() -> HashMap<String, i64> {
    let prog = Env::locate().require_capi("xg-layout");
    let out = run(&mut std::process::Command::new(prog), CMD_TIMEOUT);
    assert!(out.status.success(), "xg-layout failed\n{}", describe(&out));
    let text = String::from_utf8(out.stdout).expect("xg-layout prints UTF-8");
    let mut map = HashMap::new();
    for line in text.lines() {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed xg-layout line {line:?}"));
        let value: i64 = value
            .parse()
            .unwrap_or_else(|_| panic!("malformed xg-layout value in {line:?}"));
        assert!(
            map.insert(key.to_string(), value).is_none(),
            "xg-layout printed {key:?} twice"
        );
    }
    map
}

fn get(map: &HashMap<String, i64>, key: &str) -> i64 {
    *map.get(key)
        .unwrap_or_else(|| panic!("xg-layout did not print {key:?}"))
}

#[test]
fn save_callbacks_are_seven_pointers_in_header_order() {
    let m = layout();
    assert_eq!(get(&m, "size save_callbacks"), 56);
    assert_eq!(get(&m, "align save_callbacks"), 8);
    let fields = [
        "suspend",
        "precopy_policy",
        "postcopy",
        "checkpoint",
        "wait_checkpoint",
        "switch_qemu_logdirty",
        "data",
    ];
    for (i, f) in fields.iter().enumerate() {
        assert_eq!(
            get(&m, &format!("offset save_callbacks {f}")),
            8 * i as i64,
            "{f}"
        );
        assert_eq!(get(&m, &format!("fieldsize save_callbacks {f}")), 8, "{f}");
    }
}

#[test]
fn restore_callbacks_are_seven_pointers_in_header_order() {
    let m = layout();
    assert_eq!(get(&m, "size restore_callbacks"), 56);
    assert_eq!(get(&m, "align restore_callbacks"), 8);
    let fields = [
        "static_data_done",
        "suspend",
        "postcopy",
        "checkpoint",
        "wait_checkpoint",
        "restore_results",
        "data",
    ];
    for (i, f) in fields.iter().enumerate() {
        assert_eq!(
            get(&m, &format!("offset restore_callbacks {f}")),
            8 * i as i64,
            "{f}"
        );
    }
}

#[test]
fn precopy_stats_is_passed_as_a_24_byte_struct() {
    let m = layout();
    assert_eq!(get(&m, "size precopy_stats"), 24);
    assert_eq!(get(&m, "offset precopy_stats iteration"), 0);
    assert_eq!(get(&m, "fieldsize precopy_stats iteration"), 4);
    assert_eq!(get(&m, "offset precopy_stats total_written"), 8);
    assert_eq!(get(&m, "offset precopy_stats dirty_count"), 16);
    assert_eq!(get(&m, "fieldsize precopy_stats dirty_count"), 8);
    assert_eq!(get(&m, "size xen_pfn_t"), 8);
    assert_eq!(get(&m, "size xc_stream_type_t"), 4);
}

#[test]
fn xenguest_constants_have_the_documented_values() {
    let m = layout();
    for (name, value) in [
        ("XCFLAGS_LIVE", 1),
        ("XCFLAGS_DEBUG", 2),
        ("XC_STREAM_PLAIN", 0),
        ("XC_STREAM_REMUS", 1),
        ("XC_STREAM_COLO", 2),
        ("XGS_POLICY_ABORT", -1),
        ("XGS_POLICY_CONTINUE_PRECOPY", 0),
        ("XGS_POLICY_STOP_AND_COPY", 1),
        ("XGR_SDD_MISSING_CPUID", 1),
        ("XGR_SDD_MISSING_MSR", 2),
        ("XGR_CHECKPOINT_ERROR", 0),
        ("XGR_CHECKPOINT_SUCCESS", 1),
        ("XGR_CHECKPOINT_FAILOVER", 2),
    ] {
        assert_eq!(get(&m, &format!("const {name}")), value, "{name}");
    }
}
