//! Folders and file helpers of the power-cut filesystem's tests.

#![allow(dead_code)] // each test binary uses its own part

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use astarte_sandbox::LazyFs;
use tempfile::TempDir;

/// A test's own backing folder and mountpoint. Declare it before its [`LazyFs`]: the mount is
/// then dropped (unmounted) first, even when the test fails.
pub struct Dirs {
    _root: TempDir,
    pub backing: PathBuf,
    pub mnt: PathBuf,
}

impl Dirs {
    pub fn new() -> Dirs {
        let root = tempfile::tempdir().unwrap();
        let backing = root.path().join("backing");
        let mnt = root.path().join("mnt");
        fs::create_dir(&backing).unwrap();
        fs::create_dir(&mnt).unwrap();
        Dirs {
            _root: root,
            backing,
            mnt,
        }
    }

    pub fn mount(&self) -> LazyFs {
        LazyFs::mount(&self.backing, &self.mnt).unwrap()
    }

    pub fn mnt(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    pub fn backing(&self, name: &str) -> PathBuf {
        self.backing.join(name)
    }

    /// The names in the backing folder, sorted.
    pub fn backing_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.backing)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

/// Creates (or replaces) `path` with `content` and fsyncs it (not its directory).
pub fn write_synced(path: &Path, content: &[u8]) {
    let mut file = File::create(path).unwrap();
    file.write_all(content).unwrap();
    file.sync_all().unwrap();
}

/// fsync of a directory.
pub fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

/// Whether something is mounted at `path`, by /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    let path = path.canonicalize().unwrap();
    let path = path.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path))
}
