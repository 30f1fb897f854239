//! The device's MQTT key and certificate: key and CSR generation, and checks of an issued
//! certificate against its key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, PKCS_ECDSA_P256_SHA256,
    PublicKeyData,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::credentials::Secret;

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("couldn't generate the key and certificate request")]
    Generate { source: rcgen::Error },
    #[error("the certificate is not valid PEM: {reason}")]
    ParseCertificate { reason: String },
    #[error("expected exactly one certificate, found {count}")]
    CertificateCount { count: usize },
    #[error("the private key is not a valid PEM private key")]
    ParseKey { source: rcgen::Error },
    #[error("the certificate has no readable common name")]
    MissingCommonName,
    #[error("the certificate validity is outside the range this system can represent")]
    OutOfRange,
    #[error("the certificate does not belong to the private key")]
    KeyMismatch,
}

/// What the agent needs to know about its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub common_name: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// A fresh EC P-256 key (PKCS#8 PEM) and a CSR for it signed with SHA-256, with subject
/// `CN=<common_name>` (for Astarte `<realm>/<device_id>`, the `/` being a plain character;
/// a UTF8String, so the 64-character limit of PrintableString CNs does not apply: a realm
/// may be 48 characters, so the CN may be 71).
pub fn generate_key_and_csr(common_name: &str) -> Result<(Secret, String), CsrError> {
    let generate = || -> Result<(Secret, String), rcgen::Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            DnValue::Utf8String(common_name.to_owned()),
        );
        let mut params = CertificateParams::default();
        params.distinguished_name = name;
        let csr = params.serialize_request(&key)?;
        Ok((Secret::new(key.serialize_pem()), csr.pem()?))
    };
    generate().map_err(|source| CsrError::Generate { source })
}

/// Reads the single certificate in `cert_pem` and checks that it certifies the public half of
/// `key_pem`.
pub fn inspect_certificate(cert_pem: &str, key_pem: &Secret) -> Result<CertificateInfo, CsrError> {
    let mut blocks = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(cert_pem.as_bytes()) {
        let block = block.map_err(|error| CsrError::ParseCertificate {
            reason: error.to_string(),
        })?;
        if block.label == "CERTIFICATE" {
            blocks.push(block);
        }
    }
    let [block] = blocks.as_slice() else {
        return Err(CsrError::CertificateCount {
            count: blocks.len(),
        });
    };
    let (_, cert) =
        X509Certificate::from_der(&block.contents).map_err(|error| CsrError::ParseCertificate {
            reason: error.to_string(),
        })?;
    let key =
        KeyPair::from_pem(key_pem.expose()).map_err(|source| CsrError::ParseKey { source })?;
    if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
        return Err(CsrError::KeyMismatch);
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|entry| entry.as_str().ok())
        .ok_or(CsrError::MissingCommonName)?
        .to_owned();
    let validity = cert.validity();
    Ok(CertificateInfo {
        common_name,
        not_before: to_system_time(validity.not_before.timestamp())?,
        not_after: to_system_time(validity.not_after.timestamp())?,
    })
}

fn to_system_time(secs: i64) -> Result<SystemTime, CsrError> {
    let offset = Duration::from_secs(secs.unsigned_abs());
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    time.ok_or(CsrError::OutOfRange)
}

#[cfg(test)]
mod tests;
