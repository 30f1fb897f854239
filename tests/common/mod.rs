//! End-to-end harness: a sandbox (Pairing server, mosquitto, observer), a private D-Bus daemon,
//! and the real `astarte-agent` binary, all started per test and torn down on drop.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod bus;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use astarte_sandbox::{Observed, Observer, Sandbox, SandboxOptions};
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub use bus::PrivateBus;
pub use proxy::DeviceProxy;

/// Generous: CI machines are small and tests run in parallel. Never a timing assertion.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub const DEVICE_DATASTREAM: &str = "org.astarte-platform.test.DeviceDatastream";
pub const DEVICE_OBJECT: &str = "org.astarte-platform.test.DeviceObject";
pub const DEVICE_PROPERTIES: &str = "org.astarte-platform.test.DeviceProperties";
pub const DEVICE_BULK: &str = "org.astarte-platform.test.DeviceBulk";
pub const SERVER_DATASTREAM: &str = "org.astarte-platform.test.ServerDatastream";
pub const SERVER_PROPERTIES: &str = "org.astarte-platform.test.ServerProperties";
pub const SERVER_OBJECT: &str = "org.astarte-platform.test.ServerObject";

/// The introspection the test interfaces produce (sorted by name, no trailing `;`).
pub const INTROSPECTION: &str = "org.astarte-platform.test.DeviceBulk:0:1;\
org.astarte-platform.test.DeviceDatastream:0:1;\
org.astarte-platform.test.DeviceObject:0:1;\
org.astarte-platform.test.DeviceProperties:1:0;\
org.astarte-platform.test.ServerDatastream:0:2;\
org.astarte-platform.test.ServerObject:0:1;\
org.astarte-platform.test.ServerProperties:0:1";

