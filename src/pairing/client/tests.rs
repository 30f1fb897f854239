use std::sync::Arc;

use rstest::rstest;
use serde_json::json;

use super::*;
use crate::pairing::test_support::{Reply, StubServer, TestCa};
use crate::pairing::{BrokerUrl, DeviceStatus};

const REALM: &str = "test";
const DEVICE: &str = "2TBn-jNESuuHamE2Zo1anA";
const SECRET: &str = "TTkd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1IgidtPOs=";
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.agent-token.sig";

fn client(base: Url) -> PairingClient {
    let tls = crate::tls::http_config(Arc::new(rustls::RootCertStore::empty())).unwrap();
    PairingClient::new(
        base,
        REALM.into(),
        DEVICE.into(),
        tls,
        Duration::from_secs(5),
    )
    .unwrap()
}

fn secret() -> CredentialsSecret {
    CredentialsSecret::parse(SECRET).unwrap()
}

async fn stub(status: u16, body: serde_json::Value) -> StubServer {
    StubServer::start(move |_| Reply::json(status, body.clone())).await
}

fn info_body(broker_url: &str) -> serde_json::Value {
    json!({"data": {"version": "1.3.0", "status": "confirmed",
        "protocols": {"astarte_mqtt_v1": {"broker_url": broker_url}}}})
}

#[rstest]
#[case::root_with_slash("", "/v1/test/devices/2TBn-jNESuuHamE2Zo1anA")]
#[case::prefix_without_slash("pairing", "/pairing/v1/test/devices/2TBn-jNESuuHamE2Zo1anA")]
#[case::prefix_with_slash("pairing/", "/pairing/v1/test/devices/2TBn-jNESuuHamE2Zo1anA")]
#[tokio::test]
async fn paths_are_appended_to_the_base_url(#[case] prefix: &str, #[case] expected: &str) {
    let server = stub(200, info_body("mqtts://b:8883/")).await;
    let base = server.url.join(prefix).unwrap();
    client(base).device_info(&secret()).await.unwrap();
    assert_eq!(server.requests()[0].path, expected);
}

#[tokio::test]
async fn register_posts_the_hw_id_with_the_agent_token() {
    let server = stub(201, json!({"data": {"credentials_secret": SECRET}})).await;
    let got = client(server.url.clone()).register(TOKEN).await.unwrap();
    assert_eq!(got, secret());
    let request = &server.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/test/agent/devices")
    );
    assert_eq!(
        request.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(request.json(), json!({"data": {"hw_id": DEVICE}}));
}

#[tokio::test]
async fn any_422_on_registration_is_already_registered_with_the_server_text() {
    let server = stub(
        422,
        json!({"errors": {"error_name": ["already_registered"]}}),
    )
    .await;
    let err = client(server.url.clone())
        .register(TOKEN)
        .await
        .unwrap_err();
    match err {
        PairingError::AlreadyRegistered { detail } => {
            assert!(detail.contains("already_registered"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_secret_from_registration_is_an_invalid_response() {
    let server = stub(201, json!({"data": {"credentials_secret": "short"}})).await;
    let err = client(server.url.clone())
        .register(TOKEN)
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
    let server = stub(status, json!({"errors": {"detail": "nope"}})).await;
    let err = client(server.url.clone())
        .device_info(&secret())
        .await
        .unwrap_err();
    assert!(format!("{err:?}").starts_with(variant), "{err:?}");
}

#[tokio::test]
async fn errors_never_show_the_secret_or_the_token() {
    let server = stub(401, json!({"errors": {"detail": "Unauthorized"}})).await;
    let client = client(server.url.clone());
    let errors = [
        client.device_info(&secret()).await.unwrap_err(),
        client.register(TOKEN).await.unwrap_err(),
    ];
    for err in errors {
        let shown = format!("{err} {err:?} {client:?}");
        assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let err = client(url).device_info(&secret()).await.unwrap_err();
    assert!(matches!(err, PairingError::Network { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn device_info_reports_status_and_broker() {
    let server = stub(200, info_body("mqtts://broker.example.com:8883/")).await;
    let info = client(server.url.clone())
        .device_info(&secret())
        .await
        .unwrap();
    assert_eq!(info.status, DeviceStatus::Confirmed);
    assert_eq!(
        info.broker_url,
        BrokerUrl {
            host: "broker.example.com".into(),
            port: 8883
        }
    );
    assert_eq!(
        server.requests()[0].authorization.as_deref(),
        Some(&*format!("Bearer {SECRET}"))
    );
}

#[rstest]
#[case::no_port(info_body("mqtts://broker.example.com/"))]
#[case::missing_protocols(json!({"data": {"status": "pending"}}))]
#[case::not_wrapped(json!({"status": "pending"}))]
#[tokio::test]
async fn unusable_device_info_is_an_invalid_response(#[case] body: serde_json::Value) {
    let server = stub(200, body).await;
    let err = client(server.url.clone())
        .device_info(&secret())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PairingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_non_json_success_body_is_an_invalid_response() {
    let server = StubServer::start(|_| Reply::raw(200, "<html>proxy</html>")).await;
    let err = client(server.url.clone())
        .device_info(&secret())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PairingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn request_certificate_sends_the_csr_and_returns_the_certificate() {
    let ca = TestCa::new("ca");
    let (_, cert) = ca.client_cert(
        "test/x",
        std::time::SystemTime::now(),
        std::time::SystemTime::now(),
    );
    let server = stub(201, json!({"data": {"client_crt": cert}})).await;
    let got = client(server.url.clone())
        .request_certificate(&secret(), "CSR PEM")
        .await
        .unwrap();
    assert_eq!(got, cert);
    let request = &server.requests()[0];
    assert_eq!(
        request.path,
        "/v1/test/devices/2TBn-jNESuuHamE2Zo1anA/protocols/astarte_mqtt_v1/credentials"
    );
    assert_eq!(request.json(), json!({"data": {"csr": "CSR PEM"}}));
}

#[rstest]
#[case::two(2)]
#[case::none(0)]
#[tokio::test]
async fn a_certificate_answer_without_exactly_one_certificate_is_rejected(#[case] count: usize) {
    let ca = TestCa::new("ca");
    let now = std::time::SystemTime::now();
    let pem: String = (0..count)
        .map(|_| ca.client_cert("test/x", now, now).1)
        .collect();
    let server = stub(201, json!({"data": {"client_crt": pem}})).await;
    let err = client(server.url.clone())
        .request_certificate(&secret(), "CSR")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PairingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

#[rstest]
#[case::valid(json!({"data": {"valid": true, "timestamp": "2025-09-18 16:02:06.123Z", "until": "2035-09-16 16:02:06.000Z"}}), true)]
#[case::invalid(json!({"data": {"valid": false, "timestamp": 1, "cause": "EXPIRED", "details": null}}), false)]
#[tokio::test]
async fn verify_certificate_decodes_only_valid(
    #[case] body: serde_json::Value,
    #[case] valid: bool,
) {
    let server = stub(200, body).await;
    let got = client(server.url.clone())
        .verify_certificate(&secret(), "PEM")
        .await
        .unwrap();
    assert_eq!(got, valid);
    let request = &server.requests()[0];
    assert!(
        request.path.ends_with("/credentials/verify"),
        "{}",
        request.path
    );
    assert_eq!(request.json(), json!({"data": {"client_crt": "PEM"}}));
}

#[test]
fn a_base_url_that_cannot_take_paths_is_refused() {
    let tls = crate::tls::http_config(Arc::new(rustls::RootCertStore::empty())).unwrap();
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
