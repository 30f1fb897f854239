//! The TPM backend against a real (software) TPM: swtpm, started per test on free ports.

mod compat;
mod failures;
mod key;
mod secret;

use std::path::PathBuf;

use astarte_sandbox::Swtpm;
use tempfile::TempDir;

use super::*;

const SECRET: &str = "TTkd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1IgidtPOs=";

fn secret() -> CredentialsSecret {
    CredentialsSecret::parse(SECRET).unwrap()
}

/// A swtpm with its own state and a backend using it, in a fresh temp folder. Fields drop in
/// this order: the backend (its last TPM commands), then swtpm (killed and reaped), then the
/// folder; a folder removed under a running swtpm gets its state file written back.
struct Rig {
    backend: TpmBackend,
    swtpm: Swtpm,
    /// The credentials folder the backend writes to.
    dir: PathBuf,
    _root: TempDir,
}

impl Rig {
    fn new() -> Rig {
        let root = tempfile::tempdir().unwrap();
        let swtpm = Swtpm::start(&root.path().join("tpm")).unwrap();
        let dir = root.path().join("credentials");
        std::fs::create_dir(&dir).unwrap();
        let backend = TpmBackend::open(dir.clone(), &swtpm.tcti()).unwrap();
        Rig {
            backend,
            swtpm,
            dir,
            _root: root,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Verifies a DER ECDSA P-256 SHA-256 signature with ring, independently of the TPM.
fn verifies(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, public_key)
        .verify(message, signature)
        .is_ok()
}
