//! Astarte values as D-Bus variants. One signature per type (see [`signature_of`]);
//! `datetime` travels as `x`, milliseconds since the Unix epoch (UTC). Callers of an agent
//! often cannot choose an integer width, so integer-like types accept any D-Bus integer
//! (`y n q i u x t`) whose value fits.

use thiserror::Error;
use zbus::zvariant::{OwnedValue, Signature, Str, Value};

use super::format::{self, Convert, Format};
use super::value::{AstarteValue, ValueError};
use crate::interface::MappingType;

/// Why a D-Bus variant is not a value of the mapping's type.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConversionError {
    #[error(
        "expected {} as D-Bus type `{expected_signature}`, found `{found_signature}`",
        expected.name()
    )]
    WrongType {
        expected: MappingType,
        expected_signature: &'static str,
        found_signature: String,
    },
    #[error("{value} is out of range for {}", expected.name())]
    OutOfRange { expected: MappingType, value: i128 },
    #[error("{value} is not a finite number")]
    NotFinite { value: f64 },
    #[error("{} value too large: {len} {unit}, at most {max}", expected.name())]
    TooLarge {
        expected: MappingType,
        len: usize,
        max: usize,
        unit: &'static str,
    },
    #[error("empty binaryblob: astarte treats it as an unset")]
    EmptyBinaryBlob,
    #[error("value rejected by astarte limits")]
    Invalid(#[source] ValueError),
}

/// The D-Bus signature carrying each mapping type.
pub fn signature_of(mapping_type: MappingType) -> &'static str {
    match mapping_type {
        MappingType::Double => "d",
        MappingType::Integer => "i",
        MappingType::Boolean => "b",
        MappingType::LongInteger | MappingType::DateTime => "x",
        MappingType::String => "s",
        MappingType::BinaryBlob => "ay",
        MappingType::DoubleArray => "ad",
        MappingType::IntegerArray => "ai",
        MappingType::BooleanArray => "ab",
        MappingType::LongIntegerArray | MappingType::DateTimeArray => "ax",
        MappingType::StringArray => "as",
        MappingType::BinaryBlobArray => "aay",
    }
}

/// Converts a D-Bus value to a value of `expected` type and checks Astarte's limits.
/// A variant inside the variant is unwrapped once. An empty `ay` is refused for a scalar
/// binaryblob (Astarte would read it as an unset).
pub fn from_variant(
    value: &Value<'_>,
    expected: MappingType,
) -> Result<AstarteValue, ConversionError> {
    let value = match value {
        Value::Value(inner) => inner.as_ref(),
        other => other,
    };
    let converted = format::read(value, expected)?;
    converted
        .check()
        .map_err(|err| limit_error(err.innermost(), expected))?;
    if converted.is_empty_binary() {
        return Err(ConversionError::EmptyBinaryBlob);
    }
    Ok(converted)
}

/// Converts a value to the D-Bus variant of its type (see [`signature_of`]).
pub fn to_variant(value: &AstarteValue) -> OwnedValue {
    match value {
        AstarteValue::Double(v) => (*v).into(),
        AstarteValue::Integer(v) => (*v).into(),
        AstarteValue::Boolean(v) => (*v).into(),
        AstarteValue::LongInteger(v) | AstarteValue::DateTime(v) => (*v).into(),
        AstarteValue::String(v) => Str::from(v.clone()).into(),
        AstarteValue::BinaryBlob(v) => owned(v.clone()),
        AstarteValue::DoubleArray(v) => owned(v.clone()),
        AstarteValue::IntegerArray(v) => owned(v.clone()),
        AstarteValue::BooleanArray(v) => owned(v.clone()),
        AstarteValue::LongIntegerArray(v) | AstarteValue::DateTimeArray(v) => owned(v.clone()),
        AstarteValue::StringArray(v) => owned(v.clone()),
        AstarteValue::BinaryBlobArray(v) => owned(v.clone()),
    }
}

fn owned(value: impl Into<Value<'static>>) -> OwnedValue {
    // Only file descriptors can fail to become owned, and Astarte values hold none.
    value
        .into()
        .try_into_owned()
        .expect("a value without file descriptors is always ownable")
}

fn limit_error(err: &ValueError, expected: MappingType) -> ConversionError {
    match *err {
        ValueError::NotFinite { value } => ConversionError::NotFinite { value },
        ValueError::IntegerOutOfRange { value } => ConversionError::OutOfRange {
            expected,
            value: value.into(),
        },
        ValueError::TooLong { len, max } => ConversionError::TooLarge {
            expected,
            len,
            max,
            unit: "bytes",
        },
        ValueError::TooManyItems { len, max } => ConversionError::TooLarge {
            expected,
            len,
            max,
            unit: "items",
        },
        ValueError::EmptyBinaryBlob => ConversionError::EmptyBinaryBlob,
        // `check` does not compare types and `innermost` looks through elements.
        ValueError::WrongType { .. } | ValueError::InvalidElement { .. } => {
            ConversionError::Invalid(err.clone())
        }
    }
}

