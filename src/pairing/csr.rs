//! The device's MQTT certificate: the CSR (signed by the device key, wherever it lives), and
//! checks of an issued certificate against that key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use self::x509::Certificate;

use crate::credentials::{CsrSigner, DeviceKey};

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("couldn't sign the certificate request")]
    Generate { source: rcgen::Error },
    #[error("the certificate is not valid PEM: {reason}")]
    ParseCertificate { reason: String },
    #[error("expected exactly one certificate, found {count}")]
    CertificateCount { count: usize },
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

/// A CSR for `key` signed by it with SHA-256, with subject `CN=<common_name>` (for Astarte
/// `<realm>/<device_id>`, the `/` being a plain character; a UTF8String, so the 64-character
/// limit of PrintableString CNs does not apply: a realm may be 48 characters, so the CN may be
/// 71).
pub fn certificate_request(common_name: &str, key: Arc<dyn DeviceKey>) -> Result<String, CsrError> {
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        DnValue::Utf8String(common_name.to_owned()),
    );
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params
        .serialize_request(&CsrSigner(key))
        .and_then(|csr| csr.pem())
        .map_err(|source| CsrError::Generate { source })
}

/// Reads the single certificate in `cert_pem` and checks that it certifies `public_key` (an
/// uncompressed SEC1 point, see [`DeviceKey::public_key`]).
pub fn inspect_certificate(cert_pem: &str, public_key: &[u8]) -> Result<CertificateInfo, CsrError> {
    let mut blocks = Vec::new();
    for block in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        blocks.push(block.map_err(|error| CsrError::ParseCertificate {
            reason: error.to_string(),
        })?);
    }
    let [block] = blocks.as_slice() else {
        return Err(CsrError::CertificateCount {
            count: blocks.len(),
        });
    };
    let cert = Certificate::from_der(block).map_err(|error| CsrError::ParseCertificate {
        reason: error.to_string(),
    })?;
    if cert.public_key != public_key {
        return Err(CsrError::KeyMismatch);
    }
    let common_name = cert
        .common_name
        .ok_or(CsrError::MissingCommonName)?
        .to_owned();
    Ok(CertificateInfo {
        common_name,
        not_before: to_system_time(cert.not_before)?,
        not_after: to_system_time(cert.not_after)?,
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
mod x509;
