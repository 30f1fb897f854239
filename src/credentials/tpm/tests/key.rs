use std::sync::Arc;

use openssl::x509::X509Req;

use super::*;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, PKCS_ECDSA_P256_SHA256, PublicKeyData,
    SignatureAlgorithm, SigningKey,
};

#[test]
fn new_key_is_an_uncompressed_p256_point_and_its_signatures_verify() {
    let rig = Rig::new();
    let key = rig.backend.create_key().unwrap();

    let public_key = key.public_key();
    assert_eq!((public_key.len(), public_key[0]), (65, 0x04));
    let signature = key.sign(b"hello").unwrap();
    assert!(verifies(public_key, b"hello", &signature));
    assert!(!verifies(public_key, b"hellO", &signature));
}

#[test]
fn key_signs_many_times_in_a_row_without_leaking_tpm_objects() {
    // swtpm holds three transient objects: a leak would fail by the third signature.
    let rig = Rig::new();
    let key = rig.backend.create_key().unwrap();
    for round in 0..25u32 {
        let message = format!("message {round}");
        let signature = key.sign(message.as_bytes()).unwrap();
        assert!(
            verifies(key.public_key(), message.as_bytes(), &signature),
            "round {round}"
        );
    }
}

#[test]
fn no_key_file_is_no_key() {
    let rig = Rig::new();
    assert!(rig.backend.load_key().unwrap().is_none());
}

#[test]
fn stored_key_loads_with_the_same_public_key_and_signs_after_a_tpm_restart() {
    let mut rig = Rig::new();
    let created = rig.backend.create_key().unwrap();
    rig.swtpm.restart().unwrap();

    let loaded = rig.backend.load_key().unwrap().unwrap();
    assert_eq!(loaded.public_key(), created.public_key());
    let signature = loaded.sign(b"after restart").unwrap();
    assert!(verifies(created.public_key(), b"after restart", &signature));
}

#[test]
fn key_made_before_a_restart_still_signs_through_the_same_handle() {
    // The connection kept by the backend died with swtpm: the sign reconnects by itself.
    let mut rig = Rig::new();
    let key = rig.backend.create_key().unwrap();
    rig.swtpm.restart().unwrap();
    let signature = key.sign(b"reconnected").unwrap();
    assert!(verifies(key.public_key(), b"reconnected", &signature));
}

#[test]
fn certificate_request_signed_by_the_tpm_key_verifies() {
    let rig = Rig::new();
    let key: Arc<dyn DeviceKey> = rig.backend.create_key().unwrap();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        DnValue::Utf8String("realm/device".into()),
    );
    params.distinguished_name = name;

    let csr = params
        .serialize_request(&RcgenSigner(key.clone()))
        .unwrap()
        .pem()
        .unwrap();

    let request = X509Req::from_pem(csr.as_bytes()).unwrap();
    let public = request.public_key().unwrap();
    assert!(request.verify(&public).unwrap());
    let point = public.ec_key().unwrap().public_key().to_bytes(
        public.ec_key().unwrap().group(),
        openssl::ec::PointConversionForm::UNCOMPRESSED,
        &mut openssl::bn::BigNumContext::new().unwrap(),
    );
    assert_eq!(point.unwrap(), key.public_key());
}

/// Lets rcgen, an implementation independent of the agent's own CSR writer, sign with a
/// [`DeviceKey`].
struct RcgenSigner(Arc<dyn DeviceKey>);

impl PublicKeyData for RcgenSigner {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for RcgenSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}
