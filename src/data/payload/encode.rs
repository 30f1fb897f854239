//! Encoding outgoing values. Key order is `v` then `t` (Astarte accepts any order). Every type
//! goes out as the BSON type of the table in section 3.9.1; in particular a longinteger is
//! always int64 and `t` is always a BSON datetime (an int64 `t` is silently ignored).

use bson::{Binary, Bson, DateTime, Document, spec::BinarySubtype};

use super::PayloadError;
use crate::data::value::{AstarteValue, ValueError};

/// Encodes an individual value (datastream or property set) as `{"v": value, "t": datetime}`,
/// `t` only when given.
///
/// Refuses values outside Astarte's limits and an empty scalar binaryblob, which the server
/// would read as an unset.
pub fn encode_individual(
    value: &AstarteValue,
    timestamp_ms: Option<i64>,
) -> Result<Vec<u8>, PayloadError> {
    check_sendable(value)?;
    envelope(to_bson(value), timestamp_ms)
}

/// Encodes an object-aggregated datastream as `{"v": {key: value, ...}, "t": datetime}`, keys in
/// the given order. Keys are the last endpoint level; the caller checks them against the
/// interface.
pub fn encode_object(
    values: &[(String, AstarteValue)],
    timestamp_ms: Option<i64>,
) -> Result<Vec<u8>, PayloadError> {
    let mut object = Document::new();
    for (key, value) in values {
        check_sendable(value).map_err(|source| PayloadError::InvalidObjectValue {
            key: key.clone(),
            source: Box::new(source),
        })?;
        if object.insert(key.clone(), to_bson(value)).is_some() {
            return Err(PayloadError::DuplicateKey { key: key.clone() });
        }
    }
    envelope(Bson::Document(object), timestamp_ms)
}

fn check_sendable(value: &AstarteValue) -> Result<(), PayloadError> {
    value.check()?;
    if value.is_empty_binary() {
        return Err(ValueError::EmptyBinaryBlob.into());
    }
    Ok(())
}

fn envelope(value: Bson, timestamp_ms: Option<i64>) -> Result<Vec<u8>, PayloadError> {
    let mut document = Document::new();
    document.insert("v", value);
    if let Some(ms) = timestamp_ms {
        document.insert("t", DateTime::from_millis(ms));
    }
    document.to_vec().map_err(PayloadError::Encode)
}

fn to_bson(value: &AstarteValue) -> Bson {
    match value {
        AstarteValue::Double(v) => Bson::Double(*v),
        AstarteValue::Integer(v) => Bson::Int32(*v),
        AstarteValue::Boolean(v) => Bson::Boolean(*v),
        AstarteValue::LongInteger(v) => Bson::Int64(*v),
        AstarteValue::String(v) => Bson::String(v.clone()),
        AstarteValue::BinaryBlob(v) => binary(v),
        AstarteValue::DateTime(v) => Bson::DateTime(DateTime::from_millis(*v)),
        AstarteValue::DoubleArray(v) => array(v, |x| Bson::Double(*x)),
        AstarteValue::IntegerArray(v) => array(v, |x| Bson::Int32(*x)),
        AstarteValue::BooleanArray(v) => array(v, |x| Bson::Boolean(*x)),
        AstarteValue::LongIntegerArray(v) => array(v, |x| Bson::Int64(*x)),
        AstarteValue::StringArray(v) => array(v, |x| Bson::String(x.clone())),
        AstarteValue::BinaryBlobArray(v) => array(v, |x| binary(x)),
        AstarteValue::DateTimeArray(v) => array(v, |x| Bson::DateTime(DateTime::from_millis(*x))),
    }
}

fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

fn array<T>(items: &[T], convert: impl Fn(&T) -> Bson) -> Bson {
    Bson::Array(items.iter().map(convert).collect())
}
