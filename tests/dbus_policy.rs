//! The system-bus policy `dbus/org.astarte_platform.Agent1.conf`, enforced by a real
//! `dbus-daemon` configured like Debian's system bus (default deny for method calls and name
//! ownership, EXTERNAL authentication) that `<include>`s the policy file.
//!
//! The name is owned by the real agent, running as the service user `astarte-agent` (with no
//! Pairing token it stays in `credentials-missing`, serving D-Bus). A call the policy refuses
//! fails with `org.freedesktop.DBus.Error.AccessDenied` from the bus itself; a call it lets
//! through reaches the agent, which answers it (with its own error for the made-up arguments,
//! which is fine: only the bus's refusal matters here). Callers are real users
//! (`runuser -u USER`); the bus's error names are read with `dbus-send`, which prints them
//! (busctl only prints "Access denied").
//!
//! Needs root (it creates the users and groups below, and switches to them); as another user
//! every test passes after saying it was skipped. The service user `astarte-agent` and the
//! group `astarte` are the package's own (`systemd/astarte-agent.sysusers`): the test uses them
//! when they exist. Whatever user or group the test had to create, the two callers included,
//! is removed again when the last test that needs them ends.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use zbus::fdo::DBusProxy;

const NAME: &str = "org.astarte_platform.Agent1";
const OBJECT: &str = "/org/astarte_platform/Agent1";
const DEVICE: &str = "org.astarte_platform.Agent1.Device";
const COMMANDS: &str = "org.astarte_platform.Agent1.Commands";
const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

/// The service user and the callers' group the policy names, and two callers.
const SERVICE_USER: &str = "astarte-agent";
const GROUP: &str = "astarte";
const MEMBER: &str = "astarte-policy-member";
const OUTSIDER: &str = "astarte-policy-outsider";
const ROOT: &str = "root";

const TIMEOUT: Duration = Duration::from_secs(30);

/// Data methods with arguments of their real signatures, as busctl takes them
/// (ListProperties and the Commands interface may not exist in the service yet: the policy
/// already covers them).
#[rustfmt::skip]
const DATA_METHODS: &[(&str, &str, &str)] = &[
    (DEVICE, "Send", "ssv org.example.Telemetry /room1/temperature d 21.5"),
    (DEVICE, "SendAt", "ssvx org.example.Telemetry /room1/temperature d 21.5 1700000000000"),
    (DEVICE, "SendObject", "ssa{sv} org.example.Environment /room1 1 temperature d 25.3"),
    (DEVICE, "SendObjectAt", "ssa{sv}x org.example.Environment /room1 1 temperature d 25.3 1700000000000"),
    (DEVICE, "SetProperty", "ssv org.example.Config /name s pump-7"),
    (DEVICE, "UnsetProperty", "ss org.example.Config /name"),
    (DEVICE, "GetProperty", "ss org.example.Config /name"),
    (DEVICE, "ListProperties", "s org.example.Config"),
    (COMMANDS, "Reboot", ""),
];

/// Root-only methods, on either interface that may carry them.
const ROOT_ONLY: &[(&str, &str)] = &[
    (DEVICE, "Register"),
    (DEVICE, "AddInterface"),
    (DEVICE, "RemoveInterface"),
    (COMMANDS, "Register"),
    (COMMANDS, "AddInterface"),
    (COMMANDS, "RemoveInterface"),
];

#[tokio::test]
async fn outsider_is_denied_every_data_method() {
    let Some(bus) = SystemLikeBus::start().await else {
        return;
    };
    for (interface, member, _) in DATA_METHODS {
        assert_eq!(
            bus.refusal(OUTSIDER, interface, member).await.as_deref(),
            Some(ACCESS_DENIED),
            "{interface}.{member} by an outsider"
        );
    }
}

