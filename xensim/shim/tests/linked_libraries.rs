//! Checks the shared objects `scripts/link-shims.sh` builds from this crate:
//! sonames, version nodes, exported symbols, and that Debian's real
//! libxenguest.so.4.17 and libxl-save-helper load (BIND_NOW) against them.
//!
//! The test links the libraries itself from the archive of its own profile,
//! into `<target>/xensim/lib`, the directory the contract names.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::{compile, lib_dir, repo_root};

const SYSLIB: &str = "/usr/lib/x86_64-linux-gnu";
const HELPER: &str = "/usr/lib/xen-4.17/bin/libxl-save-helper";

/// (soname, map file, real Debian library) of each replaced library.
const LIBS: &[(&str, &str, &str)] = &[
    ("libxenctrl.so.4.17", "libxenctrl.map", "libxenctrl.so.4.17"),
    ("libxencall.so.1", "libxencall.map", "libxencall.so.1"),
    (
        "libxenforeignmemory.so.1",
        "libxenforeignmemory.map",
        "libxenforeignmemory.so.1",
    ),
    ("libxenevtchn.so.1", "libxenevtchn.map", "libxenevtchn.so.1"),
];

/// Symbols of `src/exports/private.rs` (for harnesses that find them with
/// `dlsym`) and the libraries whose version scripts export them.
const PRIVATE: &[(&str, &[&str])] = &[(
    "xensim_shim_live_mappings",
    &["libxenctrl.so.4.17", "libxenforeignmemory.so.1"],
)];

fn run(cmd: &str, args: &[&str]) -> String {
    let out = common::output(Command::new(cmd).args(args));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Defined dynamic symbols of a library: name -> version node ("Base" if none).
fn defined(path: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in run("objdump", &["-T", path.to_str().unwrap()]).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "<addr> g    DF .text <size>  VERS_4.17.0 xc_version"
        if f.len() < 6 || f.contains(&"*UND*") || f.contains(&"*ABS*") {
            continue;
        }
        if !(f.contains(&"DF") || f.contains(&"DO")) {
            continue;
        }
        let name = f[f.len() - 1].to_string();
        let ver = f[f.len() - 2]
            .trim_matches(|c| c == '(' || c == ')')
            .to_string();
        m.insert(name, ver);
    }
    m
}

/// Undefined, non-weak dynamic symbols: (name, required version or "").
fn undefined(path: &str) -> Vec<(String, String)> {
    run("nm", &["-D", "--undefined-only", path])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 2 || f[0] != "U" {
                return None;
            }
            Some(match f[1].split_once('@') {
                Some((n, v)) => (n.to_string(), v.trim_start_matches('@').to_string()),
                None => (f[1].to_string(), String::new()),
            })
        })
        .collect()
}

/// Global symbols of a version script: name -> node.
fn map_globals(map: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo_root().join("xensim/shim/vers").join(map)).unwrap();
    let mut node = String::new();
    let mut out = BTreeMap::new();
    for raw in text.lines() {
        let l = raw.trim();
        if l.starts_with("/*") || l.starts_with('*') || l.is_empty() {
            continue;
        }
        if let Some(n) = l.strip_suffix('{').map(str::trim) {
            node = n.to_string();
        } else if let Some(sym) = l.strip_suffix(';') {
            if !sym.contains(':') && !sym.starts_with('}') && sym != "*" {
                out.insert(sym.to_string(), node.clone());
            }
        }
    }
    out
}

