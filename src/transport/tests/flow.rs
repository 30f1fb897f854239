//! How much the session hands to rumqttc, and to which connection.

use super::*;
use crate::transport::session::MAX_OUTSTANDING;

#[test]
fn at_most_max_outstanding_requests_are_unacknowledged_and_feeding_resumes_as_acks_arrive() {
    let rig = Rig::new();
    for tag in 0..70 {
        rig.queue(datum(tag, 1, Retention::Volatile));
    }
    let mut session = rig.ready_session();

    let written = rig.write(&mut session);
    assert_eq!(written.len(), MAX_OUTSTANDING);
    assert!(rig.requests().is_empty());

    rig.ack(&mut session, &written[0]);
    rig.ack(&mut session, &written[1]);
    assert_eq!(tags(&rig.requests()), [64, 65]);
}

#[test]
fn qos0_data_makes_room_once_written() {
    let rig = Rig::new();
    for tag in 0..70 {
        rig.queue(datum(tag, 0, Retention::Volatile));
    }
    let mut session = rig.ready_session();

    let written = rig.write(&mut session);
    assert_eq!(written.len(), MAX_OUTSTANDING);
    assert_eq!(tags(&rig.requests()), (64..70).collect::<Vec<u8>>());
}

#[test]
fn queued_data_is_sent_in_order_with_its_qos() {
    let rig = Rig::new();
    for (tag, qos) in [(1, 2), (2, 0), (3, 1)] {
        rig.queue(datum(tag, qos, Retention::Volatile));
    }
    let _session = rig.ready_session();

    let qos: Vec<(u8, QoS)> = rig
        .requests()
        .iter()
        .map(|request| match request {
            Request::Publish(publish) => (publish.payload[0], publish.qos),
            other => panic!("a publish, not {other:?}"),
        })
        .collect();

    assert_eq!(
        qos,
        [
            (1, QoS::ExactlyOnce),
            (2, QoS::AtMostOnce),
            (3, QoS::AtLeastOnce)
        ]
    );
}

#[test]
fn nothing_is_fed_to_a_connection_rumqttc_has_moved_away_from() {
    let rig = Rig::new();
    let mut session = rig.ready_session();
    // rumqttc lost the connection; the session has not heard of it yet.
    rig.link.set(0);
    rig.queue(datum(1, 1, Retention::Volatile));
    session.feed();
    assert!(rig.requests().is_empty());

    // rumqttc is on a newer connection the session has not heard of either.
    rig.link.set(7);
    session.feed();
    assert!(rig.requests().is_empty());

    rig.lose(&mut session);
    rig.connect(&mut session, true);
    assert_eq!(tags(&rig.requests()), [1]);
}

#[test]
fn data_of_an_interface_no_longer_declared_in_that_major_version_is_dropped() {
    let rig = Rig::new();
    rig.queue(Message {
        major: 0,
        ..datum(1, 1, Retention::Volatile)
    });
    rig.queue(Message {
        interface: "org.example.Removed".into(),
        ..datum(2, 1, Retention::Volatile)
    });
    rig.queue(datum(3, 1, Retention::Volatile));

    let _session = rig.ready_session();

    assert_eq!(tags(&rig.requests()), [3]);
    assert!(rig.context.queue.is_empty());
}

#[test]
fn discard_retention_data_is_dropped_when_the_link_goes_down_and_volatile_data_is_kept() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::AfterCleanStop);
    rig.queue(datum(1, 1, Retention::Discard));
    rig.queue(datum(2, 1, Retention::Volatile));

    rig.lose(&mut session);
    rig.connect(&mut session, true);

    assert_eq!(tags(&rig.requests()), [2]);
}

#[test]
fn the_queue_is_online_while_a_connection_is_up() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);

    rig.connect(&mut session, false);
    assert!(rig.context.queue.is_online(), "handshaking");
    rig.lose(&mut session);
    assert!(!rig.context.queue.is_online());
}
