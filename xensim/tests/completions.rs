//! `xensim completions SHELL`: the scripts load in the shells they are for.

use xcmig_testkit::completions;

const BIN: &str = env!("CARGO_BIN_EXE_xensim");

#[test]
fn bash_completion_script_loads_and_registers_xensim() {
    completions::assert_bash_loads(
        BIN,
        "xensim",
        &["domain", "fault", "completions", "--host", "--create-host"],
    );
}

#[test]
fn bash_completion_offers_subcommands() {
    completions::assert_bash_completes(BIN, "xensim", "dom", "domain");
}

#[test]
fn zsh_completion_script_parses() {
    completions::assert_zsh_parses(BIN, "xensim");
}

#[test]
fn completions_rejects_an_unknown_shell_with_usage_exit() {
    completions::assert_unknown_shell_is_a_usage_error(BIN);
}
