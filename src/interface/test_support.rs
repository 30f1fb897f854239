//! Builders for interface JSON used by the validation tests: a valid base interface and
//! patches on top of it, so each case shows only what it changes.

use serde_json::{Value, json};

/// A valid device datastream with one `/%{id}/value` double mapping.
pub fn base() -> Value {
    json!({
        "interface_name": "org.example.Test",
        "version_major": 0,
        "version_minor": 1,
        "type": "datastream",
        "ownership": "device",
        "mappings": [{"endpoint": "/%{id}/value", "type": "double"}]
    })
}

/// Sets each key of `patch` on `target`; a `null` value removes the key.
pub fn merge(target: &mut Value, patch: Value) {
    let (Value::Object(target), Value::Object(patch)) = (target, patch) else {
        panic!("merge needs two objects");
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(&key);
        } else {
            target.insert(key, value);
        }
    }
}

/// The base interface with top-level keys patched.
pub fn interface(top: Value) -> String {
    let mut doc = base();
    merge(&mut doc, top);
    doc.to_string()
}

/// The base interface with top-level keys patched and its single mapping patched.
pub fn with_mapping(top: Value, mapping: Value) -> String {
    let mut doc = base();
    merge(&mut doc, top);
    merge(&mut doc["mappings"][0], mapping);
    doc.to_string()
}

/// The base interface with top-level keys patched and these mappings.
pub fn with_mappings(top: Value, mappings: Value) -> String {
    let mut doc = base();
    merge(&mut doc, top);
    doc["mappings"] = mappings;
    doc.to_string()
}

/// Top-level patch turning the base into a properties interface.
pub fn properties() -> Value {
    json!({"type": "properties"})
}

/// Top-level patch turning the base into an object-aggregated datastream.
pub fn object() -> Value {
    json!({"aggregation": "object"})
}
