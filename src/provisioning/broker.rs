//! The broker, from Pairing's device info (which also tells whether the device is inhibited),
//! remembered for when Pairing is only temporarily unreachable.

use tracing::warn;

use super::{Provisioner, ProvisioningError};
use crate::credentials::CredentialsSecret;
use crate::pairing::{BrokerUrl, DeviceStatus};

impl Provisioner {
    /// The broker from device info (which also tells whether the device is inhibited). When
    /// Pairing is only temporarily unreachable, the broker it named last time will do.
    pub(super) async fn broker(
        &mut self,
        secret: &CredentialsSecret,
    ) -> Result<BrokerUrl, ProvisioningError> {
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
}
