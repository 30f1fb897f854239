//! Retention from outside: volatile data waits in memory, discard data only goes out while a
//! connection is up, and the session keeps going whatever the D-Bus side does.

mod common;

use common::*;
use zbus::zvariant::Value;

const VOLATILE: &str = "/plain/value";

fn double(message: &astarte_sandbox::Observed) -> f64 {
    astarte_sandbox::decode_bson(&message.payload)
        .unwrap()
        .get_f64("v")
        .unwrap()
}

#[tokio::test]
async fn volatile_data_survives_a_reconnection_but_not_a_restart() {
    let mut env = TestEnv::persistent().await;
    let (mut agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    let topic = env.topic(DEVICE_DATASTREAM, VOLATILE);

    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    proxy
        .send(DEVICE_DATASTREAM, VOLATILE, &Value::F64(1.0))
        .await
        .unwrap();
    env.sandbox.start_broker().await.unwrap();
    assert_eq!(double(&observed(&mut observer, &topic).await), 1.0);

    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    proxy
        .send(DEVICE_DATASTREAM, VOLATILE, &Value::F64(2.0))
        .await
        .unwrap();
    assert!(agent.stop().await.success());
    assert!(
        agent
            .log()
            .contains("volatile messages held in memory; they are lost"),
        "{}",
        agent.log()
    );
    env.sandbox.start_broker().await.unwrap();
    let (_agent, proxy) = env.start_connected_agent().await;
    proxy
        .send(DEVICE_DATASTREAM, VOLATILE, &Value::F64(3.0))
        .await
        .unwrap();
    // The broker's persistence may replay 1.0 to the observer after its restart; what matters
    // is that 2.0, held in the stopped agent's memory, never arrives.
    let mut seen = Vec::new();
    while seen.last() != Some(&3.0) {
        seen.push(double(&observed(&mut observer, &topic).await));
    }
    assert!(
        !seen.contains(&2.0),
        "the volatile value of the first run did not survive the restart: {seen:?}"
    );
}

#[tokio::test]
async fn discard_data_is_dropped_while_offline_and_the_call_still_succeeds() {
    let mut env = TestEnv::persistent().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    send_ints(&proxy, "/discard/value", [1]).await;
    assert_eq!(queued_messages(&env).await, 0, "nothing queued");
    env.sandbox.start_broker().await.unwrap();
    wait_for_state(&proxy, "connected", &agent).await;
    send_ints(&proxy, "/discard/value", [2]).await;
    let first = observed(
        &mut observer,
        &env.topic(DEVICE_DATASTREAM, "/discard/value"),
    )
    .await;
    assert_eq!(int_value(&first), 2, "the value sent offline was dropped");
}

#[tokio::test]
async fn discard_data_sent_while_the_handshake_runs_is_delivered() {
    let env = TestEnv::new().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.stop().await.success());
    // Without the clean-stop record the next start runs the full handshake...
    std::fs::remove_file(env.path("store/credentials/mqtt-session")).unwrap();
    // ...and thousands of device properties make it resend them all.
    {
        let db = rusqlite::Connection::open(env.path("store/agent.db")).unwrap();
        let transaction = db.unchecked_transaction().unwrap();
        for id in 0..3000 {
            let payload = bson::doc! { "v": id }.to_vec().unwrap();
            transaction
                .execute(
                    "INSERT INTO properties (interface, path, ownership, major, payload) VALUES (?1, ?2, 0, 0, ?3)",
                    rusqlite::params![DEVICE_BULK, format!("/{id}/value"), payload],
                )
                .unwrap();
        }
        transaction.commit().unwrap();
    }
    let mut observer = env.observer().await;
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    // The introspection is the first publish of the handshake: the connection is up.
    observed(&mut observer, &env.base_topic()).await;
    send_ints(&proxy, "/discard/value", [7]).await;
    assert_eq!(
        proxy.state().await.unwrap(),
        "connecting",
        "the value was sent while the handshake was still running"
    );
    let delivered = observed(
        &mut observer,
        &env.topic(DEVICE_DATASTREAM, "/discard/value"),
    )
    .await;
    assert_eq!(int_value(&delivered), 7);
    wait_for_state(&proxy, "connected", &agent).await;
}

#[tokio::test]
async fn a_dbus_client_that_never_reads_its_signals_does_not_stall_the_session() {
    let env = TestEnv::new().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    // Subscribed to every DataReceived signal, never reading one.
    let deaf = env.bus.connection().await;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(astarte_agent::dbus::INTERFACE_NAME)
        .unwrap()
        .build();
    let _never_read = zbus::MessageStream::for_match_rule(rule, &deaf, Some(1))
        .await
        .unwrap();

    let flood = async {
        let topic = env.topic(SERVER_DATASTREAM, "/flood/command");
        let payload = bson::doc! { "v": "x".repeat(512) }.to_vec().unwrap();
        for _ in 0..5000 {
            observer.publish(&topic, payload.clone(), 0).await.unwrap();
        }
    };
    let sender = async {
        send_ints(&proxy, "/stored/value", 0..300).await;
    };
    tokio::join!(flood, sender);

    let values = collect_values(
        &mut observer,
        &env.topic(DEVICE_DATASTREAM, "/stored/value"),
        300,
    )
    .await;
    assert_eq!(first_occurrences(&values), (0..300).collect::<Vec<_>>());
    assert_eq!(proxy.state().await.unwrap(), "connected");
    assert!(
        !agent.log().contains("connection to the broker lost"),
        "{}",
        agent.log()
    );
}
