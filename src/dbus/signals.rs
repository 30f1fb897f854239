//! Forwards server data and state changes to D-Bus signals.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zbus::Connection;
use zbus::zvariant::{OwnedValue, Value};

use crate::data::dbus::to_variant;
use crate::dbus::OBJECT_PATH;
use crate::dbus::service::DeviceService;
use crate::state::StateRx;
use crate::transport::receive::ServerEvent;

pub async fn forward(
    connection: Connection,
    mut events: mpsc::Receiver<ServerEvent>,
    mut state: StateRx,
    cancel: CancellationToken,
) -> zbus::Result<()> {
    let service = connection
        .object_server()
        .interface::<_, DeviceService>(OBJECT_PATH)
        .await?;
    let emitter = service.signal_emitter();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
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
