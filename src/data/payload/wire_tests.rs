//! Wire-format specification of data payloads: the protocol doc's hex vectors, per-type BSON
//! element bytes and what the encoder refuses.

use rstest::rstest;

use super::*;
use crate::data::value::{AstarteValue, MAX_ARRAY_ITEMS, MAX_BYTES};
use crate::interface::MappingType;

pub(super) fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect()
}

pub(super) fn bytes_of(document: bson::Document) -> Vec<u8> {
    document.to_vec().unwrap()
}

// Section 3.9.1: vectors holding only `v`, reproduced byte for byte and decoded back.
#[rstest]
#[case::int32(AstarteValue::Integer(10), "0c 00 00 00 10 76 00 0a 00 00 00 00")]
#[case::bool_true(AstarteValue::Boolean(true), "09 00 00 00 08 76 00 01 00")]
#[case::bool_false(AstarteValue::Boolean(false), "09 00 00 00 08 76 00 00 00")]
#[case::string(
    AstarteValue::String("string property value".into()),
    "22 00 00 00 02 76 00 16 00 00 00 73 74 72 69 6e 67 20 70 72 6f 70 65 72 74 79 20 76 61 6c 75 65 00 00"
)]
#[case::double(
    AstarteValue::Double(16.73),
    "10 00 00 00 01 76 00 7b 14 ae 47 e1 ba 30 40 00"
)]
#[case::int64(
    AstarteValue::LongInteger(3600),
    "10 00 00 00 12 76 00 10 0e 00 00 00 00 00 00 00"
)]
#[case::binary(
    AstarteValue::BinaryBlob(vec![1, 2]),
    "0f 00 00 00 05 76 00 02 00 00 00 00 01 02 00"
)]
#[case::int32_array(
    AstarteValue::IntegerArray(vec![1, 2]),
    "1b 00 00 00 04 76 00 13 00 00 00 10 30 00 01 00 00 00 10 31 00 02 00 00 00 00 00"
)]
fn protocol_doc_vectors_are_reproduced(#[case] value: AstarteValue, #[case] vector: &str) {
    let vector = hex(vector);
    assert_eq!(encode_individual(&value, None).unwrap(), vector);
    let received = decode_individual(&vector, value.mapping_type()).unwrap();
    assert_eq!(received.value, value);
    assert_eq!(received.timestamp_ms, None);
}

/// The doc writes `t` first, we write `v` first: same length, same two elements swapped.
fn swap_first_two_elements(vector: &[u8], first_len: usize) -> Vec<u8> {
    let body = &vector[4..vector.len() - 1];
    let (first, second) = body.split_at(first_len);
    [&vector[..4], second, first, &[0]].concat()
}

#[test]
fn protocol_doc_vector_with_timestamp_has_the_same_elements() {
    let vector =
        hex("1b 00 00 00 09 74 00 2a 70 20 f7 65 01 00 00 01 76 00 7b 14 ae 47 e1 ba 30 40 00");
    let value = AstarteValue::Double(16.73);
    let timestamp = 1_537_449_422_890;

    let encoded = encode_individual(&value, Some(timestamp)).unwrap();
    assert_eq!(encoded, swap_first_two_elements(&vector, 11));

    let received = decode_individual(&vector, MappingType::Double).unwrap();
    assert_eq!(
        received,
        Received {
            value,
            timestamp_ms: Some(timestamp)
        }
    );
}

const OBJECT_VECTOR: &str = "28 00 00 00 03 76 00 20 00 00 00 01 68 75 6d 00 ba 49 0c 02 2b c7 50 40 \
                             01 74 65 6d 70 00 72 8a 8e e4 f2 4f 39 40 00 00";

fn sensor_object() -> Vec<(String, AstarteValue)> {
    vec![
        ("hum".into(), AstarteValue::Double(67.112)),
        ("temp".into(), AstarteValue::Double(25.3123)),
    ]
}

pub(super) fn sensor_key_type(key: &str) -> Option<MappingType> {
    matches!(key, "hum" | "temp").then_some(MappingType::Double)
}

#[test]
fn protocol_doc_object_vector_is_reproduced() {
    let vector = hex(OBJECT_VECTOR);
    assert_eq!(encode_object(&sensor_object(), None).unwrap(), vector);
    let received = decode_object(&vector, sensor_key_type).unwrap();
    assert_eq!(received.values, sensor_object());
    assert_eq!(received.timestamp_ms, None);
}

#[test]
fn protocol_doc_object_vector_with_timestamp_has_the_same_elements() {
    // The doc prints the prefix up to the object's length; the rest is the vector above.
    let object_rest = &hex(OBJECT_VECTOR)[11..];
    let vector = [
        hex("33 00 00 00 09 74 00 fb 9d 4f f7 65 01 00 00 03 76 00 20 00 00 00").as_slice(),
        object_rest,
    ]
    .concat();
    let timestamp = 1_537_452_514_811;

    let encoded = encode_object(&sensor_object(), Some(timestamp)).unwrap();
    assert_eq!(encoded, swap_first_two_elements(&vector, 11));

    let received = decode_object(&vector, sensor_key_type).unwrap();
    assert_eq!(received.values, sensor_object());
    assert_eq!(received.timestamp_ms, Some(timestamp));
}

