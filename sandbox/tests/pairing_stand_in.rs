//! The Pairing stand-in started alone (no broker) for unit tests, and the hooks those tests
//! use: a base path, verbatim answers, the issued name, and a look at each request as it is
//! answered.

mod support;

use std::sync::{Arc, Mutex};

use astarte_sandbox::{
    DeviceStatus, PairingOptions, PairingStandIn, RequestRecord, STAND_IN_BROKER_URL, SandboxError,
    Verification,
};
use serde_json::json;
use support::{ID, bearer, csr, http, http_raw, new_key, register_at, subject_cn};

async fn stand_in(opts: PairingOptions) -> PairingStandIn {
    PairingStandIn::start(opts).await.unwrap()
}

fn device_url(pairing: &PairingStandIn, id: &str) -> String {
    format!("{}/v1/{}/devices/{id}", pairing.url(), pairing.realm())
}

async fn register(pairing: &PairingStandIn, id: &str) -> String {
    register_at(&pairing.url(), pairing.realm(), &pairing.agent_token(), id).await
}

async fn request_certificate(pairing: &PairingStandIn, id: &str, secret: &str) -> String {
    let url = format!(
        "{}/protocols/astarte_mqtt_v1/credentials",
        device_url(pairing, id)
    );
    let body = json!({"data": {"csr": csr(&new_key(), "ignored")}});
    let reply = http("POST", &url, Some(&bearer(secret)), Some(body)).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["data"]["client_crt"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn alone_it_registers_and_issues_certificates_from_its_own_ca() {
    let pairing = stand_in(PairingOptions::default()).await;
    let secret = register(&pairing, ID).await;
    let info = http(
        "GET",
        &device_url(&pairing, ID),
        Some(&bearer(&secret)),
        None,
    )
    .await;
    assert_eq!(
        info.body["data"]["protocols"]["astarte_mqtt_v1"]["broker_url"],
        STAND_IN_BROKER_URL
    );
    let pem = request_certificate(&pairing, ID, &secret).await;
    assert_eq!(subject_cn(&pem), format!("test/{ID}"));
    assert!(matches!(
        pairing.ca().verify(&pem),
        Verification::Valid { .. }
    ));
    assert_eq!(pairing.state().status(ID), Some(DeviceStatus::Confirmed));
}

#[tokio::test]
async fn it_reports_the_broker_url_it_was_given() {
    let opts = PairingOptions {
        broker_url: "mqtts://broker.test:8883/".to_owned(),
        ..PairingOptions::default()
    };
    let pairing = stand_in(opts).await;
    let secret = register(&pairing, ID).await;
    let info = http(
        "GET",
        &device_url(&pairing, ID),
        Some(&bearer(&secret)),
        None,
    )
    .await;
    assert_eq!(
        info.body["data"]["protocols"]["astarte_mqtt_v1"]["broker_url"],
        "mqtts://broker.test:8883/"
    );
}

#[tokio::test]
async fn with_a_base_path_it_answers_only_under_it() {
    let opts = PairingOptions {
        base_path: "pairing/".to_owned(),
        ..PairingOptions::default()
    };
    let pairing = stand_in(opts).await;
    assert!(pairing.url().ends_with("/pairing"), "{}", pairing.url());
    let under = http(
        "GET",
        &format!("{}/v1/test/version", pairing.url()),
        None,
        None,
    )
    .await;
    assert_eq!(under.status, 200);
    let root = pairing.url().trim_end_matches("/pairing").to_owned();
    let outside = http("GET", &format!("{root}/v1/test/version"), None, None).await;
    assert_eq!(outside.status, 404);
    let paths: Vec<_> = pairing
        .state()
        .requests()
        .into_iter()
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        paths,
        [
            ("/pairing/v1/test/version".to_owned(), 200),
            ("/v1/test/version".to_owned(), 404)
        ]
    );
}

#[tokio::test]
async fn an_invalid_realm_is_refused() {
    let opts = PairingOptions {
        realm: "Not-A-Realm".to_owned(),
        ..PairingOptions::default()
    };
    let result = PairingStandIn::start(opts).await;
    assert!(matches!(result, Err(SandboxError::InvalidRealm(_))));
}

#[tokio::test]
async fn a_verbatim_answer_is_sent_once_then_the_api_answers_again() {
    let pairing = stand_in(PairingOptions::default()).await;
    let url = format!("{}/v1/test/version", pairing.url());
    pairing
        .state()
        .answer_next(200, "text/html", "<html>proxy</html>");
    pairing.state().fail_next(1, 503);
    let raw = http_raw("GET", &url, None, None).await;
    assert_eq!((raw.status, raw.body.as_str()), (200, "<html>proxy</html>"));
    assert!(
        raw.head
            .to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{}",
        raw.head
    );
    // The fault queued behind it comes next, then the real answer.
    let statuses = [
        http("GET", &url, None, None).await.status,
        http("GET", &url, None, None).await.status,
    ];
    assert_eq!(statuses, [503, 200]);
    let record = |status| RequestRecord {
        method: "GET".to_owned(),
        path: "/v1/test/version".to_owned(),
        status,
    };
    assert_eq!(
        pairing.state().requests(),
        [record(200), record(503), record(200)]
    );
}

#[tokio::test]
async fn certificates_name_the_overriding_cn_until_it_is_cleared() {
    let pairing = stand_in(PairingOptions::default()).await;
    let secret = register(&pairing, ID).await;
    pairing
        .state()
        .set_issued_cn(Some("test/someone-else".to_owned()));
    let wrong = request_certificate(&pairing, ID, &secret).await;
    assert_eq!(subject_cn(&wrong), "test/someone-else");
    pairing.state().set_issued_cn(None);
    let right = request_certificate(&pairing, ID, &secret).await;
    assert_eq!(subject_cn(&right), format!("test/{ID}"));
}

/// Seconds from now until the certificate's `notAfter`.
fn lifetime_left(pairing: &PairingStandIn, pem: &str) -> i64 {
    let Verification::Valid { until_unix } = pairing.ca().verify(pem) else {
        panic!("the certificate is valid");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    until_unix - now
}

#[tokio::test]
async fn certificates_live_the_overriding_validity_until_it_is_cleared() {
    let pairing = stand_in(PairingOptions::default()).await;
    let secret = register(&pairing, ID).await;
    pairing
        .state()
        .set_certificate_validity(Some(std::time::Duration::from_secs(30)));
    let short = request_certificate(&pairing, ID, &secret).await;
    assert!((0..=30).contains(&lifetime_left(&pairing, &short)));
    pairing.state().set_certificate_validity(None);
    let long = request_certificate(&pairing, ID, &secret).await;
    assert!(
        lifetime_left(&pairing, &long) > 80 * 86_400,
        "back to about 91 days"
    );
}

#[tokio::test]
async fn the_request_hook_runs_before_the_client_has_each_answer() {
    let pairing = stand_in(PairingOptions::default()).await;
    let answers_received = Arc::new(Mutex::new(0u32));
    let seen = Arc::new(Mutex::new(Vec::new()));
    pairing.state().on_request({
        let (answers_received, seen) = (answers_received.clone(), seen.clone());
        // Weak: the state keeps the hook.
        let state = Arc::downgrade(pairing.state());
        move |record: &RequestRecord| {
            let received = *answers_received.lock().unwrap();
            let listed = state.upgrade().map_or(usize::MAX, |s| s.requests().len());
            seen.lock().unwrap().push((record.status, received, listed));
        }
    });
    let url = format!("{}/v1/test/version", pairing.url());
    for _ in 0..2 {
        http("GET", &url, None, None).await;
        *answers_received.lock().unwrap() += 1;
    }
    // (status, answers the client had, requests listed): each one seen before its answer.
    assert_eq!(*seen.lock().unwrap(), [(200, 0, 0), (200, 1, 1)]);
}
