use super::*;
use rstest::rstest;

const MINIMAL: &str = r#"
realm = "test"
pairing_url = "https://api.example.com/pairing"
"#;

#[test]
fn example_config_shipped_in_the_repository_is_valid() {
    let config = Config::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/config.toml"
    )))
    .unwrap();
    assert_eq!(config.realm, "test");
    assert_eq!(config.bus, BusKind::System);
    assert_eq!(
        config.pairing_token_file.as_deref(),
        Some(Path::new("/etc/astarte-agent/pairing-token"))
    );
}

#[test]
fn minimal_config_uses_documented_defaults() {
    let config = Config::parse(MINIMAL).unwrap();
    assert_eq!(config.store_dir, Path::new(DEFAULT_STORE_DIR));
    assert_eq!(config.interfaces_dir, Path::new(DEFAULT_INTERFACES_DIR));
    assert_eq!(config.bus, BusKind::System);
    assert_eq!(config.ca_file, None);
    assert_eq!(
        config.store.max_queue_bytes,
        crate::store::DEFAULT_MAX_QUEUE_BYTES
    );
    assert_eq!(
        config.device_id,
        DeviceIdSource::MachineId {
            file: DEFAULT_MACHINE_ID_FILE.into(),
            namespace: device_id::DEFAULT_NAMESPACE
        }
    );
}

#[test]
fn device_id_is_derived_from_the_machine_id_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("machine-id");
    std::fs::write(&file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let text = format!("{MINIMAL}machine_id_file = {:?}\n", file);
    let config = Config::parse(&text).unwrap();
    let expected = DeviceId::from_machine_id(
        device_id::DEFAULT_NAMESPACE,
        "0123456789abcdef0123456789abcdef",
    );
    assert_eq!(config.resolve_device_id().unwrap(), expected);
}

#[test]
fn configured_device_id_wins_over_the_machine_id() {
    let config = Config::parse(&format!(
        "{MINIMAL}device_id = \"2TBn-jNESuuHamE2Zo1anA\"\n"
    ))
    .unwrap();
    assert_eq!(
        config.resolve_device_id().unwrap().to_string(),
        "2TBn-jNESuuHamE2Zo1anA"
    );
}

#[test]
fn missing_machine_id_file_is_a_clear_error() {
    let config = Config::parse(&format!(
        "{MINIMAL}machine_id_file = \"/nonexistent/machine-id\"\n"
    ))
    .unwrap();
    let error = config.resolve_device_id().unwrap_err().to_string();
    assert!(error.contains("/nonexistent/machine-id"), "{error}");
}

#[rstest]
#[case::unknown_key(
    "realm = \"test\"\npairing_url = \"https://a.example\"\nrealmm = \"x\"",
    "realmm"
)]
#[case::unknown_dbus_key(
    "realm = \"test\"\npairing_url = \"https://a.example\"\n[dbus]\nbuss = \"system\"",
    "buss"
)]
#[case::wrong_type("realm = 5\npairing_url = \"https://a.example\"", "realm")]
#[case::missing_realm("pairing_url = \"https://a.example\"", "realm")]
#[case::missing_pairing_url("realm = \"test\"", "pairing_url")]
#[case::bad_bus(
    "realm = \"test\"\npairing_url = \"https://a.example\"\n[dbus]\nbus = \"user\"",
    "system"
)]
#[case::uppercase_realm("realm = \"Test\"\npairing_url = \"https://a.example\"", "realm")]
#[case::reserved_realm("realm = \"system\"\npairing_url = \"https://a.example\"", "reserved")]
#[case::long_realm(&format!("realm = \"{}\"\npairing_url = \"https://a.example\"", "a".repeat(49)), "realm")]
#[case::bad_device_id(
    "realm = \"test\"\npairing_url = \"https://a.example\"\ndevice_id = \"abc\"",
    "device_id"
)]
#[case::bad_namespace(
    "realm = \"test\"\npairing_url = \"https://a.example\"\ndevice_id_namespace = \"x\"",
    "device_id_namespace"
)]
#[case::http_remote(
    "realm = \"test\"\npairing_url = \"http://api.example.com/pairing\"",
    "pairing_url"
)]
#[case::ftp("realm = \"test\"\npairing_url = \"ftp://127.0.0.1/\"", "pairing_url")]
#[case::not_a_url("realm = \"test\"\npairing_url = \"api.example.com\"", "pairing_url")]
fn invalid_configuration_names_the_key(#[case] text: &str, #[case] needle: &str) {
    let error = Config::parse(text).unwrap_err().to_string();
    assert!(
        error.contains(needle),
        "{error:?} should mention {needle:?}"
    );
}

