//! Abuse of the local D-Bus API: floods of random calls, callers that leave before the reply,
//! 64 MiB messages, floods of huge interface documents. After each, a second, well-behaved
//! client is still answered, the agent still runs, and its memory stays within the bounds the
//! documented limits imply (docs/dbus-api.md, "Local API limits").

mod common;

#[path = "api_abuse/calls.rs"]
mod calls;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use astarte_agent::commands::MAX_HANDLERS_PER_APP;
use astarte_agent::dbus::{BUS_NAME, INTERFACE_NAME, OBJECT_PATH};
use astarte_agent::interface::runtime::MAX_RUNTIME_INTERFACES;
use astarte_agent::interface::validate::MAX_DOCUMENT_BYTES;
use calls::{COMMANDS_INTERFACE, Call, Rng, perform, random_call};
use common::*;
use futures_util::StreamExt;
use zbus::zvariant::Value;

const MIB: u64 = 1024 * 1024;
/// Peak resident memory allowed after any abuse: a 64 MiB message is held once while it is
/// read and once more at most while it is converted, over a debug build's footprint.
const PEAK_BOUND: u64 = 200 * MIB;
/// Resident memory once the abuse is over: nothing of the refused data may stay.
const SETTLED_BOUND: u64 = 64 * MIB;
/// The well-behaved client's liveness deadline; its latency is printed, never asserted.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

const ERROR: &str = "org.astarte_platform.Agent1.Error.";

fn commands_on() -> &'static str {
    "[commands]\nenabled = true\nhandler_wait_seconds = 0\n"
}

