//! Interface files (`Interface::from_json`): generated valid interfaces validate into the
//! model they describe; mutated ones validate or are refused with a typed reason; known
//! invalid ones are refused with the right reason.

use astarte_agent::interface::{
    Aggregation, Interface, InterfaceError, InterfaceType, MappingType, Ownership,
};
use fastrand::Rng;
use serde_json::{Map, Value, json};

use crate::{driver, mutate};

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(0..items.len())]
}

fn word(rng: &mut Rng, first: &str, rest: &str, max: usize) -> String {
    let first: Vec<char> = first.chars().collect();
    let rest: Vec<char> = rest.chars().collect();
    let mut out = String::from(first[rng.usize(0..first.len())]);
    out.extend((0..rng.usize(0..max)).map(|_| rest[rng.usize(0..rest.len())]));
    out
}

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALNUM: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const IDENT: &str = "abcdefghijklmnopqrstuvwxyz_ABCXYZ0123456789";

/// `org.exa-mple.Name`: first label alphabetic, middle labels may hold `-`, last capitalised.
fn name(rng: &mut Rng) -> String {
    let mut labels = vec![word(rng, LOWER, ALNUM, 8)];
    for _ in 0..rng.usize(0..4) {
        labels.push(word(rng, "abc0123456789", "abc-0123456789", 8));
    }
    labels.push(word(rng, UPPER, ALNUM, 12));
    labels.join(".")
}

/// A level: a literal `[A-Za-z_][A-Za-z0-9_]*` or a parameter `%{name}`.
fn level(rng: &mut Rng, parameter: bool) -> String {
    let ident = word(rng, "abcxyz_ABC", IDENT, 8);
    if parameter {
        format!("%{{{ident}}}")
    } else {
        ident
    }
}

fn any_level(rng: &mut Rng) -> String {
    let parameter = rng.bool();
    level(rng, parameter)
}

/// The delivery keys of a mapping, valid for its kind of interface.
fn delivery(rng: &mut Rng, datastream: bool, object: bool) -> Map<String, Value> {
    let mut keys = Map::new();
    if datastream {
        if rng.bool() {
            keys.insert(
                "reliability".into(),
                json!(pick(rng, &["unreliable", "guaranteed", "unique"])),
            );
        }
        if rng.bool() {
            keys.insert(
                "retention".into(),
                json!(pick(rng, &["discard", "volatile", "stored"])),
            );
        }
        if rng.bool() {
            keys.insert("expiry".into(), json!(rng.i64(0..=1_000_000)));
        }
        match rng.u8(0..3) {
            0 => {
                keys.insert("database_retention_policy".into(), json!("use_ttl"));
                keys.insert(
                    "database_retention_ttl".into(),
                    json!(rng.i64(60..=630_719_999)),
                );
            }
            1 => {
                keys.insert("database_retention_policy".into(), json!("no_ttl"));
            }
            _ => {}
        }
        if rng.bool() {
            keys.insert("explicit_timestamp".into(), json!(rng.bool()));
        }
    } else if rng.bool() {
        keys.insert("allow_unset".into(), json!(rng.bool()));
    }
    if object && rng.bool() {
        keys.insert("required".into(), json!(rng.bool()));
    }
    keys
}

fn mapping_type(rng: &mut Rng) -> MappingType {
    MappingType::ALL[rng.usize(0..MappingType::ALL.len())]
}

