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
use tracing::Instrument;

use crate::api::DeviceApi;
use crate::commands::{CommandsHandle, DeviceApiSink, Engine, Input};
use crate::config::{BusKind, Config};
use crate::connection::Connection;
use crate::dbus::commands::{CommandsService, SignalingSink};
use crate::dbus::{self, service::DeviceService};
use crate::interface::runtime::{self, LiveRegistry};
use crate::notify::notify;
use crate::pairing::PairingClient;
use crate::properties::PropertyStore;
use crate::provisioning::Provisioner;
use crate::provisioning::Tokens;
use crate::queue::Queue;
use crate::router::{Router, ServerEvents};
use crate::state::{AgentState, StateRx};
use crate::store::Store;
use crate::topic::Topics;
use crate::transport::session::SessionContext;
use crate::{credentials::CredentialStore, tls};

/// How long stopping may take before remaining tasks are abandoned.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(8);
const PAIRING_TIMEOUT: Duration = Duration::from_secs(30);
/// Server data waiting for the D-Bus signal forwarder; beyond it signals are dropped and counted.
pub const SIGNAL_QUEUE: usize = 1024;

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
    Store(#[from] crate::store::StoreError),
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
/// What SIGHUP needs: where the configuration is read from, and the signal stream.
pub struct Reload {
    pub config_path: std::path::PathBuf,
    pub signals: Option<tokio::signal::unix::Signal>,
}

pub async fn run(
    config: Config,
    reload: Reload,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let device_id = config.resolve_device_id()?.to_string();
    // Every log line of the agent carries the device and realm (journal fields DEVICE_ID, REALM).
    let span = tracing::info_span!("agent", device_id = %device_id, realm = %config.realm);
    serve(config, device_id, reload, shutdown)
        .instrument(span)
        .await
}

async fn serve(
    config: Config,
    device_id: String,
    mut reload: Reload,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let mut running = config.clone();
    create_store_dir(&config.store_dir)?;
    let loaded = runtime::load(
        &config.interfaces_dir,
        &config.store_dir,
        crate::commands::builtin_interfaces(&config.commands),
    )?;
    for problem in &loaded.problems {
        tracing::error!(%problem, "skipping an invalid interface file");
    }
    tracing::info!(realm = %config.realm, device_id = %device_id, interfaces = loaded.registry.len(), "starting");
    let opened = {
        let (dir, options) = (config.store_dir.clone(), config.store);
        tokio::task::spawn_blocking(move || Store::open(&dir, options))
            .await
            .map_err(|error| StartError::Task(error.to_string()))??
    };
    let store = opened.store;
    if let Some((first, last)) = opened.backlog {
        tracing::info!(
            messages = store
                .counters()
                .queued
                .load(std::sync::atomic::Ordering::Relaxed),
            first,
            last,
            "stored messages wait to be sent"
        );
    }
    let registry = Arc::new(LiveRegistry::new(loaded.registry, loaded.fixed));
    let properties = Arc::new(PropertyStore::load(
        store.clone(),
        opened.properties,
        &registry.snapshot(),
    ));
    let queue = Arc::new(Queue::new(store.sequence(), opened.backlog));
    let (state_tx, state_rx) = watch::channel(AgentState::Starting);
    let topics = Topics::new(&config.realm, &device_id);

    let api = Arc::new(DeviceApi::new(
        registry.clone(),
        properties.clone(),
        queue.clone(),
        store.clone(),
        topics.clone(),
    ));
    let health = Arc::new(crate::health::Health::default());
    let remote = config.commands.enabled.then(RemoteCommands::new);
    let api_for_commands = api.clone();
    let tokens = Arc::new(Tokens::new(config.pairing_token_file.clone()));
    let service = DeviceService::new(
        api.clone(),
        health.clone(),
        tokens.clone(),
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
        .serve_at(
            dbus::OBJECT_PATH,
            CommandsService::new(remote.as_ref().map(|remote| remote.handle.clone())),
        )?
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
    let credentials = {
        let (dir, backend) = (config.store_dir.clone(), config.credentials.clone());
        tokio::task::spawn_blocking(move || CredentialStore::open(&dir, &backend))
            .await
            .map_err(|error| StartError::Task(error.to_string()))??
    };
    tracing::info!(
        backend = credentials.backend().kind(),
        "credentials store opened"
    );
    let provisioner = Provisioner::new(pairing, credentials, tokens.clone(), config.recovery);

    let (events_tx, events_rx) = mpsc::channel(SIGNAL_QUEUE);
    let routes = remote.iter().map(|remote| remote.route.clone()).collect();
    let (router, confirmations) = Router::new(ServerEvents::new(events_tx), routes);
    let context = SessionContext {
        topics,
        registry: registry.clone(),
        properties: properties.clone(),
        queue: queue.clone(),
        store: store.clone(),
        state: state_tx.clone(),
        router,
        confirmations: tokio::sync::Mutex::new(confirmations),
    };

    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(report_to_systemd(state_rx.clone(), cancel.clone()).in_current_span());
    if let Some(interval) = crate::notify::watchdog_interval() {
        tasks.spawn(feed_watchdog(interval, cancel.clone()));
    }
    let forward = dbus::signals::forward(
        connection.clone(),
        events_rx,
        state_rx,
        registry.subscribe(),
        api,
        cancel.clone(),
    );
    tasks.spawn(
        async move {
            forward
                .await
                .map_err(|error| format!("D-Bus signals: {error}"))
        }
        .in_current_span(),
    );
    let link = Connection {
        provisioner,
        context,
        roots,
        state: state_tx,
        health,
    };
    tasks.spawn(link.run(cancel.clone()).in_current_span());
    if let Some(remote) = remote {
        let (sink, finished) = SignalingSink::new(DeviceApiSink::new(api_for_commands.clone()));
        let (engine, handler_requests) =
            Engine::new(Arc::new(config.commands.clone()), store.clone(), sink);
        let engine = engine.with_handler_grace(config.commands.handler_wait);
        tasks.spawn(
            engine
                .run(remote.inputs, remote.routed, cancel.clone())
                .in_current_span(),
        );
        tasks.spawn(
            dbus::commands::serve(
                connection.clone(),
                remote.handle,
                handler_requests,
                finished,
                cancel.clone(),
            )
            .in_current_span(),
        );
    }
    notify("READY=1");

    tokio::pin!(shutdown);
    let outcome = loop {
        tokio::select! {
            _ = &mut shutdown => { tracing::info!("stopping"); break Ok(()) }
            Some(()) = next_hangup(&mut reload.signals) => {
                notify("RELOADING=1");
                tracing::info!(path = %reload.config_path.display(), "SIGHUP: reloading the configuration and interfaces_dir");
                if let Err(error) = crate::reload::reload(&reload.config_path, &mut running, &registry, &properties).await {
                    tracing::error!(error = %crate::error_chain::error_chain(&error), "reload failed: keeping the running configuration and interfaces");
                }
                notify("READY=1");
            }
            Some(joined) = tasks.join_next() => break match joined {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(StartError::Task(error)),
                Err(error) => Err(StartError::Task(error.to_string())),
            },
        }
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
    let volatile = queue.volatile_len();
    if volatile > 0 {
        tracing::warn!(
            messages = volatile,
            "stopping with unsent volatile messages held in memory; they are lost (stored ones stay on disk)"
        );
    }
    drop(connection);
    // Commits what is pending (acknowledged rows) before the process exits.
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
    outcome
}

/// The channels of remote commands (`[commands] enabled = true`).
struct RemoteCommands {
    handle: CommandsHandle,
    inputs: mpsc::Receiver<Input>,
    route: crate::router::Route,
    routed: mpsc::Receiver<crate::router::Routed>,
}

impl RemoteCommands {
    fn new() -> RemoteCommands {
        let (handle, inputs) = crate::commands::channel();
        let (route, routed) = crate::commands::route();
        RemoteCommands {
            handle,
            inputs,
            route,
            routed,
        }
    }
}

/// The next SIGHUP; never, without a handler.
async fn next_hangup(signals: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

/// Tells systemd the runtime is alive; a stuck runtime stops the pings and systemd restarts
/// the service (`WatchdogSec=` in the unit).
async fn feed_watchdog(interval: Duration, cancel: CancellationToken) -> Result<(), String> {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => notify("WATCHDOG=1"),
        }
    }
}

async fn report_to_systemd(mut state: StateRx, cancel: CancellationToken) -> Result<(), String> {
    loop {
        let current = *state.borrow_and_update();
        tracing::info!(state = %current, "agent state");
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
