//! The agent as a daemon: restarts reuse credentials and properties, signals stop it cleanly,
//! Pairing failures and missing tokens are waited out, outages are survived.

mod common;

use astarte_sandbox::{BrokerEvent, SandboxOptions};
use common::*;
use nix::sys::signal::Signal;
use zbus::zvariant::Value;

#[tokio::test]
async fn restart_reuses_credentials_and_resends_device_properties() {
    let env = TestEnv::new().await;
    let mut observer = env.observer().await;
    let (mut agent, proxy) = env.start_connected_agent().await;
    proxy
        .set_property(DEVICE_PROPERTIES, "/name", &Value::from("pump-7"))
        .await
        .unwrap();
    observed(&mut observer, &env.topic(DEVICE_PROPERTIES, "/name")).await;
    let status = agent.stop().await;
    assert!(
        status.success(),
        "SIGTERM exits 0: {status:?}\n{}",
        agent.log()
    );

    let (mut agent, _proxy) = env.start_connected_agent().await;
    let pairing = env.sandbox.pairing();
    assert_eq!(
        pairing.registrations(&env.device_id),
        1,
        "no second registration"
    );
    assert_eq!(
        pairing.certificate_requests(&env.device_id),
        1,
        "no second certificate"
    );
    assert!(
        agent.log().contains("resuming the broker session"),
        "a clean stop lets the next start resume the broker session:\n{}",
        agent.log()
    );

    // After a crash the broker's session is resumed and the handshake runs again (queued
    // property changes were in memory): it lists the stored property and resends its value.
    agent.stop_with(Signal::SIGKILL).await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let purge_topic = format!("{}/control/producer/properties", env.base_topic());
    observed(&mut observer, &purge_topic).await;
    let second_purge = observed(&mut observer, &purge_topic).await;
    let listed = astarte_sandbox::decode_purge_list(&second_purge.payload).unwrap();
    assert_eq!(listed, [format!("{DEVICE_PROPERTIES}/name")]);
    let resent = observed(&mut observer, &env.topic(DEVICE_PROPERTIES, "/name")).await;
    assert_eq!(
        astarte_sandbox::decode_bson(&resent.payload)
            .unwrap()
            .get_str("v")
            .unwrap(),
        "pump-7"
    );
    assert_eq!(
        proxy
            .get_property(DEVICE_PROPERTIES, "/name")
            .await
            .unwrap(),
        zbus::zvariant::OwnedValue::try_from(Value::from("pump-7")).unwrap()
    );
}

#[tokio::test]
async fn sigint_stops_the_agent_cleanly() {
    let env = TestEnv::new().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    let status = agent.stop_with(Signal::SIGINT).await;
    assert!(status.success(), "{status:?}\n{}", agent.log());
}

#[tokio::test]
async fn credentials_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new().await;
    let (_agent, _proxy) = env.start_connected_agent().await;
    let credentials = env.path("store/credentials");
    let mut files = 0;
    for entry in std::fs::read_dir(&credentials).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.path().display());
        files += 1;
    }
    assert!(files >= 3, "secret, key and certificate are stored");
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

#[tokio::test]
async fn pairing_server_errors_are_retried_until_it_recovers() {
    let env = TestEnv::new().await;
    env.sandbox.pairing().fail_next(3, 503);
    let (_agent, _proxy) = env.start_connected_agent().await;
    assert_eq!(env.sandbox.pairing().registrations(&env.device_id), 1);
}

#[tokio::test]
async fn without_secret_or_token_the_agent_waits_for_a_token() {
    let env = TestEnv::new().await;
    std::fs::remove_file(env.path("pairing-token")).unwrap();
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "credentials-missing", &agent).await;
    std::fs::write(env.path("pairing-token"), env.sandbox.agent_token()).unwrap();
    wait_for_state(&proxy, "connected", &agent).await;
    assert_eq!(env.sandbox.pairing().registrations(&env.device_id), 1);
}

