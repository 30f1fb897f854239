//! The TOML configuration: parsed strictly (unknown keys are errors), then validated once into
//! the typed [`Config`] the rest of the agent uses.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;
use uuid::Uuid;

use crate::credentials::BackendKind;
use crate::device_id::{self, DeviceId, DeviceIdError};
use crate::provisioning::RecoveryOptions;

pub use document::{Checked, Problem};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/astarte-agent/config.toml";
pub const DEFAULT_STORE_DIR: &str = "/var/lib/astarte-agent";
pub const DEFAULT_INTERFACES_DIR: &str = "/etc/astarte-agent/interfaces";
pub const DEFAULT_MACHINE_ID_FILE: &str = "/etc/machine-id";

/// Smallest accepted `[store] max_queue_bytes`: one message of the largest size.
pub const MIN_MAX_QUEUE_BYTES: u64 = 65_536;

/// Which message bus the agent serves on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    #[default]
    System,
    Session,
}

/// Where the device ID comes from: the configuration, or derived from the machine ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceIdSource {
    Configured(DeviceId),
    MachineId { file: PathBuf, namespace: Uuid },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub realm: String,
    pub device_id: DeviceIdSource,
    pub pairing_url: Url,
    pub pairing_token_file: Option<PathBuf>,
    pub store_dir: PathBuf,
    pub interfaces_dir: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub bus: BusKind,
    pub store: crate::store::StoreOptions,
    /// `[credentials]`: where the secret and the device key are kept.
    pub credentials: BackendKind,
    /// `[recovery]`: how lost credentials are recovered.
    pub recovery: RecoveryOptions,
    /// `[commands]`: remote commands (off by default).
    pub commands: crate::commands::CommandsOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("couldn't read the configuration file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{key}: unknown key (expected one of: {expected})")]
    UnknownKey { key: String, expected: String },
    #[error("{key}: missing, it is required")]
    Missing { key: String },
    #[error("{key}: {message}")]
    WrongType { key: String, message: String },
    #[error("realm: {0}")]
    Realm(String),
    #[error("device_id: {0}")]
    DeviceId(#[source] DeviceIdError),
    #[error(
        "device_id_namespace: expected a UUID such as \"{}\"",
        device_id::DEFAULT_NAMESPACE
    )]
    Namespace,
    #[error("pairing_url: {0}")]
    PairingUrl(String),
    #[error("couldn't read the machine ID from {path} (set device_id or machine_id_file)")]
    MachineId {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the machine ID file {path} is empty (set device_id or machine_id_file)")]
    EmptyMachineId { path: PathBuf },
    #[error("store.max_queue_bytes: {0} is too small, at least {MIN_MAX_QUEUE_BYTES} bytes")]
    MaxQueueBytes(u64),
    #[error(
        "credentials.backend: \"tpm\" needs an astarte-agent built with the `tpm` feature (this one is not); use \"file\" or install a TPM-enabled build"
    )]
    TpmNotBuilt,
    #[error("credentials.tcti: {0}")]
    Tcti(String),
    #[error("{key}: {message}")]
    Commands { key: String, message: String },
}

impl ConfigError {
    /// The key the problem is about (`store.max_queue_bytes`), when it is about one.
    pub fn key(&self) -> Option<String> {
        let key = match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => return None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::Missing { key }
            | ConfigError::WrongType { key, .. }
            | ConfigError::Commands { key, .. } => return Some(key.clone()),
            ConfigError::Realm(_) => "realm",
            ConfigError::DeviceId(_) => "device_id",
            ConfigError::Namespace => "device_id_namespace",
            ConfigError::PairingUrl(_) => "pairing_url",
            ConfigError::MachineId { .. } | ConfigError::EmptyMachineId { .. } => "machine_id_file",
            ConfigError::MaxQueueBytes(_) => "store.max_queue_bytes",
            ConfigError::TpmNotBuilt => "credentials.backend",
            ConfigError::Tcti(_) => "credentials.tcti",
        };
        Some(key.to_owned())
    }
}

impl Config {
    /// Reads and validates the configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|error| match error {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates configuration text; the first problem when there is any
    /// (`check` reports all of them). Syntax errors name their line.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let document = document::Document::parse(text).map_err(|mut errors| {
            let error = errors.swap_remove(0);
            ConfigError::Syntax {
                path: PathBuf::new(),
                message: match error.line {
                    Some(line) => format!("line {line}: {}", error.message),
                    None => error.message,
                },
            }
        })?;
        file::read(&document.table).map_err(|mut found| found.problems.swap_remove(0))
    }

    /// Every key the file may hold, as `section.key` (`commands.<name>.exec` for the keys of
    /// a command table): the list the configuration reference documents.
    pub fn keys() -> Vec<String> {
        file::keys()
    }

    /// Resolves the device ID, reading the machine-id file when the configuration sets no ID.
    pub fn resolve_device_id(&self) -> Result<DeviceId, ConfigError> {
        match &self.device_id {
            DeviceIdSource::Configured(id) => Ok(*id),
            DeviceIdSource::MachineId { file, namespace } => {
                let content =
                    std::fs::read_to_string(file).map_err(|source| ConfigError::MachineId {
                        path: file.clone(),
                        source,
                    })?;
                if content.trim().is_empty() {
                    return Err(ConfigError::EmptyMachineId { path: file.clone() });
                }
                Ok(DeviceId::from_machine_id(*namespace, &content))
            }
        }
    }
}

mod commands;
mod document;
mod file;
mod reader;
#[cfg(test)]
mod tests;
