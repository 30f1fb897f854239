//! Starts the agent's tasks, reports state, and stops them cleanly.
//!
//! Tasks: the D-Bus signal forwarder, the systemd status reporter, and the connection loop
//! (provisioning, then one MQTT session per set of credentials). The first task to fail
//! cancels the others; shutdown waits for them under a deadline.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::DeviceApi;
use crate::backoff::Backoff;
use crate::config::{BusKind, Config};
use crate::dbus::{self, service::DeviceService};
use crate::interface::registry::Registry;
use crate::notify::notify;
use crate::pairing::PairingClient;
use crate::properties::PropertyStore;
use crate::provisioning::{Phase, Provisioner};
use crate::queue::Queue;
use crate::state::{AgentState, StateRx, StateTx};
use crate::transport::session::{self, Endpoint, SessionContext, SessionEnd};
use crate::transport::topic::Topics;
use crate::{credentials::FileStore, tls};

/// How long stopping may take before remaining tasks are abandoned.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(8);
const PAIRING_TIMEOUT: Duration = Duration::from_secs(30);
/// Delay after the broker refuses the client certificate, growing while it keeps refusing.
const REJECTION_BACKOFF_BASE: Duration = Duration::from_secs(2);
const REJECTION_BACKOFF_MAX: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("couldn't read the interfaces directory")]
    Interfaces(#[from] crate::interface::registry::RegistryError),
    #[error("couldn't create the store directory {path}")]
    StoreDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Properties(#[from] crate::properties::PropertyStoreError),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialsError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Pairing(#[from] crate::pairing::PairingError),
    #[error(
        "couldn't serve on D-Bus (is another astarte-agent running, and does the bus policy allow the name org.astarte_platform.Agent1?)"
    )]
    Dbus(#[from] zbus::Error),
    #[error("a task failed: {0}")]
    Task(String),
}

/// Runs the agent until `shutdown` resolves or a task fails.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let device_id = config.resolve_device_id()?.to_string();
    let (registry, problems) = Registry::load_dir(&config.interfaces_dir)?;
    for problem in &problems {
        tracing::error!(%problem, "skipping an invalid interface file");
    }
    tracing::info!(realm = %config.realm, device_id = %device_id, interfaces = registry.len(), "starting");
    let registry = Arc::new(registry);
    create_store_dir(&config.store_dir)?;
    let properties = Arc::new(PropertyStore::load(&config.store_dir, &registry)?);
    let queue = Arc::new(Queue::new());
    let (state_tx, state_rx) = watch::channel(AgentState::Starting);
    let topics = Topics::new(&config.realm, &device_id);

    let api = Arc::new(DeviceApi::new(
        registry.clone(),
        properties.clone(),
        queue.clone(),
        topics.clone(),
        state_rx.clone(),
    ));
    let service = DeviceService::new(
        api,
        device_id.clone(),
        config.realm.clone(),
        state_rx.clone(),
    );
    let builder = match config.bus {
        BusKind::System => zbus::connection::Builder::system()?,
        BusKind::Session => zbus::connection::Builder::session()?,
    };
    let connection = builder
        .name(dbus::BUS_NAME)?
        .serve_at(dbus::OBJECT_PATH, service)?
        .build()
        .await?;
    tracing::info!(name = dbus::BUS_NAME, "serving on D-Bus");

    let roots = tls::trust_anchors(config.ca_file.as_deref())?;
    let pairing = PairingClient::new(
        config.pairing_url.clone(),
        config.realm.clone(),
        device_id.clone(),
        tls::http_config(roots.clone())?,
        PAIRING_TIMEOUT,
    )?;
    let store = FileStore::open(&config.store_dir)?;
    let provisioner = Provisioner::new(pairing, store, config.pairing_token_file.clone());

    let (events_tx, events_rx) = mpsc::channel(256);
    let context = SessionContext {
        topics,
        registry,
        properties,
        queue: queue.clone(),
        state: state_tx.clone(),
        server_events: events_tx,
    };

    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(report_to_systemd(state_rx.clone(), cancel.clone()));
    let forward = dbus::signals::forward(connection.clone(), events_rx, state_rx, cancel.clone());
    tasks.spawn(async move {
        forward
            .await
            .map_err(|error| format!("D-Bus signals: {error}"))
    });
    tasks.spawn(connection_loop(
        provisioner,
        context,
        roots,
        state_tx,
        cancel.clone(),
    ));
    notify("READY=1");

    let outcome = tokio::select! {
        _ = shutdown => { tracing::info!("stopping"); Ok(()) }
        Some(joined) = tasks.join_next() => match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(StartError::Task(error)),
            Err(error) => Err(StartError::Task(error.to_string())),
        },
    };
    notify("STOPPING=1");
    cancel.cancel();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("some tasks did not stop in time");
        tasks.abort_all();
    }
    if !queue.is_empty() {
        tracing::warn!(
            messages = queue.len(),
            "stopping with unsent messages held in memory; they are lost"
        );
    }
    drop(connection);
    outcome
}