/// The text of an export module: `exports/<module>.rs`, or every file of
/// the directory `exports/<module>/`.
fn module_text(module: &str) -> String {
    let exports = repo_root().join("xensim/shim/src/exports");
    let dir = exports.join(module);
    if !dir.is_dir() {
        return std::fs::read_to_string(exports.join(format!("{module}.rs"))).unwrap();
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no .rs files", dir.display());
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Names exported by a Rust export module (plus, for libxenctrl, the C file).
fn source_exports(module: &str) -> BTreeSet<String> {
    let root = repo_root();
    let text = module_text(module);
    let mut out = BTreeSet::new();
    for l in text.lines() {
        let t = l.trim();
        let name = if let Some(r) = t.strip_prefix("pub unsafe extern \"C\" fn ") {
            r
        } else if let Some(r) = t.strip_prefix("fn ").filter(|_| t.ends_with(");")) {
            // entries of the macro invocations that generate exports
            r
        } else {
            continue;
        };
        let name: String = name
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !name.starts_with("xensim_shim_") {
            out.insert(name);
        }
    }
    if module == "xenctrl" {
        let c = std::fs::read_to_string(root.join("xensim/shim/c/variadic.c")).unwrap();
        for l in c.lines() {
            if let Some(r) = l.strip_prefix("void xc_") {
                out.insert(format!("xc_{}", r.split('(').next().unwrap()));
            }
        }
    }
    out
}

#[test]
fn sonames_and_version_nodes_match_debian() {
    let dir = lib_dir();
    for (soname, _, real) in LIBS {
        let ours = dir.join(soname);
        assert!(ours.exists(), "{} missing", ours.display());
        let dynamic = run("readelf", &["-d", ours.to_str().unwrap()]);
        assert!(
            dynamic.contains(&format!("Library soname: [{soname}]")),
            "{soname}: {dynamic}"
        );
        let nodes = |p: &Path| -> BTreeSet<String> {
            let v = run("readelf", &["-V", p.to_str().unwrap()]);
            let defs = v.split("Version needs").next().unwrap().to_string();
            defs.lines()
                .filter(|l| l.contains("Flags: none") && l.contains("Name: VERS_"))
                .map(|l| l.rsplit("Name: ").next().unwrap().trim().to_string())
                .collect()
        };
        let want = nodes(&Path::new(SYSLIB).join(real));
        let got = nodes(&ours);
        assert!(!want.is_empty());
        assert_eq!(got, want, "{soname}: version definitions");
    }
    let ctrl = run(
        "readelf",
        &["-d", dir.join("libxenctrl.so.4.17").to_str().unwrap()],
    );
    for needed in [
        "libxencall.so.1",
        "libxenforeignmemory.so.1",
        "libxenevtchn.so.1",
        "libxentoollog.so.1",
    ] {
        assert!(
            ctrl.contains(&format!("Shared library: [{needed}]")),
            "libxenctrl must NEED {needed}"
        );
    }
}

#[test]
fn exports_are_exactly_the_version_script_with_debians_nodes() {
    let dir = lib_dir();
    let files = ["xenctrl", "xencall", "xenforeignmemory", "xenevtchn"];
    for ((soname, map, real), file) in LIBS.iter().zip(files) {
        let globals = map_globals(map);
        let exported = defined(&dir.join(soname));
        assert_eq!(
            exported.keys().collect::<BTreeSet<_>>(),
            globals.keys().collect::<BTreeSet<_>>(),
            "{soname}: exported symbols vs {map}"
        );
        for (sym, node) in &globals {
            assert_eq!(&exported[sym], node, "{soname}: {sym} node");
        }
        let src = source_exports(file);
        let private: BTreeSet<String> = PRIVATE
            .iter()
            .filter(|(_, libs)| libs.contains(soname))
            .map(|(sym, _)| sym.to_string())
            .collect();
        assert_eq!(
            src,
            globals
                .keys()
                .filter(|k| !private.contains(*k))
                .cloned()
                .collect::<BTreeSet<_>>(),
            "{file} exports vs {map} (less the private symbols)"
        );
        for sym in &private {
            assert!(globals.contains_key(sym), "{map} must export {sym}");
        }
        // Every symbol we share with Debian's library has Debian's node.
        let theirs = defined(&Path::new(SYSLIB).join(real));
        for (sym, node) in &globals {
            if let Some(n) = theirs.get(sym) {
                assert_eq!(n, node, "{soname}: {sym} node differs from Debian's");
            }
        }
    }
}

#[test]
fn private_symbols_are_defined_once_and_exported_only_where_listed() {
    let text = module_text("private");
    let defined_here: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub extern \"C\" fn "))
        .map(|r| r.split('(').next().unwrap().to_string())
        .collect();
    let listed: BTreeSet<String> = PRIVATE.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(defined_here, listed, "src/exports/private.rs vs PRIVATE");
    let dir = lib_dir();
    for (sym, libs) in PRIVATE {
        for (soname, _, real) in LIBS {
            let ours = defined(&dir.join(soname)).contains_key(*sym);
            assert_eq!(ours, libs.contains(soname), "{soname} exporting {sym}");
            // Private indeed: no Xen library has it.
            assert!(!defined(&Path::new(SYSLIB).join(real)).contains_key(*sym));
        }
    }
}

