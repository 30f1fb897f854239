//! The example apps of `examples/apps/` (Python, C, shell, Rust), each run as a child process
//! against the real agent on the test's private bus, the way a device app runs: each sends a
//! datastream value and sets a property (the observer, Astarte's side, gets both), prints the
//! DataReceived of a value Astarte publishes, and answers a remote command whose result
//! arrives at the observer. A missing tool fails the test with the Debian package to install.

mod common;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use astarte_sandbox::Observer;
use bson::{Document, doc};
use common::*;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const TELEMETRY: &str = "org.astarte-platform.agent.example.Telemetry";
const DEVICE_CONFIG: &str = "org.astarte-platform.agent.example.DeviceConfig";
const SERVER_COMMANDS: &str = "org.astarte-platform.agent.example.ServerCommands";
const REQUESTS: &str = "org.astarte-platform.agent.Commands";
const RESULTS: &str = "org.astarte-platform.agent.CommandResults";

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path)
}

/// Fails the test, naming the Debian packages, unless `program args` runs and succeeds.
fn require(program: &str, args: &[&str], packages: &str) {
    let ran = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        ran.is_ok_and(|status| status.success()),
        "`{program} {}` failed: apt-get install {packages} (scripts/install-deps does)",
        args.join(" ")
    );
}

/// The agent with remote commands on and the example interfaces loaded beside the tests' own.
async fn apps_env(commands: &str) -> TestEnv {
    let env = TestEnv::new().await;
    for entry in std::fs::read_dir(example("interfaces")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), env.path("interfaces").join(entry.file_name())).unwrap();
    }
    env.write_config(&format!("[commands]\nenabled = true\n{commands}"));
    env
}

/// One example app, in a process group of its own: dropping it kills the whole group (the
/// shell example's dbus-monitor included), whatever happened.
struct App {
    child: Child,
    group: Pid,
    stdout: Lines<BufReader<ChildStdout>>,
    printed: Vec<String>,
    stderr: PathBuf,
}

impl App {
    async fn start(env: &TestEnv, program: &Path, args: &[&str]) -> App {
        let stderr = env.path("app.stderr");
        let mut child = Command::new(program)
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", env.bus.address())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("{} starts: {error}", program.display()));
        let group = Pid::from_raw(child.id().expect("just started") as i32);
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        App {
            child,
            group,
            stdout,
            printed: Vec::new(),
            stderr,
        }
    }

    /// What the app printed so far, its stderr and the agent's log, for a failure message.
    fn report(&self, agent: &Agent) -> String {
        format!(
            "the app printed:\n{}\nits stderr:\n{}\nthe agent's log:\n{}",
            self.printed.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            agent.log()
        )
    }

    /// Waits for the next printed line that contains every one of `needles`.
    async fn wait_for_line(&mut self, needles: &[&str], agent: &Agent) -> String {
        let wait = async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                self.printed.push(line.clone());
                if needles.iter().all(|needle| line.contains(needle)) {
                    return Some(line);
                }
            }
            None // its stdout closed
        };
        match tokio::time::timeout(TIMEOUT, wait).await {
            Ok(Some(line)) => line,
            _ => panic!("the app never printed {needles:?}; {}", self.report(agent)),
        }
    }

    async fn wait_for_exit(&mut self, agent: &Agent) -> ExitStatus {
        match tokio::time::timeout(TIMEOUT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("the app did not exit; {}", self.report(agent)),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = killpg(self.group, Signal::SIGKILL);
    }
}

async fn request(observer: &Observer, env: &TestEnv, id: &str, command: &str, args: &[&str]) {
    let payload = doc! {"v": {"id": id, "command": command, "args": args, "timeoutSeconds": 0}};
    let topic = env.topic(REQUESTS, "/request");
    observer
        .publish(&topic, payload.to_vec().unwrap(), 1)
        .await
        .unwrap();
}

/// The first result for `id` with a final status.
async fn final_result(observer: &mut Observer, env: &TestEnv, id: &str) -> Document {
    let topic = env.topic(RESULTS, "/result");
    loop {
        let message = observed(observer, &topic).await;
        let document = astarte_sandbox::decode_bson(&message.payload).unwrap();
        let result = document.get_document("v").unwrap().clone();
        let status = result.get_str("status").unwrap();
        if result.get_str("id").unwrap() == id && !["received", "running"].contains(&status) {
            return result;
        }
    }
}

