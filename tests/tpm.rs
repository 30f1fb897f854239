//! The TPM backend from outside, against a real TPM simulator (swtpm, one per test): the
//! device key is made in the TPM and the secret sealed to it, nothing secret is on disk, a TPM
//! restart changes nothing, and a cleared TPM is recovered from like any lost secret.

#![cfg(feature = "tpm")]

mod common;

use astarte_sandbox::Swtpm;
use common::*;

const STORED: &str = "/stored/value";

/// A test environment whose agent keeps its credentials in a fresh swtpm.
async fn tpm_env() -> (TestEnv, Swtpm) {
    let env = TestEnv::persistent().await;
    let tpm = Swtpm::start(&env.path("tpm-state")).expect("swtpm starts (apt-get install swtpm)");
    env.write_config(&tpm_config(&tpm));
    (env, tpm)
}

fn tpm_config(tpm: &Swtpm) -> String {
    format!(
        "[credentials]\nbackend = \"tpm\"\ntcti = {:?}\n",
        tpm.tcti()
    )
}

/// Every file under `dir`, with its content.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let content = std::fs::read(&path).unwrap();
                found.push((path, content));
            }
        }
    }
    found
}

#[tokio::test]
async fn with_a_tpm_the_agent_pairs_connects_and_keeps_no_secret_on_disk() {
    let (env, _tpm) = tpm_env().await;
    let (mut agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    send_ints(&proxy, STORED, 0..5).await;
    let values = collect_values(&mut observer, &env.topic(DEVICE_DATASTREAM, STORED), 5).await;
    assert_eq!(first_occurrences(&values), (0..5).collect::<Vec<_>>());
    assert!(agent.stop().await.success());

    let secret = env.sandbox.pairing().secret(&env.device_id).unwrap();
    let store = env.path("store");
    for (path, content) in files_under(&store) {
        let text = String::from_utf8_lossy(&content);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a private key",
            path.display()
        );
        assert!(
            !text.contains(&secret),
            "{} holds the plaintext secret",
            path.display()
        );
    }
    assert!(!store.join("credentials/client.key").exists());
    assert!(!store.join("credentials/secret").exists());
    assert!(store.join("credentials/secret.sealed").exists());
}

#[tokio::test]
async fn a_tpm_restart_with_its_state_needs_no_new_registration() {
    let (env, mut tpm) = tpm_env().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.stop().await.success());
    tpm.restart().unwrap();
    env.write_config(&tpm_config(&tpm));
    let (_agent, _proxy) = env.start_connected_agent().await;
    let pairing = env.sandbox.pairing();
    assert_eq!(pairing.registrations(&env.device_id), 1);
    assert_eq!(pairing.certificate_requests(&env.device_id), 1);
}

#[tokio::test]
async fn a_cleared_tpm_is_recovered_and_queued_data_delivered_in_order() {
    let (mut env, mut tpm) = tpm_env().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut observer = env.observer().await;
    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    send_ints(&proxy, STORED, 0..50).await;
    let mut agent = agent;
    assert!(agent.stop().await.success());
    env.sandbox.start_broker().await.unwrap();

    tpm.clear().unwrap();
    env.write_config(&tpm_config(&tpm));
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "connected", &agent).await;
    assert!(agent.log().contains("unsealed"), "{}", agent.log());
    assert_eq!(
        env.sandbox.pairing().registrations(&env.device_id),
        3,
        "422, unregister, register:\n{}",
        agent.log()
    );
    send_ints(&proxy, STORED, 50..60).await;
    let values = collect_values(&mut observer, &env.topic(DEVICE_DATASTREAM, STORED), 60).await;
    assert_eq!(first_occurrences(&values), (0..60).collect::<Vec<_>>());
}

/// The TLS handshake signs with the device key inside rustls, synchronously; the TPM may be
/// slow or stuck. It runs on the agent's network thread: while the TPM does not answer in the
/// middle of a handshake, D-Bus calls are answered and systemd's watchdog keeps being fed.
#[tokio::test]
async fn a_stalled_tpm_during_a_handshake_freezes_neither_dbus_nor_the_watchdog() {
    let (mut env, tpm) = tpm_env().await;
    let socket_path = env.path("notify.sock");
    let pings = watchdog_pings(tokio::net::UnixDatagram::bind(&socket_path).unwrap());
    let socket_env = socket_path.display().to_string();
    let agent = env
        .start_agent_with_env(&[
            ("NOTIFY_SOCKET", socket_env.as_str()),
            // A ping every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ])
        .await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "connected", &agent).await;
    proxy
        .set_property(DEVICE_PROPERTIES, "/name", &"pump-7".into())
        .await
        .unwrap();
    let signing = "signing with the device key in the TPM";
    let signed_before = agent.log().matches(signing).count();

    // The TPM stops answering; the broker restarts, so the agent's next TLS handshake needs a
    // signature from the stopped TPM (the TPM deadline is 10 s).
    tpm.pause().unwrap();
    env.sandbox.stop_broker().await;
    env.sandbox.start_broker().await.unwrap();
    agent.wait_for_log_count(signing, signed_before + 1).await;
    let stalled_at = std::time::Instant::now();
    let pings_before = pings.load(std::sync::atomic::Ordering::Relaxed);

    let mut latencies = Vec::new();
    for _ in 0..10 {
        let asked = std::time::Instant::now();
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            proxy.get_property(DEVICE_PROPERTIES, "/name"),
        )
        .await;
        latencies.push(asked.elapsed());
        let Ok(value) = answer else {
            panic!(
                "GetProperty is not answered while the TPM is stopped:\n{}",
                agent.log()
            );
        };
        assert_eq!(String::try_from(value.unwrap()).unwrap(), "pump-7");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stalled_for = stalled_at.elapsed();
    let pings_during = pings.load(std::sync::atomic::Ordering::Relaxed) - pings_before;
    let log = agent.log();
    let since_signing = &log[log.rfind(signing).unwrap_or(0)..];
    println!(
        "while the TPM was stopped ({stalled_for:?}): GetProperty answered in {latencies:?}; {pings_during} watchdog pings"
    );
    assert!(
        !since_signing.contains("connected to the broker"),
        "the handshake was still waiting for the TPM while the calls were answered:\n{log}"
    );
    assert!(
        pings_during >= 5,
        "the watchdog stopped while the TPM was stopped: {pings_during} pings in {stalled_for:?}"
    );

    tpm.resume().unwrap();
    wait_for_state(&proxy, "connected", &agent).await;
}

/// Counts the `WATCHDOG=1` notifications arriving on `socket`, as systemd would read them.
fn watchdog_pings(
    socket: tokio::net::UnixDatagram,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let pings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = pings.clone();
    tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        while let Ok(length) = socket.recv(&mut buffer).await {
            if &buffer[..length] == b"WATCHDOG=1" {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    pings
}
