//! What processes do to the tree (on the cached state), what fsync does (cached → durable) and
//! what a power cut keeps.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use fuser::{Errno, RenameFlags};

use super::content::{Content, MAX_LEN};
use super::tree::{Body, Ino, Meta, ROOT, Tree, changed_names};

/// Longest name of a directory entry, as on ext4.
const NAME_MAX: usize = 255;

impl Tree {
    /// A new empty file or directory named `name` in `parent`. Its durable state is that of
    /// its creation (empty), but it is durable only once `parent` is fsynced.
    pub(super) fn create(
        &mut self,
        parent: Ino,
        name: &OsStr,
        meta: Meta,
        dir: bool,
    ) -> Result<Ino, Errno> {
        if name.as_bytes().len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let body = if dir {
            Body::dir()
        } else {
            Body::file(Content::default())
        };
        let ino = self.add(meta, body);
        self.set_entry(parent, name, Some(ino))?;
        Ok(ino)
    }

    /// `unlink` (`dir` false) or `rmdir` (`dir` true).
    pub(super) fn remove(&mut self, parent: Ino, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.child(parent, name)?;
        let node = self.node(ino)?;
        match (dir, node.is_dir()) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            (true, true) if node.size() > 0 => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.set_entry(parent, name, None)?;
        self.node_mut(ino)?.cached.ctime = SystemTime::now();
        self.release(ino);
        Ok(())
    }

