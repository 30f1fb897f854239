//! What the decoders accept from Astarte, what they refuse, and that malformed input is an
//! error rather than a panic.

use bson::{Binary, Bson, DateTime, doc, spec::BinarySubtype};
use rstest::rstest;

use super::wire_tests::{bytes_of, hex, sensor_key_type};
use super::*;
use crate::data::value::{AstarteValue, MAX_ARRAY_ITEMS, MAX_BYTES};
use crate::interface::MappingType;

#[rstest]
#[case::longinteger_from_int32(doc! {"v": 5_i32}, MappingType::LongInteger, AstarteValue::LongInteger(5))]
#[case::mixed_longintegerarray(
    doc! {"v": [1_i32, 5_000_000_000_i64]},
    MappingType::LongIntegerArray,
    AstarteValue::LongIntegerArray(vec![1, 5_000_000_000])
)]
#[case::double_from_int32(doc! {"v": 3_i32}, MappingType::Double, AstarteValue::Double(3.0))]
#[case::double_from_int64(doc! {"v": -4_i64}, MappingType::Double, AstarteValue::Double(-4.0))]
#[case::doublearray_from_ints(
    doc! {"v": [1_i32, 2.5, 3_i64]},
    MappingType::DoubleArray,
    AstarteValue::DoubleArray(vec![1.0, 2.5, 3.0])
)]
#[case::integer_from_fitting_int64(doc! {"v": 7_i64}, MappingType::Integer, AstarteValue::Integer(7))]
#[case::datetime_from_int64(doc! {"v": 1_000_i64}, MappingType::DateTime, AstarteValue::DateTime(1_000))]
#[case::binaryblob_of_any_subtype(
    doc! {"v": Binary { subtype: BinarySubtype::UserDefined(0x80), bytes: vec![1] }},
    MappingType::BinaryBlob,
    AstarteValue::BinaryBlob(vec![1])
)]
#[case::metadata_is_ignored(
    doc! {"m": {"x": "y"}, "v": true},
    MappingType::Boolean,
    AstarteValue::Boolean(true)
)]
#[case::empty_array(doc! {"v": []}, MappingType::StringArray, AstarteValue::StringArray(vec![]))]
fn decoding_accepts_what_astarte_may_send(
    #[case] document: bson::Document,
    #[case] expected: MappingType,
    #[case] value: AstarteValue,
) {
    let received = decode_individual(&bytes_of(document), expected).unwrap();
    assert_eq!(received.value, value);
}

#[rstest]
#[case::datetime(Bson::DateTime(DateTime::from_millis(77)))]
#[case::int64(Bson::Int64(77))]
fn timestamp_is_read_from_datetime_or_int64(#[case] t: Bson) {
    let payload = bytes_of(doc! {"t": t, "v": 1_i32});
    let received = decode_individual(&payload, MappingType::Integer).unwrap();
    assert_eq!(received.timestamp_ms, Some(77));
}

#[test]
fn timestamp_of_another_type_is_rejected() {
    let payload = bytes_of(doc! {"v": 1_i32, "t": "yesterday"});
    let err = decode_individual(&payload, MappingType::Integer).unwrap_err();
    assert!(matches!(
        err,
        PayloadError::WrongTimestampType { found: "string" }
    ));
}

#[rstest]
#[case::string_for_double(doc! {"v": "1.5"}, MappingType::Double, "string")]
#[case::double_for_integer(doc! {"v": 1.0}, MappingType::Integer, "double")]
#[case::double_for_longinteger(doc! {"v": 1.0}, MappingType::LongInteger, "double")]
#[case::int32_for_boolean(doc! {"v": 1_i32}, MappingType::Boolean, "int32")]
#[case::int32_for_datetime(doc! {"v": 1_i32}, MappingType::DateTime, "int32")]
#[case::string_for_binaryblob(doc! {"v": "AQI="}, MappingType::BinaryBlob, "string")]
#[case::scalar_for_array(doc! {"v": 1_i32}, MappingType::IntegerArray, "int32")]
#[case::array_for_scalar(doc! {"v": [1_i32]}, MappingType::Integer, "array")]
#[case::null(doc! {"v": null}, MappingType::String, "null")]
fn decoding_rejects_a_wrong_bson_type(
    #[case] document: bson::Document,
    #[case] expected: MappingType,
    #[case] found_name: &str,
) {
    let err = decode_individual(&bytes_of(document), expected).unwrap_err();
    let PayloadError::WrongType { expected: e, found } = err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!((e, found), (expected, found_name));
}

#[test]
fn decoding_names_the_index_of_a_wrong_array_item() {
    let payload = bytes_of(doc! {"v": [true, "no"]});
    let err = decode_individual(&payload, MappingType::BooleanArray).unwrap_err();
    assert!(matches!(
        err,
        PayloadError::WrongElementType {
            expected: MappingType::BooleanArray,
            index: 1,
            found: "string"
        }
    ));
}

