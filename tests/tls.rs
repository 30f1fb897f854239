//! What the agent's TLS client shows the broker: SNI with the broker's host name (Astarte's
//! Traefik routes on it), and no connection at all to a broker it cannot verify.

mod common;

use std::io::Read;
use std::net::TcpListener;

use astarte_sandbox::BrokerEvent;
use common::*;

/// Accepts one TCP connection and returns the SNI of its TLS ClientHello.
fn capture_sni(listener: TcpListener) -> Option<String> {
    let (mut stream, _) = listener.accept().ok()?;
    let mut acceptor = rustls::server::Acceptor::default();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            return None;
        }
        acceptor.read_tls(&mut &buffer[..read]).ok()?;
        if let Some(accepted) = acceptor.accept().ok()? {
            return accepted.client_hello().server_name().map(str::to_owned);
        }
    }
}

#[tokio::test]
async fn agent_sends_sni_with_the_broker_host_name() {
    let env = TestEnv::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    env.sandbox
        .pairing()
        .set_broker_url(Some(format!("mqtts://localhost:{port}/")));
    let probe = tokio::task::spawn_blocking(move || capture_sni(listener));
    let agent = env.start_agent().await;
    let sni = tokio::time::timeout(TIMEOUT, probe)
        .await
        .expect("the agent connects to the broker URL")
        .unwrap();
    assert_eq!(sni.as_deref(), Some("localhost"), "{}", agent.log());
}

#[tokio::test]
async fn broker_with_an_untrusted_certificate_is_never_sent_a_connect() {
    let env = TestEnv::new().await;
    // Without ca_file, the sandbox's test CA (which signed the broker certificate) is unknown.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    let without_ca: String = config
        .lines()
        .filter(|line| !line.starts_with("ca_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(env.config_path(), without_ca).unwrap();
    let agent = env.start_agent().await;
    let proxy = env.proxy().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    assert!(
        agent.log().contains("not trusted"),
        "the log says why:\n{}",
        agent.log()
    );
    let connects = env
        .sandbox
        .device_events(&env.base_topic())
        .into_iter()
        .filter(|event| matches!(event, BrokerEvent::Connected { .. }))
        .count();
    assert_eq!(connects, 0);
}
