//! Interfaces added and removed over D-Bus, and properties read back: the broker hears of every
//! change without a reconnection, and everything survives a restart.

mod common;

use common::*;
use zbus::zvariant::{OwnedValue, Value};

const RUNTIME: &str = "org.astarte-platform.test.Runtime";

fn runtime_interface(major: u32, minor: u32, ownership: &str) -> String {
    format!(
        r#"{{"interface_name": "{RUNTIME}", "version_major": {major}, "version_minor": {minor},
            "type": "properties", "ownership": "{ownership}",
            "mappings": [{{"endpoint": "/%{{id}}/level", "type": "integer", "allow_unset": true}}]}}"#
    )
}

fn text(value: &str) -> OwnedValue {
    OwnedValue::try_from(Value::from(value)).unwrap()
}

#[tokio::test]
async fn an_added_interface_is_announced_without_reconnecting_and_survives_a_restart() {
    let env = TestEnv::new().await;
    let (mut agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    proxy
        .add_interface(&runtime_interface(0, 1, "device"))
        .await
        .unwrap();
    let introspection = observed(&mut observer, &env.base_topic()).await;
    let mut entries: Vec<String> = String::from_utf8(introspection.payload)
        .unwrap()
        .split(';')
        .map(str::to_owned)
        .collect();
    let mut expected: Vec<String> = INTROSPECTION.split(';').map(str::to_owned).collect();
    expected.push(format!("{RUNTIME}:0:1"));
    entries.sort();
    expected.sort();
    assert_eq!(entries, expected);
    proxy
        .set_property(RUNTIME, "/a/level", &Value::I32(3))
        .await
        .unwrap();
    observed(&mut observer, &env.topic(RUNTIME, "/a/level")).await;
    assert!(
        !agent.log().contains("connection to the broker lost"),
        "no reconnection:\n{}",
        agent.log()
    );
    assert!(agent.stop().await.success());

    let (_agent, proxy) = env.start_connected_agent().await;
    assert!(
        proxy
            .interfaces()
            .await
            .unwrap()
            .contains(&format!("{RUNTIME}:0:1"))
    );
    assert_eq!(
        proxy.get_property(RUNTIME, "/a/level").await.unwrap(),
        OwnedValue::from(3i32)
    );
}

#[tokio::test]
async fn a_new_server_owned_interface_is_subscribed_and_its_data_arrives() {
    let env = TestEnv::new().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let observer = env.observer().await;
    let mut changes = proxy.receive_interfaces_changed().await;
    proxy
        .add_interface(&runtime_interface(0, 1, "server"))
        .await
        .unwrap();
    let _ = tokio::time::timeout(TIMEOUT, futures_util::StreamExt::next(&mut changes)).await;
    let payload = bson::doc! { "v": 9 }.to_vec().unwrap();
    let topic = env.topic(RUNTIME, "/x/level");
    // The subscription goes out right after the change; retry until the value is stored.
    let arrived = async {
        loop {
            observer.publish(&topic, payload.clone(), 2).await.unwrap();
            if let Ok(value) = proxy.get_property(RUNTIME, "/x/level").await {
                return value;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let value = tokio::time::timeout(TIMEOUT, arrived)
        .await
        .expect("server data arrives");
    assert_eq!(value, OwnedValue::from(9i32));
    assert_eq!(
        proxy.list_properties(RUNTIME).await.unwrap(),
        [("/x/level".to_owned(), OwnedValue::from(9i32))].into()
    );
}

#[tokio::test]
async fn a_new_major_version_replaces_the_interface_and_drops_its_old_properties() {
    let env = TestEnv::new().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    proxy
        .add_interface(&runtime_interface(0, 1, "device"))
        .await
        .unwrap();
    proxy
        .set_property(RUNTIME, "/a/level", &Value::I32(1))
        .await
        .unwrap();
    proxy
        .add_interface(&runtime_interface(0, 2, "device"))
        .await
        .unwrap();
    assert_eq!(
        proxy.get_property(RUNTIME, "/a/level").await.unwrap(),
        OwnedValue::from(1i32),
        "a newer minor keeps the properties"
    );
    proxy
        .add_interface(&runtime_interface(1, 0, "device"))
        .await
        .unwrap();
    assert_eq!(
        error_name(proxy.get_property(RUNTIME, "/a/level").await),
        "org.astarte_platform.Agent1.Error.NotSet"
    );
    assert!(
        proxy
            .interfaces()
            .await
            .unwrap()
            .contains(&format!("{RUNTIME}:1:0"))
    );
    assert_eq!(
        error_name(
            proxy
                .add_interface(&runtime_interface(1, 0, "server"))
                .await
        ),
        "org.astarte_platform.Agent1.Error.InvalidInterface",
        "a change needs a higher version"
    );
}

#[tokio::test]
async fn removing_interfaces_follows_where_they_come_from() {
    let env = TestEnv::new().await;
    let (mut agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    proxy
        .add_interface(&runtime_interface(0, 1, "device"))
        .await
        .unwrap();
    observed(&mut observer, &env.base_topic()).await;
    proxy.remove_interface(RUNTIME).await.unwrap();
    let introspection = observed(&mut observer, &env.base_topic()).await;
    assert_eq!(
        String::from_utf8(introspection.payload).unwrap(),
        INTROSPECTION
    );
    assert_eq!(
        error_name(proxy.remove_interface(DEVICE_PROPERTIES).await),
        "org.astarte_platform.Agent1.Error.InterfaceNotRemovable"
    );
    assert_eq!(
        error_name(proxy.remove_interface(RUNTIME).await),
        "org.astarte_platform.Agent1.Error.UnknownInterface"
    );
    assert!(agent.stop().await.success());
    let (_agent, proxy) = env.start_connected_agent().await;
    assert!(
        !proxy
            .interfaces()
            .await
            .unwrap()
            .iter()
            .any(|entry| entry.starts_with(RUNTIME)),
        "a removed interface stays removed"
    );
}

#[tokio::test]
async fn an_invalid_interface_is_refused_with_the_validation_message() {
    let env = TestEnv::new().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let refused = proxy
        .add_interface(
            r#"{"interface_name": "org.example.Bad", "version_major": 0, "version_minor": 0}"#,
        )
        .await;
    match refused {
        Err(zbus::Error::MethodError(name, Some(message), _)) => {
            assert_eq!(
                name.as_str(),
                "org.astarte_platform.Agent1.Error.InvalidInterface"
            );
            assert!(message.contains("invalid interface"), "{message}");
        }
        other => panic!("expected InvalidInterface, got {other:?}"),
    }
    assert_eq!(
        error_name(proxy.add_interface("not json").await),
        "org.astarte_platform.Agent1.Error.InvalidInterface"
    );
}

#[tokio::test]
async fn setting_a_property_to_its_value_sends_nothing_and_list_properties_shows_values() {
    let env = TestEnv::new().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    let topic = env.topic(DEVICE_PROPERTIES, "/name");
    for value in ["a", "a", "b"] {
        proxy
            .set_property(DEVICE_PROPERTIES, "/name", &Value::from(value))
            .await
            .unwrap();
    }
    let first = observed(&mut observer, &topic).await;
    let second = observed(&mut observer, &topic).await;
    let decoded = |payload: &[u8]| {
        astarte_sandbox::decode_bson(payload)
            .unwrap()
            .get_str("v")
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (decoded(&first.payload), decoded(&second.payload)),
        ("a".into(), "b".into())
    );
    assert_eq!(
        proxy.list_properties(DEVICE_PROPERTIES).await.unwrap(),
        [("/name".to_owned(), text("b"))].into()
    );
    assert_eq!(
        error_name(proxy.list_properties(DEVICE_DATASTREAM).await),
        "org.astarte_platform.Agent1.Error.WrongInterfaceType"
    );
}

#[tokio::test]
async fn sighup_reloads_interfaces_dir_and_a_broken_configuration_changes_nothing() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let env = TestEnv::new().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    let hangup = || kill(Pid::from_raw(agent.pid() as i32), Signal::SIGHUP).unwrap();

    std::fs::write(
        env.path(&format!("interfaces/{RUNTIME}.json")),
        runtime_interface(0, 1, "device"),
    )
    .unwrap();
    hangup();
    let introspection = observed(&mut observer, &env.base_topic()).await;
    assert!(
        String::from_utf8(introspection.payload)
            .unwrap()
            .split(';')
            .any(|entry| entry == format!("{RUNTIME}:0:1")),
        "the new interface is announced"
    );
    proxy
        .set_property(RUNTIME, "/a/level", &Value::I32(5))
        .await
        .unwrap();
    assert_eq!(
        error_name(proxy.remove_interface(RUNTIME).await),
        "org.astarte_platform.Agent1.Error.InterfaceNotRemovable",
        "it comes from interfaces_dir now"
    );

    std::fs::write(env.config_path(), "realm = [broken").unwrap();
    hangup();
    agent.wait_for_log("reload failed").await;
    assert_eq!(proxy.state().await.unwrap(), "connected");
    assert_eq!(
        proxy.get_property(RUNTIME, "/a/level").await.unwrap(),
        OwnedValue::from(5i32),
        "the running interfaces stay"
    );
}