/// Everything one test needs.
pub struct TestEnv {
    // Field order is drop order: the agent goes first, then the bus and the sandbox.
    pub bus: PrivateBus,
    pub sandbox: Sandbox,
    pub dir: TempDir,
    pub device_id: String,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        TestEnv::with_options(SandboxOptions::default()).await
    }

    /// A broker that keeps sessions across restarts: an observer created before an outage
    /// receives everything published after it, however fast the agent reconnects.
    pub async fn persistent() -> TestEnv {
        TestEnv::with_options(SandboxOptions {
            broker_persistence: true,
            ..SandboxOptions::default()
        })
        .await
    }

    pub async fn with_options(options: SandboxOptions) -> TestEnv {
        let sandbox = Sandbox::start(options).await.expect("sandbox starts");
        let bus = PrivateBus::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let interfaces = dir.path().join("interfaces");
        std::fs::create_dir(&interfaces).unwrap();
        for entry in std::fs::read_dir(fixtures()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), interfaces.join(entry.file_name())).unwrap();
        }
        let machine_id = format!("{:032x}", rand_u128());
        std::fs::write(dir.path().join("machine-id"), format!("{machine_id}\n")).unwrap();
        std::fs::write(dir.path().join("pairing-token"), sandbox.agent_token()).unwrap();
        let env = TestEnv {
            bus,
            sandbox,
            dir,
            device_id: String::new(),
        };
        env.write_config("");
        let device_id = env.cli(&["device-id"]).await.stdout.trim().to_owned();
        TestEnv { device_id, ..env }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// Writes the agent configuration pointing at the sandbox; `extra` is appended verbatim
    /// before the `[dbus]` table.
    pub fn write_config(&self, extra: &str) {
        let text = format!(
            "realm = {realm:?}\n\
             pairing_url = {pairing:?}\n\
             pairing_token_file = {token:?}\n\
             machine_id_file = {machine:?}\n\
             store_dir = {store:?}\n\
             interfaces_dir = {interfaces:?}\n\
             ca_file = {ca:?}\n\
             {extra}\n\
             [dbus]\nbus = \"session\"\n",
            realm = self.sandbox.realm(),
            pairing = self.sandbox.pairing_url(),
            token = self.path("pairing-token"),
            machine = self.path("machine-id"),
            store = self.path("store"),
            interfaces = self.path("interfaces"),
            ca = self.sandbox.ca_file(),
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// `realm/device_id`: client ID, certificate CN and base topic.
    pub fn base_topic(&self) -> String {
        format!("{}/{}", self.sandbox.realm(), self.device_id)
    }

    pub fn topic(&self, interface: &str, path: &str) -> String {
        format!("{}/{interface}{path}", self.base_topic())
    }

    pub async fn observer(&self) -> Observer {
        self.sandbox.observer().await.expect("observer connects")
    }

    /// Starts the agent and waits until it owns its bus name.
    pub async fn start_agent(&self) -> Agent {
        self.start_agent_with_env(&[]).await
    }

    /// Starts the agent with more environment variables (e.g. `NOTIFY_SOCKET`).
    pub async fn start_agent_with_env(&self, envs: &[(&str, &str)]) -> Agent {
        let appeared = self.bus.wait_for_name_owner(astarte_agent::dbus::BUS_NAME);
        let log_path = self.path(&format!("agent-{}.log", rand_u128() as u32));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_astarte-agent"))
            .arg("--config")
            .arg(self.config_path())
            .env("DBUS_SESSION_BUS_ADDRESS", self.bus.address())
            .env("ASTARTE_AGENT_LOG", "debug")
            // tpm2-tss's own lines belong in the agent's log, which a failing test prints
            // (.cargo/config.toml silences them for the test processes themselves).
            .env("TSS2_LOG", "all+warning")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("agent binary starts");
        let mut agent = Agent { child, log_path };
        tokio::select! {
            owned = appeared => owned,
            status = agent.child.wait() => panic!("agent exited early with {status:?}:\n{}", agent.log()),
        }
        agent
    }

    pub async fn proxy(&self) -> DeviceProxy<'static> {
        DeviceProxy::new(&self.bus.connection().await)
            .await
            .expect("proxy")
    }

    /// A proxy that reads every property from the agent at each call (no cached copy that
    /// could lag behind a restarted agent).
    pub async fn uncached_proxy(&self) -> DeviceProxy<'static> {
        DeviceProxy::builder(&self.bus.connection().await)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .expect("proxy")
    }

    /// Starts the agent and waits until its session with the broker is up.
    pub async fn start_connected_agent(&self) -> (Agent, DeviceProxy<'static>) {
        let agent = self.start_agent().await;
        let proxy = self.proxy().await;
        wait_for_state(&proxy, "connected", &agent).await;
        (agent, proxy)
    }

    /// Waits until the agent has recorded that the broker keeps a session for the device (it
    /// does so, in the background, once the session's handshake finished): from then on a
    /// restart, even after a crash, resumes that session.
    pub async fn wait_for_session_record(&self) {
        let path = self.path("store/credentials/mqtt-session");
        let wait = async {
            while !path.exists() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(TIMEOUT, wait).await.is_err() {
            panic!("{} never appeared", path.display());
        }
    }

    /// Runs the agent binary with a subcommand against this environment's configuration.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(&self.config_path(), args).await
    }

    /// Runs a subcommand that talks to the running agent on this environment's bus.
    pub async fn cli_on_bus(&self, args: &[&str]) -> CliOutput {
        let address = self.bus.address().to_owned();
        run_cli_with_env(
            &self.config_path(),
            args,
            &[("DBUS_SESSION_BUS_ADDRESS", address.as_str())],
        )
        .await
    }
}

#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub async fn run_cli(config: &Path, args: &[&str]) -> CliOutput {
    run_cli_with_env(config, args, &[]).await
}

