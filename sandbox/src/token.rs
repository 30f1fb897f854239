//! Agent JWTs for the realm: ES256 with a key generated at start, claim `a_pa` as Astarte's
//! Pairing API reads it.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use serde::{Deserialize, Serialize};

use crate::ca::unix_now;

/// How far ahead `exp` is in the long-lived agent token (about ten years).
const AGENT_TOKEN_LIFETIME_SECS: i64 = 10 * 365 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("couldn't generate the realm signing key")]
    GenerateKey(#[source] ErrorStack),
    #[error("couldn't sign a token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    #[serde(default)]
    pub a_pa: Vec<String>,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

/// The realm's JWT key pair.
pub(crate) struct RealmKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl RealmKey {
    pub fn generate() -> Result<Self, TokenError> {
        let group =
            EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(TokenError::GenerateKey)?;
        let ec = EcKey::generate(&group).map_err(TokenError::GenerateKey)?;
        let mut bn = BigNumContext::new().map_err(TokenError::GenerateKey)?;
        // ring verifies against the raw uncompressed point and signs with a PKCS#8 key.
        let point = ec
            .public_key()
            .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut bn)
            .map_err(TokenError::GenerateKey)?;
        let pkcs8 = PKey::from_ec_key(ec)
            .and_then(|k| k.private_key_to_pkcs8())
            .map_err(TokenError::GenerateKey)?;
        Ok(Self {
            encoding: EncodingKey::from_ec_der(&pkcs8),
            decoding: DecodingKey::from_ec_der(&point),
        })
    }

    /// A token with the given `a_pa` claim; `exp` is `valid_for_secs` from now (may be negative).
    pub fn sign(&self, a_pa: &[&str], valid_for_secs: i64) -> Result<String, TokenError> {
        let now = unix_now();
        let claims = Claims {
            a_pa: a_pa.iter().map(|s| (*s).to_owned()).collect(),
            iat: now,
            exp: Some(now.saturating_add(valid_for_secs)),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(TokenError::Sign)
    }

    pub fn sign_agent(&self) -> Result<String, TokenError> {
        self.sign(&[".*::.*"], AGENT_TOKEN_LIFETIME_SECS)
    }

    /// The claims of a token signed by this key and not expired; `exp` is optional.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims = HashSet::new();
        validation.validate_aud = false;
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// Whether any `a_pa` entry (`<METHOD_REGEX>:<unused>:<PATH_REGEX>`, both anchored) grants
/// `method` on `path` (the part of the URL after `/v1/<realm>/`).
pub(crate) fn authorizes(a_pa: &[String], method: &str, path: &str) -> bool {
    a_pa.iter().any(|entry| {
        let mut parts = entry.splitn(3, ':');
        let (Some(m), Some(_), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        anchored_match(m, method) && anchored_match(p, path)
    })
}

fn anchored_match(pattern: &str, text: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(text))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(".*::.*", "POST", "agent/devices", true)]
    #[case("POST::agent/devices", "POST", "agent/devices", true)]
    #[case("POST::agent/devices", "DELETE", "agent/devices", false)]
    #[case("POST::agent", "POST", "agent/devices", false)]
    #[case("DELETE::agent/devices/.*", "DELETE", "agent/devices/abc", true)]
    #[case("GET::.*", "POST", "agent/devices", false)]
    #[case("no-colons", "POST", "agent/devices", false)]
    #[case("POST::(", "POST", "agent/devices", false)]
    fn a_pa_regexes_are_anchored(
        #[case] entry: &str,
        #[case] method: &str,
        #[case] path: &str,
        #[case] granted: bool,
    ) {
        assert_eq!(authorizes(&[entry.to_owned()], method, path), granted);
    }

    #[test]
    fn token_signed_by_the_realm_key_verifies_and_others_do_not() {
        let key = RealmKey::generate().unwrap();
        let other = RealmKey::generate().unwrap();
        let token = key.sign_agent().unwrap();
        assert_eq!(key.verify(&token).unwrap().a_pa, vec![".*::.*"]);
        assert!(other.verify(&token).is_none());
        assert!(key.verify("not.a.jwt").is_none());
    }

    #[test]
    fn expired_token_is_rejected() {
        let key = RealmKey::generate().unwrap();
        let token = key.sign(&[".*::.*"], -60).unwrap();
        assert!(key.verify(&token).is_none());
    }
}
