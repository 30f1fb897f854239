//! When a stored message counts as delivered and leaves the store: at PUBACK (QoS 1), at
//! PUBREC (QoS 2: the broker holds it from then, and a resumed session releases it), once
//! written (QoS 0); and when it can never be sent.

use rumqttc::{Incoming, PubRec};

use super::*;

#[tokio::test]
async fn a_stored_qos1_message_leaves_the_store_only_when_its_puback_arrives() {
    let rig = Rig::new();
    rig.queue_stored(1, 1).await;
    let unacknowledged = rig.queue_stored(2, 1).await;
    let mut session = rig.ready_session();
    let written = rig.write(&mut session);
    assert_eq!(written_tags(&written), [1, 2]);

    rig.ack(&mut session, &written[0]);

    drop(session);
    assert_eq!(rig.stored(), (vec![unacknowledged], vec![]));
}

#[tokio::test]
async fn a_stored_qos2_message_leaves_the_store_only_when_its_pubrec_arrives() {
    let rig = Rig::new();
    rig.queue_stored(1, 2).await;
    let unacknowledged = rig.queue_stored(2, 2).await;
    let mut session = rig.ready_session();
    let written = rig.write(&mut session);

    rig.incoming(&mut session, Incoming::PubRec(PubRec::new(written[0].pkid)));

    drop(session);
    assert_eq!(rig.stored(), (vec![unacknowledged], vec![]));
}

#[tokio::test]
async fn a_stored_qos0_message_leaves_the_store_once_written() {
    let rig = Rig::new();
    rig.queue_stored(1, 0).await;
    let mut session = rig.ready_session();
    assert_eq!(tags(&rig.requests()), [1]);
    let handed = rig.queue_stored(2, 0).await;
    session.feed();

    rig.outgoing(&mut session, Outgoing::Publish(0));

    drop(session);
    assert_eq!(rig.stored(), (vec![handed], vec![]));
}

#[tokio::test]
async fn a_stored_message_that_expired_in_the_queue_leaves_the_store_unsent() {
    let rig = Rig::new();
    let message = Message {
        expires_at_ms: Some(1),
        ..datum(1, 1, Retention::Stored)
    };
    let seq = rig.context.store.append(message.to_stored()).await.unwrap();
    rig.context.queue.push_stored(message.with_seq(seq));

    let session = rig.ready_session();

    assert!(rig.requests().is_empty());
    drop(session);
    assert_eq!(rig.stored(), (vec![], vec![]));
}

#[tokio::test]
async fn a_stored_message_of_an_interface_no_longer_declared_leaves_the_store_unsent() {
    let rig = Rig::new();
    rig.queue_stored(1, 1).await;
    rig.context.registry.replace(registry().without(SENSOR));

    let session = rig.ready_session();

    assert!(rig.requests().is_empty());
    drop(session);
    assert_eq!(rig.stored(), (vec![], vec![]));
}
