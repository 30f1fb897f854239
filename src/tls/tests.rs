//! Handshakes run in memory between a rustls client built here and a rustls server.

use std::time::{Duration, SystemTime};

use astarte_sandbox::TestCa;
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConnection, ServerConfig, ServerConnection};

use rustls::pki_types::PrivateKeyDer;

use super::*;
use crate::credentials::MemoryKey;

/// A client certificate issued to a fresh in-memory device key.
fn device_certificate(
    ca: &TestCa,
    not_before: SystemTime,
    not_after: SystemTime,
) -> (Arc<dyn DeviceKey>, String) {
    let key: Arc<dyn DeviceKey> = Arc::new(MemoryKey::generate().unwrap());
    let csr = crate::pairing::csr::certificate_request("test/dev", key.clone()).unwrap();
    let cert = ca
        .sign_csr_between(&csr, "test/dev", not_before, not_after)
        .unwrap();
    (key, cert)
}

fn new_ca(name: &str) -> TestCa {
    TestCa::generate(name).unwrap()
}

const HOST: &str = "pairing.test";

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn ca_file(ca: &TestCa) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ca.cert_pem().unwrap()).unwrap();
    file
}

fn roots_for(ca: &TestCa) -> Arc<RootCertStore> {
    let file = ca_file(ca);
    trust_anchors(Some(file.path())).unwrap()
}

fn server_config(
    ca: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_ca: Option<&TestCa>,
) -> Arc<ServerConfig> {
    let server = ca.issue_server_for(HOST).unwrap();
    let chain = vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
    let builder = ServerConfig::builder_with_provider(ring())
        .with_protocol_versions(versions)
        .unwrap();
    let builder = match client_ca {
        Some(client_ca) => {
            let mut roots = RootCertStore::empty();
            roots
                .add(
                    CertificateDer::from_pem_slice(client_ca.cert_pem().unwrap().as_bytes())
                        .unwrap(),
                )
                .unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ring())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

/// Runs the handshake to completion or to the first error on either side.
fn handshake(
    client: ClientConfig,
    server: Arc<ServerConfig>,
    name: &str,
) -> Result<ServerConnection, rustls::Error> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut server = ServerConnection::new(server).unwrap();
    loop {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        let mut rd = &to_server[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server.process_new_packets()?;
        let mut to_client = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut to_client).unwrap();
        }
        let mut rd = &to_client[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
        }
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(server);
        }
        assert!(
            !(to_server.is_empty() && to_client.is_empty()),
            "handshake stalled"
        );
    }
}

#[test]
fn http_config_trusts_a_server_signed_by_the_ca_file() {
    let ca = new_ca("pairing ca");
    let client = http_config(roots_for(&ca)).unwrap();
    let server = server_config(&ca, rustls::ALL_VERSIONS, None);
    handshake(client, server, HOST).unwrap();
}

#[test]
fn http_config_rejects_a_server_from_an_unknown_ca() {
    let trusted = new_ca("trusted");
    let other = new_ca("other");
    let client = http_config(roots_for(&trusted)).unwrap();
    let err = handshake(
        client,
        server_config(&other, rustls::ALL_VERSIONS, None),
        HOST,
    )
    .unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
}

#[test]
fn http_config_rejects_a_certificate_for_another_name() {
    let ca = new_ca("ca");
    let client = http_config(roots_for(&ca)).unwrap();
    let err = handshake(
        client,
        server_config(&ca, rustls::ALL_VERSIONS, None),
        "other.test",
    )
    .unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
}

#[test]
fn mqtt_config_authenticates_to_a_tls12_only_broker_with_the_client_certificate() {
    let ca = new_ca("ca");
    let now = SystemTime::now();
    let (key, cert) = device_certificate(
        &ca,
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let client = mqtt_config(roots_for(&ca), &cert, key).unwrap();
    let server = server_config(&ca, &[&rustls::version::TLS12], Some(&ca));
    let server = handshake(client, server, HOST).unwrap();
    assert_eq!(
        server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let presented = server.peer_certificates().unwrap();
    assert_eq!(
        presented[0],
        CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()
    );
}

#[test]
fn a_missing_ca_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.pem");
    let err = trust_anchors(Some(&path)).unwrap_err();
    assert!(matches!(err, TlsError::ReadCaFile { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.pem"), "{err}");
}

#[test]
fn a_ca_file_without_certificates_is_an_error_naming_it() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "just text\n").unwrap();
    let err = trust_anchors(Some(file.path())).unwrap_err();
    assert!(matches!(err, TlsError::EmptyCaFile { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&file.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn mqtt_config_refuses_a_certificate_of_another_key() {
    let ca = new_ca("ca");
    let now = SystemTime::now();
    let (_, cert) = device_certificate(&ca, now, now + Duration::from_secs(60));
    let other: Arc<dyn DeviceKey> = Arc::new(MemoryKey::generate().unwrap());
    let err = mqtt_config(roots_for(&ca), &cert, other).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
}

#[test]
fn mqtt_config_refuses_an_empty_certificate_chain() {
    let ca = new_ca("ca");
    let now = SystemTime::now();
    let (key, _) = device_certificate(&ca, now, now + Duration::from_secs(60));
    let err = mqtt_config(roots_for(&ca), "", key).unwrap_err();
    assert!(matches!(err, TlsError::MissingClientCertificate), "{err:?}");
}
