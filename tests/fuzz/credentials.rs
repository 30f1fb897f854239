//! Credential files: the secret's text form, the client certificate (`inspect_certificate`)
//! and a `CredentialStore` opened over a folder of mutated `secret`, `client.crt`,
//! `client.key` and `broker` files. Every call answers, typed; a corrupt key is replaced.

use std::path::Path;

use astarte_agent::credentials::{
    CredentialStore, CredentialsError, CredentialsSecret, DeviceKey, InvalidSecret, MemoryKey,
};
use astarte_agent::pairing::csr::{CsrError, inspect_certificate};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fastrand::Rng;

use crate::{driver, mutate};

fn assert_typed(error: &CredentialsError) {
    match error {
        CredentialsError::CreateDir { .. }
        | CredentialsError::Read { .. }
        | CredentialsError::Write { .. }
        | CredentialsError::Remove { .. }
        | CredentialsError::Permissions { .. }
        | CredentialsError::CorruptSecret { .. }
        | CredentialsError::Unseal { .. }
        | CredentialsError::CorruptKey { .. }
        | CredentialsError::GenerateKey { .. }
        | CredentialsError::Tpm { .. } => driver::assert_message(error),
    }
}

fn assert_typed_csr(error: &CsrError) {
    match error {
        CsrError::Generate { .. }
        | CsrError::ParseCertificate { .. }
        | CsrError::CertificateCount { .. }
        | CsrError::MissingCommonName
        | CsrError::OutOfRange
        | CsrError::KeyMismatch => driver::assert_message(error),
    }
}

/// The device key and a certificate for it (self-signed: only its content is inspected).
struct Fixture {
    key: MemoryKey,
    key_pem: String,
    cert_pem: String,
}

impl Fixture {
    fn new() -> Fixture {
        let key = MemoryKey::generate().expect("a P-256 key");
        let key_pem = key.to_pem().expose().to_owned();
        let pair = rcgen::KeyPair::from_pem(&key_pem).expect("our own PEM");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("no names");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test/2TBn-jNESuuHamE2Zo1anA");
        let cert_pem = params.self_signed(&pair).expect("self-signed").pem();
        Fixture {
            key,
            key_pem,
            cert_pem,
        }
    }
}

fn secret_text(rng: &mut Rng) -> String {
    let bytes: Vec<u8> = (0..32).map(|_| rng.u8(..)).collect();
    STANDARD.encode(bytes)
}

fn secret(rng: &mut Rng) {
    let text = secret_text(rng);
    let padded = format!(
        "{}{text}{}",
        " ".repeat(rng.usize(0..3)),
        "\n".repeat(rng.usize(0..2))
    );
    assert!(CredentialsSecret::parse(&padded).is_ok(), "{padded:?}");
    let mutated = mutate::text(rng, &text);
    match CredentialsSecret::parse(&mutated) {
        Ok(parsed) => assert_eq!(parsed.expose().len(), CredentialsSecret::LEN),
        Err(error @ InvalidSecret) => driver::assert_message(&error),
    }
}

fn certificate(rng: &mut Rng, fixture: &Fixture) {
    let public_key = fixture.key.public_key();
    let info = inspect_certificate(&fixture.cert_pem, public_key);
    assert!(info.is_ok(), "{info:?}");
    let mutated = match rng.u8(0..4) {
        0 => format!("{0}{0}", fixture.cert_pem),
        // Break the DER inside a well-formed PEM frame.
        1 => {
            let der = pem_body(&fixture.cert_pem);
            let mut bytes = STANDARD.decode(der).unwrap_or_default();
            mutate::bytes(rng, &mut bytes);
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                STANDARD.encode(bytes)
            )
        }
        _ => mutate::text(rng, &fixture.cert_pem),
    };
    if let Err(error) = inspect_certificate(&mutated, public_key) {
        assert_typed_csr(&error);
    }
}

fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|line| !line.starts_with("-----"))
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write a test file");
}

/// A store over mutated files: loading answers; a corrupt key is replaced by a working one.
fn store(rng: &mut Rng, fixture: &Fixture) {
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path().join("credentials");
    std::fs::create_dir(&dir).expect("the credentials dir");
    let files: [(&str, Vec<u8>); 4] = [
        ("secret", secret_text(rng).into_bytes()),
        ("client.crt", fixture.cert_pem.clone().into_bytes()),
        ("client.key", fixture.key_pem.clone().into_bytes()),
        ("broker", b"mqtts://broker.example.com:8883/".to_vec()),
    ];
    for (name, mut bytes) in files {
        match rng.u8(0..5) {
            0 => continue,
            1 | 2 => mutate::bytes(rng, &mut bytes),
            _ => {}
        }
        write(&dir, name, &bytes);
    }
    let store = match CredentialStore::open_files(root.path()) {
        Ok(store) => store,
        Err(error) => return assert_typed(&error),
    };
    if let Err(error) = store.load_secret() {
        assert!(error.is_lost_secret(), "{error}");
        assert_typed(&error);
    }
    let key = store
        .device_key()
        .expect("a missing or corrupt key is replaced");
    assert_eq!(key.public_key().len(), 65);
    assert!(key.sign(b"message").is_ok());
    for result in [store.load_certificate(), store.load_broker()] {
        if let Err(error) = result {
            assert_typed(&error);
        }
    }
}

#[test]
fn credential_files() {
    let fixture = Fixture::new();
    driver::run("credential_files", 1500, |rng| match rng.u8(0..4) {
        0 => secret(rng),
        1 => store(rng, &fixture),
        _ => certificate(rng, &fixture),
    });
}
