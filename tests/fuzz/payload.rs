//! Server BSON payloads: `encode_*` then `decode_*` is the identity for every Astarte type
//! and for objects; mutated documents (bytes or value types) decode or are refused with a
//! typed `PayloadError`, and whatever decodes is within Astarte's limits.

use astarte_agent::data::{
    AstarteValue, PayloadError, decode_individual, decode_object, encode_individual, encode_object,
};
use astarte_agent::interface::MappingType;
use bson::{Bson, Document, spec::BinarySubtype};
use fastrand::Rng;

use crate::values::{self, mapping_type};
use crate::{driver, mutate};

fn timestamp(rng: &mut Rng) -> Option<i64> {
    rng.bool().then(|| rng.i64(..))
}

/// Exhaustive on purpose: a new variant must be looked at here.
fn assert_typed(error: &PayloadError) {
    match error {
        PayloadError::Empty
        | PayloadError::Malformed(_)
        | PayloadError::Encode(_)
        | PayloadError::MissingValue
        | PayloadError::DuplicateKey { .. }
        | PayloadError::WrongType { .. }
        | PayloadError::WrongElementType { .. }
        | PayloadError::WrongTimestampType { .. }
        | PayloadError::NotAnObject { .. }
        | PayloadError::UnknownKey { .. }
        | PayloadError::InvalidObjectValue { .. }
        | PayloadError::Value(_) => driver::assert_message(error),
    }
}

/// A value decoded from anything is of the asked type and within the limits.
fn assert_sane(value: &AstarteValue, expected: MappingType) {
    assert_eq!(value.mapping_type(), expected);
    assert_eq!(value.check(), Ok(()), "{value:?}");
}

fn round_trip_individual(rng: &mut Rng) {
    let ty = mapping_type(rng);
    let value = values::valid(rng, ty);
    let t = timestamp(rng);
    let bytes = encode_individual(&value, t).expect("a valid value encodes");
    let received = decode_individual(&bytes, ty).expect("an encoded value decodes");
    assert_eq!((received.value, received.timestamp_ms), (value, t));
}

fn object(rng: &mut Rng) -> Vec<(String, AstarteValue)> {
    (0..rng.usize(1..8))
        .map(|index| {
            let ty = mapping_type(rng);
            (format!("k{index}"), values::valid(rng, ty))
        })
        .collect()
}

fn key_types(values: &[(String, AstarteValue)]) -> impl Fn(&str) -> Option<MappingType> + '_ {
    move |key| {
        values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.mapping_type())
    }
}

fn round_trip_object(rng: &mut Rng) {
    let values = object(rng);
    let t = timestamp(rng);
    let bytes = encode_object(&values, t).expect("a valid object encodes");
    let received = decode_object(&bytes, key_types(&values)).expect("an encoded object decodes");
    assert_eq!((received.values, received.timestamp_ms), (values, t));
}

fn invalid_values_are_refused(rng: &mut Rng) {
    let ty = mapping_type(rng);
    let Some(value) = values::invalid(rng, ty) else {
        return;
    };
    match encode_individual(&value, None) {
        Err(PayloadError::Value(_)) => {}
        other => {
            panic!("{ty} value out of Astarte's limits: expected a Value error, got {other:?}")
        }
    }
    // The same value sent by a server (bypassing our encoder) is refused on decode.
    let mut document = Document::new();
    document.insert("v", raw_bson(&value));
    let bytes = document.to_vec().expect("bson encodes");
    match decode_individual(&bytes, ty) {
        Err(PayloadError::Value(_)) => {}
        other => panic!("{ty}: expected a Value error, got {other:?}"),
    }
}

