//! The session handshake: what a fresh connection sends, in which order, and when data flows.

use rumqttc::{Incoming, PubComp, PubRec, QoS, Request};

use super::*;
use crate::data::encode_purge_list;

#[test]
fn a_fresh_connection_subscribes_first_and_sends_nothing_else_until_the_subscription_is_acknowledged()
 {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.queue(datum(1, 1, Retention::Volatile));

    rig.connect(&mut session, false);
    let written = rig.write(&mut session);

    assert_eq!(
        descriptions(&written),
        ["subscribe control/consumer/properties org.example.Commands/# org.example.Settings/#"]
    );
    let Request::Subscribe(subscribe) = &written[0].request else {
        panic!("a subscription")
    };
    assert!(
        subscribe
            .filters
            .iter()
            .all(|filter| filter.qos == QoS::AtLeastOnce),
        "server data at QoS 1 at most"
    );
    assert!(rig.requests().is_empty(), "nothing more before SUBACK");
    assert_eq!(rig.state(), AgentState::Connecting);
}

#[test]
fn after_the_subscription_the_handshake_publishes_introspection_empty_cache_purge_list_and_each_device_property()
 {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.connect(&mut session, false);
    let subscription = rig.write(&mut session);
    assert!(rig.requests().is_empty());

    rig.ack(&mut session, &subscription[0]);

    let steps = rig.requests();
    assert_eq!(
        steps.iter().map(describe).collect::<Vec<_>>(),
        [
            "introspection",
            "control/emptyCache",
            "control/producer/properties",
            "org.example.Status/a/value"
        ]
    );
    let payloads: Vec<Vec<u8>> = steps
        .iter()
        .map(|request| match request {
            Request::Publish(publish) => {
                assert_eq!(publish.qos, QoS::ExactlyOnce, "{}", describe(request));
                publish.payload.to_vec()
            }
            other => panic!("a publish, not {other:?}"),
        })
        .collect();
    assert_eq!(
        payloads,
        [
            registry().introspection().into_bytes(),
            b"1".to_vec(),
            encode_purge_list(&["org.example.Status/a/value".to_owned()]),
            encode_individual(&AstarteValue::Integer(7), None).unwrap(),
        ]
    );
}

#[test]
fn queued_data_flows_only_once_every_handshake_step_is_acknowledged_and_then_the_state_is_connected()
 {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.queue(datum(1, 1, Retention::Volatile));
    rig.connect(&mut session, false);
    let subscription = rig.write(&mut session);
    rig.ack(&mut session, &subscription[0]);
    let steps = rig.write(&mut session);
    assert_eq!(steps.len(), 4);

    for step in &steps[..3] {
        rig.ack(&mut session, step);
    }
    let last = steps[3].pkid;
    rig.incoming(&mut session, Incoming::PubRec(PubRec::new(last)));
    assert!(
        rig.requests().is_empty(),
        "the last step is received, not complete"
    );
    assert_eq!(rig.state(), AgentState::Connecting);

    rig.incoming(&mut session, Incoming::PubComp(PubComp::new(last)));
    assert_eq!(tags(&rig.requests()), [1]);
    assert_eq!(rig.state(), AgentState::Connected);
}

#[tokio::test]
async fn a_first_session_is_recorded_for_a_later_start_once_its_handshake_finished() {
    let rig = Rig::new();
    let identity = "test/dev@broker:8883";
    let record = ResumeRecord::in_dir(rig.dir.path());
    let (mut session, _driver) =
        rig.session_recording(Resume::Clean, Some((record.clone(), identity.into())));
    rig.handshake(&mut session);

    // Written by a task of its own, without holding the session up.
    let recorded = async {
        while record.take(identity).await != Resume::AfterCrash {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), recorded)
        .await
        .expect("the session record is written once the handshake finished");
}

#[test]
fn a_synced_session_found_present_is_resumed_without_a_handshake_and_sends_queued_data_at_once() {
    let rig = Rig::new();
    rig.queue(datum(1, 1, Retention::Volatile));
    let mut session = rig.session(Resume::AfterCleanStop);

    rig.connect(&mut session, true);

    assert_eq!(
        rig.requests().iter().map(describe).collect::<Vec<_>>(),
        ["org.example.Sensor/a/value"]
    );
    assert_eq!(rig.state(), AgentState::Connected);
}

#[test]
fn a_resumable_session_the_broker_no_longer_has_gets_the_full_handshake() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::AfterCleanStop);

    let written = rig.handshake(&mut session);

    assert_eq!(
        descriptions(&written)[..2],
        [
            "subscribe control/consumer/properties org.example.Commands/# org.example.Settings/#",
            "introspection"
        ]
    );
    assert_eq!(rig.state(), AgentState::Connected);
}

#[test]
fn a_session_lost_during_its_handshake_runs_it_again_even_when_the_broker_kept_it() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.connect(&mut session, false);
    let subscription = rig.write(&mut session);
    rig.ack(&mut session, &subscription[0]);
    rig.write(&mut session);

    rig.lose(&mut session);
    assert_eq!(rig.state(), AgentState::Disconnected);
    rig.connect(&mut session, true);

    assert_eq!(rig.state(), AgentState::Connecting);
    assert_eq!(
        descriptions(&rig.write(&mut session)),
        ["subscribe control/consumer/properties org.example.Commands/# org.example.Settings/#"]
    );
}

#[test]
fn a_subscription_written_before_a_loss_does_not_hold_back_the_next_handshake() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.connect(&mut session, false);
    rig.write(&mut session); // never acknowledged: rumqttc does not send it again
    rig.lose(&mut session);

    // The broker kept the session, whose handshake never finished: it runs again.
    rig.connect(&mut session, true);
    let written = rig.settle(&mut session);

    assert_eq!(written.len(), 5, "{:?}", descriptions(&written));
    assert_eq!(rig.state(), AgentState::Connected);
}

#[test]
fn a_full_handshake_drops_queued_property_messages_since_it_sends_every_current_value() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.queue(Message {
        interface: STATUS.into(),
        payload: encode_individual(&AstarteValue::Integer(6), None).unwrap(),
        is_property: true,
        ..datum(0, 2, Retention::Volatile)
    });
    rig.queue(datum(1, 1, Retention::Volatile));

    let written = rig.handshake(&mut session);

    let status: Vec<&Written> = written
        .iter()
        .filter(|written| written.describe() == "org.example.Status/a/value")
        .collect();
    assert_eq!(status.len(), 1, "{:?}", descriptions(&written));
    let Request::Publish(publish) = &status[0].request else {
        panic!("a publish")
    };
    assert_eq!(
        publish.payload.to_vec(),
        encode_individual(&AstarteValue::Integer(7), None).unwrap()
    );
    assert_eq!(written_tags(&written), [1]);
}
