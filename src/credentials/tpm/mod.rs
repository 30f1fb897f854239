//! The TPM backend (Cargo feature `tpm`): the device key never leaves a TPM 2.0, the
//! credentials secret is sealed to it, and both are useless on any other TPM, or on the same
//! one once it has been cleared.
//!
//! # Design
//!
//! - **Reaching the TPM.** A TCTI configuration string (`[credentials] tcti`, default
//!   `device:/dev/tpmrm0`, the kernel's resource manager; `swtpm:host=...,port=...` in tests),
//!   through tpm2-tss's ESAPI, called directly (`esys.rs`, over the `tss-esapi-sys` bindings;
//!   the `tss-esapi` wrapper weighed over a megabyte of the binary). [`TpmBackend::open`] only
//!   validates it (`tcti.rs`): the TPM is first contacted by the first operation.
//! - **Storage primary key.** Owner hierarchy, the TCG standard ECC P-256 storage key template
//!   (restricted, decrypt, fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA,
//!   AES-128-CFB, empty unique). It is re-created with `TPM2_CreatePrimary` by every operation
//!   and never persisted to NV: it derives from the owner seed, so it is the same key until
//!   the TPM is cleared, and after a clear (or on another board) no blob made before loads.
//!   That is how a cleared or replaced TPM is told apart: `TPM2_Load` refuses the blob.
//! - **Device key** (`device-key.tpm`). A child of the primary: ECC P-256, ECDSA-SHA256,
//!   sign, fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA, not restricted (TLS
//!   signs digests the TPM did not compute). The file holds the public area and the private
//!   area the TPM encrypted under the primary (format: `blob.rs`). `sign` hashes with SHA-256
//!   in software and calls `TPM2_Sign` with a null hashcheck ticket; the (r, s) the TPM returns
//!   are DER-encoded here.
//! - **Sealed secret** (`secret.sealed`). A keyed-hash data object, child of the primary
//!   (fixedTPM, fixedParent, userWithAuth, noDA), whose sensitive data are the secret's 44
//!   bytes. The secret travels to and from the TPM in sessions salted with the primary key with
//!   parameter encryption, so it is not on the bus in clear either; it is never written to a
//!   file.
//! - **Migration from the file backend.** A plaintext `secret` is sealed (replacing any sealed
//!   blob: the plaintext is the newer one, whether a migration was interrupted after sealing
//!   or the device went from TPM to files and back) and removed durably; a new device key
//!   removes a plaintext `client.key` (its certificate is replaced anyway). Both are among
//!   [`Backend::artifacts`] so a wipe never leaves them behind.
//! - **Errors.** A blob the TPM refuses to load (format-one TPM response codes, see
//!   `failure.rs`) or can't be parsed is [`CredentialsError::Unseal`] (secret) or
//!   [`CredentialsError::CorruptKey`] (key); every other failure, from an unreachable TPM to
//!   one that is busy, is [`CredentialsError::Tpm`], worth retrying.
//! - **Connection and deadlines.** swtpm and `/dev/tpm0` have no resource manager: each
//!   operation flushes every transient object and session it made, on error paths too
//!   (`commands.rs`), so at most three objects are loaded at a time. The ESAPI context lives on
//!   one worker thread and callers wait at most [`DEFAULT_TIMEOUT`] for an answer (ESAPI's own
//!   calls have no timeout; `worker.rs`). A sign is five TPM commands (`TPM2_CreatePrimary`,
//!   `TPM2_Load`, `TPM2_Sign`, two `TPM2_FlushContext`).

mod blob;
mod commands;
mod esys;
mod failure;
mod key;
mod raw;
mod tcti;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use self::blob::{Blob, Kind};
use self::esys::Sensitive;
use self::failure::Failure;
use self::key::TpmKey;
use self::tcti::Tcti;
use self::worker::Tpm;
use super::{
    Backend, CredentialsError, CredentialsSecret, DeviceKey, read_private, remove, write_private,
};

const SEALED_FILE: &str = "secret.sealed";
const KEY_FILE: &str = "device-key.tpm";
/// What the file backend keeps in clear, migrated or removed by this one.
const PLAIN_SECRET_FILE: &str = "secret";
const PLAIN_KEY_FILE: &str = "client.key";

/// How long one TPM operation (a handful of commands) may take before it counts as failed:
/// generous for a slow discrete TPM, and bounded, so a TPM that never answers becomes an
/// error instead of a hung handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the secret sealed by, and the device key inside, a TPM 2.0.
#[derive(Debug)]
pub struct TpmBackend {
    dir: PathBuf,
    tpm: Arc<Tpm>,
}

impl TpmBackend {
    /// A backend keeping its blobs in `dir`, reaching the TPM through `tcti` (e.g.
    /// `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`). Only checks that `tcti` is a
    /// configuration tpm2-tss understands; the TPM needn't be reachable yet.
    pub fn open(dir: PathBuf, tcti: &str) -> Result<TpmBackend, CredentialsError> {
        let invalid = || CredentialsError::Tpm {
            operation: "open",
            reason: format!(
                "`{tcti}` is not a TCTI configuration (expected device:<path>, \
                 swtpm:host=<host>,port=<port>, mssim:host=<host>,port=<port> or tabrmd:...)"
            ),
        };
        let conf = Tcti::parse(tcti).ok_or_else(invalid)?;
        Ok(TpmBackend {
            dir,
            tpm: Arc::new(Tpm::new(conf, DEFAULT_TIMEOUT)),
        })
    }

