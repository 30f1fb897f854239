//! The parser against what clap printed for the same command lines (captured from the last
//! build that used clap, program name `astarte-agent`).

use rstest::rstest;

use super::*;

fn parse(line: &str) -> Result<Cli, Exit> {
    Cli::parse_from("astarte-agent", line.split_whitespace().map(OsString::from))
}

#[rstest]
#[case("--help", Exit::Print("Connects this device to Astarte and serves a D-Bus API\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nCommands:\n  check-config  Validate the configuration and every interface file; every problem, one line each\n  device-id     Print the device ID the configuration resolves to\n  status        Show the running daemon's health; exit status 0 connected, 150 degraded (running, not connected), 3 not running, 4 unknown\n  help          Print this message or the help of the given subcommand(s)\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n  -h, --help             Print help\n  -V, --version          Print version\n".into()))]
#[case("-h", Exit::Print("Connects this device to Astarte and serves a D-Bus API\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nCommands:\n  check-config  Validate the configuration and every interface file; every problem, one line each\n  device-id     Print the device ID the configuration resolves to\n  status        Show the running daemon's health; exit status 0 connected, 150 degraded (running, not connected), 3 not running, 4 unknown\n  help          Print this message or the help of the given subcommand(s)\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n  -h, --help             Print help\n  -V, --version          Print version\n".into()))]
#[case("help", Exit::Print("Connects this device to Astarte and serves a D-Bus API\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nCommands:\n  check-config  Validate the configuration and every interface file; every problem, one line each\n  device-id     Print the device ID the configuration resolves to\n  status        Show the running daemon's health; exit status 0 connected, 150 degraded (running, not connected), 3 not running, 4 unknown\n  help          Print this message or the help of the given subcommand(s)\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n  -h, --help             Print help\n  -V, --version          Print version\n".into()))]
#[case("help status", Exit::Print("Show the running daemon's health; exit status 0 connected, 150 degraded (running, not connected), 3 not running, 4 unknown\n\nUsage: astarte-agent status [OPTIONS]\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n      --json             One JSON object instead of text\n  -h, --help             Print help\n".into()))]
#[case("help check-config", Exit::Print("Validate the configuration and every interface file; every problem, one line each\n\nUsage: astarte-agent check-config [OPTIONS]\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n  -h, --help             Print help\n".into()))]
#[case("help device-id", Exit::Print("Print the device ID the configuration resolves to\n\nUsage: astarte-agent device-id [OPTIONS]\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n  -h, --help             Print help\n".into()))]
#[case("help help", Exit::Print("Print this message or the help of the given subcommand(s)\n\nUsage: astarte-agent help [COMMAND]...\n\nArguments:\n  [COMMAND]...  Print help for the subcommand(s)\n".into()))]
#[case("status -h", Exit::Print("Show the running daemon's health; exit status 0 connected, 150 degraded (running, not connected), 3 not running, 4 unknown\n\nUsage: astarte-agent status [OPTIONS]\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n      --json             One JSON object instead of text\n  -h, --help             Print help\n".into()))]
#[case("check-config --help", Exit::Print("Validate the configuration and every interface file; every problem, one line each\n\nUsage: astarte-agent check-config [OPTIONS]\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n  -h, --help             Print help\n".into()))]
#[case("device-id --help", Exit::Print("Print the device ID the configuration resolves to\n\nUsage: astarte-agent device-id [OPTIONS]\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n  -h, --help             Print help\n".into()))]
#[case("--version", Exit::Print("astarte-agent 0.1.0\n".into()))]
#[case("-V", Exit::Print("astarte-agent 0.1.0\n".into()))]
#[case("status --version", Exit::Usage("error: unexpected argument '--version' found\n\nUsage: astarte-agent status [OPTIONS]\n\nFor more information, try '--help'.\n".into()))]
#[case("status -V", Exit::Usage("error: unexpected argument '-V' found\n\nUsage: astarte-agent status [OPTIONS]\n\nFor more information, try '--help'.\n".into()))]
#[case("--bogus", Exit::Usage("error: unexpected argument '--bogus' found\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("status --json --json", Exit::Usage("error: the argument '--json' cannot be used multiple times\n\nUsage: astarte-agent status [OPTIONS]\n\nFor more information, try '--help'.\n".into()))]
#[case("--config", Exit::Usage("error: a value is required for '--config <CONFIG>' but none was supplied\n\nFor more information, try '--help'.\n".into()))]
#[case("--config=", Exit::Usage("error: a value is required for '--config <CONFIG>' but none was supplied\n\nFor more information, try '--help'.\n".into()))]
#[case("frob", Exit::Usage("error: unrecognized subcommand 'frob'\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("status extra", Exit::Usage("error: unexpected argument 'extra' found\n\nUsage: astarte-agent status [OPTIONS]\n\nFor more information, try '--help'.\n".into()))]
#[case("-x", Exit::Usage("error: unexpected argument '-x' found\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("-hV", Exit::Print("Connects this device to Astarte and serves a D-Bus API\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nCommands:\n  check-config  Validate the configuration and every interface file; every problem, one line each\n  device-id     Print the device ID the configuration resolves to\n  status        Show the running daemon's health; exit status 0 connected, 150 degraded (running, not connected), 3 not running, 4 unknown\n  help          Print this message or the help of the given subcommand(s)\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n  -h, --help             Print help\n  -V, --version          Print version\n".into()))]
#[case("-Vh", Exit::Print("astarte-agent 0.1.0\n".into()))]
#[case("-xh", Exit::Usage("error: unexpected argument '-x' found\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("--config a --config b", Exit::Usage("error: the argument '--config <CONFIG>' cannot be used multiple times\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("help frob", Exit::Usage("error: unrecognized subcommand 'frob'\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("status --json=1", Exit::Usage("error: unexpected value '1' for '--json' found; no more were expected\n\nUsage: astarte-agent status --json\n\nFor more information, try '--help'.\n".into()))]
#[case("-- status", Exit::Usage("error: unexpected argument 'status' found\n\n  tip: subcommand 'status' exists; to use it, remove the '--' before it\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("device-id --json", Exit::Usage("error: unexpected argument '--json' found\n\nUsage: astarte-agent device-id [OPTIONS]\n\nFor more information, try '--help'.\n".into()))]
#[case("--json", Exit::Usage("error: unexpected argument '--json' found\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("help status --json", Exit::Usage("error: unrecognized subcommand '--json'\n\nUsage: astarte-agent status [OPTIONS]\n\nFor more information, try '--help'.\n".into()))]
#[case("status help", Exit::Usage("error: unexpected argument 'help' found\n\nUsage: astarte-agent status [OPTIONS]\n\nFor more information, try '--help'.\n".into()))]
#[case("--config --json", Exit::Usage("error: unexpected argument '--json' found\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("status --config", Exit::Usage("error: a value is required for '--config <CONFIG>' but none was supplied\n\nFor more information, try '--help'.\n".into()))]
#[case("help --config", Exit::Usage("error: unrecognized subcommand '--config'\n\nUsage: astarte-agent [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n".into()))]
#[case("status -h --bogus", Exit::Print("Show the running daemon's health; exit status 0 connected, 150 degraded (running, not connected), 3 not running, 4 unknown\n\nUsage: astarte-agent status [OPTIONS]\n\nOptions:\n      --config <CONFIG>  Configuration file [default: /etc/astarte-agent/config.toml]\n      --json             One JSON object instead of text\n  -h, --help             Print help\n".into()))]
#[case("device-id extra", Exit::Usage("error: unexpected argument 'extra' found\n\nUsage: astarte-agent device-id [OPTIONS]\n\nFor more information, try '--help'.\n".into()))]
fn help_version_and_errors_read_as_clap_printed_them(#[case] line: &str, #[case] exit: Exit) {
    assert_eq!(parse(line), Err(exit));
}

#[rstest]
#[case("", None, DEFAULT_CONFIG_PATH)]
#[case("--", None, DEFAULT_CONFIG_PATH)]
#[case("check-config", Some(Command::CheckConfig), DEFAULT_CONFIG_PATH)]
#[case("--config /x status --json", Some(Command::Status { json: true }), "/x")]
#[case("status --json --config /y", Some(Command::Status { json: true }), "/y")]
#[case("status", Some(Command::Status { json: false }), DEFAULT_CONFIG_PATH)]
#[case("--config=/z device-id", Some(Command::DeviceId), "/z")]
#[case("--config - status", Some(Command::Status { json: false }), "-")]
fn command_lines_parse(#[case] line: &str, #[case] command: Option<Command>, #[case] config: &str) {
    assert_eq!(
        parse(line),
        Ok(Cli {
            config: PathBuf::from(config),
            command
        })
    );
}

#[test]
fn a_non_utf8_config_path_is_taken_as_is() {
    use std::os::unix::ffi::OsStringExt;
    let path = OsString::from_vec(vec![b'/', 0xff]);
    let cli = Cli::parse_from("astarte-agent", [OsString::from("--config"), path.clone()]).unwrap();
    assert_eq!(cli.config, PathBuf::from(path));
}
