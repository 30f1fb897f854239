//! `check-config`, `device-id`, and how the daemon treats a bad interface file.

mod common;

use astarte_agent::device_id::{DEFAULT_NAMESPACE, DeviceId};
use common::*;

#[tokio::test]
async fn check_config_accepts_a_valid_setup() {
    let env = TestEnv::new().await;
    let output = env.cli(&["check-config"]).await;
    assert!(output.status.success(), "{}", output.stderr);
    assert!(output.stdout.contains("7 interfaces"), "{}", output.stdout);
}

#[tokio::test]
async fn check_config_reports_each_bad_interface_file_and_fails() {
    let env = TestEnv::new().await;
    std::fs::write(env.path("interfaces/broken.json"), "{\"interface_name\": ").unwrap();
    std::fs::write(
        env.path("interfaces/reserved.json"),
        r#"{"interface_name": "control", "version_major": 1, "version_minor": 0, "type": "properties", "ownership": "device", "mappings": [{"endpoint": "/a", "type": "integer"}]}"#,
    )
    .unwrap();
    let output = env.cli(&["check-config"]).await;
    assert!(!output.status.success());
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per problem: {lines:?}");
    assert!(
        lines.iter().any(|line| line.contains("broken.json")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("reserved.json") && line.contains("control")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn check_config_reports_every_problem_not_just_the_first() {
    let env = TestEnv::new().await;
    std::fs::write(env.path("interfaces/broken.json"), "{").unwrap();
    env.write_config("device_id_namespace = \"not-a-uuid\"\n[store]\nmax_queue_bytes = 1");
    let output = env.cli(&["check-config"]).await;
    assert!(!output.status.success());
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "one line per problem: {lines:?}");
    for needle in ["device_id_namespace", "max_queue_bytes", "broken.json"] {
        assert!(
            lines.iter().any(|line| line.contains(needle)),
            "{needle}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn check_config_lists_five_problems_of_one_file_in_one_run_with_their_lines() {
    let env = TestEnv::new().await;
    let config = env.config_path();
    // Five problems: an invalid realm (line 1), an unknown key (line 2), a value of the wrong
    // type (line 5), a value out of range (line 7), and no pairing_url at all (no line).
    std::fs::write(
        &config,
        format!(
            "realm = \"Bad Realm\"\n\
             colour = \"blue\"\n\
             store_dir = {store:?}\n\
             interfaces_dir = {interfaces:?}\n\
             machine_id_file = 42\n\
             [store]\n\
             max_queue_bytes = 10\n",
            store = env.path("store"),
            interfaces = env.path("interfaces"),
        ),
    )
    .unwrap();
    let output = env.cli(&["check-config"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let lines: Vec<&str> = output.stderr.lines().collect();
    let file = config.display().to_string();
    for expected in [
        format!("{file}:1: realm: "),
        format!("{file}:2: colour: unknown key"),
        format!("{file}:5: machine_id_file: "),
        format!("{file}:7: store.max_queue_bytes: 10 is too small"),
        format!("{file}: pairing_url: missing"),
    ] {
        assert!(
            lines.iter().any(|line| line.starts_with(&expected)),
            "no line starts with {expected:?}: {lines:#?}"
        );
    }
    assert_eq!(lines.len(), 5, "one line per problem: {lines:#?}");
}

#[tokio::test]
async fn check_config_lists_every_problem_of_an_interface_file() {
    let env = TestEnv::new().await;
    // Two problems at the top (a reserved name, no ownership) and two in a mapping (an
    // unknown type, an unknown reliability).
    std::fs::write(
        env.path("interfaces/two-problems.json"),
        r#"{"interface_name": "control", "version_major": 1, "version_minor": 0, "type": "datastream",
            "mappings": [{"endpoint": "/a", "type": "integr", "reliability": "sometimes"}]}"#,
    )
    .unwrap();
    let output = env.cli(&["check-config"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let lines: Vec<&str> = output.stderr.lines().collect();
    for needle in ["`control`", "`ownership`", "\"integr\"", "\"sometimes\""] {
        assert!(
            lines
                .iter()
                .any(|line| line.contains("two-problems.json") && line.contains(needle)),
            "{needle}: {lines:#?}"
        );
    }
    assert_eq!(lines.len(), 4, "one line per problem: {lines:#?}");
}

#[tokio::test]
async fn check_config_shows_a_toml_syntax_error_with_its_lines() {
    let env = TestEnv::new().await;
    std::fs::write(
        env.config_path(),
        "realm = \"test\"\npairing_url = https://x\n",
    )
    .unwrap();
    let output = env.cli(&["check-config"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let file = env.config_path().display().to_string();
    let mut lines = output.stderr.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with(&format!("{file}:2: ")), "{output:?}");
    let snippet: Vec<&str> = lines.collect();
    assert!(
        snippet
            .iter()
            .any(|line| line.contains("pairing_url = https://x")),
        "the source line is shown as it is: {snippet:#?}"
    );
}

#[tokio::test]
async fn check_config_counts_one_interface_in_the_singular() {
    let env = TestEnv::new().await;
    for entry in std::fs::read_dir(env.path("interfaces")).unwrap() {
        let path = entry.unwrap().path();
        if !path.ends_with("org.astarte-platform.test.DeviceDatastream.json") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let output = env.cli(&["check-config"]).await;
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.ends_with(", 1 interface\n"), "{output:?}");
}

#[tokio::test]
async fn check_config_checks_the_interfaces_even_when_the_file_does_not_parse() {
    let env = TestEnv::new().await;
    std::fs::write(env.path("interfaces/broken.json"), "{").unwrap();
    env.write_config("pairing_tokn_file = \"/x\"");
    let output = env.cli(&["check-config"]).await;
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("pairing_tokn_file"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("broken.json"), "{}", output.stderr);
}

#[tokio::test]
async fn check_config_names_an_unknown_key() {
    let env = TestEnv::new().await;
    env.write_config("pairing_tokn_file = \"/x\"");
    let output = env.cli(&["check-config"]).await;
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("pairing_tokn_file"),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn device_id_is_derived_from_the_machine_id() {
    let env = TestEnv::new().await;
    let machine_id = std::fs::read_to_string(env.path("machine-id")).unwrap();
    let expected = DeviceId::from_machine_id(DEFAULT_NAMESPACE, &machine_id).to_string();
    let output = env.cli(&["device-id"]).await;
    assert!(output.status.success());
    assert_eq!(output.stdout.trim(), expected);
    assert_eq!(expected.len(), 22);
}

#[tokio::test]
async fn daemon_skips_an_invalid_interface_file_and_serves_the_others() {
    let env = TestEnv::new().await;
    std::fs::write(env.path("interfaces/broken.json"), "[]").unwrap();
    let (agent, proxy) = env.start_connected_agent().await;
    assert_eq!(proxy.interfaces().await.unwrap().len(), 7);
    assert!(
        agent.log().contains("broken.json"),
        "the operator learns which file: {}",
        agent.log()
    );
}

/// The exit codes of `status` (LSB, as `systemctl status`): 0 connected, 150 degraded,
/// 3 not running, 4 unknown; the same with `--json`, whose output always parses.
const CONNECTED: i32 = 0;
const DEGRADED: i32 = 150;
const NOT_RUNNING: i32 = 3;
const UNKNOWN: i32 = 4;

fn json(output: &CliOutput) -> serde_json::Value {
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|error| panic!("status --json printed no JSON ({error}): {output:?}"))
}

#[tokio::test]
async fn status_tells_connected_degraded_and_not_running_apart() {
    let mut env = TestEnv::persistent().await;
    let stopped = env.cli_on_bus(&["status"]).await;
    assert_eq!(stopped.status.code(), Some(NOT_RUNNING), "{stopped:?}");
    assert!(stopped.stdout.contains("not running"), "{}", stopped.stdout);
    let stopped = env.cli_on_bus(&["status", "--json"]).await;
    assert_eq!(stopped.status.code(), Some(NOT_RUNNING), "{stopped:?}");
    let report = json(&stopped);
    assert_eq!(report["running"], false);
    assert_eq!(report["status"], "not-running");

    let (agent, proxy) = env.start_connected_agent().await;
    let healthy = env.cli_on_bus(&["status", "--json"]).await;
    assert_eq!(healthy.status.code(), Some(CONNECTED), "{healthy:?}");
    let report = json(&healthy);
    assert_eq!(report["status"], "connected");
    assert_eq!(report["state"], "connected");
    assert_eq!(report["device_id"], env.device_id.as_str());
    assert_eq!(
        report["broker"],
        format!("localhost:{}", env.sandbox.broker_port())
    );
    assert!(report["certificate_expiry_ms"].as_i64().unwrap() > astarte_agent::clock::now_ms());
    assert!(report["store_bytes"].as_u64().unwrap() > 0);
    assert_eq!(report["interfaces"].as_array().unwrap().len(), 7);
    assert_eq!(
        env.cli_on_bus(&["status"]).await.status.code(),
        Some(CONNECTED)
    );

    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    let degraded = env.cli_on_bus(&["status"]).await;
    assert_eq!(degraded.status.code(), Some(DEGRADED), "{degraded:?}");
    assert!(
        degraded
            .stdout
            .contains("state:               disconnected"),
        "{}",
        degraded.stdout
    );
    assert!(
        degraded.stdout.contains("connection to the broker lost"),
        "the last error is shown: {}",
        degraded.stdout
    );
    let degraded = env.cli_on_bus(&["status", "--json"]).await;
    assert_eq!(degraded.status.code(), Some(DEGRADED), "{degraded:?}");
    let report = json(&degraded);
    assert_eq!(report["running"], true);
    assert_eq!(report["status"], "degraded");
    assert_eq!(report["state"], "disconnected");
}

#[tokio::test]
async fn status_is_unknown_when_the_configuration_or_the_bus_cannot_be_read() {
    let env = TestEnv::new().await;
    std::fs::write(env.config_path(), "realm = \"unterminated\n").unwrap();
    for args in [&["status"][..], &["status", "--json"]] {
        let output = env.cli_on_bus(args).await;
        assert_eq!(output.status.code(), Some(UNKNOWN), "{output:?}");
        assert!(output.stdout.contains("status unknown"), "{output:?}");
    }
    assert_eq!(
        json(&env.cli_on_bus(&["status", "--json"]).await)["status"],
        "unknown"
    );

    env.write_config("");
    let nowhere = format!("unix:path={}", env.path("no-bus-here").display());
    for args in [&["status"][..], &["status", "--json"]] {
        let output = run_cli_with_env(
            &env.config_path(),
            args,
            &[("DBUS_SESSION_BUS_ADDRESS", nowhere.as_str())],
        )
        .await;
        assert_eq!(output.status.code(), Some(UNKNOWN), "{output:?}");
    }
}

#[tokio::test]
async fn check_config_refuses_the_tpm_backend_in_a_build_without_it() {
    if cfg!(feature = "tpm") {
        return;
    }
    let env = TestEnv::new().await;
    env.write_config("[credentials]\nbackend = \"tpm\"\n");
    let output = env.cli(&["check-config"]).await;
    assert!(!output.status.success());
    assert!(output.stderr.contains("`tpm` feature"), "{}", output.stderr);
}
