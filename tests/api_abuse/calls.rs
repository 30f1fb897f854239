//! Random calls to every method of the agent's D-Bus API, each with the outcomes it may have.

use std::collections::HashMap;

use astarte_agent::dbus::{BUS_NAME, INTERFACE_NAME, OBJECT_PATH};
use zbus::zvariant::Value;

use crate::common::{
    DEVICE_DATASTREAM, DEVICE_OBJECT, DEVICE_PROPERTIES, SERVER_DATASTREAM, SERVER_PROPERTIES,
};

pub const COMMANDS_INTERFACE: &str = "org.astarte_platform.Agent1.Commands";
const ERROR: &str = "org.astarte_platform.Agent1.Error.";
/// What the agent answers today when the body does not have the method's signature: zbus's
/// generic error, not one of ours (a known gap, see docs/dbus-api.md, "Local API limits").
pub const BAD_SIGNATURE: &str = "org.freedesktop.zbus.Error";

/// A small deterministic generator (xorshift64*), seeded per run and printed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Random text: ASCII, punctuation that matters in paths and names, and multi-byte UTF-8.
    pub fn text(&mut self, len: usize) -> String {
        const PIECES: [&str; 12] = ["a", "Z", "0", "/", "%", "{", ".", "-", " ", "é", "∑", "🦀"];
        (0..len)
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }
}

