//! Blobs made by an earlier build of the backend (tss-esapi 7.7) still load, unseal and sign:
//! `fixture/` holds a swtpm state and the `device-key.tpm` and `secret.sealed` that build made
//! on it, with the key's public point (`public.key`) and [`SECRET`] as the sealed secret.

use std::fs;

use super::*;

const STATE: &[u8] = include_bytes!("fixture/tpm2-00.permall");
const KEY_BLOB: &[u8] = include_bytes!("fixture/device-key.tpm");
const SEALED_BLOB: &[u8] = include_bytes!("fixture/secret.sealed");
const PUBLIC_KEY: &[u8] = include_bytes!("fixture/public.key");

#[test]
fn blobs_of_the_tss_esapi_build_load_unchanged() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("tpm");
    fs::create_dir(&state).unwrap();
    fs::write(state.join("tpm2-00.permall"), STATE).unwrap();
    let dir = root.path().join("credentials");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("device-key.tpm"), KEY_BLOB).unwrap();
    fs::write(dir.join("secret.sealed"), SEALED_BLOB).unwrap();
    let swtpm = Swtpm::start(&state).unwrap();
    let backend = TpmBackend::open(dir.clone(), &swtpm.tcti()).unwrap();

    assert_eq!(backend.load_secret().unwrap(), Some(secret()));
    let key = backend.load_key().unwrap().unwrap();
    assert_eq!(key.public_key(), PUBLIC_KEY);
    assert!(verifies(PUBLIC_KEY, b"m", &key.sign(b"m").unwrap()));
    // Read, never rewritten.
    assert_eq!(fs::read(dir.join("device-key.tpm")).unwrap(), KEY_BLOB);
    assert_eq!(fs::read(dir.join("secret.sealed")).unwrap(), SEALED_BLOB);
}
