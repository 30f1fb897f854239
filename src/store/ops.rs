//! What each request does inside the writer's transaction: the SQL of the store.

use std::sync::atomic::Ordering;

use rusqlite::{OptionalExtension, Transaction, params};

use super::answer::{self, Aborted, Pending};
use super::schema::ownership_code;
use super::writer::Shared;
use super::{Loaded, QueuedRow, Request, StoreError, StoredMessage};

/// Changes to the shared counters, applied once the transaction committed.
#[derive(Default)]
pub(super) struct Delta {
    pub(super) queued: i64,
    pub(super) bytes: i64,
}

/// Applies one request inside the transaction; its answer is sent once the transaction's
/// fate is known. A failed statement aborts the transaction.
pub(super) fn apply(
    transaction: &Transaction<'_>,
    shared: &Shared,
    request: Request,
    delta: &mut Delta,
) -> Result<Box<dyn Pending>, Aborted> {
    match request {
        Request::Append { message, reply } => {
            let queued_bytes = shared.counters.queued_bytes.load(Ordering::Relaxed) as i64;
            let bytes = (queued_bytes + delta.bytes).max(0) as u64;
            let size = message.payload.len() as u64;
            if bytes + size > shared.max_queue_bytes {
                let full = StoreError::QueueFull {
                    bytes,
                    max: shared.max_queue_bytes,
                };
                return Ok(answer::refused(reply, full));
            }
            let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
            let inserted = insert_queued(transaction, seq, &message);
            if inserted.is_ok() {
                delta.queued += 1;
                delta.bytes += size as i64;
            }
            answer::answered(reply, inserted.map(|()| seq))
        }
        Request::PutProperty { row, reply } => {
            let put = transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO properties (interface, path, ownership, major, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        row.interface,
                        row.path,
                        ownership_code(row.ownership),
                        row.major,
                        row.payload
                    ])
                });
            answer::answered_done(reply, put.map(drop))
        }
        Request::DeleteProperty {
            interface,
            path,
            reply,
        } => {
            let deleted = transaction
                .prepare_cached("DELETE FROM properties WHERE interface = ?1 AND path = ?2")
                .and_then(|mut statement| statement.execute(params![interface, path]));
            answer::answered_done(reply, deleted.map(drop))
        }
        Request::DropInterface { interface, reply } => {
            let dropped = transaction
                .prepare_cached("DELETE FROM properties WHERE interface = ?1")
                .and_then(|mut statement| statement.execute(params![interface]));
            answer::answered(reply, dropped.map(drop))
        }
        Request::DeadLetter(seq) => {
            answer::answered_done(None, dead_letter(transaction, seq, delta))
        }
        Request::Load {
            from,
            limit,
            now_ms,
            reply,
        } => answer::answered(reply, load(transaction, shared, from, limit, now_ms, delta)),
        Request::Ledger(request) => super::ledger::apply(transaction, request),
        Request::Acks | Request::Stop => Ok(answer::done(None)),
    }
}

/// Moves a queued row to the dead letters.
fn dead_letter(
    transaction: &Transaction<'_>,
    seq: u64,
    delta: &mut Delta,
) -> Result<(), rusqlite::Error> {
    let moved = transaction
        .prepare_cached(
            "INSERT INTO dead_letters (seq, interface, major, path, payload, qos, failed_at_ms)
             SELECT seq, interface, major, path, payload, qos, ?2 FROM queue WHERE seq = ?1",
        )?
        .execute(params![seq as i64, crate::clock::now_ms()])?;
    if moved > 0 {
        remove_queued(transaction, seq, delta)?;
    }
    Ok(())
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

/// Removes acknowledged rows: one statement for every run of consecutive sequence numbers
/// (acknowledgements come in order, so a batch is mostly one run). Only consecutive numbers
/// make a run: a number in between that is not in `seqs` may be a row still in flight.
pub(super) fn remove_acknowledged(
    transaction: &Transaction<'_>,
    seqs: &[u64],
    delta: &mut Delta,
) -> Result<(), rusqlite::Error> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs = sorted.chunk_by(|a, b| b.checked_sub(*a) == Some(1));
    runs.try_for_each(|run| match run {
        [] => Ok(()),
        [seq] => remove_queued(transaction, *seq, delta),
        [first, .., last] => remove_range(transaction, *first, *last, delta),
    })
}

/// Removes the rows from `first` to `last` (both included).
fn remove_range(
    transaction: &Transaction<'_>,
    first: u64,
    last: u64,
    delta: &mut Delta,
) -> Result<(), rusqlite::Error> {
    let mut statement = transaction.prepare_cached(
        "DELETE FROM queue WHERE seq BETWEEN ?1 AND ?2 RETURNING LENGTH(payload)",
    )?;
    let mut removed = statement.query(params![first as i64, last as i64])?;
    while let Some(row) = removed.next()? {
        delta.queued -= 1;
        delta.bytes -= row.get::<_, i64>(0)?;
    }
    Ok(())
}

pub(super) fn remove_queued(
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
