//! Files replaced whole or not at all: the one atomic writer. A new version is written to a
//! hidden sibling (same directory, so same file system, so the rename is atomic), synced,
//! renamed over the old one, and the directory synced so that the new name is durable too. A
//! crash leaves the old file or the new one, never a mix. Used by the store (the head
//! journal's compaction, the event-id snapshot), the signing key, the witness's state and the
//! offline tools' outputs. Imports nothing of the crate.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The directory a path lives in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The hidden sibling `path` is written to before it is renamed into place: `.NAME.SUFFIX`.
pub fn sibling(path: &Path, suffix: &str) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", path.display())))?;
    Ok(parent_dir(path).join(format!(".{}.{suffix}", name.to_string_lossy())))
}

/// Makes a directory's entries durable (a rename or a new name in it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the hidden sibling of `path` afresh with `mode` (one left by a crash is removed
/// first, whatever its mode was) and opens it for writing.
pub fn create_sibling(path: &Path, suffix: &str, mode: u32) -> io::Result<(File, PathBuf)> {
    let temporary = sibling(path, suffix)?;
    match fs::remove_file(&temporary) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let file = OpenOptions::new().read(true).write(true).create_new(true).mode(mode).open(&temporary)?;
    Ok((file, temporary))
}

/// Renames a written and synced `temporary` over `path`, then syncs the directory.
pub fn rename_into_place(temporary: &Path, path: &Path) -> io::Result<()> {
    fs::rename(temporary, path)?;
    sync_dir(parent_dir(path))
}

/// Replaces `path` with what `write` writes, whole or not at all; the new file has `mode`
/// (before the umask). On an error the old file is left as it was and the sibling removed.
pub fn replace_with(path: &Path, mode: u32, write: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let (mut file, temporary) = create_sibling(path, "tmp", mode)?;
    let written = write(&mut file).and_then(|()| file.sync_all());
    drop(file);
    match written.and_then(|()| rename_into_place(&temporary, path)) {
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = fs::remove_file(&temporary);
            Err(error)
        }
    }
}

/// Replaces `path` with `bytes`, whole or not at all (mode 0644 before the umask).
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_with(path, 0o644, |file| file.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_replacement_is_whole_and_a_failed_one_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let failed = replace_with(&path, 0o600, |file| {
            file.write_all(b"half")?;
            Err(io::Error::other("the disk is full"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no sibling left behind");
    }

    #[test]
    fn a_stale_sibling_is_replaced_and_the_mode_is_the_one_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let stale = sibling(&path, "tmp").unwrap();
        fs::write(&stale, b"left by a crash").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o666)).unwrap();
        replace_with(&path, 0o600, |file| file.write_all(b"key")).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!stale.exists());
    }
}
