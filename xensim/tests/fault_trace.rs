//! `$XENSIM_FAULT_TRACE` lists every fault point a process checks, in order,
//! so a fault sweep can count the calls a save or restore makes and then
//! fail each one. Its own test binary: the variable is read once per
//! process, at the first fault point, and must be set before it.

use xensim::{Host, ENV_FAULTS, ENV_FAULT_TRACE};

#[test]
fn fault_trace_appends_each_checked_name_in_call_order() {
    let dir = std::env::temp_dir().join(format!("xensim-fault-trace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace");
    // A line someone else (a harness marking its call) appended first stays.
    std::fs::write(&trace, "# before\n").unwrap();
    std::env::set_var(ENV_FAULT_TRACE, &trace);
    std::env::set_var(ENV_FAULTS, "b:EIO:2");
    let host = Host::open(&dir.join("host")).expect("open host");
    let results: Vec<bool> = ["a", "b", "a", "b", "c"]
        .iter()
        .map(|n| host.fault_point(n).is_ok())
        .collect();
    // A call failed by a rule is traced like any other: it was checked.
    assert_eq!(results, [true, true, true, false, true]);
    let text = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(text, "# before\na\nb\na\nb\nc\n");
    let _ = std::fs::remove_dir_all(&dir);
}
