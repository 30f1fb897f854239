//! TLS client configurations for Pairing (HTTPS) and the broker (MQTT with a client
//! certificate).
//!
//! Always rustls with the ring provider passed explicitly (never the process-wide default),
//! TLS 1.2 and 1.3 (Astarte's broker speaks only 1.2), and webpki verification of the server
//! against the trust anchors: the system roots plus an optional CA file. There is no way to
//! turn verification off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};
use tracing::{debug, warn};

use crate::credentials::DeviceKey;

mod device_key;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("couldn't read the CA file {path}")]
    ReadCaFile { path: PathBuf, source: pem::Error },
    #[error("the CA file {path} contains no certificate")]
    EmptyCaFile { path: PathBuf },
    #[error("the CA file {path} contains an unusable certificate")]
    InvalidCaCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "no trust anchors: the system has no usable root certificates and no CA file is configured"
    )]
    NoTrustAnchors,
    #[error("the client certificate is not valid PEM")]
    InvalidClientCertificate { source: pem::Error },
    #[error("the client certificate PEM contains no certificate")]
    MissingClientCertificate,
    #[error("the client certificate does not belong to the device key")]
    KeyMismatch { source: rustls::Error },
    #[error("couldn't set up TLS")]
    Config { source: rustls::Error },
}

/// System roots plus every certificate in `ca_file`. Unusable system roots are logged and
/// skipped; anything wrong with `ca_file` is an error, since the operator named it.
pub fn trust_anchors(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        warn!(error = %err, "couldn't load some system root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        warn!(ignored, "skipped unparsable system root certificates");
    }
    debug!(added, "loaded system root certificates");

    if let Some(path) = ca_file {
        let mut found = 0usize;
        for cert in CertificateDer::pem_file_iter(path).map_err(|source| TlsError::ReadCaFile {
            path: path.to_owned(),
            source,
        })? {
            let cert = cert.map_err(|source| TlsError::ReadCaFile {
                path: path.to_owned(),
                source,
            })?;
            roots
                .add(cert)
                .map_err(|source| TlsError::InvalidCaCertificate {
                    path: path.to_owned(),
                    source,
                })?;
            found += 1;
        }
        if found == 0 {
            return Err(TlsError::EmptyCaFile {
                path: path.to_owned(),
            });
        }
        debug!(path = %path.display(), found, "loaded CA file");
    }

    if roots.is_empty() {
        return Err(TlsError::NoTrustAnchors);
    }
    Ok(Arc::new(roots))
}

/// Server-authenticated TLS for the Pairing API.
pub fn http_config(roots: Arc<RootCertStore>) -> Result<ClientConfig, TlsError> {
    Ok(builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Mutually authenticated TLS for the broker: the device presents `cert_chain_pem` (leaf
/// first) and proves it holds `key`, which signs each handshake.
pub fn mqtt_config(
    roots: Arc<RootCertStore>,
    cert_chain_pem: &str,
    key: Arc<dyn DeviceKey>,
) -> Result<ClientConfig, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::InvalidClientCertificate { source })?;
    if chain.is_empty() {
        return Err(TlsError::MissingClientCertificate);
    }
    let certified = CertifiedKey::new(chain, Arc::new(device_key::TlsDeviceKey::new(key)));
    certified
        .keys_match()
        .map_err(|source| TlsError::KeyMismatch { source })?;
    Ok(builder()?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(device_key::DeviceCertificate(Arc::new(certified)))))
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, TlsError> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config { source })
}

#[cfg(test)]
mod tests;
