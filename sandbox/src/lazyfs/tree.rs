//! The model: every node has a cached state (what processes see) and a durable state (what
//! survives a power cut). This file holds the nodes and their bookkeeping; the operations are
//! in `ops.rs`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use fuser::Errno;

use super::LazyStats;
use super::content::Content;

pub(super) type Ino = u64;
/// FUSE's root inode.
pub(super) const ROOT: Ino = 1;

/// What `stat` shows besides the size, type and link count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    /// Permission bits (with setuid, setgid and sticky): `mode & 0o7777`.
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) atime: SystemTime,
    pub(super) mtime: SystemTime,
    pub(super) ctime: SystemTime,
}

impl Meta {
    pub(super) fn new(mode: u32, uid: u32, gid: u32) -> Meta {
        let now = SystemTime::now();
        Meta {
            mode: mode & 0o7777,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }
}

pub(super) type Entries = BTreeMap<OsString, Ino>;

#[derive(Debug)]
pub(super) enum Body {
    File { cached: Content, durable: Content },
    Dir { cached: Entries, durable: Entries },
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) cached: Meta,
    pub(super) durable: Meta,
    pub(super) body: Body,
    /// Entries naming this node in cached directories (its `st_nlink`), in durable ones.
    pub(super) cached_links: u32,
    pub(super) durable_links: u32,
    /// References the kernel holds: lookups not yet forgotten, open files.
    pub(super) lookups: u64,
    pub(super) opens: u64,
    /// Bytes written since the last fsync, and whether anything changed since then.
    pub(super) unsynced_bytes: u64,
    pub(super) dirty: bool,
}

impl Node {
    pub(super) fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir { .. })
    }

    pub(super) fn size(&self) -> u64 {
        match &self.body {
            Body::File { cached, .. } => cached.len(),
            Body::Dir { cached, .. } => cached.len() as u64,
        }
    }

    /// A change to what processes see, not yet durable.
    pub(super) fn touch(&mut self, bytes: u64) {
        self.unsynced_bytes += bytes;
        self.dirty = true;
        self.cached.ctime = SystemTime::now();
    }
}

/// Every node of a mounted lazy filesystem, from [`ROOT`].
#[derive(Debug)]
pub(super) struct Tree {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    pub(super) stats: LazyStats,
}

impl Tree {
    /// A tree of one empty root directory, durable as it is.
    pub(super) fn new(root: Meta) -> Tree {
        let mut tree = Tree {
            nodes: HashMap::new(),
            next_ino: ROOT,
            stats: LazyStats::default(),
        };
        let root = tree.add(root, Body::dir());
        // Named by the mount itself: never freed.
        let root = tree.node_mut(root).expect("just added");
        root.cached_links = 1;
        root.durable_links = 1;
        tree
    }

