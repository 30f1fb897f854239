//! Conversion between D-Bus variants and Astarte values, both directions.

use rstest::rstest;
use zbus::zvariant::Array;

use super::*;
use crate::data::value::{MAX_ARRAY_ITEMS, MAX_BYTES};

#[rstest]
#[case::double(AstarteValue::Double(2.5), "d")]
#[case::integer(AstarteValue::Integer(-3), "i")]
#[case::boolean(AstarteValue::Boolean(true), "b")]
#[case::longinteger(AstarteValue::LongInteger(1 << 40), "x")]
#[case::string(AstarteValue::String("hé".into()), "s")]
#[case::binaryblob(AstarteValue::BinaryBlob(vec![0, 1, 255]), "ay")]
#[case::datetime(AstarteValue::DateTime(1_700_000_000_000), "x")]
#[case::doublearray(AstarteValue::DoubleArray(vec![1.0, -0.5]), "ad")]
#[case::integerarray(AstarteValue::IntegerArray(vec![1, 2]), "ai")]
#[case::booleanarray(AstarteValue::BooleanArray(vec![false]), "ab")]
#[case::longintegerarray(AstarteValue::LongIntegerArray(vec![i64::MAX]), "ax")]
#[case::stringarray(AstarteValue::StringArray(vec!["a".into(), String::new()]), "as")]
#[case::binaryblobarray(AstarteValue::BinaryBlobArray(vec![vec![1], vec![]]), "aay")]
#[case::datetimearray(AstarteValue::DateTimeArray(vec![0, 1]), "ax")]
#[case::empty_array(AstarteValue::StringArray(vec![]), "as")]
fn every_type_converts_both_ways_with_its_signature(
    #[case] value: AstarteValue,
    #[case] signature: &str,
) {
    let variant = to_variant(&value);
    assert_eq!(variant.value_signature().to_string(), signature);
    assert_eq!(signature_of(value.mapping_type()), signature);
    assert_eq!(from_variant(&variant, value.mapping_type()), Ok(value));
}

#[rstest]
#[case::u8_into_integer(Value::U8(200), MappingType::Integer, AstarteValue::Integer(200))]
#[case::i16_into_integer(Value::I16(-5), MappingType::Integer, AstarteValue::Integer(-5))]
#[case::fitting_i64_into_integer(Value::I64(7), MappingType::Integer, AstarteValue::Integer(7))]
#[case::u32_into_longinteger(
    Value::U32(u32::MAX),
    MappingType::LongInteger,
    AstarteValue::LongInteger(u32::MAX.into())
)]
#[case::fitting_u64_into_longinteger(
    Value::U64(9),
    MappingType::LongInteger,
    AstarteValue::LongInteger(9)
)]
#[case::i32_into_datetime(Value::I32(1000), MappingType::DateTime, AstarteValue::DateTime(1000))]
#[case::u16_array_into_integerarray(
    Value::from(vec![1_u16, 2]),
    MappingType::IntegerArray,
    AstarteValue::IntegerArray(vec![1, 2])
)]
#[case::i32_array_into_datetimearray(
    Value::from(vec![5_i32]),
    MappingType::DateTimeArray,
    AstarteValue::DateTimeArray(vec![5])
)]
#[case::variant_in_variant(
    Value::Value(Box::new(Value::F64(1.5))),
    MappingType::Double,
    AstarteValue::Double(1.5)
)]
fn any_fitting_integer_width_is_accepted(
    #[case] variant: Value<'static>,
    #[case] expected: MappingType,
    #[case] value: AstarteValue,
) {
    assert_eq!(from_variant(&variant, expected), Ok(value));
}

