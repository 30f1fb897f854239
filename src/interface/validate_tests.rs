//! Validation rules of whole interfaces, table-driven.

use rstest::rstest;
use serde_json::{Value, json};

use super::*;
use crate::interface::test_support::{interface, with_mappings};

fn parse(top: Value) -> Result<Interface, InterfaceError> {
    Interface::from_json(&interface(top))
}

#[test]
fn base_interface_is_valid_with_defaults() {
    let iface = parse(json!({})).unwrap();
    assert_eq!(iface.name, "org.example.Test");
    assert_eq!((iface.version_major, iface.version_minor), (0, 1));
    assert_eq!(iface.interface_type, InterfaceType::Datastream);
    assert_eq!(iface.ownership, Ownership::Device);
    assert_eq!(iface.aggregation, Aggregation::Individual);
    assert_eq!(iface.mappings.len(), 1);
}

#[rstest]
#[case::reverse_domain("org.astarte-platform.agent.example.Telemetry")]
#[case::reverse_domain_camel_case("org.example.device.Telemetry")]
#[case::hyphen_in_middle_label("org.astarte-platform.genericsensors.Values")]
#[case::middle_label_starts_with_digit("com.1example.Values")]
#[case::digits_after_first_letter("com.Example9.V2")]
#[case::single_label("Values")]
#[case::max_length(&format!("a.{}", "b".repeat(126)))]
#[case::reserved_word_as_label("org.device.Control")]
fn valid_interface_names_are_accepted(#[case] name: &str) {
    assert_eq!(parse(json!({"interface_name": name})).unwrap().name, name);
}

#[rstest]
#[case::empty("", "empty")]
#[case::too_long(&format!("a.{}", "b".repeat(127)), "129 characters")]
#[case::reserved_astarte("astarte", "reserved")]
#[case::reserved_control("control", "reserved")]
#[case::reserved_device("device", "reserved")]
#[case::leading_dot(".a.B", "label 1 is empty")]
#[case::trailing_dot("a.B.", "label 3 is empty")]
#[case::double_dot("a..B", "label 2 is empty")]
#[case::first_label_digit("1a.B", "first label `1a`")]
#[case::first_label_hyphen("a-b.C", "first label `a-b`")]
#[case::last_label_hyphen("a.b-c", "last label `b-c`")]
#[case::last_label_digit("a.b.9C", "last label `9C`")]
#[case::middle_label_leading_hyphen("a.-b.C", "label `-b`")]
#[case::underscore("org.astarte_platform.agent.Telemetry", "label `astarte_platform`")]
#[case::space("a.B C", "last label `B C`")]
#[case::non_ascii("org.example.T\u{e9}st", "last label")]
fn invalid_interface_names_are_rejected(#[case] name: &str, #[case] reason: &str) {
    match parse(json!({"interface_name": name})) {
        Err(InterfaceError::InvalidName { reason: got, .. }) => {
            assert!(got.contains(reason), "{got:?} should mention {reason:?}")
        }
        other => panic!("expected InvalidName, got {other:?}"),
    }
}

#[rstest]
#[case(0, 1)]
#[case(1, 0)]
#[case(7, 12)]
#[case(4_294_967_295, 0)]
fn non_null_versions_are_accepted(#[case] major: i64, #[case] minor: i64) {
    let iface = parse(json!({"version_major": major, "version_minor": minor})).unwrap();
    assert_eq!(
        (
            i64::from(iface.version_major),
            i64::from(iface.version_minor)
        ),
        (major, minor)
    );
}

#[rstest]
#[case::negative_major(-1, 1, "version_major")]
#[case::negative_minor(1, -1, "version_minor")]
#[case::major_too_large(4_294_967_296, 0, "version_major")]
fn out_of_range_versions_are_rejected(#[case] major: i64, #[case] minor: i64, #[case] key: &str) {
    let result = parse(json!({"version_major": major, "version_minor": minor}));
    assert!(
        matches!(&result, Err(InterfaceError::InvalidValue { key: got, .. }) if *got == key),
        "{result:?}"
    );
}

#[test]
fn version_zero_zero_is_rejected() {
    let result = parse(json!({"version_major": 0, "version_minor": 0}));
    assert!(
        matches!(result, Err(InterfaceError::NullVersion)),
        "{result:?}"
    );
}

#[rstest]
#[case("interface_name")]
#[case("version_major")]
#[case("version_minor")]
#[case("type")]
#[case("ownership")]
#[case("mappings")]
fn missing_required_keys_are_rejected(#[case] key: &str) {
    let result = parse(json!({ key: null }));
    assert!(
        matches!(&result, Err(InterfaceError::MissingKey { at: Location::Interface, key: got }) if *got == key),
        "{result:?}"
    );
}

#[rstest]
#[case::datastream(json!({"type": "datastream"}), InterfaceType::Datastream)]
#[case::properties(json!({"type": "properties"}), InterfaceType::Properties)]
fn interface_types_are_parsed(#[case] top: Value, #[case] expected: InterfaceType) {
    assert_eq!(parse(top).unwrap().interface_type, expected);
}

