//! The shared object as a toolstack's dynamic linker sees it: soname,
//! exactly the intended exports, the xenguest entry points in libxenguest's
//! own version node (so that a reference to `xc_domain_save@VERS_4.17.0`
//! binds to it) and the `xcmig_*` additions in `XCMIG_0`, and the Xen
//! libraries it needs.

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
                // ABS: the version nodes' own symbols (VERS_4.17.0, XCMIG_0).
                .filter(|f| f[6] != "UND" && f[6] != "ABS")
                .map(|f| f[7].split('@').next().unwrap_or(f[7]).to_owned())
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
        "xcmig_set_auto_converge",
        "xcmig_set_auto_converge_shares",
        "xcmig_reset_precopy_settings",
        "xcmig_set_checkpoint_buffer_limit",
        "xcmig_set_io_timeout",
        "xcmig_set_legacy_restore",
        "xcmig_set_compression",
        "xcmig_set_compress_threads",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(defined, want, "{syms}");
}

/// `objdump -T` of a library: (name, version) of each defined dynamic symbol.
fn defined_versions(lib: &std::path::Path) -> BTreeSet<(String, String)> {
    let t = run_ok(Command::new("objdump").arg("-T").arg(lib));
    t.lines()
        .filter(|l| l.contains(" DF ") && !l.contains("*UND*"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // ADDR FLAGS... DF SECTION SIZE VERSION NAME
            let n = f.len();
            (n >= 3).then(|| (f[n - 1].to_owned(), f[n - 2].to_owned()))
        })
        .collect()
}

#[test]
fn xenguest_entry_points_carry_libxenguests_version_node_and_the_additions_xcmig_nodes() {
    let ours = defined_versions(&Env::locate().require_libxcmig());
    let xenguest = defined_versions(std::path::Path::new(
        "/usr/lib/x86_64-linux-gnu/libxenguest.so.4.17",
    ));
    for f in ["xc_domain_save", "xc_domain_restore"] {
        let theirs: Vec<_> = xenguest.iter().filter(|(n, _)| n == f).collect();
        assert_eq!(theirs.len(), 1, "{f} in libxenguest: {theirs:?}");
        assert_eq!(theirs[0].1, "VERS_4.17.0");
        assert!(ours.contains(theirs[0]), "{f}: {ours:?}");
    }
    for (name, version) in &ours {
        if name.starts_with("xcmig_set_auto_converge") {
            // Added after the first release: a node of its own.
            assert_eq!(version, "XCMIG_1", "{name}");
        } else if name == "xcmig_set_legacy_restore" {
            assert_eq!(version, "XCMIG_2", "{name}");
        } else if name.starts_with("xcmig_set_compress") {
            assert_eq!(version, "XCMIG_3", "{name}");
        } else if name.starts_with("xcmig_") {
            assert_eq!(version, "XCMIG_0", "{name}");
        } else {
            assert!(name.starts_with("xc_domain_"), "unexpected export {name}");
        }
    }
    let v = readelf(&["-V", "-W"]);
    assert!(v.contains("Name: VERS_4.17.0"), "{v}");
    assert!(v.contains("Name: XCMIG_0"), "{v}");
    assert!(v.contains("Name: XCMIG_1"), "{v}");
    assert!(v.contains("Name: XCMIG_2"), "{v}");
    assert!(v.contains("Name: XCMIG_3"), "{v}");
}

#[test]
fn the_version_script_lists_exactly_the_exports_of_exports_rs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(root.join("src/capi/exports.rs")).unwrap();
    let exported: BTreeSet<String> = src
        .lines()
        .filter_map(|l| l.split("extern \"C\" fn ").nth(1))
        .map(|rest| rest.split('(').next().unwrap().trim().to_owned())
        .collect();
    let map = std::fs::read_to_string(root.join("abi/libxcmig.map.in")).unwrap();
    let listed: BTreeSet<String> = map
        .lines()
        .map(str::trim)
        .filter(|l| l.ends_with(';') && !l.contains(':') && !l.starts_with('}') && *l != "*;")
        .map(|l| l.trim_end_matches(';').to_owned())
        .collect();
    assert_eq!(listed, exported);
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
