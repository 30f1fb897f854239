//! The agent under soak: the binary named by `SOAK_AGENT` (default the debug build), started
//! and restarted by the faults, one log file per instance; and the sampler that reads its
//! resident memory and open descriptors once a second.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::common::{DeviceProxy, PrivateBus, TIMEOUT};

/// How long a (re)started agent may take to own its name and to connect (Pairing, TLS and
/// the session handshake on a loaded 2-core machine).
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(90);

/// The agent instance running now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    pub instance: u32,
    pub pid: u32,
}

pub struct Launcher {
    binary: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    bus_address: String,
    next: u32,
    pub logs: Vec<PathBuf>,
    current: watch::Sender<Option<Running>>,
}

pub struct AgentProc {
    child: Child,
    pub instance: u32,
}

impl Launcher {
    pub fn new(binary: PathBuf, config: PathBuf, dir: &Path, bus: &PrivateBus) -> Launcher {
        Launcher {
            binary,
            config,
            dir: dir.to_owned(),
            bus_address: bus.address().to_owned(),
            next: 0,
            logs: Vec::new(),
            current: watch::channel(None).0,
        }
    }

    pub fn watch(&self) -> watch::Receiver<Option<Running>> {
        self.current.subscribe()
    }

    /// Starts a new instance and waits until it owns its bus name.
    pub async fn start(&mut self, bus: &PrivateBus) -> AgentProc {
        let instance = self.next;
        self.next += 1;
        let log_path = self.dir.join(format!("soak-agent-{instance}.log"));
        let log = std::fs::File::create(&log_path).expect("agent log file");
        self.logs.push(log_path.clone());
        let appeared = bus.wait_for_name_owner(astarte_agent::dbus::BUS_NAME);
        let mut child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .env("ASTARTE_AGENT_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.binary.display()));
        tokio::select! {
            () = appeared => {}
            status = child.wait() => panic!(
                "agent exited early with {status:?}:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ),
            () = tokio::time::sleep(CONNECT_DEADLINE) => panic!("agent never owned its name"),
        }
        let pid = child.id().expect("agent runs");
        self.current.send_replace(Some(Running { instance, pid }));
        AgentProc { child, instance }
    }

    /// Sends `signal`, waits for the exit and until the bus has released the name.
    pub async fn stop(
        &mut self,
        agent: &mut AgentProc,
        signal: Signal,
        bus: &PrivateBus,
    ) -> ExitStatus {
        self.current.send_replace(None);
        let mut commands = Vec::new();
        if let Some(pid) = agent.child.id() {
            if signal == Signal::SIGKILL {
                commands = crate::common::children_of(pid);
            }
            kill(Pid::from_raw(pid as i32), signal).expect("signal delivered");
        }
        let status = tokio::time::timeout(TIMEOUT, agent.child.wait())
            .await
            .unwrap_or_else(|_| panic!("agent did not stop after {signal}"))
            .expect("wait");
        // Commands the agent ran outlive a SIGKILL (each in its own process group), as they
        // would on a device; the tests have no use for them.
        for command in commands {
            let _ = nix::sys::signal::killpg(Pid::from_raw(command as i32), Signal::SIGKILL);
        }
        let connection = bus.connection().await;
        let dbus = zbus::fdo::DBusProxy::new(&connection)
            .await
            .expect("dbus proxy");
        let deadline = Instant::now() + TIMEOUT;
        while dbus
            .name_has_owner(astarte_agent::dbus::BUS_NAME.try_into().expect("name"))
            .await
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "the bus never released the name");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        status
    }
}

impl AgentProc {
    /// The exit status, if the process is gone (it never should be, unless stopped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// Waits until the agent's `State` is `connected`, through `PropertiesChanged`.
pub async fn wait_connected(
    proxy: &DeviceProxy<'static>,
    deadline: Duration,
) -> Result<(), String> {
    use futures_util::StreamExt;
    let mut changes = proxy.receive_state_changed().await;
    let wait = async {
        if proxy.state().await.ok().as_deref() == Some("connected") {
            return;
        }
        while let Some(change) = changes.next().await {
            if change.get().await.ok().as_deref() == Some("connected") {
                return;
            }
        }
    };
    match tokio::time::timeout(deadline, wait).await {
        Ok(()) => Ok(()),
        Err(_) => Err(format!(
            "not connected within {deadline:?} (state {:?})",
            proxy.state().await
        )),
    }
}

/// One reading of the agent process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub instance: u32,
    /// Since the sampler first saw this instance.
    pub age: Duration,
    pub rss_kib: u64,
    pub fds: usize,
    /// Connected and no fault in progress: the samples the flatness checks compare.
    pub quiet: bool,
}

/// Samples the current instance every second until `stop`.
pub async fn sample(
    mut current: watch::Receiver<Option<Running>>,
    proxy: DeviceProxy<'static>,
    fault_active: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
) {
    let mut seen: Option<(u32, Instant)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let Some(running) = *current.borrow_and_update() else {
            continue;
        };
        let since = match seen {
            Some((instance, since)) if instance == running.instance => since,
            _ => {
                seen = Some((running.instance, Instant::now()));
                Instant::now()
            }
        };
        let Some(rss_kib) = rss_kib(running.pid) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", running.pid)) else {
            continue;
        };
        let fds = fds.count();
        let connected = tokio::time::timeout(Duration::from_secs(2), proxy.state())
            .await
            .is_ok_and(|state| state.as_deref() == Ok("connected"));
        let quiet = connected && !fault_active.load(Ordering::SeqCst);
        // The instance may have changed during the call: keep only consistent readings.
        if *current.borrow() == Some(running) {
            samples.lock().expect("samples").push(Sample {
                instance: running.instance,
                age: since.elapsed(),
                rss_kib,
                fds,
                quiet,
            });
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
