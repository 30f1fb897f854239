//! The device's MQTT certificate: the CSR (signed by the device key, wherever it lives), and
//! checks of an issued certificate against that key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use self::x509::Certificate;

use crate::credentials::{DeviceKey, SignError, pem_encode};

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("couldn't sign the certificate request")]
    Generate { source: SignError },
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
    // PKCS#10 CertificationRequestInfo: version 0, the subject, the P-256 public key, no
    // attributes (an empty `[0]`).
    let common_name = tlv(UTF8_STRING, common_name.as_bytes());
    let attribute = tlv(SEQUENCE, &[ID_AT_COMMON_NAME, &common_name].concat());
    let subject = tlv(SEQUENCE, &tlv(SET, &attribute));
    let public_key = tlv(BIT_STRING, &[&[0], key.public_key()].concat());
    let key_info = tlv(SEQUENCE, &[EC_P256_ALGORITHM, &public_key].concat());
    let info = tlv(
        SEQUENCE,
        &[&[INTEGER, 1, 0][..], &subject, &key_info, &[ATTRIBUTES, 0]].concat(),
    );
    let signature = key
        .sign(&info)
        .map_err(|source| CsrError::Generate { source })?;
    let signature = tlv(BIT_STRING, &[&[0], signature.as_slice()].concat());
    let request = tlv(
        SEQUENCE,
        &[&info, ECDSA_WITH_SHA256_ALGORITHM, &signature].concat(),
    );
    Ok(pem_encode("CERTIFICATE REQUEST", &request))
}

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const UTF8_STRING: u8 = 0x0c;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// `[0]`, constructed: the attributes of a CertificationRequestInfo.
const ATTRIBUTES: u8 = 0xa0;
/// OID 2.5.4.3 (`id-at-commonName`).
const ID_AT_COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
/// AlgorithmIdentifier { id-ecPublicKey, prime256v1 }.
const EC_P256_ALGORITHM: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// AlgorithmIdentifier { ecdsa-with-SHA256 } (no parameters).
const ECDSA_WITH_SHA256_ALGORITHM: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// A DER value: `tag`, the definite length of `contents`, `contents`.
fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
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
