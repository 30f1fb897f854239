//! Outgoing messages waiting for the MQTT session, in the order the D-Bus calls returned.
//!
//! Everything the session sends comes from here, in sequence order. `volatile` and `discard`
//! datastreams and property messages live only in memory. `stored` messages are on disk
//! first (the store) and join this queue once committed; only a window of them is kept in
//! memory. When the stored backlog is larger than the window, the rest stays on disk
//! ("spilled") and the session asks the store to refill the window as it drains; nothing
//! newer is sent before the spilled backlog, so order holds across outages and restarts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::interface::Retention;
use crate::store::Loaded;

pub use message::Message;
pub use refill::refill;

/// Most non-stored datastream messages kept in memory while offline.
pub const MAX_VOLATILE_MESSAGES: usize = 10_000;
/// Most payload bytes of non-stored datastream messages kept in memory while offline.
pub const MAX_VOLATILE_BYTES: usize = 4 * 1024 * 1024;
/// Stored messages kept in memory at most; the rest waits on disk.
pub const STORED_WINDOW_MESSAGES: usize = 512;
pub const STORED_WINDOW_BYTES: usize = 512 * 1024;
/// Rows read from disk per refill.
pub const REFILL_ROWS: usize = 256;

#[derive(Default)]
struct Inner {
    messages: VecDeque<Message>,
    volatile_count: usize,
    volatile_bytes: usize,
    stored_count: usize,
    stored_bytes: usize,
    /// The lowest sequence number of stored rows that are only on disk.
    spilled_from: Option<u64>,
    /// The highest sequence number of a stored row that was not taken into memory.
    spilled_max: u64,
    /// Every stored row up to this sequence number has been read from disk already.
    loaded_upto: u64,
    refill_requested: bool,
    /// Volatile messages dropped to make room since the queue last had room.
    overflowing: bool,
}

/// Shared between the API (producer) and the MQTT session (consumer).
pub struct Queue {
    inner: Mutex<Inner>,
    /// Wakes the session: a message may have arrived.
    wakeup: Notify,
    /// Wakes the refill task: the window may need rows from disk.
    refill_wakeup: Notify,
    next_seq: Arc<AtomicU64>,
    online: AtomicBool,
    dropped_volatile: AtomicU64,
}

impl Queue {
    /// A queue whose sequence numbers come from `next_seq` (shared with the store), with
    /// `backlog` (first and last sequence number) of stored rows waiting on disk.
    pub fn new(next_seq: Arc<AtomicU64>, backlog: Option<(u64, u64)>) -> Queue {
        let inner = Inner {
            spilled_from: backlog.map(|(first, _)| first),
            spilled_max: backlog.map(|(_, last)| last).unwrap_or(0),
            ..Inner::default()
        };
        Queue {
            inner: Mutex::new(inner),
            wakeup: Notify::new(),
            refill_wakeup: Notify::new(),
            next_seq,
            online: AtomicBool::new(false),
            dropped_volatile: AtomicU64::new(0),
        }
    }

