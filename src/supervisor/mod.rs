//! The agent as a whole. [`Agent::build`] wires every part from the configuration: the
//! store, the interfaces, the API, the D-Bus name, the credentials, the router, the network
//! thread. [`Agent::run`] starts the long-lived tasks (all through one [`Spawner`]), serves
//! until shutdown or the first task that ends, then stops everything in order: tasks under a
//! deadline, the network thread, the store's writer last (it commits what is pending).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::api::DeviceApi;
use crate::commands::{CommandsHandle, Input};
use crate::config::{BusKind, Config};
use crate::connection::Connection;
use crate::credentials::CredentialStore;
use crate::dbus::commands::CommandsService;
use crate::dbus::{self, service::DeviceService};
use crate::interface::runtime::{self, LiveRegistry};
use crate::network_thread::NetworkThread;
use crate::pairing::PairingClient;
use crate::properties::PropertyStore;
use crate::provisioning::{Provisioner, Tokens};
use crate::queue::Queue;
use crate::router::{Route, Routed, Router, ServerEvent, ServerEvents};
use crate::state::{AgentState, StateRx};
use crate::store::Store;
use crate::tasks::{Spawner, TaskError};
use crate::tls;
use crate::topic::Topics;
use crate::transport::session::SessionContext;

mod run;

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
    #[error("couldn't start the {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
    #[error(transparent)]
    Task(#[from] TaskError),
}

/// What SIGHUP needs: where the configuration is read from, and the signal stream.
pub struct Reload {
    pub config_path: std::path::PathBuf,
    pub signals: Option<tokio::signal::unix::Signal>,
}

/// Builds the agent and runs it until `shutdown` resolves or a task ends.
pub async fn run(
    config: Config,
    reload: Reload,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let device_id = config.resolve_device_id()?.to_string();
    // Every log line of the agent carries the device and realm (journal fields DEVICE_ID, REALM).
    let span = tracing::info_span!("agent", device_id = %device_id, realm = %config.realm);
    async move {
        let agent = Agent::build(config, device_id).await?;
        agent.run(reload, shutdown).await
    }
    .instrument(span)
    .await
}

/// Every part of the running agent, wired and not yet started.
pub struct Agent {
    config: Config,
    store: Store,
    registry: Arc<LiveRegistry>,
    properties: Arc<PropertyStore>,
    queue: Arc<Queue>,
    api: Arc<DeviceApi>,
    bus: zbus::Connection,
    state: StateRx,
    connection: Connection,
    signals: mpsc::Receiver<ServerEvent>,
    commands: Option<RemoteCommands>,
    network: NetworkThread,
    /// The one spawn point of every task; cancelling it stops them all.
    spawner: Spawner,
}

/// The channels of remote commands (`[commands] enabled = true`).
struct RemoteCommands {
    handle: CommandsHandle,
    inputs: mpsc::Receiver<Input>,
    routed: mpsc::Receiver<Routed>,
}

impl RemoteCommands {
    /// The channels and the router's route of remote commands, when they are enabled.
    fn when(enabled: bool) -> (Option<RemoteCommands>, Vec<Route>) {
        if !enabled {
            return (None, Vec::new());
        }
        let (handle, inputs) = crate::commands::channel();
        let (route, routed) = crate::commands::route();
        let commands = RemoteCommands {
            handle,
            inputs,
            routed,
        };
        (Some(commands), vec![route])
    }
}

impl Agent {
    /// Opens the store, loads the interfaces, takes the D-Bus name and opens the credentials;
    /// nothing runs yet.
    pub async fn build(config: Config, device_id: String) -> Result<Agent, StartError> {
        let Local {
            store,
            registry,
            properties,
            queue,
        } = Local::open(&config, &device_id).await?;
        let (state_tx, state) = watch::channel(AgentState::Starting);
        let topics = Topics::new(&config.realm, &device_id);
        let api = Arc::new(DeviceApi::new(
            registry.clone(),
            properties.clone(),
            queue.clone(),
            store.clone(),
            topics.clone(),
        ));
        let health = Arc::new(crate::health::Health::default());
        let tokens = Arc::new(Tokens::new(config.pairing_token_file.clone()));
        let (commands, routes) = RemoteCommands::when(config.commands.enabled);
        let service = DeviceService::new(
            api.clone(),
            health.clone(),
            tokens.clone(),
            device_id.clone(),
            config.realm.clone(),
            state.clone(),
        );
        let handle = commands.as_ref().map(|remote| remote.handle.clone());
        let bus = serve_on_dbus(config.bus, service, CommandsService::new(handle)).await?;
        let (provisioner, roots) = provisioner(&config, &device_id, tokens).await?;

        // A thread of its own where a handshake may wait for the TPM, or where a second CPU
        // can run it (network_thread.rs).
        let in_tpm = matches!(
            config.credentials,
            crate::credentials::BackendKind::Tpm { .. }
        );
        let network = NetworkThread::for_backend(in_tpm)
            .map_err(|error| StartError::Thread("network", error))?;
        let spawner = Spawner::new(CancellationToken::new());
        let (events_tx, signals) = mpsc::channel(SIGNAL_QUEUE);
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
            // The session stops its driver itself, after flushing: not with the agent's token.
            network: Spawner::new(CancellationToken::new()).on(network.handle()),
        };
        let connection = Connection {
            provisioner,
            context,
            roots,
            state: state_tx,
            health,
        };
        Ok(Agent {
            config,
            store,
            registry,
            properties,
            queue,
            api,
            bus,
            state,
            connection,
            signals,
            commands,
            network,
            spawner,
        })
    }
}

