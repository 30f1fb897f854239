//! Astarte values as the agent handles them between D-Bus and the wire, and the limits Astarte
//! enforces on them (protocol doc, sections 3.9.1 and 5).

use thiserror::Error;

use crate::interface::MappingType;

/// Longest `string` (UTF-8 bytes) or `binaryblob` Astarte accepts.
pub const MAX_BYTES: usize = 65_536;
/// Most items an array value may hold.
pub const MAX_ARRAY_ITEMS: usize = 1024;

/// A value of one of the 14 Astarte types. `DateTime` is milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq)]
pub enum AstarteValue {
    Double(f64),
    Integer(i32),
    Boolean(bool),
    LongInteger(i64),
    String(String),
    BinaryBlob(Vec<u8>),
    DateTime(i64),
    DoubleArray(Vec<f64>),
    IntegerArray(Vec<i32>),
    BooleanArray(Vec<bool>),
    LongIntegerArray(Vec<i64>),
    StringArray(Vec<String>),
    BinaryBlobArray(Vec<Vec<u8>>),
    DateTimeArray(Vec<i64>),
}

/// Why a value is not acceptable to Astarte.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ValueError {
    #[error("double value {value} is not finite")]
    NotFinite { value: f64 },
    /// i32::MIN and i64::MIN: the server checks `abs(v) <= MAX`.
    #[error("integer value {value} is outside the range astarte accepts")]
    IntegerOutOfRange { value: i64 },
    #[error("value is {len} bytes long, at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error("array has {len} items, at most {max} are allowed")]
    TooManyItems { len: usize, max: usize },
    /// Astarte reads `{"v": <empty binary>}` as an unset (gotcha 17).
    #[error("empty binaryblob: astarte treats it as an unset")]
    EmptyBinaryBlob,
    #[error("expected a {} value, found a {}", expected.name(), found.name())]
    WrongType {
        expected: MappingType,
        found: MappingType,
    },
    #[error("array item {index} is invalid")]
    InvalidElement {
        index: usize,
        #[source]
        source: Box<ValueError>,
    },
}

impl ValueError {
    /// The error of the offending scalar, looking through `InvalidElement`.
    pub fn innermost(&self) -> &ValueError {
        match self {
            ValueError::InvalidElement { source, .. } => source.innermost(),
            other => other,
        }
    }
}

impl AstarteValue {
    /// The mapping type this value belongs to.
    pub fn mapping_type(&self) -> MappingType {
        match self {
            AstarteValue::Double(_) => MappingType::Double,
            AstarteValue::Integer(_) => MappingType::Integer,
            AstarteValue::Boolean(_) => MappingType::Boolean,
            AstarteValue::LongInteger(_) => MappingType::LongInteger,
            AstarteValue::String(_) => MappingType::String,
            AstarteValue::BinaryBlob(_) => MappingType::BinaryBlob,
            AstarteValue::DateTime(_) => MappingType::DateTime,
            AstarteValue::DoubleArray(_) => MappingType::DoubleArray,
            AstarteValue::IntegerArray(_) => MappingType::IntegerArray,
            AstarteValue::BooleanArray(_) => MappingType::BooleanArray,
            AstarteValue::LongIntegerArray(_) => MappingType::LongIntegerArray,
            AstarteValue::StringArray(_) => MappingType::StringArray,
            AstarteValue::BinaryBlobArray(_) => MappingType::BinaryBlobArray,
            AstarteValue::DateTimeArray(_) => MappingType::DateTimeArray,
        }
    }

