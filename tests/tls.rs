//! What the agent's TLS client shows the broker: SNI with the broker's host name (Astarte's
//! Traefik routes on it), and no connection at all to a broker it cannot verify.

mod common;

use std::io::Read;
use std::net::TcpListener;

use astarte_sandbox::BrokerEvent;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
    forget_ca_file(&env);
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

/// A server certificate for `localhost` signed by the sandbox CA, with its key.
fn localhost_identity(env: &TestEnv) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let identity = env.sandbox.ca().issue_server().unwrap();
    let certs = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap();
    (certs, key)
}

/// Rewrites the agent's configuration without `ca_file`: the sandbox CA is then unknown.
fn forget_ca_file(env: &TestEnv) {
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    let without_ca: String = config
        .lines()
        .filter(|line| !line.starts_with("ca_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(env.config_path(), without_ca).unwrap();
}

/// A "broker" that speaks TLS 1.2 like Astarte's but trusts only an unrelated CA for client
/// certificates: it refuses every certificate the agent presents.
async fn refusing_broker(env: &TestEnv) -> u16 {
    use std::sync::Arc;

    let (certs, key) = localhost_identity(env);
    let unrelated = astarte_sandbox::TestCa::generate("unrelated").unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(unrelated.cert_pem().unwrap().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = acceptor.accept(stream).await;
        }
    });
    port
}

#[tokio::test]
async fn a_refused_certificate_is_verified_with_pairing_before_a_new_one_is_requested() {
    let env = TestEnv::new().await;
    let port = refusing_broker(&env).await;
    env.sandbox
        .pairing()
        .set_broker_url(Some(format!("mqtts://localhost:{port}/")));
    let agent = env.start_agent().await;

    // Pairing says the certificate is valid: keep it (a new one would revoke it) and retry.
    agent.wait_for_log("still considers valid").await;
    let pairing = env.sandbox.pairing();
    assert_eq!(pairing.certificate_requests(&env.device_id), 1);
    assert!(pairing.verify_requests(&env.device_id) >= 1);

    // Pairing does not check revocation: after repeated refusals, a new certificate anyway.
    agent.wait_for_log("keeps refusing the certificate").await;
    agent.wait_for_log_count("new certificate stored", 2).await;
    assert_eq!(pairing.certificate_requests(&env.device_id), 2);
}

/// A TLS front for the sandbox's plain-HTTP Pairing server, with a certificate for `localhost`
/// signed by the sandbox CA: Pairing as production devices reach it, over https.
async fn https_front(env: &TestEnv) -> u16 {
    let (certs, key) = localhost_identity(env);
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let backend = env
        .sandbox
        .pairing_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    port
}

fn set_pairing_url(env: &TestEnv, url: &str) {
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    let replaced: String = config
        .lines()
        .map(|line| {
            if line.starts_with("pairing_url") {
                format!("pairing_url = {url:?}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(env.config_path(), replaced).unwrap();
}

#[tokio::test]
async fn pairing_over_https_is_verified_against_ca_file() {
    let env = TestEnv::new().await;
    let port = https_front(&env).await;
    set_pairing_url(&env, &format!("https://localhost:{port}/"));
    let (_agent, _proxy) = env.start_connected_agent().await;
    assert_eq!(
        env.sandbox.pairing().certificate_requests(&env.device_id),
        1
    );
}

#[tokio::test]
async fn pairing_over_https_with_an_untrusted_certificate_is_refused() {
    let env = TestEnv::new().await;
    let port = https_front(&env).await;
    set_pairing_url(&env, &format!("https://localhost:{port}/"));
    forget_ca_file(&env);
    let agent = env.start_agent().await;
    agent.wait_for_log("provisioning failed").await;
    assert!(
        agent.log().contains("invalid peer certificate"),
        "the log says why:\n{}",
        agent.log()
    );
    assert!(
        env.sandbox.pairing().requests().is_empty(),
        "no request reached Pairing"
    );
}
