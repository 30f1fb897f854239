//! Data from Astarte to the device: signals, stored server properties, the consumer purge list,
//! and malformed input that must be dropped without disturbing the session.

mod common;
// The fuzz targets' generators and mutators, for the live-session case below.
#[allow(dead_code)]
#[path = "fuzz/mutate.rs"]
mod mutate;
#[allow(dead_code)]
#[path = "fuzz/values.rs"]
mod values;

use astarte_agent::data::{encode_individual, encode_object, encode_purge_list};
use astarte_agent::interface::MappingType;
use astarte_sandbox::BrokerEvent;
use bson::doc;
use common::proxy::DataReceivedStream;
use common::*;
use futures_util::StreamExt;
use zbus::zvariant::{OwnedValue, Value};

fn bson(document: bson::Document) -> Vec<u8> {
    document.to_vec().unwrap()
}

async fn next_data(stream: &mut DataReceivedStream) -> (String, String, OwnedValue, i64) {
    let signal = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("signal in time")
        .expect("stream open");
    let args = signal.args().unwrap();
    (
        args.interface.clone(),
        args.path.clone(),
        args.value.try_clone().unwrap(),
        args.timestamp_ms,
    )
}

#[tokio::test]
async fn server_datastream_arrives_as_a_data_received_signal() {
    let env = TestEnv::new().await;
    let observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let mut signals = proxy.receive_data_received().await.unwrap();

    observer
        .publish(
            &env.topic(SERVER_DATASTREAM, "/lamp/command"),
            bson(doc! {"v": "on"}),
            2,
        )
        .await
        .unwrap();
    let (interface, path, value, _) = next_data(&mut signals).await;
    assert_eq!(
        (interface.as_str(), path.as_str()),
        (SERVER_DATASTREAM, "/lamp/command")
    );
    assert_eq!(value, OwnedValue::try_from(Value::from("on")).unwrap());

    // Astarte may send a small longinteger as int32, and t as a datetime.
    let t = bson::DateTime::from_millis(1_700_000_000_000);
    observer
        .publish(
            &env.topic(SERVER_DATASTREAM, "/lamp/total"),
            bson(doc! {"v": 42i32, "t": t}),
            2,
        )
        .await
        .unwrap();
    let (_, path, value, timestamp) = next_data(&mut signals).await;
    assert_eq!(path, "/lamp/total");
    assert_eq!(value, OwnedValue::from(42i64));
    assert_eq!(timestamp, 1_700_000_000_000);
}

#[tokio::test]
async fn server_object_arrives_as_a_dictionary() {
    let env = TestEnv::new().await;
    let observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let mut signals = proxy.receive_data_received().await.unwrap();
    observer
        .publish(
            &env.topic(SERVER_OBJECT, "/k"),
            bson(doc! {"v": {"a": 1.5, "b": "x"}}),
            2,
        )
        .await
        .unwrap();
    let (interface, path, value, _) = next_data(&mut signals).await;
    assert_eq!((interface.as_str(), path.as_str()), (SERVER_OBJECT, "/k"));
    let object: std::collections::HashMap<String, OwnedValue> = value.try_into().unwrap();
    assert_eq!(object["a"], OwnedValue::from(1.5f64));
    assert_eq!(object["b"], OwnedValue::try_from(Value::from("x")).unwrap());
}

#[tokio::test]
async fn server_property_is_signalled_stored_and_unset() {
    let env = TestEnv::new().await;
    let observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let mut data = proxy.receive_data_received().await.unwrap();
    let mut unsets = proxy.receive_property_unset().await.unwrap();
    let topic = env.topic(SERVER_PROPERTIES, "/led/3/enabled");

    observer
        .publish(&topic, bson(doc! {"v": true}), 2)
        .await
        .unwrap();
    let (_, path, value, _) = next_data(&mut data).await;
    assert_eq!(
        (path.as_str(), value),
        ("/led/3/enabled", OwnedValue::from(true))
    );
    assert_eq!(
        proxy
            .get_property(SERVER_PROPERTIES, "/led/3/enabled")
            .await
            .unwrap(),
        OwnedValue::from(true)
    );

    observer.publish(&topic, Vec::new(), 2).await.unwrap();
    let unset = tokio::time::timeout(TIMEOUT, unsets.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unset.args().unwrap().path, "/led/3/enabled");
    assert_eq!(
        error_name(
            proxy
                .get_property(SERVER_PROPERTIES, "/led/3/enabled")
                .await
        ),
        "org.astarte_platform.Agent1.Error.NotSet"
    );
}