    /// Checks the value against Astarte's limits: finite doubles, no i32::MIN / i64::MIN,
    /// strings and blobs of at most [`MAX_BYTES`], arrays of at most [`MAX_ARRAY_ITEMS`] items
    /// each within its scalar limit. Empty arrays are valid.
    ///
    /// An empty `binaryblob` passes (it is a well-formed value); callers that send it must
    /// refuse it separately, see [`AstarteValue::is_empty_binary`]. Empty items of a
    /// `binaryblobarray` are allowed: only a scalar empty blob is an unset on the server.
    pub fn check(&self) -> Result<(), ValueError> {
        match self {
            AstarteValue::Double(v) => check_double(*v),
            AstarteValue::Integer(v) => check_integer(*v),
            AstarteValue::Boolean(_) | AstarteValue::DateTime(_) => Ok(()),
            AstarteValue::LongInteger(v) => check_long_integer(*v),
            AstarteValue::String(v) => check_bytes(v.len()),
            AstarteValue::BinaryBlob(v) => check_bytes(v.len()),
            AstarteValue::DoubleArray(v) => check_items(v, |x| check_double(*x)),
            AstarteValue::IntegerArray(v) => check_items(v, |x| check_integer(*x)),
            AstarteValue::BooleanArray(v) => check_items(v, |_| Ok(())),
            AstarteValue::LongIntegerArray(v) => check_items(v, |x| check_long_integer(*x)),
            AstarteValue::StringArray(v) => check_items(v, |x| check_bytes(x.len())),
            AstarteValue::BinaryBlobArray(v) => check_items(v, |x| check_bytes(x.len())),
            AstarteValue::DateTimeArray(v) => check_items(v, |_| Ok(())),
        }
    }

    /// [`AstarteValue::check`] plus: the value has the `expected` mapping type.
    pub fn check_as(&self, expected: MappingType) -> Result<(), ValueError> {
        let found = self.mapping_type();
        if found != expected {
            return Err(ValueError::WrongType { expected, found });
        }
        self.check()
    }

    /// True for a zero-length scalar `binaryblob`, which Astarte reads as an unset: it must
    /// not be sent as a value (a datastream rejects it, a property would be unset).
    pub fn is_empty_binary(&self) -> bool {
        matches!(self, AstarteValue::BinaryBlob(v) if v.is_empty())
    }
}

fn check_double(value: f64) -> Result<(), ValueError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ValueError::NotFinite { value })
    }
}

fn check_integer(value: i32) -> Result<(), ValueError> {
    if value == i32::MIN {
        Err(ValueError::IntegerOutOfRange {
            value: value.into(),
        })
    } else {
        Ok(())
    }
}

fn check_long_integer(value: i64) -> Result<(), ValueError> {
    if value == i64::MIN {
        Err(ValueError::IntegerOutOfRange { value })
    } else {
        Ok(())
    }
}

fn check_bytes(len: usize) -> Result<(), ValueError> {
    if len > MAX_BYTES {
        Err(ValueError::TooLong {
            len,
            max: MAX_BYTES,
        })
    } else {
        Ok(())
    }
}

