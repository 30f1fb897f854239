//! Validation of one mapping's keys (protocol reference 4.2).
//!
//! Datastream-only, properties-only and object-only keys follow Astarte's "must be blank"
//! rule: they are accepted on the wrong kind of interface only when absent or set to
//! their default value (Ecto records no change for a default).

use super::endpoint::Endpoint;
use super::error::{InterfaceError, Location};
use super::model::{
    Aggregation, DatabaseRetention, InterfaceType, Mapping, MappingType, Reliability, Retention,
};
use super::schema::RawMapping;
use super::validate::{MAX_DESCRIPTION_LEN, MAX_DOC_LEN, check_length};

/// Smallest and largest `database_retention_ttl`, in seconds (below 20 years).
pub const TTL_RANGE: (i64, i64) = (60, 630_719_999);

/// What a mapping needs to know about its interface.
#[derive(Debug, Clone, Copy)]
pub struct MappingContext {
    pub interface_type: InterfaceType,
    pub aggregation: Aggregation,
}

/// The accepted names of an enumeration and how to describe them in an error.
struct Choices<T: 'static> {
    values: &'static [(&'static str, T)],
    expected: &'static str,
}

const RELIABILITIES: &Choices<Reliability> = &Choices {
    values: &[
        ("unreliable", Reliability::Unreliable),
        ("guaranteed", Reliability::Guaranteed),
        ("unique", Reliability::Unique),
    ],
    expected: "`unreliable`, `guaranteed` or `unique`",
};
const RETENTIONS: &Choices<Retention> = &Choices {
    values: &[
        ("discard", Retention::Discard),
        ("volatile", Retention::Volatile),
        ("stored", Retention::Stored),
    ],
    expected: "`discard`, `volatile` or `stored`",
};
/// `true` for `use_ttl`.
const POLICIES: &Choices<bool> = &Choices {
    values: &[("no_ttl", false), ("use_ttl", true)],
    expected: "`no_ttl` or `use_ttl`",
};

pub fn validate_mapping(
    raw: &RawMapping,
    index: usize,
    context: MappingContext,
) -> Result<Mapping, InterfaceError> {
    let at = Location::Mapping(match raw.endpoint_text() {
        Some(endpoint) => endpoint.to_owned(),
        None => format!("at index {index}"),
    });
    let endpoint_text = raw.endpoint_text().ok_or(InterfaceError::MissingKey {
        at: at.clone(),
        key: "endpoint",
    })?;
    let endpoint =
        Endpoint::parse(endpoint_text).map_err(|reason| InterfaceError::InvalidEndpoint {
            endpoint: endpoint_text.to_owned(),
            reason,
        })?;
    let type_name = raw
        .mapping_type
        .as_deref()
        .ok_or(InterfaceError::MissingKey {
            at: at.clone(),
            key: "type",
        })?;
    let mapping_type = MappingType::from_name(type_name).ok_or(InterfaceError::InvalidValue {
        at: at.clone(),
        key: "type",
        value: format!("{type_name:?}"),
        expected: "one of the 14 Astarte types (`double`, `integer`, ..., `datetimearray`)",
    })?;

    let datastream = context.interface_type == InterfaceType::Datastream;
    let properties = context.interface_type == InterfaceType::Properties;
    let object = context.aggregation == Aggregation::Object;
    let datastream_only = |key, set| only_for(&at, key, set, datastream, "datastream");

    let reliability = one_of(
        &at,
        "reliability",
        raw.reliability.as_deref(),
        RELIABILITIES,
    )?;
    datastream_only("reliability", is_set(reliability, Reliability::Unreliable))?;

    let retention = one_of(&at, "retention", raw.retention.as_deref(), RETENTIONS)?;
    datastream_only("retention", is_set(retention, Retention::Discard))?;

    if let Some(expiry) = raw.expiry.filter(|expiry| *expiry < 0) {
        return Err(InterfaceError::InvalidValue {
            at: at.clone(),
            key: "expiry",
            value: expiry.to_string(),
            expected: "an integer >= 0 (0 means never)",
        });
    }
    datastream_only("expiry", is_set(raw.expiry, 0))?;

    let policy = raw.database_retention_policy.as_deref();
    let use_ttl = one_of(&at, "database_retention_policy", policy, POLICIES)?;
    datastream_only("database_retention_policy", is_set(use_ttl, false))?;

    let ttl = raw.database_retention_ttl;
    if let Some(ttl) = ttl.filter(|ttl| !(TTL_RANGE.0..=TTL_RANGE.1).contains(ttl)) {
        return Err(InterfaceError::InvalidValue {
            at: at.clone(),
            key: "database_retention_ttl",
            value: ttl.to_string(),
            expected: "a number of seconds from 60 to 630719999",
        });
    }
    // The default TTL is "absent", so any value counts as set.
    datastream_only("database_retention_ttl", ttl.is_some())?;
    let database_retention = database_retention(&at, use_ttl.unwrap_or(false), ttl)?;

    let allow_unset = is_set(raw.allow_unset, false);
    only_for(&at, "allow_unset", allow_unset, properties, "properties")?;
    datastream_only("explicit_timestamp", is_set(raw.explicit_timestamp, false))?;
    let required = is_set(raw.required, false);
    only_for(&at, "required", required, object, "object-aggregation")?;
    // `encrypted` is accepted whatever its value and ignored until keyAgreement exists.

    check_length(
        &at,
        "description",
        raw.description.as_deref(),
        MAX_DESCRIPTION_LEN,
    )?;
    check_length(&at, "doc", raw.doc.as_deref(), MAX_DOC_LEN)?;

    Ok(Mapping {
        endpoint,
        mapping_type,
        reliability: reliability.unwrap_or(Reliability::Unreliable),
        retention: retention.unwrap_or(Retention::Discard),
        // Checked non-negative above.
        expiry_seconds: raw.expiry.map_or(0, |expiry| expiry.unsigned_abs()),
        database_retention,
        allow_unset: raw.allow_unset.unwrap_or(false),
        explicit_timestamp: raw.explicit_timestamp.unwrap_or(false),
        required: raw.required.unwrap_or(false),
    })
}