#[test]
fn every_xen_import_of_libxenguest_and_the_save_helper_is_defined_here() {
    let dir = lib_dir();
    let ours: BTreeMap<String, String> = LIBS
        .iter()
        .flat_map(|(s, _, _)| defined(&dir.join(s)))
        .collect();
    let real: BTreeSet<String> = LIBS
        .iter()
        .flat_map(|(_, _, r)| defined(&Path::new(SYSLIB).join(r)).into_keys())
        .collect();
    let guest = format!("{SYSLIB}/libxenguest.so.4.17");
    let mut checked = 0;
    for consumer in [guest.as_str(), HELPER] {
        for (name, ver) in undefined(consumer) {
            if !real.contains(&name) {
                continue; // libc, zlib, libxentoollog, libxenguest itself
            }
            checked += 1;
            let got = ours
                .get(&name)
                .unwrap_or_else(|| panic!("{consumer} imports {name}, not defined by the shims"));
            if !ver.is_empty() {
                assert_eq!(got, &ver, "{consumer} imports {name}@{ver}");
            }
        }
    }
    assert!(
        checked >= 67,
        "only {checked} Xen imports found: nm output changed?"
    );
}

const DLOPEN_SMOKE: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
int main(void) {
    void *g = dlopen("libxenguest.so.4.17", RTLD_NOW | RTLD_GLOBAL);
    if (!g) { printf("dlopen: %s\n", dlerror()); return 1; }
    const char *names[] = { "xc_domain_save", "xc_interface_open", "xencall1",
                            "xenforeignmemory_map", "xenevtchn_unmask", NULL };
    for (int i = 0; names[i]; i++) {
        Dl_info info;
        void *p = dlsym(RTLD_DEFAULT, names[i]);
        if (!p || !dladdr(p, &info)) { printf("%s: unresolved\n", names[i]); return 1; }
        printf("%s %s\n", names[i], info.dli_fname);
    }
    return 0;
}
"#;

