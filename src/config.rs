//! The TOML configuration: parsed strictly (unknown keys are errors), then validated once into
//! the typed [`Config`] the rest of the agent uses.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::{Host, Url};
use uuid::Uuid;

use crate::credentials::{BackendKind, DEFAULT_TCTI};
use crate::device_id::{self, DeviceId, DeviceIdError};
use crate::provisioning::RecoveryOptions;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/astarte-agent/config.toml";
pub const DEFAULT_STORE_DIR: &str = "/var/lib/astarte-agent";
pub const DEFAULT_INTERFACES_DIR: &str = "/etc/astarte-agent/interfaces";
pub const DEFAULT_MACHINE_ID_FILE: &str = "/etc/machine-id";

/// The file as written by the operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    realm: String,
    device_id: Option<String>,
    device_id_namespace: Option<String>,
    machine_id_file: Option<PathBuf>,
    pairing_url: String,
    pairing_token_file: Option<PathBuf>,
    store_dir: Option<PathBuf>,
    interfaces_dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    dbus: DbusSection,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    credentials: CredentialsSection,
    #[serde(default)]
    recovery: RecoverySection,
    /// `[commands]`: read as a table, checked key by key in `config/commands.rs`.
    commands: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsSection {
    #[serde(default)]
    backend: BackendName,
    tcti: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackendName {
    #[default]
    File,
    Tpm,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverySection {
    unregister_if_registered: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    max_queue_bytes: Option<u64>,
}

/// Smallest accepted `[store] max_queue_bytes`: one message of the largest size.
pub const MIN_MAX_QUEUE_BYTES: u64 = 65_536;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DbusSection {
    #[serde(default)]
    bus: BusKind,
}

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
    #[error("commands.{key}: {message}")]
    Commands { key: String, message: String },
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

    /// Parses and validates configuration text. Syntax errors name the offending key and line.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|error| ConfigError::Syntax {
            path: PathBuf::new(),
            message: error.to_string().trim_end().replace('\n', " "),
        })?;
        file.try_into()
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

impl TryFrom<ConfigFile> for Config {
    type Error = ConfigError;

    fn try_from(file: ConfigFile) -> Result<Self, Self::Error> {
        validate(file).map_err(|mut problems| problems.remove(0))
    }
}

/// Validates every key, collecting every problem (`check-config` prints them all).
fn validate(file: ConfigFile) -> Result<Config, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let mut check = |result: Result<(), ConfigError>| {
        if let Err(problem) = result {
            problems.push(problem);
        }
    };
    check(validate_realm(&file.realm));
    let configured_id = file
        .device_id
        .map(|text| text.parse().map_err(ConfigError::DeviceId));
    let namespace = match file.device_id_namespace {
        Some(text) => Uuid::parse_str(&text).map_err(|_| ConfigError::Namespace),
        None => Ok(device_id::DEFAULT_NAMESPACE),
    };
    let pairing_url = validate_pairing_url(&file.pairing_url);
    let max_queue_bytes = match file.store.max_queue_bytes {
        Some(bytes) if bytes < MIN_MAX_QUEUE_BYTES => Err(ConfigError::MaxQueueBytes(bytes)),
        Some(bytes) => Ok(bytes),
        None => Ok(crate::store::DEFAULT_MAX_QUEUE_BYTES),
    };
    let device_id = match configured_id {
        Some(Ok(id)) => Some(DeviceIdSource::Configured(id)),
        Some(Err(problem)) => {
            check(Err(problem));
            None
        }
        None => match namespace {
            Ok(namespace) => Some(DeviceIdSource::MachineId {
                file: file
                    .machine_id_file
                    .unwrap_or_else(|| DEFAULT_MACHINE_ID_FILE.into()),
                namespace,
            }),
            Err(problem) => {
                check(Err(problem));
                None
            }
        },
    };
    let pairing_url = pairing_url.map_err(|problem| check(Err(problem))).ok();
    let max_queue_bytes = max_queue_bytes.map_err(|problem| check(Err(problem))).ok();
    let credentials = validate_credentials(&file.credentials)
        .map_err(|problem| check(Err(problem)))
        .ok();
    let recovery = RecoveryOptions {
        unregister_if_registered: file
            .recovery
            .unregister_if_registered
            .unwrap_or(RecoveryOptions::default().unregister_if_registered),
    };
    let commands = commands::validate(file.commands.as_ref(), &mut problems);
    match (
        device_id,
        pairing_url,
        max_queue_bytes,
        credentials,
        commands,
    ) {
        (
            Some(device_id),
            Some(pairing_url),
            Some(max_queue_bytes),
            Some(credentials),
            Some(commands),
        ) if problems.is_empty() => Ok(Config {
            realm: file.realm,
            device_id,
            pairing_url,
            pairing_token_file: file.pairing_token_file,
            store_dir: file.store_dir.unwrap_or_else(|| DEFAULT_STORE_DIR.into()),
            interfaces_dir: file
                .interfaces_dir
                .unwrap_or_else(|| DEFAULT_INTERFACES_DIR.into()),
            ca_file: file.ca_file,
            bus: file.dbus.bus,
            store: crate::store::StoreOptions { max_queue_bytes },
            credentials,
            recovery,
            commands,
        }),
        _ => Err(problems),
    }
}