/// The whole scenario, the same for every example: `program args` with `commands` as the
/// configuration's extra `[commands.*]` tables.
async fn run_example(program: &Path, args: &[&str], commands: &str) -> Vec<String> {
    let env = apps_env(commands).await;
    let mut observer = env.observer().await;
    let (agent, _proxy) = env.start_connected_agent().await;
    let mut app = App::start(&env, program, args).await;
    app.wait_for_line(&["ready"], &agent).await;

    // Astarte's side got the app's datastream value and its property.
    let value = observed(&mut observer, &env.topic(TELEMETRY, "/room1/double")).await;
    let value = astarte_sandbox::decode_bson(&value.payload).unwrap();
    assert_eq!(value.get_f64("v").ok(), Some(21.5), "{value}");
    let property = observed(&mut observer, &env.topic(DEVICE_CONFIG, "/name")).await;
    let property = astarte_sandbox::decode_bson(&property.payload).unwrap();
    assert_eq!(property.get_str("v").ok(), Some("kitchen"), "{property}");

    // A value Astarte sends reaches the app as DataReceived.
    let topic = env.topic(SERVER_COMMANDS, "/lamp/command");
    let payload = doc! {"v": "blink"}.to_vec().unwrap();
    observer.publish(&topic, payload, 2).await.unwrap();
    let needles = ["DataReceived", SERVER_COMMANDS, "/lamp/command", "blink"];
    app.wait_for_line(&needles, &agent).await;

    // The remote command "hello": its result is the app's answer.
    request(&observer, &env, "app-1", "hello", &["world"]).await;
    let result = final_result(&mut observer, &env, "app-1").await;
    assert_eq!(
        result.get_str("status").ok(),
        Some("completed"),
        "{result}; {}",
        app.report(&agent)
    );
    assert_eq!(result.get_i32("exitCode").ok(), Some(0), "{result}");
    assert_eq!(
        result.get_str("stdout").ok(),
        Some("hello world\n"),
        "{result}"
    );

    let status = app.wait_for_exit(&agent).await;
    assert!(status.success(), "{status}; {}", app.report(&agent));
    while let Ok(Some(line)) = app.stdout.next_line().await {
        app.printed.push(line);
    }
    app.printed.clone()
}

fn assert_printed(printed: &[String], expected: &str) {
    assert!(printed.iter().any(|line| line == expected), "{printed:?}");
}

#[tokio::test]
async fn the_python_example_sends_sets_receives_and_completes_a_command() {
    // Debian's python3-dbus and python3-gi are for /usr/bin/python3, whatever is in PATH.
    let python = "/usr/bin/python3";
    let check = "import dbus.mainloop.glib; from gi.repository import GLib";
    require(python, &["-c", check], "python3-dbus python3-gi");
    let script = example("apps/python/astarte_app.py");
    let script = script.to_str().unwrap();
    let printed = run_example(Path::new(python), &[script], "").await;
    assert_printed(&printed, "CommandRequested app-1 hello world");
}

#[tokio::test]
async fn the_c_example_builds_with_sd_bus_sends_sets_receives_and_completes_a_command() {
    require("cc", &["--version"], "gcc");
    require("pkg-config", &["--version"], "pkg-config");
    require("pkg-config", &["--exists", "libsystemd"], "libsystemd-dev");
    let flags = std::process::Command::new("pkg-config")
        .args(["--cflags", "--libs", "libsystemd"])
        .output()
        .unwrap();
    let flags = String::from_utf8(flags.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("astarte-app");
    let built = Command::new("cc")
        .args(["-Wall", "-Werror", "-o"])
        .arg(&binary)
        .arg(example("apps/c/astarte-app.c"))
        .args(flags.split_whitespace())
        .output()
        .await
        .unwrap();
    assert!(
        built.status.success(),
        "the C example builds:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let printed = run_example(&binary, &[], "").await;
    assert_printed(&printed, "CommandRequested app-1 hello world");
}

#[tokio::test]
async fn the_shell_example_sends_sets_receives_and_its_script_is_run_as_a_configured_command() {
    require("busctl", &["--version"], "systemd");
    require("dbus-monitor", &["--help"], "dbus-bin");
    let script = example("apps/shell/astarte-app.sh");
    // A shell can't hold the bus connection a RegisterHandler handler is: the agent runs
    // the script itself, as the configured command "hello".
    let commands = format!(
        "[commands.hello]\nexec = [{:?}, \"hello\"]\nargs_pattern = \"[a-z]+\"\n",
        script.to_str().unwrap()
    );
    let printed = run_example(&script, &[], &commands).await;
    assert!(
        printed
            .iter()
            .any(|line| line.starts_with("CommandFinished") && line.contains("completed")),
        "{printed:?}"
    );
}

/// Builds the Rust example with the cargo running these tests and the same features (so
/// the library is not built again), and returns the executable cargo reports.
async fn build_rust_example() -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    // Not the variables cargo sets for this test: build scripts that track one of them (ring
    // tracks CARGO_MANIFEST_DIR) would be rebuilt here, and again by the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = [
            "CARGO_PKG_",
            "CARGO_BIN_EXE_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name);
        if set_for_tests {
            cargo.env_remove(&*name);
        }
    }
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--locked", "--example", "astarte-app"])
        .arg("--message-format=json-render-diagnostics");
    if cfg!(feature = "tpm") {
        cargo.arg("--features=tpm");
    }
    let output = cargo.output().await.expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build --example astarte-app:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "astarte-app")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the example's executable")
}

#[tokio::test]
async fn the_rust_example_sends_sets_receives_and_completes_a_command() {
    let binary = build_rust_example().await;
    let printed = run_example(&binary, &[], "").await;
    assert_printed(&printed, "CommandRequested app-1 hello world");
}
