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
    let result =
        datastream(json!({"database_retention_policy": "use_ttl", "database_retention_ttl": ttl}));
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