fn check_items<T>(
    items: &[T],
    check: impl Fn(&T) -> Result<(), ValueError>,
) -> Result<(), ValueError> {
    if items.len() > MAX_ARRAY_ITEMS {
        return Err(ValueError::TooManyItems {
            len: items.len(),
            max: MAX_ARRAY_ITEMS,
        });
    }
    for (index, item) in items.iter().enumerate() {
        check(item).map_err(|source| ValueError::InvalidElement {
            index,
            source: Box::new(source),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::double(AstarteValue::Double(-1.5e300))]
    #[case::integer(AstarteValue::Integer(i32::MIN + 1))]
    #[case::integer_max(AstarteValue::Integer(i32::MAX))]
    #[case::longinteger(AstarteValue::LongInteger(i64::MIN + 1))]
    #[case::longinteger_max(AstarteValue::LongInteger(i64::MAX))]
    #[case::string_at_limit(AstarteValue::String("a".repeat(MAX_BYTES)))]
    #[case::blob_at_limit(AstarteValue::BinaryBlob(vec![1; MAX_BYTES]))]
    #[case::empty_blob(AstarteValue::BinaryBlob(vec![]))]
    #[case::datetime(AstarteValue::DateTime(i64::MIN))]
    #[case::array_at_limit(AstarteValue::IntegerArray(vec![7; MAX_ARRAY_ITEMS]))]
    #[case::empty_array(AstarteValue::StringArray(vec![]))]
    #[case::empty_blob_item(AstarteValue::BinaryBlobArray(vec![vec![]]))]
    fn values_within_astarte_limits_pass(#[case] value: AstarteValue) {
        assert_eq!(value.check(), Ok(()));
    }

    #[rstest]
    #[case::nan(AstarteValue::Double(f64::NAN))]
    #[case::infinity(AstarteValue::Double(f64::INFINITY))]
    #[case::minus_infinity(AstarteValue::Double(f64::NEG_INFINITY))]
    #[case::nan_item(AstarteValue::DoubleArray(vec![1.0, f64::NAN]))]
    fn non_finite_doubles_are_rejected(#[case] value: AstarteValue) {
        let err = value.check().unwrap_err();
        assert!(matches!(err.innermost(), ValueError::NotFinite { .. }));
    }

    #[rstest]
    #[case::integer(AstarteValue::Integer(i32::MIN), i32::MIN.into())]
    #[case::longinteger(AstarteValue::LongInteger(i64::MIN), i64::MIN)]
    #[case::integer_item(AstarteValue::IntegerArray(vec![0, i32::MIN]), i32::MIN.into())]
    #[case::longinteger_item(AstarteValue::LongIntegerArray(vec![i64::MIN]), i64::MIN)]
    fn minimum_integers_are_rejected(#[case] value: AstarteValue, #[case] expected: i64) {
        let err = value.check().unwrap_err();
        assert_eq!(
            err.innermost(),
            &ValueError::IntegerOutOfRange { value: expected }
        );
    }

    #[rstest]
    #[case::string(AstarteValue::String("a".repeat(MAX_BYTES + 1)))]
    #[case::blob(AstarteValue::BinaryBlob(vec![0; MAX_BYTES + 1]))]
    #[case::string_item(AstarteValue::StringArray(vec!["a".repeat(MAX_BYTES + 1)]))]
    #[case::blob_item(AstarteValue::BinaryBlobArray(vec![vec![0; MAX_BYTES + 1]]))]
    fn strings_and_blobs_over_64_kib_are_rejected(#[case] value: AstarteValue) {
        let err = value.check().unwrap_err();
        assert_eq!(
            err.innermost(),
            &ValueError::TooLong {
                len: MAX_BYTES + 1,
                max: MAX_BYTES
            }
        );
    }

    #[test]
    fn arrays_over_1024_items_are_rejected() {
        let value = AstarteValue::BooleanArray(vec![true; MAX_ARRAY_ITEMS + 1]);
        assert_eq!(
            value.check(),
            Err(ValueError::TooManyItems {
                len: MAX_ARRAY_ITEMS + 1,
                max: MAX_ARRAY_ITEMS
            })
        );
    }

    #[test]
    fn invalid_array_item_reports_its_index() {
        let value = AstarteValue::DoubleArray(vec![1.0, 2.0, f64::INFINITY]);
        assert!(matches!(
            value.check(),
            Err(ValueError::InvalidElement { index: 2, .. })
        ));
    }

    #[test]
    fn only_a_scalar_empty_blob_is_an_empty_binary() {
        assert!(AstarteValue::BinaryBlob(vec![]).is_empty_binary());
        assert!(!AstarteValue::BinaryBlob(vec![0]).is_empty_binary());
        assert!(!AstarteValue::BinaryBlobArray(vec![vec![]]).is_empty_binary());
        assert!(!AstarteValue::String(String::new()).is_empty_binary());
    }

    #[test]
    fn check_as_rejects_a_value_of_another_type() {
        assert_eq!(
            AstarteValue::Integer(1).check_as(MappingType::LongInteger),
            Err(ValueError::WrongType {
                expected: MappingType::LongInteger,
                found: MappingType::Integer
            })
        );
        assert_eq!(
            AstarteValue::Integer(1).check_as(MappingType::Integer),
            Ok(())
        );
    }

    #[test]
    fn mapping_type_matches_the_variant() {
        assert_eq!(
            AstarteValue::DateTimeArray(vec![]).mapping_type(),
            MappingType::DateTimeArray
        );
        assert_eq!(
            AstarteValue::LongInteger(5).mapping_type(),
            MappingType::LongInteger
        );
    }
}
