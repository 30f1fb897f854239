//! A power-cut simulator for tests: a FUSE filesystem, in the spirit of Jepsen's LazyFS, that
//! holds a folder (the agent's `store_dir`) and loses exactly what was not made durable when
//! the power is cut. SIGKILL keeps the page cache, so it is not a power cut; [`LazyFs::cut`] is.
//!
//! The model:
//! - every file has a *cached* state (what processes see: content, size, mode, owner, times)
//!   and a *durable* one; every directory has *cached* entries (name → file) and *durable*
//!   ones;
//! - `fsync` or `fdatasync` of a file: its durable content and metadata become the cached ones
//!   (fdatasync is taken as fsync);
//! - `fsync` of a directory: its durable entries become the cached ones (creations, unlinks,
//!   renames into or out of it). A rename between two directories is durable in each only once
//!   that one is fsynced: with only the target fsynced, the file survives under both names;
//! - a file created, written and fsynced whose directory was never fsynced is lost at a cut, as
//!   on a strict POSIX filesystem (ext4 with `data=ordered` usually keeps it: this is harsher);
//! - [`LazyFs::cut`]: everything not durable is dropped and the backing folder is rewritten to
//!   hold exactly the durable tree (files reachable through durable entries from the root, with
//!   their durable content), then the filesystem is unmounted. A later [`LazyFs::mount`] of the
//!   same backing folder starts from there (cached = durable);
//! - [`LazyFs::unmount`] is a clean shutdown (`sync`, then unmount): everything is kept.
//!
//! Everything lives in memory while mounted (files as shared pages, so an fsync copies no
//! bytes); the backing folder is read at mount and written at the cut or unmount only. If the
//! test process dies without dropping its [`LazyFs`], the backing folder keeps what it had at
//! mount.
//!
//! Mounting: fuser without libfuse. As root, the `mount(2)` syscall on `/dev/fuse`; otherwise
//! `fusermount3` (Debian's `fuse3`). The requests are served by one thread of the test process.
//! POSIX locks (SQLite's) are handled by the kernel itself, which it does when a FUSE
//! filesystem does not ask for them; files keep the page cache (no `direct_io`), so `mmap`
//! (SQLite's `-shm` file) works.
//!
//! | Concern | File |
//! |---|---|
//! | mount, cut, unmount | `mod.rs` |
//! | FUSE requests | `fuse.rs` |
//! | what the mount and the handle share, `stat` | `state.rs` |
//! | the model: nodes, entries, link counts | `tree.rs` |
//! | operations, fsync, what a cut loses | `ops.rs` |
//! | a file's bytes (shared pages) | `content.rs` |
//! | the backing folder | `backing.rs` |

mod backing;
mod content;
mod fuse;
mod ops;
mod state;
#[cfg(test)]
mod tests;
mod tree;

use std::io;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};

use fuse::LazyFuse;
use state::{Shared, State, lock};

/// How long an unmount waits for the serving thread to end (it ends as soon as the kernel
/// closes the connection).
const JOIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Counters for a test's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LazyStats {
    /// `fsync` and `fdatasync` calls on files.
    pub file_syncs: u64,
    /// `fsync` calls on directories.
    pub dir_syncs: u64,
    /// File fsyncs that made a change durable.
    pub files_made_durable: u64,
    /// Bytes written (or truncated away) that a file fsync made durable.
    pub bytes_made_durable: u64,
    /// Directory entries (created, removed, renamed) that a directory fsync made durable.
    pub entries_made_durable: u64,
    /// At the cut (zero before): visible files whose visible state was lost, because they
    /// changed since their last fsync or are not in the durable tree.
    pub files_discarded: u64,
    /// At the cut: bytes written since the last fsync of their file, plus the whole size of
    /// visible files missing from the durable tree.
    pub bytes_discarded: u64,
    /// At the cut: directory entries changed since their directory's last fsync.
    pub entries_discarded: u64,
}