    /// Whether a connection to the broker is up (the handshake may still be running).
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Release);
    }

    /// Volatile messages dropped because the in-memory queue was full, since start.
    pub fn dropped_volatile(&self) -> u64 {
        self.dropped_volatile.load(Ordering::Relaxed)
    }

    /// Appends a message that lives only in memory (anything but a stored datastream), giving
    /// it its place in line (its `seq` is ignored).
    ///
    /// A property message replaces a queued one for the same property: only the latest state
    /// matters, so properties never fill the queue. When non-stored datastream messages
    /// exceed their limits, the oldest of them are dropped (and counted).
    pub fn push(&self, message: Message) {
        {
            let mut inner = self.lock();
            if message.is_property {
                let queued = inner.messages.iter_mut().find(|queued| {
                    queued.is_property
                        && queued.interface == message.interface
                        && queued.path == message.path
                });
                if let Some(queued) = queued {
                    queued.payload = message.payload;
                    queued.major = message.major;
                    drop(inner);
                    self.notify_changed();
                    return;
                }
            }
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            let message = message.with_seq(seq);
            if message.is_volatile() {
                self.make_room(&mut inner, message.payload.len());
            }
            inner.insert(message);
        }
        self.notify_changed();
    }

    /// Takes a stored message that was just committed to disk into memory, unless the
    /// window is full (it then waits on disk).
    pub fn push_stored(&self, message: Message) {
        {
            let mut inner = self.lock();
            if message.seq <= inner.loaded_upto {
                return; // already read from disk
            }
            let full = inner.stored_count >= STORED_WINDOW_MESSAGES
                || inner.stored_bytes + message.payload.len() > STORED_WINDOW_BYTES;
            if inner.spilled_from.is_some() || full {
                inner.spilled_from.get_or_insert(message.seq);
                inner.spilled_max = inner.spilled_max.max(message.seq);
                drop(inner);
                self.refill_wakeup.notify_one();
                return;
            }
            inner.insert(message);
        }
        self.notify_changed();
    }

    /// Takes the oldest message that has not expired; expired ones are dropped with a log
    /// line and returned in `expired` (stored ones must be removed from disk). Returns
    /// `None` while the next message in line is still on disk.
    pub fn pop(&self, now_ms: i64, expired: &mut Vec<Message>) -> Option<Message> {
        let mut inner = self.lock();
        if inner.spilled_from.is_some() {
            // The window drains: the refill task looks whether it is time to read on.
            self.refill_wakeup.notify_one();
        }
        loop {
            let front = inner.messages.front()?;
            if inner
                .spilled_from
                .is_some_and(|spilled| front.seq > spilled)
            {
                return None;
            }
            let message = inner.take_front()?;
            if message
                .expires_at_ms
                .is_some_and(|deadline| deadline <= now_ms)
            {
                tracing::info!(interface = %message.interface, path = %message.path, "queued message expired before it could be sent");
                expired.push(message);
                continue;
            }
            return Some(message);
        }
    }

    /// The sequence number to read from disk from, when the window should be refilled now
    /// (at most one refill at a time).
    fn refill_needed(&self) -> Option<u64> {
        let mut inner = self.lock();
        let spilled = inner.spilled_from?;
        if inner.refill_requested {
            return None;
        }
        let window_low = inner.stored_count < STORED_WINDOW_MESSAGES / 2
            && inner.stored_bytes < STORED_WINDOW_BYTES / 2;
        let blocked = inner
            .messages
            .front()
            .is_none_or(|front| front.seq > spilled);
        if !(window_low || blocked) {
            return None;
        }
        inner.refill_requested = true;
        Some(spilled)
    }

    /// Takes rows read from disk into memory.
    pub fn refill(&self, loaded: Result<Loaded, ()>) {
        {
            let mut inner = self.lock();
            inner.refill_requested = false;
            let Ok(loaded) = loaded else {
                return; // retried at the next refill_needed
            };
            for row in loaded.rows {
                if row.seq <= inner.loaded_upto {
                    continue;
                }
                inner.insert(Message::from_row(row));
            }
            inner.loaded_upto = inner.loaded_upto.max(loaded.seen_upto);
            inner.spilled_from = if loaded.more || inner.spilled_max > inner.loaded_upto {
                Some(inner.loaded_upto + 1)
            } else {
                None
            };
        }
        self.notify_changed();
    }

    /// Puts back messages that were handed to a session that was lost, ahead of newer ones.
    pub fn requeue_front(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        {
            let mut inner = self.lock();
            for message in messages {
                inner.insert(message);
            }
        }
        self.notify_changed();
    }

    /// Drops queued property messages: a full handshake resends every property's current value.
    pub fn drop_properties(&self) -> usize {
        self.drop_where(|message| message.is_property)
    }

    /// Drops queued `discard` datastreams: they are sent now or never.
    pub fn drop_discardable(&self) -> usize {
        self.drop_where(|message| !message.is_property && message.retention == Retention::Discard)
    }

    fn drop_where(&self, drop: impl Fn(&Message) -> bool) -> usize {
        let mut inner = self.lock();
        let before = inner.messages.len();
        let kept: VecDeque<Message> = std::mem::take(&mut inner.messages)
            .into_iter()
            .filter(|message| !drop(message))
            .collect();
        let dropped = before - kept.len();
        inner.messages = VecDeque::new();
        inner.volatile_count = 0;
        inner.volatile_bytes = 0;
        inner.stored_count = 0;
        inner.stored_bytes = 0;
        for message in kept {
            inner.insert(message);
        }
        dropped
    }

    /// Messages held in memory.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Non-stored datastream messages held in memory.
    pub fn volatile_len(&self) -> usize {
        self.lock().volatile_count
    }

    pub fn is_empty(&self) -> bool {
        let inner = self.lock();
        inner.messages.is_empty() && inner.spilled_from.is_none()
    }

    /// Resolves when a message may have been added since the last call.
    pub async fn changed(&self) {
        self.wakeup.notified().await
    }

    /// Wakes the session (a message may be there) and the refill task (the window changed).
    fn notify_changed(&self) {
        self.wakeup.notify_one();
        self.refill_wakeup.notify_one();
    }

    /// Drops the oldest non-stored datastream messages until `incoming` more bytes fit.
    fn make_room(&self, inner: &mut Inner, incoming: usize) {
        let mut dropped = 0;
        while inner.volatile_count >= MAX_VOLATILE_MESSAGES
            || (inner.volatile_count > 0 && inner.volatile_bytes + incoming > MAX_VOLATILE_BYTES)
        {
            let Some(index) = inner.messages.iter().position(Message::is_volatile) else {
                break;
            };
            if let Some(message) = inner.messages.remove(index) {
                inner.account(&message, -1);
                dropped += 1;
            }
        }
        if dropped > 0 {
            let total = self.dropped_volatile.fetch_add(dropped, Ordering::Relaxed) + dropped;
            if !inner.overflowing {
                inner.overflowing = true;
                tracing::warn!(
                    dropped_total = total,
                    "the in-memory queue for volatile data is full: dropping the oldest volatile messages (use retention stored for data that must survive long outages)"
                );
            }
        } else {
            inner.overflowing = false;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain data; keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Inserts in sequence order (almost always at the back).
    fn insert(&mut self, message: Message) {
        self.account(&message, 1);
        let at = match self.messages.back() {
            Some(back) if back.seq > message.seq => self
                .messages
                .partition_point(|queued| queued.seq < message.seq),
            _ => self.messages.len(),
        };
        self.messages.insert(at, message);
    }

    fn take_front(&mut self) -> Option<Message> {
        let message = self.messages.pop_front()?;
        self.account(&message, -1);
        Some(message)
    }

    fn account(&mut self, message: &Message, sign: i8) {
        let (count, bytes) = if message.is_stored() {
            (&mut self.stored_count, &mut self.stored_bytes)
        } else if message.is_volatile() {
            (&mut self.volatile_count, &mut self.volatile_bytes)
        } else {
            return;
        };
        if sign > 0 {
            *count += 1;
            *bytes += message.payload.len();
        } else {
            *count = count.saturating_sub(1);
            *bytes = bytes.saturating_sub(message.payload.len());
        }
    }
}

mod message;
mod refill;
#[cfg(test)]
mod tests;
