//! The raw JSON shape of an interface file, before validation.
//!
//! Every key is optional here so that validation can tell "absent" from "explicitly set to
//! the default" (Astarte accepts datastream-only keys on properties when they hold the
//! default) and report missing keys itself. Enumerations stay strings and integers stay
//! `i64` for the same reason: validation names the key and the accepted values. Unknown
//! keys are ignored, as the official JSON schema allows. A value of the wrong JSON type is
//! a serde error whose message starts with the key path (`mappings[2]: expiry: ...`).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::InterfaceError;

/// The top-level interface object.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an interface object")]
pub struct RawInterface {
    #[serde(default, deserialize_with = "interface_name")]
    pub interface_name: Option<String>,
    #[serde(default, deserialize_with = "version_major")]
    pub version_major: Option<i64>,
    #[serde(default, deserialize_with = "version_minor")]
    pub version_minor: Option<i64>,
    #[serde(default, rename = "type", deserialize_with = "interface_type")]
    pub interface_type: Option<String>,
    #[serde(default, deserialize_with = "ownership")]
    pub ownership: Option<String>,
    /// Legacy name of `ownership`; ignored when `ownership` is present.
    #[serde(default, deserialize_with = "quality")]
    pub quality: Option<String>,
    #[serde(default, deserialize_with = "aggregation")]
    pub aggregation: Option<String>,
    /// Legacy boolean: `true` means object; ignored when `aggregation` is present.
    #[serde(default, deserialize_with = "aggregate")]
    pub aggregate: Option<bool>,
    #[serde(default, deserialize_with = "description")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "doc")]
    pub doc: Option<String>,
    #[serde(default, deserialize_with = "mappings")]
    pub mappings: Option<Vec<RawMapping>>,
}

/// One mapping object.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a mapping object")]
pub struct RawMapping {
    #[serde(default, deserialize_with = "endpoint")]
    pub endpoint: Option<String>,
    /// Legacy name of `endpoint`; ignored when `endpoint` is present.
    #[serde(default, deserialize_with = "path")]
    pub path: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "mapping_type")]
    pub mapping_type: Option<String>,
    #[serde(default, deserialize_with = "reliability")]
    pub reliability: Option<String>,
    #[serde(default, deserialize_with = "retention")]
    pub retention: Option<String>,
    #[serde(default, deserialize_with = "expiry")]
    pub expiry: Option<i64>,
    #[serde(default, deserialize_with = "database_retention_policy")]
    pub database_retention_policy: Option<String>,
    #[serde(default, deserialize_with = "database_retention_ttl")]
    pub database_retention_ttl: Option<i64>,
    #[serde(default, deserialize_with = "allow_unset")]
    pub allow_unset: Option<bool>,
    #[serde(default, deserialize_with = "explicit_timestamp")]
    pub explicit_timestamp: Option<bool>,
    #[serde(default, deserialize_with = "required")]
    pub required: Option<bool>,
    /// Payload encryption (Astarte 1.4 development): accepted and ignored.
    #[serde(default, deserialize_with = "encrypted")]
    pub encrypted: Option<bool>,
    #[serde(default, deserialize_with = "description")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "doc")]
    pub doc: Option<String>,
}

impl RawMapping {
    /// `endpoint`, or the legacy `path` when `endpoint` is absent (Astarte's order).
    pub fn endpoint_text(&self) -> Option<&str> {
        self.endpoint.as_deref().or(self.path.as_deref())
    }
}

impl RawInterface {
    /// `ownership`, or the legacy `quality` when `ownership` is absent.
    pub fn ownership_text(&self) -> Option<&str> {
        self.ownership.as_deref().or(self.quality.as_deref())
    }
}

/// Parses the document. Syntax errors carry line and column; wrong value types carry the
/// key path (parsing goes through a `Value` so serde_json adds no misleading position).
pub fn parse(text: &str) -> Result<RawInterface, InterfaceError> {
    let value: Value = serde_json::from_str(text).map_err(InterfaceError::Json)?;
    require_object(&value, "an interface object").map_err(InterfaceError::WrongType)?;
    RawInterface::deserialize(value).map_err(InterfaceError::WrongType)
}

/// Derived struct deserializers also accept arrays (fields by position); interface files
/// must use objects.
fn require_object<E: serde::de::Error>(value: &Value, expected: &str) -> Result<(), E> {
    let found = match value {
        Value::Object(_) => return Ok(()),
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
    };
    Err(E::custom(format_args!(
        "expected {expected}, found {found}"
    )))
}

/// Generates one `deserialize_with` function per key, prefixing type errors with the key.
macro_rules! keyed {
    ($($name:ident: $ty:ty => $key:literal;)*) => {$(
        fn $name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<$ty>, D::Error> {
            Option::<$ty>::deserialize(deserializer)
                .map_err(|err| D::Error::custom(format_args!("{}: {err}", $key)))
        }
    )*};
}

