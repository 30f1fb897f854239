//! The persistent store from outside: stored data survives broker restarts, SIGKILL and
//! restarts, in order; the queue is bounded; a corrupt database or a refused message does not
//! stop the agent.

mod common;

use astarte_sandbox::SandboxOptions;
use common::*;
use nix::sys::signal::Signal;
use zbus::zvariant::Value;

const STORED: &str = "/stored/value";

#[tokio::test]
async fn a_stream_of_5000_stored_messages_survives_a_broker_restart_in_order() {
    let mut env = TestEnv::persistent().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    let topic = env.topic(DEVICE_DATASTREAM, STORED);

    send_ints(&proxy, STORED, 0..2000).await;
    env.sandbox.stop_broker().await;
    send_ints(&proxy, STORED, 2000..3500).await;
    env.sandbox.start_broker().await.unwrap();
    send_ints(&proxy, STORED, 3500..5000).await;

    let values = collect_values(&mut observer, &topic, 5000).await;
    assert_eq!(
        first_occurrences(&values),
        (0..5000).collect::<Vec<_>>(),
        "first occurrences in the order the calls returned"
    );
    wait_for_state(&proxy, "connected", &agent).await;
}

#[tokio::test]
async fn stored_messages_queued_offline_survive_sigkill_and_go_before_newer_data() {
    let mut env = TestEnv::persistent().await;
    let (mut agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    send_ints(&proxy, STORED, 0..500).await;
    assert_eq!(queued_messages(&env).await, 500);
    agent.stop_with(Signal::SIGKILL).await;

    env.sandbox.start_broker().await.unwrap();
    let (_agent, proxy) = env.start_connected_agent().await;
    send_ints(&proxy, STORED, 500..510).await;
    let values = collect_values(&mut observer, &env.topic(DEVICE_DATASTREAM, STORED), 510).await;
    assert_eq!(first_occurrences(&values), (0..510).collect::<Vec<_>>());
}

#[tokio::test]
async fn unique_stored_data_is_not_duplicated_across_a_reconnection() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: cutting a TCP connection (ss -K) needs root");
        return;
    }
    let env = TestEnv::new().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    let path = "/stored/unique";
    send_ints(&proxy, path, 0..300).await;
    // The broker keeps the device's session: only the agent's connection drops.
    cut_connection(&agent, env.sandbox.broker_port());
    send_ints(&proxy, path, 300..600).await;
    agent.wait_for_log("connection to the broker lost").await;
    wait_for_state(&proxy, "connected", &agent).await;
    let values = collect_values(&mut observer, &env.topic(DEVICE_DATASTREAM, path), 600).await;
    assert_eq!(
        values,
        (0..600).collect::<Vec<_>>(),
        "each exactly once, in order"
    );
}

#[tokio::test]
async fn unique_stored_data_in_flight_at_a_crash_all_arrives_after_the_restart_in_order() {
    let env = TestEnv::new().await;
    let (mut agent, proxy) = env.start_connected_agent().await;
    env.wait_for_session_record().await;
    let mut observer = env.observer().await;
    let path = "/stored/unique";
    send_ints(&proxy, path, 0..1500).await;
    // Whatever is in flight now (QoS 2 exchanges at any stage) is cut short.
    agent.stop_with(Signal::SIGKILL).await;
    let (agent, _proxy) = env.start_connected_agent().await;
    let values = collect_values(&mut observer, &env.topic(DEVICE_DATASTREAM, path), 1500).await;
    assert_eq!(
        first_occurrences(&values),
        (0..1500).collect::<Vec<_>>(),
        "every accepted value arrives, first occurrences in order"
    );
    assert!(
        agent.log().contains("did not stop cleanly"),
        "{}",
        agent.log()
    );
}

