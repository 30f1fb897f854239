//! The device endpoints (credentials-secret authenticated): info, certificate, verify.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::reply::{self, Refusal, canonical_device_id};
use super::state::{Access, DeviceStatus, Endpoint};
use super::{App, VERSION};
use crate::ca::{CaError, Verification};

/// `GET /v1/{realm}/devices/{id}`
pub(crate) async fn info(
    State(app): State<Arc<App>>,
    Path((realm, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let id = canonical(&id);
    app.state.bump(Endpoint::Info, &id);
    let secret = secret(&app, &realm, &headers)?;
    let status = access(&app, &id, &secret)?;
    let broker_url = app
        .state
        .broker_url()
        .unwrap_or_else(|| app.broker_url.clone());
    let protocols = json!({ "astarte_mqtt_v1": { "broker_url": broker_url } });
    let body = json!({ "version": VERSION, "status": status.as_str(), "protocols": protocols });
    Ok(reply::data(StatusCode::OK, body))
}

/// `POST /v1/{realm}/devices/{id}/protocols/astarte_mqtt_v1/credentials`
pub(crate) async fn credentials(
    State(app): State<Arc<App>>,
    Path((realm, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let id = canonical(&id);
    app.state.bump(Endpoint::Credentials, &id);
    let data = reply::body_data(&body)?;
    let secret = secret(&app, &realm, &headers)?;
    let csr = valid_csr(&data)?;
    if access(&app, &id, &secret)? == DeviceStatus::Inhibited {
        // Pairing has no HTTP mapping for an inhibited request: it ends up a 500.
        return Err(Refusal::status_only(StatusCode::INTERNAL_SERVER_ERROR));
    }
    let cn = app
        .state
        .issued_cn()
        .unwrap_or_else(|| format!("{}/{id}", app.realm));
    let validity = app.state.certificate_validity().unwrap_or(app.validity);
    match app.ca.sign_csr(csr, &cn, validity, app.backdate) {
        Ok(pem) => {
            app.state.record_certificate(&id, pem.clone());
            Ok(reply::data(
                StatusCode::CREATED,
                json!({ "client_crt": pem }),
            ))
        }
        Err(CaError::InvalidCsr) => Err(Refusal::field("csr", "is not a valid PEM CSR")),
        Err(err) => {
            tracing::error!(error = %err, "signing failed");
            Err(Refusal::status_only(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// `POST /v1/{realm}/devices/{id}/protocols/astarte_mqtt_v1/credentials/verify`
pub(crate) async fn verify(
    State(app): State<Arc<App>>,
    Path((realm, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let id = canonical(&id);
    app.state.bump(Endpoint::Verify, &id);
    let data = reply::body_data(&body)?;
    let secret = secret(&app, &realm, &headers)?;
    let crt = reply::required_str(&data, "client_crt")?;
    access(&app, &id, &secret)?;
    let timestamp = reply::timestamp(now_millis());
    let body = match app.ca.verify(crt) {
        Verification::Valid { until_unix } => json!({
            "valid": true,
            "timestamp": timestamp,
            "until": reply::timestamp(until_unix.saturating_mul(1000)),
        }),
        Verification::Invalid { cause } => json!({
            "valid": false,
            "timestamp": timestamp,
            "cause": cause,
            "details": null,
        }),
    };
    Ok(reply::data(StatusCode::OK, body))
}

/// Pairing checks in this order: realm (403), `Authorization` header (401), then the body
/// (422), then [`access`].
fn secret(app: &App, realm: &str, headers: &HeaderMap) -> Result<String, Refusal> {
    if realm != app.realm {
        return Err(Refusal::forbidden());
    }
    reply::bearer(headers).ok_or_else(|| Refusal::detail(StatusCode::UNAUTHORIZED, "Unauthorized"))
}

/// The device (404) and its secret (403).
fn access(app: &App, id: &str, secret: &str) -> Result<DeviceStatus, Refusal> {
    match app.state.access(id, secret) {
        Access::Granted(status) => Ok(status),
        Access::NotFound => Err(Refusal::not_found()),
        Access::Forbidden => Err(Refusal::forbidden()),
    }
}

fn valid_csr(data: &Map<String, Value>) -> Result<&str, Refusal> {
    let csr = reply::required_str(data, "csr")?;
    // Only a validity check: the CA parses it again to sign it.
    openssl::x509::X509Req::from_pem(csr.as_bytes())
        .map_err(|_| Refusal::field("csr", "is not a valid PEM CSR"))?;
    Ok(csr)
}

/// Devices are stored under their canonical id; an undecodable id matches no device.
fn canonical(id: &str) -> String {
    canonical_device_id(id).unwrap_or_else(|| id.to_owned())
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
