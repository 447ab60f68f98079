//! Test-only support shared by the integration tests of every crate in the
//! workspace (a dev-dependency only; nothing here ships).
//!
//! - [`process`]: child processes that can never hang a test run: every
//!   wait has a deadline, after which the child is killed and the test fails
//!   with what it printed.
//! - [`TempDir`]: a scratch directory removed when the test ends.
//! - [`completions`]: checks of a command's `completions SHELL` scripts.
//! - [`legacy_image`]: a generator of legacy (Xen 4.5 and earlier) save
//!   images, field by field.
//! - [`save_helper`]: the message codec of the pipe between libxl and
//!   `libxl-save-helper`, for the tests that play libxl's part.

pub mod completions;
pub mod legacy_image;
pub mod process;
pub mod save_helper;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under the system's temporary directory, removed on
/// drop unless the environment variable `XCMIG_TEST_KEEP` is set (for
/// post-mortems).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/xcmig-test-<pid>-<n>-<tag>`, emptying any stale one.
    pub fn new(tag: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), tag)
    }

    /// Like [`TempDir::new`], under `base` instead of the system's
    /// temporary directory (the soak puts its hosts on tmpfs).
    pub fn new_in(base: &Path, tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = base.join(format!(
            "xcmig-test-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("create temporary directory {}: {e}", p.display()));
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("XCMIG_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
