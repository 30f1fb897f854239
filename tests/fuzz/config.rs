//! The TOML configuration (`Config::parse`), `[commands]` tables with `args_pattern` regexes
//! included, and remote command requests (`CommandRequest::from_object`): valid generated
//! input is accepted as written; mutated input is accepted or refused with a typed error.

use astarte_agent::commands::{CommandRequest, RequestError};
use astarte_agent::config::{Config, ConfigError};
use astarte_agent::data::AstarteValue;
use fastrand::Rng;
use serde_json::{Value, json};

use crate::{driver, mutate};

fn assert_typed(error: &ConfigError) {
    match error {
        ConfigError::Read { .. }
        | ConfigError::Syntax { .. }
        | ConfigError::UnknownKey { .. }
        | ConfigError::Missing { .. }
        | ConfigError::WrongType { .. }
        | ConfigError::Realm(_)
        | ConfigError::DeviceId(_)
        | ConfigError::Namespace
        | ConfigError::PairingUrl(_)
        | ConfigError::MachineId { .. }
        | ConfigError::EmptyMachineId { .. }
        | ConfigError::MaxQueueBytes(_)
        | ConfigError::TpmNotBuilt
        | ConfigError::Tcti(_)
        | ConfigError::Commands { .. } => driver::assert_message(error),
    }
}

/// A regex from a small grammar: always valid.
fn pattern(rng: &mut Rng, depth: u8) -> String {
    let atom = match rng.u8(0..if depth > 2 { 5 } else { 7 }) {
        0 => "[a-z0-9_.-]".to_owned(),
        1 => r"\d".to_owned(),
        2 => "x".to_owned(),
        3 => r"\.".to_owned(),
        4 => "[^/]".to_owned(),
        5 => format!("({}|{})", pattern(rng, depth + 1), pattern(rng, depth + 1)),
        _ => format!("(?:{})", pattern(rng, depth + 1)),
    };
    let repeat = ["", "*", "+", "?", "{1,8}", "{3}"][rng.usize(0..6)];
    let mut out = format!("{atom}{repeat}");
    if rng.bool() && depth < 3 {
        out.push_str(&pattern(rng, depth + 1));
    }
    out
}

/// A pattern that may be broken, huge or pathological.
fn wild_pattern(rng: &mut Rng) -> String {
    match rng.u8(0..4) {
        0 => {
            let valid = pattern(rng, 0);
            mutate::text(rng, &valid)
        }
        1 => [
            "(",
            "[",
            "a{99999}",
            "a{1000}{1000}",
            r"\",
            "a)|(b",
            "(?P<",
            "[z-a]",
            "(?i)Ω+",
        ][rng.usize(0..9)]
        .to_owned(),
        _ => pattern(rng, 0),
    }
}

fn command_name(rng: &mut Rng) -> String {
    let chars: Vec<char> = "abcXYZ019_.-".chars().collect();
    (0..rng.usize(1..20))
        .map(|_| chars[rng.usize(0..chars.len())])
        .collect()
}

/// A valid configuration as a JSON tree (TOML-shaped), and the command names it defines.
fn valid(rng: &mut Rng) -> (Value, Vec<String>) {
    let mut config = json!({
        "realm": format!("r{}", rng.u32(..)),
        "pairing_url": (["https://api.example.com/pairing", "http://127.0.0.1:4003", "https://[::1]/p/"][rng.usize(0..3)]),
    });
    if rng.bool() {
        config["device_id"] = json!("2TBn-jNESuuHamE2Zo1anA");
    }
    if rng.bool() {
        config["store"] = json!({"max_queue_bytes": rng.u64(65_536..1 << 40)});
    }
    if rng.bool() {
        config["dbus"] = json!({"bus": (["system", "session"][rng.usize(0..2)])});
    }
    if rng.bool() {
        config["credentials"] = json!({"backend": (["file", "tpm"][rng.usize(0..2)]), "tcti": "swtpm:host=127.0.0.1,port=2321"});
    }
    if rng.bool() {
        config["recovery"] = json!({"unregister_if_registered": rng.bool()});
    }
    let mut names = Vec::new();
    if rng.bool() {
        let mut commands = json!({"enabled": rng.bool(), "max_parallel": rng.u32(1..9), "handler_wait_seconds": rng.u32(0..=3600)});
        for _ in 0..rng.usize(0..4) {
            let name = command_name(rng);
            let mut spec = json!({"exec": ["/usr/bin/systemctl", "restart", "app"]});
            if rng.bool() {
                spec["args_pattern"] = json!(pattern(rng, 0));
            }
            if rng.bool() {
                spec["timeout_seconds"] = json!(rng.u32(1..1000));
            }
            if rng.bool() {
                spec["max_output_bytes"] = json!(rng.u64(0..=16_384));
            }
            commands[&name] = spec;
            names.push(name);
        }
        config["commands"] = commands;
    }
    names.sort();
    names.dedup();
    (config, names)
}

