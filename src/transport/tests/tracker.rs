//! The tracker's counts, which decide how much the session hands over and when a handshake
//! barrier opens, and the oldest written message, which the poison detection blames.

use crate::transport::tracker::{Completed, Tag, Tracker};

use super::*;

fn data(seq: u64) -> Tag {
    Tag::Data(Message {
        seq,
        ..datum(0, 1, Retention::Volatile)
    })
}

/// Submits `tags` and has rumqttc write each as a publish with the next packet id from
/// `pkid`; returns the ids.
fn written(tracker: &mut Tracker, tags: Vec<Tag>, pkid: &mut u16) -> Vec<u16> {
    tags.into_iter()
        .map(|tag| {
            tracker.submitted(tag);
            *pkid += 1;
            tracker.on_publish_written(*pkid);
            *pkid
        })
        .collect()
}

/// Requests in every state: `handshake` of them (each a handshake step, or data when
/// false) per state, in different numbers per state so that each count shows.
fn spread(handshake: bool) -> Tracker {
    let tag = |seq| if handshake { Tag::Handshake } else { data(seq) };
    let mut tracker = Tracker::new();
    let mut pkid = 0;
    // Parked behind packet 1: 1 request.
    written(&mut tracker, vec![tag(1)], &mut pkid);
    tracker.submitted(tag(2));
    tracker.on_await_ack(1);
    // Awaiting PUBACK or PUBREC: 3 (packet 1 included).
    written(&mut tracker, vec![tag(3), tag(4)], &mut pkid);
    // Awaiting PUBCOMP: 4.
    for pkid in written(&mut tracker, (5..9).map(tag).collect(), &mut pkid) {
        tracker.on_pubrec(pkid);
    }
    // Awaiting SUBACK: 5 (subscriptions are handshake steps only).
    for _ in 0..5 {
        tracker.submitted(Tag::Handshake);
        pkid += 1;
        tracker.on_subscribe_written(pkid);
    }
    // Not written yet: 2.
    tracker.submitted(tag(14));
    tracker.submitted(tag(15));
    tracker
}

#[test]
fn outstanding_counts_every_request_not_finished_exactly_once() {
    // 2 submitted + 3 awaiting an ack + 4 awaiting PUBCOMP + 5 subscriptions + 1 parked.
    assert_eq!(spread(false).outstanding(), 15);
    assert_eq!(spread(true).outstanding(), 15);
}

#[test]
fn handshake_outstanding_counts_handshake_steps_in_every_state_and_nothing_else() {
    assert_eq!(spread(true).handshake_outstanding(), 15);
    assert_eq!(
        spread(false).handshake_outstanding(),
        5,
        "only the subscriptions are handshake steps"
    );
}

#[test]
fn the_oldest_written_data_is_the_smallest_sequence_number_written_and_not_acknowledged() {
    let mut tracker = Tracker::new();
    let mut pkid = 0;
    written(&mut tracker, vec![data(9), Tag::Handshake], &mut pkid);
    // Received by the broker (PUBREC): delivered, no longer waiting on the broker.
    let received = written(&mut tracker, vec![data(4)], &mut pkid);
    tracker.on_pubrec(received[0]);
    written(&mut tracker, vec![data(7)], &mut pkid);
    let acknowledged = written(&mut tracker, vec![data(5)], &mut pkid);
    tracker.on_puback(acknowledged[0]);
    // Not written yet: not something the broker could have refused.
    tracker.submitted(data(3));

    assert_eq!(tracker.oldest_written_data(), Some(7));
}

#[test]
fn handshake_steps_are_never_the_oldest_written_data() {
    let mut tracker = Tracker::new();
    written(&mut tracker, vec![Tag::Handshake], &mut 0);

    assert_eq!(tracker.oldest_written_data(), None);
}

#[test]
fn a_publish_written_while_another_is_parked_is_tracked_as_itself() {
    // rumqttc parks 2 behind packet 1; after a resumed session it writes 3, which was
    // waiting in its channel, before the parked one.
    let mut tracker = Tracker::new();
    tracker.submitted(data(1));
    tracker.on_publish_written(1);
    tracker.submitted(data(2));
    tracker.on_await_ack(1);
    tracker.submitted(data(3));

    tracker.on_publish_written(2);

    let Some(Completed::Data(message)) = tracker.on_puback(2) else {
        panic!("a data message")
    };
    assert_eq!(message.seq, 3);
}
