//! Secret strings: the Pairing credentials secret and private keys.
//!
//! Both have a redacted `Debug` and no `Display`, so they cannot end up in a log line or an
//! error message by accident.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A secret string, such as a PEM private key. `Debug` prints `Secret(<redacted>)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: only for handing it to whatever needs it, never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The credentials secret that Pairing issues at registration: 32 random bytes as standard,
/// padded base64 (44 characters). `Debug` prints `CredentialsSecret(<redacted>)`.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialsSecret(String);

/// The text is not a credentials secret (44 characters of standard base64 for 32 bytes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a credentials secret (expected 44 characters of base64 encoding 32 bytes)")]
pub struct InvalidSecret;

impl CredentialsSecret {
    /// Length of the text form.
    pub const LEN: usize = 44;

    /// Accepts exactly the form Pairing issues; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, InvalidSecret> {
        let text = text.trim();
        if text.len() != Self::LEN {
            return Err(InvalidSecret);
        }
        match STANDARD.decode(text) {
            Ok(bytes) if bytes.len() == 32 => Ok(Self(text.to_owned())),
            _ => Err(InvalidSecret),
        }
    }

    /// The secret itself: only for the `Authorization` header and the store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CredentialsSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialsSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const SAMPLE: &str = "TTkd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1IgidtPOs=";

    #[test]
    fn debug_output_never_contains_the_secret() {
        let secret = CredentialsSecret::parse(SAMPLE).unwrap();
        let key = Secret::new("-----BEGIN PRIVATE KEY-----abc");
        let printed = format!("{secret:?} {key:?}");
        assert!(!printed.contains("TTkd"), "{printed}");
        assert!(!printed.contains("abc"), "{printed}");
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        let secret = CredentialsSecret::parse(&format!("  {SAMPLE}\n")).unwrap();
        assert_eq!(secret.expose(), SAMPLE);
    }

    #[rstest]
    #[case::empty("")]
    #[case::too_short("TTkd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1IgidtPO=")]
    #[case::url_safe_alphabet("TTkd5OgB13X_3qU0LXU7OCxyTXz5QHM2NY1IgidtPOs=")]
    #[case::not_base64("TTkd5OgB13X/3qU0LXU7OCxyTXz5QHM2NY1Igidt!Os=")]
    #[case::binary_garbage("\u{0}\u{1}")]
    fn malformed_secrets_are_rejected(#[case] text: &str) {
        assert_eq!(CredentialsSecret::parse(text), Err(InvalidSecret));
    }
}
