//! Outgoing messages waiting for the MQTT session, in the order the D-Bus calls returned.
//!
//! This is the in-memory queue of the agent core: `volatile` and `stored` datastreams and all
//! property messages wait here while the device is offline. A later version persists `stored`
//! messages in SQLite behind the same push/pop/requeue operations.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use crate::interface::Retention;

/// Most messages kept while offline; beyond it callers get [`QueueError::Full`].
pub const MAX_QUEUED_MESSAGES: usize = 10_000;
/// Most payload bytes kept while offline (RAM budget of a small board).
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// One MQTT publish towards Astarte, already validated and encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Position in the order of accepted calls; keeps order across requeues.
    pub seq: u64,
    pub interface: String,
    /// Concrete path (for an object, the common prefix), always starting with `/`.
    pub path: String,
    /// BSON payload; empty for a property unset.
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retention: Retention,
    pub expires_at: Option<Instant>,
    pub is_property: bool,
}

/// A message before the queue gives it its place in line.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub interface: String,
    pub path: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retention: Retention,
    pub expires_at: Option<Instant>,
    pub is_property: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error(
        "the outgoing queue is full ({messages} messages, {bytes} bytes): the device has been offline too long; retry later"
    )]
    Full { messages: usize, bytes: usize },
}

#[derive(Default)]
struct Inner {
    messages: VecDeque<Message>,
    bytes: usize,
    next_seq: u64,
}

