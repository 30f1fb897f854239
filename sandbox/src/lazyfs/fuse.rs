//! The FUSE side: each kernel request is one operation of the model under the state's lock.
//! After a cut the state is dead: every request fails with EIO (a process that still had a
//! file open sees the disk gone).
//!
//! Not implemented, on purpose: `access` (mounted with `default_permissions`, the kernel checks
//! the mode bits), `getlk`/`setlk` (without them the kernel keeps POSIX locks itself, as SQLite
//! needs), symlinks, hard links, special files and extended attributes.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use fuser::{
    BsdFileFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::libc;

use super::state::{Shared, State, attr, lock, time};
use super::tree::Tree;

/// How long the kernel may keep names and attributes: every change goes through this
/// filesystem, so its caches never go stale while mounted.
const TTL: Duration = Duration::from_secs(1);

/// The [`Filesystem`] that fuser serves.
pub(super) struct LazyFuse {
    pub(super) state: Shared,
}

impl LazyFuse {
    /// Runs `op` on the live state.
    fn with<T>(&self, op: impl FnOnce(&mut State) -> Result<T, Errno>) -> Result<T, Errno> {
        let mut state = lock(&self.state);
        if state.dead {
            return Err(Errno::EIO);
        }
        op(&mut state)
    }

    /// Runs `op` on the live tree and answers with `ino`'s attributes.
    fn attr_after(
        &self,
        ino: INodeNo,
        reply: ReplyAttr,
        op: impl FnOnce(&mut Tree) -> Result<(), Errno>,
    ) {
        match self.with(|state| {
            op(&mut state.tree)?;
            attr(ino.0, state.tree.node(ino.0)?)
        }) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(err) => reply.error(err),
        }
    }
}

fn empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(err) => reply.error(err),
    }
}

fn entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(err) => reply.error(err),
    }
}

impl Filesystem for LazyFuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        entry(
            reply,
            self.with(|state| {
                let ino = state.tree.child(parent.0, name)?;
                let node = state.tree.node_mut(ino)?;
                node.lookups += 1;
                attr(ino, node)
            }),
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut state = lock(&self.state);
        if let Ok(node) = state.tree.node_mut(ino.0) {
            node.lookups = node.lookups.saturating_sub(nlookup);
            state.tree.release(ino.0);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr_after(ino, reply, |_| Ok(()));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.attr_after(ino, reply, |tree| {
            if let Some(size) = size {
                tree.set_len(ino.0, size)?;
            }
            tree.set_meta(ino.0, |meta| {
                meta.mode = mode.map_or(meta.mode, |mode| mode & 0o7777);
                meta.uid = uid.unwrap_or(meta.uid);
                meta.gid = gid.unwrap_or(meta.gid);
                meta.atime = atime.map_or(meta.atime, time);
                meta.mtime = mtime.map_or(meta.mtime, time);
                meta.ctime = ctime.unwrap_or(meta.ctime);
            })
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Regular files only: no device, FIFO or socket.
            return reply.error(Errno::EPERM);
        }
        entry(
            reply,
            self.with(|state| state.create(req, (parent.0, name), mode, (false, false))),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.with(|state| state.create(req, (parent.0, name), mode, (true, false))),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            self.with(|state| state.tree.remove(parent.0, name, false)),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(
            reply,
            self.with(|state| state.tree.remove(parent.0, name, true)),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.with(|state| {
                state
                    .tree
                    .rename((parent.0, name), (newparent.0, newname), flags)
            }),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|state| {
            if flags.0 & libc::O_TRUNC != 0 {
                state.tree.set_len(ino.0, 0)?;
            }
            state.tree.node_mut(ino.0)?.opens += 1;
            Ok(())
        }) {
            // Page cache kept (no direct_io): SQLite's -shm file is mmap'ed.
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(err) => reply.error(err),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.with(|state| Ok(state.tree.content(ino.0)?.read(offset, size as usize))) {
            Ok(data) => reply.data(&data),
            Err(err) => reply.error(err),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.with(|state| state.tree.write(ino.0, offset, data)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(err) => reply.error(err),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = lock(&self.state);
        if let Ok(node) = state.tree.node_mut(ino.0) {
            node.opens = node.opens.saturating_sub(1);
            state.tree.release(ino.0);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fdatasync makes the metadata durable too: simpler, and SQLite's data is in the bytes.
        empty(reply, self.with(|state| state.tree.sync_file(ino.0)));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|state| state.open_listing(ino.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(err) => reply.error(err),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match lock(&self.state).fill(fh.0, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(err),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.state).close_listing(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.with(|state| state.tree.sync_dir(ino.0)));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: the content lives in memory until the cut.
        reply.statfs(1 << 24, 1 << 24, 1 << 24, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.with(|state| state.create(req, (parent.0, name), mode, (false, true))) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(err) => reply.error(err),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            // Punching holes, keeping the size, zeroing ranges: not needed by SQLite.
            return reply.error(Errno::EOPNOTSUPP);
        }
        empty(
            reply,
            self.with(|state| {
                let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
                state.tree.allocate(ino.0, end)
            }),
        );
    }
}