pub async fn run_cli_with_env(config: &Path, args: &[&str], envs: &[(&str, &str)]) -> CliOutput {
    let output = Command::new(env!("CARGO_BIN_EXE_astarte-agent"))
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(envs.iter().copied())
        .output()
        .await
        .expect("agent binary runs");
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The running agent process. Dropping it kills it; tests that care call `stop`.
pub struct Agent {
    child: Child,
    log_path: PathBuf,
}

impl Agent {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("agent still running")
    }

    /// Sends `signal` and waits for the exit status. After a SIGKILL the commands the agent
    /// was running outlive it (each in its own process group), as they would on a device;
    /// the test has no use for them, so their groups are killed too.
    pub async fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        let pid = self.child.id().expect("agent still running");
        let commands = if signal == Signal::SIGKILL {
            children_of(pid)
        } else {
            Vec::new()
        };
        kill(Pid::from_raw(pid as i32), signal).expect("signal delivered");
        let status = match tokio::time::timeout(TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("agent did not stop after {signal}:\n{}", self.log()),
        };
        for command in commands {
            let _ = nix::sys::signal::killpg(Pid::from_raw(command as i32), Signal::SIGKILL);
        }
        status
    }

    pub async fn stop(&mut self) -> ExitStatus {
        self.stop_with(Signal::SIGTERM).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the agent has logged `needle` (for outcomes that have no D-Bus signal).
    pub async fn wait_for_log(&self, needle: &str) {
        self.wait_for_log_count(needle, 1).await;
    }

    /// Waits until the agent has logged `needle` at least `count` times.
    pub async fn wait_for_log_count(&self, needle: &str, count: usize) {
        let wait = async {
            while self.log().matches(needle).count() < count {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(TIMEOUT, wait).await.is_err() {
            panic!(
                "the agent never logged {needle:?} {count} times:\n{}",
                self.log()
            );
        }
    }
}

/// The pids of the processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                // `pid (comm) state ppid ...`: the fields after the last ')'.
                .and_then(|stat| {
                    let fields = stat.rsplit_once(')')?.1.to_owned();
                    fields.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Waits until the `State` property equals `expected`, via PropertiesChanged (no polling).
pub async fn wait_for_state(proxy: &DeviceProxy<'_>, expected: &str, agent: &Agent) {
    let mut changes = proxy.receive_state_changed().await;
    let wait = async {
        if proxy.state().await.ok().as_deref() == Some(expected) {
            return;
        }
        while let Some(change) = changes.next().await {
            if change.get().await.ok().as_deref() == Some(expected) {
                return;
            }
        }
    };
    if tokio::time::timeout(TIMEOUT, wait).await.is_err() {
        panic!(
            "agent never reached state {expected:?} (now {:?}):\n{}",
            proxy.state().await,
            agent.log()
        );
    }
}

/// State changes recorded from the moment it is created, so a quick sequence such as
/// `disconnected` → `connected` cannot be missed by subscribing too late.
pub struct StateWatcher {
    changes: zbus::proxy::PropertyStream<'static, String>,
}

impl StateWatcher {
    pub async fn new(proxy: &DeviceProxy<'static>) -> StateWatcher {
        StateWatcher {
            changes: proxy.receive_state_changed().await,
        }
    }

    /// Waits for the next change to `expected`.
    pub async fn next(&mut self, expected: &str, agent: &Agent) {
        let wait = async {
            while let Some(change) = self.changes.next().await {
                if change.get().await.ok().as_deref() == Some(expected) {
                    return;
                }
            }
        };
        if tokio::time::timeout(TIMEOUT, wait).await.is_err() {
            panic!("agent never went to state {expected:?}:\n{}", agent.log());
        }
    }
}

/// Waits for the next observed publish on `topic`.
pub async fn observed(observer: &mut Observer, topic: &str) -> Observed {
    match observer.wait_for_topic(topic, TIMEOUT).await {
        Ok(message) => message,
        Err(error) => panic!("nothing observed on {topic}: {error}"),
    }
}

/// The D-Bus error name of a failed call.
pub fn error_name(result: zbus::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(zbus::Error::MethodError(name, message, _)) => {
            let _ = message;
            name.to_string()
        }
        other => panic!("expected a D-Bus method error, got {other:?}"),
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interfaces")
}

fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).expect("random bytes");
    u128::from_le_bytes(bytes)
}

/// The integer `v` of an observed datastream message.
pub fn int_value(message: &Observed) -> i32 {
    astarte_sandbox::decode_bson(&message.payload)
        .expect("BSON payload")
        .get_i32("v")
        .expect("integer v")
}

/// Observed integer values on `topic`, in arrival order, until `distinct` different values
/// have arrived (duplicates from at-least-once delivery are kept).
pub async fn collect_values(observer: &mut Observer, topic: &str, distinct: usize) -> Vec<i32> {
    let mut seen = std::collections::HashSet::new();
    let mut values = Vec::new();
    while seen.len() < distinct {
        match observer.wait_for_topic(topic, TIMEOUT).await {
            Ok(message) => {
                let value = int_value(&message);
                seen.insert(value);
                values.push(value);
            }
            Err(error) => {
                let mut missing: Vec<i32> =
                    (0..distinct as i32).filter(|v| !seen.contains(v)).collect();
                missing.truncate(20);
                panic!(
                    "only {} of {distinct} values arrived on {topic} (missing of 0..{distinct}: {missing:?}): {error}",
                    seen.len()
                )
            }
        }
    }
    values
}

/// Each value the first time it appears, in order.
pub fn first_occurrences(values: &[i32]) -> Vec<i32> {
    let mut seen = std::collections::HashSet::new();
    values
        .iter()
        .copied()
        .filter(|value| seen.insert(*value))
        .collect()
}

/// Sends `values` one call after the other (each call returns before the next starts).
pub async fn send_ints(proxy: &DeviceProxy<'_>, path: &str, values: impl IntoIterator<Item = i32>) {
    for value in values {
        proxy
            .send(DEVICE_DATASTREAM, path, &zbus::zvariant::Value::I32(value))
            .await
            .unwrap_or_else(|error| panic!("Send {path} {value}: {error}"));
    }
}

/// `QueuedMessages`, read from the agent (not the proxy's cache, which follows the signal
/// sent at most once a second).
pub async fn queued_messages(env: &TestEnv) -> u64 {
    let connection = env.bus.connection().await;
    let properties = zbus::fdo::PropertiesProxy::builder(&connection)
        .destination(astarte_agent::dbus::BUS_NAME)
        .unwrap()
        .path(astarte_agent::dbus::OBJECT_PATH)
        .unwrap()
        .build()
        .await
        .unwrap();
    let value = properties
        .get(
            zbus::names::InterfaceName::from_static_str_unchecked(
                astarte_agent::dbus::INTERFACE_NAME,
            ),
            "QueuedMessages",
        )
        .await
        .unwrap();
    u64::try_from(value).unwrap()
}

/// Aborts the agent's TCP connection to the broker (`ss -K`, needs root): a network cut
/// that leaves the broker and its session for the device untouched.
pub fn cut_connection(agent: &Agent, broker_port: u16) {
    let pid = agent.pid();
    let listing = std::process::Command::new("ss")
        .args([
            "-tnpH",
            "dst",
            "127.0.0.1",
            "dport",
            "=",
            &format!(":{broker_port}"),
        ])
        .output()
        .expect("ss runs");
    let text = String::from_utf8_lossy(&listing.stdout);
    let local_port = text
        .lines()
        .find(|line| line.contains(&format!("pid={pid},")))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|local| local.rsplit(':').next())
        .unwrap_or_else(|| panic!("no connection of the agent (pid {pid}) to the broker:\n{text}"))
        .to_owned();
    let killed = std::process::Command::new("ss")
        .args([
            "-K",
            "src",
            "127.0.0.1",
            "sport",
            "=",
            &format!(":{local_port}"),
        ])
        .output()
        .expect("ss -K runs");
    assert!(killed.status.success(), "ss -K: {killed:?}");
}
