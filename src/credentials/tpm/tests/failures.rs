use std::fs;
use std::time::{Duration, Instant};

use rstest::rstest;

use super::*;

#[test]
fn cleared_tpm_loses_secret_and_key_and_accepts_new_ones() {
    let mut rig = Rig::new();
    rig.backend.save_secret(&secret()).unwrap();
    rig.backend.create_key().unwrap();
    rig.swtpm.clear().unwrap();

    let error = rig.backend.load_secret().unwrap_err();
    assert!(
        matches!(error, CredentialsError::Unseal { .. }),
        "{error:?}"
    );
    assert!(error.is_lost_secret());
    let error = rig.backend.load_key().unwrap_err();
    assert!(
        matches!(error, CredentialsError::CorruptKey { .. }),
        "{error:?}"
    );

    let key = rig.backend.create_key().unwrap();
    assert!(verifies(key.public_key(), b"m", &key.sign(b"m").unwrap()));
    rig.backend.save_secret(&secret()).unwrap();
    assert_eq!(rig.backend.load_secret().unwrap(), Some(secret()));
    assert!(rig.backend.load_key().unwrap().is_some());
}

#[test]
fn stopped_tpm_is_a_tpm_error_and_recovers_after_restart() {
    let mut rig = Rig::new();
    rig.backend.save_secret(&secret()).unwrap();
    let key = rig.backend.create_key().unwrap();
    rig.swtpm.stop();

    let started = Instant::now();
    assert!(is_tpm_error(rig.backend.load_secret()));
    assert!(is_tpm_error(rig.backend.load_key()));
    assert!(is_tpm_error(rig.backend.create_key()));
    assert!(is_tpm_error(rig.backend.save_secret(&secret())));
    assert!(key.sign(b"m").is_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    rig.swtpm.restart().unwrap();
    assert_eq!(rig.backend.load_secret().unwrap(), Some(secret()));
    assert!(key.sign(b"m").is_ok());
}

fn is_tpm_error<T>(result: Result<T, CredentialsError>) -> bool {
    matches!(result, Err(CredentialsError::Tpm { .. }))
}

#[test]
fn tpm_that_stops_answering_times_out_and_recovers() {
    let rig = Rig::new();
    let backend = TpmBackend::open(rig.dir.clone(), &rig.swtpm.tcti())
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let key = backend.create_key().unwrap();
    rig.swtpm.pause().unwrap();

    let started = Instant::now();
    let error = key.sign(b"m").unwrap_err();
    assert!(error.reason.contains("no answer"), "{error}");
    // The worker stuck in the TPM is not replaced by another one stuck there.
    let error = backend.load_key().unwrap_err();
    assert!(matches!(error, CredentialsError::Tpm { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    rig.swtpm.resume().unwrap();
    let signature = key.sign(b"m").unwrap();
    assert!(verifies(key.public_key(), b"m", &signature));
}

/// Ways a blob file can be damaged: each must be a typed error, never a panic.
fn damage(bytes: &[u8], how: &str) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    match how {
        "empty" => bytes.clear(),
        "truncated" => bytes.truncate(bytes.len() / 2),
        "one byte short" => {
            bytes.pop();
        }
        "trailing byte" => bytes.push(0),
        "garbage" => bytes = b"not a TPM blob at all, just text".to_vec(),
        "future version" => bytes[4] = 2,
        "last private byte flipped" => *bytes.last_mut().unwrap() ^= 1,
        "public point flipped" => {
            // The second byte of the public area's length-prefixed x coordinate, well inside.
            let index = 6 + 2 + 20;
            bytes[index] ^= 1;
        }
        _ => unreachable!("{how}"),
    }
    bytes
}

#[rstest]
#[case("empty")]
#[case("truncated")]
#[case("one byte short")]
#[case("trailing byte")]
#[case("garbage")]
#[case("future version")]
#[case("last private byte flipped")]
fn damaged_sealed_secret_cannot_be_unsealed(#[case] how: &str) {
    let rig = Rig::new();
    rig.backend.save_secret(&secret()).unwrap();
    let path = rig.file("secret.sealed");
    fs::write(&path, damage(&fs::read(&path).unwrap(), how)).unwrap();

    let error = rig.backend.load_secret().unwrap_err();
    assert!(
        matches!(error, CredentialsError::Unseal { .. }),
        "{how}: {error:?}"
    );
}

#[rstest]
#[case("empty")]
#[case("truncated")]
#[case("one byte short")]
#[case("trailing byte")]
#[case("garbage")]
#[case("future version")]
#[case("last private byte flipped")]
#[case("public point flipped")]
fn damaged_key_is_a_corrupt_key(#[case] how: &str) {
    let rig = Rig::new();
    rig.backend.create_key().unwrap();
    let path = rig.file("device-key.tpm");
    fs::write(&path, damage(&fs::read(&path).unwrap(), how)).unwrap();

    let error = rig.backend.load_key().unwrap_err();
    assert!(
        matches!(error, CredentialsError::CorruptKey { .. }),
        "{how}: {error:?}"
    );
}

#[test]
fn key_blob_in_place_of_the_sealed_secret_cannot_be_unsealed() {
    let rig = Rig::new();
    rig.backend.create_key().unwrap();
    fs::copy(rig.file("device-key.tpm"), rig.file("secret.sealed")).unwrap();

    let error = rig.backend.load_secret().unwrap_err();
    assert!(
        matches!(error, CredentialsError::Unseal { .. }),
        "{error:?}"
    );
}

#[rstest]
#[case::unknown_kind("tpm0")]
#[case::bad_port("swtpm:host=127.0.0.1,port=99999")]
#[case::bad_host("swtpm:host=bad host!,port=2321")]
#[case::empty("")]
fn invalid_tcti_is_refused_at_open(#[case] tcti: &str) {
    let error = TpmBackend::open(PathBuf::from("/nonexistent"), tcti).unwrap_err();
    assert!(
        matches!(
            error,
            CredentialsError::Tpm {
                operation: "open",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn open_does_not_need_a_reachable_tpm() {
    let rig = Rig::new();
    let tcti = rig.swtpm.tcti();
    drop(rig);
    let dir = tempfile::tempdir().unwrap();
    assert!(TpmBackend::open(dir.path().to_owned(), &tcti).is_ok());
    assert!(TpmBackend::open(dir.path().to_owned(), "device:/dev/tpmrm0").is_ok());
}

#[test]
fn every_prefix_of_a_blob_is_refused_before_reaching_the_tpm() {
    let rig = Rig::new();
    rig.backend.create_key().unwrap();
    let bytes = fs::read(rig.file("device-key.tpm")).unwrap();

    assert!(Blob::decode(&bytes, Kind::Key).is_ok());
    for len in 0..bytes.len() {
        assert!(
            Blob::decode(&bytes[..len], Kind::Key).is_err(),
            "{len} bytes"
        );
    }
}
