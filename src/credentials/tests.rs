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

#[test]
fn open_creates_a_private_credentials_directory() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(&root.path().join("state")).unwrap();
    assert_eq!(store.dir(), root.path().join("state/credentials"));
    assert_eq!(mode_of(store.dir()), 0o700);
}

#[test]
fn open_restricts_a_credentials_directory_readable_by_others() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("credentials");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
    FileStore::open(root.path()).unwrap();
    assert_eq!(mode_of(&dir), 0o700);
}

#[test]
fn an_empty_store_has_no_secret_and_no_certificate() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    assert_eq!(store.load_secret().unwrap(), None);
    assert!(store.load_certificate().unwrap().is_none());
}

#[test]
fn secret_round_trips_with_mode_0600() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    store.save_secret(&secret()).unwrap();
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
    assert_eq!(mode_of(&store.secret_path()), 0o600);
}

#[test]
fn certificate_round_trips_with_mode_0600() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    let key = Secret::new("KEY PEM");
    store.save_certificate(&key, "CERT PEM").unwrap();
    let (loaded_key, loaded_cert) = store.load_certificate().unwrap().unwrap();
    assert_eq!((loaded_key, loaded_cert.as_str()), (key, "CERT PEM"));
    assert_eq!(mode_of(&store.dir().join("client.key")), 0o600);
    assert_eq!(mode_of(&store.dir().join("client.crt")), 0o600);
}

#[test]
fn a_secret_written_by_an_operator_with_a_newline_is_accepted() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    fs::write(store.secret_path(), format!("{SECRET}\n")).unwrap();
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
}

#[rstest::rstest]
#[case::empty(b"")]
#[case::truncated(b"TTkd5OgB13X/3qU0")]
#[case::binary(b"\xff\xfe\x00garbage")]
fn a_malformed_secret_file_is_reported_as_corrupt_and_kept(#[case] content: &[u8]) {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    fs::write(store.secret_path(), content).unwrap();
    let err = store.load_secret().unwrap_err();
    assert!(
        matches!(&err, CredentialsError::CorruptSecret { path, .. } if *path == store.secret_path()),
        "{err:?}"
    );
    assert_eq!(fs::read(store.secret_path()).unwrap(), content);
}

#[test]
fn loading_a_secret_readable_by_others_restricts_it_to_0600() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    store.save_secret(&secret()).unwrap();
    fs::set_permissions(store.secret_path(), Permissions::from_mode(0o644)).unwrap();
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
    assert_eq!(mode_of(&store.secret_path()), 0o600);
}

#[test]
fn loading_a_key_readable_by_others_restricts_it_to_0600() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    store.save_certificate(&Secret::new("k"), "c").unwrap();
    let key_path = store.dir().join("client.key");
    fs::set_permissions(&key_path, Permissions::from_mode(0o640)).unwrap();
    store.load_certificate().unwrap();
    assert_eq!(mode_of(&key_path), 0o600);
}

#[rstest::rstest]
#[case::key_without_certificate("client.crt")]
#[case::certificate_without_key("client.key")]
fn half_a_key_pair_counts_as_no_certificate(#[case] removed: &str) {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    store.save_certificate(&Secret::new("k"), "c").unwrap();
    fs::remove_file(store.dir().join(removed)).unwrap();
    assert!(store.load_certificate().unwrap().is_none());
}

#[test]
fn forget_certificate_removes_key_and_certificate_but_not_the_secret() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    store.save_secret(&secret()).unwrap();
    store.save_certificate(&Secret::new("k"), "c").unwrap();
    store.forget_certificate().unwrap();
    assert!(store.load_certificate().unwrap().is_none());
    assert!(!store.dir().join("client.key").exists());
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
    // Forgetting twice is fine.
    store.forget_certificate().unwrap();
}

#[test]
fn a_leftover_temp_file_is_removed_on_open_and_never_read() {
    let root = tempfile::tempdir().unwrap();
    let store = FileStore::open(root.path()).unwrap();
    store.save_secret(&secret()).unwrap();
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let tmp = store.dir().join("secret.tmp");
    fs::write(&tmp, other).unwrap();
    let store = FileStore::open(root.path()).unwrap();
    assert!(!tmp.exists());
    assert_eq!(store.load_secret().unwrap(), Some(secret()));
}
