//! The client certificate's life: when a stored one is still good, when to renew it, and
//! obtaining a new one (a CSR signed by the device key, signed in turn by Pairing). Renewal
//! reuses the device key; a new key is made only when there is none or it is unusable.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, info};

use super::{Provisioner, ProvisioningError, RENEW_BEFORE, unix_secs};
use crate::credentials::{CredentialsSecret, DeviceKey};
use crate::pairing::csr::{self, CertificateInfo};

/// `not_after - min(RENEW_BEFORE, lifetime / 10)`.
pub fn renew_at(info: &CertificateInfo) -> SystemTime {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or_default();
    let window = RENEW_BEFORE.min(lifetime / 10);
    info.not_after.checked_sub(window).unwrap_or(info.not_after)
}

/// How soon a failed renewal is tried again: in 5 minutes, or halfway to expiry if sooner.
pub fn renewal_retry_at(info: &CertificateInfo, now: SystemTime) -> SystemTime {
    let left = info.not_after.duration_since(now).unwrap_or_default();
    now + RENEWAL_RETRY.min(left / 2)
}

/// Delay before a failed renewal is attempted again (the current certificate still works).
pub const RENEWAL_RETRY: Duration = Duration::from_secs(300);

/// The device key, its certificate (PEM) and what it says.
pub(super) type Certified = (Arc<dyn DeviceKey>, String, CertificateInfo);

/// The stored certificate, judged against the clock.
pub(super) enum Stored {
    /// Valid and not yet due for renewal.
    Usable(Certified),
    /// Still valid but inside its renewal window.
    Due(Certified),
    /// Missing, unusable, expired, or refused by the broker.
    None,
}

/// A certificate just issued is used even when Pairing issues short-lived ones that start
/// inside the renewal window: it is renewed halfway through what is left of it, so a short
/// lifetime never turns into a request loop.
pub fn renew_fresh_at(info: &CertificateInfo, now: SystemTime) -> SystemTime {
    let due = renew_at(info);
    if due > now {
        return due;
    }
    let left = info.not_after.duration_since(now).unwrap_or_default();
    now + left / 2
}

impl Provisioner {
    /// The stored key and certificate, judged: usable, due for renewal, or none at all.
    pub(super) async fn stored_certificate(&self) -> Result<Stored, ProvisioningError> {
        if self.force_new_certificate {
            return Ok(Stored::None);
        }
        let Some(cert) = self.on_store(|store| store.load_certificate()).await?? else {
            return Ok(Stored::None);
        };
        let key = self.on_store(|store| store.device_key()).await??;
        let info = match csr::inspect_certificate(&cert, key.public_key()) {
            Ok(info) => info,
            Err(err) => {
                info!(error = %crate::error_chain::error_chain(&err), "stored certificate unusable, requesting a new one");
                return Ok(Stored::None);
            }
        };
        if info.common_name != self.common_name() {
            info!(cn = %info.common_name, "stored certificate names another device, requesting a new one");
            return Ok(Stored::None);
        }
        if SystemTime::now() >= info.not_after {
            info!(
                not_after = unix_secs(info.not_after),
                "stored certificate expired"
            );
            return Ok(Stored::None);
        }
        if SystemTime::now() >= renew_at(&info) {
            info!(
                not_after = unix_secs(info.not_after),
                "stored certificate is due for renewal"
            );
            return Ok(Stored::Due((key, cert, info)));
        }
        debug!(
            not_after = unix_secs(info.not_after),
            "reusing the stored certificate"
        );
        Ok(Stored::Usable((key, cert, info)))
    }

    pub(super) async fn new_certificate(
        &mut self,
        secret: &CredentialsSecret,
    ) -> Result<Certified, ProvisioningError> {
        let expected = self.common_name();
        let cn = expected.clone();
        // Making a key and signing may take a TPM a while: off the async runtime.
        let (key, csr) = self
            .on_store(move |store| {
                let key = store.device_key()?;
                Ok::<_, ProvisioningError>((key.clone(), csr::certificate_request(&cn, key)))
            })
            .await??;
        let csr = csr.map_err(|source| ProvisioningError::Csr { source })?;
        let cert = match self.client.request_certificate(secret, &csr).await {
            Ok(cert) => cert,
            Err(source) if source.refuses_credentials() => return Err(self.secret_refused(source)),
            Err(source) => return Err(ProvisioningError::RequestCertificate { source }),
        };
        let info = csr::inspect_certificate(&cert, key.public_key())
            .map_err(|source| ProvisioningError::IssuedCertificate { source })?;
        if info.common_name != expected {
            return Err(ProvisioningError::WrongCommonName {
                expected,
                got: info.common_name,
            });
        }
        // Pairing revoked the previous certificate: this one is the only one left, keep it.
        let saved = cert.clone();
        self.on_store(move |store| store.save_certificate(&saved))
            .await??;
        self.force_new_certificate = false;
        info!(
            not_after = unix_secs(info.not_after),
            "new certificate stored"
        );
        if SystemTime::now() >= info.not_after {
            return Err(ProvisioningError::CertificateAlreadyDue {
                not_after_unix: unix_secs(info.not_after),
            });
        }
        Ok((key, cert, info))
    }
}
