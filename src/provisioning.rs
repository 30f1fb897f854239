//! From configuration to usable credentials: register if needed, discover the broker, and
//! obtain (or reuse) the MQTT client certificate. Retries until it succeeds or is cancelled,
//! reporting the agent state ([`Phase`]) an operator needs to act on.
//!
//! Lost or refused credentials are recovered here (see `registration.rs`): with an agent token
//! at hand the device registers again, after unregistering itself when Pairing answers that
//! it is already registered.
//!
//! Certificate renewal rule: a certificate is due at `not_after - min(RENEW_BEFORE,
//! lifetime / 10)`. Renewing a day ahead covers Astarte's usual 91-day certificates; the
//! tenth keeps short-lived (test) certificates usable for most of their life instead of
//! renewing them in a loop.
//!
//! Here: the retry loop and one attempt. The steps are in `provisioning/`: `registration.rs`
//! (the secret), `broker.rs` (device info and the broker), `certificate.rs` (the client
//! certificate), `rejection.rs` (the broker refused the certificate), `token.rs` (agent
//! tokens); `error.rs` and `failure.rs` say what went wrong and when to retry.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::credentials::{CredentialStore, CredentialsSecret, DeviceKey};
use crate::pairing::csr::CertificateInfo;
use crate::pairing::{BrokerUrl, PairingClient};

use certificate::Stored;
pub use certificate::{RENEWAL_RETRY, renew_at, renew_fresh_at, renewal_retry_at};
pub use error::ProvisioningError;
pub use rejection::REJECTIONS_BEFORE_RENEWAL;
pub use token::{NoToken, TokenError, Tokens};

/// Renew at most this long before the certificate expires (see the module docs).
pub const RENEW_BEFORE: Duration = Duration::from_secs(24 * 60 * 60);
/// Retries of transient failures (network, 5xx, a missing token file).
const FAST_BASE: Duration = Duration::from_secs(1);
const FAST_MAX: Duration = Duration::from_secs(5 * 60);
/// Retries of failures that need someone to change something.
const SLOW_BASE: Duration = Duration::from_secs(30);
const SLOW_MAX: Duration = Duration::from_secs(10 * 60);

/// What provisioning is doing or waiting for; maps onto the agent states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Registering the device with the agent token (`registering`).
    Registering,
    /// Asking Pairing for status, broker and certificate (`obtaining-credentials`).
    ObtainingCredentials,
    /// Stuck until an operator provides a token or a secret (`credentials-missing`).
    CredentialsMissing { reason: String },
    /// Pairing refuses credentials to this device (`inhibited`).
    Inhibited,
}

/// Everything needed to connect to the broker.
#[derive(Debug, Clone)]
pub struct Ready {
    pub secret: CredentialsSecret,
    pub key: Arc<dyn DeviceKey>,
    pub cert_pem: String,
    pub cert_info: CertificateInfo,
    pub broker: BrokerUrl,
    /// When the certificate must be renewed (call `ensure_credentials` again then).
    pub renew_at: SystemTime,
}

/// Turns configuration into [`Ready`] credentials, retrying as long as it takes.
#[derive(Debug)]
pub struct Provisioner {
    client: PairingClient,
    store: CredentialStore,
    tokens: Arc<Tokens>,
    options: RecoveryOptions,
    /// Why the stored secret must be replaced (Pairing refused it), for the next attempt.
    refused: Option<String>,
    fast: Backoff,
    slow: Backoff,
    /// Set when the broker refused the certificate: request a new one even if it looks fine.
    force_new_certificate: bool,
    last_phase: Option<Phase>,
    last_failure: Option<String>,
}

/// `[recovery]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// On `422 already registered`, unregister with the agent token and register again.
    pub unregister_if_registered: bool,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            unregister_if_registered: true,
        }
    }
}

impl Provisioner {
    pub fn new(
        client: PairingClient,
        store: CredentialStore,
        tokens: Arc<Tokens>,
        options: RecoveryOptions,
    ) -> Self {
        Provisioner {
            client,
            store,
            tokens,
            options,
            refused: None,
            fast: Backoff::new(FAST_BASE, FAST_MAX),
            slow: Backoff::new(SLOW_BASE, SLOW_MAX),
            force_new_certificate: false,
            last_phase: None,
            last_failure: None,
        }
    }

    /// Replaces the retry delays: `fast` for transient failures, `slow` for those needing
    /// an operator.
    pub fn with_backoff(mut self, fast: Backoff, slow: Backoff) -> Self {
        self.fast = fast;
        self.slow = slow;
        self
    }

    pub fn store(&self) -> &CredentialStore {
        &self.store
    }

