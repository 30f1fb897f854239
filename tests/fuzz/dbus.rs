//! D-Bus variants (`from_variant`): values of every signature against every mapping type.
//! A match converts to a value of that type within Astarte's limits; a mismatch is a typed
//! `ConversionError`; `to_variant` then `from_variant` is the identity.

use astarte_agent::data::{ConversionError, from_variant, signature_of, to_variant};
use fastrand::Rng;
use zbus::zvariant::{Array, ObjectPath, Signature, Structure, Value};

use crate::values::{self, mapping_type};
use crate::{driver, mutate};

fn assert_typed(error: &ConversionError) {
    match error {
        ConversionError::WrongType { .. }
        | ConversionError::OutOfRange { .. }
        | ConversionError::NotFinite { .. }
        | ConversionError::TooLarge { .. }
        | ConversionError::EmptyBinaryBlob
        | ConversionError::Invalid(_) => driver::assert_message(error),
    }
}

/// A scalar of one of the basic D-Bus types, often at an edge.
fn scalar(rng: &mut Rng, kind: u8) -> Value<'static> {
    match kind {
        0 => Value::U8(rng.u8(..)),
        1 => Value::I16([i16::MIN, -1, 0, i16::MAX][rng.usize(0..4)]),
        2 => Value::U16(rng.u16(..)),
        3 => Value::I32([i32::MIN, -1, 0, i32::MAX, rng.i32(..)][rng.usize(0..5)]),
        4 => Value::U32([0, u32::MAX, 1 << 31][rng.usize(0..3)]),
        5 => Value::I64([i64::MIN, 0, i64::MAX, 1 << 31][rng.usize(0..4)]),
        6 => Value::U64([0, u64::MAX, 1 << 63, (1 << 63) - 1][rng.usize(0..4)]),
        7 => Value::F64([f64::NAN, f64::INFINITY, 1.5, -0.0][rng.usize(0..4)]),
        8 => Value::Bool(rng.bool()),
        9 => Value::from(mutate::any_string(rng).replace('\0', "")),
        10 => Value::ObjectPath(ObjectPath::from_static_str_unchecked("/a/b")),
        _ => Value::Signature(Signature::try_from("a{sv}").expect("a valid signature")),
    }
}

/// Any value: scalars, homogeneous arrays (also of arrays), structures, dictionaries and
/// variants in variants.
fn any(rng: &mut Rng, depth: u8) -> Value<'static> {
    let kind = rng.u8(0..if depth > 1 { 12 } else { 16 });
    match kind {
        0..=11 => scalar(rng, kind),
        12 => {
            let element = rng.u8(0..12);
            let items: Vec<Value<'static>> =
                (0..rng.usize(0..5)).map(|_| scalar(rng, element)).collect();
            array_of(items).unwrap_or_else(|| Value::from(Vec::<u8>::new()))
        }
        13 => {
            let blobs: Vec<Vec<u8>> = (0..rng.usize(0..4))
                .map(|_| (0..rng.usize(0..4)).map(|_| rng.u8(..)).collect())
                .collect();
            Value::from(blobs)
        }
        14 => Value::Structure(Structure::from((
            rng.i32(..),
            mutate::any_string(rng).replace('\0', ""),
        ))),
        _ => Value::Value(Box::new(any(rng, depth + 1))),
    }
}

/// An array of same-typed items; `None` for an empty list (no element signature).
fn array_of(items: Vec<Value<'static>>) -> Option<Value<'static>> {
    let signature = items.first()?.value_signature().clone();
    let mut array = Array::new(&signature);
    for item in items {
        array.append(item).ok()?;
    }
    Some(Value::Array(array))
}

fn mismatch(rng: &mut Rng) {
    let value = any(rng, 0);
    for ty in astarte_agent::interface::MappingType::ALL {
        match from_variant(&value, ty) {
            Ok(converted) => {
                assert_eq!(converted.mapping_type(), ty);
                assert_eq!(converted.check(), Ok(()), "{converted:?}");
                assert!(!converted.is_empty_binary());
            }
            Err(error) => assert_typed(&error),
        }
    }
}

fn round_trip(rng: &mut Rng) {
    let ty = mapping_type(rng);
    let value = values::valid(rng, ty);
    let variant = to_variant(&value);
    assert_eq!(variant.value_signature().to_string(), signature_of(ty));
    assert_eq!(from_variant(&variant, ty), Ok(value.clone()));
    // Wrapped once more, as a `v` inside a `v`.
    let wrapped = Value::Value(Box::new(Value::from(variant)));
    assert_eq!(from_variant(&wrapped, ty), Ok(value));
}

fn out_of_limits(rng: &mut Rng) {
    let ty = mapping_type(rng);
    let Some(value) = values::invalid(rng, ty) else {
        return;
    };
    match from_variant(&to_variant(&value), ty) {
        Err(error) => assert_typed(&error),
        Ok(converted) => panic!("{ty}: a value out of Astarte's limits converted: {converted:?}"),
    }
}

#[test]
fn dbus_variants() {
    driver::run("dbus_variants", 3000, |rng| match rng.u8(0..4) {
        0 => round_trip(rng),
        1 => out_of_limits(rng),
        _ => mismatch(rng),
    });
}