#[tokio::test]
async fn a_full_stored_queue_refuses_new_data_and_keeps_what_it_holds() {
    let mut env = TestEnv::persistent().await;
    env.write_config("[store]\nmax_queue_bytes = 65536");
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    let text = "x".repeat(4000);
    let mut accepted = 0;
    let refused = loop {
        match proxy
            .send(
                DEVICE_DATASTREAM,
                "/stored/text",
                &Value::from(text.as_str()),
            )
            .await
        {
            Ok(()) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < 100, "the bound is never reached");
    };
    assert_eq!(
        error_name(Err::<(), _>(refused)),
        "org.astarte_platform.Agent1.Error.QueueFull"
    );
    assert!(accepted >= 10, "{accepted} messages fit in 64 KiB");
    env.sandbox.start_broker().await.unwrap();
    let topic = env.topic(DEVICE_DATASTREAM, "/stored/text");
    for _ in 0..accepted {
        observed(&mut observer, &topic).await;
    }
}

#[tokio::test]
async fn expired_data_is_not_sent_whether_stored_or_volatile() {
    let mut env = TestEnv::persistent().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    send_ints(&proxy, "/stored/shortlived", [1]).await;
    send_ints(&proxy, "/plain/shortlived", [2]).await;
    // Both have a 1 s expiry: let it pass while offline.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    send_ints(&proxy, STORED, [3]).await;
    env.sandbox.start_broker().await.unwrap();
    let marker = observed(&mut observer, &env.topic(DEVICE_DATASTREAM, STORED)).await;
    assert_eq!(int_value(&marker), 3);
    let expired: Vec<_> = observer
        .history()
        .iter()
        .filter(|message| message.topic.ends_with("shortlived"))
        .collect();
    assert!(expired.is_empty(), "expired data was sent: {expired:?}");
}

#[tokio::test]
async fn a_corrupt_database_is_moved_aside_and_the_agent_comes_up() {
    let env = TestEnv::new().await;
    let store = env.path("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("agent.db"), vec![0x42; 4096]).unwrap();
    let (agent, proxy) = env.start_connected_agent().await;
    let aside = std::fs::read_dir(&store)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("agent.db.corrupt-")
        })
        .count();
    assert_eq!(aside, 1, "the corrupt file is kept beside the new one");
    assert!(agent.log().contains("corrupt"), "{}", agent.log());
    send_ints(&proxy, STORED, [1]).await;
}

#[tokio::test]
async fn with_a_new_database_the_broker_session_is_wiped_not_resumed() {
    let env = TestEnv::new().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    env.wait_for_session_record().await;
    assert!(agent.stop().await.success());
    // The database is lost (here: corrupt, so it is moved aside and a new one made): what
    // the broker keeps for the device can't be matched with the new store any more.
    std::fs::write(env.path("store/agent.db"), vec![0x42; 4096]).unwrap();
    let _ = std::fs::remove_file(env.path("store/agent.db-wal"));
    let (agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.log().contains("corrupt"), "{}", agent.log());
    let events = env.sandbox.device_events(&env.base_topic());
    let connects: Vec<bool> = events
        .iter()
        .filter_map(|e| match e {
            astarte_sandbox::BrokerEvent::Connected { clean_session, .. } => Some(*clean_session),
            _ => None,
        })
        .collect();
    // First start: clean, then lasting; the clean stop's restart would resume; this one wipes.
    assert_eq!(connects.len(), 4, "{connects:?}");
    assert_eq!(connects[2..], [true, false], "{events:?}");
}

