//! `org.astarte_platform.Agent1.Device`: methods convert D-Bus variants and call [`DeviceApi`].

use std::collections::HashMap;
use std::sync::Arc;

use zbus::interface;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};

use crate::api::{DeviceApi, object_key};
use crate::data::dbus::{from_variant, to_variant};
use crate::dbus::error::AgentError;
use crate::state::StateRx;

pub struct DeviceService {
    api: Arc<DeviceApi>,
    device_id: String,
    realm: String,
    state: StateRx,
}

impl DeviceService {
    pub fn new(
        api: Arc<DeviceApi>,
        device_id: String,
        realm: String,
        state: StateRx,
    ) -> DeviceService {
        DeviceService {
            api,
            device_id,
            realm,
            state,
        }
    }

    fn send_individual(
        &self,
        interface: &str,
        path: &str,
        value: &Value<'_>,
        timestamp_ms: Option<i64>,
    ) -> Result<(), AgentError> {
        let (_, mapping) = self.api.individual_datastream(interface, path)?;
        let value = from_variant(value, mapping.mapping_type)?;
        Ok(self.api.send(interface, path, value, timestamp_ms)?)
    }

    fn send_aggregate(
        &self,
        interface: &str,
        path: &str,
        values: &HashMap<String, OwnedValue>,
        timestamp_ms: Option<i64>,
    ) -> Result<(), AgentError> {
        let (resolved, mappings) = self.api.object_datastream(interface, path)?;
        let mut converted = Vec::with_capacity(values.len());
        let mut keys: Vec<&String> = values.keys().collect();
        keys.sort();
        for key in keys {
            let mapping = object_key(resolved, path, &mappings, key)?;
            let value = from_variant(&values[key], mapping.mapping_type)
                .map_err(|error| prefix_key(key, error.into()))?;
            converted.push((key.clone(), value));
        }
        Ok(self
            .api
            .send_object(interface, path, converted, timestamp_ms)?)
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
        self.send_individual(interface, path, &value, None)
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
    }

    /// Sends one object of an object-aggregated device-owned datastream.
    async fn send_object(
        &self,
        interface: &str,
        path: &str,
        values: HashMap<String, OwnedValue>,
    ) -> Result<(), AgentError> {
        self.send_aggregate(interface, path, &values, None)
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
    }

    /// Sets a device-owned property; returns once the value is stored on disk.
    async fn set_property(
        &self,
        interface: &str,
        path: &str,
        value: Value<'_>,
    ) -> Result<(), AgentError> {
        let (_, mapping) = self.api.device_property(interface, path)?;
        let value = from_variant(&value, mapping.mapping_type)?;
        Ok(self.api.set_property(interface, path, value).await?)
    }

    /// Unsets a device-owned property whose mapping has `allow_unset`.
    async fn unset_property(&self, interface: &str, path: &str) -> Result<(), AgentError> {
        Ok(self.api.unset_property(interface, path).await?)
    }

    /// Reads a device- or server-owned property.
    async fn get_property(&self, interface: &str, path: &str) -> Result<OwnedValue, AgentError> {
        Ok(to_variant(&self.api.get_property(interface, path)?))
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

    /// One of the documented state names (README, "States").
    #[zbus(property)]
    async fn state(&self) -> String {
        self.state.borrow().as_str().to_owned()
    }

    /// `name:major:minor` of every loaded interface.
    #[zbus(property(emits_changed_signal = "const"))]
    async fn interfaces(&self) -> Vec<String> {
        self.api
            .registry()
            .iter()
            .map(|interface| {
                format!(
                    "{}:{}:{}",
                    interface.name, interface.version_major, interface.version_minor
                )
            })
            .collect()
    }
}
