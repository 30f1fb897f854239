//! Decoding incoming (server-owned) values, lenient where Astarte is known to vary: small
//! longintegers may arrive as int32 (gotcha 15), AppEngine may send numbers as integers, and a
//! `t` may be int64 rather than datetime. `m` (metadata) and other unknown top-level keys are
//! ignored. Malformed BSON is an error, never a panic.

use bson::{RawBsonRef, RawDocument};

use super::{PayloadError, bson_type_name};
use crate::data::format::{self, Convert, Format};
use crate::data::value::{AstarteValue, ValueError};
use crate::interface::MappingType;

/// An individual value received from Astarte.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub value: AstarteValue,
    pub timestamp_ms: Option<i64>,
}

/// An object-aggregated value received from Astarte, keys in payload order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedObject {
    pub values: Vec<(String, AstarteValue)>,
    pub timestamp_ms: Option<i64>,
}

/// Decodes `{"v": value, "t": timestamp}` for a mapping of type `expected`, then checks the
/// value against Astarte's limits.
///
/// Accepted BSON types beyond the canonical ones: `double` from int32/int64 (converted, an
/// int64 above 2^53 loses precision), `integer` from an int64 that fits, `longinteger` from
/// int32 (also per array item), `datetime` from int64 milliseconds, `binaryblob` of any
/// subtype. An empty binaryblob is returned as is: for a property, callers should treat
/// [`AstarteValue::is_empty_binary`] as an unset, as the server does.
pub fn decode_individual(payload: &[u8], expected: MappingType) -> Result<Received, PayloadError> {
    let envelope = parse_envelope(payload)?;
    Ok(Received {
        value: decode_value(envelope.value, expected)?,
        timestamp_ms: envelope.timestamp_ms,
    })
}

/// Decodes `{"v": {key: value, ...}, "t": timestamp}`, typing each key with `key_type` (the
/// last endpoint level of each mapping); a key it does not know is an error.
pub fn decode_object(
    payload: &[u8],
    key_type: impl Fn(&str) -> Option<MappingType>,
) -> Result<ReceivedObject, PayloadError> {
    let envelope = parse_envelope(payload)?;
    let RawBsonRef::Document(object) = envelope.value else {
        return Err(PayloadError::NotAnObject {
            found: bson_type_name(envelope.value.element_type()),
        });
    };
    let mut values: Vec<(String, AstarteValue)> = Vec::new();
    for element in object {
        let (key, bson) = element.map_err(PayloadError::Malformed)?;
        let key = key.as_str();
        let expected = key_type(key).ok_or_else(|| PayloadError::UnknownKey {
            key: key.to_owned(),
        })?;
        if values.iter().any(|(seen, _)| seen == key) {
            return Err(PayloadError::DuplicateKey {
                key: key.to_owned(),
            });
        }
        let value =
            decode_value(bson, expected).map_err(|source| PayloadError::InvalidObjectValue {
                key: key.to_owned(),
                source: Box::new(source),
            })?;
        values.push((key.to_owned(), value));
    }
    Ok(ReceivedObject {
        values,
        timestamp_ms: envelope.timestamp_ms,
    })
}

struct Envelope<'a> {
    value: RawBsonRef<'a>,
    timestamp_ms: Option<i64>,
}

fn parse_envelope(payload: &[u8]) -> Result<Envelope<'_>, PayloadError> {
    if payload.is_empty() {
        return Err(PayloadError::Empty);
    }
    let document = RawDocument::from_bytes(payload).map_err(PayloadError::Malformed)?;
    let mut value = None;
    let mut timestamp = None;
    for element in document {
        let (key, bson) = element.map_err(PayloadError::Malformed)?;
        let slot = match key.as_str() {
            "v" => &mut value,
            "t" => &mut timestamp,
            _ => continue,
        };
        if slot.replace(bson).is_some() {
            return Err(PayloadError::DuplicateKey {
                key: key.as_str().to_owned(),
            });
        }
    }
    let timestamp_ms = match timestamp {
        None => None,
        Some(RawBsonRef::DateTime(t)) => Some(t.timestamp_millis()),
        Some(RawBsonRef::Int64(t)) => Some(t),
        Some(other) => {
            return Err(PayloadError::WrongTimestampType {
                found: bson_type_name(other.element_type()),
            });
        }
    };
    Ok(Envelope {
        value: value.ok_or(PayloadError::MissingValue)?,
        timestamp_ms,
    })
}