/// A valid interface and the types of its mappings, in order.
fn valid(rng: &mut Rng) -> (Value, Vec<MappingType>) {
    let major = rng.u32(0..5);
    let minor = if major == 0 {
        rng.u32(1..10)
    } else {
        rng.u32(0..10)
    };
    let datastream = rng.bool();
    let object = datastream && rng.bool();
    let count = rng.usize(1..=8);
    let shared = delivery(rng, datastream, object);
    let prefix: Vec<String> = (0..rng.usize(1..4)).map(|_| any_level(rng)).collect();
    let mut types = Vec::new();
    let mappings: Vec<Value> = (0..count)
        .map(|index| {
            let endpoint = if object {
                // Same prefix for all, a distinct literal key last.
                format!("/{}/k{index}", prefix.join("/"))
            } else {
                // A distinct first literal: no two endpoints overlap.
                let rest: String = (0..rng.usize(0..4))
                    .map(|_| format!("/{}", any_level(rng)))
                    .collect();
                format!("/m{index}{rest}")
            };
            let ty = mapping_type(rng);
            types.push(ty);
            let mut mapping = if object {
                shared.clone()
            } else {
                delivery(rng, datastream, false)
            };
            mapping.insert("endpoint".into(), json!(endpoint));
            mapping.insert("type".into(), json!(ty.name()));
            if rng.u8(0..4) == 0 {
                mapping.insert("description".into(), json!(mutate::any_string(rng)));
            }
            Value::Object(mapping)
        })
        .collect();
    let mut top = json!({
        "interface_name": name(rng),
        "version_major": major,
        "version_minor": minor,
        "type": if datastream { "datastream" } else { "properties" },
        "ownership": pick(rng, &["device", "server"]),
        "mappings": mappings,
    });
    if object || rng.bool() {
        top["aggregation"] = json!(if object { "object" } else { "individual" });
    }
    (top, types)
}

/// Exhaustive on purpose: a new variant must be looked at here.
fn assert_typed(error: &InterfaceError) {
    match error {
        InterfaceError::DocumentTooLarge { .. }
        | InterfaceError::Json(_)
        | InterfaceError::WrongType(_)
        | InterfaceError::MissingKey { .. }
        | InterfaceError::InvalidName { .. }
        | InterfaceError::NullVersion
        | InterfaceError::InvalidValue { .. }
        | InterfaceError::TooLong { .. }
        | InterfaceError::ObjectProperties
        | InterfaceError::MappingCount { .. }
        | InterfaceError::NotApplicable { .. }
        | InterfaceError::DatabaseRetention { .. }
        | InterfaceError::InvalidEndpoint { .. }
        | InterfaceError::DuplicateEndpoint { .. }
        | InterfaceError::AmbiguousEndpoints { .. }
        | InterfaceError::ObjectPrefix { .. }
        | InterfaceError::ObjectAttribute { .. }
        | InterfaceError::ObjectKeyParameter { .. } => driver::assert_message(error),
    }
}

/// What every accepted interface satisfies, whatever text it came from.
fn assert_invariants(iface: &Interface) {
    assert!((1..=1024).contains(&iface.mappings.len()));
    assert!(iface.version_major > 0 || iface.version_minor > 0);
    assert!(!(iface.is_properties() && iface.is_object()));
    let normalized: Vec<String> = iface
        .mappings
        .iter()
        .map(|m| m.endpoint.normalized())
        .collect();
    for (i, a) in normalized.iter().enumerate() {
        assert!(
            !normalized[i + 1..].contains(a),
            "duplicate endpoint {a} accepted"
        );
    }
    if iface.is_object() {
        assert!(iface.mappings.iter().all(|m| m.object_key().is_some()));
    }
}

fn check_valid(rng: &mut Rng) {
    let (top, types) = valid(rng);
    let iface = Interface::from_json(&top.to_string())
        .unwrap_or_else(|err| panic!("a valid interface was refused: {err}\n{top:#}"));
    assert_eq!(
        iface.name,
        top["interface_name"].as_str().unwrap_or_default()
    );
    assert_eq!(
        iface.version_major as u64,
        top["version_major"].as_u64().unwrap_or(0)
    );
    assert_eq!(
        iface.version_minor as u64,
        top["version_minor"].as_u64().unwrap_or(0)
    );
    let datastream = top["type"] == "datastream";
    assert_eq!(
        iface.interface_type == InterfaceType::Datastream,
        datastream
    );
    assert_eq!(
        iface.ownership == Ownership::Server,
        top["ownership"] == "server"
    );
    assert_eq!(
        iface.aggregation == Aggregation::Object,
        top["aggregation"] == "object"
    );
    let got: Vec<MappingType> = iface.mappings.iter().map(|m| m.mapping_type).collect();
    assert_eq!(got, types);
    assert_invariants(&iface);
}