#[tokio::test]
async fn outsider_may_introspect_read_properties_and_ping() {
    let Some(bus) = SystemLikeBus::start().await else {
        return;
    };
    let calls = [
        ("org.freedesktop.DBus.Introspectable", "Introspect", ""),
        (
            "org.freedesktop.DBus.Properties",
            "Get",
            "ss org.astarte_platform.Agent1.Device State",
        ),
        (
            "org.freedesktop.DBus.Properties",
            "GetAll",
            "s org.astarte_platform.Agent1.Device",
        ),
        ("org.freedesktop.DBus.Peer", "Ping", ""),
    ];
    for (interface, member, args) in calls {
        bus.call(OUTSIDER, interface, member, args).await;
    }
}

#[tokio::test]
async fn callers_may_not_write_properties() {
    let Some(bus) = SystemLikeBus::start().await else {
        return;
    };
    for user in [OUTSIDER, MEMBER] {
        assert_eq!(
            bus.refusal(user, "org.freedesktop.DBus.Properties", "Set")
                .await
                .as_deref(),
            Some(ACCESS_DENIED),
            "Properties.Set by {user}"
        );
    }
}

#[tokio::test]
async fn group_member_may_call_every_data_method() {
    let Some(bus) = SystemLikeBus::start().await else {
        return;
    };
    for (interface, member, args) in DATA_METHODS {
        bus.call(MEMBER, interface, member, args).await;
    }
}

#[tokio::test]
async fn group_member_is_denied_the_root_only_methods() {
    let Some(bus) = SystemLikeBus::start().await else {
        return;
    };
    for (interface, member) in ROOT_ONLY {
        assert_eq!(
            bus.refusal(MEMBER, interface, member).await.as_deref(),
            Some(ACCESS_DENIED),
            "{interface}.{member} by a member of {GROUP}"
        );
    }
}

#[tokio::test]
async fn root_may_call_data_and_root_only_methods() {
    let Some(bus) = SystemLikeBus::start().await else {
        return;
    };
    for (interface, member, args) in DATA_METHODS {
        bus.call(ROOT, interface, member, args).await;
    }
    for (interface, member) in ROOT_ONLY {
        assert_ne!(
            bus.refusal(ROOT, interface, member).await.as_deref(),
            Some(ACCESS_DENIED),
            "{interface}.{member} by root"
        );
    }
}

#[tokio::test]
async fn only_the_service_user_may_own_the_name() {
    // The bus of every other test proves that astarte-agent may own it.
    let Some(bus) = SystemLikeBus::start().await else {
        return;
    };
    for user in [OUTSIDER, MEMBER, ROOT] {
        assert_eq!(
            bus.request_name(user).await.as_deref(),
            Some(ACCESS_DENIED),
            "RequestName by {user}"
        );
    }
}

/// A private `dbus-daemon` with the system bus's default-deny policy and the project's policy
/// included, and the agent owning the name as `astarte-agent`.
struct SystemLikeBus {
    // Field order is drop order: the service first, then the bus, its directory, the users.
    _service: Service,
    _daemon: Child,
    address: String,
    _dir: TempDir,
    _users: Users,
}

