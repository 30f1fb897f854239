//! Interfaces added or removed while the agent runs are announced to the broker.

use std::sync::Arc;

use rumqttc::Request;

use super::*;
use crate::transport::session::MAX_OUTSTANDING;

const CONFIG: &str = "org.example.Config";

/// The interfaces change: one more server-owned interface.
fn add_server_owned(rig: &Rig) -> Registry {
    let changed = registry().with(Arc::new(interface(
        CONFIG,
        "properties",
        "server",
        "integer",
    )));
    rig.context.registry.replace(changed.clone());
    changed
}

fn payload(request: &Request) -> Vec<u8> {
    match request {
        Request::Publish(publish) => publish.payload.to_vec(),
        other => panic!("a publish, not {other:?}"),
    }
}

#[test]
fn interfaces_changed_while_ready_subscribe_new_server_owned_interfaces_then_publish_the_introspection_before_further_data()
 {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.handshake(&mut session);

    let changed = add_server_owned(&rig);
    session.on_interfaces_changed();
    rig.queue(datum(1, 1, Retention::Volatile));
    session.feed();

    let requests = rig.requests();
    assert_eq!(
        requests.iter().map(describe).collect::<Vec<_>>(),
        [
            "subscribe org.example.Config/#",
            "introspection",
            "org.example.Sensor/a/value"
        ]
    );
    assert_eq!(payload(&requests[1]), changed.introspection().into_bytes());
}

#[test]
fn interfaces_changed_without_a_new_server_owned_one_only_publish_the_introspection() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.handshake(&mut session);

    let changed = registry().without(SENSOR);
    rig.context.registry.replace(changed.clone());
    session.on_interfaces_changed();
    session.feed();

    let requests = rig.requests();
    assert_eq!(
        requests.iter().map(describe).collect::<Vec<_>>(),
        ["introspection"]
    );
    assert_eq!(payload(&requests[0]), changed.introspection().into_bytes());
}

#[test]
fn interfaces_changed_while_down_are_announced_when_the_session_is_resumed() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.handshake(&mut session);
    rig.lose(&mut session);

    add_server_owned(&rig);
    session.on_interfaces_changed();
    rig.connect(&mut session, true);

    assert_eq!(
        rig.requests().iter().map(describe).collect::<Vec<_>>(),
        ["subscribe org.example.Config/#", "introspection"]
    );
}

#[test]
fn announcements_count_against_the_limit_of_unacknowledged_requests() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.handshake(&mut session);
    for tag in 0..MAX_OUTSTANDING as u8 {
        rig.queue(datum(tag, 1, Retention::Volatile));
    }
    session.feed();
    let written = rig.write(&mut session);

    add_server_owned(&rig);
    session.on_interfaces_changed();
    session.feed();
    assert!(rig.requests().is_empty());

    rig.ack(&mut session, &written[0]);
    assert_eq!(
        rig.requests().iter().map(describe).collect::<Vec<_>>(),
        ["subscribe org.example.Config/#"]
    );
}