keyed! {
    interface_name: String => "interface_name";
    version_major: i64 => "version_major";
    version_minor: i64 => "version_minor";
    interface_type: String => "type";
    ownership: String => "ownership";
    quality: String => "quality";
    aggregation: String => "aggregation";
    aggregate: bool => "aggregate";
    description: String => "description";
    doc: String => "doc";
    endpoint: String => "endpoint";
    path: String => "path";
    mapping_type: String => "type";
    reliability: String => "reliability";
    retention: String => "retention";
    expiry: i64 => "expiry";
    database_retention_policy: String => "database_retention_policy";
    database_retention_ttl: i64 => "database_retention_ttl";
    allow_unset: bool => "allow_unset";
    explicit_timestamp: bool => "explicit_timestamp";
    required: bool => "required";
    encrypted: bool => "encrypted";
}

/// Deserializes the mappings one by one so an error names the mapping's index.
fn mappings<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<RawMapping>>, D::Error> {
    let Some(values) = Option::<Vec<Value>>::deserialize(deserializer)
        .map_err(|err| D::Error::custom(format_args!("mappings: {err}")))?
    else {
        return Ok(None);
    };
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            require_object(&value, "a mapping object")
                .and_then(|()| RawMapping::deserialize(value))
                .map_err(|err: serde_json::Error| {
                    D::Error::custom(format_args!("mappings[{index}]: {err}"))
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn absent_keys_stay_none_and_unknown_keys_are_ignored() {
        let raw =
            parse(r#"{"interface_name": "a.B", "x-vendor": {"any": 1}, "mappings": [{"foo": 1}]}"#)
                .unwrap();
        assert_eq!(raw.interface_name.as_deref(), Some("a.B"));
        assert_eq!(raw.version_major, None);
        let mapping = &raw.mappings.unwrap()[0];
        assert_eq!(mapping.endpoint_text(), None);
        assert_eq!(mapping.reliability, None);
    }

    #[test]
    fn explicit_default_values_are_kept_distinct_from_absent_ones() {
        let raw = parse(r#"{"mappings": [{"reliability": "unreliable", "allow_unset": false}]}"#)
            .unwrap();
        let mapping = &raw.mappings.unwrap()[0];
        assert_eq!(mapping.reliability.as_deref(), Some("unreliable"));
        assert_eq!(mapping.allow_unset, Some(false));
    }

    #[rstest]
    #[case::ownership_wins(r#"{"ownership": "device", "quality": "server"}"#, Some("device"))]
    #[case::legacy_quality(r#"{"quality": "server"}"#, Some("server"))]
    #[case::neither(r#"{}"#, None)]
    fn quality_is_the_legacy_name_of_ownership(#[case] json: &str, #[case] expected: Option<&str>) {
        assert_eq!(parse(json).unwrap().ownership_text(), expected);
    }

    #[rstest]
    #[case::endpoint_wins(r#"{"mappings": [{"endpoint": "/a", "path": "/b"}]}"#, Some("/a"))]
    #[case::legacy_path(r#"{"mappings": [{"path": "/b"}]}"#, Some("/b"))]
    fn path_is_the_legacy_name_of_endpoint(#[case] json: &str, #[case] expected: Option<&str>) {
        let raw = parse(json).unwrap();
        assert_eq!(raw.mappings.unwrap()[0].endpoint_text(), expected);
    }

    #[rstest]
    #[case::top_level_key(r#"{"version_major": "1"}"#, "version_major: invalid type: string")]
    #[case::mapping_key(
        r#"{"mappings": [{}, {"expiry": "x"}]}"#,
        "mappings[1]: expiry: invalid type"
    )]
    #[case::mapping_not_object(
        r#"{"mappings": [3]}"#,
        "mappings[0]: expected a mapping object, found a number"
    )]
    #[case::mapping_as_array(
        r#"{"mappings": [["/a", null, "double"]]}"#,
        "mappings[0]: expected a mapping object, found an array"
    )]
    #[case::mappings_not_array(r#"{"mappings": {}}"#, "mappings: invalid type: map")]
    #[case::float_version(
        r#"{"version_minor": 1.5}"#,
        "version_minor: invalid type: floating point"
    )]
    #[case::not_an_object(r#"["a.B"]"#, "expected an interface object, found an array")]
    fn wrong_value_types_name_the_key_path(#[case] json: &str, #[case] expected: &str) {
        let Err(InterfaceError::WrongType(err)) = parse(json) else {
            panic!("expected a type error for {json}");
        };
        assert!(err.to_string().contains(expected), "{err}");
    }

    #[test]
    fn malformed_json_is_a_syntax_error_with_a_position() {
        let Err(InterfaceError::Json(err)) = parse("{\n  \"interface_name\": ,\n}") else {
            panic!("expected a syntax error");
        };
        assert_eq!(err.line(), 2);
    }
}
