//! The credentials secret: the stored one, or a new one from a registration, which is also
//! how lost or refused credentials are recovered.
//!
//! Recovery, with an agent token at hand:
//! 1. mark the recovery in progress (`credentials/recovering`, durable);
//! 2. wipe the stale credential artifacts: secret (or sealed blob), device key, certificate,
//!    remembered broker. Queued data, properties and interfaces are elsewhere and untouched;
//! 3. register; on `422 already registered`, unregister with the same token and register
//!    again (`[recovery] unregister_if_registered`);
//! 4. store the new secret and clear the mark.
//!
//! The certificate comes next, as on any start. An interruption anywhere leaves the mark (or
//! a stored secret), so the next start resumes at step 2 and ends in the same state: every
//! step is idempotent, and a registration whose answer was lost is undone by step 3.

use tracing::{info, warn};

use super::{Phase, Provisioner, ProvisioningError};
use crate::credentials::CredentialsSecret;
use crate::pairing::PairingError;

impl Provisioner {
    /// The stored secret, or a new one when there is none, it is lost (corrupt, unsealable),
    /// Pairing refused it, or a recovery was interrupted.
    pub(super) async fn secret(
        &mut self,
        report: &(dyn Fn(Phase) + Send + Sync),
    ) -> Result<CredentialsSecret, ProvisioningError> {
        let lost = if self.on_store(|store| store.recovery_pending()).await? {
            Some("a recovery was interrupted".to_owned())
        } else if let Some(refused) = self.refused.clone() {
            Some(refused)
        } else {
            match self.on_store(|store| store.load_secret()).await? {
                Ok(Some(secret)) => return Ok(secret),
                Ok(None) => None,
                Err(error) if error.is_lost_secret() => {
                    Some(crate::error_chain::error_chain(&error))
                }
                Err(error) => return Err(error.into()),
            }
        };
        self.register(lost, report).await
    }

    async fn register(
        &mut self,
        lost: Option<String>,
        report: &(dyn Fn(Phase) + Send + Sync),
    ) -> Result<CredentialsSecret, ProvisioningError> {
        let tokens = self.tokens.clone();
        let token = self
            .on_store(move |_| tokens.current())
            .await?
            .map_err(|source| ProvisioningError::NoToken {
                lost: lost.clone(),
                source,
            })?;
        match &lost {
            Some(reason) => warn!(
                reason = %reason,
                token = %token.origin,
                "the credentials secret is lost or refused: recovering by registering again"
            ),
            None => info!(token = %token.origin, "registering the device"),
        }
        self.report(report, Phase::Registering);
        self.on_store(|store| store.mark_recovery().and_then(|()| store.wipe()))
            .await??;
        let origin = token.origin.clone();
        let value = token.value.expose();
        let secret = match self.client.register(value).await {
            Ok(secret) => secret,
            Err(PairingError::AlreadyRegistered { detail })
                if self.options.unregister_if_registered =>
            {
                warn!(%detail, "Pairing says the device is already registered: unregistering it with the agent token, then registering again");
                match self.client.unregister(value).await {
                    Ok(()) | Err(PairingError::NotFound { .. }) => {}
                    Err(source) => return Err(ProvisioningError::Unregister { origin, source }),
                }
                self.client
                    .register(value)
                    .await
                    .map_err(|source| ProvisioningError::Register {
                        origin: origin.clone(),
                        source,
                    })?
            }
            Err(source) => return Err(ProvisioningError::Register { origin, source }),
        };
        let saved = secret.clone();
        self.on_store(move |store| {
            store
                .save_secret(&saved)
                .and_then(|()| store.clear_recovery())
        })
        .await??;
        self.refused = None;
        if lost.is_some() {
            info!("credentials recovered: device registered again, new secret stored");
        } else {
            info!("device registered, credentials secret stored");
        }
        Ok(secret)
    }

    /// Pairing answered 401/403 to the stored secret: the next attempt registers again.
    pub(super) fn secret_refused(&mut self, source: PairingError) -> ProvisioningError {
        self.refused = Some(format!(
            "Pairing refused the stored credentials secret ({source})"
        ));
        ProvisioningError::SecretRefused { source }
    }
}