/// `VmRSS` and `VmHWM` of a process, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent alive");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The checks every abuse ends with: the agent process runs, a second client is answered
/// within a generous deadline, the peak memory stayed bounded and the resident memory comes
/// back below its bound.
async fn assert_still_serving(env: &TestEnv, agent: &Agent, what: &str) {
    let pid = agent.pid();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("agent process");
    let state = state
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    assert!(
        !matches!(state, Some("Z" | "X")),
        "the agent died after {what}:\n{}",
        agent.log()
    );

    let proxy = env.proxy().await;
    let started = Instant::now();
    let answered = tokio::time::timeout(ANSWER_DEADLINE, async {
        proxy
            .send(DEVICE_DATASTREAM, "/plain/value", &Value::F64(0.25))
            .await?;
        proxy
            .set_property(DEVICE_PROPERTIES, "/counter", &Value::I32(7))
            .await?;
        proxy.get_property(DEVICE_PROPERTIES, "/counter").await
    })
    .await;
    let latency = started.elapsed();
    let value = match answered {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("after {what} the second client got {error}"),
        Err(_) => panic!(
            "after {what} the second client got no answer within {ANSWER_DEADLINE:?}:\n{}",
            agent.log()
        ),
    };
    assert_eq!(i32::try_from(value).unwrap(), 7);

    let (rss, hwm) = memory(pid);
    let settle = async {
        while memory(pid).0 >= SETTLED_BOUND {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let settled = tokio::time::timeout(TIMEOUT, settle).await.is_ok();
    let (settled_rss, _) = memory(pid);
    println!(
        "after {what}: second client answered 3 calls in {latency:?}; VmRSS {:.1} MiB, VmHWM {:.1} MiB, VmRSS settled at {:.1} MiB",
        rss as f64 / MIB as f64,
        hwm as f64 / MIB as f64,
        settled_rss as f64 / MIB as f64,
    );
    assert!(hwm < PEAK_BOUND, "peak memory {hwm} B after {what}");
    assert!(
        settled,
        "resident memory stayed at {settled_rss} B after {what}"
    );
}

/// The draw of the random calls: `ABUSE_SEED`, else a fixed default, so every run of the suite
/// makes the same calls; a failure prints the seed that replays it.
fn seed() -> u64 {
    match std::env::var("ABUSE_SEED") {
        Ok(value) => value.parse().expect("ABUSE_SEED is an unsigned integer"),
        Err(_) => 0x00ab_05e5,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_calls_each_get_their_typed_answer() {
    let env = TestEnv::new().await;
    env.write_config(commands_on());
    let (agent, _proxy) = env.start_connected_agent().await;
    let seed = seed();
    println!("random calls: ABUSE_SEED={seed} replays this draw");
    let mut rng = Rng::new(seed);
    let calls: Vec<_> = (0..10_000).map(|_| random_call(&mut rng)).collect();
    let connection = env.bus.connection().await;
    let started = Instant::now();
    let outcomes: Vec<(String, String, calls::Expect)> = futures_util::stream::iter(calls)
        .map(|(call, expect)| {
            let connection = connection.clone();
            let label: String = format!("{call:?}").chars().take(160).collect();
            async move { (label, perform(&connection, call).await, expect) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    println!("10,000 calls answered in {:?}", started.elapsed());
    let mut tally: HashMap<&str, usize> = HashMap::new();
    for (label, outcome, expect) in &outcomes {
        assert!(
            expect.contains(outcome),
            "{label} answered {outcome}, expected one of {expect:?}"
        );
        *tally.entry(outcome.trim_start_matches(ERROR)).or_default() += 1;
    }
    println!("outcomes: {tally:?}");
    assert_still_serving(&env, &agent, "10,000 random calls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_leave_before_the_reply_leave_nothing_behind() {
    const CALLERS: usize = 400;
    const NAMES: usize = 16;
    let env = TestEnv::new().await;
    env.write_config(commands_on());
    let (agent, _proxy) = env.start_connected_agent().await;
    for index in 0..CALLERS {
        let connection = env.bus.connection().await;
        let message = |method: &str, interface: &str| {
            zbus::Message::method_call(OBJECT_PATH, method.to_owned())
                .unwrap()
                .destination(BUS_NAME)
                .unwrap()
                .interface(interface.to_owned())
                .unwrap()
        };
        let name = format!("gone-{}", index % NAMES);
        let messages = [
            message("RegisterHandler", COMMANDS_INTERFACE).build(&(name,)),
            message("SetProperty", INTERFACE_NAME).build(&(
                DEVICE_PROPERTIES,
                "/name",
                Value::from(format!("caller {index}")),
            )),
            message("AddInterface", INTERFACE_NAME).build(&(calls::abuse_interface(),)),
            message("Send", INTERFACE_NAME).build(&(
                DEVICE_DATASTREAM,
                "/plain/value",
                Value::F64(index as f64),
            )),
            message("ListCommands", COMMANDS_INTERFACE).build(&()),
        ];
        for message in messages {
            connection.send(&message.unwrap()).await.unwrap();
        }
        connection.close().await.unwrap();
    }
    assert_still_serving(&env, &agent, "400 callers that left before the reply").await;

    // Every name a departed caller registered becomes free once the agent has seen it leave.
    let connection = env.bus.connection().await;
    let commands = common::proxy::CommandsProxy::new(&connection)
        .await
        .unwrap();
    const { assert!(NAMES <= MAX_HANDLERS_PER_APP) };
    for index in 0..NAMES {
        let name = format!("gone-{index}");
        let wait = async {
            loop {
                match commands.register_handler(&name).await {
                    Ok(()) => return,
                    Err(zbus::Error::MethodError(error, _, _))
                        if error.as_str() == "org.astarte_platform.Agent1.Error.CommandTaken" =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(error) => panic!("RegisterHandler {name}: {error}"),
                }
            }
        };
        if tokio::time::timeout(TIMEOUT, wait).await.is_err() {
            panic!(
                "{name} is still held by a caller that left the bus:\n{}",
                agent.log()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_64_mib_are_refused_and_leave_no_trace() {
    let env = TestEnv::new().await;
    env.write_config(commands_on());
    let (agent, _proxy) = env.start_connected_agent().await;
    let huge = || "x".repeat(64 * MIB as usize);
    let mut object = HashMap::new();
    object.insert("label".to_owned(), Value::from(huge()));
    let abuse = [
        (
            Call::Send(
                DEVICE_DATASTREAM.into(),
                "/plain/text".into(),
                Value::from(huge()),
            ),
            "OutOfRange",
        ),
        (Call::AddInterface(huge()), "InvalidInterface"),
        (
            Call::SendObject(DEVICE_OBJECT.into(), "/room".into(), object),
            "OutOfRange",
        ),
        (Call::Register(huge()), "InvalidToken"),
        (
            Call::Complete("id".into(), 0, huge(), String::new()),
            "CommandNotRunning",
        ),
    ];
    for (call, expected) in abuse {
        let label: String = format!("{call:?}").chars().take(80).collect();
        let started = Instant::now();
        // A connection per call: the bus may drop the abusing client's connection (seen with
        // a 64 MiB `a{sv}`); what matters is that the agent keeps serving others.
        let connection = env.bus.connection().await;
        let outcome = perform(&connection, call).await;
        println!("{label}…: {outcome} in {:?}", started.elapsed());
        assert!(
            outcome == format!("{ERROR}{expected}")
                || outcome == "org.freedesktop.DBus.Error.LimitsExceeded"
                || outcome.starts_with("not a D-Bus error reply: I/O error"),
            "{label}: {outcome}"
        );
    }
    assert_still_serving(&env, &agent, "five messages of 64 MiB").await;
}

/// A valid interface document of `len` bytes: 1,024 mappings with descriptions, padded.
fn huge_interface(name: &str, len: usize) -> String {
    let mappings: Vec<String> = (0..1024)
        .map(|index| {
            format!(
                r#"{{"endpoint": "/m{index}/value", "type": "integer", "description": "{}"}}"#,
                "d".repeat(700)
            )
        })
        .collect();
    let mut document = format!(
        r#"{{"interface_name": "{name}", "version_major": 0, "version_minor": 1,
            "type": "datastream", "ownership": "device", "mappings": [{}]}}"#,
        mappings.join(",")
    );
    assert!(document.len() <= len, "{} > {len}", document.len());
    document.push_str(&" ".repeat(len - document.len()));
    document
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_huge_interfaces_stops_at_the_documented_limits() {
    let env = TestEnv::new().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let started = Instant::now();
    for index in 0..MAX_RUNTIME_INTERFACES + 4 {
        let name = format!("org.astarte-platform.test.Flood{index}");
        let over = huge_interface(&format!("{name}Over"), MAX_DOCUMENT_BYTES + 1);
        assert_eq!(
            error_name(proxy.add_interface(&over).await),
            format!("{ERROR}InvalidInterface"),
            "a document over the size limit"
        );
        let result = proxy
            .add_interface(&huge_interface(&name, MAX_DOCUMENT_BYTES))
            .await;
        if index < MAX_RUNTIME_INTERFACES {
            result.unwrap_or_else(|error| panic!("AddInterface {name}: {error}"));
        } else {
            assert_eq!(error_name(result), format!("{ERROR}LimitExceeded"));
        }
    }
    println!(
        "{} AddInterface calls of 1 MiB answered in {:?}",
        2 * (MAX_RUNTIME_INTERFACES + 4),
        started.elapsed()
    );
    let loaded = proxy.interfaces().await.unwrap().len();
    assert_eq!(
        loaded,
        INTROSPECTION.split(';').count() + MAX_RUNTIME_INTERFACES
    );
    proxy
        .remove_interface("org.astarte-platform.test.Flood0")
        .await
        .unwrap();
    proxy
        .add_interface(&calls::abuse_interface())
        .await
        .expect("a removed interface makes room for another");
    assert_still_serving(&env, &agent, "a flood of 1 MiB interfaces").await;
}

#[tokio::test]
async fn an_interface_whose_introspection_would_not_fit_one_message_is_refused() {
    let env = TestEnv::new().await;
    // Operator files fill the introspection to within a few bytes of the broker's limit.
    let base = env.base_topic().len();
    let mut size = 2 + base + 2 + INTROSPECTION.len();
    let mut index = 0;
    // Entries of 45 bytes until fewer than 65 are left: a 128-character name (133 bytes)
    // no longer fits, a short one (18 bytes) still does.
    while size + 45 + 20 <= 65_535 {
        let name = format!("org.example.Fill{index:05}{}", "a".repeat(19));
        let document = format!(
            r#"{{"interface_name": "{name}", "version_major": 0, "version_minor": 1,
                "type": "datastream", "ownership": "device",
                "mappings": [{{"endpoint": "/v", "type": "integer"}}]}}"#
        );
        std::fs::write(
            env.path("interfaces").join(format!("{name}.json")),
            document,
        )
        .unwrap();
        size += name.len() + ":0:1".len() + 1;
        index += 1;
    }
    let (_agent, proxy) = env.start_connected_agent().await;
    let long = format!("org.example.Long{}", "b".repeat(112));
    let document = |name: &str| {
        format!(
            r#"{{"interface_name": "{name}", "version_major": 0, "version_minor": 1,
                "type": "datastream", "ownership": "device",
                "mappings": [{{"endpoint": "/v", "type": "integer"}}]}}"#
        )
    };
    assert_eq!(
        error_name(proxy.add_interface(&document(&long)).await),
        format!("{ERROR}LimitExceeded")
    );
    proxy
        .add_interface(&document("org.example.S"))
        .await
        .expect("a short name still fits");
}
