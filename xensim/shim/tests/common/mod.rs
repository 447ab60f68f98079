//! Shared by the integration tests: link the shim libraries for this test
//! profile and compile small C programs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// Time allowed for one program a test runs.
const TIMEOUT: Duration = Duration::from_secs(240);

/// Runs `cmd` to completion (stdin from /dev/null), capturing its output;
/// a program still running after [`TIMEOUT`] is killed and fails the test.
pub fn output(cmd: &mut Command) -> Output {
    xcmig_testkit::process::run(cmd, TIMEOUT)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Links the libraries once per test process (from the archive of the
/// profile this test was built with) and returns their directory.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // <target>/<profile>/deps/<test binary>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let profile = profile_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let target = profile_dir.parent().unwrap().to_path_buf();
        // `cargo test` leaves the fresh archive in deps/ (only `cargo build`
        // copies it up a level): take the newest one there.
        let archive = std::fs::read_dir(profile_dir.join("deps"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("libxensim_shim-") && n.ends_with(".a")
            })
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
            .expect("no libxensim_shim-*.a in deps/");
        let st = Command::new(repo_root().join("scripts/link-shims.sh"))
            .arg(&profile)
            .env("SHIM_ARCHIVE", &archive)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(repo_root())
            .status()
            .expect("run scripts/link-shims.sh");
        assert!(st.success(), "scripts/link-shims.sh {profile} failed");
        target.join("xensim/lib")
    })
}

/// Compiles `src` with `-Wall -Wextra -Werror` and `libs`; returns the binary.
pub fn compile(name: &str, src: &str, libs: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xensim-shim-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let exe = dir.join(name);
    let st = Command::new("gcc")
        .args(["-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(&c)
        .args(libs)
        .status()
        .unwrap();
    assert!(st.success(), "compiling {name}");
    exe
}
