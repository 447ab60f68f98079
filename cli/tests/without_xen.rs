//! The `xcmig` checker needs no Xen: an analyst's machine has none of Xen's
//! libraries, and the `xcmig-tools` package must not pull them in.

mod common;

use std::process::Command;

use common::Shape;

const BIN: &str = env!("CARGO_BIN_EXE_xcmig");

#[test]
fn xcmig_needs_no_xen_library() {
    let out = Command::new("readelf")
        .args(["-d", "-W", BIN])
        .output()
        .expect("run readelf");
    assert!(out.status.success());
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(!needed.is_empty(), "{dynamic}");
    for l in &needed {
        assert!(!l.contains("libxen"), "xcmig needs a Xen library: {l}");
    }
}

/// Every Xen library file of the machine, symlinks resolved.
fn xen_library_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib",
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("libxen") && name.contains(".so") {
                if let Ok(real) = std::fs::canonicalize(e.path()) {
                    if real.is_file() && !files.contains(&real) {
                        files.push(real);
                    }
                }
            }
        }
    }
    files
}

/// Run with every Xen library on the machine made unreadable (an empty file
/// bind-mounted over each, in a private mount namespace): verify and inspect
/// still work. Needs root (CI runs the tests as root).
#[test]
fn xcmig_verifies_and_inspects_with_the_xen_libraries_hidden() {
    if not_root() {
        eprintln!("SKIPPED: hiding libraries needs root (CI runs this as root)");
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must run this as root"
        );
        return;
    }
    let hidden = xen_library_files();
    assert!(
        !hidden.is_empty(),
        "no Xen library found to hide: the test would prove nothing"
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("without-xen");
    std::fs::create_dir_all(&dir).unwrap();
    let stream = dir.join("hvm.libxc");
    std::fs::write(
        &stream,
        common::libxc_hvm(Shape {
            pages: 64,
            checkpoints: 0,
            end: true,
        }),
    )
    .unwrap();
    let mut script = String::from("set -e\n");
    for f in &hidden {
        script.push_str(&format!("mount --bind /dev/null '{}'\n", f.display()));
    }
    // Proof the hiding works: a program that needs libxenctrl cannot start.
    script.push_str(
        "out=$(/usr/lib/xen-4.17/bin/libxl-save-helper 2>&1 || true)\n\
         case \"$out\" in *'error while loading shared libraries'*) ;; \
         *) echo \"Xen's libraries are not hidden: $out\"; exit 9 ;; esac\n",
    );
    script.push_str(&format!("'{BIN}' verify '{}'\n", stream.display()));
    script.push_str(&format!(
        "'{BIN}' inspect --json '{}' >/dev/null\n",
        stream.display()
    ));
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

fn not_root() -> bool {
    // `id -u`: the CLI crate's tests take no libc dependency.
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() != "0"
}