fn to_toml(value: &Value) -> Option<String> {
    let value: toml::Value = toml::Value::try_from(value).ok()?;
    toml::to_string(&value).ok()
}

fn check_valid(rng: &mut Rng) {
    let (tree, names) = valid(rng);
    let Some(text) = to_toml(&tree) else {
        panic!("a generated configuration has no TOML form: {tree:#}");
    };
    let tpm = tree["credentials"]["backend"] == "tpm";
    match Config::parse(&text) {
        Ok(config) => {
            assert_eq!(config.realm, tree["realm"].as_str().unwrap_or_default());
            let got: Vec<&String> = config.commands.commands.keys().collect();
            assert_eq!(got, names.iter().collect::<Vec<_>>());
        }
        Err(ConfigError::TpmNotBuilt) if tpm && !cfg!(feature = "tpm") => {}
        Err(error) => panic!("a valid configuration was refused: {error}\n{text}"),
    }
}

fn check_mutated(rng: &mut Rng) {
    let (mut tree, _) = valid(rng);
    if let Some(commands) = tree.get_mut("commands").and_then(Value::as_object_mut) {
        let name = command_name(rng);
        commands.insert(
            name,
            json!({"exec": ["/bin/true"], "args_pattern": wild_pattern(rng)}),
        );
    }
    let text = if rng.u8(0..3) == 0 {
        mutate::text(rng, &to_toml(&tree).unwrap_or_default())
    } else {
        mutate::json(rng, &mut tree);
        // Nulls have no TOML form: such a mutation is a missing key.
        strip_nulls(&mut tree);
        to_toml(&tree).unwrap_or_default()
    };
    match Config::parse(&text) {
        Ok(config) => {
            for spec in config.commands.commands.values() {
                assert!(spec.exec.first().is_some_and(|p| p.starts_with('/')));
                // An accepted pattern must be usable on any argument.
                let _ = spec.refuse_args(&[mutate::any_string(rng)]);
            }
        }
        Err(error) => assert_typed(&error),
    }
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => {
            items.retain(|v| !v.is_null());
            items.iter_mut().for_each(strip_nulls);
        }
        _ => {}
    }
}

fn check_request(rng: &mut Rng) {
    let id = if rng.u8(0..5) == 0 {
        "i".repeat(rng.usize(0..300))
    } else {
        format!("{}", rng.u64(..))
    };
    let mut values = vec![
        ("id".to_owned(), AstarteValue::String(id.clone())),
        (
            "command".to_owned(),
            AstarteValue::String(command_name(rng)),
        ),
        (
            "args".to_owned(),
            AstarteValue::StringArray(vec![mutate::any_string(rng)]),
        ),
        (
            "timeoutSeconds".to_owned(),
            AstarteValue::Integer(rng.i32(..)),
        ),
    ];
    for _ in 0..rng.usize(0..3) {
        let at = rng.usize(0..values.len());
        match rng.u8(0..3) {
            0 => {
                values.remove(at);
            }
            1 => {
                let ty = crate::values::mapping_type(rng);
                values[at].1 = crate::values::valid(rng, ty);
            }
            _ => values.push((mutate::any_string(rng), AstarteValue::Boolean(true))),
        }
    }
    match CommandRequest::from_object(&values) {
        Ok(request) => {
            assert!(!request.id.is_empty());
            assert_eq!(request.check(), Ok(()));
        }
        Err(error @ (RequestError::MissingId | RequestError::IdTooLong(_))) => {
            driver::assert_message(&error)
        }
    }
}

#[test]
fn config_toml() {
    driver::run("config_toml", 2000, |rng| match rng.u8(0..3) {
        0 => check_valid(rng),
        _ => check_mutated(rng),
    });
}

#[test]
fn command_requests() {
    driver::run("command_requests", 3000, check_request);
}
