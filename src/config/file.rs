//! The configuration file's keys, read one by one from the parsed TOML table and validated,
//! collecting every problem (unknown keys, missing keys, wrong types, invalid values).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use url::{Host, Url};
use uuid::Uuid;

use super::reader::{Findings, Reader};
use super::{
    BusKind, Config, ConfigError, DEFAULT_INTERFACES_DIR, DEFAULT_MACHINE_ID_FILE,
    DEFAULT_STORE_DIR, DeviceIdSource, MIN_MAX_QUEUE_BYTES,
};
use crate::credentials::{BackendKind, DEFAULT_TCTI};
use crate::device_id;
use crate::provisioning::RecoveryOptions;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackendName {
    #[default]
    File,
    Tpm,
}

/// Reads and validates every key of `table`; every problem when there is any.
pub(super) fn read(table: &toml::Table) -> Result<Config, Findings> {
    let mut found = Findings::default();
    let config = read_keys(table, &mut found);
    match config {
        Some(config) if found.problems.is_empty() => Ok(config),
        _ => Err(found),
    }
}

/// Every key the file may hold, as `section.key` (`commands.<name>.exec` for command tables).
pub(super) fn keys() -> Vec<String> {
    let mut found = Findings::default();
    read_keys(&toml::Table::new(), &mut found);
    found.asked
}

fn read_keys(table: &toml::Table, found: &mut Findings) -> Option<Config> {
    let mut top = Reader::top(table);
    let realm: Option<String> = top.required("realm", found);
    if let Some(realm) = &realm {
        found.take(validate_realm(realm));
    }
    let device_id = read_device_id(&mut top, found);
    let pairing_url: Option<String> = top.required("pairing_url", found);
    let pairing_url = pairing_url.and_then(|text| found.take(validate_pairing_url(&text)));
    let pairing_token_file = top.optional("pairing_token_file", found);
    let store_dir = top.optional("store_dir", found);
    let interfaces_dir = top.optional("interfaces_dir", found);
    let ca_file = top.optional("ca_file", found);

    let mut dbus = top.section("dbus", found);
    let bus: Option<BusKind> = dbus.optional("bus", found);
    dbus.finish(found);

    let mut store = top.section("store", found);
    let max_queue_bytes = match store.optional::<u64>("max_queue_bytes", found) {
        Some(bytes) if bytes < MIN_MAX_QUEUE_BYTES => {
            found.push(ConfigError::MaxQueueBytes(bytes));
            None
        }
        Some(bytes) => Some(bytes),
        None => Some(crate::store::DEFAULT_MAX_QUEUE_BYTES),
    };
    store.finish(found);

    let mut credentials = top.section("credentials", found);
    let backend: Option<BackendName> = credentials.optional("backend", found);
    let tcti: Option<String> = credentials.optional("tcti", found);
    let credentials_kind = found.take(validate_credentials(
        backend.unwrap_or_default(),
        tcti.as_deref(),
    ));
    credentials.finish(found);

    let mut recovery = top.section("recovery", found);
    let recovery_options = RecoveryOptions {
        unregister_if_registered: recovery
            .optional("unregister_if_registered", found)
            .unwrap_or(RecoveryOptions::default().unregister_if_registered),
    };
    recovery.finish(found);

    let commands_table = top.raw_table("commands", found);
    let commands = super::commands::read(commands_table, found);
    top.finish(found);

    Some(Config {
        realm: realm?,
        device_id: device_id?,
        pairing_url: pairing_url?,
        pairing_token_file,
        store_dir: store_dir.unwrap_or_else(|| DEFAULT_STORE_DIR.into()),
        interfaces_dir: interfaces_dir.unwrap_or_else(|| DEFAULT_INTERFACES_DIR.into()),
        ca_file,
        bus: bus.unwrap_or_default(),
        store: crate::store::StoreOptions {
            max_queue_bytes: max_queue_bytes?,
        },
        credentials: credentials_kind?,
        recovery: recovery_options,
        commands: commands?,
    })
}

/// `device_id`, or where to derive it from: `machine_id_file` under `device_id_namespace`.
fn read_device_id(top: &mut Reader<'_>, found: &mut Findings) -> Option<DeviceIdSource> {
    let configured: Option<String> = top.optional("device_id", found);
    let namespace: Option<String> = top.optional("device_id_namespace", found);
    let machine_id_file: Option<PathBuf> = top.optional("machine_id_file", found);
    let namespace = match namespace {
        Some(text) => found.take(Uuid::parse_str(&text).map_err(|_| ConfigError::Namespace)),
        None => Some(device_id::DEFAULT_NAMESPACE),
    };
    match configured {
        Some(text) => found
            .take(text.parse().map_err(ConfigError::DeviceId))
            .map(DeviceIdSource::Configured),
        None => Some(DeviceIdSource::MachineId {
            file: machine_id_file.unwrap_or_else(|| DEFAULT_MACHINE_ID_FILE.into()),
            namespace: namespace?,
        }),
    }
}

fn validate_credentials(
    backend: BackendName,
    tcti: Option<&str>,
) -> Result<BackendKind, ConfigError> {
    let tcti = tcti.unwrap_or(DEFAULT_TCTI);
    // `device:PATH`, `swtpm:host=..,port=..`, `mssim:..`, `tabrmd:..`: a name, then options.
    let (name, _) = tcti.split_once(':').unwrap_or((tcti, ""));
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ConfigError::Tcti(format!(
            "{tcti:?} is not a TCTI string such as \"{DEFAULT_TCTI}\""
        )));
    }
    match backend {
        BackendName::File => Ok(BackendKind::File),
        BackendName::Tpm if cfg!(feature = "tpm") => Ok(BackendKind::Tpm {
            tcti: tcti.to_owned(),
        }),
        BackendName::Tpm => Err(ConfigError::TpmNotBuilt),
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
