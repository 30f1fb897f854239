//! Forwards server data and state changes to D-Bus signals, and the backlog size
//! (`QueuedMessages`) at most once a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zbus::Connection;
use zbus::zvariant::{OwnedValue, Value};

use crate::api::DeviceApi;
use crate::data::dbus::to_variant;
use crate::dbus::OBJECT_PATH;
use crate::dbus::service::DeviceService;
use crate::router::ServerEvent;
use crate::state::StateRx;

/// How often `QueuedMessages` is compared with its last signalled value.
const QUEUED_MESSAGES_INTERVAL: Duration = Duration::from_secs(1);

pub async fn forward(
    connection: Connection,
    mut events: mpsc::Receiver<ServerEvent>,
    mut state: StateRx,
    mut registry: tokio::sync::watch::Receiver<Arc<crate::interface::Registry>>,
    api: Arc<DeviceApi>,
    cancel: CancellationToken,
) -> zbus::Result<()> {
    let service = connection
        .object_server()
        .interface::<_, DeviceService>(OBJECT_PATH)
        .await?;
    let emitter = service.signal_emitter();
    let mut queued = api.queued_messages();
    let mut tick = tokio::time::interval(QUEUED_MESSAGES_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            changed = registry.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                registry.borrow_and_update();
                service.get().await.interfaces_changed(emitter).await?;
            }
            _ = tick.tick() => {
                let now = api.queued_messages();
                if now != queued {
                    queued = now;
                    service.get().await.queued_messages_changed(emitter).await?;
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                service.get().await.state_changed(emitter).await?;
            }
            event = events.recv() => {
                let Some(event) = event else { return Ok(()) };
                if let Err(error) = emit(emitter, event).await {
                    tracing::warn!(%error, "couldn't emit a D-Bus signal");
                }
            }
        }
    }
}

async fn emit(
    emitter: &zbus::object_server::SignalEmitter<'_>,
    event: ServerEvent,
) -> zbus::Result<()> {
    match event {
        ServerEvent::Value {
            interface,
            path,
            value,
            timestamp_ms,
        } => {
            let value = to_variant(&value);
            DeviceService::data_received(
                emitter,
                &interface,
                &path,
                Value::from(value),
                timestamp_ms,
            )
            .await
        }
        ServerEvent::Object {
            interface,
            path,
            values,
            timestamp_ms,
        } => {
            let object: HashMap<String, OwnedValue> = values
                .iter()
                .map(|(key, value)| (key.clone(), to_variant(value)))
                .collect();
            DeviceService::data_received(
                emitter,
                &interface,
                &path,
                Value::from(object),
                timestamp_ms,
            )
            .await
        }
        ServerEvent::Unset { interface, path } => {
            DeviceService::property_unset(emitter, &interface, &path).await
        }
    }
}
