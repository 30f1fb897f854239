//! Device credentials: the Pairing credentials secret and the MQTT client key and certificate,
//! and the file-backed store that keeps them.
//!
//! Layout under the store directory:
//! `credentials/` (0700) with `secret`, `client.key` (PKCS#8 PEM) and `client.crt` (PEM),
//! all 0600. Every write replaces a file atomically (see [`crate::fs_atomic`]); a crash leaves either
//! the old or the new file, and the key is written before the certificate, so a crash between
//! the two leaves a certificate that does not match its key, which the provisioning flow
//! detects and replaces.

mod secret;

use crate::pairing::BrokerUrl;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

pub use secret::{CredentialsSecret, InvalidSecret, Secret};

const DIR_NAME: &str = "credentials";
const SECRET_FILE: &str = "secret";
const KEY_FILE: &str = "client.key";
const CERT_FILE: &str = "client.crt";
const BROKER_FILE: &str = "broker";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

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
}

/// Credentials kept as files in one private directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Opens (creating it if needed) `<store_dir>/credentials` and removes temp files left by
    /// an interrupted write.
    pub fn open(store_dir: &Path) -> Result<FileStore, CredentialsError> {
        let dir = store_dir.join(DIR_NAME);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .map_err(|source| CredentialsError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        tighten(&dir, DIR_MODE)?;
        let removed = crate::fs_atomic::remove_leftovers(&dir).map_err(|source| {
            CredentialsError::Remove {
                path: dir.clone(),
                source,
            }
        })?;
        for path in removed {
            info!(path = %path.display(), "removed the leftover of an interrupted write");
        }
        Ok(FileStore { dir })
    }

    /// The `credentials/` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the credentials secret file (for operator-facing messages).
    pub fn secret_path(&self) -> PathBuf {
        self.dir.join(SECRET_FILE)
    }

    /// The stored secret; `None` if there is none. A file that doesn't hold a well-formed
    /// secret is [`CredentialsError::CorruptSecret`]: it is not ours to delete.
    pub fn load_secret(&self) -> Result<Option<CredentialsSecret>, CredentialsError> {
        let path = self.secret_path();
        let Some(bytes) = self.read(&path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        CredentialsSecret::parse(&text)
            .map(Some)
            .map_err(|source| CredentialsError::CorruptSecret { path, source })
    }

    pub fn save_secret(&self, secret: &CredentialsSecret) -> Result<(), CredentialsError> {
        write(&self.secret_path(), secret.expose().as_bytes())
    }

    /// The broker Pairing named last time (`host:port`), so a restart can connect while
    /// Pairing is unreachable. Unreadable content counts as none.
    pub fn load_broker(&self) -> Result<Option<BrokerUrl>, CredentialsError> {
        let Some(bytes) = self.read(&self.dir.join(BROKER_FILE))? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(BrokerUrl::parse(&format!("mqtts://{}", text.trim())).ok())
    }

    /// Remembers the broker; written only when it changed (flash wear).
    pub fn save_broker(&self, broker: &BrokerUrl) -> Result<(), CredentialsError> {
        if self.load_broker()?.as_ref() == Some(broker) {
            return Ok(());
        }
        write(&self.dir.join(BROKER_FILE), broker.to_string().as_bytes())
    }

    /// The stored private key (PEM) and certificate (PEM), if both are present. Their content
    /// is not checked here. One without the other counts as none (and is logged).
    pub fn load_certificate(&self) -> Result<Option<(Secret, String)>, CredentialsError> {
        let key_path = self.dir.join(KEY_FILE);
        let cert_path = self.dir.join(CERT_FILE);
        let key = self.read(&key_path)?;
        let cert = self.read(&cert_path)?;
        match (key, cert) {
            (Some(key), Some(cert)) => {
                let key = String::from_utf8(key).map_err(|_| CredentialsError::Read {
                    path: key_path,
                    source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
                })?;
                Ok(Some((
                    Secret::new(key),
                    String::from_utf8_lossy(&cert).into_owned(),
                )))
            }
            (None, None) => Ok(None),
            (key, _) => {
                let (present, missing) = if key.is_some() {
                    (key_path, cert_path)
                } else {
                    (cert_path, key_path)
                };
                warn!(
                    present = %present.display(),
                    missing = %missing.display(),
                    "ignoring a client key or certificate without its partner; a new one will be requested"
                );
                Ok(None)
            }
        }
    }

    /// Stores a key and its certificate: the key first, so a crash in between leaves a pair
    /// that visibly doesn't match rather than a certificate for a key we no longer have.
    pub fn save_certificate(
        &self,
        key_pem: &Secret,
        cert_pem: &str,
    ) -> Result<(), CredentialsError> {
        write(&self.dir.join(KEY_FILE), key_pem.expose().as_bytes())?;
        write(&self.dir.join(CERT_FILE), cert_pem.as_bytes())
    }

    /// Removes the certificate and its key (absent files are fine).
    pub fn forget_certificate(&self) -> Result<(), CredentialsError> {
        for name in [CERT_FILE, KEY_FILE] {
            crate::fs_atomic::remove_durably(&self.dir.join(name)).map_err(|err| {
                CredentialsError::Remove {
                    path: err.path,
                    source: err.source,
                }
            })?;
        }
        Ok(())
    }

    /// Reads a credentials file, first narrowing permissions that are wider than 0600.
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, CredentialsError> {
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

fn write(path: &Path, bytes: &[u8]) -> Result<(), CredentialsError> {
    crate::fs_atomic::write_atomic(path, bytes, FILE_MODE).map_err(|err| CredentialsError::Write {
        path: err.path,
        source: err.source,
    })
}

#[cfg(test)]
mod tests;
