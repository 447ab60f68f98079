//! The `xensim` command.
fn main() {}
