//! Resolving what a request names (interface, path) into a target, once per request. The
//! D-Bus face converts the caller's value with the target's mapping type, then hands the
//! target back: nothing is looked up or checked twice.

use std::sync::Arc;

use super::ApiError;
use crate::interface::{Aggregation, Interface, InterfaceType, Mapping, Ownership, Registry};

/// One mapping of one interface, at a concrete path.
#[derive(Debug, Clone)]
pub struct Target {
    pub interface: Arc<Interface>,
    mapping: usize,
    pub path: String,
}

impl Target {
    pub fn mapping(&self) -> &Mapping {
        &self.interface.mappings[self.mapping]
    }
}

/// The mappings of one object of an object-aggregated interface, at a concrete prefix.
#[derive(Debug, Clone)]
pub struct ObjectTarget {
    pub interface: Arc<Interface>,
    pub path: String,
    /// Key inside the object -> index of its mapping.
    keys: Vec<(String, usize)>,
}

impl ObjectTarget {
    /// The mapping of one key of the object (the endpoints' last level).
    pub fn key(&self, key: &str) -> Result<&Mapping, ApiError> {
        if let Some((_, index)) = self.keys.iter().find(|(name, _)| name == key) {
            return Ok(&self.interface.mappings[*index]);
        }
        let known: Vec<&str> = self.keys.iter().map(|(name, _)| name.as_str()).collect();
        Err(ApiError::UnknownPath(format!(
            "{}{}: unknown object key {key:?}, expected some of {known:?}",
            self.interface.name, self.path
        )))
    }

    pub fn mappings(&self) -> impl Iterator<Item = (&str, &Mapping)> {
        self.keys
            .iter()
            .map(|(key, index)| (key.as_str(), &self.interface.mappings[*index]))
    }
}

pub(super) fn interface(registry: &Registry, name: &str) -> Result<Arc<Interface>, ApiError> {
    registry
        .get_shared(name)
        .ok_or_else(|| ApiError::UnknownInterface(name.into()))
}

pub(super) fn device_interface(
    registry: &Registry,
    name: &str,
) -> Result<Arc<Interface>, ApiError> {
    let interface = interface(registry, name)?;
    if interface.ownership != Ownership::Device {
        return Err(ApiError::WrongOwnership {
            interface: interface.name.clone(),
            owner: "server",
            hint: "only Astarte writes it; read it with GetProperty or listen to DataReceived",
        });
    }
    Ok(interface)
}

pub(super) fn individual(interface: Arc<Interface>, path: &str) -> Result<Target, ApiError> {
    let found = interface
        .mapping(path)
        .map_err(|error| ApiError::UnknownPath(error.to_string()))?;
    let mapping = index_of(&interface, found);
    Ok(Target {
        interface,
        mapping,
        path: path.into(),
    })
}

pub(super) fn object(interface: Arc<Interface>, path: &str) -> Result<ObjectTarget, ApiError> {
    if interface.aggregation != Aggregation::Object {
        return Err(ApiError::WrongAggregation {
            interface: interface.name.clone(),
            actual: "individually",
            hint: "Send or SendAt",
        });
    }
    let keys = interface
        .object_mappings(path)
        .map_err(|error| ApiError::UnknownPath(error.to_string()))?
        .into_iter()
        .map(|(key, mapping)| (key.to_owned(), index_of(&interface, mapping)))
        .collect();
    Ok(ObjectTarget {
        interface,
        path: path.into(),
        keys,
    })
}

/// The position of `mapping`, which was just found in `interface.mappings`: the indexing in
/// [`Target::mapping`] and [`ObjectTarget::key`] relies on it (the interface is immutable).
fn index_of(interface: &Interface, mapping: &Mapping) -> usize {
    interface
        .mappings
        .iter()
        .position(|candidate| std::ptr::eq(candidate, mapping))
        .unwrap_or_default()
}

pub(super) fn require_type(interface: &Interface, expected: InterfaceType) -> Result<(), ApiError> {
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
            hint: "SetProperty, UnsetProperty, GetProperty or ListProperties",
        },
    })
}

pub(super) fn require_individual(interface: &Interface) -> Result<(), ApiError> {
    if interface.aggregation == Aggregation::Individual {
        return Ok(());
    }
    Err(ApiError::WrongAggregation {
        interface: interface.name.clone(),
        actual: "object",
        hint: "SendObject or SendObjectAt",
    })
}
