//! Device credentials: the Pairing credentials secret, the device key and its MQTT client
//! certificate, kept under `<store_dir>/credentials/` (0700, every file 0600, every write
//! atomic; see [`crate::fs_atomic`]).
//!
//! A [`Backend`] keeps the two things worth stealing, the secret and the key: the
//! [`file::FileBackend`] as plain files (`secret`, `client.key`), the TPM backend
//! (feature `tpm`) as a sealed blob and a key that never leaves the TPM. What is public or
//! derived (`client.crt`, `broker`, the recovery marker) is kept here the same way for both.
//!
//! Start-up narrows modes looser than 0600 (0700 for the folder), with a warning naming the
//! file.

mod file;
mod key;
mod secret;
#[cfg(feature = "tpm")]
pub mod tpm;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

pub use file::FileBackend;
pub(crate) use key::pem_encode;
pub use key::{DeviceKey, KeyError, MemoryKey, SignError};
pub use secret::{CredentialsSecret, InvalidSecret, Secret};

pub const DIR_NAME: &str = "credentials";
const CERT_FILE: &str = "client.crt";
const BROKER_FILE: &str = "broker";
/// Written by a clean stop when the broker's session may be resumed (`transport::resume`).
pub const MQTT_SESSION_FILE: &str = "mqtt-session";
/// Present while a recovery is under way (see `provisioning::registration`).
const RECOVERY_MARKER: &str = "recovering";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Which backend keeps the secret and the key (`[credentials] backend`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackendKind {
    #[default]
    File,
    /// A TPM 2.0 reached through `tcti` (a TCTI configuration string).
    Tpm { tcti: String },
}

/// The default `[credentials] tcti`: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("couldn't create the credentials directory {path}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("couldn't read {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("couldn't write {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error("couldn't remove {path}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("couldn't restrict the permissions of {path}")]
    Permissions { path: PathBuf, source: io::Error },
    #[error("the credentials secret in {path} is corrupt")]
    CorruptSecret {
        path: PathBuf,
        source: InvalidSecret,
    },
    #[error(
        "the sealed credentials secret {path} can't be unsealed (was the TPM cleared or replaced?): {reason}"
    )]
    Unseal { path: PathBuf, reason: String },
    #[error("the device key {path} is unusable: {reason}")]
    CorruptKey { path: PathBuf, reason: String },
    #[error("couldn't generate the device key: {reason}")]
    GenerateKey { reason: String },
    #[error("the TPM failed ({operation}): {reason}")]
    Tpm {
        operation: &'static str,
        reason: String,
    },
}

impl CredentialsError {
    /// The secret exists no more in usable form: only a new registration brings it back.
    pub fn is_lost_secret(&self) -> bool {
        matches!(
            self,
            CredentialsError::CorruptSecret { .. } | CredentialsError::Unseal { .. }
        )
    }
}

/// Keeps the secret and the device key. Both backends behave alike: `None` for what is not
/// there, [`CredentialsError::CorruptSecret`] or [`CredentialsError::Unseal`] for a secret that
/// is there but lost, [`CredentialsError::CorruptKey`] for a key that can't be used (a new one
/// is then made). Calls may block (files are fsynced, a TPM is slow): call them off the async
/// runtime.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `file` or `tpm`, for log lines.
    fn kind(&self) -> &'static str;
    fn load_secret(&self) -> Result<Option<CredentialsSecret>, CredentialsError>;
    fn save_secret(&self, secret: &CredentialsSecret) -> Result<(), CredentialsError>;
    fn load_key(&self) -> Result<Option<Arc<dyn DeviceKey>>, CredentialsError>;
    /// Makes a new key, stored in place of the old one.
    fn create_key(&self) -> Result<Arc<dyn DeviceKey>, CredentialsError>;
    /// The files (names inside the credentials folder) holding this backend's secret and
    /// key, the secret's first: what [`CredentialStore::wipe`] removes.
    fn artifacts(&self) -> &'static [&'static str];
}

/// The credentials folder and the backend that keeps the secret and the key.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    dir: PathBuf,
    backend: Arc<dyn Backend>,
}

impl CredentialStore {
    /// Opens (creating it if needed) `<store_dir>/credentials`, narrows loose modes, removes
    /// temp files left by an interrupted write, and opens the backend.
    pub fn open(store_dir: &Path, kind: &BackendKind) -> Result<CredentialStore, CredentialsError> {
        let dir = open_dir(store_dir)?;
        let backend: Arc<dyn Backend> = match kind {
            BackendKind::File => Arc::new(FileBackend::new(dir.clone())),
            #[cfg(feature = "tpm")]
            BackendKind::Tpm { tcti } => Arc::new(tpm::TpmBackend::open(dir.clone(), tcti)?),
            #[cfg(not(feature = "tpm"))]
            BackendKind::Tpm { .. } => {
                return Err(CredentialsError::Tpm {
                    operation: "open",
                    reason: "this build has no TPM support (Cargo feature `tpm`)".into(),
                });
            }
        };
        Ok(CredentialStore { dir, backend })
    }

    /// The file backend in `<store_dir>/credentials` (tests and tools).
    pub fn open_files(store_dir: &Path) -> Result<CredentialStore, CredentialsError> {
        CredentialStore::open(store_dir, &BackendKind::File)
    }

    /// The `credentials/` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Where the secret is kept (for operator-facing messages).
    pub fn secret_path(&self) -> PathBuf {
        self.dir.join(self.backend.artifacts()[0])
    }

    pub fn load_secret(&self) -> Result<Option<CredentialsSecret>, CredentialsError> {
        self.backend.load_secret()
    }