#[rstest]
#[case::device(json!({"ownership": "device"}), Ownership::Device)]
#[case::server(json!({"ownership": "server"}), Ownership::Server)]
#[case::legacy_quality_key(json!({"ownership": null, "quality": "server"}), Ownership::Server)]
#[case::ownership_beats_quality(json!({"quality": "server"}), Ownership::Device)]
#[case::legacy_producer(json!({"ownership": "producer"}), Ownership::Device)]
#[case::legacy_consumer(json!({"ownership": "consumer"}), Ownership::Server)]
fn ownership_is_parsed_with_legacy_names(#[case] top: Value, #[case] expected: Ownership) {
    assert_eq!(parse(top).unwrap().ownership, expected);
}

#[rstest]
#[case::default(json!({}), Aggregation::Individual)]
#[case::individual(json!({"aggregation": "individual"}), Aggregation::Individual)]
#[case::object(json!({"aggregation": "object"}), Aggregation::Object)]
#[case::legacy_aggregate_true(json!({"aggregate": true}), Aggregation::Object)]
#[case::legacy_aggregate_false(json!({"aggregate": false}), Aggregation::Individual)]
#[case::aggregation_beats_aggregate(json!({"aggregation": "individual", "aggregate": true}), Aggregation::Individual)]
fn aggregation_is_parsed_with_the_legacy_boolean(
    #[case] top: Value,
    #[case] expected: Aggregation,
) {
    assert_eq!(parse(top).unwrap().aggregation, expected);
}

#[rstest]
#[case::type_capitalised(json!({"type": "Datastream"}), "type")]
#[case::type_unknown(json!({"type": "stream"}), "type")]
#[case::ownership_capitalised(json!({"ownership": "Device"}), "ownership")]
#[case::ownership_unknown(json!({"ownership": "both"}), "ownership")]
#[case::legacy_quality_unknown(json!({"ownership": null, "quality": "both"}), "ownership")]
#[case::aggregation_unknown(json!({"aggregation": "objects"}), "aggregation")]
fn unknown_enumeration_values_are_rejected(#[case] top: Value, #[case] key: &str) {
    let result = parse(top);
    assert!(
        matches!(&result, Err(InterfaceError::InvalidValue { key: got, .. }) if *got == key),
        "{result:?}"
    );
}

#[rstest]
#[case(json!({"type": "properties", "aggregation": "object"}))]
#[case(json!({"type": "properties", "aggregate": true}))]
fn object_aggregated_properties_are_rejected(#[case] top: Value) {
    let result = parse(top);
    assert!(
        matches!(result, Err(InterfaceError::ObjectProperties)),
        "{result:?}"
    );
}

#[rstest]
#[case::description_at_limit("description", 1000, true)]
#[case::description_counts_characters_not_bytes("description", 1000, true)]
#[case::description_over_limit("description", 1001, false)]
#[case::doc_at_limit("doc", 100_000, true)]
#[case::doc_over_limit("doc", 100_001, false)]
fn description_and_doc_are_length_limited(
    #[case] key: &str,
    #[case] len: usize,
    #[case] valid: bool,
) {
    let result = parse(json!({ key: "\u{e9}".repeat(len) }));
    if valid {
        assert!(result.is_ok(), "{result:?}");
    } else {
        assert!(
            matches!(&result, Err(InterfaceError::TooLong { at: Location::Interface, key: got, .. }) if *got == key),
            "{result:?}"
        );
    }
}

#[rstest]
#[case(0, false)]
#[case(1, true)]
#[case(1024, true)]
#[case(1025, false)]
fn interfaces_have_1_to_1024_mappings(#[case] count: usize, #[case] valid: bool) {
    let mappings: Vec<Value> = (0..count)
        .map(|i| json!({"endpoint": format!("/v{i}"), "type": "integer"}))
        .collect();
    let result = Interface::from_json(&with_mappings(json!({}), Value::Array(mappings)));
    if valid {
        assert_eq!(result.unwrap().mappings.len(), count);
    } else {
        assert!(matches!(result, Err(InterfaceError::MappingCount { count: got }) if got == count));
    }
}

#[test]
fn unknown_keys_are_ignored() {
    let text = with_mappings(
        json!({"$schema": "x", "vendor": {"a": [1, 2]}}),
        json!([{"endpoint": "/a", "type": "double", "x-unit": "celsius"}]),
    );
    assert!(Interface::from_json(&text).is_ok());
}

#[test]
fn malformed_json_is_reported_as_json_error() {
    let result = Interface::from_json("{\"interface_name\": ");
    assert!(matches!(result, Err(InterfaceError::Json(_))), "{result:?}");
}

#[test]
fn wrong_value_type_message_names_the_key() {
    let err = parse(json!({"version_major": "1"})).unwrap_err();
    assert!(matches!(err, InterfaceError::WrongType(_)));
    assert_eq!(
        err.to_string(),
        "wrong value type at version_major: invalid type: string \"1\", expected i64"
    );
}

#[test]
fn enumeration_error_message_lists_the_accepted_values() {
    let err = parse(json!({"ownership": "both"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface: `ownership` is \"both\", expected `device` or `server`"
    );
}