#[test]
fn debian_libxenguest_loads_with_bind_now_against_the_shims() {
    let dir = lib_dir();
    let exe = compile("dlopen-smoke", DLOPEN_SMOKE, &["-ldl"]);
    let out = common::output(
        Command::new(&exe)
            .env("LD_LIBRARY_PATH", dir)
            .env("LD_BIND_NOW", "1"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let canon = dir.canonicalize().unwrap();
    for line in text.lines() {
        let (sym, file) = line.split_once(' ').unwrap();
        let file = Path::new(file).canonicalize().unwrap();
        if sym == "xc_domain_save" {
            assert!(
                file.starts_with(SYSLIB) || file.starts_with("/lib"),
                "{sym} from {}",
                file.display()
            );
        } else {
            assert!(
                file.starts_with(&canon),
                "{sym} resolved to {} instead of the shims",
                file.display()
            );
        }
    }
}

#[test]
fn debian_save_helper_loads_and_reaches_main_against_the_shims() {
    let dir = lib_dir();
    // With no mode argument the helper's first assert fires: that proves the
    // dynamic loader bound every import (BIND_NOW) and main() ran.
    let out = common::output(
        Command::new(HELPER)
            .env("LD_LIBRARY_PATH", dir)
            .env("LD_DEBUG", "files"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Assertion"),
        "helper did not reach main: {err}"
    );
    assert!(
        !err.contains("symbol lookup error") && !err.contains("version `"),
        "{err}"
    );
    let canon = dir.canonicalize().unwrap();
    assert!(
        err.lines().any(|l| l.contains("calling init:")
            && l.contains(canon.join("libxenctrl.so.4.17").to_str().unwrap())),
        "the helper did not load our libxenctrl: {err}"
    );
}

const OPEN_WITHOUT_HOST: &str = r#"
#include <stdio.h>
#include <errno.h>
#include <xenctrl.h>
int main(void) {
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    if (xch) { printf("opened\n"); return 1; }
    printf("errno %d\n", errno);
    return 0;
}
"#;

#[test]
fn xc_interface_open_without_a_host_fails_with_a_logged_reason() {
    let dir = lib_dir();
    let exe = compile(
        "open-without-host",
        OPEN_WITHOUT_HOST,
        &["-L", dir.to_str().unwrap(), "-l:libxenctrl.so.4.17"],
    );
    let out = common::output(
        Command::new(&exe)
            .env("LD_LIBRARY_PATH", dir)
            .env_remove("XENSIM_HOST"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), format!("errno {}", libc::ENOENT));
    assert!(
        stderr.contains("XENSIM_HOST is not set"),
        "reason not logged: {stderr}"
    );
    let out = common::output(
        Command::new(&exe)
            .env("LD_LIBRARY_PATH", dir)
            .env("XENSIM_HOST", "/nonexistent/xensim-host"),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
}

/// Compiles `src` against our libxenctrl, runs it on a fresh empty host
/// and returns its standard output; fails the test if it exits non-zero.
fn run_on_empty_host(name: &str, src: &str) -> String {
    let dir = lib_dir();
    let host = std::env::temp_dir().join(format!("xensim-shim-{name}-host-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&host);
    xensim::Host::open(&host).expect("create a host");
    let exe = compile(
        name,
        src,
        &["-L", dir.to_str().unwrap(), "-l:libxenctrl.so.4.17"],
    );
    let out = common::output(
        Command::new(&exe)
            .env("LD_LIBRARY_PATH", dir)
            .env("XENSIM_HOST", &host),
    );
    let _ = std::fs::remove_dir_all(&host);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const ERROR_TEXTS: &str = r#"
#include <stdio.h>
#include <errno.h>
#include <xenctrl.h>
int main(void) {
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    xc_interface *single = xc_interface_open(NULL, NULL, XC_OPENFLAG_NON_REENTRANT);
    if (!xch || !single) { printf("open failed %d\n", errno); return 1; }
    /* One call per printf: the text lives in one per-thread buffer. */
    printf("%s\n", xc_strerror(xch, EIO));
    printf("%s\n", xc_strerror(xch, EDOM));
    printf("%s\n", xc_strerror(single, EDOM));
    for (int code = 0; code <= 5; code++)
        printf("%s\n", xc_error_code_to_desc(code));
    xc_interface_close(single);
    xc_interface_close(xch);
    return 0;
}
"#;

/// glibc's text for an errno.
fn c_strerror(errno: i32) -> String {
    // SAFETY: strerror returns a valid NUL-terminated string; this test
    // thread is the only caller here.
    unsafe { std::ffi::CStr::from_ptr(libc::strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn error_texts_match_libxenctrl() {
    let stdout = run_on_empty_host("error-texts", ERROR_TEXTS);
    // libxenctrl copies strerror's text into a 32-byte per-thread buffer,
    // unless the interface was opened XC_OPENFLAG_NON_REENTRANT; its
    // descriptions of the XC_* error codes are fixed strings.
    let edom = c_strerror(libc::EDOM);
    assert!(
        edom.len() > 31,
        "EDOM's text is long enough to be cut: {edom}"
    );
    let want = [
        c_strerror(libc::EIO),
        edom[..31].to_string(),
        edom.clone(),
        "No error details".into(),
        "Internal error".into(),
        "Invalid kernel".into(),
        "Invalid configuration".into(),
        "Out of memory".into(),
        "Unknown error code".into(),
    ];
    assert_eq!(stdout.lines().collect::<Vec<_>>(), want, "{stdout}");
}

const GETINFO_PAST_LAST: &str = r#"
#include <stdio.h>
#include <errno.h>
#include <xenctrl.h>
int main(void) {
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    xc_dominfo_t info;
    if (!xch) { printf("open failed %d\n", errno); return 1; }
    errno = 0;
    int n = xc_domain_getinfo(xch, 1, 1, &info);
    printf("%d %d\n", n, errno);
    xc_interface_close(xch);
    return 0;
}
"#;

#[test]
fn getinfo_past_the_last_domain_returns_none_with_esrch_like_libxenctrl() {
    let stdout = run_on_empty_host("getinfo-past-last", GETINFO_PAST_LAST);
    // No domain at or after 1 on an empty host: libxenctrl returns the
    // count found (0) and leaves the hypercall's ESRCH in errno, which is
    // what libxenguest's "Failed to get domain info" message then prints.
    assert_eq!(stdout.trim(), format!("0 {}", libc::ESRCH));
}
