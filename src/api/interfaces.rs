//! Interfaces added and removed while the agent runs (`AddInterface`, `RemoveInterface`).
//!
//! A change is made durable in this order: the interface file under `store_dir/interfaces/`,
//! then (for a new major version) the removal of the old major's properties, then the live
//! registry, which tells the MQTT session to publish the new introspection. A crash in
//! between leaves a state the next start-up completes (properties of another major are
//! dropped when the store is loaded).

use std::sync::Arc;

use super::{ApiError, DeviceApi};
use crate::interface::runtime::{self, MAX_RUNTIME_INTERFACES};
use crate::interface::{Interface, Registry};
use crate::store::StoreError;
use crate::topic::{MAX_REMAINING_LENGTH, remaining_length};

/// What `AddInterface` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    Replaced,
    Unchanged,
}

impl DeviceApi {
    /// Validates `json` exactly like a file of `interfaces_dir` and loads it: a new interface,
    /// a newer minor, or another major (whose old properties are dropped).
    pub async fn add_interface(&self, json: &str) -> Result<Added, ApiError> {
        let interface = Interface::from_json(json)
            .map_err(|error| ApiError::InvalidInterface(error.to_string()))?;
        let _changing = self.interface_changes.lock().await;
        let current = self.registry.snapshot();
        let previous = current.get_shared(&interface.name);
        if let Some(previous) = &previous {
            if **previous == interface {
                return Ok(Added::Unchanged);
            }
            if previous.version_major == interface.version_major
                && previous.version_minor >= interface.version_minor
            {
                return Err(ApiError::InvalidInterface(format!(
                    "{} {}.{} is loaded: a change needs a higher minor version (or another major)",
                    interface.name, previous.version_major, previous.version_minor
                )));
            }
        }
        if previous.is_none() {
            self.check_runtime_count(&current)?;
        }
        let next = current.with(Arc::new(interface.clone()));
        self.check_introspection(&next, &interface.name)?;
        let dir = self.store_dir();
        let written = {
            let interface = interface.clone();
            let json = json.to_owned();
            tokio::task::spawn_blocking(move || runtime::persist(&dir, &interface, &json)).await
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(ApiError::Storage(StoreError::File {
                    path: runtime::file_of(&self.store_dir(), &interface.name),
                    source,
                }));
            }
            Err(_) => return Err(ApiError::Storage(StoreError::Stopped)),
        }
        if previous
            .as_ref()
            .is_some_and(|previous| previous.version_major != interface.version_major)
        {
            self.properties.drop_interface(&interface.name).await?;
        }
        tracing::info!(interface = %interface.introspection_entry(), "interface added at runtime");
        let added = if previous.is_some() {
            Added::Replaced
        } else {
            Added::New
        };
        self.registry.replace(next);
        Ok(added)
    }

    /// Refuses a new runtime interface beyond [`MAX_RUNTIME_INTERFACES`].
    fn check_runtime_count(&self, current: &Registry) -> Result<(), ApiError> {
        let added = current
            .iter()
            .filter(|interface| !self.registry.is_fixed(&interface.name))
            .count();
        if added >= MAX_RUNTIME_INTERFACES {
            return Err(ApiError::LimitExceeded(format!(
                "{added} interfaces were added at runtime, at most {MAX_RUNTIME_INTERFACES} may be: remove one first, or ship it in interfaces_dir"
            )));
        }
        Ok(())
    }

    /// Refuses a change whose introspection would not fit one message of Astarte's broker.
    fn check_introspection(&self, next: &Registry, name: &str) -> Result<(), ApiError> {
        let size = remaining_length(self.topics.base(), 2, next.introspection().len());
        if size > MAX_REMAINING_LENGTH {
            return Err(ApiError::LimitExceeded(format!(
                "with {name} the introspection would be {size} bytes on the wire; Astarte's broker accepts at most {MAX_REMAINING_LENGTH}"
            )));
        }
        Ok(())
    }

    /// Unloads an interface added at runtime and forgets its file.
    pub async fn remove_interface(&self, name: &str) -> Result<(), ApiError> {
        if self.registry.is_fixed(name) {
            return Err(ApiError::InterfaceNotRemovable(name.into()));
        }
        let _changing = self.interface_changes.lock().await;
        let current = self.registry.snapshot();
        if current.get(name).is_none() {
            return Err(ApiError::UnknownInterface(name.into()));
        }
        let dir = self.store_dir();
        let removed = {
            let name = name.to_owned();
            tokio::task::spawn_blocking(move || runtime::forget(&dir, &name)).await
        };
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(ApiError::Storage(StoreError::File {
                    path: runtime::file_of(&self.store_dir(), name),
                    source,
                }));
            }
            Err(_) => return Err(ApiError::Storage(StoreError::Stopped)),
        }
        tracing::info!(interface = %name, "interface removed at runtime");
        self.registry.replace(current.without(name));
        Ok(())
    }
}