#[tokio::test]
async fn a_rejected_token_is_reported_and_the_daemon_keeps_running() {
    let env = TestEnv::new().await;
    std::fs::write(env.path("pairing-token"), "not-a-jwt").unwrap();
    let mut agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "credentials-missing", &agent).await;
    assert_eq!(
        env.sandbox.pairing().status(&env.device_id),
        None,
        "nothing registered with a bad token"
    );
    assert!(
        agent.log().contains("token"),
        "the log tells the operator about the token:\n{}",
        agent.log()
    );
    let status = agent.stop().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn broker_restart_is_survived_and_data_sent_meanwhile_arrives() {
    let mut env = TestEnv::persistent().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    proxy
        .send(DEVICE_DATASTREAM, "/qos/unique", &Value::I32(41))
        .await
        .unwrap();
    proxy
        .send(DEVICE_DATASTREAM, "/qos/unique", &Value::I32(42))
        .await
        .unwrap();
    env.sandbox.start_broker().await.unwrap();
    wait_for_state(&proxy, "connected", &agent).await;
    let topic = env.topic(DEVICE_DATASTREAM, "/qos/unique");
    let first = observed(&mut observer, &topic).await;
    let second = observed(&mut observer, &topic).await;
    let value = |payload: &[u8]| {
        astarte_sandbox::decode_bson(payload)
            .unwrap()
            .get_i32("v")
            .unwrap()
    };
    assert_eq!((value(&first.payload), value(&second.payload)), (41, 42));
}

#[tokio::test]
async fn short_lived_certificate_is_renewed_before_it_expires() {
    // Valid for 30 s (backdated 5 min like CFSSL): inside the renewal window from the start.
    // The agent uses it, renews it halfway through while the session stays up, then
    // reconnects with the new one (the state never leaves connecting/connected).
    let options = SandboxOptions {
        certificate_validity: std::time::Duration::from_secs(30),
        ..SandboxOptions::default()
    };
    let env = TestEnv::with_options(options).await;
    let (agent, proxy) = env.start_connected_agent().await;
    assert_eq!(
        env.sandbox.pairing().certificate_requests(&env.device_id),
        1
    );
    let mut states = StateWatcher::new(&proxy).await;
    states.next("connecting", &agent).await;
    states.next("connected", &agent).await;
    let pairing = env.sandbox.pairing();
    assert!(
        pairing.certificate_requests(&env.device_id) >= 2,
        "renewed:\n{}",
        agent.log()
    );
    assert_eq!(
        pairing.registrations(&env.device_id),
        1,
        "renewal does not register again"
    );
}

#[tokio::test]
async fn restart_connects_with_stored_credentials_while_pairing_is_down() {
    let env = TestEnv::new().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.stop().await.success());
    env.sandbox.pairing().fail_next(u32::MAX, 503);
    let (agent, _proxy) = env.start_connected_agent().await;
    assert!(
        agent.log().contains("using the broker it named last time"),
        "{}",
        agent.log()
    );
    assert_eq!(
        env.sandbox.pairing().certificate_requests(&env.device_id),
        1
    );
}

#[tokio::test]
async fn resumed_broker_session_skips_the_handshake_and_keeps_data_flowing() {
    let mut env = TestEnv::with_options(SandboxOptions {
        broker_persistence: true,
        ..SandboxOptions::default()
    })
    .await;
    let (agent, proxy) = env.start_connected_agent().await;
    let base = env.base_topic();
    // The first connection only wipes what the broker kept (a new rumqttc state must not
    // resume an older one); the agent then reconnects keeping the session, which the broker
    // restarts don't lose.
    for _ in 0..2 {
        let mut states = StateWatcher::new(&proxy).await;
        env.sandbox.restart_broker().await.unwrap();
        states.next("disconnected", &agent).await;
        states.next("connected", &agent).await;
    }
    let mut observer = env.observer().await;
    proxy
        .send(DEVICE_DATASTREAM, "/qos/unique", &Value::I32(7))
        .await
        .unwrap();
    observed(&mut observer, &env.topic(DEVICE_DATASTREAM, "/qos/unique")).await;

    let events = env.sandbox.device_events(&base);
    let sessions: Vec<bool> = events
        .iter()
        .filter_map(|event| match event {
            BrokerEvent::ConnAck {
                session_present, ..
            } => Some(*session_present),
            _ => None,
        })
        .collect();
    assert_eq!(sessions, [false, false, true, true], "{events:#?}");
    let introspections = events
        .iter()
        .filter(|event| matches!(event, BrokerEvent::Publish(p) if p.topic == base))
        .count();
    assert_eq!(
        introspections,
        1,
        "no handshake when the broker kept the session:\n{}",
        agent.log()
    );
}

