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
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xcmig.h>

int main(void)
{
    /* xenguest.h's prototypes, exactly (-Werror refuses any other pointer
     * type), provided by libxcmig. */
    int (*save)(xc_interface *, int, uint32_t, uint32_t,
                struct save_callbacks *, xc_stream_type_t, int) = xc_domain_save;
    int (*restore)(xc_interface *, int, uint32_t, unsigned int,
                   unsigned long *, uint32_t, unsigned int, unsigned long *,
                   uint32_t, xc_stream_type_t, struct restore_callbacks *,
                   int) = xc_domain_restore;
    Dl_info where;
    int rc;

    /* Both bound to libxcmig, not libxenguest. */
    if (!dladdr((void *)save, &where) || !strstr(where.dli_fname, "libxcmig"))
        return 3;
    printf("save in %s\n", where.dli_fname);
    if (!dladdr((void *)restore, &where) || !strstr(where.dli_fname, "libxcmig"))
        return 4;
    printf("restore in %s\n", where.dli_fname);

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

/// The multiarch library directory `make install` picks under `prefix`
/// (`lib/x86_64-linux-gnu` on Debian amd64).
fn libdir(prefix: &Path) -> PathBuf {
    let triplet = run_ok(Command::new("gcc").arg("-print-multiarch"));
    prefix.join("lib").join(triplet.trim())
}

/// `pkg-config --cflags --libs xcmig` against the install under `prefix`.
fn pkg_config_flags(prefix: &Path) -> Vec<String> {
    let flags = run_ok(
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "xcmig"])
            .env("PKG_CONFIG_PATH", libdir(prefix).join("pkgconfig")),
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
    let libdir = libdir(&prefix);
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
    // Pinned to the Xen release whose callback structs the library uses.
    assert!(
        pc.contains("Requires: xencontrol >= 4.17.0, xenguest >= 4.17.0, xenguest < 4.18"),
        "{pc}"
    );

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
    assert!(
        stdout.contains("save in ") && stdout.contains("restore in "),
        "{}",
        describe(&out)
    );
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
    // `xensim` refuses a host directory that does not exist.
    std::fs::create_dir_all(&host).expect("create the host directory");
    let ld_path = format!("{}:{}", libdir(&prefix).display(), env.ld_library_path());
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
    let installed = libdir(&prefix).join("libxcmig.so.0");
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

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn make(args: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = Env::locate().require_libxcmig();
    run_ok(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(root)
            .args(args)
            .arg(format!("XCMIG_SO={}", lib.display()))
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS"),
    );
}

#[test]
fn make_install_puts_everything_in_the_debian_places_and_uninstall_removes_it() {
    let dir = TempDir::new("install-dirs");
    let stage = dir.join("stage");
    let destdir = format!("DESTDIR={}", stage.display());
    make(&["install", "PREFIX=/usr", &destdir]);
    let triplet = run_ok(Command::new("gcc").arg("-print-multiarch"));
    let lib = format!("usr/lib/{}", triplet.trim());
    let version = env!("CARGO_PKG_VERSION");
    let files = files_under(&stage);
    let mut want = vec![
        format!("{lib}/libxcmig.so.{version}"),
        format!("{lib}/libxcmig.so.0"),
        format!("{lib}/libxcmig.so"),
        format!("{lib}/libxcmig.a"),
        format!("{lib}/pkgconfig/xcmig.pc"),
        "usr/include/xcmig.h".to_owned(),
        "usr/bin/xcmig".to_owned(),
        "usr/bin/xensim".to_owned(),
        "usr/share/man/man1/xcmig.1".to_owned(),
        "usr/share/man/man1/xensim.1".to_owned(),
        "usr/share/man/man7/libxcmig.7".to_owned(),
        "usr/share/bash-completion/completions/xcmig".to_owned(),
        "usr/share/bash-completion/completions/xensim".to_owned(),
        "usr/share/zsh/vendor-completions/_xcmig".to_owned(),
        "usr/share/zsh/vendor-completions/_xensim".to_owned(),
    ];
    for (real, soname) in [
        ("libxencall.so.1.3", "libxencall.so.1"),
        ("libxenforeignmemory.so.1.4", "libxenforeignmemory.so.1"),
        ("libxenevtchn.so.1.2", "libxenevtchn.so.1"),
        ("libxenctrl.so.4.17.0", "libxenctrl.so.4.17"),
    ] {
        // Private: a program that finds libxenctrl on the default path must
        // get Xen's, never the simulated one.
        want.push(format!("{lib}/xcmig/xensim/{real}"));
        want.push(format!("{lib}/xcmig/xensim/{soname}"));
    }
    want.sort();
    assert_eq!(files, want);
    let pc = std::fs::read_to_string(stage.join(&lib).join("pkgconfig/xcmig.pc")).unwrap();
    assert!(pc.contains("libdir=/usr/lib/"), "{pc}");

    make(&["uninstall", "PREFIX=/usr", &destdir]);
    assert_eq!(files_under(&stage), Vec::<String>::new());
}

#[test]
fn make_install_strip_ships_no_debug_information() {
    let dir = TempDir::new("install-strip");
    let prefix = dir.join("prefix");
    make(&["install-strip", &format!("PREFIX={}", prefix.display())]);
    let version = env!("CARGO_PKG_VERSION");
    for f in [
        libdir(&prefix).join(format!("libxcmig.so.{version}")),
        libdir(&prefix).join("libxcmig.a"),
        prefix.join("bin/xcmig"),
        prefix.join("bin/xensim"),
    ] {
        let sections = run_ok(Command::new("readelf").args(["-S", "-W"]).arg(&f));
        assert!(
            !sections.contains(".debug_info"),
            "{} keeps debug information",
            f.display()
        );
    }
}
