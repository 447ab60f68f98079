//! Compressed page data against Debian's libxenguest, through the C ABI on
//! xensim (issue 13's interop evidence):
//!
//! * without `XCMIG_COMPRESS`, xcmig's streams (plain and live) are
//!   standard: no compressed record, and `verify-stream-v2` accepts them;
//! * with `XCMIG_COMPRESS=lz4|zstd|zstd:LEVEL|auto` (and through
//!   `libxl-save-helper` for a Remus stream), libxenguest refuses the stream
//!   at the first compressed record as an unknown mandatory record;
//!   xcmig restores it to the digest the guest had when saved; and
//!   `xcmig convert --decompress` gives a stream that `verify-stream-v2`
//!   accepts and both libxenguest and xcmig restore to the same digest.
//!
//! Guests are `--fill realistic`, so their pages compress like a real
//! guest's. Prerequisites come from `make build`; a missing one fails the
//! test with that step.

#![cfg(feature = "xen")]

mod capi_support;

use std::path::Path;
use std::process::Command;

use capi_support::host::Host;
use capi_support::{assert_bound_to_xcmig, describe, run, verify_stream, TIMEOUT, VERIFY_STREAM};

/// `xcmig inspect --json`: (PAGE_DATA records, compressed records).
fn records(h: &Host, img: &Path) -> (u64, u64) {
    let o = run(
        Command::new(h.env.xcmig_cli())
            .args(["inspect", "--json"])
            .arg(img),
        TIMEOUT,
    );
    assert!(
        o.status.success(),
        "inspect {}\n{}",
        img.display(),
        describe(&o)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect JSON");
    let count = |name: &str| {
        j["record_types"]
            .as_array()
            .expect("record_types")
            .iter()
            .filter(|r| r["name"] == name)
            .map(|r| r["count"].as_u64().expect("count"))
            .sum::<u64>()
    };
    (count("PAGE_DATA"), count("XCMIG_COMPRESSED_PAGE_DATA"))
}

fn create_realistic(h: &Host, memory: &str, seed: u64) -> u32 {
    let seed = seed.to_string();
    Host::last_line(&h.xensim(&[
        "create",
        "--type",
        "hvm",
        "--memory",
        memory,
        "--fill",
        "realistic",
        "--seed",
        &seed,
    ]))
    .parse()
    .expect("domid")
}

/// `xg-save [--live]` of `src` to `img` by xcmig with `compress` in
/// `XCMIG_COMPRESS` (none: the variable removed).
fn xcmig_save(h: &Host, src: u32, img: &Path, live: bool, compress: Option<&str>) {
    let mut c = h.harness("xg-save", true);
    match compress {
        Some(v) => c.env("XCMIG_COMPRESS", v),
        None => c.env_remove("XCMIG_COMPRESS"),
    };
    c.env("LD_DEBUG", "bindings");
    if live {
        c.arg("--live");
    }
    let o = run(c.arg(src.to_string()).arg(img), TIMEOUT);
    assert!(
        o.status.success(),
        "xcmig save ({compress:?})\n{}",
        describe(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_bound_to_xcmig(&err, "xg-save", "xc_domain_save", &h.env.libxcmig);
    if let Some(v) = compress {
        assert!(
            err.contains("compressing page data"),
            "XCMIG_COMPRESS={v}: no compression logged\n{err}"
        );
    }
}

/// Restores `img` into a new empty HVM domain; the digest, or the
/// restorer's stderr when it failed.
fn restore(h: &Host, img: &Path, xcmig: bool) -> Result<String, String> {
    let dst = h.create_empty("hvm");
    let mut c = h.harness("xg-restore", xcmig);
    // The restore accepts compressed records whatever the saving setting.
    c.env_remove("XCMIG_COMPRESS");
    let o = run(c.arg(dst.to_string()).arg(img), TIMEOUT);
    if o.status.success() {
        Ok(h.digest(dst))
    } else {
        Err(describe(&o))
    }
}

fn decompress(h: &Host, img: &Path, out: &Path) {
    let o = run(
        Command::new(h.env.xcmig_cli())
            .args(["convert", "--decompress", "-i"])
            .arg(img)
            .arg("-o")
            .arg(out),
        TIMEOUT,
    );
    assert!(o.status.success(), "convert --decompress\n{}", describe(&o));
}

/// The checks on one compressed image: libxenguest refuses it, xcmig
/// restores it, and its decompressed form restores with both.
fn check_compressed(h: &Host, img: &Path, digest: &str, what: &str) {
    let (_, packed) = records(h, img);
    assert!(packed > 0, "{what}: no XCMIG_COMPRESSED_PAGE_DATA record");
    let refused = restore(h, img, false).expect_err("libxenguest restored a compressed stream");
    assert!(
        refused.contains("Mandatory record 0x58430001") && refused.contains("not handled"),
        "{what}: libxenguest's refusal\n{refused}"
    );
    assert_eq!(
        restore(h, img, true).as_deref(),
        Ok(digest),
        "{what}: xcmig"
    );
    let std_img = img.with_extension("std");
    decompress(h, img, &std_img);
    verify_stream(&std_img);
    assert_eq!(records(h, &std_img).1, 0, "{what}: decompressed");
    for xcmig in [false, true] {
        assert_eq!(
            restore(h, &std_img, xcmig).as_deref(),
            Ok(digest),
            "{what}: decompressed, restored by {}",
            if xcmig { "xcmig" } else { "libxenguest" }
        );
    }
}

#[test]
fn without_xcmig_compress_every_stream_is_standard() {
    let h = Host::new("compress-off");
    let src = create_realistic(&h, "64M", 21);
    for live in [false, true] {
        let img = h.path().join(format!("off-{live}.xc"));
        xcmig_save(&h, src, &img, live, None);
        h.xensim(&["resume", &src.to_string()]);
        let (plain, packed) = records(&h, &img);
        assert!(plain > 0 && packed == 0, "live {live}: {plain} / {packed}");
        verify_stream(&img);
    }
}

#[test]
fn compressed_streams_restore_with_xcmig_and_after_decompress_with_libxenguest() {
    let h = Host::new("compress-interop");
    let src = create_realistic(&h, "64M", 22);
    // Each save suspends the guest; its memory does not change between
    // them, so one digest holds for all.
    let digest = h.digest(src);
    let mut sizes = Vec::new();
    for (i, (compress, live)) in [
        ("lz4", false),
        ("zstd", false),
        ("zstd:6", false),
        ("auto", false),
        ("lz4", true),
    ]
    .into_iter()
    .enumerate()
    {
        let img = h.path().join(format!("c{i}.xc"));
        xcmig_save(&h, src, &img, live, Some(compress));
        let what = format!("XCMIG_COMPRESS={compress} live {live}");
        assert_eq!(h.digest(src), digest, "{what}: the source changed");
        check_compressed(&h, &img, &digest, &what);
        sizes.push((what, std::fs::metadata(&img).unwrap().len()));
        h.xensim(&["resume", &src.to_string()]);
    }
    let plain = h.path().join("plain.xc");
    xcmig_save(&h, src, &plain, false, None);
    let plain_len = std::fs::metadata(&plain).unwrap().len();
    for (what, len) in &sizes {
        assert!(
            *len < plain_len,
            "{what}: {len} octets, uncompressed {plain_len}"
        );
    }
    // The Python checker refuses the compressed form as an unknown record.
    let o = run(
        Command::new("python3")
            .arg(VERIFY_STREAM)
            .args(["-f", "libxc", "-i"])
            .arg(h.path().join("c0.xc"))
            .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python"),
        TIMEOUT,
    );
    assert!(
        !o.status.success(),
        "verify-stream-v2 accepted a compressed stream"
    );
}

#[test]
fn a_remus_stream_compressed_through_the_save_helper_fails_over_under_xcmig() {
    let h = Host::new("compress-remus");
    let src = create_realistic(&h, "32M", 23);
    let img = h.path().join("remus.xc");
    let host = h.path();
    let lib = h.env.libxcmig.clone();
    let mut cmd = h.helper_cmd(&host, Some(lib.as_path()));
    cmd.extra_env.push(("XCMIG_COMPRESS", "zstd".into()));
    h.remus_save(&cmd, src, &img, "xcmig");
    // The third checkpoint is the one a failover keeps: the guest's state
    // at its last suspend, which the helper's last postcopy resumed.
    let (_, packed) = records(&h, &img);
    assert!(packed > 0, "no compressed record in the Remus stream");
    // libxenguest buffers a checkpoint's records and refuses the first
    // compressed one when it applies them.
    let dst = h.create_empty("hvm");
    let plain_cmd = h.helper_cmd(&host, None);
    let argv = capi_support::host::restore_argv(-1, dst, 0x320, 1);
    let r = capi_support::save_helper::run_helper(&plain_cmd, &argv, &img, false, |name| {
        i32::from(name == "checkpoint")
    });
    assert_ne!(
        r.complete,
        Some((0, 0)),
        "libxenguest restored it\n{}",
        r.log_text()
    );
    assert!(
        r.log_text().contains("0x58430001"),
        "libxenguest's refusal\n{}",
        r.log_text()
    );
    // xcmig fails over to the last checkpoint: the digest of a libxenguest
    // restore of the same stream decompressed.
    let std_img = img.with_extension("std");
    decompress(&h, &img, &std_img);
    let want_dst = h.create_empty("hvm");
    let argv = capi_support::host::restore_argv(-1, want_dst, 0x320, 1);
    let w = capi_support::save_helper::run_helper(&plain_cmd, &argv, &std_img, false, |name| {
        i32::from(name == "checkpoint")
    });
    assert_eq!(
        w.complete,
        Some((0, 0)),
        "libxenguest, decompressed\n{}",
        w.log_text()
    );
    let digest = h.digest(want_dst);
    let dst = h.create_empty("hvm");
    h.remus_failover(&cmd, dst, &img, &digest, "xcmig, compressed");
}
