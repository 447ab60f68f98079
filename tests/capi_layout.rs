//! xcmig's `#[repr(C)]` mirrors of `struct precopy_stats`, `save_callbacks`
//! and `restore_callbacks` against what the C compiler computes from the
//! installed `xenguest.h` (`capi-tests/xg-layout.c`, compiled here), fact by
//! fact: size, alignment, and each field's offset and size.

#![cfg(feature = "xen")]

mod capi_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use capi_support::{run_ok, TempDir};

fn facts(lines: impl Iterator<Item = String>) -> BTreeMap<String, String> {
    lines
        .filter(|l| {
            ["precopy_stats", "save_callbacks", "restore_callbacks"]
                .iter()
                .any(|s| l.split_whitespace().nth(1) == Some(s))
        })
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("`key value` line");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn repr_c_mirrors_match_the_c_compilers_layout_of_xenguest_h() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new("layout");
    let exe = dir.join("xg-layout");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    run_ok(
        Command::new(cc)
            .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(root.join("capi-tests/xg-layout.c")),
    );
    let c_out = run_ok(&mut Command::new(&exe));
    let c = facts(c_out.lines().map(str::to_owned));
    let rust = facts(xcmig::capi::types::layout_lines().into_iter());
    // 3 structs x (size, align) + 17 fields x (offset, fieldsize).
    assert_eq!(c.len(), 3 * 2 + 17 * 2, "xg-layout printed:\n{c_out}");
    assert_eq!(rust, c);
}
