//! What becomes of data in flight when a connection, or the broker's session, is lost.

use rumqttc::{Incoming, Outgoing, PubAck, PubRec};

use super::*;

#[test]
fn data_unacknowledged_when_the_broker_session_is_lost_is_sent_again_ahead_of_newer_data_in_order()
{
    let rig = Rig::new();
    for tag in 1..=3 {
        rig.queue(datum(tag, 1, Retention::Volatile));
    }
    let mut session = rig.ready_session();
    let written = rig.write(&mut session);
    rig.ack(&mut session, &written[1]);
    rig.queue(datum(4, 0, Retention::Volatile));
    session.feed();
    rig.write(&mut session);

    rig.lose(&mut session);
    rig.queue(datum(5, 1, Retention::Volatile));
    let handshake = rig.handshake(&mut session);

    assert_eq!(written_tags(&handshake), [1, 3, 5]);
}

#[test]
fn qos2_data_past_pubrec_is_not_sent_again_after_a_lost_session() {
    let rig = Rig::new();
    rig.queue(datum(1, 2, Retention::Volatile));
    rig.queue(datum(2, 2, Retention::Volatile));
    let mut session = rig.ready_session();
    let written = rig.write(&mut session);
    rig.incoming(&mut session, Incoming::PubRec(PubRec::new(written[0].pkid)));

    rig.lose(&mut session);
    let handshake = rig.handshake(&mut session);

    assert_eq!(written_tags(&handshake), [2]);
}

#[test]
fn data_not_yet_written_when_the_broker_session_is_lost_is_sent_again() {
    let rig = Rig::new();
    rig.queue(datum(1, 1, Retention::Volatile));
    let mut session = rig.ready_session();
    rig.requests(); // rumqttc drops what it had not written with the session

    rig.lose(&mut session);
    let handshake = rig.handshake(&mut session);

    assert_eq!(written_tags(&handshake), [1]);
}

#[test]
fn a_resumed_broker_session_leaves_unacknowledged_data_to_rumqttc() {
    let rig = Rig::new();
    rig.queue(datum(1, 1, Retention::Volatile));
    let mut session = rig.ready_session();
    let written = rig.write(&mut session);

    rig.lose(&mut session);
    rig.queue(datum(2, 1, Retention::Volatile));
    rig.connect(&mut session, true);
    // rumqttc sends its unacknowledged publish again, under the same packet id.
    rig.outgoing(&mut session, Outgoing::Publish(written[0].pkid));

    let requests = rig.requests();
    assert_eq!(tags(&requests), [2], "only the new message is handed over");
    rig.incoming(&mut session, Incoming::PubAck(PubAck::new(written[0].pkid)));
    rig.lose(&mut session);
    let handshake = rig.handshake(&mut session);
    assert_eq!(
        written_tags(&handshake),
        [2],
        "the retransmission was acknowledged: only the new one was unfinished"
    );
}

#[test]
fn a_publish_parked_behind_a_colliding_packet_id_is_still_itself_after_a_resumed_session() {
    let rig = Rig::new();
    for tag in 1..=3 {
        rig.queue(datum(tag, 1, Retention::Volatile));
    }
    let mut session = rig.ready_session();
    rig.requests();
    // 1 goes out as packet 1; 2 collides with it and is parked; 3 waits in the channel.
    rig.outgoing(&mut session, Outgoing::Publish(1));
    rig.outgoing(&mut session, Outgoing::AwaitAck(1));
    rig.lose(&mut session);
    rig.connect(&mut session, true);
    // rumqttc sends 1 again, then 3, which was waiting; 2 stays parked.
    rig.outgoing(&mut session, Outgoing::Publish(1));
    rig.outgoing(&mut session, Outgoing::Publish(2));
    rig.incoming(&mut session, Incoming::PubAck(PubAck::new(2)));

    rig.lose(&mut session);
    let handshake = rig.handshake(&mut session);

    assert_eq!(
        written_tags(&handshake),
        [1, 2],
        "3 was acknowledged, not 2"
    );
}