    /// The same backend with another limit on one TPM operation (keys made afterwards share
    /// it).
    pub fn with_timeout(self, timeout: Duration) -> TpmBackend {
        let tpm = Tpm::new(self.tpm.tcti().clone(), timeout);
        TpmBackend {
            dir: self.dir,
            tpm: Arc::new(tpm),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Seals the file backend's plaintext secret, if there is one, and removes it.
    fn migrate_plain_secret(&self) -> Result<Option<CredentialsSecret>, CredentialsError> {
        let plain = self.path(PLAIN_SECRET_FILE);
        let Some(bytes) = read_private(&plain)? else {
            return Ok(None);
        };
        let secret =
            CredentialsSecret::parse(&String::from_utf8_lossy(&bytes)).map_err(|source| {
                CredentialsError::CorruptSecret {
                    path: plain.clone(),
                    source,
                }
            })?;
        info!(
            from = %plain.display(),
            to = %self.path(SEALED_FILE).display(),
            "sealing the file backend's credentials secret with the TPM"
        );
        self.save_secret(&secret)?;
        Ok(Some(secret))
    }

    /// Removes a plaintext file this backend supersedes, saying so if there was one.
    fn remove_plain(&self, name: &str, what: &str) -> Result<(), CredentialsError> {
        let path = self.path(name);
        if path.symlink_metadata().is_ok() {
            remove(&path)?;
            info!(path = %path.display(), "removed the file backend's {what}");
        }
        Ok(())
    }
}

impl Backend for TpmBackend {
    fn kind(&self) -> &'static str {
        "tpm"
    }

    fn load_secret(&self) -> Result<Option<CredentialsSecret>, CredentialsError> {
        if let Some(secret) = self.migrate_plain_secret()? {
            return Ok(Some(secret));
        }
        let path = self.path(SEALED_FILE);
        let Some(bytes) = read_private(&path)? else {
            return Ok(None);
        };
        let unseal = |reason: String| CredentialsError::Unseal {
            path: path.clone(),
            reason,
        };
        let blob = Blob::decode(&bytes, Kind::Sealed).map_err(|e| unseal(e.to_string()))?;
        let unsealed = self
            .tpm
            .run(move |context| commands::unseal(context, &blob))
            .map_err(|failure| match failure {
                Failure::Rejected(reason) => unseal(reason),
                other => tpm_error("unseal", other),
            })?;
        CredentialsSecret::parse(&String::from_utf8_lossy(unsealed.value()))
            .map(Some)
            .map_err(|source| CredentialsError::CorruptSecret { path, source })
    }

    fn save_secret(&self, secret: &CredentialsSecret) -> Result<(), CredentialsError> {
        let data = Sensitive::from(secret.expose().as_bytes().to_vec());
        let blob = self
            .tpm
            .run(move |context| commands::seal(context, data.value()))
            .map_err(|failure| tpm_error("seal", failure))?;
        let bytes = blob
            .encode(Kind::Sealed)
            .map_err(|e| CredentialsError::Tpm {
                operation: "seal",
                reason: e.to_string(),
            })?;
        write_private(&self.path(SEALED_FILE), &bytes)?;
        self.remove_plain(PLAIN_SECRET_FILE, "plaintext credentials secret")
    }

    /// Loads the key once in the TPM, so a key it no longer accepts is
    /// [`CredentialsError::CorruptKey`] here rather than a failed TLS handshake later.
    fn load_key(&self) -> Result<Option<Arc<dyn DeviceKey>>, CredentialsError> {
        let path = self.path(KEY_FILE);
        let Some(bytes) = read_private(&path)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| CredentialsError::CorruptKey {
            path: path.clone(),
            reason,
        };
        let blob = Blob::decode(&bytes, Kind::Key).map_err(|e| corrupt(e.to_string()))?;
        let checked = blob.clone();
        self.tpm
            .run(move |context| commands::check_loads(context, &checked))
            .map_err(|failure| match failure {
                Failure::Rejected(reason) => corrupt(reason),
                other => tpm_error("load the device key", other),
            })?;
        let key = TpmKey::new(path.clone(), blob, self.tpm.clone())
            .ok_or_else(|| corrupt("the public area holds no P-256 point".into()))?;
        Ok(Some(Arc::new(key)))
    }

    fn create_key(&self) -> Result<Arc<dyn DeviceKey>, CredentialsError> {
        let path = self.path(KEY_FILE);
        let blob = self
            .tpm
            .run(commands::create_key)
            .map_err(|failure| tpm_error("create the device key", failure))?;
        let bytes = blob
            .encode(Kind::Key)
            .map_err(|e| CredentialsError::GenerateKey {
                reason: e.to_string(),
            })?;
        let key = TpmKey::new(path.clone(), blob, self.tpm.clone()).ok_or_else(|| {
            CredentialsError::GenerateKey {
                reason: "the TPM made a key without a P-256 point".into(),
            }
        })?;
        write_private(&path, &bytes)?;
        self.remove_plain(PLAIN_KEY_FILE, "plaintext device key")?;
        Ok(Arc::new(key))
    }

    /// The sealed secret and the key blob, then the file backend's plaintext files (gone after
    /// a migration; listed so a wipe can't leave them).
    fn artifacts(&self) -> &'static [&'static str] {
        &[SEALED_FILE, KEY_FILE, PLAIN_SECRET_FILE, PLAIN_KEY_FILE]
    }
}

fn tpm_error(operation: &'static str, failure: Failure) -> CredentialsError {
    CredentialsError::Tpm {
        operation,
        reason: failure.to_string(),
    }
}

#[cfg(test)]
mod tests;