fn one_of<T: Copy>(
    at: &Location,
    key: &'static str,
    value: Option<&str>,
    table: &Choices<T>,
) -> Result<Option<T>, InterfaceError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match table.values.iter().find(|(name, _)| *name == value) {
        Some((_, parsed)) => Ok(Some(*parsed)),
        None => Err(InterfaceError::InvalidValue {
            at: at.clone(),
            key,
            value: format!("{value:?}"),
            expected: table.expected,
        }),
    }
}

/// Present with a value other than the default.
fn is_set<T: PartialEq>(value: Option<T>, default: T) -> bool {
    value.is_some_and(|value| value != default)
}

fn only_for(
    at: &Location,
    key: &'static str,
    set: bool,
    allowed: bool,
    only: &'static str,
) -> Result<(), InterfaceError> {
    if set && !allowed {
        return Err(InterfaceError::NotApplicable {
            at: at.clone(),
            key,
            only,
        });
    }
    Ok(())
}

fn database_retention(
    at: &Location,
    use_ttl: bool,
    ttl: Option<i64>,
) -> Result<DatabaseRetention, InterfaceError> {
    match (use_ttl, ttl) {
        (false, None) => Ok(DatabaseRetention::NoTtl),
        (true, Some(ttl)) => Ok(DatabaseRetention::UseTtl {
            // Range-checked by the caller; the fallback is unreachable.
            ttl_seconds: u32::try_from(ttl).unwrap_or(u32::MAX),
        }),
        (true, None) => Err(InterfaceError::DatabaseRetention {
            at: at.clone(),
            problem: "`database_retention_policy` is `use_ttl`, so `database_retention_ttl` is required",
        }),
        (false, Some(_)) => Err(InterfaceError::DatabaseRetention {
            at: at.clone(),
            problem: "`database_retention_ttl` is set, so `database_retention_policy` must be `use_ttl`",
        }),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;
    use crate::interface::Interface;
    use crate::interface::test_support::{object, properties, with_mapping, with_mappings};

    fn mapping(top: Value, patch: Value) -> Result<Mapping, InterfaceError> {
        let iface = Interface::from_json(&with_mapping(top, patch))?;
        Ok(iface.mappings[0].clone())
    }

    fn datastream(patch: Value) -> Result<Mapping, InterfaceError> {
        mapping(json!({}), patch)
    }

    fn assert_invalid_value(result: Result<Mapping, InterfaceError>, key: &str) {
        assert!(
            matches!(&result, Err(InterfaceError::InvalidValue { at: Location::Mapping(_), key: got, .. }) if *got == key),
            "{result:?}"
        );
    }

    fn assert_not_applicable(result: Result<Mapping, InterfaceError>, key: &str) {
        assert!(
            matches!(&result, Err(InterfaceError::NotApplicable { key: got, .. }) if *got == key),
            "{result:?}"
        );
    }

    #[rstest]
    #[case("double", MappingType::Double)]
    #[case("integer", MappingType::Integer)]
    #[case("boolean", MappingType::Boolean)]
    #[case("longinteger", MappingType::LongInteger)]
    #[case("string", MappingType::String)]
    #[case("binaryblob", MappingType::BinaryBlob)]
    #[case("datetime", MappingType::DateTime)]
    #[case("doublearray", MappingType::DoubleArray)]
    #[case("integerarray", MappingType::IntegerArray)]
    #[case("booleanarray", MappingType::BooleanArray)]
    #[case("longintegerarray", MappingType::LongIntegerArray)]
    #[case("stringarray", MappingType::StringArray)]
    #[case("binaryblobarray", MappingType::BinaryBlobArray)]
    #[case("datetimearray", MappingType::DateTimeArray)]
    fn all_fourteen_types_are_accepted(#[case] name: &str, #[case] expected: MappingType) {
        assert_eq!(
            datastream(json!({"type": name})).unwrap().mapping_type,
            expected
        );
        assert_eq!(expected.name(), name);
    }

    #[rstest]
    #[case("float")]
    #[case("Double")]
    #[case("int64")]
    #[case("")]
    fn unknown_types_are_rejected(#[case] name: &str) {
        assert_invalid_value(datastream(json!({"type": name})), "type");
    }

    #[rstest]
    #[case::endpoint(json!({"endpoint": null}), "endpoint")]
    #[case::mapping_type(json!({"type": null}), "type")]
    fn missing_mapping_keys_are_rejected(#[case] patch: Value, #[case] key: &str) {
        let result = datastream(patch);
        assert!(
            matches!(&result, Err(InterfaceError::MissingKey { at: Location::Mapping(_), key: got }) if *got == key),
            "{result:?}"
        );
    }

    #[test]
    fn legacy_path_key_is_an_endpoint() {
        let parsed = datastream(json!({"endpoint": null, "path": "/%{x}/legacy"})).unwrap();
        assert_eq!(parsed.endpoint.to_string(), "/%{x}/legacy");
    }

    #[test]
    fn invalid_endpoints_are_reported_with_the_reason() {
        let err = datastream(json!({"endpoint": "/a/"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mapping /a/: invalid endpoint: level 2 is empty (no `//` and no trailing `/`)"
        );
    }

    #[test]
    fn datastream_defaults_apply_when_keys_are_absent() {
        let parsed = datastream(json!({})).unwrap();
        assert_eq!(parsed.reliability, Reliability::Unreliable);
        assert_eq!(parsed.retention, Retention::Discard);
        assert_eq!(parsed.expiry_seconds, 0);
        assert_eq!(parsed.database_retention, DatabaseRetention::NoTtl);
        assert!(!parsed.allow_unset && !parsed.explicit_timestamp && !parsed.required);
    }

    #[rstest]
    #[case("unreliable", Reliability::Unreliable)]
    #[case("guaranteed", Reliability::Guaranteed)]
    #[case("unique", Reliability::Unique)]
    fn reliability_values_are_parsed(#[case] value: &str, #[case] expected: Reliability) {
        assert_eq!(
            datastream(json!({"reliability": value}))
                .unwrap()
                .reliability,
            expected
        );
    }

    #[rstest]
    #[case("discard", Retention::Discard)]
    #[case("volatile", Retention::Volatile)]
    #[case("stored", Retention::Stored)]
    fn retention_values_are_parsed(#[case] value: &str, #[case] expected: Retention) {
        assert_eq!(
            datastream(json!({"retention": value})).unwrap().retention,
            expected
        );
    }

    #[rstest]
    #[case::reliability(json!({"reliability": "reliable"}), "reliability")]
    #[case::retention(json!({"retention": "persistent"}), "retention")]
    #[case::policy(json!({"database_retention_policy": "ttl"}), "database_retention_policy")]
    #[case::negative_expiry(json!({"expiry": -1}), "expiry")]
    fn invalid_option_values_are_rejected(#[case] patch: Value, #[case] key: &str) {
        assert_invalid_value(datastream(patch), key);
    }

    #[rstest]
    #[case(0)]
    #[case(3600)]
    fn non_negative_expiry_is_accepted(#[case] expiry: u64) {
        assert_eq!(
            datastream(json!({"expiry": expiry}))
                .unwrap()
                .expiry_seconds,
            expiry
        );
    }

    #[rstest]
    #[case::below_minimum(59, false)]
    #[case::minimum(60, true)]
    #[case::maximum(630_719_999, true)]
    #[case::twenty_years(630_720_000, false)]
    fn database_retention_ttl_is_bounded(#[case] ttl: i64, #[case] valid: bool) {
        let result = datastream(
            json!({"database_retention_policy": "use_ttl", "database_retention_ttl": ttl}),
        );
        if valid {
            let expected = DatabaseRetention::UseTtl {
                ttl_seconds: u32::try_from(ttl).unwrap(),
            };
            assert_eq!(result.unwrap().database_retention, expected);
        } else {
            assert_invalid_value(result, "database_retention_ttl");
        }
    }

    #[rstest]
    #[case::use_ttl_without_ttl(json!({"database_retention_policy": "use_ttl"}))]
    #[case::ttl_with_no_ttl(json!({"database_retention_policy": "no_ttl", "database_retention_ttl": 60}))]
    #[case::ttl_without_policy(json!({"database_retention_ttl": 60}))]
    fn ttl_is_required_exactly_when_policy_is_use_ttl(#[case] patch: Value) {
        let result = datastream(patch);
        assert!(
            matches!(result, Err(InterfaceError::DatabaseRetention { .. })),
            "{result:?}"
        );
    }

    #[rstest]
    #[case::reliability("reliability", json!("unreliable"), json!("unique"))]
    #[case::retention("retention", json!("discard"), json!("stored"))]
    #[case::expiry("expiry", json!(0), json!(10))]
    #[case::policy("database_retention_policy", json!("no_ttl"), json!("use_ttl"))]
    #[case::explicit_timestamp("explicit_timestamp", json!(false), json!(true))]
    fn datastream_only_keys_on_properties_must_hold_the_default(
        #[case] key: &str,
        #[case] default: Value,
        #[case] other: Value,
    ) {
        assert!(mapping(properties(), json!({ key: default })).is_ok());
        assert_not_applicable(mapping(properties(), json!({ key: other })), key);
    }

    #[test]
    fn database_retention_ttl_on_properties_is_rejected() {
        let result = mapping(properties(), json!({"database_retention_ttl": 3600}));
        assert_not_applicable(result, "database_retention_ttl");
    }

    #[test]
    fn allow_unset_is_properties_only() {
        assert!(
            mapping(properties(), json!({"allow_unset": true}))
                .unwrap()
                .allow_unset
        );
        assert!(datastream(json!({"allow_unset": false})).is_ok());
        assert_not_applicable(datastream(json!({"allow_unset": true})), "allow_unset");
    }

    #[test]
    fn explicit_timestamp_is_accepted_on_datastreams() {
        assert!(
            datastream(json!({"explicit_timestamp": true}))
                .unwrap()
                .explicit_timestamp
        );
    }

    #[rstest]
    #[case::object(object(), true, true)]
    #[case::individual_default(json!({}), false, true)]
    #[case::individual(json!({}), true, false)]
    #[case::properties(properties(), true, false)]
    fn required_is_object_only(#[case] top: Value, #[case] required: bool, #[case] valid: bool) {
        let result = mapping(top, json!({"required": required}));
        if valid {
            assert_eq!(result.unwrap().required, required);
        } else {
            assert_not_applicable(result, "required");
        }
    }

    #[rstest]
    #[case(json!({}), true)]
    #[case(properties(), false)]
    fn encrypted_is_accepted_and_ignored(#[case] top: Value, #[case] encrypted: bool) {
        assert!(mapping(top, json!({"encrypted": encrypted})).is_ok());
    }

    #[rstest]
    #[case("description", 1000, true)]
    #[case("description", 1001, false)]
    #[case("doc", 100_000, true)]
    #[case("doc", 100_001, false)]
    fn mapping_description_and_doc_are_length_limited(
        #[case] key: &str,
        #[case] len: usize,
        #[case] valid: bool,
    ) {
        let result = datastream(json!({ key: "x".repeat(len) }));
        if valid {
            assert!(result.is_ok(), "{result:?}");
        } else {
            assert!(
                matches!(&result, Err(InterfaceError::TooLong { at: Location::Mapping(_), key: got, .. }) if *got == key),
                "{result:?}"
            );
        }
    }

    #[test]
    fn wrong_value_type_names_the_mapping_index_and_key() {
        let text = with_mappings(
            json!({}),
            json!([{"endpoint": "/a", "type": "double"}, {"endpoint": "/b", "type": "double", "expiry": "10"}]),
        );
        let err = Interface::from_json(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "wrong value type at mappings[1]: expiry: invalid type: string \"10\", expected i64"
        );
    }

    #[test]
    fn not_applicable_message_tells_how_to_fix_it() {
        let top = json!({"type": "properties"});
        let patch = json!({"endpoint": "/%{id}/value", "reliability": "unique"});
        let err = mapping(top, patch).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mapping /%{id}/value: `reliability` is datastream-only, remove it"
        );
    }

    #[test]
    fn missing_endpoint_is_reported_by_index() {
        let err = datastream(json!({"endpoint": null})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mapping at index 0: missing required key `endpoint`"
        );
    }
}
