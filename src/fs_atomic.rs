//! Crash-safe file replacement and permission checks (credentials, property store).
//!
//! A reader sees either the old content or the new one, never a mix: the new content goes to
//! `<name>.tmp` (created with its final mode, so it is never readable by others even for a
//! moment), is fsynced, renamed over the target, and the directory is fsynced so the rename
//! itself survives a power cut.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Suffix of in-progress writes; such files are garbage after a crash.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// What failed while replacing a file, and on which path.
#[derive(Debug)]
pub(crate) struct AtomicWriteError {
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> AtomicWriteError + '_ {
    move |source| AtomicWriteError {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

/// Replaces `path` with `bytes`, leaving it with exactly `mode`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AtomicWriteError> {
    let tmp = tmp_path(path);
    // A leftover from an earlier failed write could have a wider mode, which `mode()` below
    // would not change: start from nothing.
    remove_if_exists(&tmp).map_err(at(&tmp))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(at(&tmp))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(at(&tmp));
    drop(file);
    if let Err(err) = written.and_then(|()| fs::rename(&tmp, path).map_err(at(path))) {
        // Best effort: the leftover is also removed on the next open.
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    sync_parent(path)
}

/// Creates `dir` and any missing parent with `mode`, and makes each new entry durable (an
/// fsync of the directory that holds it): a power cut right after must not lose the folder
/// and everything later made durable inside it. An existing `dir` is left as it is.
pub(crate) fn create_dir_durably(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        create_dir_durably(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        // Created meanwhile by someone else: fine.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(error) => return Err(error),
    }
    sync_parent(dir).map_err(|error| error.source)
}

/// Removes `path` (absent is fine) and makes the removal durable.
pub(crate) fn remove_durably(path: &Path) -> Result<(), AtomicWriteError> {
    remove_if_exists(path).map_err(at(path))?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), AtomicWriteError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(at(dir))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes every `*.tmp` file in `dir`; returns the names removed.
pub(crate) fn remove_leftovers(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let is_tmp = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.ends_with(TMP_SUFFIX));
        if is_tmp {
            remove_if_exists(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Narrows the permission bits of `path` to `mode` if they are wider. Returns the old mode
/// when it changed something.
pub(crate) fn tighten_mode(path: &Path, mode: u32) -> io::Result<Option<u32>> {
    let current = fs::metadata(path)?.permissions().mode() & 0o7777;
    if current & !mode == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, Permissions::from_mode(mode))?;
    Ok(Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn create_dir_durably_makes_every_missing_level_with_the_mode_and_keeps_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_dir_durably(&nested, 0o700).unwrap();
        assert!(nested.is_dir());
        assert_eq!(mode_of(&nested), 0o700);
        assert_eq!(mode_of(&dir.path().join("a")), 0o700);
        fs::set_permissions(&nested, Permissions::from_mode(0o750)).unwrap();
        create_dir_durably(&nested, 0o700).unwrap();
        assert_eq!(
            mode_of(&nested),
            0o750,
            "an existing folder is left as it is"
        );
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(create_dir_durably(&file.join("below"), 0o700).is_err());
    }

    #[test]
    fn write_atomic_creates_the_file_with_the_requested_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn a_wide_leftover_temp_file_does_not_widen_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(tmp_path(&path), b"stale").unwrap();
        fs::set_permissions(tmp_path(&path), Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn a_failed_write_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"old", 0o600).unwrap();
        // The temp path is a non-empty directory: it can be neither removed as a file nor
        // created, whoever runs the test (root included).
        fs::create_dir(tmp_path(&path)).unwrap();
        fs::write(tmp_path(&path).join("x"), b"").unwrap();
        assert!(write_atomic(&path, b"new", 0o600).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn remove_leftovers_removes_only_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("client.crt.tmp"), b"half").unwrap();
        fs::write(dir.path().join("client.crt"), b"whole").unwrap();
        let removed = remove_leftovers(dir.path()).unwrap();
        assert_eq!(removed, vec![dir.path().join("client.crt.tmp")]);
        assert!(dir.path().join("client.crt").exists());
    }

    #[test]
    fn tighten_mode_narrows_wide_permissions_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        assert_eq!(tighten_mode(&path, 0o600).unwrap(), Some(0o644));
        assert_eq!(mode_of(&path), 0o600);
        fs::set_permissions(&path, Permissions::from_mode(0o400)).unwrap();
        assert_eq!(tighten_mode(&path, 0o600).unwrap(), None);
        assert_eq!(mode_of(&path), 0o400);
    }
}
