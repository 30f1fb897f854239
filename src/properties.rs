//! The property values the device knows: device-owned ones it set (resent and listed in the
//! producer purge list at every full handshake) and server-owned ones Astarte sent (served by
//! `GetProperty` and `ListProperties`).
//!
//! Reads come from memory. Device-owned changes are written to the store before the D-Bus
//! call returns. Server-owned changes arrive on the MQTT session, which must never wait on
//! disk: memory is updated at once and the store writes them in the background (after a
//! crash, Astarte sends them again at the next full handshake).

use std::collections::{BTreeMap, HashSet};

use crate::data::{AstarteValue, payload};
use crate::interface::{Interface, Ownership, registry::Registry};
use crate::store::{PropertyRow, Store, StoreError};

/// Key of one property: interface name and concrete path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PropertyKey {
    pub interface: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Stored {
    ownership: Ownership,
    major: u32,
    value: AstarteValue,
}

/// Device-owned values an app may set: every one is resent and listed in the producer purge
/// list at each full handshake, which must stay a few tens of KiB.
pub const MAX_DEVICE_PROPERTIES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PropertyStoreError {
    #[error(
        "the device already has {MAX_DEVICE_PROPERTIES} property values, the most it may keep: unset some first"
    )]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("couldn't encode a property value")]
    Encode(#[source] payload::PayloadError),
}

pub struct PropertyStore {
    store: Store,
    values: std::sync::Mutex<BTreeMap<PropertyKey, Stored>>,
    /// Serialises device-owned writes so memory always matches the newest value on disk.
    writer: tokio::sync::Mutex<()>,
}

