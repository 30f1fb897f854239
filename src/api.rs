//! What system apps may ask of the agent, independent of D-Bus: every request is validated
//! against the interface registry, encoded, and queued (or answered) here. The D-Bus face in
//! `dbus/` only converts variants and maps [`ApiError`] to D-Bus errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::data::{AstarteValue, payload};
use crate::interface::registry::Registry;
use crate::interface::{Aggregation, Interface, InterfaceType, Mapping, MappingType, Ownership};
use crate::properties::{PropertyStore, PropertyStoreError};
use crate::queue::{NewMessage, Queue, QueueError};
use crate::state::{AgentState, StateRx};
use crate::transport::topic::{MAX_REMAINING_LENGTH, Topics, remaining_length};

/// Why a request was refused. Each variant becomes `org.astarte_platform.Agent1.Error.<Variant>`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "unknown interface {0:?}: it is not among the agent's interfaces (see the Interfaces property)"
    )]
    UnknownInterface(String),
    #[error("{0}")]
    UnknownPath(String),
    #[error("{0}")]
    WrongType(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("interface {interface} is {owner}-owned: {hint}")]
    WrongOwnership {
        interface: String,
        owner: &'static str,
        hint: &'static str,
    },
    #[error("interface {interface} is {actual}-aggregated: use {hint}")]
    WrongAggregation {
        interface: String,
        actual: &'static str,
        hint: &'static str,
    },
    #[error("interface {interface} is a {actual} interface: use {hint}")]
    WrongInterfaceType {
        interface: String,
        actual: &'static str,
        hint: &'static str,
    },
    #[error("mapping {endpoint} of {interface} does not allow unset (allow_unset is false)")]
    UnsetNotAllowed { interface: String, endpoint: String },
    #[error(
        "mapping {endpoint} of {interface} has explicit_timestamp false, so Astarte would ignore the timestamp: use Send or SendObject"
    )]
    UnexpectedTimestamp { interface: String, endpoint: String },
    #[error("property {interface}{path} is not set")]
    NotSet { interface: String, path: String },
    #[error(
        "the message would be {size} bytes on the wire; Astarte's broker accepts at most {max}"
    )]
    TooLarge { size: usize, max: usize },
    #[error("{0}")]
    QueueFull(#[from] QueueError),
    #[error("couldn't persist the property: {0}")]
    Storage(#[from] PropertyStoreError),
    #[error("couldn't encode the value: {0}")]
    Encoding(#[from] payload::PayloadError),
}

/// The mappings of an object, by key (the endpoint's last level).
pub type ObjectMappings<'a> = Vec<(&'a str, &'a Mapping)>;

/// The shared pieces a request touches.
pub struct DeviceApi {
    registry: Arc<Registry>,
    properties: Arc<PropertyStore>,
    queue: Arc<Queue>,
    topics: Topics,
    state: StateRx,
}

impl DeviceApi {
    pub fn new(
        registry: Arc<Registry>,
        properties: Arc<PropertyStore>,
        queue: Arc<Queue>,
        topics: Topics,
        state: StateRx,
    ) -> DeviceApi {
        DeviceApi {
            registry,
            properties,
            queue,
            topics,
            state,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Resolves a device-owned individual datastream mapping (for converting the value).
    pub fn individual_datastream(
        &self,
        interface: &str,
        path: &str,
    ) -> Result<(&Interface, &Mapping), ApiError> {
        let interface = self.device_interface(interface)?;
        require_type(interface, InterfaceType::Datastream)?;
        require_individual(interface)?;
        Ok((interface, mapping(interface, path)?))
    }

    /// Resolves the mappings of a device-owned object datastream (key -> mapping).
    pub fn object_datastream(
        &self,
        interface: &str,
        path: &str,
    ) -> Result<(&Interface, ObjectMappings<'_>), ApiError> {
        let interface = self.device_interface(interface)?;
        require_type(interface, InterfaceType::Datastream)?;
        if interface.aggregation != Aggregation::Object {
            return Err(ApiError::WrongAggregation {
                interface: interface.name.clone(),
                actual: "individually",
                hint: "Send or SendAt",
            });
        }
        let mappings = interface
            .object_mappings(path)
            .map_err(|error| ApiError::UnknownPath(error.to_string()))?;
        Ok((interface, mappings))
    }

    /// Resolves a device-owned property mapping.
    pub fn device_property(
        &self,
        interface: &str,
        path: &str,
    ) -> Result<(&Interface, &Mapping), ApiError> {
        let interface = self.device_interface(interface)?;
        require_type(interface, InterfaceType::Properties)?;
        Ok((interface, mapping(interface, path)?))
    }

    /// Resolves any property mapping (device- or server-owned), for reading.
    pub fn any_property(
        &self,
        interface: &str,
        path: &str,
    ) -> Result<(&Interface, &Mapping), ApiError> {
        let interface = self.interface(interface)?;
        require_type(interface, InterfaceType::Properties)?;
        Ok((interface, mapping(interface, path)?))
    }

    /// Queues one individual datastream value.
    pub fn send(
        &self,
        interface: &str,
        path: &str,
        value: AstarteValue,
        timestamp_ms: Option<i64>,
    ) -> Result<(), ApiError> {
        let (interface, mapping) = self.individual_datastream(interface, path)?;
        check_value(mapping, &value)?;
        let timestamp_ms = resolve_timestamp(interface, mapping, timestamp_ms)?;
        let payload = payload::encode_individual(&value, timestamp_ms)?;
        self.check_size(interface, path, payload.len())?;
        self.enqueue(interface, mapping, path, payload, false)
    }

    /// Queues one object of an object-aggregated datastream.
    pub fn send_object(
        &self,
        interface: &str,
        path: &str,
        values: Vec<(String, AstarteValue)>,
        timestamp_ms: Option<i64>,
    ) -> Result<(), ApiError> {
        let (interface, mappings) = self.object_datastream(interface, path)?;
        for (key, value) in &values {
            check_value(object_key(interface, path, &mappings, key)?, value)?;
        }
        if let Some((key, _)) = mappings
            .iter()
            .find(|(key, mapping)| mapping.required && !values.iter().any(|(name, _)| name == key))
        {
            return Err(ApiError::UnknownPath(format!(
                "{}{path}: required object key {key:?} is missing",
                interface.name
            )));
        }
        if values.is_empty() {
            return Err(ApiError::UnknownPath(format!(
                "{}{path}: an object needs at least one key",
                interface.name
            )));
        }
        let Some((_, first)) = mappings.first() else {
            return Err(ApiError::UnknownPath(format!(
                "{}{path}: no mapping",
                interface.name
            )));
        };
        let timestamp_ms = resolve_timestamp(interface, first, timestamp_ms)?;
        let payload = payload::encode_object(&values, timestamp_ms)?;
        self.check_size(interface, path, payload.len())?;
        self.enqueue(interface, first, path, payload, false)
    }

    /// Stores and queues a device-owned property value.
    pub async fn set_property(
        &self,
        interface: &str,
        path: &str,
        value: AstarteValue,
    ) -> Result<(), ApiError> {
        let (interface, mapping) = self.device_property(interface, path)?;
        check_value(mapping, &value)?;
        let payload = payload::encode_individual(&value, None)?;
        self.check_size(interface, path, payload.len())?;
        self.properties.set(interface, path, value).await?;
        self.enqueue(interface, mapping, path, payload, true)
    }

    /// Removes a device-owned property and queues the unset (an empty payload).
    pub async fn unset_property(&self, interface: &str, path: &str) -> Result<(), ApiError> {
        let (interface, mapping) = self.device_property(interface, path)?;
        if !mapping.allow_unset {
            return Err(ApiError::UnsetNotAllowed {
                interface: interface.name.clone(),
                endpoint: mapping.endpoint.to_string(),
            });
        }
        if !self.properties.unset(&interface.name, path).await? {
            return Err(ApiError::NotSet {
                interface: interface.name.clone(),
                path: path.into(),
            });
        }
        self.enqueue(interface, mapping, path, Vec::new(), true)
    }

    /// Reads a device- or server-owned property.
    pub fn get_property(&self, interface: &str, path: &str) -> Result<AstarteValue, ApiError> {
        let (interface, _) = self.any_property(interface, path)?;
        self.properties
            .get(&interface.name, path)
            .ok_or_else(|| ApiError::NotSet {
                interface: interface.name.clone(),
                path: path.into(),
            })
    }

    /// Queues a message whose size the caller has checked (before any side effect).
    fn enqueue(
        &self,
        interface: &Interface,
        mapping: &Mapping,
        path: &str,
        payload: Vec<u8>,
        is_property: bool,
    ) -> Result<(), ApiError> {
        let qos = interface.qos(mapping);
        if !is_property
            && mapping.retention == crate::interface::Retention::Discard
            && *self.state.borrow() != AgentState::Connected
        {
            tracing::debug!(interface = %interface.name, %path, "offline: dropping a datastream value with retention discard");
            return Ok(());
        }
        let expires_at = (mapping.expiry_seconds > 0)
            .then(|| Instant::now() + Duration::from_secs(mapping.expiry_seconds));
        self.queue.push(NewMessage {
            interface: interface.name.clone(),
            path: path.into(),
            payload,
            qos,
            retention: mapping.retention,
            expires_at,
            is_property,
        })?;
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

    fn interface(&self, name: &str) -> Result<&Interface, ApiError> {
        self.registry
            .get(name)
            .ok_or_else(|| ApiError::UnknownInterface(name.into()))
    }

    fn device_interface(&self, name: &str) -> Result<&Interface, ApiError> {
        let interface = self.interface(name)?;
        if interface.ownership != Ownership::Device {
            return Err(ApiError::WrongOwnership {
                interface: interface.name.clone(),
                owner: "server",
                hint: "only Astarte writes it; read it with GetProperty or listen to DataReceived",
            });
        }
        Ok(interface)
    }
}

/// The mapping of one key of an object (the endpoints' last level).
pub fn object_key<'a>(
    interface: &Interface,
    path: &str,
    mappings: &ObjectMappings<'a>,
    key: &str,
) -> Result<&'a Mapping, ApiError> {
    if let Some((_, mapping)) = mappings.iter().find(|(name, _)| *name == key) {
        return Ok(mapping);
    }
    let known: Vec<&str> = mappings.iter().map(|(name, _)| *name).collect();
    Err(ApiError::UnknownPath(format!(
        "{}{path}: unknown object key {key:?}, expected some of {known:?}",
        interface.name
    )))
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

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn require_type(interface: &Interface, expected: InterfaceType) -> Result<(), ApiError> {
    if interface.interface_type == expected {
        return Ok(());
    }
    Err(match interface.interface_type {
        InterfaceType::Datastream => ApiError::WrongInterfaceType {
            interface: interface.name.clone(),
            actual: "datastream",
            hint: "Send, SendAt, SendObject or SendObjectAt",
        },
        InterfaceType::Properties => ApiError::WrongInterfaceType {
            interface: interface.name.clone(),
            actual: "properties",
            hint: "SetProperty, UnsetProperty or GetProperty",
        },
    })
}

fn require_individual(interface: &Interface) -> Result<(), ApiError> {
    if interface.aggregation == Aggregation::Individual {
        return Ok(());
    }
    Err(ApiError::WrongAggregation {
        interface: interface.name.clone(),
        actual: "object",
        hint: "SendObject or SendObjectAt",
    })
}

fn mapping<'a>(interface: &'a Interface, path: &str) -> Result<&'a Mapping, ApiError> {
    interface
        .mapping(path)
        .map_err(|error| ApiError::UnknownPath(error.to_string()))
}

/// Values reach here already converted to the mapping's type; this enforces Astarte's limits.
fn check_value(mapping: &Mapping, value: &AstarteValue) -> Result<(), ApiError> {
    if value.mapping_type() != mapping.mapping_type {
        return Err(ApiError::WrongType(format!(
            "mapping {} expects {:?}, got {:?}",
            mapping.endpoint,
            mapping.mapping_type,
            value.mapping_type()
        )));
    }
    if mapping.mapping_type == MappingType::BinaryBlob
        && matches!(value, AstarteValue::BinaryBlob(bytes) if bytes.is_empty())
    {
        return Err(ApiError::OutOfRange(format!(
            "mapping {}: Astarte treats an empty binaryblob as an unset; send at least one byte",
            mapping.endpoint
        )));
    }
    value
        .check()
        .map_err(|error| ApiError::OutOfRange(format!("mapping {}: {error}", mapping.endpoint)))
}
