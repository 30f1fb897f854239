//! The Pairing API stand-in: an axum server on a free loopback port answering like Astarte
//! 1.3/1.4 (see section 2 of the protocol reference), backed by a [`PairingState`].

mod agent;
mod device;
mod reply;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio::task::JoinHandle;

pub use state::{DeviceStatus, PairingState, RequestRecord, StateError};

use crate::ca::TestCa;
use crate::token::RealmKey;

/// The version string the stand-in reports.
pub const VERSION: &str = "1.4.0-sandbox";

#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    #[error("couldn't bind the pairing server on loopback")]
    Bind(#[source] std::io::Error),
}

/// Everything the handlers need.
pub(crate) struct App {
    pub state: Arc<PairingState>,
    pub realm: String,
    pub broker_url: String,
    pub ca: Arc<TestCa>,
    pub key: Arc<RealmKey>,
    pub validity: Duration,
    pub backdate: Duration,
}

/// The running server; dropping it stops it.
pub(crate) struct PairingServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PairingServer {
    /// Serves the API under `base_path`: `""` for the root, or e.g. `/pairing` (leading slash,
    /// none trailing), as a deployment behind a reverse proxy does.
    pub async fn start(app: App, base_path: &str) -> Result<Self, PairingError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(PairingError::Bind)?;
        let addr = listener.local_addr().map_err(PairingError::Bind)?;
        let router = router(Arc::new(app), base_path);
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(error = %err, "pairing server stopped");
            }
        });
        Ok(Self { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for PairingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(app: Arc<App>, base_path: &str) -> Router {
    let creds = "/v1/{realm}/devices/{id}/protocols/astarte_mqtt_v1/credentials";
    let api = Router::new()
        .route("/v1/{realm}/agent/devices", post(agent::register))
        .route("/v1/{realm}/agent/devices/{id}", delete(agent::unregister))
        .route("/v1/{realm}/devices/{id}", get(device::info))
        .route(creds, post(device::credentials))
        .route(&format!("{creds}/verify"), post(device::verify))
        .route("/v1/{realm}/version", get(version))
        .route("/v1/{realm}/health", get(health))
        .route("/version", get(version));
    let api = if base_path.is_empty() {
        api
    } else {
        Router::new().nest(base_path, api)
    };
    // The log sees the whole path, base included: the layer wraps the nesting router.
    api.fallback(not_routed)
        .method_not_allowed_fallback(not_routed)
        .layer(middleware::from_fn_with_state(app.clone(), faults_and_log))
        .with_state(app)
}

/// Injects the failures a test asked for, and records every answered request.
async fn faults_and_log(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let status_of = |code| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let raw = app.state.take_raw_answer().map(|raw| {
        let content_type = [(header::CONTENT_TYPE, raw.content_type)];
        (status_of(raw.status), content_type, raw.body).into_response()
    });
    let injected = raw.or_else(|| {
        let code = app.state.take_fault()?;
        Some(reply::Refusal::status_only(status_of(code)).into_response())
    });
    let response = match injected {
        Some(response) => response,
        None => next.run(req).await,
    };
    app.state.log_request(RequestRecord {
        method,
        path,
        status: response.status().as_u16(),
    });
    response
}

async fn version() -> Response {
    reply::data(StatusCode::OK, serde_json::Value::from(VERSION))
}

async fn health() -> StatusCode {
    StatusCode::OK
}

/// Phoenix answers unknown routes with 404.
async fn not_routed() -> reply::Refusal {
    reply::Refusal::detail(StatusCode::NOT_FOUND, "Not Found")
}