impl SystemLikeBus {
    /// `None` (after saying so) when not running as root.
    async fn start() -> Option<SystemLikeBus> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "skipped: the D-Bus policy test needs root (it creates users and runs callers as them)"
            );
            return None;
        }
        let users = Users::acquire();

        let dir = tempfile::tempdir().expect("tempdir");
        // Callers run as other users: they need to reach the socket.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the bus directory");
        let socket = dir.path().join("system_bus_socket");
        let policy =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus/org.astarte_platform.Agent1.conf");
        let config = dir.path().join("system.conf");
        std::fs::write(&config, bus_config(&socket, &policy)).expect("write the bus config");

        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("dbus-daemon starts (scripts/install-deps)");
        let (daemon, address) = read_address(daemon).await;

        let connection = zbus::connection::Builder::address(address.as_str())
            .expect("address parses")
            .build()
            .await
            .expect("root connects to the bus");
        let dbus = DBusProxy::new(&connection).await.expect("bus proxy");
        let mut owner_changes = dbus
            .receive_name_owner_changed_with_args(&[(0, NAME)])
            .await
            .expect("subscribe to NameOwnerChanged");

        let mut service = start_agent(dir.path(), &address);
        let owned = async {
            while let Some(change) = owner_changes.next().await {
                if change.args().is_ok_and(|args| args.new_owner().is_some()) {
                    return;
                }
            }
        };
        tokio::select! {
            () = owned => {}
            status = service.exited() => panic!("the agent as {SERVICE_USER} exited: {status:?}"),
            () = tokio::time::sleep(TIMEOUT) => panic!("{SERVICE_USER} never owned {NAME}"),
        }

        Some(SystemLikeBus {
            _service: service,
            _daemon: daemon,
            address,
            _dir: dir,
            _users: users,
        })
    }

    /// `busctl call` as `user` (`args`: signature and values, separated by spaces); panics
    /// when the bus refuses it. The agent's own answer (often an error for made-up
    /// arguments) shows the call went through.
    async fn call(&self, user: &str, interface: &str, member: &str, args: &str) {
        let address = format!("--address={}", self.address);
        let output = run_as(
            user,
            "busctl",
            &[&address, "call", NAME, OBJECT, interface, member],
        )
        .args(args.split_whitespace())
        .output()
        .await
        .expect("busctl runs (apt-get install systemd)");
        let message = stderr(&output);
        assert!(
            output.status.success() || !message.to_lowercase().contains("access denied"),
            "{interface}.{member} by {user} was refused by the bus: {message}"
        );
    }

    /// The error name the bus answers to `interface.member` (no arguments: policy does not
    /// look at them) sent by `user` with `dbus-send`, or `None` when the call went through.
    async fn refusal(&self, user: &str, interface: &str, member: &str) -> Option<String> {
        let method = format!("{interface}.{member}");
        self.dbus_send(user, &[&format!("--dest={NAME}"), OBJECT, &method])
            .await
    }

    /// The error name of `RequestName(NAME)` sent by `user`, or `None` when it was granted.
    async fn request_name(&self, user: &str) -> Option<String> {
        let name = format!("string:{NAME}");
        let request = [
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.RequestName",
            &name,
            "uint32:0",
        ];
        self.dbus_send(user, &request).await
    }

    async fn dbus_send(&self, user: &str, args: &[&str]) -> Option<String> {
        let bus = format!("--bus={}", self.address);
        let output = run_as(user, "dbus-send", &[&bus, "--print-reply"])
            .args(args)
            .output()
            .await
            .expect("dbus-send runs (apt-get install dbus-bin)");
        error_name(&output)
    }
}

/// The agent as the service user, on the system-like bus at `address`, with its files in `dir`.
/// Started directly under the service user's ids (no `runuser` in between), so stopping it
/// stops the agent itself.
fn start_agent(dir: &Path, address: &str) -> Service {
    let user = nix::unistd::User::from_name(SERVICE_USER)
        .expect("user database")
        .expect("the service user exists");
    let store = dir.join("store");
    let interfaces = dir.join("interfaces");
    std::fs::create_dir(&store).expect("store_dir");
    std::fs::create_dir(&interfaces).expect("interfaces_dir");
    std::os::unix::fs::chown(&store, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .expect("the store belongs to the service user");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interfaces");
    for entry in std::fs::read_dir(fixtures).expect("fixtures") {
        let entry = entry.expect("fixture");
        std::fs::copy(entry.path(), interfaces.join(entry.file_name())).expect("copy a fixture");
    }
    std::fs::write(dir.join("machine-id"), "0123456789abcdef0123456789abcdef\n")
        .expect("machine-id");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "realm = \"test\"\npairing_url = \"http://127.0.0.1:9/\"\nmachine_id_file = {:?}\n\
             store_dir = {:?}\ninterfaces_dir = {:?}\n[dbus]\nbus = \"system\"\n",
            dir.join("machine-id"),
            store,
            interfaces
        ),
    )
    .expect("config");
    // std drops the supplementary groups when it changes the user id.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_astarte-agent"))
        .arg("--config")
        .arg(&config)
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .env("DBUS_SYSTEM_BUS_ADDRESS", address)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the agent starts");
    Service(child)
}

