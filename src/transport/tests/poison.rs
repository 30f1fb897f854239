//! A message the broker keeps refusing (it closes the connection right after it) is set
//! aside, so that it cannot wedge the queue.

use rumqttc::{Incoming, PubAck};

use super::*;

/// A ready session that delivered two messages, then wrote `poison` and one more message,
/// both unacknowledged. Returns their written forms.
fn written_after_deliveries(rig: &Rig, session: &mut Session) -> Vec<Written> {
    let delivered = rig.write(session);
    assert_eq!(written_tags(&delivered), [1, 2]);
    for written in &delivered {
        rig.ack(session, written);
    }
    session.feed();
    rig.write(session)
}

/// The broker drops the connection, then accepts the next one keeping the session.
fn lose_and_resume(rig: &Rig, session: &mut Session) {
    rig.lose(session);
    rig.connect(session, true);
}

#[tokio::test]
async fn a_stored_message_oldest_unacknowledged_at_three_consecutive_losses_moves_to_the_dead_letters()
 {
    let rig = Rig::new();
    for tag in 1..=2 {
        rig.queue_stored(tag, 1).await;
    }
    let mut session = rig.ready_session();
    let poison = rig.queue_stored(3, 1).await;
    rig.queue_stored(4, 1).await;
    assert_eq!(
        written_tags(&written_after_deliveries(&rig, &mut session)),
        [3, 4]
    );

    lose_and_resume(&rig, &mut session);
    lose_and_resume(&rig, &mut session);
    assert!(!rig.link.take_clean_request(), "two losses are not enough");
    rig.lose(&mut session);
    assert!(
        rig.link.take_clean_request(),
        "the next session starts clean, so the broker cannot hand it back"
    );
    let handshake = rig.handshake(&mut session);

    assert_eq!(written_tags(&handshake), [4]);
    drop(session);
    assert_eq!(rig.stored(), (vec![], vec![poison]));
}

#[test]
fn a_condemned_message_that_is_not_stored_is_dropped() {
    let rig = Rig::new();
    for tag in 1..=4 {
        rig.queue(datum(tag, 1, Retention::Volatile));
    }
    let mut session = rig.ready_session();
    let written = rig.write(&mut session);
    for delivered in &written[..2] {
        rig.ack(&mut session, delivered);
    }

    lose_and_resume(&rig, &mut session);
    lose_and_resume(&rig, &mut session);
    rig.lose(&mut session);
    let handshake = rig.handshake(&mut session);

    assert_eq!(written_tags(&handshake), [4]);
    assert!(rig.context.queue.is_empty());
}

#[test]
fn an_acknowledgement_of_another_message_does_not_clear_the_suspicion() {
    let rig = Rig::new();
    for tag in 1..=4 {
        rig.queue(datum(tag, 1, Retention::Volatile));
    }
    let mut session = rig.ready_session();
    let written = rig.write(&mut session);
    for delivered in &written[..2] {
        rig.ack(&mut session, delivered);
    }

    lose_and_resume(&rig, &mut session);
    lose_and_resume(&rig, &mut session);
    rig.incoming(&mut session, Incoming::PubAck(PubAck::new(written[3].pkid)));
    rig.lose(&mut session);

    assert!(rig.link.take_clean_request(), "3 is still the culprit");
}

#[test]
fn losses_with_different_oldest_messages_condemn_none() {
    let rig = Rig::new();
    for tag in 1..=4 {
        rig.queue(datum(tag, 1, Retention::Volatile));
    }
    let mut session = rig.ready_session();
    let written = rig.write(&mut session);
    rig.ack(&mut session, &written[0]);

    lose_and_resume(&rig, &mut session);
    rig.ack(&mut session, &written[1]);
    lose_and_resume(&rig, &mut session);
    rig.ack(&mut session, &written[2]);
    rig.lose(&mut session);
    let handshake = rig.handshake(&mut session);

    assert!(!rig.link.take_clean_request());
    assert_eq!(written_tags(&handshake), [4]);
}
