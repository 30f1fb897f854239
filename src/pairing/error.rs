//! How a Pairing API call can fail, and which failures are worth retrying.

use std::fmt;

/// A failed Pairing API call. Never carries the credentials secret or the agent token.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    #[error("the Pairing base URL {url} can't have paths appended")]
    InvalidBaseUrl { url: String },
    /// The agent token contains characters that can't go in an HTTP header.
    #[error("the agent token contains characters not allowed in an HTTP header")]
    InvalidToken,
    /// 401: the token or secret is missing or invalid.
    #[error("Pairing refused the credentials (401 Unauthorized): {detail}")]
    Unauthorized { detail: String },
    /// 403: wrong secret, unregistered device, unknown realm, or a token without permission.
    #[error("Pairing refused access (403 Forbidden): {detail}")]
    Forbidden { detail: String },
    /// 404: the device is unknown (Astarte 1.3+), or the URL is wrong.
    #[error("Pairing doesn't know this device (404 Not Found): {detail}")]
    NotFound { detail: String },
    /// 422 on registration: the device was already confirmed (or the request was invalid).
    /// `detail` is the server's body.
    #[error("registration refused (422): {detail}")]
    AlreadyRegistered { detail: String },
    /// Any other 4xx.
    #[error("Pairing rejected the request ({status}): {detail}")]
    InvalidRequest { status: u16, detail: String },
    /// 5xx.
    #[error("Pairing server error ({status}): {detail}")]
    Server { status: u16, detail: String },
    /// Connecting, TLS, sending, a timeout, or reading the answer.
    #[error("couldn't reach Pairing")]
    Network { source: super::web::HttpError },
    /// A success status with a body we can't use, or an unexpected status.
    #[error("unusable answer from Pairing: {reason}")]
    InvalidResponse { reason: String },
}

impl PairingError {
    /// Whether the same call may succeed later without anyone changing anything:
    /// network trouble, server errors and rate limiting.
    pub fn is_retryable(&self) -> bool {
        match self {
            PairingError::Network { .. } | PairingError::Server { .. } => true,
            PairingError::InvalidRequest { status, .. } => *status == 429 || *status == 408,
            PairingError::InvalidBaseUrl { .. }
            | PairingError::InvalidToken
            | PairingError::Unauthorized { .. }
            | PairingError::Forbidden { .. }
            | PairingError::NotFound { .. }
            | PairingError::AlreadyRegistered { .. }
            | PairingError::InvalidResponse { .. } => false,
        }
    }

    /// 401 or 403 to a device call: Astarte no longer accepts the credentials secret (it was
    /// regenerated, or the device unregistered). A 404 is not one: it more likely means a
    /// wrong URL, realm or device id, which registering again would not fix.
    pub fn refuses_credentials(&self) -> bool {
        matches!(
            self,
            PairingError::Unauthorized { .. } | PairingError::Forbidden { .. }
        )
    }

    /// Maps an error status. `registering` selects the 422 meaning of registration.
    pub(crate) fn from_status(status: u16, body: &[u8], registering: bool) -> Self {
        let detail = Detail(body).to_string();
        match status {
            401 => PairingError::Unauthorized { detail },
            403 => PairingError::Forbidden { detail },
            404 => PairingError::NotFound { detail },
            422 if registering => PairingError::AlreadyRegistered { detail },
            400..=499 => PairingError::InvalidRequest { status, detail },
            500..=599 => PairingError::Server { status, detail },
            _ => PairingError::InvalidResponse {
                reason: format!("unexpected HTTP status {status}"),
            },
        }
    }
}

/// The server's error body for a message: `errors` of `{"errors": …}` compacted, else the
/// text, cut to a readable length.
struct Detail<'a>(&'a [u8]);

const MAX_DETAIL: usize = 300;

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match serde_json::from_slice::<serde_json::Value>(self.0) {
            Ok(serde_json::Value::Object(mut map)) if map.contains_key("errors") => {
                map.remove("errors").unwrap_or_default().to_string()
            }
            _ => String::from_utf8_lossy(self.0).trim().to_owned(),
        };
        if text.is_empty() {
            return f.write_str("(empty body)");
        }
        match text.char_indices().nth(MAX_DETAIL) {
            Some((cut, _)) => write!(f, "{}…", &text[..cut]),
            None => f.write_str(&text),
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::unauthorized(401, false, "Unauthorized")]
    #[case::forbidden(403, false, "Forbidden")]
    #[case::not_found(404, false, "NotFound")]
    #[case::registration_conflict(422, true, "AlreadyRegistered")]
    #[case::other_422(422, false, "InvalidRequest")]
    #[case::bad_request(400, true, "InvalidRequest")]
    #[case::too_many_requests(429, false, "InvalidRequest")]
    #[case::internal(500, false, "Server")]
    #[case::unavailable(503, true, "Server")]
    #[case::redirect(302, false, "InvalidResponse")]
    fn error_statuses_map_to_variants(
        #[case] status: u16,
        #[case] registering: bool,
        #[case] variant: &str,
    ) {
        let err = PairingError::from_status(status, b"", registering);
        assert!(format!("{err:?}").starts_with(variant), "{err:?}");
    }

    #[rstest]
    #[case::server_error(500, true)]
    #[case::bad_gateway(502, true)]
    #[case::rate_limited(429, true)]
    #[case::unauthorized(401, false)]
    #[case::forbidden(403, false)]
    #[case::not_found(404, false)]
    #[case::already_registered(422, false)]
    #[case::bad_request(400, false)]
    fn only_transient_statuses_are_retryable(#[case] status: u16, #[case] retryable: bool) {
        assert_eq!(
            PairingError::from_status(status, b"", true).is_retryable(),
            retryable
        );
    }

    #[test]
    fn the_server_error_body_is_kept_compactly() {
        let body = br#"{"errors": {"detail": "Device already registered"}}"#;
        let err = PairingError::from_status(422, body, true);
        assert_eq!(
            err.to_string(),
            r#"registration refused (422): {"detail":"Device already registered"}"#
        );
    }

    #[test]
    fn a_long_error_body_is_cut() {
        let body = "x".repeat(10_000);
        let err = PairingError::from_status(500, body.as_bytes(), false);
        assert!(err.to_string().len() < 400, "{err}");
    }
}