#[tokio::test]
async fn offline_values_follow_their_retention_and_expiry() {
    let mut env = TestEnv::persistent().await;
    let mut observer = env.observer().await;
    env.sandbox.stop_broker().await;
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    // discard: dropped while offline; volatile with expiry 1 s: dropped once expired;
    // volatile without expiry: kept.
    proxy
        .send(DEVICE_DATASTREAM, "/qos/unreliable", &Value::I32(1))
        .await
        .unwrap();
    proxy
        .send(DEVICE_DATASTREAM, "/plain/shortlived", &Value::I32(2))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await; // let the expiry pass
    proxy
        .send(DEVICE_DATASTREAM, "/plain/value", &Value::F64(3.0))
        .await
        .unwrap();

    env.sandbox.start_broker().await.unwrap();
    wait_for_state(&proxy, "connected", &agent).await;
    observed(&mut observer, &env.topic(DEVICE_DATASTREAM, "/plain/value")).await;
    // Order is kept, so anything queued before the last value would have arrived before it.
    let data: Vec<&str> = observer
        .history()
        .iter()
        .map(|message| message.topic.as_str())
        .filter(|topic| topic.contains(DEVICE_DATASTREAM))
        .collect();
    assert_eq!(
        data,
        [env.topic(DEVICE_DATASTREAM, "/plain/value").as_str()]
    );
}

#[tokio::test]
async fn renewal_while_pairing_is_down_keeps_the_current_certificate() {
    let options = SandboxOptions {
        certificate_validity: std::time::Duration::from_secs(30),
        ..SandboxOptions::default()
    };
    let env = TestEnv::with_options(options).await;
    let (agent, proxy) = env.start_connected_agent().await;
    env.sandbox.pairing().fail_next(u32::MAX, 503);
    agent.wait_for_log("using the current one meanwhile").await;
    assert_eq!(
        proxy.state().await.unwrap(),
        "connected",
        "the session stays up while the certificate is valid:\n{}",
        agent.log()
    );
    assert!(
        env.sandbox.pairing().certificate_requests(&env.device_id) == 1,
        "no certificate could be issued, the old one is still in use"
    );
}

#[tokio::test]
async fn an_inhibited_device_reports_it_and_keeps_running() {
    let env = TestEnv::new().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.stop().await.success());
    env.sandbox.pairing().set_inhibited(&env.device_id, true);
    // Its certificate is due, so it must ask Pairing (which then says inhibited).
    std::fs::remove_file(env.path("store/credentials/client.crt")).unwrap();
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "inhibited", &agent).await;
    let pairing = env.sandbox.pairing();
    assert_eq!(
        (
            pairing.registrations(&env.device_id),
            pairing.certificate_requests(&env.device_id)
        ),
        (1, 1),
        "an inhibited device is not a lost secret: no new registration, no certificate request"
    );
    assert!(proxy.device_id().await.is_ok(), "still serving D-Bus");
}

#[tokio::test]
async fn a_debug_log_never_shows_the_secret_the_token_or_the_private_key() {
    let env = TestEnv::new().await;
    let (mut agent, proxy) = env.start_connected_agent().await;
    proxy
        .set_property(DEVICE_PROPERTIES, "/name", &Value::from("pump-7"))
        .await
        .unwrap();
    assert!(agent.stop().await.success());
    let log = agent.log();
    assert!(log.contains("DEBUG"), "the agent ran at debug level");
    let secret = std::fs::read_to_string(env.path("store/credentials/secret")).unwrap();
    let token = std::fs::read_to_string(env.path("pairing-token")).unwrap();
    let key = std::fs::read_to_string(env.path("store/credentials/client.key")).unwrap();
    // The base64 body of the key, line by line: no part of it may appear either.
    let key_lines: Vec<&str> = key
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 16)
        .collect();
    assert!(!key_lines.is_empty());
    for (what, needle) in [("secret", secret.trim()), ("token", token.trim())]
        .into_iter()
        .chain(key_lines.iter().map(|line| ("private key", *line)))
    {
        assert!(!needle.is_empty());
        assert!(!log.contains(needle), "the {what} appears in the log");
    }
}

