//! The Pairing API v1 HTTP client.

use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;
use url::Url;

use super::error::PairingError;
use super::types::{
    CertificateResponse, CsrRequest, Data, DeviceInfo, RegisterRequest, RegisterResponse,
    VerifyRequest, VerifyResponse, WireDeviceInfo,
};
use super::web::{self, HttpError, Outgoing};
use crate::credentials::CredentialsSecret;

/// Pairing answers are a few kilobytes; anything much larger is not Pairing.
const MAX_BODY: usize = 256 * 1024;

/// A client for one device of one realm.
#[derive(Debug, Clone)]
pub struct PairingClient {
    http: web::Client,
    base_url: Url,
    realm: String,
    device_id: String,
}

impl PairingClient {
    /// `base_url` is the configured Pairing URL (e.g. `https://api.example.com/pairing`,
    /// with or without a trailing slash); `timeout` bounds each whole request.
    pub fn new(
        base_url: Url,
        realm: String,
        device_id: String,
        tls: ClientConfig,
        timeout: Duration,
    ) -> Result<PairingClient, PairingError> {
        if base_url.cannot_be_a_base() {
            return Err(PairingError::InvalidBaseUrl {
                url: base_url.to_string(),
            });
        }
        if base_url.scheme() == "http" {
            warn!(url = %base_url, "the Pairing URL is plain HTTP: the credentials secret travels unencrypted");
        }
        // Pairing never redirects, and the client follows none: one could hand the bearer to
        // another host.
        let user_agent = concat!("astarte-agent/", env!("CARGO_PKG_VERSION"));
        let http = web::Client::new(tls, timeout, user_agent);
        Ok(PairingClient {
            http,
            base_url,
            realm,
            device_id,
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Registers the device with an agent JWT (`POST agent/devices`) and returns the new
    /// credentials secret. Any 422 is [`PairingError::AlreadyRegistered`].
    pub async fn register(&self, agent_token: &str) -> Result<CredentialsSecret, PairingError> {
        let url = self.url(&["agent", "devices"]);
        let body = RegisterRequest {
            hw_id: &self.device_id,
        };
        let answer: RegisterResponse = self
            .call(Method::POST, url, agent_token, Some(&body), true)
            .await?;
        CredentialsSecret::parse(&answer.credentials_secret).map_err(|err| {
            PairingError::InvalidResponse {
                reason: format!("credentials_secret: {err}"),
            }
        })
    }

    /// Unregisters the device with an agent JWT (`DELETE agent/devices/<id>`): its secret stops
    /// working and it may register again. The JWT needs `DELETE` on `agent/devices/<id>` in its
    /// `a_pa` claim. A device Pairing doesn't know is [`PairingError::NotFound`].
    pub async fn unregister(&self, agent_token: &str) -> Result<(), PairingError> {
        let url = self.url(&["agent", "devices", &self.device_id]);
        self.exchange(Method::DELETE, url, agent_token, None::<&()>, false)
            .await
            .map(drop)
    }

    /// The device's status and broker (`GET devices/<id>`).
    pub async fn device_info(
        &self,
        secret: &CredentialsSecret,
    ) -> Result<DeviceInfo, PairingError> {
        let url = self.url(&["devices", &self.device_id]);
        let wire: WireDeviceInfo = self
            .call(Method::GET, url, secret.expose(), None::<&()>, false)
            .await?;
        DeviceInfo::from_wire(wire).map_err(|err| PairingError::InvalidResponse {
            reason: err.to_string(),
        })
    }

    /// Has Pairing sign `csr_pem`; returns the single PEM certificate it issued.
    pub async fn request_certificate(
        &self,
        secret: &CredentialsSecret,
        csr_pem: &str,
    ) -> Result<String, PairingError> {
        let answer: CertificateResponse = self
            .post_credentials(secret, &[], &CsrRequest { csr: csr_pem })
            .await?;
        let count = CertificateDer::pem_slice_iter(answer.client_crt.as_bytes())
            .try_fold(0usize, |n, cert| cert.map(|_| n + 1))
            .map_err(|err| PairingError::InvalidResponse {
                reason: format!("client_crt is not valid PEM: {err}"),
            })?;
        if count != 1 {
            return Err(PairingError::InvalidResponse {
                reason: format!("client_crt holds {count} certificates instead of one"),
            });
        }
        Ok(answer.client_crt)
    }

    /// Asks Pairing whether `cert_pem` chains to its CA and is in its validity period.
    pub async fn verify_certificate(
        &self,
        secret: &CredentialsSecret,
        cert_pem: &str,
    ) -> Result<bool, PairingError> {
        let body = VerifyRequest {
            client_crt: cert_pem,
        };
        let answer: VerifyResponse = self.post_credentials(secret, &["verify"], &body).await?;
        Ok(answer.valid)
    }

    /// `POST devices/<id>/protocols/astarte_mqtt_v1/credentials[/<more>…]` with the
    /// credentials secret: certificate requests and checks.
    async fn post_credentials<T: DeserializeOwned, B: Serialize>(
        &self,
        secret: &CredentialsSecret,
        more: &[&str],
        body: &B,
    ) -> Result<T, PairingError> {
        let mut path = vec![
            "devices",
            self.device_id.as_str(),
            "protocols",
            "astarte_mqtt_v1",
            "credentials",
        ];
        path.extend(more);
        let url = self.url(&path);
        self.call(Method::POST, url, secret.expose(), Some(body), false)
            .await
    }

    /// `<base>/v1/<realm>/<segments…>`, each segment percent-encoded as needed.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .push("v1")
                .push(&self.realm)
                .extend(segments);
        }
        url
    }

    /// One request whose body and answer are Astarte's `{"data": ...}` envelope around a `B`
    /// and a `T`.
    async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        url: Url,
        bearer: &str,
        body: Option<&B>,
        registering: bool,
    ) -> Result<T, PairingError> {
        let (status, bytes) = self
            .exchange(method, url, bearer, body, registering)
            .await?;
        serde_json::from_slice::<Data<T>>(&bytes)
            .map(|wrapped| wrapped.data)
            .map_err(|err| PairingError::InvalidResponse {
                reason: format!("{status} with an unexpected body: {err}"),
            })
    }

    /// One request (its body wrapped in `{"data": ...}`): a success status and its body, or
    /// the error the status means.
    async fn exchange<B: Serialize>(
        &self,
        method: Method,
        url: Url,
        bearer: &str,
        body: Option<&B>,
        registering: bool,
    ) -> Result<(StatusCode, Vec<u8>), PairingError> {
        let mut authorization = HeaderValue::try_from(format!("Bearer {bearer}"))
            .map_err(|_| PairingError::InvalidToken)?;
        authorization.set_sensitive(true);
        let json = match body {
            Some(data) => Some(serde_json::to_vec(&Data { data }).map_err(|err| {
                PairingError::InvalidResponse {
                    reason: format!("couldn't encode the request: {err}"),
                }
            })?),
            None => None,
        };
        let request = Outgoing {
            authorization,
            accept: "application/json",
            json,
            max_body: MAX_BODY,
            url: &url,
        };
        let (status, bytes) =
            self.http
                .send(method, request)
                .await
                .map_err(|source| match source {
                    HttpError::TooLarge(max) => PairingError::InvalidResponse {
                        reason: format!("answer larger than {max} bytes"),
                    },
                    source => PairingError::Network { source },
                })?;
        if !status.is_success() {
            return Err(PairingError::from_status(
                status.as_u16(),
                &bytes,
                registering,
            ));
        }
        Ok((status, bytes))
    }
}

#[cfg(test)]
mod tests;