    /// `rename` and `renameat2` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    pub(super) fn rename(
        &mut self,
        from: (Ino, &OsStr),
        to: (Ino, &OsStr),
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if to.1.as_bytes().len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let ino = self.child(from.0, from.1)?;
        let target = self.entries(to.0)?.get(to.1).copied();
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let target = target.ok_or(Errno::ENOENT)?;
            self.set_entry(from.0, from.1, Some(target))?;
            self.set_entry(to.0, to.1, Some(ino))?;
            return Ok(());
        }
        if target == Some(ino) {
            return Ok(());
        }
        if let Some(target) = target {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            let target = self.node(target)?;
            match (self.node(ino)?.is_dir(), target.is_dir()) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if target.size() > 0 => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        let replaced = self.set_entry(to.0, to.1, Some(ino))?;
        self.set_entry(from.0, from.1, None)?;
        self.node_mut(ino)?.cached.ctime = SystemTime::now();
        if let Some(replaced) = replaced {
            self.release(replaced);
        }
        Ok(())
    }

    /// `chmod`, `chown`, `utimens`: applies `change` to the cached metadata of `ino`.
    pub(super) fn set_meta(
        &mut self,
        ino: Ino,
        change: impl FnOnce(&mut Meta),
    ) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        node.touch(0);
        change(&mut node.cached);
        node.cached.mode &= 0o7777;
        Ok(())
    }

    /// The cached content of a regular file.
    pub(super) fn content(&self, ino: Ino) -> Result<&Content, Errno> {
        match &self.node(ino)?.body {
            Body::File { cached, .. } => Ok(cached),
            Body::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    /// Applies `change` to the cached content of regular file `ino`, which ends up `len` bytes
    /// long; `bytes` is what the change counts as not yet durable.
    fn change_content(
        &mut self,
        ino: Ino,
        len: u64,
        bytes: u64,
        change: impl FnOnce(&mut Content),
    ) -> Result<(), Errno> {
        if len > MAX_LEN {
            return Err(Errno::EFBIG);
        }
        let node = self.node_mut(ino)?;
        let Body::File { cached, .. } = &mut node.body else {
            return Err(Errno::EISDIR);
        };
        change(cached);
        node.touch(bytes);
        node.cached.mtime = node.cached.ctime;
        Ok(())
    }

    pub(super) fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        self.change_content(ino, end, data.len() as u64, |content| {
            content.write(offset, data)
        })
    }

    /// `truncate`, `ftruncate`, `O_TRUNC`.
    pub(super) fn set_len(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        let old = self.content(ino)?.len();
        self.change_content(ino, len, old.abs_diff(len), |content| content.set_len(len))
    }

    /// `fallocate` mode 0: the file is at least `end` bytes long.
    pub(super) fn allocate(&mut self, ino: Ino, end: u64) -> Result<(), Errno> {
        let old = self.content(ino)?.len();
        if end <= old {
            return Ok(());
        }
        self.change_content(ino, end, end - old, |content| content.set_len(end))
    }

    /// `fsync` or `fdatasync` of a file: its content, size and metadata become durable.
    pub(super) fn sync_file(&mut self, ino: Ino) -> Result<(), Errno> {
        if self.node(ino)?.is_dir() {
            return self.sync_dir(ino);
        }
        let (dirty, bytes) = self.settle_file(ino)?;
        self.stats.file_syncs += 1;
        if dirty {
            self.stats.files_made_durable += 1;
            self.stats.bytes_made_durable += bytes;
        }
        Ok(())
    }

    /// `fsync` of a directory: its entries (creations, unlinks, renames in or out) and its
    /// metadata become durable.
    pub(super) fn sync_dir(&mut self, ino: Ino) -> Result<(), Errno> {
        let changed = self.settle_dir(ino)?;
        self.stats.dir_syncs += 1;
        self.stats.entries_made_durable += changed;
        Ok(())
    }

    /// A clean shutdown: every node's durable state becomes its cached state.
    pub(super) fn sync_all(&mut self) -> Result<(), Errno> {
        let mut inos: Vec<Ino> = self.nodes().map(|(ino, _)| *ino).collect();
        inos.sort_unstable();
        for ino in inos {
            match self.node(ino).map(|node| node.is_dir()) {
                Ok(true) => drop(self.settle_dir(ino)?),
                Ok(false) => drop(self.settle_file(ino)?),
                Err(_) => {} // freed by a directory settled before
            }
        }
        Ok(())
    }

    /// Durable := cached for a file; whether it had changed, and its unsynced bytes.
    fn settle_file(&mut self, ino: Ino) -> Result<(bool, u64), Errno> {
        let node = self.node_mut(ino)?;
        if let Body::File { cached, durable } = &mut node.body {
            *durable = cached.clone();
        }
        node.durable = node.cached;
        let done = (node.dirty, node.unsynced_bytes);
        node.dirty = false;
        node.unsynced_bytes = 0;
        Ok(done)
    }

    /// Durable := cached for a directory; how many of its names changed.
    fn settle_dir(&mut self, ino: Ino) -> Result<u64, Errno> {
        let changed = self.sync_entries(ino)?;
        let node = self.node_mut(ino)?;
        node.durable = node.cached;
        node.dirty = false;
        node.unsynced_bytes = 0;
        Ok(changed)
    }

    /// What a power cut now would lose, into `stats`' `*_discarded` counters.
    pub(super) fn count_discarded(&mut self) {
        let visible = self.reachable(false);
        let durable = self.reachable(true);
        let (mut files, mut bytes, mut entries) = (0, 0, 0);
        for (ino, node) in self.nodes() {
            match &node.body {
                Body::Dir { cached, durable } => entries += changed_names(durable, cached),
                Body::File { cached, .. } if visible.contains(ino) && !durable.contains(ino) => {
                    files += 1;
                    bytes += cached.len();
                }
                Body::File { .. } if visible.contains(ino) && node.dirty => {
                    files += 1;
                    bytes += node.unsynced_bytes;
                }
                Body::File { .. } => {}
            }
        }
        self.stats.files_discarded = files;
        self.stats.bytes_discarded = bytes;
        self.stats.entries_discarded = entries;
    }

    /// The nodes reachable from the root through cached (or durable) entries.
    fn reachable(&self, durable: bool) -> HashSet<Ino> {
        let mut seen = HashSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(dir) = todo.pop() {
            let entries = if durable {
                self.durable_entries(dir)
            } else {
                self.entries(dir)
            };
            for &ino in entries.into_iter().flat_map(|entries| entries.values()) {
                if seen.insert(ino) {
                    todo.push(ino);
                }
            }
        }
        seen
    }
}
