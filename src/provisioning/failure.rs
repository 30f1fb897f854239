//! Which failures an operator must act on, what to tell them, and how soon to retry.

use std::path::Path;

use super::{Phase, ProvisioningError};
use crate::credentials::CredentialsError;
use crate::pairing::PairingError;

/// What the operator messages refer to.
pub(super) struct Context<'a> {
    pub(super) realm: &'a str,
    pub(super) device_id: &'a str,
    pub(super) secret_path: &'a Path,
    pub(super) token_file: Option<&'a Path>,
}

impl Context<'_> {
    /// The phase to report (if it changes) and whether to retry slowly.
    pub(super) fn classify(&self, err: &ProvisioningError) -> (Option<Phase>, bool) {
        let missing = |reason: String| Some(Phase::CredentialsMissing { reason });
        let secret_path = self.secret_path.display();
        let (realm, device) = (self.realm, self.device_id);
        match err {
            ProvisioningError::Store {
                source: CredentialsError::CorruptSecret { path, .. },
            } => (
                missing(format!(
                    "the stored credentials secret {} is corrupt: restore it, or remove it to register again with an agent token",
                    path.display()
                )),
                true,
            ),
            ProvisioningError::NoTokenFile => (
                missing(format!(
                    "no credentials secret is stored at {secret_path} and no agent token file is configured: provide the secret or configure a Pairing agent token"
                )),
                false,
            ),
            ProvisioningError::TokenMissing { path }
            | ProvisioningError::ReadToken { path, .. } => (
                missing(format!(
                    "no credentials secret is stored and the agent token file {} is missing, empty or unreadable: write a Pairing agent JWT allowed to POST agent/devices into it",
                    path.display()
                )),
                false,
            ),
            ProvisioningError::Register { source } => match source {
                PairingError::AlreadyRegistered { detail } => (
                    missing(format!(
                        "device {device} is already registered in realm {realm} ({detail}) but its credentials secret is not stored here: unregister it (DELETE /v1/{realm}/agent/devices/{device}) or restore the secret at {secret_path}"
                    )),
                    true,
                ),
                PairingError::Unauthorized { .. }
                | PairingError::Forbidden { .. }
                | PairingError::InvalidToken => {
                    let token = self.token_file.map(|p| p.display().to_string());
                    (
                        missing(format!(
                            "Pairing rejected the agent token in {}: it needs a valid JWT for realm {realm} allowed to POST agent/devices",
                            token.unwrap_or_default()
                        )),
                        true,
                    )
                }
                other => (None, !other.is_retryable()),
            },
            ProvisioningError::DeviceInfo { source }
            | ProvisioningError::RequestCertificate { source } => match source {
                PairingError::Unauthorized { .. } | PairingError::Forbidden { .. } => (
                    missing(format!(
                        "the stored credentials secret was rejected by Pairing; the device may have been unregistered or registered again elsewhere: restore the right secret at {secret_path}"
                    )),
                    true,
                ),
                PairingError::NotFound { .. } => (
                    missing(format!(
                        "Pairing doesn't know device {device} in realm {realm}: check the realm, the device id and the Pairing URL"
                    )),
                    true,
                ),
                other => (None, !other.is_retryable()),
            },
            ProvisioningError::Inhibited => (Some(Phase::Inhibited), true),
            _ => (None, true),
        }
    }
}
