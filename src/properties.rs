//! The property values the device knows: device-owned ones it set (resent and listed in the
//! producer purge list at every full handshake) and server-owned ones Astarte sent (served by
//! `GetProperty`). Persisted in `store_dir/properties`, rewritten atomically on every change,
//! because an empty producer purge list after a restart would make Astarte delete every
//! device-owned property.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bson::{Bson, Document, doc, spec::BinarySubtype};

use crate::data::AstarteValue;
use crate::data::payload;
use crate::fs_atomic::write_atomic;
use crate::interface::{Interface, Ownership, registry::Registry};

pub const PROPERTIES_FILE: &str = "properties";

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

#[derive(Debug, thiserror::Error)]
pub enum PropertyStoreError {
    #[error("couldn't write the property store {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("couldn't read the property store {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("couldn't encode a property value")]
    Encode(#[source] payload::PayloadError),
    #[error("the property store task stopped")]
    Join,
}

pub struct PropertyStore {
    file: PathBuf,
    values: Mutex<BTreeMap<PropertyKey, Stored>>,
    /// Serialises file writes so the newest snapshot is always the one left on disk.
    writer: tokio::sync::Mutex<()>,
}

impl PropertyStore {
    /// Loads the store, dropping entries whose interface (name and major) or mapping is gone.
    /// An unreadable or corrupt file is logged and treated as empty: the server's state is then
    /// re-synchronised by the full handshake.
    pub fn load(
        store_dir: &Path,
        registry: &Registry,
    ) -> Result<PropertyStore, PropertyStoreError> {
        let file = store_dir.join(PROPERTIES_FILE);
        let values = match std::fs::read(&file) {
            Ok(bytes) => decode_file(&bytes, registry).unwrap_or_else(|reason| {
                tracing::warn!(path = %file.display(), %reason, "ignoring a corrupt property store");
                BTreeMap::new()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(PropertyStoreError::Read { path: file, source }),
        };
        Ok(PropertyStore {
            file,
            values: Mutex::new(values),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    pub fn get(&self, interface: &str, path: &str) -> Option<AstarteValue> {
        let key = PropertyKey {
            interface: interface.into(),
            path: path.into(),
        };
        self.lock().get(&key).map(|stored| stored.value.clone())
    }

    /// Stores a value and persists it before returning.
    pub async fn set(
        &self,
        interface: &Interface,
        path: &str,
        value: AstarteValue,
    ) -> Result<(), PropertyStoreError> {
        let key = PropertyKey {
            interface: interface.name.clone(),
            path: path.into(),
        };
        let stored = Stored {
            ownership: interface.ownership,
            major: interface.version_major,
            value,
        };
        self.update(|values| {
            values.insert(key, stored);
            true
        })
        .await
        .map(|_| ())
    }

    /// Removes a value and persists the removal; returns whether it was set.
    pub async fn unset(&self, interface: &str, path: &str) -> Result<bool, PropertyStoreError> {
        let key = PropertyKey {
            interface: interface.into(),
            path: path.into(),
        };
        self.update(|values| values.remove(&key).is_some()).await
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
    pub async fn retain_server_owned(
        &self,
        listed: &HashSet<String>,
    ) -> Result<Vec<PropertyKey>, PropertyStoreError> {
        let mut removed = Vec::new();
        self.update(|values| {
            removed = values
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
            !removed.is_empty()
        })
        .await?;
        Ok(removed)
    }

    /// Applies `change` and persists the result. `change` returns whether it changed
    /// anything (nothing is written otherwise). If the write fails, the change is undone:
    /// what the store reports is always what is on disk.
    async fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<PropertyKey, Stored>) -> bool,
    ) -> Result<bool, PropertyStoreError> {
        // Serialises updates, so the last write always holds the newest state.
        let _writing = self.writer.lock().await;
        let (before, bytes) = {
            let mut values = self.lock();
            let before = values.clone();
            if !change(&mut values) {
                return Ok(false);
            }
            (before, encode_file(&values))
        };
        let written = match bytes {
            Ok(bytes) => {
                let file = self.file.clone();
                tokio::task::spawn_blocking(move || {
                    write_atomic(&file, &bytes, 0o600).map_err(|error| PropertyStoreError::Write {
                        path: error.path,
                        source: error.source,
                    })
                })
                .await
                .map_err(|_| PropertyStoreError::Join)
                .and_then(|result| result)
            }
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            *self.lock() = before;
            return Err(error);
        }
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PropertyKey, Stored>> {
        self.values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `{"properties": [{"o": "device"|"server", "i": name, "m": major, "p": path, "v": <payload>}]}`
/// where the payload is the value's wire encoding, decoded again with the mapping's type.
fn encode_file(values: &BTreeMap<PropertyKey, Stored>) -> Result<Vec<u8>, PropertyStoreError> {
    let mut entries = Vec::with_capacity(values.len());
    for (key, stored) in values {
        let payload =
            payload::encode_individual(&stored.value, None).map_err(PropertyStoreError::Encode)?;
        entries.push(Bson::Document(doc! {
            "o": match stored.ownership { Ownership::Device => "device", Ownership::Server => "server" },
            "i": key.interface.as_str(),
            "m": i64::from(stored.major),
            "p": key.path.as_str(),
            "v": Bson::Binary(bson::Binary { subtype: BinarySubtype::Generic, bytes: payload }),
        }));
    }
    let document = doc! { "version": 1, "properties": entries };
    document
        .to_vec()
        .map_err(|error| PropertyStoreError::Encode(payload::PayloadError::Encode(error)))
}

fn decode_file(bytes: &[u8], registry: &Registry) -> Result<BTreeMap<PropertyKey, Stored>, String> {
    let document = Document::from_reader(bytes).map_err(|error| error.to_string())?;
    let entries = document
        .get_array("properties")
        .map_err(|error| error.to_string())?;
    let mut values = BTreeMap::new();
    for entry in entries {
        let Some(entry) = entry.as_document() else {
            continue;
        };
        match decode_entry(entry, registry) {
            Ok((key, stored)) => {
                values.insert(key, stored);
            }
            Err(reason) => tracing::info!(%reason, "dropping a stored property"),
        }
    }
    Ok(values)
}

fn decode_entry(entry: &Document, registry: &Registry) -> Result<(PropertyKey, Stored), String> {
    let text = |name: &str| entry.get_str(name).map_err(|error| error.to_string());
    let interface_name = text("i")?;
    let path = text("p")?;
    let major = entry.get_i64("m").map_err(|error| error.to_string())?;
    let payload = entry
        .get_binary_generic("v")
        .map_err(|error| error.to_string())?;
    let interface = registry
        .get(interface_name)
        .filter(|interface| i64::from(interface.version_major) == major)
        .ok_or_else(|| format!("{interface_name} v{major} is no longer installed"))?;
    let mapping = interface.mapping(path).map_err(|error| error.to_string())?;
    let received = payload::decode_individual(payload, mapping.mapping_type)
        .map_err(|error| error.to_string())?;
    let key = PropertyKey {
        interface: interface_name.into(),
        path: path.into(),
    };
    Ok((
        key,
        Stored {
            ownership: interface.ownership,
            major: interface.version_major,
            value: received.value,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::Interface;

    fn interface(name: &str, ownership: &str, major: u32) -> Interface {
        Interface::from_json(&format!(
            r#"{{"interface_name": "{name}", "version_major": {major}, "version_minor": 1, "type": "properties",
                "ownership": "{ownership}", "mappings": [{{"endpoint": "/%{{id}}/value", "type": "longinteger", "allow_unset": true}}]}}"#
        ))
        .unwrap()
    }

    fn registry(interfaces: Vec<Interface>) -> Registry {
        Registry::from_interfaces(interfaces)
    }

    #[tokio::test]
    async fn values_survive_a_reload_with_their_exact_type() {
        let dir = tempfile::tempdir().unwrap();
        let device = interface("org.example.Device", "device", 1);
        let registry = registry(vec![device.clone()]);
        let store = PropertyStore::load(dir.path(), &registry).unwrap();
        store
            .set(&device, "/a/value", AstarteValue::LongInteger(5))
            .await
            .unwrap();

        let reloaded = PropertyStore::load(dir.path(), &registry).unwrap();
        assert_eq!(
            reloaded.get("org.example.Device", "/a/value"),
            Some(AstarteValue::LongInteger(5))
        );
        assert_eq!(reloaded.device_owned().len(), 1);
    }

    #[tokio::test]
    async fn values_of_a_removed_or_changed_major_interface_are_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let old = interface("org.example.Device", "device", 1);
        let store = PropertyStore::load(dir.path(), &registry(vec![old.clone()])).unwrap();
        store
            .set(&old, "/a/value", AstarteValue::LongInteger(5))
            .await
            .unwrap();

        let new_major = registry(vec![interface("org.example.Device", "device", 2)]);
        assert_eq!(
            PropertyStore::load(dir.path(), &new_major)
                .unwrap()
                .get("org.example.Device", "/a/value"),
            None
        );
        assert_eq!(
            PropertyStore::load(dir.path(), &registry(vec![]))
                .unwrap()
                .device_owned()
                .len(),
            0
        );
    }

    #[tokio::test]
    async fn consumer_purge_list_keeps_listed_server_values_and_all_device_values() {
        let dir = tempfile::tempdir().unwrap();
        let server = interface("org.example.Server", "server", 0);
        let device = interface("org.example.Device", "device", 0);
        let store =
            PropertyStore::load(dir.path(), &registry(vec![server.clone(), device.clone()]))
                .unwrap();
        store
            .set(&server, "/kept/value", AstarteValue::LongInteger(1))
            .await
            .unwrap();
        store
            .set(&server, "/gone/value", AstarteValue::LongInteger(2))
            .await
            .unwrap();
        store
            .set(&device, "/mine/value", AstarteValue::LongInteger(3))
            .await
            .unwrap();

        let listed = HashSet::from(["org.example.Server/kept/value".to_owned()]);
        let removed = store.retain_server_owned(&listed).await.unwrap();
        assert_eq!(
            removed,
            [PropertyKey {
                interface: "org.example.Server".into(),
                path: "/gone/value".into()
            }]
        );
        assert!(store.get("org.example.Server", "/kept/value").is_some());
        assert!(store.get("org.example.Device", "/mine/value").is_some());
    }

    #[test]
    fn a_corrupt_store_is_treated_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROPERTIES_FILE), b"\x05\x00garbage").unwrap();
        let store = PropertyStore::load(dir.path(), &registry(vec![])).unwrap();
        assert!(store.device_owned().is_empty());
    }

    #[tokio::test]
    async fn the_store_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let device = interface("org.example.Device", "device", 0);
        let store = PropertyStore::load(dir.path(), &registry(vec![device.clone()])).unwrap();
        store
            .set(&device, "/a/value", AstarteValue::LongInteger(1))
            .await
            .unwrap();
        let mode = std::fs::metadata(dir.path().join(PROPERTIES_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_failed_write_leaves_the_previous_value_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let device = interface("org.example.Device", "device", 0);
        let store = PropertyStore::load(dir.path(), &registry(vec![device.clone()])).unwrap();
        store
            .set(&device, "/a/value", AstarteValue::LongInteger(1))
            .await
            .unwrap();
        // A directory where the temporary file must go makes the write fail, even for root.
        std::fs::create_dir(dir.path().join(format!("{PROPERTIES_FILE}.tmp"))).unwrap();
        assert!(
            store
                .set(&device, "/a/value", AstarteValue::LongInteger(2))
                .await
                .is_err()
        );
        assert_eq!(
            store.get("org.example.Device", "/a/value"),
            Some(AstarteValue::LongInteger(1))
        );
        assert!(store.unset("org.example.Device", "/a/value").await.is_err());
        assert_eq!(
            store.get("org.example.Device", "/a/value"),
            Some(AstarteValue::LongInteger(1))
        );
    }
}
