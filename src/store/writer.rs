//! The writer thread: the only code that touches the database after start-up.
//!
//! It takes every request waiting in its channel, applies them in one transaction, commits
//! once, and only then answers each caller (group commit). Acknowledgements of sent messages
//! are cheap to lose and frequent, so they wait (up to [`ACK_BATCH`] of them or
//! [`ACK_DELAY`]) and ride along with the next transaction.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::schema::ownership_code;
use super::{Counters, Loaded, QueuedRow, Request, StoreError, StoredMessage};

/// Most requests applied in one transaction.
const MAX_BATCH: usize = 1024;
/// Acknowledgements collected before they are written on their own.
const ACK_BATCH: usize = 256;
/// Longest wait before collected acknowledgements are written on their own.
const ACK_DELAY: Duration = Duration::from_millis(500);
/// After a request that must be durable arrives, more requests are awaited while they keep
/// coming at most this far apart, so concurrent callers share one commit and one fsync...
const GATHER_GAP: Duration = Duration::from_micros(300);
/// ...for at most this long in all.
const GATHER_MAX: Duration = Duration::from_millis(2);
/// How often the size of the database files is read again.
const SIZE_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct Shared {
    pub next_seq: Arc<AtomicU64>,
    pub counters: Arc<Counters>,
    pub max_queue_bytes: u64,
    pub dir: PathBuf,
}

pub(super) fn spawn(
    connection: Connection,
    receiver: Receiver<Request>,
    shared: Shared,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let writer = Writer {
        connection,
        receiver,
        shared,
        acks: Vec::new(),
        acks_since: None,
        failing: false,
        synchronous_full: true,
        sized_at: Instant::now(),
    };
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer.run())
}

struct Writer {
    connection: Connection,
    receiver: Receiver<Request>,
    shared: Shared,
    /// Acknowledged rows not yet removed.
    acks: Vec<u64>,
    acks_since: Option<Instant>,
    /// The last transaction failed: an episode is under way (logged once).
    failing: bool,
    synchronous_full: bool,
    /// When the size of the database files was last read.
    sized_at: Instant,
}

/// What one request produced inside the transaction.
enum Outcome {
    Done,
    Appended(u64),
    Loaded(Loaded),
    /// Refused without touching the database (the transaction goes on).
    Refused(StoreError),
}

/// Changes to the shared counters, applied once the transaction committed.
#[derive(Default)]
struct Delta {
    queued: i64,
    bytes: i64,
}