/// The agent process: stopped with SIGTERM (SIGKILL after a deadline) and reaped when dropped,
/// also when a test fails.
struct Service(std::process::Child);

impl Service {
    /// Resolves if the agent exits by itself.
    async fn exited(&mut self) -> std::process::ExitStatus {
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_as(user: &str, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", user, "--", program])
        .args(args)
        .stdin(Stdio::null());
    command
}

fn error_name(output: &Output) -> Option<String> {
    if output.status.success() {
        return None;
    }
    // dbus-send prints "Error org.freedesktop.DBus.Error.X: message" on stderr.
    let text = stderr(output);
    let name = text
        .lines()
        .find_map(|line| line.strip_prefix("Error "))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("dbus-send failed without a D-Bus error: {text}"));
    Some(name.to_owned())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn read_address(mut daemon: Child) -> (Child, String) {
    use tokio::io::AsyncBufReadExt;
    let stdout = daemon.stdout.take().expect("stdout piped");
    let mut line = String::new();
    let mut stdout = tokio::io::BufReader::new(stdout);
    let read = stdout.read_line(&mut line);
    match tokio::time::timeout(TIMEOUT, read).await {
        Ok(Ok(n)) if n > 0 => (daemon, line.trim().to_owned()),
        _ => {
            let output = daemon.wait_with_output().await.expect("dbus-daemon output");
            panic!(
                "dbus-daemon did not start (a malformed policy makes <include> fail): {}",
                stderr(&output)
            );
        }
    }
}

/// Debian's /usr/share/dbus-1/system.conf, less what needs the real system (the service
/// helper, `<user>`, syslog, fork), listening on `socket`, with the policy included.
fn bus_config(socket: &Path, policy: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
        socket = socket.display(),
        policy = policy.display(),
    )
}

/// The service user, the callers' group, a member of it and an outsider, for as long as a test
/// holds them. The first holder creates what is missing; the last one removes what was created
/// (a package's own `astarte-agent` user and `astarte` group, found existing, stay).
struct Users;

/// How many tests hold the users, and which accounts this process created.
static HOLDERS: Mutex<(usize, Vec<Account>)> = Mutex::new((0, Vec::new()));

#[derive(Debug, Clone, Copy)]
enum Account {
    Group(&'static str),
    User(&'static str),
}

impl Users {
    fn acquire() -> Users {
        let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        if holders.0 == 0 {
            holders.1 = create_accounts();
        }
        holders.0 += 1;
        Users
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        holders.0 -= 1;
        if holders.0 > 0 {
            return;
        }
        // Users before the group they belong to.
        for account in std::mem::take(&mut holders.1).into_iter().rev() {
            let (program, name) = match account {
                Account::User(name) => ("userdel", name),
                Account::Group(name) => ("groupdel", name),
            };
            let removed = std::process::Command::new(program).arg(name).output();
            if !removed.as_ref().is_ok_and(|output| output.status.success()) {
                eprintln!("couldn't remove the test's {account:?}: {removed:?}");
            }
        }
    }
}

/// Creates what is missing; returns what it created, in order.
fn create_accounts() -> Vec<Account> {
    let mut created = Vec::new();
    if !exists("group", GROUP) {
        run("groupadd", &["--system", GROUP]);
        created.push(Account::Group(GROUP));
    }
    let users: [(&'static str, &[&str]); 3] = [
        (SERVICE_USER, &[]),
        (MEMBER, &["--groups", GROUP]),
        (OUTSIDER, &[]),
    ];
    for (user, extra) in users {
        if exists("passwd", user) {
            continue;
        }
        let mut args = vec![
            "--system",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
        ];
        args.extend_from_slice(extra);
        args.push(user);
        run("useradd", &args);
        created.push(Account::User(user));
    }
    created
}

fn exists(database: &str, name: &str) -> bool {
    std::process::Command::new("getent")
        .args([database, name])
        .stdout(Stdio::null())
        .status()
        .expect("getent runs")
        .success()
}

fn run(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        stderr(&output)
    );
}
