//! `make install PREFIX=...` installs libxcmig with its soname links, the
//! header and the pkg-config file; C programs build against that install
//! with `pkg-config --cflags --libs xcmig` and run with their
//! `xc_domain_save`/`xc_domain_restore` bound to libxcmig: a small program
//! using `xcmig.h`, and the `capi-tests` harnesses doing a real save and
//! restore on the simulated host.

#![cfg(feature = "xen")]

mod capi_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use capi_support::{describe, run, run_ok, Env, TempDir, TIMEOUT};

/// How `xg-save` reports a successful call.
const SAVE_OK: &str = "xg-save: result rc=0";

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

/// `make install PREFIX=<dir>/prefix` of the libxcmig under test.
fn install(dir: &TempDir) -> PathBuf {
    let lib = Env::locate().require_libxcmig();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
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
    prefix
}

/// `pkg-config --cflags --libs xcmig` against the install under `prefix`.
fn pkg_config_flags(prefix: &Path) -> Vec<String> {
    let flags = run_ok(
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "xcmig"])
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
    );
    flags.split_whitespace().map(str::to_owned).collect()
}

fn cc() -> Command {
    Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".to_owned()))
}

#[test]
fn make_install_then_pkg_config_build_and_run_a_c_program() {
    let dir = TempDir::new("install");
    let prefix = install(&dir);
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

    let flags = pkg_config_flags(&prefix);
    assert!(flags.iter().any(|f| f == "-lxcmig"), "{flags:?}");
    let include = format!("-I{}", prefix.join("include").display());
    assert!(flags.contains(&include), "{flags:?}");

    let src = dir.join("prog.c");
    std::fs::write(&src, PROGRAM).expect("write prog.c");
    let exe = dir.join("prog");
    run_ok(
        cc().args(["-std=gnu11", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(&src)
            .args(&flags),
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

#[test]
fn harnesses_linked_with_pkg_config_xcmig_save_and_restore_through_libxcmig() {
    // The link-time route: a toolstack built with `-lxcmig` ahead of
    // `-lxenguest` (what `pkg-config --libs xcmig` gives) uses libxcmig's
    // xc_domain_save/xc_domain_restore without any preload.
    let env = Env::locate();
    let dir = TempDir::new("linked");
    let prefix = install(&dir);
    let flags = pkg_config_flags(&prefix);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("capi-tests");
    for prog in ["xg-save", "xg-restore"] {
        run_ok(
            cc().args(["-std=gnu11", "-Wall", "-Werror", "-o"])
                .arg(dir.join(prog))
                .arg(root.join(format!("{prog}.c")))
                .arg(root.join("harness.c"))
                .args(&flags)
                .arg("-lxentoollog"),
        );
    }
    let host = dir.join("host");
    let ld_path = format!("{}:{}", prefix.join("lib").display(), env.ld_library_path());
    let xensim = |args: &[&str]| {
        let out = run_ok(
            Command::new(env.xensim())
                .arg("domain")
                .arg(args[0])
                .arg("--host")
                .arg(&host)
                .args(&args[1..]),
        );
        out.lines().last().unwrap_or_default().trim().to_owned()
    };
    let src = xensim(&[
        "create", "--type", "hvm", "--memory", "64M", "--fill", "mixed",
    ]);
    let img = dir.join("linked.img");
    let harness = |prog: &str, args: &[&Path]| {
        let mut c = Command::new(dir.join(prog));
        c.args(args)
            .env("LD_LIBRARY_PATH", &ld_path)
            .env("XENSIM_HOST", &host)
            .env("LD_DEBUG", "bindings")
            .env_remove("LD_PRELOAD")
            .env_remove("XENSIM_FAULTS");
        let out = run(&mut c, TIMEOUT);
        assert!(out.status.success(), "{prog}: {}", describe(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let installed = prefix.join("lib/libxcmig.so.0");
    let bound = |log: &str, sym: &str| {
        let want = format!("to {} [0]: normal symbol `{sym}'", installed.display());
        assert!(
            log.lines().any(|l| l.contains(&want)),
            "{sym} not bound to the installed libxcmig"
        );
    };
    let log = harness("xg-save", &[Path::new(&src), &img]);
    assert!(log.contains(SAVE_OK), "{log}");
    bound(&log, "xc_domain_save");
    let dst = xensim(&["create", "--type", "hvm", "--memory", "64M", "--empty"]);
    let log = harness("xg-restore", &[Path::new(&dst), &img]);
    bound(&log, "xc_domain_restore");
    assert_eq!(xensim(&["digest", &dst]), xensim(&["digest", &src]));
}
