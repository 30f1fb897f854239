//! What the mounted filesystem and its [`LazyFs`](super::LazyFs) handle share: the tree, whether
//! the power is still on, and the listings of open directories.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo, ReplyDirectory, Request, TimeOrNow};

use super::tree::{Body, Ino, Meta, Node, Tree};

#[derive(Debug)]
pub(super) struct State {
    pub(super) tree: Tree,
    /// Set at a cut or unmount: the tree is frozen from then on.
    pub(super) dead: bool,
    /// Open directories: the listing taken at `opendir`, so `readdir` offsets stay valid.
    listings: HashMap<u64, Vec<(Ino, FileType, OsString)>>,
    next_fh: u64,
}

pub(super) type Shared = Arc<Mutex<State>>;

impl State {
    pub(super) fn new(tree: Tree) -> Shared {
        Arc::new(Mutex::new(State {
            tree,
            dead: false,
            listings: HashMap::new(),
            next_fh: 1,
        }))
    }

    /// Creates a file or directory (`dir`) and returns its attributes; the kernel now holds one
    /// lookup of it (and, with `open`, an open file).
    pub(super) fn create(
        &mut self,
        req: &Request,
        (parent, name): (Ino, &OsStr),
        mode: u32,
        (dir, open): (bool, bool),
    ) -> Result<FileAttr, Errno> {
        let meta = Meta::new(mode, req.uid(), req.gid());
        let ino = self.tree.create(parent, name, meta, dir)?;
        let node = self.tree.node_mut(ino)?;
        node.lookups += 1;
        node.opens += u64::from(open);
        attr(ino, node)
    }

    /// `opendir`: lists `dir` now, returns the handle of that listing.
    pub(super) fn open_listing(&mut self, dir: Ino) -> Result<u64, Errno> {
        let mut listing = vec![
            (dir, FileType::Directory, OsString::from(".")),
            (dir, FileType::Directory, OsString::from("..")),
        ];
        for (name, &child) in self.tree.entries(dir)? {
            let kind = if self.tree.node(child)?.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            listing.push((child, kind, name.clone()));
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.listings.insert(fh, listing);
        Ok(fh)
    }

    /// `readdir`: what follows `offset` in listing `fh`, as much as `reply` takes.
    pub(super) fn fill(
        &self,
        fh: u64,
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> Result<(), Errno> {
        let listing = self.listings.get(&fh).ok_or(Errno::EBADF)?;
        for (index, (ino, kind, name)) in listing.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), index as u64 + 1, *kind, name) {
                break;
            }
        }
        Ok(())
    }

    /// `releasedir`.
    pub(super) fn close_listing(&mut self, fh: u64) {
        self.listings.remove(&fh);
    }
}

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `stat` of a node.
pub(super) fn attr(ino: Ino, node: &Node) -> Result<FileAttr, Errno> {
    let meta = &node.cached;
    let (kind, nlink) = match node.body {
        Body::File { .. } => (FileType::RegularFile, node.cached_links),
        Body::Dir { .. } => (FileType::Directory, 2),
    };
    let size = node.size();
    Ok(FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: meta.atime,
        mtime: meta.mtime,
        ctime: meta.ctime,
        crtime: meta.ctime,
        kind,
        perm: (meta.mode & 0o7777) as u16,
        nlink,
        uid: meta.uid,
        gid: meta.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    })
}

pub(super) fn time(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}
