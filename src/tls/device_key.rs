//! The device key as rustls sees it: a [`SigningKey`] that signs through [`DeviceKey`] (a file
//! key in memory, or the TPM), presented by a [`ResolvesClientCert`] that always offers the
//! device's certificate.
//!
//! rustls signs synchronously inside the handshake, so a TPM signature runs on the async
//! runtime's thread: one signature per connection, a few milliseconds on a TPM.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{SubjectPublicKeyInfoDer, alg_id};
use rustls::sign::{self, CertifiedKey, Signer};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::credentials::DeviceKey;

/// The only scheme a P-256 device key can produce.
const SCHEME: SignatureScheme = SignatureScheme::ECDSA_NISTP256_SHA256;

#[derive(Debug)]
pub(super) struct TlsDeviceKey {
    key: Arc<dyn DeviceKey>,
    spki: SubjectPublicKeyInfoDer<'static>,
}

impl TlsDeviceKey {
    pub(super) fn new(key: Arc<dyn DeviceKey>) -> TlsDeviceKey {
        let spki = sign::public_key_to_spki(&alg_id::ECDSA_P256, key.public_key());
        TlsDeviceKey { key, spki }
    }
}

impl sign::SigningKey for TlsDeviceKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SCHEME).then(|| {
            Box::new(TlsSigner {
                key: self.key.clone(),
            }) as Box<dyn Signer>
        })
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(self.spki.clone())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct TlsSigner {
    key: Arc<dyn DeviceKey>,
}

impl Signer for TlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.key.sign(message).map_err(|error| {
            tracing::warn!(%error, "the device key couldn't sign the TLS handshake");
            rustls::Error::General(error.to_string())
        })
    }

    fn scheme(&self) -> SignatureScheme {
        SCHEME
    }
}

/// Always offers the device certificate: the broker's list of acceptable CAs is not consulted
/// (Astarte's broker doesn't send a useful one), only whether it accepts ECDSA P-256.
#[derive(Debug)]
pub(super) struct DeviceCertificate(pub(super) Arc<CertifiedKey>);

impl ResolvesClientCert for DeviceCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes.contains(&SCHEME).then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
