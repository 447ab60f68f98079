//! Unit-test fixtures: a host in a fresh temporary directory.

use crate::Host;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A host in its own temporary directory, removed on drop.
pub(crate) struct TempHost {
    pub(crate) dir: PathBuf,
    pub(crate) host: Host,
}

impl TempHost {
    /// A fresh host whose directory name starts with `xensim-{tag}`.
    pub(crate) fn new(tag: &str) -> TempHost {
        let dir = std::env::temp_dir().join(format!(
            "xensim-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let host = Host::open(&dir).expect("open host");
        TempHost { dir, host }
    }
}

impl Drop for TempHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
