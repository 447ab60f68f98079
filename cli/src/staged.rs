//! Output files written under a temporary name and renamed into place
//! only when complete, shared by the converting commands.

use std::fs::File;
use std::path::{Path, PathBuf};

/// A file written under a temporary name beside its destination and
/// renamed there on [`commit`](Self::commit); removed if dropped before, so
/// a failed conversion leaves no truncated output that looks valid.
pub struct Staged {
    /// The temporary name.
    pub tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates `<dir>/.<name>.xcmig-convert.<pid>` for `dest`.
    pub fn create(dest: &Path) -> Result<(Self, File), String> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let dir = dest.parent().unwrap_or(Path::new(""));
        let tmp = dir.join(format!(".{name}.xcmig-convert.{}", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        Ok((
            Staged {
                tmp,
                dest: dest.to_path_buf(),
                committed: false,
            },
            file,
        ))
    }

    /// Renames the file to its destination.
    pub fn commit(mut self) -> Result<(), String> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                self.tmp.display(),
                self.dest.display()
            )
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `-`: stdin or stdout.
pub fn is_stdio(p: &Path) -> bool {
    p == Path::new("-")
}
