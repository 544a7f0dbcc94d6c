//! Files written whole or not at all: a command writes to a hidden sibling, syncs it, then
//! publishes it under its name in one step (and syncs the directory), so that a crash or an
//! error never leaves a partial file where a complete one is expected (`crate::durable`, with
//! the no-clobber publishing and the clean-up on failure that commands need).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Removes a file or directory on drop unless disarmed: what a failed command leaves behind.
pub struct Staged {
    pub path: PathBuf,
    pub is_dir: bool,
    pub armed: bool,
}

impl Staged {
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.armed {
            let _ = if self.is_dir { fs::remove_dir_all(&self.path) } else { fs::remove_file(&self.path) };
        }
    }
}

pub use crate::durable::parent_dir;

/// A hidden sibling of `path` for writing before publishing (`durable::sibling`).
pub fn sibling(path: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    Ok(crate::durable::sibling(path, suffix)?)
}

/// Creates `path`'s sibling to write to, refusing early when `path` exists and `force` is off.
pub fn create_staged_file(path: &Path, force: bool) -> anyhow::Result<(File, Staged)> {
    if !force && fs::symlink_metadata(path).is_ok() {
        bail!("{} already exists: pass --force to replace it", path.display());
    }
    let (file, staging) = crate::durable::create_sibling(path, "partial", 0o644)
        .with_context(|| format!("creating a file beside {}", path.display()))?;
    Ok((file, Staged { path: staging, is_dir: false, armed: true }))
}

/// Makes a fully written and synced staged file appear at `path` in one step: a rename when
/// `force`, else a hard link that fails if `path` appeared meanwhile (never clobbering it).
/// The directory is synced so that the name is durable too.
pub fn publish_file(staged: Staged, path: &Path, force: bool) -> anyhow::Result<()> {
    if force {
        fs::rename(&staged.path, path).with_context(|| format!("renaming into {}", path.display()))?;
        staged.disarm();
    } else {
        match fs::hard_link(&staged.path, path) {
            // `staged` removes the other name on drop.
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                bail!("{} already exists: pass --force to replace it", path.display());
            }
            // A file system without hard links: a rename, checked just before.
            Err(_) if fs::symlink_metadata(path).is_err() => {
                fs::rename(&staged.path, path).with_context(|| format!("renaming into {}", path.display()))?;
                staged.disarm();
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    sync_dir(parent_dir(path))
}

pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    crate::durable::sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))
}

/// Writes `bytes` to `path` whole or not at all: a hidden sibling, synced, renamed over `path`,
/// and the directory synced.
pub fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::durable::replace(path, bytes).with_context(|| format!("writing {}", path.display()))
}
