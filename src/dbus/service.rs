//! `org.astarte_platform.Agent1.Device`: methods resolve their target once through
//! [`DeviceApi`], convert the D-Bus variant with the target's type, and hand both back.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::interface;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};

use crate::api::DeviceApi;
use crate::data::dbus::{from_variant, to_variant};
use crate::dbus::error::AgentError;
use crate::health::Health;
use crate::provisioning::Tokens;
use crate::state::StateRx;

pub struct DeviceService {
    api: Arc<DeviceApi>,
    health: Arc<Health>,
    tokens: Arc<Tokens>,
    device_id: String,
    realm: String,
    state: StateRx,
}

impl DeviceService {
    pub fn new(
        api: Arc<DeviceApi>,
        health: Arc<Health>,
        tokens: Arc<Tokens>,
        device_id: String,
        realm: String,
        state: StateRx,
    ) -> DeviceService {
        DeviceService {
            api,
            health,
            tokens,
            device_id,
            realm,
            state,
        }
    }

    async fn send_individual(
        &self,
        interface: &str,
        path: &str,
        value: &Value<'_>,
        timestamp_ms: Option<i64>,
    ) -> Result<(), AgentError> {
        let target = self.api.individual_datastream(interface, path)?;
        let value = from_variant(value, target.mapping().mapping_type)?;
        Ok(self.api.send(&target, value, timestamp_ms).await?)
    }

    async fn send_aggregate(
        &self,
        interface: &str,
        path: &str,
        values: &HashMap<String, OwnedValue>,
        timestamp_ms: Option<i64>,
    ) -> Result<(), AgentError> {
        let target = self.api.object_datastream(interface, path)?;
        let mut converted = Vec::with_capacity(values.len());
        let mut keys: Vec<&String> = values.keys().collect();
        keys.sort();
        for key in keys {
            let mapping = target.key(key)?;
            let value = from_variant(&values[key], mapping.mapping_type)
                .map_err(|error| prefix_key(key, error.into()))?;
            converted.push((key.clone(), value));
        }
        Ok(self
            .api
            .send_object(&target, converted, timestamp_ms)
            .await?)
    }
}

fn prefix_key(key: &str, error: AgentError) -> AgentError {
    match error {
        AgentError::WrongType(message) => AgentError::WrongType(format!("key {key:?}: {message}")),
        AgentError::OutOfRange(message) => {
            AgentError::OutOfRange(format!("key {key:?}: {message}"))
        }
        other => other,
    }
}

#[interface(name = "org.astarte_platform.Agent1.Device")]
impl DeviceService {
    /// Sends a value of an individual device-owned datastream.
    async fn send(&self, interface: &str, path: &str, value: Value<'_>) -> Result<(), AgentError> {
        self.send_individual(interface, path, &value, None).await
    }

    /// Sends a value with an explicit timestamp (milliseconds since the Unix epoch).
    async fn send_at(
        &self,
        interface: &str,
        path: &str,
        value: Value<'_>,
        timestamp_ms: i64,
    ) -> Result<(), AgentError> {
        self.send_individual(interface, path, &value, Some(timestamp_ms))
            .await
    }

    /// Sends one object of an object-aggregated device-owned datastream.
    async fn send_object(
        &self,
        interface: &str,
        path: &str,
        values: HashMap<String, OwnedValue>,
    ) -> Result<(), AgentError> {
        self.send_aggregate(interface, path, &values, None).await
    }

    /// Sends one object with an explicit timestamp (milliseconds since the Unix epoch).
    async fn send_object_at(
        &self,
        interface: &str,
        path: &str,
        values: HashMap<String, OwnedValue>,
        timestamp_ms: i64,
    ) -> Result<(), AgentError> {
        self.send_aggregate(interface, path, &values, Some(timestamp_ms))
            .await
    }

    /// Sets a device-owned property; returns once the value is stored on disk.
    async fn set_property(
        &self,
        interface: &str,
        path: &str,
        value: Value<'_>,
    ) -> Result<(), AgentError> {
        let target = self.api.device_property(interface, path)?;
        let value = from_variant(&value, target.mapping().mapping_type)?;
        Ok(self.api.set_property(&target, value).await?)
    }