/// One D-Bus call with its arguments, owned so it can wait in a stream.
#[derive(Debug)]
pub enum Call {
    Send(String, String, Value<'static>),
    SendAt(String, String, Value<'static>, i64),
    SendObject(String, String, HashMap<String, Value<'static>>),
    SetProperty(String, String, Value<'static>),
    UnsetProperty(String, String),
    GetProperty(String, String),
    ListProperties(String),
    AddInterface(String),
    RemoveInterface(String),
    Register(String),
    /// `Send` with an `i` where a `v` belongs: the wrong D-Bus signature.
    SendBadSignature(String, String, i32),
    RegisterHandler(String),
    Complete(String, i32, String, String),
    ListCommands,
}

/// The outcomes a call may have: "ok" or a D-Bus error name.
pub type Expect = Vec<String>;

fn ok() -> Expect {
    vec!["ok".into()]
}

fn error(kind: &str) -> Expect {
    vec![format!("{ERROR}{kind}")]
}

fn either(kinds: &[&str]) -> Expect {
    kinds
        .iter()
        .map(|kind| match *kind {
            "ok" => "ok".to_owned(),
            kind => format!("{ERROR}{kind}"),
        })
        .collect()
}

/// A valid interface document `AddInterface` may add again and again (`Unchanged`).
pub fn abuse_interface() -> String {
    r#"{"interface_name": "org.astarte-platform.test.Abuse", "version_major": 0,
        "version_minor": 1, "type": "datastream", "ownership": "device",
        "mappings": [{"endpoint": "/value", "type": "integer"}]}"#
        .to_owned()
}

/// A random call, valid or not, and what it may answer.
pub fn random_call(rng: &mut Rng) -> (Call, Expect) {
    let sensor = format!("s{}", rng.below(50));
    let junk_len = 1 + rng.below(40) as usize;
    let junk = rng.text(junk_len);
    match rng.below(30) {
        0 => (
            Call::Send(
                DEVICE_DATASTREAM.into(),
                format!("/sensors/{sensor}/integer"),
                Value::I32(rng.next() as i32 | 1),
            ),
            ok(),
        ),
        1 => (
            Call::Send(
                DEVICE_DATASTREAM.into(),
                "/plain/value".into(),
                Value::F64(1.5),
            ),
            ok(),
        ),
        2 => (
            Call::Send(junk, "/plain/value".into(), Value::F64(1.5)),
            error("UnknownInterface"),
        ),
        3 => (
            Call::Send(
                DEVICE_DATASTREAM.into(),
                format!("/nope/{junk}"),
                Value::I32(1),
            ),
            error("UnknownPath"),
        ),
        4 => (
            Call::Send(
                DEVICE_DATASTREAM.into(),
                "/plain/value".into(),
                Value::from(junk),
            ),
            error("WrongType"),
        ),
        5 => (
            Call::Send(
                DEVICE_DATASTREAM.into(),
                "/plain/value".into(),
                Value::F64(f64::NAN),
            ),
            error("OutOfRange"),
        ),
        6 => {
            // Around Astarte's limits: a string of at most 65,536 bytes is a valid value,
            // but with its topic it may not fit the broker's 65,535-byte message.
            let len = [65_000, 65_536, 65_537, 1 << 20][rng.below(4) as usize];
            let expect = match len {
                65_000 => either(&["ok"]),
                65_536 => either(&["TooLarge"]),
                _ => either(&["OutOfRange"]),
            };
            let text = "x".repeat(len);
            (
                Call::Send(
                    DEVICE_DATASTREAM.into(),
                    "/plain/text".into(),
                    Value::from(text),
                ),
                expect,
            )
        }
        7 => (
            Call::Send(SERVER_DATASTREAM.into(), "/a/level".into(), Value::I32(1)),
            error("WrongOwnership"),
        ),
        8 => (
            Call::Send(DEVICE_OBJECT.into(), "/room".into(), Value::F64(1.0)),
            error("WrongAggregation"),
        ),
        9 => (
            Call::Send(DEVICE_PROPERTIES.into(), "/counter".into(), Value::I32(1)),
            error("WrongInterfaceType"),
        ),
        10 => (
            Call::SendAt(
                DEVICE_DATASTREAM.into(),
                format!("/sensors/{sensor}/double"),
                Value::F64(2.5),
                1_700_000_000_000,
            ),
            ok(),
        ),
        11 => (
            Call::SendAt(
                DEVICE_DATASTREAM.into(),
                "/plain/value".into(),
                Value::F64(2.5),
                1,
            ),
            error("UnexpectedTimestamp"),
        ),
        12 => {
            let mut values = HashMap::new();
            values.insert("temperature".to_owned(), Value::F64(21.0));
            values.insert("humidity".to_owned(), Value::F64(50.0));
            values.insert("label".to_owned(), Value::from(sensor.clone()));
            (
                Call::SendObject(DEVICE_OBJECT.into(), format!("/{sensor}"), values),
                ok(),
            )
        }
        13 => {
            let mut values = HashMap::new();
            values.insert(junk, Value::F64(21.0));
            (
                Call::SendObject(DEVICE_OBJECT.into(), "/room".into(), values),
                error("UnknownPath"),
            )
        }
        14 => {
            let mut values = HashMap::new();
            values.insert("temperature".to_owned(), Value::Bool(true));
            values.insert("humidity".to_owned(), Value::F64(50.0));
            values.insert("label".to_owned(), Value::from("x"));
            (
                Call::SendObject(DEVICE_OBJECT.into(), "/room".into(), values),
                error("WrongType"),
            )
        }
        15 => (
            Call::SetProperty(DEVICE_PROPERTIES.into(), "/name".into(), Value::from(junk)),
            ok(),
        ),
        16 => (
            Call::SetProperty(DEVICE_PROPERTIES.into(), "/counter".into(), Value::F64(1.0)),
            error("WrongType"),
        ),
        17 => (
            Call::UnsetProperty(DEVICE_PROPERTIES.into(), "/enabled".into()),
            either(&["ok", "NotSet"]),
        ),
        18 => (
            Call::UnsetProperty(DEVICE_PROPERTIES.into(), "/counter".into()),
            error("UnsetNotAllowed"),
        ),
        19 => (
            Call::GetProperty(DEVICE_PROPERTIES.into(), "/name".into()),
            either(&["ok", "NotSet"]),
        ),
        20 => (
            Call::GetProperty(SERVER_PROPERTIES.into(), junk),
            error("UnknownPath"),
        ),
        21 => (Call::ListProperties(DEVICE_PROPERTIES.into()), ok()),
        22 => (
            Call::ListProperties(DEVICE_DATASTREAM.into()),
            error("WrongInterfaceType"),
        ),
        23 => (Call::AddInterface(abuse_interface()), ok()),
        24 => {
            let document = if rng.below(4) == 0 {
                format!("{{\"doc\": \"{}\"}}", "x".repeat(2 << 20))
            } else {
                junk
            };
            (Call::AddInterface(document), error("InvalidInterface"))
        }
        25 => (
            Call::RemoveInterface(DEVICE_PROPERTIES.into()),
            error("InterfaceNotRemovable"),
        ),
        26 => {
            let expect = if jwt_shaped(&junk) {
                ok()
            } else {
                error("InvalidToken")
            };
            (Call::Register(junk), expect)
        }
        27 => (
            Call::SendBadSignature(DEVICE_DATASTREAM.into(), "/plain/value".into(), 3),
            vec![BAD_SIGNATURE.to_owned()],
        ),
        28 => {
            // A small pool of names: one app stays far below the per-app limit.
            let name = format!("job-{}", rng.below(8));
            if rng.below(2) == 0 {
                (Call::RegisterHandler(name), ok())
            } else {
                (
                    Call::RegisterHandler(junk + " "),
                    error("InvalidCommandName"),
                )
            }
        }
        _ => {
            if rng.below(2) == 0 {
                (Call::ListCommands, ok())
            } else {
                (
                    Call::Complete(junk, 0, "out".into(), "x".repeat(100_000)),
                    error("CommandNotRunning"),
                )
            }
        }
    }
}

/// The documented rule for `Register` (docs/dbus-api.md, errors: `InvalidToken`), written out again
/// independently of the agent: after trimming, three dot-separated parts, each non-empty
/// base64url text.
fn jwt_shaped(token: &str) -> bool {
    let parts: Vec<&str> = token.trim().split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Performs `call` on `connection`: "ok", or the D-Bus error name.
pub async fn perform(connection: &zbus::Connection, call: Call) -> String {
    macro_rules! invoke {
        ($interface:expr, $method:expr, $body:expr) => {
            connection
                .call_method(
                    Some(BUS_NAME),
                    OBJECT_PATH,
                    Some($interface),
                    $method,
                    $body,
                )
                .await
                .map(|_| ())
        };
    }
    let result = match call {
        Call::Send(i, p, v) => invoke!(INTERFACE_NAME, "Send", &(i, p, v)),
        Call::SendAt(i, p, v, t) => invoke!(INTERFACE_NAME, "SendAt", &(i, p, v, t)),
        Call::SendObject(i, p, values) => invoke!(INTERFACE_NAME, "SendObject", &(i, p, values)),
        Call::SetProperty(i, p, v) => invoke!(INTERFACE_NAME, "SetProperty", &(i, p, v)),
        Call::UnsetProperty(i, p) => invoke!(INTERFACE_NAME, "UnsetProperty", &(i, p)),
        Call::GetProperty(i, p) => invoke!(INTERFACE_NAME, "GetProperty", &(i, p)),
        Call::ListProperties(i) => invoke!(INTERFACE_NAME, "ListProperties", &(i,)),
        Call::AddInterface(json) => invoke!(INTERFACE_NAME, "AddInterface", &(json,)),
        Call::RemoveInterface(name) => invoke!(INTERFACE_NAME, "RemoveInterface", &(name,)),
        Call::Register(token) => invoke!(INTERFACE_NAME, "Register", &(token,)),
        Call::SendBadSignature(i, p, v) => invoke!(INTERFACE_NAME, "Send", &(i, p, v)),
        Call::RegisterHandler(name) => invoke!(COMMANDS_INTERFACE, "RegisterHandler", &(name,)),
        Call::Complete(id, code, out, err) => {
            invoke!(COMMANDS_INTERFACE, "Complete", &(id, code, out, err))
        }
        Call::ListCommands => invoke!(COMMANDS_INTERFACE, "ListCommands", &()),
    };
    match result {
        Ok(()) => "ok".to_owned(),
        Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
        Err(other) => format!("not a D-Bus error reply: {other}"),
    }
}