    pub fn save_secret(&self, secret: &CredentialsSecret) -> Result<(), CredentialsError> {
        self.backend.save_secret(secret)
    }

    /// The device key, made on first use. A key that can't be used is replaced (logged): the
    /// certificate for it is useless anyway.
    pub fn device_key(&self) -> Result<Arc<dyn DeviceKey>, CredentialsError> {
        match self.backend.load_key() {
            Ok(Some(key)) => Ok(key),
            Ok(None) => {
                let key = self.backend.create_key()?;
                info!(backend = self.backend.kind(), "new device key created");
                Ok(key)
            }
            Err(error @ CredentialsError::CorruptKey { .. }) => {
                warn!(error = %crate::error_chain::error_chain(&error), "replacing the unusable device key; a new certificate will be requested");
                self.forget_certificate()?;
                self.backend.create_key()
            }
            Err(error) => Err(error),
        }
    }

    /// The stored certificate chain (PEM); its content is not checked here.
    pub fn load_certificate(&self) -> Result<Option<String>, CredentialsError> {
        Ok(read_private(&self.dir.join(CERT_FILE))?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    pub fn save_certificate(&self, cert_pem: &str) -> Result<(), CredentialsError> {
        write_private(&self.dir.join(CERT_FILE), cert_pem.as_bytes())
    }

    /// Removes the certificate (absent is fine).
    pub fn forget_certificate(&self) -> Result<(), CredentialsError> {
        remove(&self.dir.join(CERT_FILE))
    }

    /// The broker Pairing named last time, as saved (provisioning parses it), so a restart
    /// can connect while Pairing is unreachable.
    pub fn load_broker(&self) -> Result<Option<String>, CredentialsError> {
        Ok(read_private(&self.dir.join(BROKER_FILE))?
            .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned()))
    }

    /// Remembers the broker; written only when it changed (flash wear).
    pub fn save_broker(&self, broker: &str) -> Result<(), CredentialsError> {
        if self.load_broker()?.as_deref() == Some(broker) {
            return Ok(());
        }
        write_private(&self.dir.join(BROKER_FILE), broker.as_bytes())
    }

    /// Removes every stale credential artifact: the backend's secret and key, the
    /// certificate, the remembered broker, and the record that the broker's MQTT session may
    /// be resumed. Nothing else in the store directory is touched. Idempotent.
    pub fn wipe(&self) -> Result<(), CredentialsError> {
        let backend = self.backend.artifacts().iter().copied();
        for name in backend.chain([CERT_FILE, BROKER_FILE, MQTT_SESSION_FILE]) {
            remove(&self.dir.join(name))?;
        }
        Ok(())
    }

    /// Whether a recovery was under way when the agent last stopped.
    pub fn recovery_pending(&self) -> bool {
        self.dir.join(RECOVERY_MARKER).exists()
    }

    /// Records, durably, that a recovery has started.
    pub fn mark_recovery(&self) -> Result<(), CredentialsError> {
        write_private(&self.dir.join(RECOVERY_MARKER), b"")
    }

    /// Records that the recovery is over.
    pub fn clear_recovery(&self) -> Result<(), CredentialsError> {
        remove(&self.dir.join(RECOVERY_MARKER))
    }
}

fn open_dir(store_dir: &Path) -> Result<PathBuf, CredentialsError> {
    let dir = store_dir.join(DIR_NAME);
    crate::fs_atomic::create_dir_durably(&dir, DIR_MODE).map_err(|source| {
        CredentialsError::CreateDir {
            path: dir.clone(),
            source,
        }
    })?;
    tighten(&dir, DIR_MODE)?;
    let removed =
        crate::fs_atomic::remove_leftovers(&dir).map_err(|source| CredentialsError::Remove {
            path: dir.clone(),
            source,
        })?;
    for path in removed {
        info!(path = %path.display(), "removed the leftover of an interrupted write");
    }
    for entry in fs::read_dir(&dir).map_err(|source| CredentialsError::Read {
        path: dir.clone(),
        source,
    })? {
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_ok_and(|kind| kind.is_file()) {
            tighten(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(dir)
}

/// Reads a credentials file, first narrowing permissions that are wider than 0600. `None` if
/// it does not exist.
pub(crate) fn read_private(path: &Path) -> Result<Option<Vec<u8>>, CredentialsError> {
    match fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialsError::Read {
                path: path.to_owned(),
                source,
            });
        }
        Ok(_) => {}
    }
    tighten(path, FILE_MODE)?;
    fs::read(path)
        .map(Some)
        .map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Replaces a credentials file atomically, mode 0600.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CredentialsError> {
    crate::fs_atomic::write_atomic(path, bytes, FILE_MODE).map_err(|err| CredentialsError::Write {
        path: err.path,
        source: err.source,
    })
}

/// Removes a credentials file durably (absent is fine).
pub(crate) fn remove(path: &Path) -> Result<(), CredentialsError> {
    crate::fs_atomic::remove_durably(path).map_err(|err| CredentialsError::Remove {
        path: err.path,
        source: err.source,
    })
}

fn tighten(path: &Path, mode: u32) -> Result<(), CredentialsError> {
    match crate::fs_atomic::tighten_mode(path, mode) {
        Ok(None) => Ok(()),
        Ok(Some(old)) => {
            warn!(
                path = %path.display(),
                old_mode = format_args!("{old:04o}"),
                new_mode = format_args!("{mode:04o}"),
                "credentials were accessible to others; permissions restricted"
            );
            Ok(())
        }
        Err(source) => Err(CredentialsError::Permissions {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests;