/// A mounted lazy filesystem. Dropping it cuts the power (and unmounts) if neither
/// [`cut`](LazyFs::cut) nor [`unmount`](LazyFs::unmount) was called.
#[derive(Debug)]
pub struct LazyFs {
    backing: PathBuf,
    mountpoint: PathBuf,
    state: Shared,
    unmounter: Option<SessionUnmounter>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl LazyFs {
    /// Mounts the lazy filesystem at `mountpoint` (an existing empty directory) over `backing`
    /// (an existing directory of directories and regular files, all taken as durable).
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<LazyFs> {
        let backing = backing.canonicalize()?;
        let mountpoint = mountpoint.canonicalize()?;
        if backing.starts_with(&mountpoint) || mountpoint.starts_with(&backing) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the backing folder and the mountpoint must not contain each other",
            ));
        }
        let state = State::new(backing::load(&backing)?);
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".to_owned()),
            MountOption::DefaultPermissions,
        ];
        // Other users (the agent dropping privileges, a test's helper) may use the mount; only
        // root may ask for that without /etc/fuse.conf's user_allow_other.
        if nix::unistd::geteuid().is_root() {
            config.acl = SessionACL::All;
        }
        let filesystem = LazyFuse {
            state: state.clone(),
        };
        let mut session = Session::new(filesystem, &mountpoint, &config)?;
        let unmounter = session.unmount_callable();
        let thread = thread::Builder::new()
            .name("lazyfs".to_owned())
            .spawn(move || session.run())?;
        Ok(LazyFs {
            backing,
            mountpoint,
            state,
            unmounter: Some(unmounter),
            thread: Some(thread),
        })
    }

    /// A power cut: everything not made durable is lost; the filesystem is unmounted and the
    /// backing folder holds the durable tree. Returns the final counters.
    pub fn cut(mut self) -> io::Result<LazyStats> {
        self.cut_power()
    }

    /// A clean unmount: everything is made durable first (unmounting first, so that what the
    /// kernel still had to write, such as mmap'ed pages, is in). Returns the final counters.
    pub fn unmount(mut self) -> io::Result<LazyStats> {
        let unmounted = self.detach();
        let mut state = lock(&self.state);
        state.dead = true;
        state.tree.sync_all().map_err(errno)?;
        unmounted?;
        backing::store(&self.backing, &state.tree)?;
        Ok(state.tree.stats)
    }

    /// The counters so far.
    pub fn stats(&self) -> LazyStats {
        lock(&self.state).tree.stats
    }

    /// Where the filesystem is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    fn cut_power(&mut self) -> io::Result<LazyStats> {
        {
            // From now on every request fails: nothing more reaches the tree.
            let mut state = lock(&self.state);
            state.dead = true;
            state.tree.count_discarded();
        }
        let unmounted = self.detach();
        let state = lock(&self.state);
        unmounted?;
        backing::store(&self.backing, &state.tree)?;
        Ok(state.tree.stats)
    }

    /// Unmounts (lazily if files are still open) and waits for the serving thread.
    fn detach(&mut self) -> io::Result<()> {
        let Some(mut unmounter) = self.unmounter.take() else {
            return Ok(());
        };
        if let Err(err) = unmounter.unmount() {
            if err.raw_os_error() != Some(Errno::EBUSY as i32) {
                return Err(err);
            }
            // A process still has a file open: detach the mount now, the kernel ends it when
            // the last file is closed (and meanwhile the dead state answers EIO). The serving
            // thread ends then, on its own.
            umount2(&self.mountpoint, MntFlags::MNT_DETACH)?;
            self.thread = None;
            return Ok(());
        }
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + JOIN_TIMEOUT;
        while !thread.is_finished() {
            if Instant::now() > deadline {
                return Ok(()); // left to end on its own
            }
            thread::sleep(Duration::from_millis(2));
        }
        thread
            .join()
            .map_err(|_| io::Error::other("the lazyfs thread panicked"))?
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if self.unmounter.is_some() {
            let _ = self.cut_power();
        }
    }
}

fn errno(err: fuser::Errno) -> io::Error {
    io::Error::from_raw_os_error(i32::from(err))
}