const V_TYPE_OFFSET: usize = 4;
/// Document length, type, "v\0", array length: the first array item's type byte.
const FIRST_ITEM_TYPE_OFFSET: usize = 11;

#[rstest]
#[case::double(AstarteValue::Double(-0.5), 0x01, None)]
#[case::integer(AstarteValue::Integer(-7), 0x10, None)]
#[case::boolean(AstarteValue::Boolean(true), 0x08, None)]
#[case::small_longinteger_is_int64(AstarteValue::LongInteger(5), 0x12, None)]
#[case::string(AstarteValue::String("ciao".into()), 0x02, None)]
#[case::binaryblob(AstarteValue::BinaryBlob(vec![0, 255]), 0x05, None)]
#[case::datetime(AstarteValue::DateTime(1_700_000_000_123), 0x09, None)]
#[case::doublearray(AstarteValue::DoubleArray(vec![1.0, 2.5]), 0x04, Some(0x01))]
#[case::integerarray(AstarteValue::IntegerArray(vec![3]), 0x04, Some(0x10))]
#[case::booleanarray(AstarteValue::BooleanArray(vec![false, true]), 0x04, Some(0x08))]
#[case::small_longintegerarray_is_int64(AstarteValue::LongIntegerArray(vec![1, i64::MAX]), 0x04, Some(0x12))]
#[case::stringarray(AstarteValue::StringArray(vec!["a".into(), String::new()]), 0x04, Some(0x02))]
#[case::binaryblobarray(AstarteValue::BinaryBlobArray(vec![vec![1], vec![]]), 0x04, Some(0x05))]
#[case::datetimearray(AstarteValue::DateTimeArray(vec![0, -1]), 0x04, Some(0x09))]
fn every_type_round_trips_with_its_bson_type(
    #[case] value: AstarteValue,
    #[case] v_type: u8,
    #[case] item_type: Option<u8>,
) {
    let encoded = encode_individual(&value, Some(42)).unwrap();
    assert_eq!(encoded[V_TYPE_OFFSET], v_type);
    if let Some(item_type) = item_type {
        assert_eq!(encoded[FIRST_ITEM_TYPE_OFFSET], item_type);
    }
    let received = decode_individual(&encoded, value.mapping_type()).unwrap();
    assert_eq!(
        received,
        Received {
            value,
            timestamp_ms: Some(42)
        }
    );
}

#[test]
fn binaryblob_is_sent_with_generic_subtype() {
    let encoded = encode_individual(&AstarteValue::BinaryBlob(vec![9]), None).unwrap();
    // length, type, "v\0", 4-byte blob length, then the subtype.
    assert_eq!(encoded[11], 0x00);
}

#[test]
fn timestamp_is_sent_as_bson_datetime_after_v() {
    let encoded = encode_individual(&AstarteValue::Integer(1), Some(1_000)).unwrap();
    // {"v": int32} is 4 + 7 bytes; then `t`.
    assert_eq!(&encoded[11..14], &[0x09, b't', 0]);
    assert_eq!(&encoded[14..22], &1_000_i64.to_le_bytes());
}

#[rstest]
#[case::integer_min(AstarteValue::Integer(i32::MIN))]
#[case::longinteger_min(AstarteValue::LongInteger(i64::MIN))]
#[case::nan(AstarteValue::Double(f64::NAN))]
#[case::infinity(AstarteValue::Double(f64::INFINITY))]
#[case::string_too_long(AstarteValue::String("x".repeat(MAX_BYTES + 1)))]
#[case::blob_too_long(AstarteValue::BinaryBlob(vec![1; MAX_BYTES + 1]))]
#[case::too_many_items(AstarteValue::DoubleArray(vec![0.0; MAX_ARRAY_ITEMS + 1]))]
#[case::empty_blob_would_be_an_unset(AstarteValue::BinaryBlob(vec![]))]
fn encoding_rejects_values_astarte_would_refuse(#[case] value: AstarteValue) {
    let err = encode_individual(&value, None).unwrap_err();
    assert!(matches!(err, PayloadError::Value(_)), "{err:?}");
    let object = [("k".to_owned(), value)];
    let err = encode_object(&object, None).unwrap_err();
    assert!(
        matches!(err, PayloadError::InvalidObjectValue { ref key, .. } if key == "k"),
        "{err:?}"
    );
}

#[rstest]
#[case::string_at_limit(AstarteValue::String("x".repeat(MAX_BYTES)))]
#[case::blob_at_limit(AstarteValue::BinaryBlob(vec![1; MAX_BYTES]))]
#[case::array_at_limit(AstarteValue::LongIntegerArray(vec![i64::MAX; MAX_ARRAY_ITEMS]))]
fn values_at_the_limits_round_trip(#[case] value: AstarteValue) {
    let encoded = encode_individual(&value, None).unwrap();
    let received = decode_individual(&encoded, value.mapping_type()).unwrap();
    assert_eq!(received.value, value);
}

#[test]
fn object_encoding_rejects_a_repeated_key() {
    let values = [
        ("a".to_owned(), AstarteValue::Boolean(true)),
        ("a".to_owned(), AstarteValue::Boolean(false)),
    ];
    let err = encode_object(&values, None).unwrap_err();
    assert!(matches!(err, PayloadError::DuplicateKey { key } if key == "a"));
}
