//! The agent's persistent state in one SQLite database, `store_dir/agent.db`: the outgoing
//! queue of `stored` datastream messages, the property values (device- and server-owned),
//! the messages the broker refused (dead letters), and the ledger of remote commands
//! ([`ledger`]).
//!
//! Every database operation runs on one dedicated writer thread ([`writer`]); the async side
//! only sends requests and awaits replies, so the runtime never blocks on disk. Requests
//! waiting while a transaction commits are applied together in the next one (group commit):
//! many concurrent `Send` calls share one fsync, which keeps flash wear low.
//!
//! Durability: WAL journal with `synchronous = FULL` for transactions that hold something a
//! caller was promised (a stored message, a device-owned property): the WAL is fsynced before
//! the call returns, so a power cut cannot lose it. Bookkeeping that can be redone
//! (acknowledged rows, server-owned property copies) commits with `synchronous = NORMAL`
//! and becomes durable with the next fsync; losing it on a power cut only means a message
//! is sent again or a server property is re-sent by Astarte.

mod answer;
mod command_row;
pub mod ledger;
mod legacy;
mod ops;
mod request;
mod schema;
mod writer;

#[cfg(test)]
mod ledger_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::interface::Ownership;

pub use command_row::{CommandResult, NO_EXIT_CODE, Status};
pub use ledger::{Inserted, LedgerEntry, NewCommand};
pub(crate) use request::Request;
pub use schema::{DATABASE_FILE, SCHEMA_VERSION};

/// Default cap of the stored backlog (payload bytes waiting on disk).
pub const DEFAULT_MAX_QUEUE_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("couldn't open the store at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("couldn't move the corrupt store {path} aside")]
    MoveAside {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("couldn't import the 0.1 property file {path}")]
    Import {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "couldn't write to the store (disk full or read-only?): free space in store_dir or fix its permissions"
    )]
    Write(#[source] rusqlite::Error),
    #[error(
        "the stored queue is full ({bytes} of {max} bytes): the device has been offline too long; retry later or raise [store] max_queue_bytes"
    )]
    QueueFull { bytes: u64, max: u64 },
    #[error("couldn't write {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("couldn't start the store's writer thread")]
    Thread(#[source] std::io::Error),
    #[error("the store has stopped")]
    Stopped,
}

/// A `stored` datastream message as it waits on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub interface: String,
    pub major: u32,
    pub path: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    /// Wall-clock deadline (ms since the epoch); not sent after it.
    pub expires_at_ms: Option<i64>,
}

/// A queued message with its place in line.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRow {
    pub seq: u64,
    pub message: StoredMessage,
}

/// Rows read from the queue, and how far the read saw.
#[derive(Debug, Default, PartialEq)]
pub struct Loaded {
    pub rows: Vec<QueuedRow>,
    /// Every queued row with a sequence number up to this one was in this read or an
    /// earlier one (or is gone).
    pub seen_upto: u64,
    /// The read stopped at its limit: more rows may follow `seen_upto`.
    pub more: bool,
}

/// A property value as stored: the payload is its BSON wire encoding (`{"v": value}`).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyRow {
    pub interface: String,
    pub path: String,
    pub ownership: Ownership,
    pub major: u32,
    pub payload: Vec<u8>,
}

/// What the store held when it was opened.
pub struct Opened {
    pub store: Store,
    pub properties: Vec<PropertyRow>,
    /// Sequence numbers of the queued rows: the first and the last, if any.
    pub backlog: Option<(u64, u64)>,
    /// The database was created by this open: a new device, or a corrupt database moved
    /// aside. Nothing the agent knew about the broker's session holds any more.
    pub fresh: bool,
}

/// Limits the store enforces.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub max_queue_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
        }
    }
}

/// Counters shared between the writer thread and the rest of the agent.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows in the stored queue.
    pub queued: AtomicU64,
    /// Payload bytes in the stored queue.
    pub queued_bytes: AtomicU64,
    /// Size of the database and its WAL on disk.
    pub file_bytes: AtomicU64,
}