#[tokio::test]
async fn under_systemd_the_agent_reports_ready_and_feeds_the_watchdog() {
    let env = TestEnv::new().await;
    let socket_path = env.path("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let log = std::fs::File::create(env.path("agent-notify.log")).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_astarte-agent"))
        .arg("--config")
        .arg(env.config_path())
        .env("DBUS_SESSION_BUS_ADDRESS", env.bus.address())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdin(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let received = async {
        let mut buffer = [0u8; 512];
        while seen
            .iter()
            .filter(|line: &&String| *line == "WATCHDOG=1")
            .count()
            < 2
            || !seen.iter().any(|line| line == "READY=1")
        {
            let length = socket.recv(&mut buffer).await.unwrap();
            seen.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
        }
    };
    let result = tokio::time::timeout(TIMEOUT, received).await;
    let _ = child.start_kill();
    assert!(result.is_ok(), "notifications: {seen:?}");
    assert!(
        seen.iter().any(|line| line.starts_with("STATUS=")),
        "{seen:?}"
    );
}

/// Fields of one native journal entry (`NAME\n<u64 LE length><value>\n` or `NAME=value\n`).
fn journal_fields(mut entry: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    while !entry.is_empty() {
        let Some(end) = entry.iter().position(|&b| b == b'\n' || b == b'=') else {
            break;
        };
        let name = String::from_utf8_lossy(&entry[..end]).into_owned();
        if entry[end] == b'=' {
            let rest = &entry[end + 1..];
            let stop = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            fields.insert(name, String::from_utf8_lossy(&rest[..stop]).into_owned());
            entry = &rest[(stop + 1).min(rest.len())..];
        } else {
            let rest = &entry[end + 1..];
            let length = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(
                name,
                String::from_utf8_lossy(&rest[8..8 + length]).into_owned(),
            );
            entry = &rest[(8 + length + 1).min(rest.len())..];
        }
    }
    fields
}

#[tokio::test]
async fn under_journald_log_lines_carry_device_realm_and_state_fields() {
    let socket_path = std::path::Path::new("/run/systemd/journal/socket");
    if !nix::unistd::geteuid().is_root() || socket_path.exists() {
        eprintln!(
            "skipped: needs root and no journald on this machine (it binds journald's socket)"
        );
        return;
    }
    std::fs::create_dir_all("/run/systemd/journal").unwrap();
    let journal = tokio::net::UnixDatagram::bind(socket_path).unwrap();
    struct Remove(&'static str);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove("/run/systemd/journal/socket");
    let env = TestEnv::new().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_astarte-agent"))
        .arg("--config")
        .arg(env.config_path())
        .env("DBUS_SESSION_BUS_ADDRESS", env.bus.address())
        .env("JOURNAL_STREAM", "8:12345")
        .env_remove("NOTIFY_SOCKET")
        .env_remove(astarte_agent::logging::LOG_ENV)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut entries = Vec::new();
    let collect = async {
        let mut buffer = vec![0u8; 65536];
        loop {
            let length = journal.recv(&mut buffer).await.unwrap();
            let fields = journal_fields(&buffer[..length]);
            let done = fields.get("STATE").map(String::as_str) == Some("connected");
            entries.push(fields);
            if done {
                return;
            }
        }
    };
    let result = tokio::time::timeout(TIMEOUT, collect).await;
    let _ = child.start_kill();
    assert!(result.is_ok(), "never logged STATE=connected: {entries:?}");
    let connected = entries.last().unwrap();
    assert_eq!(connected.get("DEVICE_ID"), Some(&env.device_id));
    assert_eq!(connected.get("REALM").map(String::as_str), Some("test"));
    assert_eq!(
        connected.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("astarte-agent")
    );
    assert!(connected.contains_key("MESSAGE"));
}