#[rstest]
#[case("http://127.0.0.1:4003")]
#[case("http://localhost:4003/pairing")]
#[case("http://[::1]:4003")]
#[case("https://api.example.com/pairing/")]
fn accepted_pairing_urls(#[case] url: &str) {
    let text = format!("realm = \"test\"\npairing_url = \"{url}\"");
    assert!(Config::parse(&text).is_ok(), "{url}");
}

#[test]
fn store_queue_bound_is_read_and_checked() {
    let config = Config::parse(&format!("{MINIMAL}[store]\nmax_queue_bytes = 1048576\n")).unwrap();
    assert_eq!(config.store.max_queue_bytes, 1_048_576);
    let error = Config::parse(&format!("{MINIMAL}[store]\nmax_queue_bytes = 10\n")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "store.max_queue_bytes: 10 is too small, at least 65536 bytes"
    );
    assert!(Config::parse(&format!("{MINIMAL}[store]\nmax_queue = 1\n")).is_err());
}

#[test]
fn credentials_and_recovery_default_to_files_and_unregistering() {
    let config = Config::parse(MINIMAL).unwrap();
    assert_eq!(config.credentials, BackendKind::File);
    assert!(config.recovery.unregister_if_registered);
    let config = Config::parse(&format!(
        "{MINIMAL}[credentials]\nbackend = \"file\"\n[recovery]\nunregister_if_registered = false\n"
    ))
    .unwrap();
    assert!(!config.recovery.unregister_if_registered);
}

#[test]
fn the_tpm_backend_takes_a_tcti_and_needs_the_feature() {
    let text = format!(
        "{MINIMAL}[credentials]\nbackend = \"tpm\"\ntcti = \"swtpm:host=127.0.0.1,port=2321\"\n"
    );
    let parsed = Config::parse(&text);
    if cfg!(feature = "tpm") {
        assert_eq!(
            parsed.unwrap().credentials,
            BackendKind::Tpm {
                tcti: "swtpm:host=127.0.0.1,port=2321".into()
            }
        );
    } else {
        let error = parsed.unwrap_err();
        assert!(matches!(error, ConfigError::TpmNotBuilt), "{error}");
        assert!(error.to_string().contains("`tpm` feature"), "{error}");
    }
    let bad = format!("{MINIMAL}[credentials]\ntcti = \"not a tcti\"\n");
    assert!(matches!(Config::parse(&bad), Err(ConfigError::Tcti(_))));
    let unknown = format!("{MINIMAL}[credentials]\nbackend = \"hsm\"\n");
    assert!(
        Config::parse(&unknown)
            .unwrap_err()
            .to_string()
            .contains("backend")
    );
}

#[test]
fn commands_are_off_by_default_with_documented_limits() {
    let commands = Config::parse(MINIMAL).unwrap().commands;
    assert!(!commands.enabled);
    assert_eq!(commands.max_parallel, crate::commands::DEFAULT_MAX_PARALLEL);
    assert_eq!(commands.ledger_max_age_days, 30);
    assert_eq!(commands.ledger_max_entries, 1000);
    assert!(commands.commands.is_empty());
}