impl Writer {
    fn run(mut self) {
        loop {
            let first = match self.acks_since {
                None => match self.receiver.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                },
                Some(since) => {
                    let wait = ACK_DELAY.saturating_sub(since.elapsed());
                    match self.receiver.recv_timeout(wait) {
                        Ok(request) => Some(request),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let mut work = Vec::new();
            let mut stop = false;
            let mut durable = false;
            let started = Instant::now();
            let mut next = first;
            loop {
                match next {
                    Some(Request::Ack(seqs)) => self.acks.extend(seqs),
                    Some(Request::Stop) => stop = true,
                    Some(other) => {
                        durable |= is_durable(&other);
                        work.push(other);
                    }
                    None => {}
                }
                if work.len() >= MAX_BATCH || stop {
                    break;
                }
                next = match self.receiver.try_recv() {
                    Ok(request) => Some(request),
                    Err(_) if durable && started.elapsed() < GATHER_MAX => {
                        match self.receiver.recv_timeout(GATHER_GAP) {
                            Ok(request) => Some(request),
                            Err(_) => break,
                        }
                    }
                    Err(_) => break,
                };
            }
            let acks_due = stop
                || self.acks.len() >= ACK_BATCH
                || self
                    .acks_since
                    .is_some_and(|since| since.elapsed() >= ACK_DELAY);
            if !work.is_empty() || (acks_due && !self.acks.is_empty()) {
                self.commit(work, acks_due);
            }
            if !self.acks.is_empty() && self.acks_since.is_none() {
                self.acks_since = Some(Instant::now());
            }
            if stop {
                break;
            }
        }
        if !self.acks.is_empty() {
            self.commit(Vec::new(), true);
        }
        tracing::debug!("store writer stopped");
    }

    /// Applies `work` (and the collected acknowledgements when `with_acks`: removing rows
    /// touches other pages than appending them, so they are written in batches) in one
    /// transaction, then answers.
    fn commit(&mut self, work: Vec<Request>, with_acks: bool) {
        let durable = work.iter().any(is_durable);
        self.set_synchronous(durable);
        let acks = if with_acks {
            self.acks_since = None;
            std::mem::take(&mut self.acks)
        } else {
            Vec::new()
        };
        let mut delta = Delta::default();
        let result = self.transaction(&work, &acks, &mut delta);
        match result {
            Ok(outcomes) => {
                if self.failing {
                    self.failing = false;
                    tracing::info!("the store accepts writes again");
                }
                let counters = &self.shared.counters;
                add(&counters.queued, delta.queued);
                add(&counters.queued_bytes, delta.bytes);
                if self.sized_at.elapsed() >= SIZE_INTERVAL {
                    self.sized_at = Instant::now();
                    counters
                        .file_bytes
                        .store(super::file_bytes(&self.shared.dir), Ordering::Relaxed);
                }
                for (request, outcome) in work.into_iter().zip(outcomes) {
                    answer(request, Ok(outcome));
                }
            }
            Err(error) => {
                if !self.failing {
                    self.failing = true;
                    tracing::error!(
                        dir = %self.shared.dir.display(),
                        error = %crate::error_chain::error_chain(&error),
                        "couldn't write to the store: free space in store_dir or make it writable; calls that must store data fail with Storage until then (logged once)"
                    );
                }
                // Acknowledged rows are removed with a later transaction.
                if !acks.is_empty() {
                    self.acks.extend(acks);
                    self.acks_since = Some(Instant::now());
                }
                for request in work {
                    answer(request, Err(duplicate(&error)));
                }
            }
        }
    }

    fn transaction(
        &mut self,
        work: &[Request],
        acks: &[u64],
        delta: &mut Delta,
    ) -> Result<Vec<Outcome>, rusqlite::Error> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(work.len());
        for request in work {
            outcomes.push(apply(&transaction, &self.shared, request, delta)?);
        }
        for &seq in acks {
            remove_queued(&transaction, seq, delta)?;
        }
        transaction.commit()?;
        Ok(outcomes)
    }

    fn set_synchronous(&mut self, full: bool) {
        if self.synchronous_full == full {
            return;
        }
        let level = if full { "FULL" } else { "NORMAL" };
        match self.connection.pragma_update(None, "synchronous", level) {
            Ok(()) => self.synchronous_full = full,
            Err(error) => tracing::warn!(%error, "couldn't change the store's synchronous setting"),
        }
    }
}

fn apply(
    transaction: &Transaction<'_>,
    shared: &Shared,
    request: &Request,
    delta: &mut Delta,
) -> Result<Outcome, rusqlite::Error> {
    match request {
        Request::Append { message, .. } => {
            let queued_bytes = shared.counters.queued_bytes.load(Ordering::Relaxed) as i64;
            let bytes = (queued_bytes + delta.bytes).max(0) as u64;
            let size = message.payload.len() as u64;
            if bytes + size > shared.max_queue_bytes {
                return Ok(Outcome::Refused(StoreError::QueueFull {
                    bytes,
                    max: shared.max_queue_bytes,
                }));
            }
            let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
            insert_queued(transaction, seq, message)?;
            delta.queued += 1;
            delta.bytes += size as i64;
            Ok(Outcome::Appended(seq))
        }
        Request::PutProperty { row, .. } => {
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO properties (interface, path, ownership, major, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    row.interface,
                    row.path,
                    ownership_code(row.ownership),
                    row.major,
                    row.payload
                ])?;
            Ok(Outcome::Done)
        }
        Request::DeleteProperty {
            interface, path, ..
        } => {
            transaction
                .prepare_cached("DELETE FROM properties WHERE interface = ?1 AND path = ?2")?
                .execute(params![interface, path])?;
            Ok(Outcome::Done)
        }
        Request::DropInterface { interface, .. } => {
            transaction
                .prepare_cached("DELETE FROM properties WHERE interface = ?1")?
                .execute(params![interface])?;
            Ok(Outcome::Done)
        }
        Request::DeadLetter(seq) => {
            let moved = transaction
                .prepare_cached(
                    "INSERT INTO dead_letters (seq, interface, major, path, payload, qos, failed_at_ms)
                     SELECT seq, interface, major, path, payload, qos, ?2 FROM queue WHERE seq = ?1",
                )?
                .execute(params![*seq as i64, crate::api::now_ms()])?;
            if moved > 0 {
                remove_queued(transaction, *seq, delta)?;
            }
            Ok(Outcome::Done)
        }
        Request::Load {
            from,
            limit,
            now_ms,
            ..
        } => load(transaction, shared, *from, *limit, *now_ms, delta).map(Outcome::Loaded),
        Request::Ack(_) | Request::Stop => Ok(Outcome::Done),
    }
}

