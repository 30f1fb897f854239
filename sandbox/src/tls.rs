//! rustls client configurations for the sandbox broker (observer, test "devices").

use std::sync::Arc;

use openssl::pkey::PKey;
use openssl::x509::X509;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::ca::Identity;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("couldn't read a PEM {what}")]
    Pem {
        what: &'static str,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("rustls refused the configuration")]
    Rustls(#[from] rustls::Error),
}

/// A TLS client trusting only `ca_pem`, presenting `identity` if given (ring provider).
pub fn client_config(
    ca_pem: &str,
    identity: Option<&Identity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let pem = |what| move |source| TlsError::Pem { what, source };
    let mut roots = RootCertStore::empty();
    let ca = X509::from_pem(ca_pem.as_bytes())
        .and_then(|c| c.to_der())
        .map_err(pem("CA certificate"))?;
    roots.add(CertificateDer::from(ca))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => {
            let cert = X509::from_pem(identity.cert_pem.as_bytes())
                .and_then(|c| c.to_der())
                .map_err(pem("client certificate"))?;
            let key = PKey::private_key_from_pem(identity.key_pem.as_bytes())
                .and_then(|k| k.private_key_to_pkcs8())
                .map_err(pem("private key"))?;
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
            builder.with_client_auth_cert(vec![CertificateDer::from(cert)], key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