fn check_mutated(rng: &mut Rng) {
    let (mut top, _) = valid(rng);
    let text = if rng.u8(0..4) == 0 {
        mutate::text(rng, &top.to_string())
    } else {
        mutate::json(rng, &mut top);
        top.to_string()
    };
    match Interface::from_json(&text) {
        Ok(iface) => assert_invariants(&iface),
        Err(error) => assert_typed(&error),
    }
}

/// A valid interface broken in one known way, and the refusal it must get.
fn check_invalid(rng: &mut Rng) {
    let (mut top, _) = valid(rng);
    let object = top["aggregation"] == "object";
    let expected = match rng.u8(0..6) {
        0 => {
            // The first endpoint again, in another case: equal once normalized.
            let mut copy = top["mappings"][0].clone();
            let endpoint = copy["endpoint"].as_str().unwrap_or_default().to_uppercase();
            copy["endpoint"] = json!(endpoint);
            push_mapping(&mut top, copy);
            "DuplicateEndpoint"
        }
        1 => {
            top["interface_name"] = json!(format!("{}.9bad", name(rng)));
            "InvalidName"
        }
        2 => {
            top["version_major"] = json!(0);
            top["version_minor"] = json!(0);
            "NullVersion"
        }
        3 => {
            top["type"] = json!("properties");
            top["aggregation"] = json!("object");
            "ObjectProperties"
        }
        4 if object => {
            // Mixed depths: a mapping one level deeper, under a key of its own.
            let mut deeper = top["mappings"][0].clone();
            let endpoint = deeper["endpoint"].as_str().unwrap_or_default().to_owned();
            let parent = endpoint
                .rsplit_once('/')
                .map_or("", |(parent, _)| parent)
                .to_owned();
            deeper["endpoint"] = json!(format!("{parent}/kx/deeper"));
            push_mapping(&mut top, deeper);
            "ObjectPrefix"
        }
        5 if object => {
            let last = top["mappings"].as_array().map_or(0, Vec::len) - 1;
            let endpoint = top["mappings"][last]["endpoint"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let parent = endpoint
                .rsplit_once('/')
                .map_or("", |(parent, _)| parent)
                .to_owned();
            top["mappings"][last]["endpoint"] = json!(format!("{parent}/%{{key}}"));
            // Alone: next to a literal key it would be ambiguous first.
            top["mappings"] = json!([top["mappings"][last].clone()]);
            "ObjectKeyParameter"
        }
        _ => {
            top["mappings"] = json!([]);
            "MappingCount"
        }
    };
    let result = Interface::from_json(&top.to_string());
    let got = match &result {
        Ok(_) => "Ok",
        Err(InterfaceError::DuplicateEndpoint { .. }) => "DuplicateEndpoint",
        Err(InterfaceError::InvalidName { .. }) => "InvalidName",
        Err(InterfaceError::NullVersion) => "NullVersion",
        Err(InterfaceError::ObjectProperties) => "ObjectProperties",
        Err(InterfaceError::ObjectPrefix { .. }) => "ObjectPrefix",
        Err(InterfaceError::ObjectKeyParameter { .. }) => "ObjectKeyParameter",
        Err(InterfaceError::MappingCount { .. }) => "MappingCount",
        Err(other) => panic!("expected {expected}, got {other}\n{top:#}"),
    };
    assert_eq!(got, expected, "{top:#}");
}

fn push_mapping(top: &mut Value, mapping: Value) {
    if let Some(mappings) = top["mappings"].as_array_mut() {
        mappings.push(mapping);
    }
}

#[test]
fn interface_json() {
    driver::run("interface_json", 3000, |rng| match rng.u8(0..4) {
        0 => check_valid(rng),
        1 => check_invalid(rng),
        _ => check_mutated(rng),
    });
}