#[tokio::test]
async fn consumer_purge_list_removes_server_properties_it_does_not_list() {
    let env = TestEnv::new().await;
    let observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let mut data = proxy.receive_data_received().await.unwrap();
    let mut unsets = proxy.receive_property_unset().await.unwrap();
    observer
        .publish(
            &env.topic(SERVER_PROPERTIES, "/sampling"),
            bson(doc! {"v": 10}),
            2,
        )
        .await
        .unwrap();
    observer
        .publish(
            &env.topic(SERVER_PROPERTIES, "/led/1/enabled"),
            bson(doc! {"v": false}),
            2,
        )
        .await
        .unwrap();
    next_data(&mut data).await;
    next_data(&mut data).await;

    let listed = format!("{SERVER_PROPERTIES}/sampling");
    let purge = astarte_sandbox::encode_purge_list(&[listed.as_str()]);
    observer
        .publish(
            &format!("{}/control/consumer/properties", env.base_topic()),
            purge,
            2,
        )
        .await
        .unwrap();
    let unset = tokio::time::timeout(TIMEOUT, unsets.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unset.args().unwrap().path, "/led/1/enabled");
    assert_eq!(
        proxy
            .get_property(SERVER_PROPERTIES, "/sampling")
            .await
            .unwrap(),
        OwnedValue::from(10i32)
    );
    assert_eq!(
        error_name(
            proxy
                .get_property(SERVER_PROPERTIES, "/led/1/enabled")
                .await
        ),
        "org.astarte_platform.Agent1.Error.NotSet"
    );
}

#[tokio::test]
async fn malformed_server_payloads_are_dropped_without_disturbing_the_session() {
    let env = TestEnv::new().await;
    let observer = env.observer().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut data = proxy.receive_data_received().await.unwrap();
    let connected_before = connects(&env);
    let bad: Vec<(String, Vec<u8>)> = vec![
        (
            env.topic(SERVER_DATASTREAM, "/a/command"),
            b"not bson".to_vec(),
        ),
        (
            env.topic(SERVER_DATASTREAM, "/a/command"),
            bson(doc! {"v": 5}),
        ),
        (
            env.topic(SERVER_DATASTREAM, "/a/level"),
            bson(doc! {"v": 1i64 << 40}),
        ),
        (
            env.topic(SERVER_DATASTREAM, "/a/unknown"),
            bson(doc! {"v": "x"}),
        ),
        (env.topic(SERVER_DATASTREAM, "/a/command"), Vec::new()),
        (env.topic(SERVER_PROPERTIES, "/sampling"), Vec::new()),
        (
            env.topic(SERVER_OBJECT, "/k"),
            bson(doc! {"v": {"zzz": 1.0}}),
        ),
        (
            format!("{}/control/consumer/properties", env.base_topic()),
            vec![0, 0, 0, 9, 1, 2, 3],
        ),
    ];
    for (topic, payload) in bad {
        observer.publish(&topic, payload, 2).await.unwrap();
    }
    observer
        .publish(
            &env.topic(SERVER_DATASTREAM, "/a/command"),
            bson(doc! {"v": "good"}),
            2,
        )
        .await
        .unwrap();
    let (_, path, value, _) = next_data(&mut data).await;
    assert_eq!(
        (path.as_str(), value),
        (
            "/a/command",
            OwnedValue::try_from(Value::from("good")).unwrap()
        ),
        "only the valid message is delivered"
    );

    assert_eq!(
        connects(&env),
        connected_before,
        "the session was never dropped:\n{}",
        agent.log()
    );
    assert_eq!(proxy.state().await.unwrap(), "connected");
}

