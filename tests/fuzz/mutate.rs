//! Mutators shared by the targets: raw bytes (truncate, flip, grow, duplicate), text, and
//! JSON trees (swap value types, drop or add keys, out-of-range numbers).

use fastrand::Rng;
use serde_json::{Map, Value, json};

/// Bytes that often sit on a boundary of a parser.
const INTERESTING: [u8; 10] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, b'/', b';', b'"', b'\\'];

/// Applies 1 to 4 random byte-level mutations.
pub fn bytes(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..=4) {
        byte_once(rng, data);
    }
}

fn byte_once(rng: &mut Rng, data: &mut Vec<u8>) {
    let len = data.len();
    match rng.u8(0..8) {
        0 => data.truncate(rng.usize(0..=len)),
        1 if len > 0 => {
            let at = rng.usize(0..len);
            data[at] ^= 1 << rng.u8(0..8);
        }
        2 if len > 0 => {
            let at = rng.usize(0..len);
            data[at] = if rng.bool() {
                INTERESTING[rng.usize(0..INTERESTING.len())]
            } else {
                rng.u8(..)
            };
        }
        3 => {
            let at = rng.usize(0..=len);
            let extra: Vec<u8> = (0..rng.usize(1..16)).map(|_| rng.u8(..)).collect();
            data.splice(at..at, extra);
        }
        4 if len > 0 => {
            // Duplicate a slice somewhere (grows repeated structures).
            let from = rng.usize(0..len);
            let to = rng.usize(from..=len.min(from + 64));
            let copy = data[from..to].to_vec();
            let at = rng.usize(0..=len);
            data.splice(at..at, copy);
        }
        5 if len > 0 => {
            let from = rng.usize(0..len);
            let to = rng.usize(from..=len);
            data.drain(from..to);
        }
        6 if len >= 4 => {
            // A 32-bit length-like field set to an extreme.
            let at = rng.usize(0..=len - 4);
            let value: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, len as u32 + 1][rng.usize(0..5)];
            if rng.bool() {
                data[at..at + 4].copy_from_slice(&value.to_le_bytes());
            } else {
                data[at..at + 4].copy_from_slice(&value.to_be_bytes());
            }
        }
        _ => data.push(rng.u8(..)),
    }
}

/// A text mutation; the result may hold replacement characters where UTF-8 broke.
pub fn text(rng: &mut Rng, text: &str) -> String {
    let mut data = text.as_bytes().to_vec();
    bytes(rng, &mut data);
    String::from_utf8_lossy(&data).into_owned()
}

/// A short string, sometimes empty, sometimes with non-ASCII or control characters.
pub fn any_string(rng: &mut Rng) -> String {
    const POOL: [&str; 14] = [
        "a",
        "Z",
        "0",
        "_",
        "-",
        ".",
        "/",
        "%{",
        "}",
        " ",
        "\u{e9}",
        "\u{1f600}",
        "\0",
        "\n",
    ];
    (0..rng.usize(0..12))
        .map(|_| POOL[rng.usize(0..POOL.len())])
        .collect()
}

/// A JSON value of a random type (what a type swap puts in place of the original).
pub fn any_value(rng: &mut Rng) -> Value {
    match rng.u8(0..9) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => {
            let edges = [0, -1, 1, 59, 60, i64::MAX, i64::MIN, 4_294_967_296_i64];
            json!(edges[rng.usize(0..edges.len())])
        }
        4 => json!(u64::MAX),
        5 => {
            let edges = [1.5, -0.0, 1e300, f64::MIN_POSITIVE];
            json!(edges[rng.usize(0..edges.len())])
        }
        6 => Value::String(any_string(rng)),
        7 => Value::Array(vec![Value::String(any_string(rng)), json!(1)]),
        _ => json!({ any_string(rng): any_string(rng) }),
    }
}

/// Applies 1 to 3 structural mutations to random nodes of the tree.
pub fn json(rng: &mut Rng, value: &mut Value) {
    for _ in 0..rng.usize(1..=3) {
        let count = count_nodes(value);
        let target = rng.usize(0..count);
        let mut seen = 0;
        json_at(rng, value, target, &mut seen);
    }
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Walks to the `target`-th node (pre-order) and mutates it. Returns true once done.
fn json_at(rng: &mut Rng, value: &mut Value, target: usize, seen: &mut usize) -> bool {
    if *seen == target {
        mutate_node(rng, value);
        return true;
    }
    *seen += 1;
    match value {
        Value::Array(items) => items
            .iter_mut()
            .any(|item| json_at(rng, item, target, seen)),
        Value::Object(map) => map
            .values_mut()
            .any(|item| json_at(rng, item, target, seen)),
        _ => false,
    }
}

fn mutate_node(rng: &mut Rng, value: &mut Value) {
    match value {
        Value::Object(map) if rng.u8(0..3) > 0 => mutate_object(rng, map),
        Value::Array(items) if rng.bool() && !items.is_empty() => {
            let at = rng.usize(0..items.len());
            if rng.bool() {
                let copy = items[at].clone();
                items.insert(at, copy);
            } else {
                items.remove(at);
            }
        }
        Value::String(text) if rng.bool() => *text = self::text(rng, text),
        Value::Number(_) if rng.bool() => *value = any_value(rng),
        _ => *value = any_value(rng),
    }
}

fn mutate_object(rng: &mut Rng, map: &mut Map<String, Value>) {
    let keys: Vec<String> = map.keys().cloned().collect();
    match rng.u8(0..3) {
        0 if !keys.is_empty() => {
            map.remove(&keys[rng.usize(0..keys.len())]);
        }
        1 if !keys.is_empty() => {
            // Same key with a value of another type.
            map.insert(keys[rng.usize(0..keys.len())].clone(), any_value(rng));
        }
        _ => {
            map.insert(any_string(rng), any_value(rng));
        }
    }
}
