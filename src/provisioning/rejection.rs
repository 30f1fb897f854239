//! The broker refused the certificate: ask Pairing whether it is still valid, and request a
//! new one only when it is not (or the refusals go on).

use tracing::{info, warn};

use super::{Provisioner, ProvisioningError, Ready};

/// Broker refusals of a certificate Pairing calls valid before a new one is requested anyway.
pub const REJECTIONS_BEFORE_RENEWAL: u32 = 3;

impl Provisioner {
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
}
