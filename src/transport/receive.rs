//! Server-owned data arriving from Astarte: decoded and validated against the interface, stored
//! when it is a property (in memory at once, on disk in the background: the session never
//! waits on disk), and turned into events for D-Bus. Anything malformed is reported as an
//! error for the log and dropped; it never disturbs the session.

use std::collections::HashSet;

use crate::clock::now_ms;
use crate::data::{payload, purge};
use crate::interface::registry::Registry;
use crate::interface::{Aggregation, Interface, InterfaceType, Mapping, Ownership};
use crate::properties::PropertyStore;
use crate::router::ServerEvent;
use crate::topic::{IncomingTopic, Topics};

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("topic {0:?} is not a data topic of this device")]
    UnexpectedTopic(String),
    #[error("interface {0:?} is not among the agent's interfaces")]
    UnknownInterface(String),
    #[error("interface {0:?} is device-owned: the server must not write it")]
    NotServerOwned(String),
    #[error("{0}")]
    UnknownPath(String),
    #[error("unset of {interface}{path} but its mapping does not allow unset")]
    UnsetNotAllowed { interface: String, path: String },
    #[error("empty payload on datastream {interface}{path}")]
    EmptyDatastream { interface: String, path: String },
    #[error("bad payload on {interface}{path}: {source}")]
    Payload {
        interface: String,
        path: String,
        source: Box<payload::PayloadError>,
    },
    #[error("bad consumer purge list: {0}")]
    PurgeList(#[from] purge::PurgeError),
}

/// Handles one publish from the broker.
pub fn handle(
    topics: &Topics,
    registry: &Registry,
    properties: &PropertyStore,
    topic: &str,
    bytes: &[u8],
) -> Result<Vec<ServerEvent>, ReceiveError> {
    match topics.parse(topic) {
        Some(IncomingTopic::ConsumerProperties) => {
            purge_server_properties(registry, properties, bytes)
        }
        Some(IncomingTopic::Data { interface, path }) => {
            data(registry, properties, interface, path, bytes).map(|event| vec![event])
        }
        None => Err(ReceiveError::UnexpectedTopic(topic.into())),
    }
}

fn purge_server_properties(
    registry: &Registry,
    properties: &PropertyStore,
    bytes: &[u8],
) -> Result<Vec<ServerEvent>, ReceiveError> {
    let listed: HashSet<String> = purge::decode_purge_list(bytes)?.into_iter().collect();
    let removed = properties.retain_server_owned(&listed);
    tracing::debug!(
        listed = listed.len(),
        removed = removed.len(),
        "applied the consumer purge list"
    );
    Ok(removed
        .into_iter()
        .filter(|key| registry.get(&key.interface).is_some())
        .map(|key| ServerEvent::Unset {
            interface: key.interface,
            path: key.path,
        })
        .collect())
}

fn data(
    registry: &Registry,
    properties: &PropertyStore,
    name: &str,
    path: &str,
    bytes: &[u8],
) -> Result<ServerEvent, ReceiveError> {
    let interface = registry
        .get(name)
        .ok_or_else(|| ReceiveError::UnknownInterface(name.into()))?;
    if interface.ownership != Ownership::Server {
        return Err(ReceiveError::NotServerOwned(name.into()));
    }
    let payload_error = |source| ReceiveError::Payload {
        interface: name.into(),
        path: path.into(),
        source: Box::new(source),
    };
    if interface.aggregation == Aggregation::Object {
        if bytes.is_empty() {
            return Err(ReceiveError::EmptyDatastream {
                interface: name.into(),
                path: path.into(),
            });
        }
        let mappings = interface
            .object_mappings(path)
            .map_err(|error| ReceiveError::UnknownPath(error.to_string()))?;
        let received = payload::decode_object(bytes, |key| {
            mappings
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, mapping)| mapping.mapping_type)
        })
        .map_err(payload_error)?;
        return Ok(ServerEvent::Object {
            interface: name.into(),
            path: path.into(),
            values: received.values,
            timestamp_ms: received.timestamp_ms.unwrap_or_else(now_ms),
        });
    }
    let mapping = interface
        .mapping(path)
        .map_err(|error| ReceiveError::UnknownPath(error.to_string()))?;
    let received = (!bytes.is_empty())
        .then(|| payload::decode_individual(bytes, mapping.mapping_type))
        .transpose()
        .map_err(payload_error)?;
    // Astarte reads an empty payload, and an empty binaryblob, as "no value": an unset.
    let Some(received) = received.filter(|received| !received.value.is_empty_binary()) else {
        return unset(interface, mapping, properties, path);
    };
    if interface.interface_type == InterfaceType::Properties {
        properties.set_server(interface, path, received.value.clone());
    }
    Ok(ServerEvent::Value {
        interface: name.into(),
        path: path.into(),
        value: received.value,
        timestamp_ms: received.timestamp_ms.unwrap_or_else(now_ms),
    })
}

fn unset(
    interface: &Interface,
    mapping: &Mapping,
    properties: &PropertyStore,
    path: &str,
) -> Result<ServerEvent, ReceiveError> {
    let (name, path) = (interface.name.clone(), path.to_owned());
    match interface.interface_type {
        InterfaceType::Datastream => Err(ReceiveError::EmptyDatastream {
            interface: name,
            path,
        }),
        InterfaceType::Properties if !mapping.allow_unset => Err(ReceiveError::UnsetNotAllowed {
            interface: name,
            path,
        }),
        InterfaceType::Properties => {
            properties.unset_server(&name, &path);
            Ok(ServerEvent::Unset {
                interface: name,
                path,
            })
        }
    }
}