#[test]
fn a_command_table_is_read_with_its_defaults_and_an_anchored_pattern() {
    let text = format!(
        r#"{MINIMAL}
[commands]
enabled = true
max_parallel = 4
ledger_max_age_days = 7
ledger_max_entries = 50

[commands.restart-app]
exec = ["/usr/bin/systemctl", "restart", "app"]

[commands.ping]
exec = ["/bin/ping", "-c", "1"]
args_pattern = "[a-z0-9.]+"
timeout_seconds = 20
rerun_on_restart = true
max_output_bytes = 1000
"#
    );
    let commands = Config::parse(&text).unwrap().commands;
    assert!(commands.enabled);
    assert_eq!(
        (
            commands.max_parallel,
            commands.ledger_max_age_days,
            commands.ledger_max_entries
        ),
        (4, 7, 50)
    );
    let restart = &commands.commands["restart-app"];
    assert_eq!(restart.exec, ["/usr/bin/systemctl", "restart", "app"]);
    assert!(restart.args_pattern.is_none());
    assert_eq!(restart.timeout, std::time::Duration::from_secs(300));
    assert!(!restart.rerun_on_restart);
    assert_eq!(
        restart.max_output_bytes,
        crate::commands::DEFAULT_MAX_OUTPUT_BYTES
    );
    let ping = &commands.commands["ping"];
    let pattern = ping.args_pattern.as_ref().unwrap();
    assert!(pattern.is_match("example.com"));
    assert!(
        !pattern.is_match("example.com; reboot"),
        "the whole argument must match"
    );
    assert!(!pattern.is_match("-f example.com"));
    assert_eq!(ping.timeout, std::time::Duration::from_secs(20));
    assert!(ping.rerun_on_restart);
    assert_eq!(ping.max_output_bytes, 1000);
}

#[rstest]
#[case::empty_exec("[commands.x]\nexec = []", "commands.x.exec")]
#[case::missing_exec("[commands.x]\ntimeout_seconds = 5", "commands.x.exec: missing")]
#[case::relative_program("[commands.x]\nexec = [\"systemctl\"]", "commands.x.exec")]
#[case::bad_pattern(
    "[commands.x]\nexec = [\"/bin/true\"]\nargs_pattern = \"[a-\"",
    "commands.x.args_pattern"
)]
#[case::escaping_pattern(
    "[commands.x]\nexec = [\"/bin/true\"]\nargs_pattern = \"a)|(b\"",
    "commands.x.args_pattern"
)]
#[case::unknown_field("[commands.x]\nexec = [\"/bin/true\"]\nexex = 1", "exex")]
#[case::zero_timeout(
    "[commands.x]\nexec = [\"/bin/true\"]\ntimeout_seconds = 0",
    "commands.x.timeout_seconds"
)]
#[case::huge_output(
    "[commands.x]\nexec = [\"/bin/true\"]\nmax_output_bytes = 40000",
    "commands.x.max_output_bytes"
)]
#[case::bad_name("[commands.\"re boot\"]\nexec = [\"/bin/true\"]", "commands.re boot")]
#[case::zero_parallel("[commands]\nmax_parallel = 0", "commands.max_parallel")]
#[case::zero_days("[commands]\nledger_max_age_days = 0", "commands.ledger_max_age_days")]
#[case::not_a_bool("[commands]\nenabled = \"yes\"", "commands.enabled")]
#[case::unknown_setting("[commands]\nmax_paralel = 3", "commands.max_paralel: unknown key")]
fn bad_command_settings_name_their_key(#[case] section: &str, #[case] needle: &str) {
    let error = Config::parse(&format!("{MINIMAL}{section}\n"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(needle),
        "{error:?} should mention {needle:?}"
    );
}

#[test]
fn check_config_reports_every_bad_command_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = format!(
        "{MINIMAL}[commands]\nmax_parallel = 0\n[commands.a]\nexec = []\n[commands.b]\nexec = [\"/bin/true\"]\nargs_pattern = \"(\"\n"
    );
    std::fs::write(&path, text).unwrap();
    let checked = Config::check(&path);
    let problems: Vec<String> = checked
        .problems
        .iter()
        .map(|problem| problem.error.to_string())
        .collect();
    assert!(checked.config.is_none());
    assert_eq!(problems.len(), 3, "{problems:?}");
    for key in [
        "commands.max_parallel",
        "commands.a.exec",
        "commands.b.args_pattern",
    ] {
        assert!(
            problems.iter().any(|problem| problem.starts_with(key)),
            "{key}: {problems:?}"
        );
    }
}
