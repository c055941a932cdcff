//! A private scratch directory for plaintext (snapshots, decrypted payloads) and the
//! atomic file write used for every file this crate produces.
//!
//! Invariants: the directory is created `0700` next to its final destination (same file
//! system, so a rename is atomic) and removed with everything in it when dropped, on
//! success and on error alike. A process killed meanwhile cannot drop it: the next
//! scratch directory made in the same place removes such leftovers once they are a day
//! old (no backup, restore or drill runs that long), so plaintext never stays behind.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{Result, io_err};

/// A `0700` directory removed on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A fresh scratch directory inside `parent` (created if missing).
    pub fn new_in(parent: &Path, label: &str) -> Result<Scratch> {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("cannot create {}", parent.display())))?;
        sweep_stale(parent, STALE_AFTER);
        let mut b = [0u8; 6];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| {
            crate::BackupError::Io("the system random number generator failed".into())
        })?;
        let dir = parent.join(format!(".stockade-{label}-{}", hex::encode(b)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(format!("cannot create {}", dir.display())))?;
        Ok(Scratch { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Scratch directories older than this were left by a killed process.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Remove the `.stockade-*` scratch directories in `parent` not modified for `age`.
fn sweep_stale(parent: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_scratch = name.to_str().is_some_and(|n| n.starts_with(".stockade-"));
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|e| e >= age);
        if is_scratch && meta.is_dir() && old {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(
                    "removed a scratch directory left by an interrupted run: {}",
                    entry.path().display()
                ),
                Err(e) => tracing::warn!(
                    "could not remove the old scratch directory {}: {e}",
                    entry.path().display()
                ),
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(
                "could not remove scratch directory {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// A new `0600` file that does not exist yet.
pub fn create_private(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("cannot create {}", path.display())))
}

/// The temp name a file is written under before its rename.
pub fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    dest.with_file_name(format!(".{name}.partial"))
}

/// Write `dest` atomically: `fill` writes into a `0600` temp file beside it, which is
/// fsynced and renamed over `dest` (then the directory is fsynced). On any error the temp
/// file is removed and `dest` is untouched.
pub fn write_atomic<T>(
    dest: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<T>,
) -> Result<T> {
    let tmp = temp_name(dest);
    let _ = std::fs::remove_file(&tmp);
    let mut file = create_private(&tmp)?;
    let out = fill(&mut file).and_then(|v| {
        file.flush().map_err(io_err("cannot write the backup"))?;
        file.sync_all().map_err(io_err("cannot fsync the backup"))?;
        Ok(v)
    });
    drop(file);
    let out = out.and_then(|v| {
        std::fs::rename(&tmp, dest)
            .map_err(io_err(format!("cannot rename into {}", dest.display())))?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(v)
    });
    if out.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_a_killed_run_are_swept_and_nothing_else() {
        let parent = std::env::temp_dir().join(format!("stockade-scratch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        std::fs::create_dir_all(&parent).unwrap();
        // What a killed backup leaves: a scratch directory holding a plaintext snapshot.
        let left = Scratch::new_in(&parent, "backup").unwrap();
        std::fs::write(left.join("snapshot.db"), b"plaintext").unwrap();
        let left_path = left.path().to_owned();
        std::mem::forget(left);
        std::fs::create_dir(parent.join("keep-me")).unwrap();
        std::fs::write(parent.join(".stockade-not-a-dir"), b"x").unwrap();
        // Young leftovers stay (another run may be using them)…
        let fresh = Scratch::new_in(&parent, "drill").unwrap();
        assert!(left_path.exists());
        // …and once old enough they go, with nothing else.
        sweep_stale(&parent, std::time::Duration::ZERO);
        assert!(!left_path.exists());
        assert!(parent.join("keep-me").exists());
        assert!(parent.join(".stockade-not-a-dir").exists());
        drop(fresh);
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
