//! Astarte device IDs: 16 bytes written as 22 characters of unpadded base64url.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use uuid::Uuid;

/// Namespace used to derive a device ID from `/etc/machine-id` when the configuration sets none.
pub const DEFAULT_NAMESPACE: Uuid = Uuid::from_u128(0xb883_eedc_2ffe_48ce_9fa5_32f5_3fa9_f5ba);

/// Accepts non-zero trailing bits so a non-canonical ID gets a precise error instead of a generic one.
const LENIENT_DECODER: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// A canonical Astarte device ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId([u8; 16]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceIdError {
    #[error("a device ID is 22 characters of base64url without padding, got {0} characters")]
    WrongLength(usize),
    #[error("a device ID uses only A-Z a-z 0-9 - _ (base64url without padding)")]
    NotBase64Url,
    #[error(
        "not in canonical form: the last character must encode zero trailing bits (did you mean {0}?)"
    )]
    NotCanonical(String),
}

impl DeviceId {
    /// Derives the ID as Astarte's tools do: UUIDv5 of `name` under `namespace`, raw 16 bytes.
    pub fn derive(namespace: Uuid, name: &[u8]) -> DeviceId {
        DeviceId(*Uuid::new_v5(&namespace, name).as_bytes())
    }

    /// Derives the ID from the content of a machine-id file (surrounding whitespace ignored).
    pub fn from_machine_id(namespace: Uuid, machine_id: &str) -> DeviceId {
        DeviceId::derive(namespace, machine_id.trim().as_bytes())
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 22 {
            return Err(DeviceIdError::WrongLength(text.chars().count()));
        }
        let bytes = LENIENT_DECODER
            .decode(text)
            .map_err(|_| DeviceIdError::NotBase64Url)?;
        let raw: [u8; 16] = bytes.try_into().map_err(|_| DeviceIdError::NotBase64Url)?;
        let id = DeviceId(raw);
        // Astarte re-encodes IDs for topics and certificate CNs: only the canonical spelling matches.
        if id.to_string() != text {
            return Err(DeviceIdError::NotCanonical(id.to_string()));
        }
        Ok(id)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "f79ad91f-c638-4889-ae74-9d001a3b4cf8",
        "myidentifierdata",
        "AJInS0w3VpWpuOqkXhgZdA"
    )]
    #[case(
        "b068931c-c450-342b-a3f5-b3d276ea4297",
        "0099112233",
        "dvt9mLDaWb2vW7bdBJwKCg"
    )]
    fn uuid_v5_derivation_matches_astarte_sdk_vectors(
        #[case] namespace: &str,
        #[case] name: &str,
        #[case] expected: &str,
    ) {
        let namespace = Uuid::parse_str(namespace).unwrap();
        assert_eq!(
            DeviceId::derive(namespace, name.as_bytes()).to_string(),
            expected
        );
    }

    #[test]
    fn machine_id_trailing_newline_does_not_change_the_id() {
        let a = DeviceId::from_machine_id(DEFAULT_NAMESPACE, "0123456789abcdef0123456789abcdef\n");
        let b = DeviceId::from_machine_id(DEFAULT_NAMESPACE, "0123456789abcdef0123456789abcdef");
        assert_eq!(a, b);
    }

    #[test]
    fn canonical_id_round_trips() {
        let id: DeviceId = "V_zv6ThCCtXWveQ8mPjsKg".parse().unwrap();
        assert_eq!(
            id.0,
            *b"\x57\xfc\xef\xe9\x38\x42\x0a\xd5\xd6\xbd\xe4\x3c\x98\xf8\xec\x2a"
        );
        assert_eq!(id.to_string(), "V_zv6ThCCtXWveQ8mPjsKg");
    }

    #[rstest]
    #[case("V_zv6ThCCtXWveQ8mPjsK", DeviceIdError::WrongLength(21))]
    #[case("V_zv6ThCCtXWveQ8mPjsKgA", DeviceIdError::WrongLength(23))]
    #[case("V+zv6ThCCtXWveQ8mPjsKg", DeviceIdError::NotBase64Url)]
    #[case("V_zv6ThCCtXWveQ8mPjsKh", DeviceIdError::NotCanonical("V_zv6ThCCtXWveQ8mPjsKg".into()))]
    fn invalid_ids_are_rejected_with_the_reason(#[case] text: &str, #[case] error: DeviceIdError) {
        assert_eq!(text.parse::<DeviceId>(), Err(error));
    }
}