#[tokio::test]
async fn a_message_the_broker_keeps_refusing_is_set_aside_and_the_queue_goes_on() {
    // Like Astarte on invalid data, this broker closes the connection on a too-large packet.
    let env = TestEnv::with_options(SandboxOptions {
        broker_max_packet_size: 2048,
        ..SandboxOptions::default()
    })
    .await;
    let (mut agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    proxy
        .send(
            DEVICE_DATASTREAM,
            "/stored/text",
            &Value::from("p".repeat(4000).as_str()),
        )
        .await
        .unwrap();
    send_ints(&proxy, STORED, [7]).await;
    let after = observed(&mut observer, &env.topic(DEVICE_DATASTREAM, STORED)).await;
    assert_eq!(int_value(&after), 7);
    // Order holds across the refusals: 7 only goes once the refused message is set aside.
    assert!(agent.log().contains("dead_letters"), "{}", agent.log());
    // The running agent holds the database's lock (locking_mode EXCLUSIVE): read it after.
    assert!(agent.stop().await.success());
    let dead: i64 = rusqlite::Connection::open(env.path("store/agent.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM dead_letters", [], |row| row.get(0))
        .unwrap();
    assert_eq!(dead, 1);
}

#[tokio::test]
async fn properties_of_a_0_1_store_are_imported_and_resent() {
    use bson::{Bson, doc, spec::BinarySubtype};
    let env = TestEnv::new().await;
    let store = env.path("store");
    std::fs::create_dir_all(&store).unwrap();
    let value = doc! { "v": "from-0.1" }.to_vec().unwrap();
    let file = doc! { "version": 1, "properties": [Bson::Document(doc! {
        "o": "device", "i": DEVICE_PROPERTIES, "m": 1_i64, "p": "/name",
        "v": Bson::Binary(bson::Binary { subtype: BinarySubtype::Generic, bytes: value }),
    })] };
    std::fs::write(store.join("properties"), file.to_vec().unwrap()).unwrap();
    let mut observer = env.observer().await;

    let (_agent, proxy) = env.start_connected_agent().await;
    assert_eq!(
        proxy
            .get_property(DEVICE_PROPERTIES, "/name")
            .await
            .unwrap(),
        zbus::zvariant::OwnedValue::try_from(Value::from("from-0.1")).unwrap()
    );
    let resent = observed(&mut observer, &env.topic(DEVICE_PROPERTIES, "/name")).await;
    assert_eq!(
        astarte_sandbox::decode_bson(&resent.payload)
            .unwrap()
            .get_str("v")
            .unwrap(),
        "from-0.1"
    );
    assert!(
        !store.join("properties").exists(),
        "imported once, then removed"
    );
}

#[tokio::test]
async fn a_full_disk_refuses_stored_data_loses_nothing_accepted_and_recovers() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let mut env = TestEnv::persistent().await;
    let store = env.path("store");
    std::fs::create_dir_all(&store).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    let _unmount = Unmount(store.clone());
    let (agent, proxy) = env.start_connected_agent().await;
    proxy
        .set_property(DEVICE_PROPERTIES, "/name", &Value::from("before"))
        .await
        .unwrap();
    let mut observer = env.observer().await;
    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;

    fill(&store.join("filler"));
    let text = "d".repeat(1000);
    let mut accepted = 0;
    let mut refusals = 0;
    while refusals < 3 {
        assert!(accepted < 5000, "the full disk never refused a stored send");
        match proxy
            .send(
                DEVICE_DATASTREAM,
                "/stored/text",
                &Value::from(text.as_str()),
            )
            .await
        {
            Ok(()) => accepted += 1,
            Err(error) => {
                assert_eq!(
                    error_name(Err::<(), _>(error)),
                    "org.astarte_platform.Agent1.Error.Storage"
                );
                refusals += 1;
            }
        }
    }
    // A property change may still fit (SQLite reuses space it already has); either it is
    // stored and readable, or it is refused and the old value stays.
    let set = proxy
        .set_property(DEVICE_PROPERTIES, "/name", &Value::from("after"))
        .await;
    let expected = match set {
        Ok(()) => "after",
        Err(error) => {
            assert_eq!(
                error_name(Err::<(), _>(error)),
                "org.astarte_platform.Agent1.Error.Storage"
            );
            "before"
        }
    };
    assert_eq!(
        proxy
            .get_property(DEVICE_PROPERTIES, "/name")
            .await
            .unwrap(),
        zbus::zvariant::OwnedValue::try_from(Value::from(expected)).unwrap()
    );
    assert_eq!(
        agent.log().matches("couldn't write to the store").count(),
        1,
        "one log line per episode:\n{}",
        agent.log()
    );

    std::fs::remove_file(store.join("filler")).unwrap();
    proxy
        .send(
            DEVICE_DATASTREAM,
            "/stored/text",
            &Value::from(text.as_str()),
        )
        .await
        .unwrap();
    accepted += 1;
    env.sandbox.start_broker().await.unwrap();
    let topic = env.topic(DEVICE_DATASTREAM, "/stored/text");
    for _ in 0..accepted {
        observed(&mut observer, &topic).await;
    }
    // The broker's restored session may make the agent reconnect once more: it must end up
    // connected.
    wait_for_state(&proxy, "connected", &agent).await;
}

/// Fills the filesystem of `path` until it has no space left.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