fn validate_credentials(section: &CredentialsSection) -> Result<BackendKind, ConfigError> {
    let tcti = section.tcti.as_deref().unwrap_or(DEFAULT_TCTI);
    // `device:PATH`, `swtpm:host=..,port=..`, `mssim:..`, `tabrmd:..`: a name, then options.
    let (name, _) = tcti.split_once(':').unwrap_or((tcti, ""));
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ConfigError::Tcti(format!(
            "{tcti:?} is not a TCTI string such as \"{DEFAULT_TCTI}\""
        )));
    }
    match section.backend {
        BackendName::File => Ok(BackendKind::File),
        BackendName::Tpm if cfg!(feature = "tpm") => Ok(BackendKind::Tpm {
            tcti: tcti.to_owned(),
        }),
        BackendName::Tpm => Err(ConfigError::TpmNotBuilt),
    }
}

/// What `check-config` needs: the configuration when it is valid, every problem otherwise,
/// and the interfaces folder to check in either case (from the file when it names one).
pub struct Checked {
    pub config: Option<Config>,
    pub problems: Vec<ConfigError>,
    pub interfaces_dir: PathBuf,
}

impl Config {
    /// Reads the configuration file and reports every problem it has.
    pub fn check(path: &Path) -> Checked {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(source) => {
                return Checked {
                    config: None,
                    problems: vec![ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    }],
                    interfaces_dir: DEFAULT_INTERFACES_DIR.into(),
                };
            }
        };
        // The folder of interfaces is checked even when the rest does not parse.
        let interfaces_dir = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|table| table.get("interfaces_dir")?.as_str().map(PathBuf::from))
            .unwrap_or_else(|| DEFAULT_INTERFACES_DIR.into());
        let parsed = toml::from_str::<ConfigFile>(&text).map_err(|error| {
            vec![ConfigError::Syntax {
                path: path.to_owned(),
                message: error.to_string().trim_end().replace('\n', " "),
            }]
        });
        match parsed.and_then(validate) {
            Ok(config) => Checked {
                interfaces_dir: config.interfaces_dir.clone(),
                config: Some(config),
                problems: Vec::new(),
            },
            Err(problems) => Checked {
                config: None,
                problems,
                interfaces_dir,
            },
        }
    }
}

/// Astarte realm names: `^[a-z][a-z0-9]{0,47}$`, not `astarte` or `system`.
fn validate_realm(realm: &str) -> Result<(), ConfigError> {
    let mut chars = realm.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && realm.len() <= 48;
    if !well_formed {
        return Err(ConfigError::Realm(format!(
            "expected 1-48 lowercase letters and digits starting with a letter, got {realm:?}"
        )));
    }
    // Astarte also reserves `system_*`, which the character set above already excludes.
    if realm == "astarte" || realm == "system" {
        return Err(ConfigError::Realm(format!(
            "{realm:?} is reserved by Astarte"
        )));
    }
    Ok(())
}

/// `https://` always; `http://` only towards a loopback host (local tests and development).
fn validate_pairing_url(text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text)
        .map_err(|error| ConfigError::PairingUrl(format!("{error} in {text:?}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ConfigError::PairingUrl(format!(
                "plain http is allowed only for a loopback host, use https:// (got {text:?})"
            )));
        }
        other => {
            return Err(ConfigError::PairingUrl(format!(
                "expected an https:// URL, got scheme {other:?}"
            )));
        }
    }
    if url.host().is_none() {
        return Err(ConfigError::PairingUrl(format!("no host in {text:?}")));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

mod commands;
#[cfg(test)]
mod tests;