/// Why one D-Bus value does not convert: a type mismatch, or an integer that does not fit.
pub(super) enum Mismatch {
    Type,
    OutOfRange(i128),
}

fn mismatch_error(mismatch: Mismatch, value: &Value<'_>, expected: MappingType) -> ConversionError {
    match mismatch {
        Mismatch::Type => ConversionError::WrongType {
            expected,
            expected_signature: signature_of(expected),
            found_signature: value.value_signature().to_string(),
        },
        Mismatch::OutOfRange(value) => ConversionError::OutOfRange { expected, value },
    }
}

/// Integer-like types accept any D-Bus integer that fits; `datetime` is an `x`.
impl<'a> Format for &'a Value<'a> {
    type Error = ConversionError;
    type Mismatch = Mismatch;

    fn scalar<T>(
        self,
        expected: MappingType,
        convert: Convert<Self, T>,
    ) -> Result<T, ConversionError> {
        convert(self).map_err(|mismatch| mismatch_error(mismatch, self, expected))
    }

    /// Items convert with the scalar rules. The element signature is checked first so that an
    /// empty array of the wrong element type is still a wrong type.
    fn array<T>(
        self,
        expected: MappingType,
        convert: Convert<Self, T>,
    ) -> Result<Vec<T>, ConversionError> {
        let wrong_type = || mismatch_error(Mismatch::Type, self, expected);
        let Value::Array(items) = self else {
            return Err(wrong_type());
        };
        if !element_signature_fits(&items.element_signature().to_string(), expected) {
            return Err(wrong_type());
        }
        items
            .iter()
            .map(|item| {
                convert(item).map_err(|mismatch| match mismatch {
                    Mismatch::Type => wrong_type(),
                    Mismatch::OutOfRange(value) => ConversionError::OutOfRange { expected, value },
                })
            })
            .collect()
    }

    fn double(self) -> Result<f64, Mismatch> {
        match *self {
            Value::F64(v) => Ok(v),
            _ => Err(Mismatch::Type),
        }
    }

    fn integer(self) -> Result<i32, Mismatch> {
        let n = integer_of(self)?;
        i32::try_from(n).map_err(|_| Mismatch::OutOfRange(n))
    }

    fn boolean(self) -> Result<bool, Mismatch> {
        match *self {
            Value::Bool(v) => Ok(v),
            _ => Err(Mismatch::Type),
        }
    }

    fn long_integer(self) -> Result<i64, Mismatch> {
        let n = integer_of(self)?;
        i64::try_from(n).map_err(|_| Mismatch::OutOfRange(n))
    }

    fn string(self) -> Result<String, Mismatch> {
        match self {
            Value::Str(v) => Ok(v.as_str().to_owned()),
            _ => Err(Mismatch::Type),
        }
    }

    fn binary_blob(self) -> Result<Vec<u8>, Mismatch> {
        let Value::Array(items) = self else {
            return Err(Mismatch::Type);
        };
        if *items.element_signature() != Signature::U8 {
            return Err(Mismatch::Type);
        }
        items
            .iter()
            .map(|item| match *item {
                Value::U8(byte) => Ok(byte),
                _ => Err(Mismatch::Type),
            })
            .collect()
    }

    fn date_time(self) -> Result<i64, Mismatch> {
        self.long_integer()
    }
}

const INTEGER_SIGNATURES: [&str; 7] = ["y", "n", "q", "i", "u", "x", "t"];

fn element_signature_fits(signature: &str, expected: MappingType) -> bool {
    match expected {
        MappingType::IntegerArray | MappingType::LongIntegerArray | MappingType::DateTimeArray => {
            INTEGER_SIGNATURES.contains(&signature)
        }
        other => signature_of(other).strip_prefix('a') == Some(signature),
    }
}

fn integer_of(value: &Value<'_>) -> Result<i128, Mismatch> {
    Ok(match *value {
        Value::U8(v) => v.into(),
        Value::I16(v) => v.into(),
        Value::U16(v) => v.into(),
        Value::I32(v) => v.into(),
        Value::U32(v) => v.into(),
        Value::I64(v) => v.into(),
        Value::U64(v) => v.into(),
        _ => return Err(Mismatch::Type),
    })
}

#[cfg(test)]
mod tests;
