//! Checks of a command's `completions SHELL` scripts (clap_complete), the
//! same for `xcmig` and `xensim`: the bash one loads, registers the command
//! and completes its subcommands; the zsh one parses; another shell is a
//! usage error.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TempDir;

/// `BIN completions SHELL`, which must succeed.
pub fn script(bin: &str, shell: &str) -> String {
    let out = Command::new(bin)
        .args(["completions", shell])
        .output()
        .expect("run the completions subcommand");
    assert!(
        out.status.success(),
        "{bin} completions {shell}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the script is UTF-8")
}

fn saved(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, text).expect("write the script");
    f
}

fn bash(prog: String) -> (bool, String, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(prog)
        .output()
        .expect("run bash");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The bash script loads, registers `cmd`, and mentions every one of `words`.
pub fn assert_bash_loads(bin: &str, cmd: &str, words: &[&str]) {
    let s = script(bin, "bash");
    let dir = TempDir::new(&format!("{cmd}-bash"));
    let f = saved(&dir, &format!("{cmd}.bash"), &s);
    let (ok, so, se) = bash(format!(
        "set -e; source {} && complete -p {cmd}",
        f.display()
    ));
    assert!(ok, "bash could not load the script: {se}");
    assert!(so.contains(cmd), "complete -p {cmd} printed {so:?}");
    for word in words {
        assert!(s.contains(word), "the bash script does not offer {word}");
    }
}

/// `cmd partial<TAB>`, through the function the script registers, offers
/// `expect`.
pub fn assert_bash_completes(bin: &str, cmd: &str, partial: &str, expect: &str) {
    let dir = TempDir::new(&format!("{cmd}-bash-complete"));
    let f = saved(&dir, &format!("{cmd}.bash"), &script(bin, "bash"));
    let line = format!("{cmd} {partial}");
    let (_, so, se) = bash(format!(
        "source {}; COMP_WORDS=({line}); COMP_CWORD=1; COMP_LINE='{line}'; COMP_POINT={}; \
         f=$(complete -p {cmd} | sed -E 's/.*-F ([^ ]+).*/\\1/'); $f {cmd} {partial} {cmd}; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        f.display(),
        line.len()
    ));
    assert!(
        so.lines().any(|l| l.trim() == expect),
        "completing `{line}` gave {so:?} (stderr {se})"
    );
}

/// The zsh script starts with `#compdef cmd` and `zsh -n` accepts it.
pub fn assert_zsh_parses(bin: &str, cmd: &str) {
    let s = script(bin, "zsh");
    assert!(
        s.starts_with(&format!("#compdef {cmd}")),
        "no #compdef line: {:?}",
        &s[..40.min(s.len())]
    );
    let dir = TempDir::new(&format!("{cmd}-zsh"));
    let f = saved(&dir, &format!("_{cmd}"), &s);
    let out = Command::new("zsh")
        .arg("-n")
        .arg(Path::new(&f))
        .output()
        .expect("run zsh");
    assert!(
        out.status.success(),
        "zsh -n rejected the script: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A shell clap_complete does not know is a usage error (exit 2).
pub fn assert_unknown_shell_is_a_usage_error(bin: &str) {
    let out = Command::new(bin)
        .args(["completions", "tcsh"])
        .output()
        .expect("run the completions subcommand");
    assert_eq!(out.status.code(), Some(2));
}
