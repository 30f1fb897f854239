//! Pairing API answers: the real client against the sandbox's stand-in, which answers the
//! next request with a generated status, content type and body (valid answers of each call,
//! mutated). The client returns a value or a typed `PairingError`, never panics. Fewer cases:
//! every case is an HTTP round trip.

use std::sync::Arc;
use std::time::Duration;

use astarte_agent::credentials::CredentialsSecret;
use astarte_agent::pairing::{PairingClient, PairingError};
use astarte_sandbox::{PairingOptions, PairingStandIn};
use fastrand::Rng;
use serde_json::{Value, json};
use url::Url;

use crate::{driver, mutate};

const SECRET: &str = "TTkd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1IgidtPOs=";
/// What the stand-in answers to a registration: not the secret the client sends.
const ISSUED: &str = "AAAd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1IgidtPOs=";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBAzCBq6ADAgECAgEBMAoGCCqGSM49BAMCMAAwHhcNMjQwMTAxMDAwMDAwWhcN\n-----END CERTIFICATE-----\n";

fn assert_typed(error: &PairingError) {
    match error {
        PairingError::InvalidBaseUrl { .. }
        | PairingError::InvalidToken
        | PairingError::Unauthorized { .. }
        | PairingError::Forbidden { .. }
        | PairingError::NotFound { .. }
        | PairingError::AlreadyRegistered { .. }
        | PairingError::InvalidRequest { .. }
        | PairingError::Server { .. }
        | PairingError::Network { .. }
        | PairingError::InvalidResponse { .. } => driver::assert_message(error),
    }
    // The client's secret never leaks into an error.
    assert!(!format!("{error} {error:?}").contains(SECRET));
}

/// The valid answer body of call `call`.
fn valid_body(call: u8) -> Value {
    match call {
        0 => json!({"data": {"credentials_secret": ISSUED}}),
        1 => json!({"data": {"version": "1.2.0", "status": "confirmed",
            "protocols": {"astarte_mqtt_v1": {"broker_url": "mqtts://broker.example.com:8883/"}}}}),
        2 => json!({"data": {"client_crt": CERT}}),
        _ => json!({"data": {"valid": true, "timestamp": "1", "until": "2"}}),
    }
}

fn status(rng: &mut Rng) -> u16 {
    const COMMON: [u16; 14] = [
        200, 201, 204, 301, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503,
    ];
    if rng.bool() {
        COMMON[rng.usize(0..COMMON.len())]
    } else {
        rng.u16(200..600)
    }
}

fn body(rng: &mut Rng, call: u8) -> Vec<u8> {
    let mut tree = valid_body(call);
    match rng.u8(0..5) {
        0 => tree.to_string().into_bytes(),
        1 => {
            let mut bytes = tree.to_string().into_bytes();
            mutate::bytes(rng, &mut bytes);
            bytes
        }
        2 => json!({"errors": {"detail": mutate::any_string(rng)}})
            .to_string()
            .into_bytes(),
        3 if rng.u8(0..4) == 0 => vec![b'a'; 300 * 1024],
        _ => {
            mutate::json(rng, &mut tree);
            tree.to_string().into_bytes()
        }
    }
}

async fn case(rng: &mut Rng, stand_in: &PairingStandIn, client: &PairingClient) {
    let call = rng.u8(0..5);
    let content_type = [
        "application/json",
        "text/html",
        "",
        "application/json; charset=latin1",
    ][rng.usize(0..4)];
    stand_in
        .state()
        .answer_next(status(rng), content_type, body(rng, call));
    let secret = CredentialsSecret::parse(SECRET).expect("a valid secret");
    let result = match call {
        0 => client.register("eyJ.agent.token").await.map(drop),
        1 => client.device_info(&secret).await.map(drop),
        2 => client.request_certificate(&secret, "csr").await.map(drop),
        3 => client.verify_certificate(&secret, CERT).await.map(drop),
        _ => client.unregister("eyJ.agent.token").await,
    };
    if let Err(error) = result {
        assert_typed(&error);
    }
}

#[test]
fn pairing_answers() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let stand_in = runtime
        .block_on(PairingStandIn::start(PairingOptions::default()))
        .expect("the Pairing stand-in starts");
    let tls = astarte_agent::tls::http_config(Arc::new(rustls::RootCertStore::empty()))
        .expect("a TLS config");
    let url = Url::parse(&stand_in.url()).expect("the stand-in's URL");
    let client = PairingClient::new(
        url,
        "test".into(),
        "2TBn-jNESuuHamE2Zo1anA".into(),
        tls,
        Duration::from_secs(10),
    )
    .expect("a client");
    driver::run("pairing_answers", 150, |rng| {
        runtime.block_on(case(rng, &stand_in, &client))
    });
}