/// What the agent keeps on the device: the store, the interfaces, the property values and
/// the outgoing queue.
struct Local {
    store: Store,
    registry: Arc<LiveRegistry>,
    properties: Arc<PropertyStore>,
    queue: Arc<Queue>,
}

impl Local {
    async fn open(config: &Config, device_id: &str) -> Result<Local, StartError> {
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
        let opened = blocking({
            let (dir, options) = (config.store_dir.clone(), config.store);
            move || Store::open(&dir, options)
        })
        .await??;
        let store = opened.store;
        if opened.fresh {
            // What the broker keeps for the device can't be matched with this store.
            crate::transport::resume::ResumeRecord::in_dir(
                &config.store_dir.join(crate::credentials::DIR_NAME),
            )
            .forget();
        }
        if let Some((first, last)) = opened.backlog {
            let messages = store
                .counters()
                .queued
                .load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(messages, first, last, "stored messages wait to be sent");
        }
        let registry = Arc::new(LiveRegistry::new(loaded.registry, loaded.fixed));
        let properties = Arc::new(PropertyStore::load(
            store.clone(),
            opened.properties,
            &registry.snapshot(),
        ));
        let queue = Arc::new(Queue::new(store.sequence(), opened.backlog));
        Ok(Local {
            store,
            registry,
            properties,
            queue,
        })
    }
}

/// Takes the agent's name on the bus the configuration names, serving both interfaces.
async fn serve_on_dbus(
    bus: BusKind,
    device: DeviceService,
    commands: CommandsService,
) -> Result<zbus::Connection, StartError> {
    let builder = match bus {
        BusKind::System => zbus::connection::Builder::system()?,
        BusKind::Session => zbus::connection::Builder::session()?,
    };
    let connection = builder
        .name(dbus::BUS_NAME)?
        .serve_at(dbus::OBJECT_PATH, device)?
        .serve_at(dbus::OBJECT_PATH, commands)?
        .build()
        .await?;
    tracing::info!(name = dbus::BUS_NAME, "serving on D-Bus");
    Ok(connection)
}

/// Provisioning: the Pairing client, the credentials store, the tokens; and the trust
/// anchors the broker's certificate is checked against.
async fn provisioner(
    config: &Config,
    device_id: &str,
    tokens: Arc<Tokens>,
) -> Result<(Provisioner, Arc<rustls::RootCertStore>), StartError> {
    let roots = tls::trust_anchors(config.ca_file.as_deref())?;
    let pairing = PairingClient::new(
        config.pairing_url.clone(),
        config.realm.clone(),
        device_id.to_owned(),
        tls::http_config(roots.clone())?,
        PAIRING_TIMEOUT,
    )?;
    let credentials = blocking({
        let (dir, backend) = (config.store_dir.clone(), config.credentials.clone());
        move || CredentialStore::open(&dir, &backend)
    })
    .await??;
    tracing::info!(
        backend = credentials.backend().kind(),
        "credentials store opened"
    );
    let provisioner = Provisioner::new(pairing, credentials, tokens, config.recovery);
    Ok((provisioner, roots))
}

/// Runs blocking work (files, SQLite at start-up, joins) off the runtime.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| TaskError::Panicked { name: "blocking" })
}

fn create_store_dir(path: &Path) -> Result<(), StartError> {
    crate::fs_atomic::create_dir_durably(path, 0o700).map_err(|source| StartError::StoreDir {
        path: path.to_owned(),
        source,
    })
}
