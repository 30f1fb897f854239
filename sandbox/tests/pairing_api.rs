//! The Pairing stand-in answers like Astarte 1.3/1.4: status codes and bodies.

mod support;

use astarte_sandbox::{DeviceStatus, RequestRecord, Sandbox, SandboxOptions};
use rstest::rstest;
use serde_json::{Value, json};
use support::{
    ID, OTHER_ID, bearer, credentials_url, csr, device_url, http, new_key, register, subject_cn,
};

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).await.unwrap()
}

fn agent_url(sb: &Sandbox) -> String {
    format!("{}/v1/{}/agent/devices", sb.pairing_url(), sb.realm())
}

fn hw_id(id: &str) -> Option<Value> {
    Some(json!({"data": {"hw_id": id}}))
}

fn detail(text: &str) -> Value {
    json!({"errors": {"detail": text}})
}

#[tokio::test]
async fn registration_is_refused_without_a_valid_token_of_the_realm() {
    let sb = sandbox().await;
    let other = sandbox().await;
    let url = agent_url(&sb);
    let cases = [
        (None, 401, detail("Missing authorization token")),
        (
            Some("Basic abc".to_owned()),
            401,
            detail("Missing authorization token"),
        ),
        (Some(bearer("not-a-jwt")), 401, detail("Invalid JWT token")),
        (
            Some(bearer(&other.agent_token())),
            401,
            detail("Invalid JWT token"),
        ),
        (
            Some(bearer(&sb.expired_token().unwrap())),
            401,
            detail("Invalid JWT token"),
        ),
    ];
    for (auth, status, body) in cases {
        let reply = http("POST", &url, auth.as_deref(), hw_id(ID)).await;
        assert_eq!((reply.status, reply.body), (status, body), "auth {auth:?}");
    }
    assert_eq!(sb.pairing().status(ID), None);
}

#[rstest]
#[case::post_only(&["POST::agent/devices"], 201)]
#[case::everything(&[".*::.*"], 201)]
#[case::other_method(&["DELETE::agent/devices"], 403)]
#[case::prefix_is_not_enough(&["POST::agent"], 403)]
#[case::no_claim(&[], 403)]
#[tokio::test]
async fn registration_needs_an_a_pa_claim_matching_post_agent_devices(
    #[case] a_pa: &[&str],
    #[case] status: u16,
) {
    let sb = sandbox().await;
    let token = sb.token_with_claims(a_pa).unwrap();
    let reply = http("POST", &agent_url(&sb), Some(&bearer(&token)), hw_id(ID)).await;
    assert_eq!(reply.status, status, "{reply:?}");
    if status == 403 {
        let text = "Unauthorized access to POST agent/devices. Please verify your permissions";
        assert_eq!(reply.body, detail(text));
    }
}

#[tokio::test]
async fn unknown_realm_is_forbidden_before_authentication() {
    let sb = sandbox().await;
    let url = format!("{}/v1/other/agent/devices", sb.pairing_url());
    let reply = http("POST", &url, None, hw_id(ID)).await;
    assert_eq!((reply.status, reply.body), (403, detail("Forbidden")));
}

#[rstest]
#[case::missing(json!({"data": {}}), "can't be blank")]
#[case::empty(json!({"data": {"hw_id": ""}}), "can't be blank")]
#[case::not_base64(json!({"data": {"hw_id": "not base64!"}}), "is not a valid base64 encoded 128 bits id")]
#[case::too_short(json!({"data": {"hw_id": "V_zv6ThCCtXWveQ8"}}), "is not a valid base64 encoded 128 bits id")]
#[tokio::test]
async fn registration_validates_hw_id(#[case] body: Value, #[case] error: &str) {
    let sb = sandbox().await;
    let auth = bearer(&sb.agent_token());
    let reply = http("POST", &agent_url(&sb), Some(&auth), Some(body)).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body, json!({"errors": {"hw_id": [error]}}));
}

#[tokio::test]
async fn registering_a_pending_device_again_replaces_its_secret() {
    let sb = sandbox().await;
    let first = register(&sb, ID).await;
    let second = register(&sb, ID).await;
    assert_eq!(second.len(), 44);
    assert_ne!(first, second);
    let old = http("GET", &device_url(&sb, ID), Some(&bearer(&first)), None).await;
    assert_eq!((old.status, old.body), (403, detail("Forbidden")));
    let new = http("GET", &device_url(&sb, ID), Some(&bearer(&second)), None).await;
    assert_eq!(new.status, 200);
    assert_eq!(sb.pairing().registrations(ID), 2);
}

