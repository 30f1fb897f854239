//! The client against the sandbox's Pairing stand-in: what it sends is what the stand-in
//! accepts, and malformed answers come from its `answer_next` hook.

use std::sync::Arc;
use std::time::SystemTime;

use astarte_sandbox::{PairingOptions, PairingStandIn};
use rstest::rstest;
use serde_json::json;

use super::*;
use crate::credentials::{DeviceKey, MemoryKey};
use crate::pairing::csr;
use crate::pairing::{BrokerUrl, DeviceStatus};

const REALM: &str = "test";
const DEVICE: &str = "2TBn-jNESuuHamE2Zo1anA";
const CN: &str = "test/2TBn-jNESuuHamE2Zo1anA";
/// Well-formed, but never issued by the stand-in.
const SECRET: &str = "TTkd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1IgidtPOs=";
/// Shaped like a JWT, signed by no one.
const FORGED_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.agent-token.sig";
const JSON: &str = "application/json";

async fn stand_in() -> PairingStandIn {
    start(PairingOptions::default()).await
}

/// A TLS config that trusts nothing: these tests talk plain http to the stand-in.
fn plain_http_tls() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

async fn start(opts: PairingOptions) -> PairingStandIn {
    PairingStandIn::start(opts).await.unwrap()
}

fn client_at(base: &str) -> PairingClient {
    let tls = plain_http_tls();
    PairingClient::new(
        Url::parse(base).unwrap(),
        REALM.into(),
        DEVICE.into(),
        tls,
        Duration::from_secs(5),
    )
    .unwrap()
}

fn client(pairing: &PairingStandIn) -> PairingClient {
    client_at(&pairing.url())
}

fn secret(text: &str) -> CredentialsSecret {
    CredentialsSecret::parse(text).unwrap()
}

/// The device registered out of band (pending); its secret.
fn registered(pairing: &PairingStandIn) -> CredentialsSecret {
    secret(&pairing.state().register(DEVICE).unwrap())
}

/// A fresh key and a CSR it signed for the device.
fn key_and_csr() -> (Arc<MemoryKey>, String) {
    let key = Arc::new(MemoryKey::generate().unwrap());
    let csr = csr::certificate_request(CN, key.clone()).unwrap();
    (key, csr)
}

/// The device registered and confirmed (it obtained a certificate); its secret and
/// certificate.
async fn confirmed(pairing: &PairingStandIn) -> (CredentialsSecret, String) {
    let secret = registered(pairing);
    let cert = client(pairing)
        .request_certificate(&secret, &key_and_csr().1)
        .await
        .unwrap();
    (secret, cert)
}

/// `(method, path, status)` of every request the stand-in answered.
fn requests(pairing: &PairingStandIn) -> Vec<(String, String, u16)> {
    let records = pairing.state().requests().into_iter();
    records.map(|r| (r.method, r.path, r.status)).collect()
}

#[rstest]
#[case::root_with_slash("", "/", "/v1/test/devices/2TBn-jNESuuHamE2Zo1anA")]
#[case::prefix_without_slash("/pairing", "", "/pairing/v1/test/devices/2TBn-jNESuuHamE2Zo1anA")]
#[case::prefix_with_slash("/pairing", "/", "/pairing/v1/test/devices/2TBn-jNESuuHamE2Zo1anA")]
#[tokio::test]
async fn paths_are_appended_to_the_base_url(
    #[case] base_path: &str,
    #[case] tail: &str,
    #[case] expected: &str,
) {
    let opts = PairingOptions {
        base_path: base_path.into(),
        ..PairingOptions::default()
    };
    let pairing = start(opts).await;
    let secret = registered(&pairing);
    client_at(&format!("{}{tail}", pairing.url()))
        .device_info(&secret)
        .await
        .unwrap();
    assert_eq!(requests(&pairing)[0].1, expected);
}

#[tokio::test]
async fn register_posts_the_hw_id_with_the_agent_token() {
    let pairing = stand_in().await;
    let got = client(&pairing)
        .register(&pairing.agent_token())
        .await
        .unwrap();
    // The stand-in registered the device named by `hw_id`, authorized by the bearer token.
    assert_eq!(
        pairing.state().secret(DEVICE).as_deref(),
        Some(got.expose())
    );
    assert_eq!(
        requests(&pairing),
        [("POST".into(), "/v1/test/agent/devices".into(), 201)]
    );
}

