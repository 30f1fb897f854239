//! The backing folder: read whole at mount (everything in it is durable), rewritten at a cut or
//! unmount to hold exactly the durable tree.

use std::collections::HashSet;
use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::content::{Content, MAX_LEN};
use super::tree::{Body, Ino, Meta, ROOT, Tree};

/// The tree of `backing`, cached and durable alike.
pub(super) fn load(backing: &Path) -> io::Result<Tree> {
    let mut tree = Tree::new(meta(&fs::metadata(backing)?));
    load_dir(&mut tree, ROOT, backing)?;
    Ok(tree)
}

fn load_dir(tree: &mut Tree, dir: Ino, path: &Path) -> io::Result<()> {
    let loaded = tree.node(dir).map_err(errno)?.cached;
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let path = entry.path();
        let metadata = fs::symlink_metadata(&path)?;
        let body = if metadata.is_dir() {
            Body::dir()
        } else if metadata.is_file() && metadata.len() <= MAX_LEN {
            Body::file(Content::from_bytes(&fs::read(&path)?))
        } else {
            return Err(io::Error::other(format!(
                "lazyfs holds directories and regular files up to {MAX_LEN} bytes only, not {}",
                path.display()
            )));
        };
        let ino = tree.add(meta(&metadata), body);
        tree.set_entry(dir, &entry.file_name(), Some(ino))
            .map_err(errno)?;
        if metadata.is_dir() {
            load_dir(tree, ino, &path)?;
        }
    }
    tree.settle_loaded(dir, loaded).map_err(errno)
}

fn meta(metadata: &fs::Metadata) -> Meta {
    Meta {
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        atime: timestamp(metadata.atime(), metadata.atime_nsec()),
        mtime: timestamp(metadata.mtime(), metadata.mtime_nsec()),
        ctime: timestamp(metadata.ctime(), metadata.ctime_nsec()),
    }
}

fn timestamp(secs: i64, nsecs: i64) -> SystemTime {
    let since = |secs: i64| Duration::new(secs.unsigned_abs(), 0);
    let at = if secs >= 0 {
        UNIX_EPOCH + since(secs)
    } else {
        UNIX_EPOCH - since(secs)
    };
    at + Duration::from_nanos(nsecs.max(0) as u64)
}

/// Replaces what `backing` holds with the durable tree: files reachable from the root through
/// durable entries, with their durable content and metadata (ctime aside: the kernel sets it).
pub(super) fn store(backing: &Path, tree: &Tree) -> io::Result<()> {
    for entry in fs::read_dir(backing)? {
        let path = entry?.path();
        if fs::symlink_metadata(&path)?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    let mut ancestors = HashSet::from([ROOT]);
    store_dir(backing, tree, ROOT, &mut ancestors)
}

fn store_dir(path: &Path, tree: &Tree, dir: Ino, ancestors: &mut HashSet<Ino>) -> io::Result<()> {
    let entries = tree.durable_entries(dir).map_err(errno)?;
    for (name, &ino) in entries {
        store_node(&path.join(name), tree, ino, ancestors)?;
    }
    set_meta(path, &tree.node(dir).map_err(errno)?.durable)
}

fn store_node(path: &Path, tree: &Tree, ino: Ino, ancestors: &mut HashSet<Ino>) -> io::Result<()> {
    let node = tree.node(ino).map_err(errno)?;
    match &node.body {
        Body::File { durable, .. } => {
            let mut file = BufWriter::new(File::create(path)?);
            durable.write_to(&mut file)?;
            file.flush()?;
            set_meta(path, &node.durable)
        }
        // Directories moved across two others with only one of them fsynced can name each
        // other in the durable tree: each is written once per path, and a cycle is cut.
        Body::Dir { .. } if !ancestors.insert(ino) => Ok(()),
        Body::Dir { .. } => {
            fs::create_dir(path)?;
            let stored = store_dir(path, tree, ino, ancestors);
            ancestors.remove(&ino);
            stored
        }
    }
}

/// Owner (when it differs from what was just created), mode, then times.
fn set_meta(path: &Path, meta: &Meta) -> io::Result<()> {
    let metadata = fs::metadata(path)?;
    if (metadata.uid(), metadata.gid()) != (meta.uid, meta.gid) {
        std::os::unix::fs::chown(path, Some(meta.uid), Some(meta.gid))?;
    }
    fs::set_permissions(path, Permissions::from_mode(meta.mode))?;
    let spec = |time: SystemTime| {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        TimeSpec::from_duration(since)
    };
    utimensat(
        AT_FDCWD,
        path,
        &spec(meta.atime),
        &spec(meta.mtime),
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

fn errno(err: fuser::Errno) -> io::Error {
    io::Error::from_raw_os_error(i32::from(err))
}

impl Tree {
    /// Makes the entries of `dir`, just read from the backing folder, durable, and gives it
    /// back the metadata it was read with.
    fn settle_loaded(&mut self, dir: Ino, loaded: Meta) -> Result<(), fuser::Errno> {
        self.sync_entries(dir)?;
        let node = self.node_mut(dir)?;
        node.cached = loaded;
        node.durable = loaded;
        node.dirty = false;
        Ok(())
    }
}