#[rstest]
#[case::int64_too_large_for_integer(doc! {"v": 3_000_000_000_i64}, MappingType::Integer)]
#[case::integer_min(doc! {"v": i32::MIN}, MappingType::Integer)]
#[case::longinteger_min(doc! {"v": i64::MIN}, MappingType::LongInteger)]
#[case::integerarray_item_too_large(doc! {"v": [1_i32, 3_000_000_000_i64]}, MappingType::IntegerArray)]
#[case::nan(doc! {"v": f64::NAN}, MappingType::Double)]
#[case::string_too_long(doc! {"v": "x".repeat(MAX_BYTES + 1)}, MappingType::String)]
#[case::too_many_items(doc! {"v": vec![true; MAX_ARRAY_ITEMS + 1]}, MappingType::BooleanArray)]
fn decoding_rejects_values_outside_astarte_limits(
    #[case] document: bson::Document,
    #[case] expected: MappingType,
) {
    let err = decode_individual(&bytes_of(document), expected).unwrap_err();
    assert!(matches!(err, PayloadError::Value(_)), "{err:?}");
}

#[rstest]
#[case::empty(vec![], "Empty")]
#[case::no_v(bytes_of(doc! {"t": DateTime::from_millis(1)}), "MissingValue")]
#[case::twice_v(
    hex("11 00 00 00 08 76 00 01 08 76 00 00 08 74 00 00 00"),
    "DuplicateKey"
)]
fn decoding_rejects_a_bad_envelope(#[case] payload: Vec<u8>, #[case] variant: &str) {
    let err = decode_individual(&payload, MappingType::Boolean).unwrap_err();
    assert!(format!("{err:?}").starts_with(variant), "{err:?}");
}

#[test]
fn object_decoding_types_each_key() {
    let payload = bytes_of(doc! {"v": {"n": 1_i32, "s": "x"}});
    let received = decode_object(&payload, |key| match key {
        "n" => Some(MappingType::LongInteger),
        "s" => Some(MappingType::String),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        received.values,
        vec![
            ("n".to_owned(), AstarteValue::LongInteger(1)),
            ("s".to_owned(), AstarteValue::String("x".into())),
        ]
    );
}

#[test]
fn object_decoding_rejects_an_unknown_key() {
    let payload = bytes_of(doc! {"v": {"hum": 1.0, "pressure": 2.0}});
    let err = decode_object(&payload, sensor_key_type).unwrap_err();
    assert!(matches!(err, PayloadError::UnknownKey { key } if key == "pressure"));
}

#[test]
fn object_decoding_names_the_key_of_a_wrong_value() {
    let payload = bytes_of(doc! {"v": {"hum": "wet"}});
    let err = decode_object(&payload, sensor_key_type).unwrap_err();
    let PayloadError::InvalidObjectValue { key, source } = err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(key, "hum");
    assert!(matches!(
        *source,
        PayloadError::WrongType {
            found: "string",
            ..
        }
    ));
}

#[test]
fn object_decoding_rejects_a_non_document_v() {
    let payload = bytes_of(doc! {"v": 1.0});
    let err = decode_object(&payload, sensor_key_type).unwrap_err();
    assert!(matches!(err, PayloadError::NotAnObject { found: "double" }));
}

/// Deterministic byte source (64-bit LCG, Knuth's constants).
struct Lcg(u64);

impl Lcg {
    fn next_byte(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 56) as u8
    }
}

fn decode_both(payload: &[u8]) -> (bool, bool) {
    let individual = decode_individual(payload, MappingType::LongIntegerArray).is_err();
    let object = decode_object(payload, |_| Some(MappingType::StringArray)).is_err();
    (individual, object)
}

#[test]
fn every_truncation_of_a_valid_payload_is_an_error() {
    let individual =
        encode_individual(&AstarteValue::LongIntegerArray(vec![1, -2]), Some(3)).unwrap();
    let object = encode_object(
        &[("k".to_owned(), AstarteValue::StringArray(vec!["ab".into()]))],
        Some(3),
    )
    .unwrap();
    for payload in [individual, object] {
        for len in 0..payload.len() {
            assert_eq!(decode_both(&payload[..len]), (true, true), "prefix {len}");
        }
    }
}

#[test]
fn random_bytes_are_an_error_not_a_panic() {
    let mut lcg = Lcg(0x5eed);
    for round in 0..2_000 {
        let len = usize::from(lcg.next_byte() % 64);
        let mut payload: Vec<u8> = (0..len).map(|_| lcg.next_byte()).collect();
        // Half the inputs get a plausible header and terminator so parsing goes deeper.
        if round % 2 == 0 && len >= 5 {
            payload[..4].copy_from_slice(&(len as i32).to_le_bytes());
            payload[len - 1] = 0;
        }
        assert_eq!(decode_both(&payload), (true, true), "{payload:02x?}");
    }
}

#[test]
fn corrupted_valid_payloads_do_not_panic() {
    let valid = encode_object(
        &[
            (
                "a".to_owned(),
                AstarteValue::BinaryBlobArray(vec![vec![1, 2]]),
            ),
            ("b".to_owned(), AstarteValue::DateTime(5)),
        ],
        Some(9),
    )
    .unwrap();
    let mut lcg = Lcg(7);
    for _ in 0..5_000 {
        let mut payload = valid.clone();
        for _ in 0..=lcg.next_byte() % 3 {
            let at = usize::from(lcg.next_byte()) % payload.len();
            payload[at] = lcg.next_byte();
        }
        // Whatever the outcome, it must be a value, not a panic.
        let _ = decode_object(&payload, |_| Some(MappingType::BinaryBlobArray));
        let _ = decode_individual(&payload, MappingType::DateTime);
    }
}
