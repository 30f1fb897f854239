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

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::credentials::{CredentialStore, CredentialsError, CredentialsSecret, DeviceKey};
use crate::pairing::csr::{CertificateInfo, CsrError};
use crate::pairing::{BrokerUrl, DeviceStatus, PairingClient, PairingError};

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

/// Broker refusals of a certificate Pairing calls valid before a new one is requested anyway.
pub const REJECTIONS_BEFORE_RENEWAL: u32 = 3;

use certificate::Stored;
pub use certificate::{RENEWAL_RETRY, renew_at, renew_fresh_at, renewal_retry_at};

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

    /// Forgets the stored certificate (the broker refused it); the next
    /// [`Provisioner::ensure_credentials`] requests a new one even if forgetting fails.
    pub async fn invalidate_certificate(&mut self) {
        self.force_new_certificate = true;
        let forgotten = self.on_store(|store| store.forget_certificate()).await;
        if let Err(err) = forgotten.and_then(|forgotten| forgotten.map_err(ProvisioningError::from))
        {
            warn!(error = %crate::error_chain::error_chain(&err), "couldn't remove the refused certificate");
        }
    }

    /// The broker refused the certificate of `ready`. As Astarte's guide recommends, ask
    /// Pairing whether it is still valid: only then is a new one requested (each request
    /// revokes the previous certificate). If Pairing can't tell, the certificate is kept.
    /// Pairing does not check revocation, so after `REJECTIONS_BEFORE_RENEWAL` refusals in a
    /// row a new certificate is requested anyway.
    pub async fn certificate_rejected(&mut self, ready: &Ready, consecutive: u32) {
        if consecutive >= REJECTIONS_BEFORE_RENEWAL {
            warn!(
                consecutive,
                "the broker keeps refusing the certificate; requesting a new one"
            );
            self.invalidate_certificate().await;
            return;
        }
        match self
            .client
            .verify_certificate(&ready.secret, &ready.cert_pem)
            .await
        {
            // The secret can't renew it either: register again, then get a new certificate.
            Err(source) if source.refuses_credentials() => {
                warn!(error = %crate::error_chain::error_chain(&source), "the broker refused the certificate and Pairing refuses the credentials secret");
                let _ = self.secret_refused(source);
                self.invalidate_certificate().await;
            }
            Ok(false) => {
                info!(
                    "Pairing confirms the certificate is no longer valid; a new one will be requested"
                );
                self.invalidate_certificate().await;
            }
            Ok(true) => warn!(
                "the broker refused a certificate Pairing still considers valid (check the broker's CA and the device clock); retrying with it"
            ),
            Err(err) => {
                warn!(error = %crate::error_chain::error_chain(&err), "couldn't verify the refused certificate with Pairing; retrying with it")
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

    /// The broker from device info (which also tells whether the device is inhibited). When
    /// Pairing is only temporarily unreachable, the broker it named last time will do.
    async fn broker(&mut self, secret: &CredentialsSecret) -> Result<BrokerUrl, ProvisioningError> {
        match self.client.device_info(secret).await {
            Ok(info) if info.status == DeviceStatus::Inhibited => Err(ProvisioningError::Inhibited),
            Ok(info) => {
                let broker = info.broker_url.to_string();
                let saved = self.on_store(move |store| store.save_broker(&broker)).await;
                if let Err(err) = saved.and_then(|saved| saved.map_err(ProvisioningError::from)) {
                    warn!(error = %crate::error_chain::error_chain(&err), "couldn't remember the broker URL");
                }
                Ok(info.broker_url)
            }
            Err(source) if source.is_retryable() => {
                let cached = self.on_store(|store| store.load_broker()).await;
                // Saved as `host:port` (BrokerUrl's display form).
                let parsed = |text: String| BrokerUrl::parse(&format!("mqtts://{text}")).ok();
                match cached.map(|loaded| loaded.map(|text| text.and_then(parsed))) {
                    Ok(Ok(Some(cached))) => {
                        warn!(error = %crate::error_chain::error_chain(&source), broker = %cached, "Pairing is unreachable; using the broker it named last time");
                        Ok(cached)
                    }
                    _ => Err(ProvisioningError::DeviceInfo { source }),
                }
            }
            Err(source) if source.refuses_credentials() => Err(self.secret_refused(source)),
            Err(source) => Err(ProvisioningError::DeviceInfo { source }),
        }
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

mod certificate;
mod failure;
mod registration;
#[cfg(test)]
mod tests;
mod token;