fn decode_value(bson: RawBsonRef<'_>, expected: MappingType) -> Result<AstarteValue, PayloadError> {
    let value = format::read(bson, expected)?;
    value.check()?;
    Ok(value)
}

/// Why one BSON element does not convert: a type mismatch, or a value the type cannot hold.
pub(in crate::data) enum Mismatch {
    Type,
    Value(ValueError),
}

/// The leniency is in the element converters: see [`decode_individual`].
impl<'a> Format for RawBsonRef<'a> {
    type Error = PayloadError;
    type Mismatch = Mismatch;

    fn scalar<T>(
        self,
        expected: MappingType,
        convert: Convert<Self, T>,
    ) -> Result<T, PayloadError> {
        convert(self).map_err(|mismatch| match mismatch {
            Mismatch::Type => PayloadError::WrongType {
                expected,
                found: bson_type_name(self.element_type()),
            },
            Mismatch::Value(err) => err.into(),
        })
    }

    fn array<T>(
        self,
        expected: MappingType,
        convert: Convert<Self, T>,
    ) -> Result<Vec<T>, PayloadError> {
        let RawBsonRef::Array(items) = self else {
            return Err(PayloadError::WrongType {
                expected,
                found: bson_type_name(self.element_type()),
            });
        };
        let mut values = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let item = item.map_err(PayloadError::Malformed)?;
            let value = convert(item).map_err(|mismatch| match mismatch {
                Mismatch::Type => PayloadError::WrongElementType {
                    expected,
                    index,
                    found: bson_type_name(item.element_type()),
                },
                Mismatch::Value(source) => ValueError::InvalidElement {
                    index,
                    source: Box::new(source),
                }
                .into(),
            })?;
            values.push(value);
        }
        Ok(values)
    }

    fn double(self) -> Result<f64, Mismatch> {
        match self {
            RawBsonRef::Double(v) => Ok(v),
            RawBsonRef::Int32(v) => Ok(v.into()),
            // Precision loss above 2^53 is accepted: the mapping is a double.
            RawBsonRef::Int64(v) => Ok(v as f64),
            _ => Err(Mismatch::Type),
        }
    }

    fn integer(self) -> Result<i32, Mismatch> {
        match self {
            RawBsonRef::Int32(v) => Ok(v),
            RawBsonRef::Int64(v) => i32::try_from(v)
                .map_err(|_| Mismatch::Value(ValueError::IntegerOutOfRange { value: v })),
            _ => Err(Mismatch::Type),
        }
    }

    fn boolean(self) -> Result<bool, Mismatch> {
        match self {
            RawBsonRef::Boolean(v) => Ok(v),
            _ => Err(Mismatch::Type),
        }
    }

    fn long_integer(self) -> Result<i64, Mismatch> {
        match self {
            RawBsonRef::Int64(v) => Ok(v),
            RawBsonRef::Int32(v) => Ok(v.into()),
            _ => Err(Mismatch::Type),
        }
    }

    fn string(self) -> Result<String, Mismatch> {
        match self {
            RawBsonRef::String(v) => Ok(v.to_owned()),
            _ => Err(Mismatch::Type),
        }
    }

    fn binary_blob(self) -> Result<Vec<u8>, Mismatch> {
        match self {
            RawBsonRef::Binary(v) => Ok(v.bytes.to_vec()),
            _ => Err(Mismatch::Type),
        }
    }

    fn date_time(self) -> Result<i64, Mismatch> {
        match self {
            RawBsonRef::DateTime(v) => Ok(v.timestamp_millis()),
            RawBsonRef::Int64(v) => Ok(v),
            _ => Err(Mismatch::Type),
        }
    }
}
