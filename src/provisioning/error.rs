//! Why provisioning failed (see `failure.rs` for what each failure means to an operator).

use super::NoToken;
use crate::credentials::CredentialsError;
use crate::pairing::PairingError;
use crate::pairing::csr::CsrError;

#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error("provisioning was cancelled")]
    Cancelled,
    #[error("couldn't use the credentials store")]
    Store { source: CredentialsError },
    #[error("{}: no usable agent token to register with", lost.as_deref().unwrap_or("no credentials secret is stored"))]
    NoToken {
        /// Why a registration is needed, when the secret was lost or refused.
        lost: Option<String>,
        source: NoToken,
    },
    #[error("couldn't register the device with the agent token from {origin}")]
    Register {
        origin: String,
        source: PairingError,
    },
    #[error(
        "couldn't unregister the device (already registered) with the agent token from {origin}"
    )]
    Unregister {
        origin: String,
        source: PairingError,
    },
    #[error("Pairing refused the stored credentials secret; the next attempt registers again")]
    SecretRefused { source: PairingError },
    #[error("couldn't get the device info")]
    DeviceInfo { source: PairingError },
    #[error("couldn't obtain a certificate")]
    RequestCertificate { source: PairingError },
    #[error("Pairing reports the device as inhibited: credential requests are blocked")]
    Inhibited,
    #[error("couldn't make the certificate request")]
    Csr { source: CsrError },
    #[error("the credentials store task failed")]
    StoreTask { source: tokio::task::JoinError },
    #[error("the certificate issued by Pairing is unusable")]
    IssuedCertificate { source: CsrError },
    #[error("the certificate issued by Pairing names {got:?} instead of {expected:?}")]
    WrongCommonName { expected: String, got: String },
    #[error(
        "the certificate issued by Pairing has already expired (not after {not_after_unix}s since 1970): check the device clock"
    )]
    CertificateAlreadyDue { not_after_unix: u64 },
}

impl From<CredentialsError> for ProvisioningError {
    fn from(source: CredentialsError) -> Self {
        ProvisioningError::Store { source }
    }
}