/// Provisions credentials and runs sessions until cancelled.
async fn connection_loop(
    mut provisioner: Provisioner,
    context: SessionContext,
    roots: Arc<rustls::RootCertStore>,
    state: StateTx,
    cancel: CancellationToken,
) -> Result<(), String> {
    let report = |phase: Phase| {
        let next = match phase {
            Phase::Registering => AgentState::Registering,
            Phase::ObtainingCredentials => AgentState::ObtainingCredentials,
            Phase::CredentialsMissing { reason } => {
                tracing::error!(%reason, "waiting for credentials");
                AgentState::CredentialsMissing
            }
            Phase::Inhibited => {
                tracing::error!(
                    "Pairing refuses to issue credentials to this device (inhibited); an operator must re-enable it in Astarte"
                );
                AgentState::Inhibited
            }
        };
        state.send_replace(next);
    };
    let mut rejections = Backoff::new(REJECTION_BACKOFF_BASE, REJECTION_BACKOFF_MAX);
    let mut consecutive_rejections = 0;
    loop {
        state.send_replace(AgentState::ObtainingCredentials);
        let ready = match provisioner.ensure_credentials(&report, &cancel).await {
            Ok(ready) => ready,
            Err(_) if cancel.is_cancelled() => return Ok(()),
            Err(error) => return Err(format!("provisioning: {error}")),
        };
        let tls = match tls::mqtt_config(roots.clone(), &ready.cert_pem, &ready.key_pem) {
            Ok(config) => Arc::new(config),
            Err(error) => {
                tracing::error!(%error, "the stored client certificate is unusable; requesting a new one");
                provisioner.invalidate_certificate().await;
                continue;
            }
        };
        let endpoint = Endpoint {
            host: ready.broker.host.clone(),
            port: ready.broker.port,
            tls,
            renew_at: ready.renew_at,
        };
        match session::run(&context, endpoint, &cancel).await {
            SessionEnd::Shutdown => return Ok(()),
            SessionEnd::Failed => {
                return Err("the MQTT connection task stopped unexpectedly".into());
            }
            // The stored certificate is now due: provisioning renews it (or keeps it while
            // Pairing can't be reached).
            SessionEnd::RenewCertificate => {
                consecutive_rejections = 0;
                rejections.reset();
            }
            SessionEnd::CertificateRejected { had_connected } => {
                if had_connected {
                    rejections.reset();
                    consecutive_rejections = 0;
                }
                consecutive_rejections += 1;
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = provisioner.certificate_rejected(&ready, consecutive_rejections) => {}
                }
                // Every new certificate revokes the previous one: never hammer Pairing or
                // the broker when the broker keeps refusing.
                let delay = rejections.next_delay();
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn report_to_systemd(mut state: StateRx, cancel: CancellationToken) -> Result<(), String> {
    loop {
        let current = *state.borrow_and_update();
        notify(&format!("STATUS={current}"));
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = state.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}

fn create_store_dir(path: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StartError::StoreDir {
            path: path.to_owned(),
            source,
        })
}
