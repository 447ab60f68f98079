//! The shared object as a toolstack's dynamic linker sees it: soname,
//! exactly the intended exports, no symbol version definitions (so that a
//! reference to `xc_domain_save@VERS_4.17.0` binds to it, DESIGN section 6),
//! and the Xen libraries it needs.

#![cfg(feature = "xen")]

mod capi_support;

use std::collections::BTreeSet;
use std::process::Command;

use capi_support::{run_ok, Env};

fn readelf(args: &[&str]) -> String {
    let lib = Env::locate().require_libxcmig();
    run_ok(Command::new("readelf").args(args).arg(&lib))
}

#[test]
fn soname_is_libxcmig_so_0() {
    let dynamic = readelf(&["-d", "-W"]);
    let sonames: Vec<&str> = dynamic.lines().filter(|l| l.contains("(SONAME)")).collect();
    assert_eq!(sonames.len(), 1, "{dynamic}");
    assert!(sonames[0].ends_with("[libxcmig.so.0]"), "{}", sonames[0]);
}

#[test]
fn exports_exactly_the_xenguest_entry_points_and_the_xcmig_functions() {
    let syms = readelf(&["--dyn-syms", "-W"]);
    let defined: BTreeSet<String> = syms
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num: Value Size Type Bind Vis Ndx Name
            (f.len() >= 8 && f[4] == "GLOBAL" || f.len() >= 8 && f[4] == "WEAK")
                .then_some(f)
                .filter(|f| f[6] != "UND")
                .map(|f| f[7].to_owned())
        })
        .collect();
    let want: BTreeSet<String> = [
        "xc_domain_restore",
        "xc_domain_save",
        "xcmig_version",
        "xcmig_set_precopy_policy",
        "xcmig_set_target_downtime_ms",
        "xcmig_set_max_iterations",
        "xcmig_set_max_precopy_seconds",
        "xcmig_set_abort_if_not_converging",
        "xcmig_reset_precopy_settings",
        "xcmig_set_checkpoint_buffer_limit",
        "xcmig_set_io_timeout",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(defined, want, "{syms}");
}

#[test]
fn defines_no_symbol_version_nodes() {
    // A library with version definitions whose xc_domain_save is "Base"
    // does not satisfy libxl-save-helper's xc_domain_save@VERS_4.17.0; one
    // with none does.
    let v = readelf(&["-V", "-W"]);
    assert!(!v.contains(".gnu.version_d"), "{v}");
    let dynamic = readelf(&["-d", "-W"]);
    assert!(!dynamic.contains("(VERDEF)"), "{dynamic}");
}

#[test]
fn needs_libxenctrl_libxenforeignmemory_and_libxenguest() {
    let dynamic = readelf(&["-d", "-W"]);
    for lib in [
        "libxenctrl.so.4.17",
        "libxenforeignmemory.so.1",
        "libxenguest.so.4.17",
    ] {
        assert!(
            dynamic.contains(&format!("Shared library: [{lib}]")),
            "{lib} not NEEDED\n{dynamic}"
        );
    }
}

#[test]
fn debian_save_helper_imports_the_versioned_symbols_libxcmig_replaces() {
    // The premise of `defines_no_symbol_version_nodes`: the real consumer
    // asks for xc_domain_save/xc_domain_restore at VERS_4.17.0.
    let out = run_ok(
        Command::new("readelf")
            .args(["--dyn-syms", "-W"])
            .arg(capi_support::SAVE_HELPER),
    );
    for sym in [
        "xc_domain_save@VERS_4.17.0",
        "xc_domain_restore@VERS_4.17.0",
    ] {
        assert!(out.contains(sym), "{sym} not imported\n{out}");
    }
}
