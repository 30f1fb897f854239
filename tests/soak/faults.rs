//! The faults: each kind is injected, held for a while, then ended, and the soak waits until
//! the agent is connected again (its recovery). Each kind names the error log lines it may
//! cause.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use astarte_sandbox::Verification;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::agent::{AgentProc, CONNECT_DEADLINE, Launcher, wait_connected};
use crate::common::{DeviceProxy, TestEnv};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    BrokerRestart,
    BrokerPause,
    Pairing503,
    AgentTerm,
    AgentKill,
    CertificateExpiry,
    SecretDeleted,
    DiskFull,
}

pub const ALL: [FaultKind; 8] = [
    FaultKind::BrokerRestart,
    FaultKind::BrokerPause,
    FaultKind::Pairing503,
    FaultKind::AgentTerm,
    FaultKind::AgentKill,
    FaultKind::CertificateExpiry,
    FaultKind::SecretDeleted,
    FaultKind::DiskFull,
];

/// The broker stays stopped past the agent's MQTT keep-alive (30 s).
const PAUSE: Duration = Duration::from_secs(40);
const PAIRING_DOWN: Duration = Duration::from_secs(10);
const DISK_FULL: Duration = Duration::from_secs(8);
/// Lifetime of the certificates Pairing issues during a certificate-expiry fault.
const SHORT_CERTIFICATE: Duration = Duration::from_secs(16);

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::BrokerRestart => "broker restart",
            FaultKind::BrokerPause => "broker paused (SIGSTOP)",
            FaultKind::Pairing503 => "Pairing 503 + agent restart",
            FaultKind::AgentTerm => "agent SIGTERM + restart",
            FaultKind::AgentKill => "agent SIGKILL + restart",
            FaultKind::CertificateExpiry => "certificate expiry",
            FaultKind::SecretDeleted => "credentials secret deleted",
            FaultKind::DiskFull => "disk full",
        }
    }

    /// Substrings of the error lines this fault explains (between its start and a few
    /// seconds after the agent recovered).
    pub fn allowed_errors(self) -> &'static [&'static str] {
        match self {
            // Writes fail while the disk is full: the episode's one log line, and each
            // command request that could not enter the ledger (it is redelivered).
            FaultKind::DiskFull => &[
                "couldn't write to the store",
                "couldn't record the command in the ledger",
            ],
            FaultKind::BrokerRestart
            | FaultKind::BrokerPause
            | FaultKind::Pairing503
            | FaultKind::AgentTerm
            | FaultKind::AgentKill
            | FaultKind::CertificateExpiry
            | FaultKind::SecretDeleted => &[],
        }
    }
}

/// One injected fault: from its start until the agent was connected again.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub recovery: Duration,
    /// Set when the agent did not recover in time.
    pub failure: Option<String>,
}

/// A small tmpfs under `store_dir` that a filler file fills up (root only).
pub struct SmallDisk {
    pub mount: PathBuf,
}

impl SmallDisk {
    pub fn mount(path: PathBuf) -> Option<SmallDisk> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        std::fs::create_dir_all(&path).expect("store dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount runs");
        status.success().then_some(SmallDisk { mount: path })
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("soak-filler")
    }

    /// Takes every free byte.
    fn fill(&self) {
        let stat = nix::sys::statvfs::statvfs(&self.mount).expect("statvfs");
        let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
        let file = std::fs::File::create(self.filler()).expect("filler");
        let mut left = free as i64;
        // fallocate stops at ENOSPC; retry smaller chunks to take the last pages.
        let mut chunk = left.max(4096);
        while chunk >= 4096 {
            let offset = (free as i64) - left;
            match nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), offset, chunk) {
                Ok(()) => left -= chunk,
                Err(_) => chunk /= 2,
            }
        }
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .status();
    }
}

/// What the faults act on.
pub struct Target<'a> {
    pub env: &'a mut TestEnv,
    pub launcher: &'a mut Launcher,
    pub agent: AgentProc,
    pub disk: Option<SmallDisk>,
    /// When the agent was stopped by a fault (for `interrupted` commands).
    pub agent_stops: Vec<Instant>,
    /// Exits nobody asked for.
    pub crashes: Vec<String>,
}

