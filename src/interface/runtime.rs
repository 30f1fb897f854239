//! Interfaces added at runtime (`AddInterface`): kept as files under `store_dir/interfaces/`
//! so they survive a restart, next to the operator's `interfaces_dir`.
//!
//! At start-up both folders are loaded. When both declare the same interface, the higher
//! version (major, then minor) wins, and the `interfaces_dir` file on a tie: an operator who
//! ships a newer file still gets it, and a newer interface added over D-Bus is not undone by
//! a restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::Interface;
use super::registry::{LoadProblem, Registry, RegistryError};
use crate::fs_atomic::{remove_durably, write_atomic};

/// Folder of runtime interfaces inside `store_dir`.
pub const RUNTIME_DIR: &str = "interfaces";

/// Most interfaces `AddInterface` may add (interfaces of `interfaces_dir` do not count).
/// With documents of at most 1 MiB ([`super::validate::MAX_DOCUMENT_BYTES`]) their files take
/// at most 64 MiB of `store_dir`; the introspection must also fit one MQTT message, which
/// `AddInterface` checks separately.
pub const MAX_RUNTIME_INTERFACES: usize = 64;

/// The interfaces the agent starts with.
pub struct Loaded {
    pub registry: Registry,
    /// Names declared in `interfaces_dir`: they cannot be removed over D-Bus.
    pub fixed: BTreeSet<String>,
    pub problems: Vec<LoadProblem>,
}

/// Loads `interfaces_dir`, the agent's own `builtins` (e.g. the remote commands interfaces,
/// unless `interfaces_dir` holds a newer version), then the runtime interfaces of `store_dir`.
pub fn load(
    interfaces_dir: &Path,
    store_dir: &Path,
    builtins: Vec<Interface>,
) -> Result<Loaded, RegistryError> {
    let (mut registry, mut problems) = Registry::load_dir(interfaces_dir)?;
    for builtin in builtins {
        let newer = registry.get(&builtin.name).is_none_or(|current| {
            (builtin.version_major, builtin.version_minor)
                > (current.version_major, current.version_minor)
        });
        if newer {
            registry = registry.with(Arc::new(builtin));
        }
    }
    let fixed: BTreeSet<String> = registry
        .iter()
        .map(|interface| interface.name.clone())
        .collect();
    let runtime_dir = store_dir.join(RUNTIME_DIR);
    if runtime_dir.is_dir() {
        let (runtime, runtime_problems) = Registry::load_dir(&runtime_dir)?;
        problems.extend(runtime_problems);
        for interface in runtime.iter() {
            let newer = registry.get(&interface.name).is_none_or(|current| {
                (interface.version_major, interface.version_minor)
                    > (current.version_major, current.version_minor)
            });
            if newer {
                registry = registry.with(Arc::new(interface.clone()));
            }
        }
    }
    Ok(Loaded {
        registry,
        fixed,
        problems,
    })
}

/// Where a runtime interface's file lives.
pub fn file_of(store_dir: &Path, name: &str) -> PathBuf {
    store_dir.join(RUNTIME_DIR).join(format!("{name}.json"))
}

/// Writes a runtime interface's file (crash-safe). Blocking.
pub fn persist(store_dir: &Path, interface: &Interface, json: &str) -> std::io::Result<()> {
    let dir = store_dir.join(RUNTIME_DIR);
    crate::fs_atomic::create_dir_durably(&dir, 0o700)?;
    write_atomic(&file_of(store_dir, &interface.name), json.as_bytes(), 0o600)
        .map_err(|error| error.source)
}

/// Removes a runtime interface's file (crash-safe). Blocking.
pub fn forget(store_dir: &Path, name: &str) -> std::io::Result<()> {
    remove_durably(&file_of(store_dir, name)).map_err(|error| error.source)
}

/// The interfaces in force, which `AddInterface`/`RemoveInterface` change while the agent
/// runs. Readers take a snapshot; the MQTT session is told of every change.
pub struct LiveRegistry {
    current: tokio::sync::watch::Sender<Arc<Registry>>,
    fixed: std::sync::Mutex<BTreeSet<String>>,
}

impl LiveRegistry {
    pub fn new(registry: Registry, fixed: BTreeSet<String>) -> LiveRegistry {
        LiveRegistry {
            current: tokio::sync::watch::Sender::new(Arc::new(registry)),
            fixed: std::sync::Mutex::new(fixed),
        }
    }

    /// Takes what a reload of `interfaces_dir` found.
    pub fn reload(&self, loaded: Loaded) {
        *self
            .fixed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = loaded.fixed;
        self.replace(loaded.registry);
    }

    pub fn snapshot(&self) -> Arc<Registry> {
        self.current.borrow().clone()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Registry>> {
        self.current.subscribe()
    }

    pub fn replace(&self, registry: Registry) {
        self.current.send_replace(Arc::new(registry));
    }

    /// Whether the interface comes from `interfaces_dir`.
    pub fn is_fixed(&self, name: &str) -> bool {
        self.fixed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(name)
    }
}
