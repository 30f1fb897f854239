//! The device's MQTT key and certificate: key and CSR generation, and checks of an issued
//! certificate against its key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Time, Asn1TimeRef, Asn1Type};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509, X509NameBuilder, X509ReqBuilder};

use crate::credentials::Secret;

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("couldn't generate the key and certificate request")]
    Generate { source: ErrorStack },
    #[error("the certificate is not valid PEM")]
    ParseCertificate { source: ErrorStack },
    #[error("expected exactly one certificate, found {count}")]
    CertificateCount { count: usize },
    #[error("the private key is not a valid PEM private key")]
    ParseKey { source: ErrorStack },
    #[error("the certificate has no readable common name")]
    MissingCommonName,
    #[error("couldn't read the certificate validity")]
    Validity { source: ErrorStack },
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
/// `CN=<common_name>` (for Astarte `<realm>/<device_id>`, the `/` being a plain character).
pub fn generate_key_and_csr(common_name: &str) -> Result<(Secret, String), CsrError> {
    generate(common_name).map_err(|source| CsrError::Generate { source })
}

fn generate(common_name: &str) -> Result<(Secret, String), ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;

    let mut name = X509NameBuilder::new()?;
    // An explicit string type skips openssl's 64-character limit for CNs: a realm may be
    // 48 characters, so `<realm>/<device_id>` may be 71. Pairing replaces the CN anyway.
    name.append_entry_by_nid_with_type(Nid::COMMONNAME, common_name, Asn1Type::UTF8STRING)?;
    let mut req = X509ReqBuilder::new()?;
    req.set_version(0)?;
    req.set_subject_name(&name.build())?;
    req.set_pubkey(&key)?;
    req.sign(&key, MessageDigest::sha256())?;

    let key_pem = String::from_utf8_lossy(&key.private_key_to_pem_pkcs8()?).into_owned();
    let csr_pem = String::from_utf8_lossy(&req.build().to_pem()?).into_owned();
    Ok((Secret::new(key_pem), csr_pem))
}

/// Reads the single certificate in `cert_pem` and checks that it certifies the public half of
/// `key_pem`.
pub fn inspect_certificate(cert_pem: &str, key_pem: &Secret) -> Result<CertificateInfo, CsrError> {
    let certs = X509::stack_from_pem(cert_pem.as_bytes())
        .map_err(|source| CsrError::ParseCertificate { source })?;
    let [cert] = certs.as_slice() else {
        return Err(CsrError::CertificateCount { count: certs.len() });
    };
    let key = PKey::private_key_from_pem(key_pem.expose().as_bytes())
        .map_err(|source| CsrError::ParseKey { source })?;
    let matches = cert
        .public_key()
        .map(|public| public.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err(CsrError::KeyMismatch);
    }
    let common_name = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|entry| entry.data().to_string().ok())
        .ok_or(CsrError::MissingCommonName)?;
    Ok(CertificateInfo {
        common_name,
        not_before: to_system_time(cert.not_before())?,
        not_after: to_system_time(cert.not_after())?,
    })
}

fn to_system_time(time: &Asn1TimeRef) -> Result<SystemTime, CsrError> {
    let epoch = Asn1Time::from_unix(0).map_err(|source| CsrError::Validity { source })?;
    let diff = epoch
        .diff(time)
        .map_err(|source| CsrError::Validity { source })?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
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
