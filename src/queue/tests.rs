use super::*;
use crate::store::{Loaded, QueuedRow, StoredMessage};

fn queue() -> Queue {
    Queue::new(Arc::new(AtomicU64::new(1)), None)
}

fn message(interface: &str, retention: Retention, is_property: bool) -> Message {
    Message {
        seq: 0,
        interface: interface.into(),
        major: 0,
        path: "/p".into(),
        payload: vec![1, 2, 3],
        qos: 1,
        retention,
        expires_at_ms: None,
        is_property,
    }
}

fn stored(seq: u64) -> Message {
    message(&format!("s{seq}"), Retention::Stored, false).with_seq(seq)
}

fn row(seq: u64) -> QueuedRow {
    QueuedRow {
        seq,
        message: StoredMessage {
            interface: format!("s{seq}"),
            major: 0,
            path: "/p".into(),
            payload: vec![1],
            qos: 1,
            expires_at_ms: None,
        },
    }
}

fn drain(queue: &Queue) -> Vec<String> {
    let mut expired = Vec::new();
    std::iter::from_fn(|| queue.pop(0, &mut expired))
        .map(|m| m.interface)
        .collect()
}

#[test]
fn messages_leave_in_the_order_they_were_accepted() {
    let queue = queue();
    for name in ["a", "b", "c"] {
        queue.push(message(name, Retention::Volatile, false));
    }
    assert_eq!(drain(&queue), ["a", "b", "c"]);
}

#[test]
fn requeued_messages_go_back_ahead_of_newer_ones_in_original_order() {
    let queue = queue();
    for name in ["a", "b", "c", "d"] {
        queue.push(message(name, Retention::Volatile, false));
    }
    let mut expired = Vec::new();
    let a = queue.pop(0, &mut expired).unwrap();
    let b = queue.pop(0, &mut expired).unwrap();
    queue.requeue_front(vec![b, a]);
    assert_eq!(drain(&queue), ["a", "b", "c", "d"]);
}

#[test]
fn expired_messages_are_handed_back_instead_of_sent() {
    let queue = queue();
    let mut old = message("old", Retention::Volatile, false);
    old.expires_at_ms = Some(1_000);
    queue.push(old);
    queue.push(message("fresh", Retention::Volatile, false));
    let mut expired = Vec::new();
    assert_eq!(queue.pop(1_001, &mut expired).unwrap().interface, "fresh");
    assert_eq!(expired.len(), 1);
}

#[test]
fn volatile_overflow_drops_the_oldest_volatile_messages_and_counts_them() {
    let queue = queue();
    let mut big = message("oldest", Retention::Volatile, false);
    big.payload = vec![0; MAX_VOLATILE_BYTES];
    queue.push(big);
    queue.push(message("prop", Retention::Discard, true));
    queue.push(message("newest", Retention::Volatile, false));
    assert_eq!(queue.dropped_volatile(), 1);
    assert_eq!(drain(&queue), ["prop", "newest"]);
}

#[test]
fn full_handshake_drops_only_property_messages() {
    let queue = queue();
    queue.push(message("prop", Retention::Discard, true));
    queue.push(message("data", Retention::Volatile, false));
    assert_eq!(queue.drop_properties(), 1);
    assert_eq!(drain(&queue), ["data"]);
}

#[test]
fn discard_retention_is_dropped_when_the_link_goes_down() {
    let queue = queue();
    queue.push(message("gone", Retention::Discard, false));
    queue.push(message("prop", Retention::Discard, true));
    queue.push(message("kept", Retention::Volatile, false));
    assert_eq!(queue.drop_discardable(), 1);
    assert_eq!(drain(&queue), ["prop", "kept"]);
}

#[test]
fn a_property_change_replaces_the_queued_one_for_the_same_property() {
    let queue = queue();
    let mut first = message("props", Retention::Discard, true);
    first.payload = vec![1];
    queue.push(first);
    queue.push(message("data", Retention::Volatile, false));
    let mut second = message("props", Retention::Discard, true);
    second.payload = vec![2, 2];
    queue.push(second);
    assert_eq!(queue.len(), 2);
    let mut expired = Vec::new();
    assert_eq!(queue.pop(0, &mut expired).unwrap().payload, [2, 2]);
}

#[test]
fn a_backlog_on_disk_is_sent_before_anything_newer() {
    let next = Arc::new(AtomicU64::new(4));
    let queue = Queue::new(next, Some((1, 3)));
    queue.push(message("volatile", Retention::Volatile, false));
    let mut expired = Vec::new();
    assert!(
        queue.pop(0, &mut expired).is_none(),
        "waits for the backlog"
    );
    assert_eq!(queue.refill_needed(), Some(1));
    assert_eq!(queue.refill_needed(), None, "one refill at a time");
    queue.refill(Ok(Loaded {
        rows: vec![row(1), row(2), row(3)],
        seen_upto: 4,
        more: false,
    }));
    assert_eq!(drain(&queue), ["s1", "s2", "s3", "volatile"]);
    assert_eq!(queue.refill_needed(), None);
}

#[test]
fn stored_messages_beyond_the_window_wait_on_disk_and_come_back_in_order() {
    let queue = queue();
    for seq in 1..=(STORED_WINDOW_MESSAGES as u64 + 2) {
        queue.push_stored(stored(seq));
    }
    assert_eq!(queue.len(), STORED_WINDOW_MESSAGES);
    let mut expired = Vec::new();
    for seq in 1..=STORED_WINDOW_MESSAGES as u64 {
        assert_eq!(queue.pop(0, &mut expired).unwrap().seq, seq);
    }
    let spilled = STORED_WINDOW_MESSAGES as u64 + 1;
    assert_eq!(queue.refill_needed(), Some(spilled));
    queue.refill(Ok(Loaded {
        rows: vec![row(spilled), row(spilled + 1)],
        seen_upto: spilled + 1,
        more: false,
    }));
    assert_eq!(queue.pop(0, &mut expired).unwrap().seq, spilled);
    assert_eq!(queue.pop(0, &mut expired).unwrap().seq, spilled + 1);
    assert!(queue.is_empty());
}

#[test]
fn a_stored_message_already_read_from_disk_is_not_taken_twice() {
    let queue = Queue::new(Arc::new(AtomicU64::new(3)), Some((1, 1)));
    assert_eq!(queue.refill_needed(), Some(1));
    // The read saw row 2 too, committed while the read ran.
    queue.refill(Ok(Loaded {
        rows: vec![row(1), row(2)],
        seen_upto: 2,
        more: false,
    }));
    queue.push_stored(stored(2));
    assert_eq!(queue.len(), 2);
}

#[test]
fn a_stored_message_committed_during_a_refill_is_read_by_the_next_one() {
    let queue = Queue::new(Arc::new(AtomicU64::new(2)), Some((1, 1)));
    assert_eq!(queue.refill_needed(), Some(1));
    queue.push_stored(stored(2)); // committed after the read below
    queue.refill(Ok(Loaded {
        rows: vec![row(1)],
        seen_upto: 1,
        more: false,
    }));
    let mut expired = Vec::new();
    assert_eq!(queue.pop(0, &mut expired).unwrap().seq, 1);
    assert_eq!(queue.refill_needed(), Some(2));
}

#[test]
fn a_failed_refill_is_asked_again() {
    let queue = Queue::new(Arc::new(AtomicU64::new(2)), Some((1, 1)));
    assert_eq!(queue.refill_needed(), Some(1));
    queue.refill(Err(()));
    assert_eq!(queue.refill_needed(), Some(1));
}
