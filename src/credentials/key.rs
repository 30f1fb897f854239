//! The device's private key, seen only through what it does: show its public half and sign.
//!
//! Both backends hand out an `Arc<dyn DeviceKey>`: the file backend wraps a key it read from
//! `client.key`, the TPM backend a key that never leaves the TPM. The CSR (written by
//! `pairing::csr`) and every TLS handshake (through `tls::mqtt_config`) sign with it, so
//! nothing outside the file backend ever holds key bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use rustls::pki_types::pem;

/// Signing failed (a TPM that went away, a key the TPM no longer accepts).
#[derive(Debug, thiserror::Error)]
#[error("the device key couldn't sign: {reason}")]
pub struct SignError {
    pub reason: String,
}

/// An ECDSA P-256 device key.
pub trait DeviceKey: Send + Sync + fmt::Debug {
    /// The public key as an uncompressed SEC1 point (`04 || x || y`, 65 bytes): what a
    /// certificate's `subjectPublicKey` holds.
    fn public_key(&self) -> &[u8];

    /// ECDSA P-256 with SHA-256 over `message` (hashed by the implementation), DER-encoded
    /// `Ecdsa-Sig-Value` (r, s): the form both X.509 and TLS use.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// A key held in memory (the file backend's). `Debug` never shows the key.
pub struct MemoryKey {
    pair: EcdsaKeyPair,
    /// The PKCS#8 document it was made from or read from.
    pkcs8: Vec<u8>,
}

/// Why a key couldn't be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the system's random generator failed")]
    Random,
    #[error("not a PEM document")]
    Pem,
    #[error("not a PKCS#8 ECDSA P-256 key ({0})")]
    Key(ring::error::KeyRejected),
}

impl MemoryKey {
    /// A fresh random P-256 key.
    pub fn generate() -> Result<MemoryKey, KeyError> {
        let random = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &random)
            .map_err(|_| KeyError::Random)?;
        MemoryKey::from_pkcs8(pkcs8.as_ref().to_vec())
    }

    /// A P-256 key from PKCS#8 PEM (the first private key or certificate section, whatever its
    /// label, as rcgen read it); any other key type is refused.
    pub fn from_pem(pem: &str) -> Result<MemoryKey, KeyError> {
        let (_, der) = pem::from_buf(&mut pem.as_bytes())
            .ok()
            .flatten()
            .ok_or(KeyError::Pem)?;
        MemoryKey::from_pkcs8(der)
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> Result<MemoryKey, KeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .map_err(KeyError::Key)?;
        Ok(MemoryKey { pair, pkcs8 })
    }

    /// PKCS#8 PEM, for the file backend to store.
    pub fn to_pem(&self) -> super::Secret {
        super::Secret::new(pem_encode("PRIVATE KEY", &self.pkcs8))
    }
}

/// `der` as a PEM document labelled `label` (64-character lines, LF endings).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        // Base64 is ASCII.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl fmt::Debug for MemoryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryKey(<redacted>)")
    }
}

impl DeviceKey for MemoryKey {
    fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| SignError {
                reason: "the system's random generator failed".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_and_sign_verifiably() {
        let key = MemoryKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let read = MemoryKey::from_pem(pem.expose()).unwrap();
        assert_eq!(read.public_key(), key.public_key());
        let signature = read.sign(b"m").unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            key.public_key(),
        );
        assert!(public.verify(b"m", &signature).is_ok());
    }

    #[test]
    fn other_documents_are_refused() {
        assert!(matches!(MemoryKey::from_pem("no PEM"), Err(KeyError::Pem)));
        let not_a_key = pem_encode("PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        assert!(matches!(
            MemoryKey::from_pem(&not_a_key),
            Err(KeyError::Key(_))
        ));
    }
}
