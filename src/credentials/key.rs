//! The device's private key, seen only through what it does: show its public half and sign.
//!
//! Both backends hand out an [`Arc<dyn DeviceKey>`]: the file backend wraps a key it read from
//! `client.key`, the TPM backend a key that never leaves the TPM. The CSR (through
//! [`CsrSigner`]) and every TLS handshake (through `tls::mqtt_config`) sign with it, so
//! nothing outside the file backend ever holds key bytes.

use std::fmt;
use std::sync::Arc;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm, SigningKey};

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
    pair: KeyPair,
}

impl MemoryKey {
    /// A fresh random P-256 key.
    pub fn generate() -> Result<MemoryKey, rcgen::Error> {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map(|pair| MemoryKey { pair })
    }

    /// A P-256 key from PKCS#8 PEM; any other key type is refused.
    pub fn from_pem(pem: &str) -> Result<MemoryKey, rcgen::Error> {
        let pair = KeyPair::from_pem(pem)?;
        if !pair.is_compatible(&PKCS_ECDSA_P256_SHA256) {
            return Err(rcgen::Error::UnsupportedSignatureAlgorithm);
        }
        Ok(MemoryKey { pair })
    }

    /// PKCS#8 PEM, for the file backend to store.
    pub fn to_pem(&self) -> super::Secret {
        super::Secret::new(self.pair.serialize_pem())
    }
}

impl fmt::Debug for MemoryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryKey(<redacted>)")
    }
}

impl DeviceKey for MemoryKey {
    fn public_key(&self) -> &[u8] {
        self.pair.der_bytes()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.pair.sign(message).map_err(|error| SignError {
            reason: error.to_string(),
        })
    }
}

/// Lets rcgen sign a CSR with any [`DeviceKey`].
pub struct CsrSigner(pub Arc<dyn DeviceKey>);

impl PublicKeyData for CsrSigner {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for CsrSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // rcgen's error has no room for the cause: log it here, where it is known.
        self.0.sign(msg).map_err(|error| {
            tracing::warn!(%error, "signing the certificate request failed");
            rcgen::Error::RemoteKeyError
        })
    }
}