#[tokio::test]
async fn confirmed_device_cannot_register_again_until_unregistered() {
    let sb = sandbox().await;
    support::pair(&sb, ID).await;
    let auth = bearer(&sb.agent_token());
    let again = http("POST", &agent_url(&sb), Some(&auth), hw_id(ID)).await;
    assert_eq!(
        (again.status, again.body),
        (422, detail("Device already registered"))
    );

    let delete_url = format!("{}/{ID}", agent_url(&sb));
    let deleted = http("DELETE", &delete_url, Some(&auth), None).await;
    assert_eq!((deleted.status, deleted.body), (204, Value::Null));
    assert_eq!(sb.pairing().status(ID), Some(DeviceStatus::Pending));
    assert_eq!(sb.pairing().secret(ID), None);
    register(&sb, ID).await;

    let unknown = format!("{}/{OTHER_ID}", agent_url(&sb));
    let missing = http("DELETE", &unknown, Some(&auth), None).await;
    assert_eq!(
        (missing.status, missing.body),
        (404, detail("Device not found"))
    );
}

#[tokio::test]
async fn device_info_reports_status_and_broker_url() {
    let sb = sandbox().await;
    let secret = register(&sb, ID).await;
    let url = device_url(&sb, ID);
    // Pairing's bearer regex is case-insensitive and allows a colon.
    let reply = http("GET", &url, Some(&format!("bearer: {secret}")), None).await;
    let expected = json!({"data": {
        "version": "1.4.0-sandbox",
        "status": "pending",
        "protocols": {"astarte_mqtt_v1": {"broker_url": sb.broker_url()}},
    }});
    assert_eq!((reply.status, reply.body), (200, expected));
    assert!(sb.broker_url().starts_with("mqtts://localhost:"));
    sb.pairing().set_inhibited(ID, true);
    let reply = http("GET", &url, Some(&bearer(&secret)), None).await;
    assert_eq!(reply.body["data"]["status"], "inhibited");
    assert_eq!(sb.pairing().info_requests(ID), 2);
}

#[tokio::test]
async fn device_endpoints_refuse_missing_wrong_and_unknown_credentials() {
    let sb = sandbox().await;
    let secret = register(&sb, ID).await;
    let unauthorized = detail("Unauthorized");
    let wrong_realm = format!("{}/v1/other/devices/{ID}", sb.pairing_url());
    let cases = [
        (device_url(&sb, ID), None, 401, unauthorized),
        (
            device_url(&sb, ID),
            Some(bearer("nope")),
            403,
            detail("Forbidden"),
        ),
        (
            device_url(&sb, OTHER_ID),
            Some(bearer(&secret)),
            404,
            detail("Device not found"),
        ),
        (wrong_realm, Some(bearer(&secret)), 403, detail("Forbidden")),
    ];
    for (url, auth, status, body) in cases {
        let reply = http("GET", &url, auth.as_deref(), None).await;
        assert_eq!((reply.status, reply.body), (status, body), "{url} {auth:?}");
    }
}

