//! Generators of Astarte values shared by the payload and D-Bus targets.

use astarte_agent::data::AstarteValue;
use astarte_agent::interface::MappingType;
use fastrand::Rng;

pub fn mapping_type(rng: &mut Rng) -> MappingType {
    MappingType::ALL[rng.usize(0..MappingType::ALL.len())]
}

/// A finite double, often an edge one.
fn double(rng: &mut Rng) -> f64 {
    match rng.u8(0..6) {
        0 => [0.0, -0.0, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 1e-300][rng.usize(0..6)],
        1 => rng.i64(..) as f64,
        _ => (rng.f64() - 0.5) * 10f64.powi(rng.i32(-20..20)),
    }
}

fn int(rng: &mut Rng) -> i32 {
    match rng.u8(0..3) {
        0 => [0, 1, -1, i32::MAX, i32::MIN + 1][rng.usize(0..5)],
        _ => rng.i32(i32::MIN + 1..=i32::MAX),
    }
}

fn long(rng: &mut Rng) -> i64 {
    match rng.u8(0..3) {
        0 => [0, -1, i64::MAX, i64::MIN + 1, i64::from(i32::MAX) + 1][rng.usize(0..5)],
        _ => rng.i64(i64::MIN + 1..=i64::MAX),
    }
}

/// Milliseconds Astarte and BSON represent (any i64 is a BSON datetime).
fn datetime(rng: &mut Rng) -> i64 {
    match rng.u8(0..3) {
        0 => [0, -1, i64::MAX, i64::MIN][rng.usize(0..4)],
        _ => rng.i64(0..4_102_444_800_000),
    }
}

pub fn string(rng: &mut Rng) -> String {
    const POOL: [&str; 8] = ["a", "Z", " ", "\u{e9}", "\u{1f600}", "\0", ";", "\u{7ff}"];
    let len = if rng.u8(0..50) == 0 {
        rng.usize(1000..4000)
    } else {
        rng.usize(0..24)
    };
    (0..len).map(|_| POOL[rng.usize(0..POOL.len())]).collect()
}

fn blob(rng: &mut Rng, min: usize) -> Vec<u8> {
    let len = rng.usize(min..min + 40);
    (0..len).map(|_| rng.u8(..)).collect()
}

fn items<T>(rng: &mut Rng, mut item: impl FnMut(&mut Rng) -> T) -> Vec<T> {
    let len = if rng.u8(0..40) == 0 {
        1024
    } else {
        rng.usize(0..12)
    };
    (0..len).map(|_| item(rng)).collect()
}

/// A value of `ty` that Astarte accepts and the agent may send (no empty scalar blob).
pub fn valid(rng: &mut Rng, ty: MappingType) -> AstarteValue {
    match ty {
        MappingType::Double => AstarteValue::Double(double(rng)),
        MappingType::Integer => AstarteValue::Integer(int(rng)),
        MappingType::Boolean => AstarteValue::Boolean(rng.bool()),
        MappingType::LongInteger => AstarteValue::LongInteger(long(rng)),
        MappingType::String => AstarteValue::String(string(rng)),
        MappingType::BinaryBlob => AstarteValue::BinaryBlob(blob(rng, 1)),
        MappingType::DateTime => AstarteValue::DateTime(datetime(rng)),
        MappingType::DoubleArray => AstarteValue::DoubleArray(items(rng, double)),
        MappingType::IntegerArray => AstarteValue::IntegerArray(items(rng, int)),
        MappingType::BooleanArray => AstarteValue::BooleanArray(items(rng, |rng| rng.bool())),
        MappingType::LongIntegerArray => AstarteValue::LongIntegerArray(items(rng, long)),
        MappingType::StringArray => AstarteValue::StringArray(items(rng, string)),
        MappingType::BinaryBlobArray => {
            AstarteValue::BinaryBlobArray(items(rng, |rng| blob(rng, 0)))
        }
        MappingType::DateTimeArray => AstarteValue::DateTimeArray(items(rng, datetime)),
    }
}

/// A value of `ty` that breaks one of Astarte's limits, when `ty` has one a value can break.
pub fn invalid(rng: &mut Rng, ty: MappingType) -> Option<AstarteValue> {
    let bad_double = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.usize(0..3)];
    let value = match ty {
        MappingType::Double => AstarteValue::Double(bad_double),
        MappingType::Integer => AstarteValue::Integer(i32::MIN),
        MappingType::LongInteger => AstarteValue::LongInteger(i64::MIN),
        MappingType::String => AstarteValue::String("a".repeat(65_537)),
        MappingType::BinaryBlob => AstarteValue::BinaryBlob(vec![0; 65_537]),
        MappingType::DoubleArray => AstarteValue::DoubleArray(vec![1.0, bad_double]),
        MappingType::IntegerArray => AstarteValue::IntegerArray(vec![0; 1025]),
        MappingType::LongIntegerArray => AstarteValue::LongIntegerArray(vec![i64::MIN]),
        MappingType::StringArray => AstarteValue::StringArray(vec!["a".repeat(65_537)]),
        MappingType::BooleanArray => AstarteValue::BooleanArray(vec![true; 1025]),
        _ => return None,
    };
    Some(value)
}
