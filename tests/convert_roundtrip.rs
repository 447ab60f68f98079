//! `xcmig convert` on a stream Debian's libxenguest saved on xensim: through
//! xl and libxl and back (octet for octet), to v2 (refused for its CPU
//! policy unless told to drop it) and back to v3; every stream passes
//! `xcmig verify` and `verify-stream-v2`, and restores with libxenguest and
//! with xcmig to the digest of the source domain at suspend.
//!
//! Prerequisites come from `make build` (xensim, target/xensim/lib,
//! target/capi-tests, target/release/xcmig); a missing one fails the test
//! with that step.

#![cfg(feature = "xen")]

mod capi_support;

use std::path::Path;
use std::process::{Command, Output};

use capi_support::host::Host;
use capi_support::{assert_bound_to_xcmig, describe, run, verify_stream, TIMEOUT, VERIFY_STREAM};

fn convert(xcmig: &Path, args: &[&str]) -> Output {
    run(Command::new(xcmig).arg("convert").args(args), TIMEOUT)
}

fn converted(xcmig: &Path, args: &[&str]) -> String {
    let o = convert(xcmig, args);
    assert!(
        o.status.success(),
        "xcmig convert {args:?}\n{}",
        describe(&o)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `xcmig verify` and `verify-stream-v2` accept `img` as `format`.
fn verify_both(xcmig: &Path, img: &Path, format: &str) {
    let o = run(
        Command::new(xcmig).args(["verify", "-f", format]).arg(img),
        TIMEOUT,
    );
    assert!(
        o.status.success(),
        "xcmig verify {}\n{}",
        img.display(),
        describe(&o)
    );
    if format == "libxc" {
        verify_stream(img);
        return;
    }
    let o = run(
        Command::new("python3")
            .arg(VERIFY_STREAM)
            .args(["-f", format, "-i"])
            .arg(img)
            .env("PYTHONPATH", "/usr/lib/xen-4.17/lib/python"),
        TIMEOUT,
    );
    assert!(
        o.status.success(),
        "verify-stream-v2 {}\n{}",
        img.display(),
        describe(&o)
    );
}

/// Restores the libxc stream `img` into a new empty HVM domain with
/// libxenguest and with xcmig; checks both digests; returns libxenguest's
/// `static_data_done` line.
fn restore_both(h: &Host, img: &Path, digest: &str) -> String {
    let mut sdd = String::new();
    for xcmig in [false, true] {
        let dst = h.create_empty("hvm");
        let mut c = h.harness("xg-restore", xcmig);
        if xcmig {
            c.env("LD_DEBUG", "bindings");
        }
        let o = run(c.arg(dst.to_string()).arg(img), TIMEOUT);
        assert!(
            o.status.success(),
            "restore {} (xcmig {xcmig})\n{}",
            img.display(),
            describe(&o)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        if xcmig {
            assert_bound_to_xcmig(&err, "xg-restore", "xc_domain_restore", &h.env.libxcmig);
        } else {
            sdd = err
                .lines()
                .find(|l| l.contains("static_data_done"))
                .unwrap_or("no static_data_done")
                .to_owned();
        }
        assert_eq!(
            h.digest(dst),
            digest,
            "{} restored (xcmig {xcmig})",
            img.display()
        );
    }
    sdd
}

#[test]
fn a_libxenguest_stream_converted_every_way_restores_with_both_restorers() {
    let h = Host::new("convert-roundtrip");
    let xcmig = h.env.xcmig_cli();
    let dir = h.path().parent().unwrap().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name);
    let s = |name: &str| p(name).to_str().unwrap().to_owned();

    let src = Host::last_line(&h.xensim(&[
        "create", "--type", "hvm", "--memory", "64M", "--fill", "mixed", "--seed", "12",
    ]))
    .parse::<u32>()
    .unwrap();
    let o = run(
        h.harness("xg-save", false)
            .arg(src.to_string())
            .arg(p("saved.xc")),
        TIMEOUT,
    );
    assert!(o.status.success(), "save\n{}", describe(&o));
    let digest = h.digest(src);

    // Xen 4.17 writes v3 with both CPU policy records.
    let sdd = restore_both(&h, &p("saved.xc"), &digest);
    assert!(sdd.contains("missing=0x0"), "{sdd}");

    // libxc -> xl (config, QEMU blob) -> libxl -> libxc: identical.
    std::fs::write(
        p("cfg.json"),
        b"{\"c_info\":{\"type\":\"hvm\",\"name\":\"g\"}}\n",
    )
    .unwrap();
    std::fs::write(p("qemu"), b"QEVM qemu device state").unwrap();
    let args = [
        "--to",
        "xl",
        "--xl-config",
        &s("cfg.json"),
        "--emulator-record",
        &s("qemu"),
    ];
    converted(
        &xcmig,
        &[&args[..], &["-i", &s("saved.xc"), "-o", &s("saved.xl")]].concat(),
    );
    verify_both(&xcmig, &p("saved.xl"), "xl");
    converted(
        &xcmig,
        &[
            "--to",
            "libxl",
            "-i",
            &s("saved.xl"),
            "-o",
            &s("saved.libxl"),
        ],
    );
    verify_both(&xcmig, &p("saved.libxl"), "libxl");
    converted(
        &xcmig,
        &[
            "--to",
            "libxc",
            "--extract-emulator",
            &s("qemu.out"),
            "-i",
            &s("saved.libxl"),
            "-o",
            &s("back.xc"),
        ],
    );
    assert!(std::fs::read(p("back.xc")).unwrap() == std::fs::read(p("saved.xc")).unwrap());
    assert_eq!(
        std::fs::read(p("qemu.out")).unwrap(),
        b"QEVM qemu device state"
    );

    // v3 -> v2 is refused for its CPU policy and leaves no file; with the
    // option, both restorers read the v2 stream (libxenguest reports both
    // policies missing, as for a pre-4.14 stream).
    let o = convert(
        &xcmig,
        &["--version", "2", "-i", &s("saved.xc"), "-o", &s("v2.xc")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(!p("v2.xc").exists());
    let summary = converted(
        &xcmig,
        &[
            "--version",
            "2",
            "--drop-cpu-policy",
            "-i",
            &s("saved.xc"),
            "-o",
            &s("v2.xc"),
        ],
    );
    assert!(
        summary.contains("X86_CPUID_POLICY") && summary.contains("X86_MSR_POLICY"),
        "{summary}"
    );
    verify_both(&xcmig, &p("v2.xc"), "libxc");
    let sdd = restore_both(&h, &p("v2.xc"), &digest);
    assert!(sdd.contains("missing=0x3"), "{sdd}");

    // v2 -> v3: STATIC_DATA_END back in place, restorable again.
    converted(
        &xcmig,
        &["--version", "3", "-i", &s("v2.xc"), "-o", &s("v3.xc")],
    );
    verify_both(&xcmig, &p("v3.xc"), "libxc");
    let sdd = restore_both(&h, &p("v3.xc"), &digest);
    assert!(sdd.contains("missing=0x3"), "{sdd}");
}