/// Shared between the D-Bus face (producer) and the MQTT session (consumer).
#[derive(Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    wakeup: Notify,
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Appends a message; fails without side effects when the queue is at its limits.
    ///
    /// A property message replaces a queued one for the same property instead: only the
    /// latest state matters, so properties never fill the queue and are never refused (their
    /// new value is already stored when they get here).
    pub fn push(&self, message: NewMessage) -> Result<(), QueueError> {
        {
            let mut inner = self.lock();
            if message.is_property {
                let queued = inner.messages.iter_mut().find(|queued| {
                    queued.is_property
                        && queued.interface == message.interface
                        && queued.path == message.path
                });
                if let Some(queued) = queued {
                    let old_len = std::mem::replace(&mut queued.payload, message.payload).len();
                    let new_len = queued.payload.len();
                    inner.bytes = inner.bytes - old_len + new_len;
                    drop(inner);
                    self.wakeup.notify_one();
                    return Ok(());
                }
            }
            let full = inner.messages.len() >= MAX_QUEUED_MESSAGES
                || inner.bytes + message.payload.len() > MAX_QUEUED_BYTES;
            if full && !message.is_property {
                return Err(QueueError::Full {
                    messages: inner.messages.len(),
                    bytes: inner.bytes,
                });
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.bytes += message.payload.len();
            inner.messages.push_back(Message {
                seq,
                interface: message.interface,
                path: message.path,
                payload: message.payload,
                qos: message.qos,
                retention: message.retention,
                expires_at: message.expires_at,
                is_property: message.is_property,
            });
        }
        self.wakeup.notify_one();
        Ok(())
    }

    /// Takes the oldest message that has not expired; expired ones are dropped with a log line.
    pub fn pop(&self, now: Instant) -> Option<Message> {
        let mut inner = self.lock();
        while let Some(message) = inner.messages.pop_front() {
            inner.bytes -= message.payload.len();
            if message.expires_at.is_some_and(|deadline| deadline <= now) {
                tracing::info!(interface = %message.interface, path = %message.path, "queued message expired before it could be sent");
                continue;
            }
            return Some(message);
        }
        None
    }

    /// Puts back messages that were handed to a session that was lost, ahead of newer ones.
    pub fn requeue_front(&self, mut messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        messages.sort_by_key(|message| message.seq);
        {
            let mut inner = self.lock();
            for message in messages.into_iter().rev() {
                inner.bytes += message.payload.len();
                inner.messages.push_front(message);
            }
        }
        self.wakeup.notify_one();
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
        inner.messages.retain(|message| !drop(message));
        inner.bytes = inner
            .messages
            .iter()
            .map(|message| message.payload.len())
            .sum();
        before - inner.messages.len()
    }

    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves when a message may have been added since the last call.
    pub async fn changed(&self) {
        self.wakeup.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain data; keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message(interface: &str, retention: Retention, is_property: bool) -> NewMessage {
        NewMessage {
            interface: interface.into(),
            path: "/p".into(),
            payload: vec![1, 2, 3],
            qos: 1,
            retention,
            expires_at: None,
            is_property,
        }
    }

    #[test]
    fn messages_leave_in_the_order_they_were_accepted() {
        let queue = Queue::new();
        for name in ["a", "b", "c"] {
            queue
                .push(message(name, Retention::Volatile, false))
                .unwrap();
        }
        let now = Instant::now();
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(now))
            .map(|m| m.interface)
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn requeued_messages_go_back_ahead_of_newer_ones_in_original_order() {
        let queue = Queue::new();
        for name in ["a", "b", "c", "d"] {
            queue
                .push(message(name, Retention::Volatile, false))
                .unwrap();
        }
        let now = Instant::now();
        let a = queue.pop(now).unwrap();
        let b = queue.pop(now).unwrap();
        queue.requeue_front(vec![b, a]);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(now))
            .map(|m| m.interface)
            .collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    #[test]
    fn expired_messages_are_dropped_when_popped() {
        let queue = Queue::new();
        let now = Instant::now();
        let mut old = message("old", Retention::Volatile, false);
        old.expires_at = Some(now);
        queue.push(old).unwrap();
        queue
            .push(message("fresh", Retention::Volatile, false))
            .unwrap();
        assert_eq!(
            queue.pop(now + Duration::from_millis(1)).unwrap().interface,
            "fresh"
        );
    }

    #[test]
    fn a_full_queue_refuses_new_messages_and_keeps_the_old_ones() {
        let queue = Queue::new();
        let mut big = message("big", Retention::Volatile, false);
        big.payload = vec![0; MAX_QUEUED_BYTES];
        queue.push(big).unwrap();
        let error = queue
            .push(message("more", Retention::Volatile, false))
            .unwrap_err();
        assert!(matches!(error, QueueError::Full { messages: 1, .. }));
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn full_handshake_drops_only_property_messages() {
        let queue = Queue::new();
        queue
            .push(message("prop", Retention::Discard, true))
            .unwrap();
        queue
            .push(message("data", Retention::Volatile, false))
            .unwrap();
        assert_eq!(queue.drop_properties(), 1);
        assert_eq!(queue.pop(Instant::now()).unwrap().interface, "data");
    }

    #[test]
    fn discard_retention_is_dropped_when_offline_but_properties_are_kept() {
        let queue = Queue::new();
        queue
            .push(message("gone", Retention::Discard, false))
            .unwrap();
        queue
            .push(message("prop", Retention::Discard, true))
            .unwrap();
        queue
            .push(message("kept", Retention::Stored, false))
            .unwrap();
        assert_eq!(queue.drop_discardable(), 1);
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn a_property_change_replaces_the_queued_one_for_the_same_property() {
        let queue = Queue::new();
        let mut first = message("props", Retention::Discard, true);
        first.payload = vec![1];
        queue.push(first).unwrap();
        queue
            .push(message("data", Retention::Volatile, false))
            .unwrap();
        let mut second = message("props", Retention::Discard, true);
        second.payload = vec![2, 2];
        queue.push(second).unwrap();
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.pop(Instant::now()).unwrap().payload, [2, 2]);
    }

    #[test]
    fn property_changes_are_accepted_even_when_the_queue_is_full() {
        let queue = Queue::new();
        let mut big = message("big", Retention::Volatile, false);
        big.payload = vec![0; MAX_QUEUED_BYTES];
        queue.push(big).unwrap();
        assert!(
            queue
                .push(message("props", Retention::Discard, true))
                .is_ok()
        );
    }
}
