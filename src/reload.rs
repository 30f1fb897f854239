//! SIGHUP: the configuration and `interfaces_dir` are read again. Interface changes take effect
//! at once (the MQTT session publishes the new introspection and subscribes to new
//! server-owned interfaces, without reconnecting; a new major version drops the old major's
//! properties). Other keys take effect at the next restart, and the log says which. A reload
//! that fails keeps everything as it was and logs why.

use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::interface::registry::RegistryError;
use crate::interface::runtime::{self, LiveRegistry};
use crate::properties::{PropertyStore, PropertyStoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Interfaces(#[from] RegistryError),
    #[error("couldn't drop the properties of a replaced interface")]
    Properties(#[from] PropertyStoreError),
    #[error("the reload task stopped")]
    Task,
}

/// Reads `config_path` and the interfaces again and applies what can change while running.
/// `running` is the configuration in force; its `interfaces_dir` follows the file.
pub async fn reload(
    config_path: &Path,
    running: &mut Config,
    registry: &LiveRegistry,
    properties: &PropertyStore,
) -> Result<(), ReloadError> {
    let path = config_path.to_owned();
    let new = tokio::task::spawn_blocking(move || Config::load(&path))
        .await
        .map_err(|_| ReloadError::Task)??;
    let restart_needed = keys_needing_restart(running, &new);
    if !restart_needed.is_empty() {
        tracing::warn!(keys = ?restart_needed, "these configuration keys changed: they take effect when the agent restarts");
    }
    let (interfaces_dir, store_dir) = (new.interfaces_dir.clone(), running.store_dir.clone());
    // The command interfaces follow the running configuration: `[commands]` needs a restart.
    let builtins = crate::commands::builtin_interfaces(&running.commands);
    let loaded =
        tokio::task::spawn_blocking(move || runtime::load(&interfaces_dir, &store_dir, builtins))
            .await
            .map_err(|_| ReloadError::Task)??;
    for problem in &loaded.problems {
        tracing::error!(%problem, "skipping an invalid interface file");
    }
    let current = registry.snapshot();
    for interface in loaded.registry.iter() {
        if current
            .get(&interface.name)
            .is_some_and(|old| old.version_major != interface.version_major)
        {
            properties.drop_interface(&interface.name).await?;
        }
    }
    let changed = *current != loaded.registry;
    if changed {
        tracing::info!(interfaces = loaded.registry.len(), "interfaces reloaded");
    }
    running.interfaces_dir = new.interfaces_dir;
    if changed {
        registry.reload(loaded);
    }
    Ok(())
}

fn keys_needing_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            keys.push(key);
        }
    };
    check(running.realm != new.realm, "realm");
    check(running.device_id != new.device_id, "device_id");
    check(running.pairing_url != new.pairing_url, "pairing_url");
    check(
        running.pairing_token_file != new.pairing_token_file,
        "pairing_token_file",
    );
    check(running.store_dir != new.store_dir, "store_dir");
    check(running.ca_file != new.ca_file, "ca_file");
    check(running.bus != new.bus, "dbus.bus");
    check(
        running.store.max_queue_bytes != new.store.max_queue_bytes,
        "store.max_queue_bytes",
    );
    check(running.credentials != new.credentials, "credentials");
    check(running.recovery != new.recovery, "recovery");
    check(
        running.commands.summary() != new.commands.summary(),
        "commands",
    );
    keys
}
