//! The one match from a mapping type to an [`AstarteValue`], shared by the formats values
//! are read from (D-Bus variants, BSON elements). A format says how it reads one element of
//! each Astarte type, and how it reads a scalar or an array of elements (its errors, its
//! leniency); [`read`] picks both for the mapping type and builds the value.

use super::value::AstarteValue;
use crate::interface::MappingType;

/// One element converter of a [`Format`]: a copy of the input in, an element or a mismatch out.
pub(super) type Convert<F, T> = fn(F) -> Result<T, <F as Format>::Mismatch>;

/// A value in some format, still to be read as an Astarte value (see [`read`]).
pub(super) trait Format: Copy {
    /// Why a value can't be read as the expected type.
    type Error;
    /// Why one element does not convert; [`Format::scalar`] and [`Format::array`] make it an
    /// [`Format::Error`], knowing where the element was.
    type Mismatch;

    /// The value itself as one element.
    fn scalar<T>(self, expected: MappingType, convert: Convert<Self, T>) -> Result<T, Self::Error>;
    /// The value as an array of elements.
    fn array<T>(
        self,
        expected: MappingType,
        convert: Convert<Self, T>,
    ) -> Result<Vec<T>, Self::Error>;

    fn double(self) -> Result<f64, Self::Mismatch>;
    fn integer(self) -> Result<i32, Self::Mismatch>;
    fn boolean(self) -> Result<bool, Self::Mismatch>;
    fn long_integer(self) -> Result<i64, Self::Mismatch>;
    fn string(self) -> Result<String, Self::Mismatch>;
    fn binary_blob(self) -> Result<Vec<u8>, Self::Mismatch>;
    /// Milliseconds since the Unix epoch.
    fn date_time(self) -> Result<i64, Self::Mismatch>;
}

/// Reads `input` as a value of type `expected`. Limits are the caller's to check.
pub(super) fn read<F: Format>(input: F, expected: MappingType) -> Result<AstarteValue, F::Error> {
    use AstarteValue as Value;
    use MappingType as Type;
    Ok(match expected {
        Type::Double => Value::Double(input.scalar(expected, F::double)?),
        Type::Integer => Value::Integer(input.scalar(expected, F::integer)?),
        Type::Boolean => Value::Boolean(input.scalar(expected, F::boolean)?),
        Type::LongInteger => Value::LongInteger(input.scalar(expected, F::long_integer)?),
        Type::String => Value::String(input.scalar(expected, F::string)?),
        Type::BinaryBlob => Value::BinaryBlob(input.scalar(expected, F::binary_blob)?),
        Type::DateTime => Value::DateTime(input.scalar(expected, F::date_time)?),
        Type::DoubleArray => Value::DoubleArray(input.array(expected, F::double)?),
        Type::IntegerArray => Value::IntegerArray(input.array(expected, F::integer)?),
        Type::BooleanArray => Value::BooleanArray(input.array(expected, F::boolean)?),
        Type::LongIntegerArray => Value::LongIntegerArray(input.array(expected, F::long_integer)?),
        Type::StringArray => Value::StringArray(input.array(expected, F::string)?),
        Type::BinaryBlobArray => Value::BinaryBlobArray(input.array(expected, F::binary_blob)?),
        Type::DateTimeArray => Value::DateTimeArray(input.array(expected, F::date_time)?),
    })
}
