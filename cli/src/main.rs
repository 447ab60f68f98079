//! The `xcmig` command.
fn main() {
    eprintln!("xcmig: no subcommands yet");
    std::process::exit(2);
}