impl PropertyStore {
    /// Takes the values the store held, dropping those whose interface changed major version
    /// (also from disk) or whose mapping is gone. Values of interfaces that are not loaded
    /// stay on disk, unused, until the interface comes back.
    pub fn load(store: Store, rows: Vec<PropertyRow>, registry: &Registry) -> PropertyStore {
        let mut values = BTreeMap::new();
        for row in rows {
            let Some(interface) = registry.get(&row.interface) else {
                continue;
            };
            if interface.version_major != row.major {
                tracing::info!(interface = %row.interface, path = %row.path, "dropping a stored property of an older major version");
                store.delete_property_later(&row.interface, &row.path);
                continue;
            }
            match decode(interface, &row) {
                Ok(value) => {
                    values.insert(
                        PropertyKey {
                            interface: row.interface,
                            path: row.path,
                        },
                        Stored {
                            ownership: interface.ownership,
                            major: row.major,
                            value,
                        },
                    );
                }
                Err(reason) => {
                    tracing::info!(interface = %row.interface, path = %row.path, %reason, "dropping a stored property that no longer fits its interface");
                    store.delete_property_later(&row.interface, &row.path);
                }
            }
        }
        PropertyStore {
            store,
            values: std::sync::Mutex::new(values),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    pub fn get(&self, interface: &str, path: &str) -> Option<AstarteValue> {
        self.lock()
            .get(&key(interface, path))
            .map(|stored| stored.value.clone())
    }

    /// Every value of one interface, by path.
    pub fn list(&self, interface: &str) -> Vec<(String, AstarteValue)> {
        self.lock()
            .iter()
            .filter(|(key, _)| key.interface == interface)
            .map(|(key, stored)| (key.path.clone(), stored.value.clone()))
            .collect()
    }

    /// Sets a device-owned value; on disk before it returns. Returns `false` (and writes
    /// nothing) when the property already has this value.
    pub async fn set_device(
        &self,
        interface: &Interface,
        path: &str,
        value: AstarteValue,
    ) -> Result<bool, PropertyStoreError> {
        let _writing = self.writer.lock().await;
        let key = key(&interface.name, path);
        if self
            .lock()
            .get(&key)
            .is_some_and(|stored| stored.value == value && stored.major == interface.version_major)
        {
            return Ok(false);
        }
        if self.is_new_device_value(&key) {
            return Err(PropertyStoreError::TooMany);
        }
        let row = row(interface, path, &value)?;
        self.store.put_property(row).await?;
        self.lock().insert(
            key,
            Stored {
                ownership: interface.ownership,
                major: interface.version_major,
                value,
            },
        );
        Ok(true)
    }

    /// Whether `key` would be one device-owned value more than allowed.
    fn is_new_device_value(&self, key: &PropertyKey) -> bool {
        let values = self.lock();
        !values.contains_key(key)
            && values
                .values()
                .filter(|stored| stored.ownership == Ownership::Device)
                .count()
                >= MAX_DEVICE_PROPERTIES
    }

    /// Unsets a device-owned value; on disk before it returns. Returns whether it was set.
    pub async fn unset_device(
        &self,
        interface: &str,
        path: &str,
    ) -> Result<bool, PropertyStoreError> {
        let _writing = self.writer.lock().await;
        let key = key(interface, path);
        if !self.lock().contains_key(&key) {
            return Ok(false);
        }
        self.store.delete_property(interface, path).await?;
        self.lock().remove(&key);
        Ok(true)
    }

    /// Sets a server-owned value (from the MQTT session: never waits on disk).
    pub fn set_server(&self, interface: &Interface, path: &str, value: AstarteValue) {
        match row(interface, path, &value) {
            Ok(row) => self.store.put_property_later(row),
            Err(error) => {
                tracing::error!(interface = %interface.name, %path, %error, "couldn't store a server property")
            }
        }
        self.lock().insert(
            key(&interface.name, path),
            Stored {
                ownership: interface.ownership,
                major: interface.version_major,
                value,
            },
        );
    }

    /// Unsets a server-owned value (from the MQTT session: never waits on disk).
    pub fn unset_server(&self, interface: &str, path: &str) {
        self.store.delete_property_later(interface, path);
        self.lock().remove(&key(interface, path));
    }

    /// Device-owned properties currently set, in a stable order.
    pub fn device_owned(&self) -> Vec<(PropertyKey, AstarteValue)> {
        self.lock()
            .iter()
            .filter(|(_, stored)| stored.ownership == Ownership::Device)
            .map(|(key, stored)| (key.clone(), stored.value.clone()))
            .collect()
    }

    /// Applies Astarte's consumer purge list: server-owned values not listed are removed.
    /// Returns the removed keys.
    pub fn retain_server_owned(&self, listed: &HashSet<String>) -> Vec<PropertyKey> {
        let removed: Vec<PropertyKey> = {
            let mut values = self.lock();
            let removed: Vec<PropertyKey> = values
                .iter()
                .filter(|(key, stored)| {
                    stored.ownership == Ownership::Server
                        && !listed.contains(&format!("{}{}", key.interface, key.path))
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in &removed {
                values.remove(key);
            }
            removed
        };
        for key in &removed {
            self.store.delete_property_later(&key.interface, &key.path);
        }
        removed
    }

    /// Forgets every value of an interface (its major version changed or it was removed);
    /// on disk before it returns.
    pub async fn drop_interface(&self, interface: &str) -> Result<(), PropertyStoreError> {
        let _writing = self.writer.lock().await;
        self.store.drop_interface(interface).await?;
        self.lock().retain(|key, _| key.interface != interface);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PropertyKey, Stored>> {
        self.values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn key(interface: &str, path: &str) -> PropertyKey {
    PropertyKey {
        interface: interface.into(),
        path: path.into(),
    }
}

fn row(
    interface: &Interface,
    path: &str,
    value: &AstarteValue,
) -> Result<PropertyRow, PropertyStoreError> {
    Ok(PropertyRow {
        interface: interface.name.clone(),
        path: path.into(),
        ownership: interface.ownership,
        major: interface.version_major,
        payload: payload::encode_individual(value, None).map_err(PropertyStoreError::Encode)?,
    })
}

fn decode(interface: &Interface, row: &PropertyRow) -> Result<AstarteValue, String> {
    let mapping = interface
        .mapping(&row.path)
        .map_err(|error| error.to_string())?;
    payload::decode_individual(&row.payload, mapping.mapping_type)
        .map(|received| received.value)
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests;