    /// Unsets a device-owned property whose mapping has `allow_unset`.
    async fn unset_property(&self, interface: &str, path: &str) -> Result<(), AgentError> {
        let target = self.api.device_property(interface, path)?;
        Ok(self.api.unset_property(&target).await?)
    }

    /// Reads a device- or server-owned property.
    async fn get_property(&self, interface: &str, path: &str) -> Result<OwnedValue, AgentError> {
        let target = self.api.any_property(interface, path)?;
        Ok(to_variant(&self.api.get_property(&target)?))
    }

    /// Every value of a properties interface (device- or server-owned), by path.
    async fn list_properties(
        &self,
        interface: &str,
    ) -> Result<HashMap<String, OwnedValue>, AgentError> {
        Ok(self
            .api
            .list_properties(interface)?
            .into_iter()
            .map(|(path, value)| (path, to_variant(&value)))
            .collect())
    }

    /// Loads an interface (its JSON document), validated like a file of `interfaces_dir`,
    /// and keeps it across restarts.
    async fn add_interface(&self, json: &str) -> Result<(), AgentError> {
        self.api.add_interface(json).await?;
        Ok(())
    }

    /// Unloads an interface added with `AddInterface`.
    async fn remove_interface(&self, name: &str) -> Result<(), AgentError> {
        Ok(self.api.remove_interface(name).await?)
    }

    /// Hands the agent a Pairing agent JWT (kept in memory only, never written to disk). When
    /// the agent waits for credentials (`credentials-missing`) it registers with it at once;
    /// otherwise it keeps it for a later recovery. Returns at once: watch `State`. Root only
    /// under the system bus policy.
    async fn register(&self, token: &str) -> Result<(), AgentError> {
        self.tokens.give(token)?;
        tracing::info!("an agent token was given over D-Bus (Register)");
        Ok(())
    }

    /// Server data: a datastream value, an object (as `a{sv}`) or a property set.
    #[zbus(signal)]
    pub async fn data_received(
        emitter: &SignalEmitter<'_>,
        interface: &str,
        path: &str,
        value: Value<'_>,
        timestamp_ms: i64,
    ) -> zbus::Result<()>;

    /// A server-owned property was unset.
    #[zbus(signal)]
    pub async fn property_unset(
        emitter: &SignalEmitter<'_>,
        interface: &str,
        path: &str,
    ) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    async fn device_id(&self) -> String {
        self.device_id.clone()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    async fn realm(&self) -> String {
        self.realm.clone()
    }

    /// One of the documented state names (docs/dbus-api.md, "States").
    #[zbus(property)]
    async fn state(&self) -> String {
        self.state.borrow().as_str().to_owned()
    }

    /// `name:major:minor` of every loaded interface.
    #[zbus(property)]
    async fn interfaces(&self) -> Vec<String> {
        self.api
            .registry()
            .iter()
            .map(|interface| interface.introspection_entry())
            .collect()
    }

    /// Messages waiting to be sent or acknowledged (stored ones on disk, volatile ones in
    /// memory); changes are signalled at most once a second.
    #[zbus(property)]
    async fn queued_messages(&self) -> u64 {
        self.api.queued_messages()
    }

    /// `host:port` of the broker in use; empty before the device has credentials.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn broker(&self) -> String {
        self.health.broker()
    }

    /// When the client certificate expires, in ms since the Unix epoch; 0 before the first one.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn certificate_expiry(&self) -> i64 {
        self.health.certificate_expiry_ms()
    }

    /// The last warning or error the agent logged: when (ms since the Unix epoch) and the
    /// line; `(0, "")` when there was none.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn last_error(&self) -> (i64, String) {
        crate::logging::last_problem().unwrap_or_default()
    }

    /// Bytes of the store's database (and its write-ahead log) on disk.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn store_bytes(&self) -> u64 {
        self.api.store_bytes()
    }
}