#[tokio::test]
async fn any_422_on_registration_is_already_registered_with_the_server_text() {
    let pairing = stand_in().await;
    let body = json!({"errors": {"error_name": ["already_registered"]}});
    pairing.state().answer_next(422, JSON, body.to_string());
    let err = client(&pairing)
        .register(&pairing.agent_token())
        .await
        .unwrap_err();
    match err {
        PairingError::AlreadyRegistered { detail } => {
            assert!(detail.contains("already_registered"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_confirmed_device_registering_again_is_already_registered() {
    let pairing = stand_in().await;
    confirmed(&pairing).await;
    let err = client(&pairing)
        .register(&pairing.agent_token())
        .await
        .unwrap_err();
    match err {
        PairingError::AlreadyRegistered { detail } => {
            assert!(detail.contains("Device already registered"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_secret_from_registration_is_an_invalid_response() {
    let pairing = stand_in().await;
    let body = json!({"data": {"credentials_secret": "short"}});
    pairing.state().answer_next(201, JSON, body.to_string());
    let err = client(&pairing)
        .register(&pairing.agent_token())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PairingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

#[rstest]
#[case::unauthorized(401, "Unauthorized")]
#[case::forbidden(403, "Forbidden")]
#[case::not_found(404, "NotFound")]
#[case::unprocessable(422, "InvalidRequest")]
#[case::rate_limited(429, "InvalidRequest")]
#[case::server(500, "Server")]
#[case::unavailable(503, "Server")]
#[case::redirect_not_followed(301, "InvalidResponse")]
#[tokio::test]
async fn device_info_error_statuses_map_to_variants(#[case] status: u16, #[case] variant: &str) {
    let pairing = stand_in().await;
    let secret = registered(&pairing);
    pairing.state().fail_next(1, status);
    let err = client(&pairing).device_info(&secret).await.unwrap_err();
    assert!(format!("{err:?}").starts_with(variant), "{err:?}");
}

#[tokio::test]
async fn errors_never_show_the_secret_or_the_token() {
    let pairing = stand_in().await;
    registered(&pairing);
    let powerless = pairing.token_with_claims(&[]).unwrap();
    let client = client(&pairing);
    let errors = [
        // 403: a secret Pairing doesn't know for this device.
        client.device_info(&secret(SECRET)).await.unwrap_err(),
        // 401: a token Pairing can't verify.
        client.register(FORGED_TOKEN).await.unwrap_err(),
        // 403: a valid token without permission.
        client.register(&powerless).await.unwrap_err(),
    ];
    for err in errors {
        let shown = format!("{err} {err:?} {client:?}");
        for hidden in [SECRET, FORGED_TOKEN, &powerless] {
            assert!(!shown.contains(hidden), "{shown}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let err = client_at(&url)
        .device_info(&secret(SECRET))
        .await
        .unwrap_err();
    assert!(matches!(err, PairingError::Network { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn device_info_reports_status_and_broker() {
    let opts = PairingOptions {
        broker_url: "mqtts://broker.example.com:8883/".into(),
        ..PairingOptions::default()
    };
    let pairing = start(opts).await;
    let (secret, _) = confirmed(&pairing).await;
    let info = client(&pairing).device_info(&secret).await.unwrap();
    assert_eq!(info.status, DeviceStatus::Confirmed);
    assert_eq!(
        info.broker_url,
        BrokerUrl {
            host: "broker.example.com".into(),
            port: 8883
        }
    );
    // The stand-in answers only a request bearing the device's secret.
    assert_eq!(pairing.state().info_requests(DEVICE), 1);
}

#[rstest]
#[case::no_port(|p: &PairingStandIn| {
    p.state().set_broker_url(Some("mqtts://broker.example.com/".into()));
})]
#[case::missing_protocols(|p: &PairingStandIn| {
    let body = json!({"data": {"status": "pending"}});
    p.state().answer_next(200, JSON, body.to_string());
})]
#[case::not_wrapped(|p: &PairingStandIn| {
    let body = json!({"status": "pending"});
    p.state().answer_next(200, JSON, body.to_string());
})]
#[tokio::test]
async fn unusable_device_info_is_an_invalid_response(#[case] answer: fn(&PairingStandIn)) {
    let pairing = stand_in().await;
    let secret = registered(&pairing);
    answer(&pairing);
    let err = client(&pairing).device_info(&secret).await.unwrap_err();
    assert!(
        matches!(err, PairingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_non_json_success_body_is_an_invalid_response() {
    let pairing = stand_in().await;
    let secret = registered(&pairing);
    pairing
        .state()
        .answer_next(200, "text/html", "<html>proxy</html>");
    let err = client(&pairing).device_info(&secret).await.unwrap_err();
    assert!(
        matches!(err, PairingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_oversized_answer_is_an_invalid_response() {
    let pairing = stand_in().await;
    let secret = registered(&pairing);
    pairing
        .state()
        .answer_next(200, JSON, vec![b' '; MAX_BODY + 1]);
    let err = client(&pairing).device_info(&secret).await.unwrap_err();
    match err {
        PairingError::InvalidResponse { reason } => {
            assert!(reason.contains("larger than"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn request_certificate_sends_the_csr_and_returns_the_certificate() {
    let pairing = stand_in().await;
    let secret = registered(&pairing);
    let (key, csr) = key_and_csr();
    let got = client(&pairing)
        .request_certificate(&secret, &csr)
        .await
        .unwrap();
    assert_eq!(
        pairing.state().issued_certificates(DEVICE),
        vec![got.clone()]
    );
    // Issued for the key of the CSR that was sent.
    let info = csr::inspect_certificate(&got, key.public_key()).unwrap();
    assert_eq!(info.common_name, CN);
    assert_eq!(
        requests(&pairing)[0].1,
        "/v1/test/devices/2TBn-jNESuuHamE2Zo1anA/protocols/astarte_mqtt_v1/credentials"
    );
}

#[rstest]
#[case::two(2)]
#[case::none(0)]
#[tokio::test]
async fn a_certificate_answer_without_exactly_one_certificate_is_rejected(#[case] count: usize) {
    let pairing = stand_in().await;
    let secret = registered(&pairing);
    let pem: String = (0..count)
        .map(|_| {
            let issued = pairing.ca().issue_client(CN, Duration::from_secs(60));
            issued.unwrap().cert_pem
        })
        .collect();
    let body = json!({"data": {"client_crt": pem}});
    pairing.state().answer_next(201, JSON, body.to_string());
    let err = client(&pairing)
        .request_certificate(&secret, &key_and_csr().1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PairingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

#[rstest]
#[case::valid(false, true)]
#[case::expired(true, false)]
#[tokio::test]
async fn verify_certificate_decodes_only_valid(#[case] expired: bool, #[case] valid: bool) {
    let pairing = stand_in().await;
    let (secret, issued) = confirmed(&pairing).await;
    let cert = if expired {
        let hour = Duration::from_secs(3600);
        let now = SystemTime::now();
        let csr = key_and_csr().1;
        let ca = pairing.ca();
        ca.sign_csr_between(&csr, CN, now - 2 * hour, now - hour)
            .unwrap()
    } else {
        issued
    };
    let got = client(&pairing)
        .verify_certificate(&secret, &cert)
        .await
        .unwrap();
    assert_eq!(got, valid);
    assert_eq!(pairing.state().verify_requests(DEVICE), 1);
    let (_, path, _) = requests(&pairing).pop().unwrap();
    assert!(path.ends_with("/credentials/verify"), "{path}");
}

#[test]
fn a_base_url_that_cannot_take_paths_is_refused() {
    let tls = plain_http_tls();
    let url = Url::parse("mailto:pairing@example.com").unwrap();
    let err = PairingClient::new(
        url,
        REALM.into(),
        DEVICE.into(),
        tls,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(
        matches!(err, PairingError::InvalidBaseUrl { .. }),
        "{err:?}"
    );
}
