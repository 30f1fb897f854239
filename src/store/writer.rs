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

use rusqlite::{Connection, TransactionBehavior};

use super::answer::{Aborted, Pending};
use super::ops::{Delta, apply, remove_acknowledged};
use super::{Counters, PendingAcks, Request, StoreError, lock};

/// Most requests applied in one transaction.
const MAX_BATCH: usize = 1024;
/// Acknowledgements collected before they are written on their own.
pub(super) const ACK_BATCH: usize = 256;
/// Longest wait before collected acknowledgements are written on their own.
pub(super) const ACK_DELAY: Duration = Duration::from_millis(500);
/// After a request that must be durable arrives, the writer sleeps this long while more
/// requests keep arriving, and takes them all, so concurrent callers share one commit and one
/// fsync. Sleeping (rather than waiting on the channel) costs one wake-up per step instead of
/// one per request: callers do not wake a writer that sleeps...
const GATHER_STEP: Duration = Duration::from_micros(250);
/// ...for at most this long in all.
const GATHER_MAX: Duration = Duration::from_millis(2);
/// The writer's stack: SQLite's deepest statements here (inserts, range deletes, the
/// migrations) use a few tens of KiB.
const WRITER_STACK: usize = 256 * 1024;
/// How often the size of the database files is read again.
const SIZE_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct Shared {
    pub next_seq: Arc<AtomicU64>,
    pub counters: Arc<Counters>,
    pub max_queue_bytes: u64,
    pub dir: PathBuf,
    /// Acknowledged rows not yet removed (filled by `Store::ack`).
    pub acks: Arc<std::sync::Mutex<PendingAcks>>,
}

pub(super) fn spawn(
    connection: Connection,
    receiver: Receiver<Request>,
    shared: Shared,
) -> std::io::Result<crate::tasks::Worker> {
    let writer = Writer {
        connection,
        receiver,
        shared,
        failing: false,
        synchronous_full: true,
        sized_at: Instant::now(),
    };
    crate::tasks::spawn_thread_with_stack("store-writer", WRITER_STACK, move || writer.run())
}

struct Writer {
    connection: Connection,
    receiver: Receiver<Request>,
    shared: Shared,
    /// The last transaction failed: an episode is under way (logged once).
    failing: bool,
    synchronous_full: bool,
    /// When the size of the database files was last read.
    sized_at: Instant,
}

impl Writer {
    fn run(mut self) {
        loop {
            let acks_since = lock(&self.shared.acks).since;
            let first = match acks_since {
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
                    Some(Request::Acks) => {}
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
                        std::thread::sleep(GATHER_STEP);
                        match self.receiver.try_recv() {
                            Ok(request) => Some(request),
                            Err(_) => break,
                        }
                    }
                    Err(_) => break,
                };
            }
            let (acks_due, has_acks) = {
                let pending = lock(&self.shared.acks);
                let due = stop
                    || pending.seqs.len() >= ACK_BATCH
                    || pending
                        .since
                        .is_some_and(|since| since.elapsed() >= ACK_DELAY);
                (due, !pending.seqs.is_empty())
            };
            if !work.is_empty() || (acks_due && has_acks) {
                self.commit(work, acks_due);
            }
            if stop {
                break;
            }
        }
        if !lock(&self.shared.acks).seqs.is_empty() {
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
            let mut pending = lock(&self.shared.acks);
            pending.since = None;
            std::mem::take(&mut pending.seqs)
        } else {
            Vec::new()
        };
        let mut delta = Delta::default();
        match self.transaction(work, &acks, &mut delta) {
            Ok(answers) => {
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
                for answer in answers {
                    answer.committed();
                }
            }
            Err(failed) => {
                if !self.failing {
                    self.failing = true;
                    tracing::error!(
                        dir = %self.shared.dir.display(),
                        error = %crate::error_chain::error_chain(&failed.error),
                        "couldn't write to the store: free space in store_dir or make it writable; calls that must store data fail with Storage until then (logged once)"
                    );
                }
                // Acknowledged rows are removed with a later transaction.
                if !acks.is_empty() {
                    let mut pending = lock(&self.shared.acks);
                    pending.seqs.extend(acks);
                    pending.since = Some(Instant::now());
                }
                failed.answer_all();
            }
        }
    }

    /// One transaction: every request of `work`, then the acknowledged rows.
    fn transaction(
        &mut self,
        work: Vec<Request>,
        acks: &[u64],
        delta: &mut Delta,
    ) -> Result<Vec<Box<dyn Pending>>, Box<Failed>> {
        let transaction = match self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(transaction) => transaction,
            Err(error) => return Err(Box::new(Failed::before(error, work))),
        };
        let mut answers = Vec::with_capacity(work.len());
        let mut work = work.into_iter();
        while let Some(request) = work.next() {
            match apply(&transaction, &self.shared, request, delta) {
                Ok(answer) => answers.push(answer),
                Err(aborted) => {
                    return Err(Box::new(Failed::during(aborted, answers, work.collect())));
                }
            }
        }
        let finished =
            remove_acknowledged(&transaction, acks, delta).and_then(|()| transaction.commit());
        match finished {
            Ok(()) => Ok(answers),
            Err(error) => Err(Box::new(Failed {
                error,
                applied: answers,
                aborted: None,
                unapplied: Vec::new(),
            })),
        }
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

fn is_durable(request: &Request) -> bool {
    match request {
        Request::Append { .. } | Request::DropInterface { .. } => true,
        Request::PutProperty { reply, .. } | Request::DeleteProperty { reply, .. } => {
            reply.is_some()
        }
        Request::Ledger(request) => request.is_durable(),
        Request::Acks | Request::DeadLetter(_) | Request::Load { .. } | Request::Stop => false,
    }
}

/// A transaction that failed, with every caller still to be told.
struct Failed {
    error: rusqlite::Error,
    /// Requests applied before the failure.
    applied: Vec<Box<dyn Pending>>,
    /// The request whose statement failed.
    aborted: Option<Box<dyn FnOnce(StoreError) + Send>>,
    /// Requests never applied.
    unapplied: Vec<Request>,
}

impl Failed {
    /// The transaction could not even begin.
    fn before(error: rusqlite::Error, work: Vec<Request>) -> Failed {
        Failed {
            error,
            applied: Vec::new(),
            aborted: None,
            unapplied: work,
        }
    }

    fn during(aborted: Aborted, applied: Vec<Box<dyn Pending>>, unapplied: Vec<Request>) -> Failed {
        Failed {
            error: aborted.error,
            applied,
            aborted: aborted.fail,
            unapplied,
        }
    }

    /// Every caller of the transaction gets its error.
    fn answer_all(self) {
        for answer in self.applied {
            answer.failed(duplicate(&self.error));
        }
        if let Some(fail) = self.aborted {
            fail(duplicate(&self.error));
        }
        for request in self.unapplied {
            request.fail(duplicate(&self.error));
        }
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