    /// Loads or obtains credentials, retrying every failure; only cancellation ends it
    /// without [`Ready`]. `report` hears the first [`Phase`] of this call and every change.
    pub async fn ensure_credentials(
        &mut self,
        report: &(dyn Fn(Phase) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<Ready, ProvisioningError> {
        self.last_phase = None;
        loop {
            let tokens = self.tokens.snapshot();
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ProvisioningError::Cancelled),
                result = self.attempt(report) => result,
            };
            let err = match result {
                Ok(ready) => {
                    self.fast.reset();
                    self.slow.reset();
                    self.last_failure = None;
                    return Ok(ready);
                }
                Err(err) => err,
            };
            let secret_path = self.store.secret_path();
            let context = failure::Context {
                realm: self.client.realm(),
                device_id: self.client.device_id(),
                secret_path: &secret_path,
                token_file: self.tokens.file(),
            };
            let (phase, retry) = context.classify(&err);
            let delay = match retry {
                failure::Retry::Now => Duration::ZERO,
                failure::Retry::Fast => self.fast.next_delay(),
                failure::Retry::Slow => self.slow.next_delay(),
                failure::Retry::NewToken => Duration::MAX,
            };
            self.log_failure(&err, retry, delay);
            if let Some(phase) = phase {
                self.report(report, phase);
            }
            // Any retry ends early when a new token appears: an operator acting is worth a try.
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ProvisioningError::Cancelled),
                () = self.tokens.changed(&tokens) => self.slow.reset(),
                () = sleep(delay) => {}
            }
        }
    }

    /// Runs a credentials store operation (fsynced files, maybe a TPM) off the async runtime.
    async fn on_store<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&CredentialStore) -> T + Send + 'static,
    ) -> Result<T, ProvisioningError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || operation(&store))
            .await
            .map_err(|source| ProvisioningError::StoreTask { source })
    }

    async fn attempt(
        &mut self,
        report: &(dyn Fn(Phase) + Send + Sync),
    ) -> Result<Ready, ProvisioningError> {
        let secret = self.secret(report).await?;
        self.report(report, Phase::ObtainingCredentials);
        let broker = self.broker(&secret).await?;
        let ((key, cert_pem, cert_info), renew) = match self.stored_certificate().await? {
            Stored::Usable(stored) => {
                let renew = renew_at(&stored.2);
                (stored, renew)
            }
            Stored::Due(stored) => match self.new_certificate(&secret).await {
                Ok(issued) => {
                    let renew = renew_fresh_at(&issued.2, SystemTime::now());
                    (issued, renew)
                }
                // A certificate that still works beats none: keep it and try again later.
                Err(err) => {
                    let retry = renewal_retry_at(&stored.2, SystemTime::now());
                    warn!(
                        error = %crate::error_chain::error_chain(&err),
                        not_after = unix_secs(stored.2.not_after),
                        "couldn't renew the certificate; using the current one meanwhile"
                    );
                    (stored, retry)
                }
            },
            Stored::None => {
                let issued = self.new_certificate(&secret).await?;
                let renew = renew_fresh_at(&issued.2, SystemTime::now());
                (issued, renew)
            }
        };
        Ok(Ready {
            secret,
            key,
            cert_pem,
            cert_info,
            broker,
            renew_at: renew,
        })
    }

    fn common_name(&self) -> String {
        format!("{}/{}", self.client.realm(), self.client.device_id())
    }

    fn report(&mut self, report: &(dyn Fn(Phase) + Send + Sync), phase: Phase) {
        if self.last_phase.as_ref() != Some(&phase) {
            self.last_phase = Some(phase.clone());
            report(phase);
        }
    }

    /// Each distinct failure once at `warn`; the same one again only at `debug`.
    fn log_failure(&mut self, err: &ProvisioningError, retry: failure::Retry, delay: Duration) {
        let text = crate::error_chain::error_chain(err);
        let retry_in = match retry {
            failure::Retry::NewToken => "when the agent token changes".to_owned(),
            _ => format!("{delay:?}"),
        };
        if self.last_failure.as_deref() == Some(text.as_str()) {
            debug!(error = %text, retry_in, "provisioning failed again");
        } else {
            warn!(error = %text, retry_in, "provisioning failed");
            self.last_failure = Some(text);
        }
    }
}

/// Like `tokio::time::sleep`, with `Duration::MAX` meaning forever.
async fn sleep(delay: Duration) {
    match tokio::time::Instant::now().checked_add(delay) {
        Some(deadline) if delay != Duration::MAX => tokio::time::sleep_until(deadline).await,
        _ => std::future::pending().await,
    }
}

pub(crate) fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

mod broker;
mod certificate;
mod error;
mod failure;
mod registration;
mod rejection;
#[cfg(test)]
mod tests;
mod token;
