use std::fs;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

#[test]
fn sealed_secret_round_trips() {
    let rig = Rig::new();
    rig.backend.save_secret(&secret()).unwrap();
    assert_eq!(rig.backend.load_secret().unwrap(), Some(secret()));
}

#[test]
fn no_sealed_secret_is_no_secret() {
    let rig = Rig::new();
    assert_eq!(rig.backend.load_secret().unwrap(), None);
}

#[test]
fn no_file_holds_the_secret_in_clear() {
    let rig = Rig::new();
    rig.backend.save_secret(&secret()).unwrap();
    rig.backend.create_key().unwrap();
    rig.backend.load_secret().unwrap();

    let raw = STANDARD.decode(SECRET).unwrap();
    let files: Vec<_> = fs::read_dir(&rig.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for path in files {
        let content = fs::read(&path).unwrap();
        for needle in [SECRET.as_bytes(), &raw] {
            assert!(
                !content.windows(needle.len()).any(|window| window == needle),
                "{} holds the secret",
                path.display()
            );
        }
    }
}

#[test]
fn sealed_secret_survives_a_tpm_restart() {
    let mut rig = Rig::new();
    rig.backend.save_secret(&secret()).unwrap();
    rig.swtpm.restart().unwrap();
    assert_eq!(rig.backend.load_secret().unwrap(), Some(secret()));
}

#[test]
fn file_backend_secret_is_sealed_and_its_plaintext_removed() {
    let rig = Rig::new();
    fs::write(rig.file("secret"), format!("{SECRET}\n")).unwrap();

    assert_eq!(rig.backend.load_secret().unwrap(), Some(secret()));
    assert!(!rig.file("secret").exists());
    assert!(rig.file("secret.sealed").exists());
    // From now on it comes from the sealed blob.
    assert_eq!(rig.backend.load_secret().unwrap(), Some(secret()));
}

#[test]
fn file_backend_secret_wins_over_an_older_sealed_one() {
    // TPM, then files (a new secret from a new registration), then TPM again.
    let rig = Rig::new();
    let old = CredentialsSecret::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    rig.backend.save_secret(&old).unwrap();
    fs::write(rig.file("secret"), SECRET).unwrap();

    assert_eq!(rig.backend.load_secret().unwrap(), Some(secret()));
    assert!(!rig.file("secret").exists());
    assert_eq!(rig.backend.load_secret().unwrap(), Some(secret()));
}

#[test]
fn corrupt_file_backend_secret_is_a_corrupt_secret_and_kept() {
    let rig = Rig::new();
    fs::write(rig.file("secret"), "not a secret").unwrap();

    let error = rig.backend.load_secret().unwrap_err();
    assert!(
        matches!(error, CredentialsError::CorruptSecret { .. }),
        "{error:?}"
    );
    assert!(error.is_lost_secret());
    assert!(rig.file("secret").exists());
}

#[test]
fn saving_a_secret_removes_a_leftover_plaintext_one() {
    let rig = Rig::new();
    fs::write(rig.file("secret"), "stale").unwrap();
    rig.backend.save_secret(&secret()).unwrap();
    assert!(!rig.file("secret").exists());
}

#[test]
fn new_key_removes_the_file_backends_key() {
    let rig = Rig::new();
    fs::write(rig.file("client.key"), "-----BEGIN PRIVATE KEY-----").unwrap();
    rig.backend.create_key().unwrap();
    assert!(!rig.file("client.key").exists());
}

#[test]
fn artifacts_name_the_sealed_secret_first_and_the_plaintext_leftovers() {
    let rig = Rig::new();
    assert_eq!(
        rig.backend.artifacts(),
        ["secret.sealed", "device-key.tpm", "secret", "client.key"]
    );
    assert_eq!(rig.backend.kind(), "tpm");
}

#[test]
fn secret_unseals_many_times_in_a_row_without_leaking_sessions() {
    // swtpm holds three loaded sessions and three objects: a leak fails within four rounds.
    let rig = Rig::new();
    rig.backend.save_secret(&secret()).unwrap();
    for round in 0..10 {
        assert_eq!(
            rig.backend.load_secret().unwrap(),
            Some(secret()),
            "round {round}"
        );
    }
}