#[rstest]
#[case::u64_over_i64_into_longinteger(Value::U64(u64::MAX), MappingType::LongInteger, u64::MAX.into())]
#[case::i64_into_integer(Value::I64(1 << 31), MappingType::Integer, 1 << 31)]
#[case::u32_into_integer(Value::U32(u32::MAX), MappingType::Integer, u32::MAX.into())]
#[case::integer_min(Value::I32(i32::MIN), MappingType::Integer, i32::MIN.into())]
#[case::longinteger_min(Value::I64(i64::MIN), MappingType::LongInteger, i64::MIN.into())]
#[case::array_item(Value::from(vec![1_i64, 1 << 40]), MappingType::IntegerArray, 1 << 40)]
#[case::array_min_item(Value::from(vec![i64::MIN]), MappingType::LongIntegerArray, i64::MIN.into())]
fn integers_astarte_cannot_hold_are_out_of_range(
    #[case] variant: Value<'static>,
    #[case] expected: MappingType,
    #[case] value: i128,
) {
    assert_eq!(
        from_variant(&variant, expected),
        Err(ConversionError::OutOfRange { expected, value })
    );
}

#[rstest]
#[case::string_for_double(Value::from("1.5"), MappingType::Double, "d", "s")]
#[case::integer_for_double(Value::I32(1), MappingType::Double, "d", "i")]
#[case::double_for_integer(Value::F64(1.0), MappingType::Integer, "i", "d")]
#[case::bool_for_longinteger(Value::Bool(true), MappingType::LongInteger, "x", "b")]
#[case::string_for_binaryblob(Value::from("AQI="), MappingType::BinaryBlob, "ay", "s")]
#[case::int_array_for_binaryblob(Value::from(vec![1_i32]), MappingType::BinaryBlob, "ay", "ai")]
#[case::scalar_for_array(Value::F64(1.0), MappingType::DoubleArray, "ad", "d")]
#[case::empty_string_array_for_doublearray(
    Value::from(Vec::<String>::new()),
    MappingType::DoubleArray,
    "ad",
    "as"
)]
#[case::double_array_for_integerarray(Value::from(vec![1.0_f64]), MappingType::IntegerArray, "ai", "ad")]
#[case::variant_array(
    Value::from(Array::new(&Signature::Variant)),
    MappingType::StringArray,
    "as",
    "av"
)]
#[case::variant_twice_nested(
    Value::Value(Box::new(Value::Value(Box::new(Value::Bool(true))))),
    MappingType::Boolean,
    "b",
    "v"
)]
fn other_types_are_wrong_types(
    #[case] variant: Value<'static>,
    #[case] expected: MappingType,
    #[case] expected_signature: &'static str,
    #[case] found: &str,
) {
    assert_eq!(
        from_variant(&variant, expected),
        Err(ConversionError::WrongType {
            expected,
            expected_signature,
            found_signature: found.to_owned()
        })
    );
}

#[test]
fn wrong_type_message_names_the_expected_signature() {
    let err = from_variant(&Value::from("1.5"), MappingType::Double).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected double as D-Bus type `d`, found `s`"
    );
}

#[test]
fn empty_binaryblob_is_refused() {
    let variant = Value::from(Vec::<u8>::new());
    assert_eq!(
        from_variant(&variant, MappingType::BinaryBlob),
        Err(ConversionError::EmptyBinaryBlob)
    );
}

#[rstest]
#[case::nan(Value::F64(f64::NAN), MappingType::Double)]
#[case::infinity_item(Value::from(vec![0.0, f64::INFINITY]), MappingType::DoubleArray)]
fn non_finite_doubles_are_refused(#[case] variant: Value<'static>, #[case] expected: MappingType) {
    assert!(matches!(
        from_variant(&variant, expected),
        Err(ConversionError::NotFinite { .. })
    ));
}

#[rstest]
#[case::string(Value::from("x".repeat(MAX_BYTES + 1)), MappingType::String, MAX_BYTES + 1)]
#[case::blob(Value::from(vec![1_u8; MAX_BYTES + 1]), MappingType::BinaryBlob, MAX_BYTES + 1)]
#[case::array(Value::from(vec![true; MAX_ARRAY_ITEMS + 1]), MappingType::BooleanArray, MAX_ARRAY_ITEMS + 1)]
fn oversized_values_are_too_large(
    #[case] variant: Value<'static>,
    #[case] expected: MappingType,
    #[case] len: usize,
) {
    assert!(matches!(
        from_variant(&variant, expected),
        Err(ConversionError::TooLarge { len: l, .. }) if l == len
    ));
}
