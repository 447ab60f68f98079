//! The hand-written man pages in docs/man/: each renders without warnings,
//! and they name what the code has (subcommands, environment variables,
//! C functions), so a change to the code that the pages miss fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const XCMIG: &str = env!("CARGO_BIN_EXE_xcmig");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ lives in the repository root")
        .to_path_buf()
}

fn page(name: &str) -> PathBuf {
    root().join("docs/man").join(name)
}

fn read_page(name: &str) -> String {
    std::fs::read_to_string(page(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The page's text with roff escapes for `-` undone, so `\-\-json` reads
/// as `--json`.
fn plain(name: &str) -> String {
    read_page(name).replace("\\-", "-").replace("\\(dq", "\"")
}

const PAGES: [&str; 3] = ["xcmig.1", "xensim.1", "libxcmig.7"];

#[test]
fn man_pages_render_with_groff_without_warnings() {
    for name in PAGES {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(page(name))
            .output()
            .expect("run groff (package groff-base)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "groff -ww on {name}: {}\n{err}",
            out.status
        );
    }
}

#[test]
fn man_pages_render_with_man_l() {
    for name in PAGES {
        let out = Command::new("man")
            .arg("-l")
            .arg(page(name))
            .env("MANWIDTH", "80")
            .env("MANROFFOPT", "-ww")
            .env("PAGER", "cat")
            .output()
            .expect("run man (package man-db)");
        let err = String::from_utf8_lossy(&out.stderr);
        let text = unoverstrike(&String::from_utf8_lossy(&out.stdout));
        assert!(
            out.status.success() && err.trim().is_empty(),
            "man -l {name}: {}\n{err}",
            out.status
        );
        for section in ["NAME", "DESCRIPTION", "SEE ALSO"] {
            assert!(
                text.lines().any(|l| l.trim_end() == section),
                "man -l {name}: no {section} section in the rendered page"
            );
        }
    }
}

/// The text without nroff's overstrikes (`X\x08X` bold, `_\x08X`
/// underline), which man prints when its output is not a terminal.
fn unoverstrike(s: &str) -> String {
    let mut out: Vec<char> = Vec::with_capacity(s.len());
    for c in s.chars() {
        if c == '\x08' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

/// The subcommands `xcmig --help` lists.
fn xcmig_subcommands() -> Vec<String> {
    let out = Command::new(XCMIG).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut in_commands = false;
    let mut subs = Vec::new();
    for line in text.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                break;
            }
            let word = line.split_whitespace().next().unwrap().to_string();
            if word != "help" {
                subs.push(word);
            }
        }
    }
    subs
}

#[test]
fn xcmig_1_documents_every_subcommand_of_xcmig_help() {
    let subs = xcmig_subcommands();
    assert!(
        subs.len() >= 3 && subs.iter().any(|s| s == "verify"),
        "could not read the subcommands of xcmig --help: {subs:?}"
    );
    let man = plain("xcmig.1");
    for s in &subs {
        assert!(
            man.contains(&format!(".B xcmig {s}")) || man.contains(&format!(".BR {s} ")),
            "xcmig.1 has no synopsis or COMMANDS entry for `{s}`"
        );
    }
}

#[test]
fn xcmig_1_documents_every_option_of_each_subcommand() {
    let man = plain("xcmig.1");
    for sub in xcmig_subcommands() {
        let out = Command::new(XCMIG).args([&sub, "--help"]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        for word in text.split(|c: char| c.is_whitespace() || c == ',') {
            if word.starts_with("--") && word.len() > 2 {
                assert!(
                    man.contains(word),
                    "xcmig.1 does not mention {word} of `xcmig {sub}`"
                );
            }
        }
    }
}

#[test]
fn xcmig_1_documents_every_exit_code() {
    let man = plain("xcmig.1");
    let section = man
        .split(".SH EXIT STATUS")
        .nth(1)
        .expect("xcmig.1 has an EXIT STATUS section");
    for code in ["0", "1", "2", "3"] {
        assert!(
            section.contains(&format!(".B {code}\n")),
            "xcmig.1 EXIT STATUS does not list {code}"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `XCMIG_[A-Z_]+` name in the given text.
fn xcmig_names(text: &str, into: &mut BTreeSet<String>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("XCMIG_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start + "XCMIG_".len();
        while end < b.len() && (b[end].is_ascii_uppercase() || b[end] == b'_') {
            end += 1;
        }
        let name = text[start..end].trim_end_matches('_');
        if before_ok && name.len() > "XCMIG_".len() {
            into.insert(name.to_string());
        }
        i = end;
    }
}

/// `XCMIG_*` names of src/ that are not for users: none today. A name added
/// here must be one only tests read.
const TEST_ONLY: &[&str] = &[];

#[test]
fn libxcmig_7_documents_every_xcmig_variable_of_the_library_sources() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    assert!(
        files.len() > 10,
        "found only {} files under src/",
        files.len()
    );
    let mut names = BTreeSet::new();
    for f in &files {
        xcmig_names(&std::fs::read_to_string(f).unwrap(), &mut names);
    }
    for t in TEST_ONLY {
        names.remove(*t);
    }
    assert!(
        names.contains("XCMIG_IO_TIMEOUT"),
        "the scan found no XCMIG_IO_TIMEOUT: {names:?}"
    );
    let man = plain("libxcmig.7");
    let missing: Vec<&String> = names.iter().filter(|n| !man.contains(n.as_str())).collect();
    assert!(
        missing.is_empty(),
        "libxcmig.7 does not document {missing:?}"
    );
    assert!(
        man.contains("XCMIG_DISABLE"),
        "libxcmig.7 does not document XCMIG_DISABLE"
    );
}

#[test]
fn libxcmig_7_documents_every_function_of_xcmig_h() {
    let header = std::fs::read_to_string(root().join("include/xcmig.h")).unwrap();
    let man = plain("libxcmig.7");
    let mut n = 0;
    for line in header.lines() {
        let Some(at) = line.find("xcmig_") else {
            continue;
        };
        if !line.contains('(') || line.trim_start().starts_with('*') {
            continue;
        }
        let name: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        n += 1;
        assert!(man.contains(&name), "libxcmig.7 does not document {name}()");
    }
    assert!(n >= 8, "found only {n} functions in include/xcmig.h");
    for s in [
        "VERS_4.17.0",
        "XCMIG_0",
        "XCMIG_1",
        "XTL_ERROR",
        "XTL_WARN",
        "XTL_DETAIL",
        "XTL_DEBUG",
    ] {
        assert!(man.contains(s), "libxcmig.7 does not mention {s}");
    }
}

#[test]
fn xensim_1_documents_every_command_and_environment_variable() {
    let man = plain("xensim.1");
    for cmd in [
        "domain create",
        "domain digest",
        "domain run",
        "domain list",
        "domain destroy",
        "domain info",
        "domain shutdown",
        "domain pause",
        "domain unpause",
        "domain resume",
        "domain sched",
        "host scheduler",
        "fault set",
        "fault clear",
        "fault list",
        "completions",
        "--create-host",
    ] {
        assert!(man.contains(cmd), "xensim.1 does not document `{cmd}`");
    }
    let readme = std::fs::read_to_string(root().join("xensim/README.md")).unwrap();
    let env = readme
        .split("## 2. Environment")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("xensim/README.md has a section 2. Environment");
    let mut vars = 0;
    for cell in env.split('`') {
        if cell.starts_with("XENSIM_") && cell.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            vars += 1;
            assert!(man.contains(cell), "xensim.1 does not document {cell}");
        }
    }
    assert!(
        vars >= 3,
        "read only {vars} variables from xensim/README.md"
    );
    assert!(man.contains("/usr/lib/x86_64-linux-gnu/xcmig/xensim"));
}
