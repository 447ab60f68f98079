//! Compiles the shim's C part, `c/variadic.c` (the C-variadic `xc_report*`
//! that stable Rust cannot define), into the staticlib, so the archive that
//! `scripts/link-shims.sh` links holds all of the shim. Which library exports
//! those functions is the version scripts' choice (`vers/libxenctrl.map`).

fn main() {
    println!("cargo:rerun-if-changed=c/variadic.c");
    cc::Build::new()
        .file("c/variadic.c")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .opt_level(2)
        .pic(true)
        .compile("xensim_shim_variadic");
}
