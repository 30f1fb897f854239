//! What system apps may ask of the agent, independent of D-Bus: a request names its target
//! once ([`target`]), then the value is encoded and queued (or answered) here. The D-Bus face
//! in `dbus/` only converts variants and maps [`ApiError`] to D-Bus errors.

mod error;
mod interfaces;
pub mod target;

use std::path::PathBuf;
use std::sync::Arc;

pub use error::ApiError;
pub use target::{ObjectTarget, Target};

use crate::clock::now_ms;
use crate::data::{AstarteValue, payload};
use crate::interface::runtime::LiveRegistry;
use crate::interface::{Interface, InterfaceType, Mapping, Registry, Retention};
use crate::properties::PropertyStore;
use crate::queue::{Message, Queue};
use crate::store::Store;
use crate::topic::{MAX_REMAINING_LENGTH, Topics, remaining_length};

/// The shared pieces a request touches.
pub struct DeviceApi {
    registry: Arc<LiveRegistry>,
    properties: Arc<PropertyStore>,
    queue: Arc<Queue>,
    store: Store,
    topics: Topics,
    /// Serialises interface changes.
    interface_changes: tokio::sync::Mutex<()>,
}

impl DeviceApi {
    pub fn new(
        registry: Arc<LiveRegistry>,
        properties: Arc<PropertyStore>,
        queue: Arc<Queue>,
        store: Store,
        topics: Topics,
    ) -> DeviceApi {
        DeviceApi {
            registry,
            properties,
            queue,
            store,
            topics,
            interface_changes: tokio::sync::Mutex::new(()),
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.snapshot()
    }

    /// Messages waiting to be sent or acknowledged: stored rows on disk and volatile ones
    /// in memory.
    pub fn queued_messages(&self) -> u64 {
        let stored = self
            .store
            .counters()
            .queued
            .load(std::sync::atomic::Ordering::Relaxed);
        stored + self.queue.volatile_len() as u64
    }

    /// Bytes of the store's database on disk.
    pub fn store_bytes(&self) -> u64 {
        self.store
            .counters()
            .file_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn store_dir(&self) -> PathBuf {
        self.store.dir().to_owned()
    }

    /// Resolves a device-owned individual datastream mapping.
    pub fn individual_datastream(&self, interface: &str, path: &str) -> Result<Target, ApiError> {
        let interface = target::device_interface(&self.registry(), interface)?;
        target::require_type(&interface, InterfaceType::Datastream)?;
        target::require_individual(&interface)?;
        target::individual(interface, path)
    }

    /// Resolves the mappings of one object of a device-owned object datastream.
    pub fn object_datastream(&self, interface: &str, path: &str) -> Result<ObjectTarget, ApiError> {
        let interface = target::device_interface(&self.registry(), interface)?;
        target::require_type(&interface, InterfaceType::Datastream)?;
        target::object(interface, path)
    }

    /// Resolves a device-owned property mapping.
    pub fn device_property(&self, interface: &str, path: &str) -> Result<Target, ApiError> {
        let interface = target::device_interface(&self.registry(), interface)?;
        target::require_type(&interface, InterfaceType::Properties)?;
        target::individual(interface, path)
    }

    /// Resolves any property mapping (device- or server-owned), for reading.
    pub fn any_property(&self, interface: &str, path: &str) -> Result<Target, ApiError> {
        let interface = target::interface(&self.registry(), interface)?;
        target::require_type(&interface, InterfaceType::Properties)?;
        target::individual(interface, path)
    }

    /// Queues one individual datastream value, converted to the target's type by the caller
    /// (which also checked Astarte's limits).
    pub async fn send(
        &self,
        target: &Target,
        value: AstarteValue,
        timestamp_ms: Option<i64>,
    ) -> Result<(), ApiError> {
        let mapping = target.mapping();
        require_mapping_type(mapping, &value)?;
        let timestamp_ms = resolve_timestamp(&target.interface, mapping, timestamp_ms)?;
        let payload = payload::encode_individual(&value, timestamp_ms)?;
        self.enqueue(&target.interface, mapping, &target.path, payload, false)
            .await
    }

    /// Queues one object; every value was converted with the type of its key's mapping.
    pub async fn send_object(
        &self,
        target: &ObjectTarget,
        values: Vec<(String, AstarteValue)>,
        timestamp_ms: Option<i64>,
    ) -> Result<(), ApiError> {
        let name = &target.interface.name;
        let path = &target.path;
        if values.is_empty() {
            return Err(ApiError::EmptyObject {
                interface: name.clone(),
                path: path.clone(),
            });
        }
        for (key, value) in &values {
            require_mapping_type(target.key(key)?, value)?;
        }
        if let Some((key, _)) = target
            .mappings()
            .find(|(key, mapping)| mapping.required && !values.iter().any(|(name, _)| name == key))
        {
            return Err(ApiError::MissingObjectKey {
                interface: name.clone(),
                path: path.clone(),
                key: key.to_owned(),
            });
        }
        let Some((_, first)) = target.mappings().next() else {
            return Err(ApiError::UnknownPath(format!("{name}{path}: no mapping")));
        };
        let timestamp_ms = resolve_timestamp(&target.interface, first, timestamp_ms)?;
        let payload = payload::encode_object(&values, timestamp_ms)?;
        self.enqueue(&target.interface, first, path, payload, false)
            .await
    }

    /// Stores and queues a device-owned property value; setting the value it already has
    /// sends nothing.
    pub async fn set_property(&self, target: &Target, value: AstarteValue) -> Result<(), ApiError> {
        let mapping = target.mapping();
        require_mapping_type(mapping, &value)?;
        let payload = payload::encode_individual(&value, None)?;
        self.check_size(&target.interface, &target.path, payload.len())?;
        if self
            .properties
            .set_device(&target.interface, &target.path, value)
            .await?
        {
            self.enqueue(&target.interface, mapping, &target.path, payload, true)
                .await?;
        }
        Ok(())
    }

    /// Removes a device-owned property and queues the unset (an empty payload).
    pub async fn unset_property(&self, target: &Target) -> Result<(), ApiError> {
        let (interface, mapping) = (&target.interface, target.mapping());
        if !mapping.allow_unset {
            return Err(ApiError::UnsetNotAllowed {
                interface: interface.name.clone(),
                endpoint: mapping.endpoint.to_string(),
            });
        }
        if !self
            .properties
            .unset_device(&interface.name, &target.path)
            .await?
        {
            return Err(ApiError::NotSet {
                interface: interface.name.clone(),
                path: target.path.clone(),
            });
        }
        self.enqueue(interface, mapping, &target.path, Vec::new(), true)
            .await
    }

    /// Reads a device- or server-owned property.
    pub fn get_property(&self, target: &Target) -> Result<AstarteValue, ApiError> {
        self.properties
            .get(&target.interface.name, &target.path)
            .ok_or_else(|| ApiError::NotSet {
                interface: target.interface.name.clone(),
                path: target.path.clone(),
            })
    }

    /// Every value of a properties interface (either ownership), by path.
    pub fn list_properties(
        &self,
        interface: &str,
    ) -> Result<Vec<(String, AstarteValue)>, ApiError> {
        let interface = target::interface(&self.registry(), interface)?;
        target::require_type(&interface, InterfaceType::Properties)?;
        Ok(self.properties.list(&interface.name))
    }

    /// Queues a message: `stored` datastreams on disk first, the rest in memory; `discard`
    /// datastreams are dropped while no connection is up.
    async fn enqueue(
        &self,
        interface: &Interface,
        mapping: &Mapping,
        path: &str,
        payload: Vec<u8>,
        is_property: bool,
    ) -> Result<(), ApiError> {
        if !is_property {
            self.check_size(interface, path, payload.len())?;
        }
        let message = Message {
            seq: 0,
            interface: interface.name.clone(),
            major: interface.version_major,
            path: path.into(),
            payload,
            qos: interface.qos(mapping),
            retention: mapping.retention,
            expires_at_ms: (mapping.expiry_seconds > 0).then(|| {
                now_ms().saturating_add((mapping.expiry_seconds as i64).saturating_mul(1000))
            }),
            is_property,
        };
        match (is_property, mapping.retention) {
            (false, Retention::Discard) if !self.queue.is_online() => {
                tracing::debug!(interface = %interface.name, %path, "offline: dropping a datastream value with retention discard");
            }
            (false, Retention::Stored) => {
                let seq = self.store.append(message.to_stored()).await?;
                self.queue.push_stored(message.with_seq(seq));
            }
            _ => self.queue.push(message),
        }
        Ok(())
    }

    fn check_size(
        &self,
        interface: &Interface,
        path: &str,
        payload_len: usize,
    ) -> Result<(), ApiError> {
        let topic = self.topics.data(&interface.name, path);
        let size = remaining_length(&topic, 2, payload_len);
        if size > MAX_REMAINING_LENGTH {
            return Err(ApiError::TooLarge {
                size,
                max: MAX_REMAINING_LENGTH,
            });
        }
        Ok(())
    }
}

/// Mappings with `explicit_timestamp` always carry `t`: the caller's, or the time of the call
/// (more accurate than Astarte's reception time when the value waited offline).
fn resolve_timestamp(
    interface: &Interface,
    mapping: &Mapping,
    given: Option<i64>,
) -> Result<Option<i64>, ApiError> {
    match (mapping.explicit_timestamp, given) {
        (true, Some(timestamp)) => Ok(Some(timestamp)),
        (true, None) => Ok(Some(now_ms())),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(ApiError::UnexpectedTimestamp {
            interface: interface.name.clone(),
            endpoint: mapping.endpoint.to_string(),
        }),
    }
}

/// Values reach the API converted to a type (and checked against Astarte's limits) by the
/// caller; this only makes sure it is the mapping's type.
fn require_mapping_type(mapping: &Mapping, value: &AstarteValue) -> Result<(), ApiError> {
    if value.mapping_type() == mapping.mapping_type {
        return Ok(());
    }
    Err(ApiError::WrongType(format!(
        "mapping {} expects {:?}, got {:?}",
        mapping.endpoint,
        mapping.mapping_type,
        value.mapping_type()
    )))
}

#[cfg(test)]
mod tests;
