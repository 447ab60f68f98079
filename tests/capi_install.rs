//! `make install PREFIX=...` installs libxcmig with its soname links, the
//! header and the pkg-config file, and a C program builds against that
//! install with `pkg-config --cflags --libs xcmig` and runs, its
//! `xc_domain_save` bound to libxcmig.

#![cfg(feature = "xen")]

mod capi_support;

use std::path::Path;
use std::process::Command;

use capi_support::{describe, run, run_ok, Env, TempDir, TIMEOUT};

const PROGRAM: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <xcmig.h>

int main(void)
{
    /* xenguest.h's prototype, provided by libxcmig. */
    int (*save)(xc_interface *, int, uint32_t, uint32_t,
                struct save_callbacks *, xc_stream_type_t, int) = xc_domain_save;
    int rc;

    printf("version %s\n", xcmig_version());
    /* No interface: refused with EINVAL before anything touches Xen. */
    errno = 0;
    rc = save(NULL, -1, 0, 0, NULL, XC_STREAM_PLAIN, -1);
    printf("rc %d errno %d\n", rc, errno);
    return 0;
}
"#;

#[test]
fn make_install_then_pkg_config_build_and_run_a_c_program() {
    let env = Env::locate();
    let lib = env.require_libxcmig();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new("install");
    let prefix = dir.join("prefix");

    run_ok(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(root)
            .arg("install")
            .arg(format!("PREFIX={}", prefix.display()))
            .arg(format!("XCMIG_SO={}", lib.display()))
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS"),
    );
    let libdir = prefix.join("lib");
    let version = env!("CARGO_PKG_VERSION");
    let real = format!("libxcmig.so.{version}");
    assert!(libdir.join(&real).is_file());
    assert_eq!(
        std::fs::read_link(libdir.join("libxcmig.so.0")).expect("soname link"),
        Path::new(&real)
    );
    assert_eq!(
        std::fs::read_link(libdir.join("libxcmig.so")).expect("dev link"),
        Path::new("libxcmig.so.0")
    );
    assert!(prefix.join("include/xcmig.h").is_file());
    let pc = std::fs::read_to_string(libdir.join("pkgconfig/xcmig.pc")).expect("xcmig.pc");
    assert!(pc.contains(&format!("Version: {version}")), "{pc}");
    assert!(!pc.contains('@'), "unsubstituted placeholder in\n{pc}");

    let pkg_config_path = libdir.join("pkgconfig");
    let flags = run_ok(
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "xcmig"])
            .env("PKG_CONFIG_PATH", &pkg_config_path),
    );
    assert!(flags.contains("-lxcmig"), "{flags}");
    assert!(
        flags.contains(&format!("-I{}", prefix.join("include").display())),
        "{flags}"
    );

    let src = dir.join("prog.c");
    std::fs::write(&src, PROGRAM).expect("write prog.c");
    let exe = dir.join("prog");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    run_ok(
        Command::new(cc)
            .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(&src)
            .args(flags.split_whitespace()),
    );
    let out = run(
        Command::new(&exe)
            .env("LD_LIBRARY_PATH", &libdir)
            .env("LD_DEBUG", "bindings")
            .env_remove("LD_PRELOAD"),
        TIMEOUT,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("version {version}\n")),
        "{}",
        describe(&out)
    );
    assert!(stdout.contains("rc -1 errno 22\n"), "{}", describe(&out));
    let ld_debug = String::from_utf8_lossy(&out.stderr);
    let bound = format!(
        "to {} [0]: normal symbol `xc_domain_save'",
        libdir.join("libxcmig.so.0").display()
    );
    assert!(
        ld_debug.lines().any(|l| l.contains(&bound)),
        "xc_domain_save not bound to the installed libxcmig:\n{}",
        ld_debug
            .lines()
            .filter(|l| l.contains("xc_domain_save"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