#[tokio::test]
async fn certificate_is_issued_for_the_forced_common_name_and_confirms_the_device() {
    let sb = sandbox().await;
    let secret = register(&sb, ID).await;
    let body = json!({"data": {"csr": csr(&new_key(), "someone/else")}});
    let reply = http(
        "POST",
        &credentials_url(&sb, ID),
        Some(&bearer(&secret)),
        Some(body),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let pem = reply.body["data"]["client_crt"].as_str().unwrap();
    assert_eq!(subject_cn(pem), format!("test/{ID}"));
    assert_eq!(sb.pairing().status(ID), Some(DeviceStatus::Confirmed));
    assert_eq!(sb.pairing().issued_certificates(ID), vec![pem.to_owned()]);
    assert_eq!(sb.pairing().certificate_requests(ID), 1);
}

#[tokio::test]
async fn certificate_request_errors_follow_pairing() {
    let sb = sandbox().await;
    let secret = register(&sb, ID).await;
    let good = json!({"data": {"csr": csr(&new_key(), "x")}});
    let bad_csr = json!({"data": {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"}});
    let invalid = json!({"errors": {"csr": ["is not a valid PEM CSR"]}});
    let blank = json!({"errors": {"csr": ["can't be blank"]}});
    let cases = [
        (ID, bearer(&secret), bad_csr, 422, invalid),
        (ID, bearer(&secret), json!({"data": {}}), 422, blank),
        (
            OTHER_ID,
            bearer(&secret),
            good.clone(),
            404,
            detail("Device not found"),
        ),
        (ID, bearer("wrong"), good.clone(), 403, detail("Forbidden")),
    ];
    for (id, auth, body, status, expected) in cases {
        let reply = http("POST", &credentials_url(&sb, id), Some(&auth), Some(body)).await;
        assert_eq!(
            (reply.status, reply.body),
            (status, expected),
            "{id} {auth}"
        );
    }
    sb.pairing().set_inhibited(ID, true);
    let reply = http(
        "POST",
        &credentials_url(&sb, ID),
        Some(&bearer(&secret)),
        Some(good),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body),
        (500, detail("Internal server error"))
    );
    assert!(sb.pairing().issued_certificates(ID).is_empty());
}

#[tokio::test]
async fn verify_reports_validity_and_causes() {
    let sb = sandbox().await;
    let identity = support::pair(&sb, ID).await;
    let secret = sb.pairing().secret(ID).unwrap();
    let url = format!("{}/verify", credentials_url(&sb, ID));
    let auth = bearer(&secret);
    let verify = |crt: &str| Some(json!({"data": {"client_crt": crt}}));

    let valid = http("POST", &url, Some(&auth), verify(&identity.cert_pem)).await;
    assert_eq!(
        (valid.status, &valid.body["data"]["valid"]),
        (200, &json!(true))
    );
    let timestamp = valid.body["data"]["timestamp"].as_str().unwrap();
    let shape = regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$").unwrap();
    assert!(shape.is_match(timestamp), "{timestamp}");
    assert!(shape.is_match(valid.body["data"]["until"].as_str().unwrap()));

    let foreign = astarte_sandbox::TestCa::generate("foreign").unwrap();
    let foreign = foreign
        .issue_client(&format!("test/{ID}"), support::WAIT)
        .unwrap();
    let cases = [
        (foreign.cert_pem.as_str(), "INVALID_ISSUER"),
        ("garbage", "INVALID"),
    ];
    for (crt, cause) in cases {
        let reply = http("POST", &url, Some(&auth), verify(crt)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["data"]["valid"], json!(false));
        assert_eq!(reply.body["data"]["cause"], json!(cause));
    }
    let blank = http("POST", &url, Some(&auth), verify("")).await;
    let expected = json!({"errors": {"client_crt": ["can't be blank"]}});
    assert_eq!((blank.status, blank.body), (422, expected));
}

#[tokio::test]
async fn forgotten_secret_is_forbidden() {
    let sb = sandbox().await;
    let secret = register(&sb, ID).await;
    sb.pairing().forget_secret(ID);
    let reply = http("GET", &device_url(&sb, ID), Some(&bearer(&secret)), None).await;
    assert_eq!((reply.status, reply.body), (403, detail("Forbidden")));
}

#[tokio::test]
async fn injected_failures_answer_the_next_requests_then_stop() {
    let sb = sandbox().await;
    sb.pairing().fail_next(2, 503);
    let auth = bearer(&sb.agent_token());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            http("POST", &agent_url(&sb), Some(&auth), hw_id(ID))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [503, 503, 201]);
    // Injected failures never reach the handler, so only the last one is counted.
    assert_eq!(sb.pairing().registrations(ID), 1);
    let path = "/v1/test/agent/devices".to_owned();
    let record = |status| RequestRecord {
        method: "POST".to_owned(),
        path: path.clone(),
        status,
    };
    assert_eq!(
        sb.pairing().requests(),
        vec![record(503), record(503), record(201)]
    );

    sb.pairing().fail_next(1, 500);
    let reply = http("GET", &device_url(&sb, ID), None, None).await;
    assert_eq!(
        (reply.status, reply.body),
        (500, detail("Internal server error"))
    );
}