impl Target<'_> {
    pub async fn proxy(&self) -> DeviceProxy<'static> {
        self.env.proxy().await
    }

    async fn restart(&mut self, signal: Signal) {
        if let Some(status) = self.agent.exited() {
            self.crashes.push(format!(
                "instance {} exited with {status}",
                self.agent.instance
            ));
        }
        self.agent_stops.push(Instant::now());
        let status = self
            .launcher
            .stop(&mut self.agent, signal, &self.env.bus)
            .await;
        if signal == Signal::SIGTERM && !status.success() {
            self.crashes.push(format!(
                "instance {} stopped with {status} after SIGTERM",
                self.agent.instance
            ));
        }
        self.agent = self.launcher.start(&self.env.bus).await;
    }

    async fn connected(&self) -> Result<(), String> {
        wait_connected(&self.proxy().await, CONNECT_DEADLINE).await
    }

    /// Injects `kind`, ends it, and waits for the agent to recover.
    pub async fn inject(&mut self, kind: FaultKind) -> Fault {
        let start = SystemTime::now();
        let began = Instant::now();
        let failure = self.run(kind).await.err();
        Fault {
            kind,
            start,
            end: SystemTime::now(),
            recovery: began.elapsed(),
            failure,
        }
    }

    async fn run(&mut self, kind: FaultKind) -> Result<(), String> {
        let pairing = self.env.sandbox.pairing().clone();
        let credentials = self.env.path("store/credentials");
        match kind {
            FaultKind::BrokerRestart => {
                self.env
                    .sandbox
                    .restart_broker()
                    .await
                    .map_err(|e| e.to_string())?;
            }
            FaultKind::BrokerPause => {
                let pid = self.env.sandbox.broker_pid().ok_or("no broker")?;
                let pid = Pid::from_raw(pid as i32);
                kill(pid, Signal::SIGSTOP).map_err(|e| e.to_string())?;
                tokio::time::sleep(PAUSE).await;
                kill(pid, Signal::SIGCONT).map_err(|e| e.to_string())?;
            }
            FaultKind::Pairing503 => {
                // Pairing is down while the agent restarts: stored credentials must do.
                pairing.fail_next(u32::MAX, 503);
                self.restart(Signal::SIGTERM).await;
                let connected = self.connected().await;
                tokio::time::sleep(PAIRING_DOWN).await;
                pairing.fail_next(0, 503);
                connected?;
            }
            FaultKind::AgentTerm => self.restart(Signal::SIGTERM).await,
            FaultKind::AgentKill => self.restart(Signal::SIGKILL).await,
            FaultKind::CertificateExpiry => {
                // Pairing issues short-lived certificates; the agent is made to take one
                // (its certificate removed, then restarted) and must renew it, twice, before
                // it expires; then a normal one replaces it.
                let before = pairing.certificate_requests(&self.env.device_id);
                pairing.set_certificate_validity(Some(SHORT_CERTIFICATE));
                let _ = std::fs::remove_file(credentials.join("client.crt"));
                self.restart(Signal::SIGTERM).await;
                let renewed = self
                    .until(|| pairing.certificate_requests(&self.env.device_id) >= before + 3)
                    .await;
                pairing.set_certificate_validity(None);
                renewed?;
                self.until_long_certificate().await?;
            }
            FaultKind::SecretDeleted => {
                std::fs::remove_file(credentials.join("secret")).map_err(|e| e.to_string())?;
                let before = pairing.registrations(&self.env.device_id);
                self.restart(Signal::SIGTERM).await;
                self.until(|| pairing.registrations(&self.env.device_id) > before)
                    .await?;
            }
            FaultKind::DiskFull => {
                let disk = self.disk.as_ref().ok_or("no small disk")?;
                disk.fill();
                tokio::time::sleep(DISK_FULL).await;
                disk.free();
            }
        }
        self.connected().await
    }

    /// Waits (polling the sandbox's counters, which have no event) until `done`.
    async fn until(&self, done: impl Fn() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + CONNECT_DEADLINE;
        while !done() {
            if Instant::now() > deadline {
                return Err("the expected Pairing requests never came".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Waits until Pairing issued the agent a certificate valid for more than a day.
    async fn until_long_certificate(&self) -> Result<(), String> {
        let pairing = self.env.sandbox.pairing();
        let ca = self.env.sandbox.ca();
        let long = || {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            pairing
                .issued_certificates(&self.env.device_id)
                .last()
                .is_some_and(|pem| matches!(ca.verify(pem), Verification::Valid { until_unix } if until_unix > now + 86_400))
        };
        self.until(long).await
    }
}
