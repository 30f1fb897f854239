//! Which failures an operator must act on, what to tell them, and when to retry.

use std::path::Path;

use super::{NoToken, Phase, ProvisioningError};
use crate::credentials::CredentialsError;
use crate::pairing::PairingError;

/// When the next attempt happens (any wait also ends when the agent token changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// At once: the failure already decided what the next attempt does differently.
    Now,
    /// Capped backoff from seconds (network, 5xx).
    Fast,
    /// Capped backoff from half a minute (someone has to change something).
    Slow,
    /// Only when the agent token changes (a refused, expired or missing token).
    NewToken,
}

/// What the operator messages refer to.
pub(super) struct Context<'a> {
    pub(super) realm: &'a str,
    pub(super) device_id: &'a str,
    pub(super) secret_path: &'a Path,
    pub(super) token_file: Option<&'a Path>,
}

impl Context<'_> {
    /// The phase to report (if it changes) and when to retry.
    pub(super) fn classify(&self, err: &ProvisioningError) -> (Option<Phase>, Retry) {
        let missing = |reason: String| Some(Phase::CredentialsMissing { reason });
        let (realm, device) = (self.realm, self.device_id);
        let token_hint = match self.token_file {
            Some(path) => format!(
                "write a Pairing agent JWT for realm {realm} into {} (mode 0600), or call Register",
                path.display()
            ),
            None => format!(
                "set pairing_token_file to a file holding a Pairing agent JWT for realm {realm}, or call Register"
            ),
        };
        match err {
            ProvisioningError::SecretRefused { .. } => (None, Retry::Now),
            ProvisioningError::NoToken { lost, source } => {
                let why = lost.clone().unwrap_or_else(|| {
                    format!(
                        "no credentials secret is stored at {}",
                        self.secret_path.display()
                    )
                });
                let token = match source {
                    NoToken::NotConfigured => "no agent token is available".to_owned(),
                    other => other.to_string(),
                };
                (
                    missing(format!(
                        "{why}, and {token}: {token_hint} (data keeps being queued meanwhile)"
                    )),
                    Retry::NewToken,
                )
            }
            ProvisioningError::Register { origin, source }
            | ProvisioningError::Unregister { origin, source } => {
                let unregistering = matches!(err, ProvisioningError::Unregister { .. });
                match source {
                    PairingError::AlreadyRegistered { detail } => (
                        missing(format!(
                            "device {device} is already registered in realm {realm} ({detail}) and [recovery] unregister_if_registered is off: unregister it (DELETE /v1/{realm}/agent/devices/{device}) or restore its secret at {}",
                            self.secret_path.display()
                        )),
                        Retry::Slow,
                    ),
                    PairingError::Unauthorized { .. }
                    | PairingError::Forbidden { .. }
                    | PairingError::InvalidToken => {
                        let needs = if unregistering {
                            format!("DELETE on agent/devices/{device}")
                        } else {
                            "POST on agent/devices".to_owned()
                        };
                        (
                            missing(format!(
                                "Pairing refused the agent token from {origin} ({source}): it needs a valid JWT for realm {realm} whose a_pa claim allows {needs}; {token_hint}"
                            )),
                            Retry::NewToken,
                        )
                    }
                    other if other.is_retryable() => (None, Retry::Fast),
                    _ => (None, Retry::Slow),
                }
            }
            ProvisioningError::Store {
                source: CredentialsError::Tpm { .. },
            } => (None, Retry::Fast),
            ProvisioningError::DeviceInfo { source }
            | ProvisioningError::RequestCertificate { source } => match source {
                PairingError::NotFound { .. } => (
                    missing(format!(
                        "Pairing doesn't know device {device} in realm {realm}: check the realm, the device id and the Pairing URL"
                    )),
                    Retry::Slow,
                ),
                other if other.is_retryable() => (None, Retry::Fast),
                _ => (None, Retry::Slow),
            },
            ProvisioningError::Inhibited => (Some(Phase::Inhibited), Retry::Slow),
            _ => (None, Retry::Slow),
        }
    }
}
