//! Running the built agent: its tasks, SIGHUP reloads, and an orderly stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Agent, Reload, RemoteCommands, SHUTDOWN_DEADLINE, StartError, blocking};
use crate::api::DeviceApi;
use crate::commands::{DeviceApiSink, Engine};
use crate::config::Config;
use crate::dbus::{self, commands::SignalingSink};
use crate::interface::runtime::LiveRegistry;
use crate::network_thread::NetworkThread;
use crate::notify::notify;
use crate::properties::PropertyStore;
use crate::queue::Queue;
use crate::store::Store;
use crate::tasks::{Spawner, Task, TaskError, first_ended, stop_all};

impl Agent {
    /// Starts every task and serves until `shutdown` resolves (`Ok`) or a task ends (its
    /// error), reloading on SIGHUP meanwhile; then stops everything.
    pub async fn run(
        self,
        reload: Reload,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartError> {
        let Agent {
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
        } = self;
        let mut tasks = vec![spawner.spawn("systemd-status", |cancel| {
            crate::notify::report_state(state.clone(), cancel)
        })];
        if let Some(interval) = crate::notify::watchdog_interval() {
            tasks.push(spawner.spawn("watchdog", move |cancel| {
                crate::notify::feed_watchdog(interval, cancel)
            }));
        }
        tasks.push(spawner.spawn("trim-memory", {
            let state = state.clone();
            move |cancel| crate::memory::trim_once_connected(state, cancel)
        }));
        tasks.push(spawner.spawn("dbus-signals", {
            let (bus, registry, api) = (bus.clone(), registry.subscribe(), api.clone());
            move |cancel| dbus::signals::forward(bus, signals, state, registry, api, cancel)
        }));
        tasks.push(spawner.spawn("refill", {
            let (queue, store) = (queue.clone(), store.clone());
            move |cancel| crate::queue::refill(queue, store, cancel)
        }));
        tasks.push(spawner.spawn("connection", |cancel| connection.run(cancel)));
        if let Some(remote) = commands {
            tasks.extend(start_commands(
                &spawner, remote, &config, &api, &store, &bus,
            ));
        }
        notify("READY=1");
        let outcome = serve(&mut tasks, reload, shutdown, config, &registry, &properties).await;
        notify("STOPPING=1");
        stop(tasks, &spawner, &queue, bus, network, store).await;
        outcome
    }
}

/// The command engine and its D-Bus face.
fn start_commands(
    spawner: &Spawner,
    remote: RemoteCommands,
    config: &Config,
    api: &Arc<DeviceApi>,
    store: &Store,
    bus: &zbus::Connection,
) -> [Task; 2] {
    let (sink, finished) = SignalingSink::new(DeviceApiSink::new(api.clone()));
    let (engine, handler_requests) = Engine::new(
        Arc::new(config.commands.clone()),
        store.clone(),
        sink,
        remote.inputs,
        remote.routed,
    );
    let bus = bus.clone();
    [
        spawner.spawn("commands", |cancel| engine.run(cancel)),
        spawner.spawn("dbus-commands", |cancel| {
            dbus::commands::serve(bus, remote.handle, handler_requests, finished, cancel)
        }),
    ]
}

/// Serves until `shutdown` resolves (`Ok`) or a task ends (its error), reloading the
/// configuration and the interfaces on SIGHUP meanwhile.
async fn serve(
    tasks: &mut Vec<Task>,
    mut reload: Reload,
    shutdown: impl Future<Output = ()>,
    mut running: Config,
    registry: &LiveRegistry,
    properties: &PropertyStore,
) -> Result<(), StartError> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => { tracing::info!("stopping"); return Ok(()) }
            Some(()) = next_hangup(&mut reload.signals) => {
                notify("RELOADING=1");
                tracing::info!(path = %reload.config_path.display(), "SIGHUP: reloading the configuration and interfaces_dir");
                if let Err(error) = crate::reload::reload(&reload.config_path, &mut running, registry, properties).await {
                    tracing::error!(error = %crate::error_chain::error_chain(&error), "reload failed: keeping the running configuration and interfaces");
                }
                notify("READY=1");
            }
            (index, ended) = first_ended(tasks) => {
                let task = tasks.remove(index);
                return Err(StartError::Task(match ended {
                    Ok(()) => TaskError::Failed { name: task.name(), reason: "stopped unexpectedly".into() },
                    Err(error) => error,
                }));
            }
        }
    }
}

/// Stops the tasks (under [`SHUTDOWN_DEADLINE`]), the network thread, then the store.
async fn stop(
    tasks: Vec<Task>,
    spawner: &Spawner,
    queue: &Queue,
    bus: zbus::Connection,
    network: NetworkThread,
    store: Store,
) {
    spawner.cancel();
    if let Err(error) = stop_all(tasks, SHUTDOWN_DEADLINE).await {
        tracing::warn!(%error, "a task did not stop cleanly");
    }
    let volatile = queue.volatile_len();
    if volatile > 0 {
        tracing::warn!(
            messages = volatile,
            "stopping with unsent volatile messages held in memory; they are lost (stored ones stay on disk)"
        );
    }
    drop(bus);
    // Commits what is pending (acknowledged rows) before the process exits.
    let stopped = blocking(move || {
        let network = network.stop_within(Duration::from_secs(2));
        network.and(store.close())
    })
    .await;
    if let Err(error) = stopped
        .map_err(StartError::from)
        .and_then(|r| r.map_err(StartError::from))
    {
        tracing::warn!(%error, "a thread did not stop cleanly");
    }
}

/// The next SIGHUP; never, without a handler.
async fn next_hangup(signals: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}