fn insert_queued(
    transaction: &Transaction<'_>,
    seq: u64,
    message: &StoredMessage,
) -> Result<(), rusqlite::Error> {
    transaction
        .prepare_cached(
            "INSERT INTO queue (seq, interface, major, path, payload, qos, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            seq as i64,
            message.interface,
            message.major,
            message.path,
            message.payload,
            message.qos,
            message.expires_at_ms
        ])?;
    Ok(())
}

fn remove_queued(
    transaction: &Transaction<'_>,
    seq: u64,
    delta: &mut Delta,
) -> Result<(), rusqlite::Error> {
    let removed: Option<i64> = transaction
        .prepare_cached("DELETE FROM queue WHERE seq = ?1 RETURNING LENGTH(payload)")?
        .query_row(params![seq as i64], |row| row.get(0))
        .optional()?;
    if let Some(bytes) = removed {
        delta.queued -= 1;
        delta.bytes -= bytes;
    }
    Ok(())
}

/// Up to `limit` rows from `from` on, in order; expired rows are removed instead.
fn load(
    transaction: &Transaction<'_>,
    shared: &Shared,
    from: u64,
    limit: usize,
    now_ms: i64,
    delta: &mut Delta,
) -> Result<Loaded, rusqlite::Error> {
    let mut rows = Vec::new();
    let mut fetched = 0;
    let mut last = None;
    let mut expired = Vec::new();
    {
        let mut select = transaction.prepare_cached(
            "SELECT seq, interface, major, path, payload, qos, expires_at_ms FROM queue WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
        )?;
        let mut cursor = select.query(params![from as i64, limit as i64])?;
        while let Some(row) = cursor.next()? {
            fetched += 1;
            let queued = QueuedRow {
                seq: row.get::<_, i64>(0)? as u64,
                message: StoredMessage {
                    interface: row.get(1)?,
                    major: row.get(2)?,
                    path: row.get(3)?,
                    payload: row.get(4)?,
                    qos: row.get(5)?,
                    expires_at_ms: row.get(6)?,
                },
            };
            last = Some(queued.seq);
            if queued
                .message
                .expires_at_ms
                .is_some_and(|deadline| deadline <= now_ms)
            {
                expired.push(queued.seq);
            } else {
                rows.push(queued);
            }
        }
    }
    if !expired.is_empty() {
        tracing::info!(
            messages = expired.len(),
            "stored messages expired before they could be sent"
        );
    }
    for seq in expired {
        remove_queued(transaction, seq, delta)?;
    }
    let more = fetched == limit;
    let seen_upto = match last {
        Some(last) if more => last,
        // Every row below the next sequence number was inserted by this thread already.
        _ => shared.next_seq.load(Ordering::Relaxed).saturating_sub(1),
    };
    Ok(Loaded {
        rows,
        seen_upto,
        more,
    })
}

fn is_durable(request: &Request) -> bool {
    match request {
        Request::Append { .. } | Request::DropInterface { .. } => true,
        Request::PutProperty { reply, .. } | Request::DeleteProperty { reply, .. } => {
            reply.is_some()
        }
        Request::Ack(_) | Request::DeadLetter(_) | Request::Load { .. } | Request::Stop => false,
    }
}

fn answer(request: Request, outcome: Result<Outcome, StoreError>) {
    let refused = |outcome: Result<Outcome, StoreError>| match outcome {
        Ok(Outcome::Refused(error)) | Err(error) => Err(error),
        Ok(outcome) => Ok(outcome),
    };
    match request {
        Request::Append { reply, .. } => {
            let _ = reply.send(refused(outcome).map(|outcome| match outcome {
                Outcome::Appended(seq) => seq,
                _ => 0,
            }));
        }
        Request::PutProperty {
            reply: Some(reply), ..
        }
        | Request::DeleteProperty {
            reply: Some(reply), ..
        }
        | Request::DropInterface { reply, .. } => {
            let _ = reply.send(refused(outcome).map(|_| ()));
        }
        Request::Load { reply, .. } => {
            let _ = reply.send(refused(outcome).map(|outcome| match outcome {
                Outcome::Loaded(loaded) => loaded,
                _ => Loaded::default(),
            }));
        }
        Request::PutProperty { reply: None, .. }
        | Request::DeleteProperty { reply: None, .. }
        | Request::Ack(_)
        | Request::DeadLetter(_)
        | Request::Stop => {}
    }
}

fn add(counter: &AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

/// SQLite errors are not `Clone`; every caller of a failed batch gets its own copy.
fn duplicate(error: &rusqlite::Error) -> StoreError {
    let code = error
        .sqlite_error()
        .copied()
        .unwrap_or_else(|| rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR));
    StoreError::Write(rusqlite::Error::SqliteFailure(
        code,
        Some(error.to_string()),
    ))
}
