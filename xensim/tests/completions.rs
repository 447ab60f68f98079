//! `xensim completions SHELL`: the scripts load in the shells they are for.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_xensim");

fn script(shell: &str) -> String {
    let out = Command::new(BIN)
        .args(["completions", shell])
        .output()
        .expect("run xensim completions");
    assert!(
        out.status.success(),
        "xensim completions {shell}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the script is UTF-8")
}

#[test]
fn bash_completion_script_loads_and_registers_xensim() {
    let s = script("bash");
    let dir = std::env::temp_dir().join(format!("xensim-compl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("xensim.bash");
    std::fs::write(&f, &s).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; source {} && complete -p xensim",
            f.display()
        ))
        .output()
        .expect("run bash");
    let _ = std::fs::remove_dir_all(&dir);
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bash could not load the script: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(so.contains("xensim"), "complete -p xensim printed {so:?}");
    for word in ["domain", "fault", "completions", "--host", "--create-host"] {
        assert!(s.contains(word), "the bash script does not offer {word}");
    }
}

#[test]
fn bash_completion_offers_subcommands() {
    let s = script("bash");
    let dir = std::env::temp_dir().join(format!("xensim-compl2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("xensim.bash");
    std::fs::write(&f, &s).unwrap();
    // Simulate `xensim dom<TAB>` through the registered function.
    let prog = format!(
        "source {}; COMP_WORDS=(xensim dom); COMP_CWORD=1; COMP_LINE='xensim dom'; COMP_POINT=10; \
         f=$(complete -p xensim | sed -E 's/.*-F ([^ ]+).*/\\1/'); $f xensim dom xensim; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        f.display()
    );
    let out = Command::new("bash").arg("-c").arg(prog).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        so.lines().any(|l| l.trim() == "domain"),
        "completing `xensim dom` gave {so:?} (stderr {})",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn zsh_completion_script_parses() {
    let s = script("zsh");
    assert!(
        s.starts_with("#compdef xensim"),
        "no #compdef line: {:?}",
        &s[..40.min(s.len())]
    );
    let dir = std::env::temp_dir().join(format!("xensim-zsh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("_xensim");
    std::fs::write(&f, &s).unwrap();
    let out = Command::new("zsh")
        .arg("-n")
        .arg(&f)
        .output()
        .expect("run zsh");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "zsh -n rejected the script: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completions_rejects_an_unknown_shell_with_usage_exit() {
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
