use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;

use super::*;

const SECRET: &str = "TTkd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1IgidtPOs=";

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn secret() -> CredentialsSecret {
    CredentialsSecret::parse(SECRET).unwrap()
}

fn open(root: &Path) -> CredentialStore {
    CredentialStore::open_files(root).unwrap()
}

#[test]
fn open_creates_a_private_credentials_directory() {
    let root = tempfile::tempdir().unwrap();
    let store = open(&root.path().join("state"));
    assert_eq!(store.dir(), root.path().join("state/credentials"));
    assert_eq!(mode_of(store.dir()), 0o700);
    assert_eq!(store.backend().kind(), "file");
}

#[test]
fn open_restricts_the_directory_and_every_file_readable_by_others() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("credentials");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("client.crt"), "c").unwrap();
    fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.join("client.crt"), Permissions::from_mode(0o644)).unwrap();
    open(root.path());
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(mode_of(&dir.join("client.crt")), 0o600);
}

#[test]
fn an_empty_store_has_no_secret_and_no_certificate() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    assert_eq!(store.load_secret().unwrap(), None);
    assert!(store.load_certificate().unwrap().is_none());
    assert!(store.backend().load_key().unwrap().is_none());
}

#[test]
fn secret_round_trips_with_mode_0600() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    store.save_secret(&secret()).unwrap();
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
    assert_eq!(mode_of(&store.secret_path()), 0o600);
}

#[test]
fn the_device_key_is_made_once_then_reused_with_mode_0600() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    let first = store.device_key().unwrap();
    let again = open(root.path()).device_key().unwrap();
    assert_eq!(first.public_key(), again.public_key());
    assert_eq!(first.public_key().len(), 65);
    assert_eq!(mode_of(&store.dir().join("client.key")), 0o600);
}

#[test]
fn an_unusable_device_key_is_replaced_and_its_certificate_forgotten() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    store.save_certificate("CERT PEM").unwrap();
    fs::write(store.dir().join("client.key"), "garbage").unwrap();
    assert!(matches!(
        store.backend().load_key(),
        Err(CredentialsError::CorruptKey { .. })
    ));
    let key = store.device_key().unwrap();
    assert_eq!(
        store.backend().load_key().unwrap().unwrap().public_key(),
        key.public_key()
    );
    assert!(store.load_certificate().unwrap().is_none());
}

#[test]
fn certificate_round_trips_with_mode_0600() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    store.save_certificate("CERT PEM").unwrap();
    assert_eq!(
        store.load_certificate().unwrap().as_deref(),
        Some("CERT PEM")
    );
    assert_eq!(mode_of(&store.dir().join("client.crt")), 0o600);
}

#[test]
fn a_secret_written_by_an_operator_with_a_newline_is_accepted() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    fs::write(store.secret_path(), format!("{SECRET}\n")).unwrap();
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
}

#[rstest::rstest]
#[case::empty(b"")]
#[case::truncated(b"TTkd5OgB13X/3qU0")]
#[case::binary(b"\xff\xfe\x00garbage")]
fn a_malformed_secret_file_is_a_lost_secret_and_kept(#[case] content: &[u8]) {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    fs::write(store.secret_path(), content).unwrap();
    let err = store.load_secret().unwrap_err();
    assert!(
        matches!(&err, CredentialsError::CorruptSecret { path, .. } if *path == store.secret_path()),
        "{err:?}"
    );
    assert!(err.is_lost_secret());
    assert_eq!(fs::read(store.secret_path()).unwrap(), content);
}

#[test]
fn loading_a_secret_readable_by_others_restricts_it_to_0600() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    store.save_secret(&secret()).unwrap();
    fs::set_permissions(store.secret_path(), Permissions::from_mode(0o644)).unwrap();
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
    assert_eq!(mode_of(&store.secret_path()), 0o600);
}

#[test]
fn wipe_removes_exactly_the_credential_artifacts() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    store.save_secret(&secret()).unwrap();
    store.device_key().unwrap();
    store.save_certificate("c").unwrap();
    store.save_broker("broker.test:8883").unwrap();
    store.mark_recovery().unwrap();
    fs::write(root.path().join("agent.db"), "queued data").unwrap();
    fs::create_dir(root.path().join("interfaces")).unwrap();
    store.wipe().unwrap();
    let left: Vec<_> = fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["recovering".to_owned()]);
    assert!(store.recovery_pending());
    assert!(root.path().join("agent.db").exists());
    assert!(root.path().join("interfaces").exists());
    // Wiping again is fine; clearing the mark ends the recovery.
    store.wipe().unwrap();
    store.clear_recovery().unwrap();
    assert!(!open(root.path()).recovery_pending());
}

#[test]
fn forget_certificate_keeps_the_key_and_the_secret() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    store.save_secret(&secret()).unwrap();
    let key = store.device_key().unwrap();
    store.save_certificate("c").unwrap();
    store.forget_certificate().unwrap();
    assert!(store.load_certificate().unwrap().is_none());
    assert_eq!(store.device_key().unwrap().public_key(), key.public_key());
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
    store.forget_certificate().unwrap();
}

#[test]
fn a_leftover_temp_file_is_removed_on_open_and_never_read() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path());
    store.save_secret(&secret()).unwrap();
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let tmp = store.dir().join("secret.tmp");
    fs::write(&tmp, other).unwrap();
    let store = open(root.path());
    assert!(!tmp.exists());
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
}

#[test]
fn the_tpm_backend_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "tpm") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let kind = BackendKind::Tpm {
        tcti: DEFAULT_TCTI.into(),
    };
    let err = CredentialStore::open(root.path(), &kind).unwrap_err();
    assert!(err.to_string().contains("feature"), "{err}");
}