    /// A new node, cached and durable alike, named by no entry yet.
    pub(super) fn add(&mut self, meta: Meta, body: Body) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        let node = Node {
            cached: meta,
            durable: meta,
            body,
            cached_links: 0,
            durable_links: 0,
            lookups: 0,
            opens: 0,
            unsynced_bytes: 0,
            dirty: false,
        };
        self.nodes.insert(ino, node);
        ino
    }

    pub(super) fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    pub(super) fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    pub(super) fn nodes(&self) -> impl Iterator<Item = (&Ino, &Node)> {
        self.nodes.iter()
    }

    /// The cached entries of directory `dir`.
    pub(super) fn entries(&self, dir: Ino) -> Result<&Entries, Errno> {
        match &self.node(dir)?.body {
            Body::Dir { cached, .. } => Ok(cached),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    /// The durable entries of directory `dir`.
    pub(super) fn durable_entries(&self, dir: Ino) -> Result<&Entries, Errno> {
        match &self.node(dir)?.body {
            Body::Dir { durable, .. } => Ok(durable),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    pub(super) fn entries_mut(&mut self, dir: Ino) -> Result<&mut Entries, Errno> {
        match &mut self.node_mut(dir)?.body {
            Body::Dir { cached, .. } => Ok(cached),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    /// The node that cached directory `dir` names `name`.
    pub(super) fn child(&self, dir: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.entries(dir)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// Sets (or, with `None`, removes) cached entry `name` of `dir`, keeping link counts.
    /// Returns the node the name named before: the caller [`release`](Tree::release)s it once
    /// done (not before, so a node moved around is not freed between two steps).
    pub(super) fn set_entry(
        &mut self,
        dir: Ino,
        name: &OsStr,
        ino: Option<Ino>,
    ) -> Result<Option<Ino>, Errno> {
        let entries = self.entries_mut(dir)?;
        let old = match ino {
            Some(ino) => entries.insert(name.to_owned(), ino),
            None => entries.remove(name),
        };
        let node = self.node_mut(dir)?;
        node.touch(0);
        node.cached.mtime = node.cached.ctime;
        if let Some(ino) = ino {
            self.node_mut(ino)?.cached_links += 1;
        }
        if let Some(old) = old {
            self.node_mut(old)?.cached_links -= 1;
        }
        Ok(old)
    }

    /// Makes the durable entries of `dir` its cached ones; returns how many names changed.
    pub(super) fn sync_entries(&mut self, dir: Ino) -> Result<u64, Errno> {
        let node = self.node_mut(dir)?;
        let Body::Dir { cached, durable } = &mut node.body else {
            return Err(Errno::ENOTDIR);
        };
        let changed = changed_names(durable, cached);
        let (gone, new) = diff(durable, cached);
        *durable = cached.clone();
        for &ino in &new {
            self.node_mut(ino)?.durable_links += 1;
        }
        for &ino in &gone {
            self.node_mut(ino)?.durable_links -= 1;
            self.release(ino);
        }
        Ok(changed)
    }

    /// Frees `ino` if no entry, cached or durable, names it and the kernel holds no reference:
    /// it can never be seen again. A freed directory releases what its durable entries named.
    pub(super) fn release(&mut self, ino: Ino) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        if node.cached_links > 0 || node.durable_links > 0 || node.lookups > 0 || node.opens > 0 {
            return;
        }
        let node = self.nodes.remove(&ino).expect("just seen");
        if let Body::Dir { cached, durable } = node.body {
            for child in cached.values() {
                if let Some(child) = self.nodes.get_mut(child) {
                    child.cached_links -= 1;
                }
            }
            for child in durable.values() {
                if let Some(child) = self.nodes.get_mut(child) {
                    child.durable_links -= 1;
                }
            }
            for child in cached.values().chain(durable.values()) {
                self.release(*child);
            }
        }
    }
}

impl Body {
    pub(super) fn dir() -> Body {
        Body::Dir {
            cached: Entries::new(),
            durable: Entries::new(),
        }
    }

    pub(super) fn file(content: Content) -> Body {
        Body::File {
            durable: content.clone(),
            cached: content,
        }
    }
}

/// What going from `before` to `after` unlinks and links: one node per changed name (a name
/// that now names another node counts on both sides).
pub(super) fn diff(before: &Entries, after: &Entries) -> (Vec<Ino>, Vec<Ino>) {
    let gone = before
        .iter()
        .filter(|(name, ino)| after.get(*name) != Some(*ino))
        .map(|(_, ino)| *ino)
        .collect();
    let new = after
        .iter()
        .filter(|(name, ino)| before.get(*name) != Some(*ino))
        .map(|(_, ino)| *ino)
        .collect();
    (gone, new)
}

/// How many names differ between `before` and `after` (added, removed or naming another node).
pub(super) fn changed_names(before: &Entries, after: &Entries) -> u64 {
    let changed = before
        .iter()
        .filter(|(name, ino)| after.get(*name) != Some(*ino))
        .count();
    let added = after
        .keys()
        .filter(|name| !before.contains_key(*name))
        .count();
    (changed + added) as u64
}
