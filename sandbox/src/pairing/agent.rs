//! The agent endpoints (JWT-authenticated): register and unregister a device.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::App;
use super::reply::{self, Refusal, canonical_device_id};
use super::state::{Endpoint, StateError};
use crate::token::authorizes;

/// `POST /v1/{realm}/agent/devices`
pub(crate) async fn register(
    State(app): State<Arc<App>>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    // Malformed JSON is refused by the body parser before routing and authentication.
    let data = reply::body_data(&body)?;
    if let Some(hw_id) = data.get("hw_id").and_then(Value::as_str) {
        let id = canonical_device_id(hw_id).unwrap_or_else(|| hw_id.to_owned());
        app.state.bump(Endpoint::Register, &id);
    }
    authorize(&app, &realm, &headers, "POST", "agent/devices")?;
    let hw_id = reply::required_str(&data, "hw_id")?;
    let id = canonical_device_id(hw_id)
        .ok_or_else(|| Refusal::field("hw_id", "is not a valid base64 encoded 128 bits id"))?;
    let introspection = match data.get("initial_introspection") {
        None | Some(Value::Null) => None,
        Some(value) => {
            check_introspection(value)?;
            Some(value.clone())
        }
    };
    match app.state.register_by_agent(&id, introspection) {
        Ok(secret) => Ok(reply::data(
            StatusCode::CREATED,
            json!({ "credentials_secret": secret }),
        )),
        Err(StateError::AlreadyRegistered(_)) => Err(Refusal::detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Device already registered",
        )),
        Err(err) => {
            tracing::error!(error = %err, "registration failed");
            Err(Refusal::status_only(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// `DELETE /v1/{realm}/agent/devices/{id}`
pub(crate) async fn unregister(
    State(app): State<Arc<App>>,
    Path((realm, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    authorize(
        &app,
        &realm,
        &headers,
        "DELETE",
        &format!("agent/devices/{id}"),
    )?;
    // Unregistering takes only a strict 128-bit id; anything else names no device.
    let strict = canonical_device_id(&id).is_some_and(|c| c == id);
    if strict && app.state.unregister(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Refusal::not_found())
    }
}

/// Realm first (403), then the JWT (401), then its `a_pa` claim (403).
fn authorize(
    app: &App,
    realm: &str,
    headers: &HeaderMap,
    method: &str,
    path: &str,
) -> Result<(), Refusal> {
    if realm != app.realm {
        return Err(Refusal::forbidden());
    }
    let token = reply::bearer(headers)
        .ok_or_else(|| Refusal::detail(StatusCode::UNAUTHORIZED, "Missing authorization token"))?;
    let claims = app
        .key
        .verify(&token)
        .ok_or_else(|| Refusal::detail(StatusCode::UNAUTHORIZED, "Invalid JWT token"))?;
    if !authorizes(&claims.a_pa, method, path) {
        let message =
            format!("Unauthorized access to {method} {path}. Please verify your permissions");
        return Err(Refusal::detail(StatusCode::FORBIDDEN, &message));
    }
    Ok(())
}

/// `{"<interface>": {"major": n, "minor": n}, ...}` with non-negative integers.
fn check_introspection(value: &Value) -> Result<(), Refusal> {
    let field = "initial_introspection";
    let map = value
        .as_object()
        .ok_or_else(|| Refusal::field(field, "is invalid"))?;
    for (name, versions) in map {
        let version = |key| versions.as_object()?.get(key)?.as_i64();
        let (Some(major), Some(minor)) = (version("major"), version("minor")) else {
            let message = format!("has invalid format for interface {name}");
            return Err(Refusal::field(field, &message));
        };
        if major < 0 || minor < 0 {
            let message = format!("has negative versions in interface {name}");
            return Err(Refusal::field(field, &message));
        }
    }
    Ok(())
}