/// Bytes of `agent.db` and its WAL in `dir`.
pub(crate) fn file_bytes(dir: &Path) -> u64 {
    [DATABASE_FILE, "agent.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(dir.join(name)).ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// Acknowledged rows not yet removed, shared by every handle and the writer. The session
/// acknowledges after nearly every broker event: collecting here, the writer is woken once
/// per batch ([`Request::Acks`]) instead of once per acknowledgement.
#[derive(Debug, Default)]
pub(crate) struct PendingAcks {
    pub(crate) seqs: Vec<u64>,
    /// When the first of them arrived: they are written at most [`writer::ACK_DELAY`] later.
    pub(crate) since: Option<std::time::Instant>,
}

/// Locks a mutex of plain data, poisoned or not.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handle to the store; cheap to clone. The writer thread stops when the last handle is
/// dropped, after committing what it was given.
#[derive(Clone)]
pub struct Store {
    requests: mpsc::Sender<Request>,
    acks: Arc<std::sync::Mutex<PendingAcks>>,
    next_seq: Arc<AtomicU64>,
    counters: Arc<Counters>,
    dir: PathBuf,
    writer: Arc<std::sync::Mutex<Option<crate::tasks::Worker>>>,
}

/// How long closing the store waits for the writer to commit what it was given.
pub const CLOSE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

impl Store {
    /// Opens (or creates) `store_dir/agent.db`, runs migrations, imports 0.1's property file,
    /// and starts the writer thread. Blocking: call it from a blocking context.
    pub fn open(store_dir: &Path, options: StoreOptions) -> Result<Opened, StoreError> {
        let (connection, contents) = schema::open(store_dir)?;
        let counters = Arc::new(Counters::default());
        counters.queued.store(contents.queued, Ordering::Relaxed);
        counters
            .queued_bytes
            .store(contents.queued_bytes, Ordering::Relaxed);
        counters
            .file_bytes
            .store(file_bytes(store_dir), Ordering::Relaxed);
        let next_seq = Arc::new(AtomicU64::new(contents.next_seq));
        let (requests, receiver) = mpsc::channel();
        let acks = Arc::new(std::sync::Mutex::new(PendingAcks::default()));
        let thread = writer::spawn(
            connection,
            receiver,
            writer::Shared {
                next_seq: next_seq.clone(),
                counters: counters.clone(),
                max_queue_bytes: options.max_queue_bytes,
                dir: store_dir.to_owned(),
                acks: acks.clone(),
            },
        )
        .map_err(StoreError::Thread)?;
        Ok(Opened {
            store: Store {
                requests,
                acks,
                next_seq,
                counters,
                dir: store_dir.to_owned(),
                writer: Arc::new(std::sync::Mutex::new(Some(thread))),
            },
            properties: contents.properties,
            backlog: contents.backlog,
            fresh: contents.fresh,
        })
    }

    /// The sequence counter shared by every outgoing message, stored or not: order of
    /// acceptance, across restarts.
    pub fn sequence(&self) -> Arc<AtomicU64> {
        self.next_seq.clone()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a message to the stored queue; resolves once it is on disk, with its place in line.
    pub async fn append(&self, message: StoredMessage) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Append { message, reply })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Stores a property value; resolves once it is on disk.
    pub async fn put_property(&self, row: PropertyRow) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::PutProperty {
            row,
            reply: Some(reply),
        })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Removes a property value; resolves once the removal is on disk.
    pub async fn delete_property(&self, interface: &str, path: &str) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::DeleteProperty {
            interface: interface.into(),
            path: path.into(),
            reply: Some(reply),
        })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Removes every property value of an interface (its major version changed, or it was removed).
    pub async fn drop_interface(&self, interface: &str) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::DropInterface {
            interface: interface.into(),
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Stores a property value without waiting (server-owned values: Astarte sends them again).
    pub fn put_property_later(&self, row: PropertyRow) {
        self.send_later(Request::PutProperty { row, reply: None });
    }

    /// Removes a property value without waiting.
    pub fn delete_property_later(&self, interface: &str, path: &str) {
        self.send_later(Request::DeleteProperty {
            interface: interface.into(),
            path: path.into(),
            reply: None,
        });
    }

    /// The broker acknowledged these stored messages: remove them (batched, without waiting).
    pub fn ack(&self, seqs: Vec<u64>) {
        if seqs.is_empty() {
            return;
        }
        let wake = {
            let mut pending = lock(&self.acks);
            let before = pending.seqs.len();
            pending.seqs.extend(seqs);
            let first = pending.since.is_none();
            if first {
                pending.since = Some(std::time::Instant::now());
            }
            first || (before < writer::ACK_BATCH && pending.seqs.len() >= writer::ACK_BATCH)
        };
        if wake {
            self.send_later(Request::Acks);
        }
    }

    /// Moves a message the broker keeps refusing to the dead-letter table (without waiting).
    pub fn dead_letter(&self, seq: u64) {
        self.send_later(Request::DeadLetter(seq));
    }

    /// Reads up to `limit` queued rows from `from` on, in order; expired rows are removed.
    pub async fn load(&self, from: u64, limit: usize) -> Result<Loaded, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Load {
            from,
            limit,
            now_ms: crate::clock::now_ms(),
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Stops the writer after it has committed everything sent so far, and joins it within
    /// [`CLOSE_DEADLINE`]. Blocking: call it from a blocking context, after every other
    /// handle is gone or idle.
    pub fn close(self) -> Result<(), crate::tasks::TaskError> {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        // Other clones keep the channel open: tell the writer explicitly.
        let _ = self.requests.send(Request::Stop);
        match writer {
            Some(writer) => writer.join_within(CLOSE_DEADLINE),
            None => Ok(()),
        }
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        self.requests.send(request).map_err(|_| StoreError::Stopped)
    }

    fn send_later(&self, request: Request) {
        if self.requests.send(request).is_err() {
            tracing::debug!("the store has stopped; dropping a bookkeeping request");
        }
    }
}
