//! First contact with Astarte: registration, certificate, connection and the session handshake,
//! checked on the broker's side (mosquitto's log) and on the wire (the observer).

mod common;

use astarte_sandbox::BrokerEvent;
use common::*;

fn position(events: &[BrokerEvent], what: impl Fn(&BrokerEvent) -> bool) -> usize {
    events
        .iter()
        .position(what)
        .unwrap_or_else(|| panic!("event not found in {events:#?}"))
}

fn published(topic: String) -> impl Fn(&BrokerEvent) -> bool {
    move |event| matches!(event, BrokerEvent::Publish(publish) if publish.topic == topic)
}

#[tokio::test]
async fn first_start_registers_obtains_a_certificate_and_publishes_the_handshake() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (_agent, _proxy) = env.start_connected_agent().await;

    let pairing = env.sandbox.pairing();
    assert_eq!(pairing.registrations(&env.device_id), 1);
    assert_eq!(pairing.certificate_requests(&env.device_id), 1);

    let base = env.base_topic();
    let introspection = observed(&mut observer, &base).await;
    assert_eq!(
        String::from_utf8(introspection.payload).unwrap(),
        INTROSPECTION,
        "no trailing ';', sorted"
    );
    assert_eq!(introspection.qos, 2);
    let empty_cache = observed(&mut observer, &format!("{base}/control/emptyCache")).await;
    assert_eq!(
        (empty_cache.payload.as_slice(), empty_cache.qos),
        (&b"1"[..], 2)
    );
    let purge = observed(
        &mut observer,
        &format!("{base}/control/producer/properties"),
    )
    .await;
    assert_eq!(purge.qos, 2);
    assert_eq!(
        &purge.payload[..4],
        &[0, 0, 0, 0],
        "4-byte big-endian length header"
    );
    assert!(
        astarte_sandbox::decode_purge_list(&purge.payload)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn handshake_uses_mqtt_311_and_subscribes_before_empty_cache() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (_agent, _proxy) = env.start_connected_agent().await;
    let base = env.base_topic();
    observed(
        &mut observer,
        &format!("{base}/control/producer/properties"),
    )
    .await;

    let events = env.sandbox.device_events(&base);
    let connect = position(&events, |event| {
        matches!(event, BrokerEvent::Connected { .. })
    });
    assert!(
        matches!(
            events[connect],
            BrokerEvent::Connected {
                protocol_level: 4,
                ..
            }
        ),
        "MQTT 3.1.1: {:?}",
        events[connect]
    );

    let subscriptions: Vec<(String, u8)> = events
        .iter()
        .filter_map(|event| match event {
            BrokerEvent::Subscribe { topic, qos } => Some((topic.clone(), *qos)),
            _ => None,
        })
        .collect();
    let mut expected = vec![
        (format!("{base}/control/consumer/properties"), 1),
        (format!("{base}/{SERVER_DATASTREAM}/#"), 1),
        (format!("{base}/{SERVER_OBJECT}/#"), 1),
        (format!("{base}/{SERVER_PROPERTIES}/#"), 1),
    ];
    let mut actual = subscriptions.clone();
    actual.sort();
    expected.sort();
    assert_eq!(
        actual, expected,
        "exactly the server interfaces and the consumer list, never {base}/#"
    );

    let last_subscribe = events
        .iter()
        .rposition(|event| matches!(event, BrokerEvent::Subscribe { .. }))
        .unwrap();
    let introspection = position(&events, published(base.clone()));
    let empty_cache = position(&events, published(format!("{base}/control/emptyCache")));
    let purge = position(
        &events,
        published(format!("{base}/control/producer/properties")),
    );
    assert!(
        connect < last_subscribe && last_subscribe < introspection,
        "{events:#?}"
    );
    assert!(
        introspection < empty_cache && empty_cache < purge,
        "{events:#?}"
    );
}

#[tokio::test]
async fn data_queued_while_offline_is_sent_after_the_handshake_completes() {
    let mut env = TestEnv::persistent().await;
    let mut observer = env.observer().await;
    env.sandbox.stop_broker().await;
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "disconnected", &agent).await;

    proxy
        .send(
            DEVICE_DATASTREAM,
            "/plain/value",
            &zbus::zvariant::Value::F64(1.5),
        )
        .await
        .unwrap();
    proxy
        .send(
            DEVICE_DATASTREAM,
            "/plain/value",
            &zbus::zvariant::Value::F64(2.5),
        )
        .await
        .unwrap();

    env.sandbox.start_broker().await.unwrap();
    wait_for_state(&proxy, "connected", &agent).await;
    let topic = env.topic(DEVICE_DATASTREAM, "/plain/value");
    let first = observed(&mut observer, &topic).await;
    let second = observed(&mut observer, &topic).await;
    let value = |payload: &[u8]| {
        astarte_sandbox::decode_bson(payload)
            .unwrap()
            .get_f64("v")
            .unwrap()
    };
    assert_eq!(
        (value(&first.payload), value(&second.payload)),
        (1.5, 2.5),
        "nothing lost, order kept"
    );

    let base = env.base_topic();
    let events = env.sandbox.device_events(&base);
    let purge = position(
        &events,
        published(format!("{base}/control/producer/properties")),
    );
    let data = position(&events, published(topic));
    assert!(
        purge < data,
        "application data only after the handshake: {events:#?}"
    );
}