fn raw_bson(value: &AstarteValue) -> Bson {
    match value {
        AstarteValue::Double(v) => Bson::Double(*v),
        AstarteValue::Integer(v) => Bson::Int32(*v),
        AstarteValue::LongInteger(v) => Bson::Int64(*v),
        AstarteValue::String(v) => Bson::String(v.clone()),
        AstarteValue::BinaryBlob(v) => binary(v),
        AstarteValue::DoubleArray(v) => Bson::Array(v.iter().map(|x| Bson::Double(*x)).collect()),
        AstarteValue::IntegerArray(v) => Bson::Array(v.iter().map(|x| Bson::Int32(*x)).collect()),
        AstarteValue::BooleanArray(v) => Bson::Array(v.iter().map(|x| Bson::Boolean(*x)).collect()),
        AstarteValue::LongIntegerArray(v) => {
            Bson::Array(v.iter().map(|x| Bson::Int64(*x)).collect())
        }
        AstarteValue::StringArray(v) => {
            Bson::Array(v.iter().map(|x| Bson::String(x.clone())).collect())
        }
        other => panic!("no raw form for {other:?}"),
    }
}

fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(bson::Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

/// A BSON value of any type, as a server (or an attacker) could put under `v` or `t`.
fn any_bson(rng: &mut Rng, depth: u8) -> Bson {
    match rng.u8(0..if depth > 2 { 10 } else { 12 }) {
        0 => Bson::Double([f64::NAN, 1.5, f64::INFINITY, -0.0][rng.usize(0..4)]),
        1 => Bson::Int32([0, i32::MIN, i32::MAX, -7][rng.usize(0..4)]),
        2 => Bson::Int64([0, i64::MIN, i64::MAX, 1 << 40][rng.usize(0..4)]),
        3 => Bson::Boolean(rng.bool()),
        4 => Bson::String(mutate::any_string(rng)),
        5 => binary(&[0xde, 0xad][..rng.usize(0..3)]),
        6 => Bson::DateTime(bson::DateTime::from_millis(rng.i64(..))),
        7 => Bson::Null,
        8 => Bson::Timestamp(bson::Timestamp {
            time: 1,
            increment: 2,
        }),
        9 => Bson::ObjectId(bson::oid::ObjectId::from_bytes([7; 12])),
        10 => Bson::Array(
            (0..rng.usize(0..4))
                .map(|_| any_bson(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut document = Document::new();
            for index in 0..rng.usize(0..4) {
                document.insert(format!("k{index}"), any_bson(rng, depth + 1));
            }
            Bson::Document(document)
        }
    }
}

/// Valid encodings, then: swap `v`/`t` or an object key to another BSON type, or break bytes.
fn mutated(rng: &mut Rng) {
    let is_object = rng.bool();
    let values = object(rng);
    let ty = values[0].1.mapping_type();
    let mut bytes = if is_object {
        encode_object(&values, timestamp(rng))
    } else {
        encode_individual(&values[0].1, timestamp(rng))
    }
    .expect("a valid value encodes");
    if rng.bool() {
        let mut document = Document::from_reader(bytes.as_slice()).expect("we just encoded it");
        let key = ["v", "t", "x"][rng.usize(0..3)];
        if is_object && key == "v" && rng.bool() {
            if let Ok(object) = document.get_document_mut("v") {
                object.insert(format!("k{}", rng.usize(0..9)), any_bson(rng, 1));
            }
        } else {
            document.insert(key, any_bson(rng, 0));
        }
        bytes = document.to_vec().expect("bson encodes");
    } else {
        mutate::bytes(rng, &mut bytes);
    }
    if is_object {
        match decode_object(&bytes, key_types(&values)) {
            Ok(received) => {
                for (key, value) in &received.values {
                    assert_sane(
                        value,
                        key_types(&values)(key).expect("only known keys decode"),
                    );
                }
            }
            Err(error) => assert_typed(&error),
        }
    } else {
        match decode_individual(&bytes, ty) {
            Ok(received) => assert_sane(&received.value, ty),
            Err(error) => assert_typed(&error),
        }
    }
}

#[test]
fn bson_payloads() {
    driver::run("bson_payloads", 4000, |rng| match rng.u8(0..6) {
        0 => round_trip_individual(rng),
        1 => round_trip_object(rng),
        2 => invalid_values_are_refused(rng),
        _ => mutated(rng),
    });
}