#[tokio::test]
async fn empty_binaryblob_on_a_server_property_is_an_unset() {
    let env = TestEnv::new().await;
    let observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let mut data = proxy.receive_data_received().await.unwrap();
    let mut unsets = proxy.receive_property_unset().await.unwrap();
    let topic = env.topic(SERVER_PROPERTIES, "/key");
    let blob = |bytes: Vec<u8>| bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes,
    };
    observer
        .publish(&topic, bson(doc! {"v": blob(vec![1, 2])}), 2)
        .await
        .unwrap();
    next_data(&mut data).await;
    observer
        .publish(&topic, bson(doc! {"v": blob(Vec::new())}), 2)
        .await
        .unwrap();
    let unset = tokio::time::timeout(TIMEOUT, unsets.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unset.args().unwrap().path, "/key");
    assert_eq!(
        error_name(proxy.get_property(SERVER_PROPERTIES, "/key").await),
        "org.astarte_platform.Agent1.Error.NotSet"
    );
}

/// Connections the broker accepted from the agent so far.
fn connects(env: &TestEnv) -> usize {
    env.sandbox
        .device_events(&env.base_topic())
        .iter()
        .filter(|e| matches!(e, BrokerEvent::Connected { .. }))
        .count()
}

/// Polls a server-owned property until it has a value (server data arrives asynchronously).
async fn wait_for_property(proxy: &DeviceProxy<'_>, interface: &str, path: &str) -> OwnedValue {
    let wait = async {
        loop {
            if let Ok(value) = proxy.get_property(interface, path).await {
                return value;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| panic!("the property never arrived"))
}

#[tokio::test]
async fn data_published_while_the_agent_was_stopped_cleanly_arrives_after_the_restart() {
    let env = TestEnv::new().await;
    let observer = env.observer().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.stop().await.success());
    assert!(env.path("store/credentials/mqtt-session").exists());
    // Astarte queues it in the device's session while the device is down (e.g. rebooting).
    observer
        .publish(
            &env.topic(SERVER_PROPERTIES, "/sampling"),
            bson(doc! {"v": 17i32}),
            1,
        )
        .await
        .unwrap();
    let (agent, proxy) = env.start_connected_agent().await;
    assert_eq!(
        wait_for_property(&proxy, SERVER_PROPERTIES, "/sampling").await,
        OwnedValue::from(17i32)
    );
    assert!(
        agent.log().contains("resuming the broker session"),
        "{}",
        agent.log()
    );
    // The clean-stop mark was consumed at start: a crash now is resumed as a crash.
    let mut agent = agent;
    agent.stop_with(nix::sys::signal::Signal::SIGKILL).await;
    let (agent, _proxy) = env.start_connected_agent().await;
    assert!(
        agent.log().contains("did not stop cleanly"),
        "{}",
        agent.log()
    );
}

#[tokio::test]
async fn data_published_while_the_agent_was_down_after_a_crash_arrives_after_the_restart() {
    let env = TestEnv::new().await;
    let observer = env.observer().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    env.wait_for_session_record().await;
    agent.stop_with(nix::sys::signal::Signal::SIGKILL).await;
    observer
        .publish(
            &env.topic(SERVER_PROPERTIES, "/sampling"),
            bson(doc! {"v": 23i32}),
            1,
        )
        .await
        .unwrap();
    let (agent, proxy) = env.start_connected_agent().await;
    assert_eq!(
        wait_for_property(&proxy, SERVER_PROPERTIES, "/sampling").await,
        OwnedValue::from(23i32)
    );
    assert!(
        agent.log().contains("did not stop cleanly"),
        "{}",
        agent.log()
    );
    let events = env.sandbox.device_events(&env.base_topic());
    let last_connect = events
        .iter()
        .rposition(|e| matches!(e, BrokerEvent::Connected { .. }))
        .unwrap();
    assert!(
        matches!(
            events[last_connect],
            BrokerEvent::Connected {
                clean_session: false,
                ..
            }
        ),
        "the session is resumed, not wiped: {events:?}"
    );
    // Before it sends anything, the agent ends every QoS 2 exchange the broker may still hold
    // from the crashed run: a new message must never be taken for an old one's duplicate.
    let after: Vec<&BrokerEvent> = events[last_connect..]
        .iter()
        .filter(|e| matches!(e, BrokerEvent::PubRel { .. } | BrokerEvent::Publish(_)))
        .collect();
    let released: Vec<u16> = after
        .iter()
        .take_while(|e| matches!(e, BrokerEvent::PubRel { .. }))
        .map(|e| match e {
            BrokerEvent::PubRel { mid } => *mid,
            _ => 0,
        })
        .collect();
    assert_eq!(released, (1..=100).collect::<Vec<u16>>(), "{after:?}");
    assert!(
        agent.log().contains("running the session handshake"),
        "the handshake runs again after a crash: {}",
        agent.log()
    );
}

#[tokio::test]
async fn fuzzed_server_messages_never_disturb_the_session() {
    let env = TestEnv::new().await;
    let observer = env.observer().await;
    let (agent, proxy) = env.start_connected_agent().await;
    proxy.add_interface(&every_type_interface()).await.unwrap();
    let mut data = proxy.receive_data_received().await.unwrap();
    let connected_before = connects(&env);
    let seed = 0x5eed_0014;
    println!("fuzzed server messages: seed {seed:#x}");
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..400 {
        let (topic, payload) = fuzzed_message(&mut rng, &env);
        let qos = rng.u8(..3);
        observer.publish(&topic, payload, qos).await.unwrap();
    }
    // Whatever the agent made of them, a valid message after them still arrives.
    let topic = env.topic(SERVER_DATASTREAM, "/after/command");
    observer
        .publish(&topic, bson(doc! {"v": "after the fuzz"}), 2)
        .await
        .unwrap();
    loop {
        let (_, path, _, _) = next_data(&mut data).await;
        if path == "/after/command" {
            break;
        }
    }
    assert_eq!(
        connects(&env),
        connected_before,
        "the session was never dropped:\n{}",
        agent.log()
    );
    assert_eq!(proxy.state().await.unwrap(), "connected");
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}

/// A server-owned datastream with one endpoint per Astarte type, `/<type name>`.
fn every_type_interface() -> String {
    let mappings: Vec<serde_json::Value> = MappingType::ALL
        .iter()
        .map(|ty| serde_json::json!({"endpoint": format!("/{}", ty.name()), "type": ty.name()}))
        .collect();
    serde_json::json!({
        "interface_name": FUZZED,
        "version_major": 0,
        "version_minor": 1,
        "type": "datastream",
        "ownership": "server",
        "mappings": mappings,
    })
    .to_string()
}

const FUZZED: &str = "org.astarte-platform.test.FuzzedServer";

/// One generated server message: a valid one for a random mapping, then (mostly) mutated:
/// bytes flipped or cut, a value of another type, a bad topic, or a broken purge list.
fn fuzzed_message(rng: &mut fastrand::Rng, env: &TestEnv) -> (String, Vec<u8>) {
    let ty = values::mapping_type(rng);
    let sent_as = if rng.u8(..4) == 0 {
        values::mapping_type(rng)
    } else {
        ty
    };
    let value = values::valid(rng, sent_as);
    let timestamp = rng.bool().then(|| rng.i64(..));
    let (topic, encoded) = match rng.u8(..4) {
        0 => {
            let second = values::valid(rng, ty);
            let topic = env.topic(SERVER_OBJECT, &format!("/{}", rng.u8(..)));
            let fields = [("a".into(), value), ("b".into(), second)];
            (topic, encode_object(&fields, timestamp))
        }
        1 => (
            format!("{}/control/consumer/properties", env.base_topic()),
            Ok(encode_purge_list(&[format!(
                "{SERVER_PROPERTIES}/sampling"
            )])),
        ),
        2 => {
            // Wildcards and control characters are not valid in a published topic: the broker
            // drops the publisher, so the agent can never receive them.
            let path: String = mutate::text(rng, &format!("/{}", ty.name()))
                .chars()
                .map(|c| {
                    if c.is_control() || c == '+' || c == '#' {
                        'x'
                    } else {
                        c
                    }
                })
                .collect();
            (
                env.topic(FUZZED, &path),
                encode_individual(&value, timestamp),
            )
        }
        _ => (
            env.topic(FUZZED, &format!("/{}", ty.name())),
            encode_individual(&value, timestamp),
        ),
    };
    let mut payload = encoded.unwrap_or_default();
    if rng.u8(..4) != 0 {
        mutate::bytes(rng, &mut payload);
    }
    // The sandbox broker, like Astarte's, drops a publisher whose packet is over 64 KiB.
    payload.truncate(60_000);
    (topic, payload)
}
