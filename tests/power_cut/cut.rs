//! One power cut: the agent is SIGKILLed, the lazy filesystem under `store_dir` throws away
//! everything that was not fsynced, it is mounted again and the agent restarted. Special cuts
//! fall in the middle of a credentials recovery or of a certificate renewal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use astarte_sandbox::LazyFs;
use nix::sys::signal::Signal;

use crate::agent::{AgentProc, CONNECT_DEADLINE, Launcher, wait_connected};
use crate::common::TestEnv;

/// Lifetime of the certificates Pairing issues for the renewal cut: renewal is due halfway.
const SHORT_CERTIFICATE: Duration = Duration::from_secs(16);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutKind {
    /// At a random moment under load.
    Load,
    /// While the agent registers again after losing its credentials secret.
    Recovery,
    /// While the agent renews its client certificate.
    Renewal,
}

impl CutKind {
    pub fn name(self) -> &'static str {
        match self {
            CutKind::Load => "under load",
            CutKind::Recovery => "during a credentials recovery",
            CutKind::Renewal => "during a certificate renewal",
        }
    }
}

/// `count` cuts under load, one of them (from 3 cuts on) during a recovery and one during a
/// renewal, at seeded positions.
pub fn plan(count: usize, rng: &mut fastrand::Rng) -> Vec<CutKind> {
    let mut kinds = vec![CutKind::Load; count];
    if count >= 3 {
        let recovery = rng.usize(1..count);
        let mut renewal = rng.usize(1..count);
        while renewal == recovery {
            renewal = rng.usize(1..count);
        }
        kinds[recovery] = CutKind::Recovery;
        kinds[renewal] = CutKind::Renewal;
    }
    kinds
}

/// What one cut did.
#[derive(Debug, Clone)]
pub struct Cut {
    pub kind: CutKind,
    pub lost_files: u64,
    pub lost_bytes: u64,
    pub lost_entries: u64,
    /// From the cut until the agent was connected again.
    pub recovery: Duration,
    /// The database was found corrupt and moved aside after this cut...
    pub moved_aside: bool,
    /// ...and the agent said so in its log.
    pub reported: bool,
    pub failure: Option<String>,
}

/// The agent on its lazy `store_dir`.
pub struct Rig<'a> {
    pub env: &'a mut TestEnv,
    launcher: Launcher,
    agent: AgentProc,
    lazy: Option<LazyFs>,
    backing: PathBuf,
    store: PathBuf,
    agent_stops: Vec<Instant>,
    /// When the agent was down after each cut (from the cut to its restart).
    pub downtimes: Vec<(Instant, Instant)>,
}

impl<'a> Rig<'a> {
    /// Mounts the lazy filesystem as `store_dir`, starts the agent and waits until it is
    /// connected.
    pub async fn start(env: &'a mut TestEnv, mut launcher: Launcher) -> Rig<'a> {
        let (backing, store) = (env.path("store-backing"), env.path("store"));
        std::fs::create_dir_all(&backing).expect("backing folder");
        std::fs::create_dir_all(&store).expect("mount point");
        let lazy = LazyFs::mount(&backing, &store)
            .expect("the lazy filesystem mounts (root, /dev/fuse, apt-get install fuse3)");
        let agent = launcher.start(&env.bus).await;
        wait_connected(&env.proxy().await, CONNECT_DEADLINE)
            .await
            .expect("first connection");
        Rig {
            env,
            launcher,
            agent,
            lazy: Some(lazy),
            backing,
            store,
            agent_stops: Vec::new(),
            downtimes: Vec::new(),
        }
    }

    /// One cut of `kind`, then the agent back up.
    pub async fn cut(&mut self, kind: CutKind, rng: &mut fastrand::Rng) -> Cut {
        if let Err(failure) = self.prepare(kind).await {
            return self.failed(kind, failure);
        }
        if kind == CutKind::Load {
            // Somewhere in the next moments, as a real cut would.
            tokio::time::sleep(Duration::from_millis(rng.u64(0..200))).await;
        }
        self.stop_agent(Signal::SIGKILL).await;
        let cut_at = Instant::now();
        let stats = match self.lazy.take().map(LazyFs::cut) {
            Some(Ok(stats)) => stats,
            Some(Err(error)) => return self.failed(kind, format!("the cut failed: {error}")),
            None => return self.failed(kind, "no filesystem to cut".into()),
        };
        match LazyFs::mount(&self.backing, &self.store) {
            Ok(lazy) => self.lazy = Some(lazy),
            Err(error) => return self.failed(kind, format!("remount failed: {error}")),
        }
        let corrupt_before = corrupt_files(&self.store);
        if kind == CutKind::Renewal {
            self.env.sandbox.pairing().set_certificate_validity(None);
        }
        // The device stays off a while: commands sent meanwhile wait in the broker.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..2500))).await;
        self.downtimes.push((cut_at, Instant::now()));
        self.agent = self.launcher.start(&self.env.bus).await;
        let connected = wait_connected(&self.env.proxy().await, CONNECT_DEADLINE).await;
        let log = self.current_log();
        Cut {
            kind,
            lost_files: stats.files_discarded,
            lost_bytes: stats.bytes_discarded,
            lost_entries: stats.entries_discarded,
            recovery: cut_at.elapsed(),
            moved_aside: corrupt_files(&self.store) > corrupt_before,
            reported: log.contains("moved it aside"),
            failure: connected.err(),
        }
    }

    /// Brings the agent where a special cut must fall.
    async fn prepare(&mut self, kind: CutKind) -> Result<(), String> {
        match kind {
            CutKind::Load => Ok(()),
            CutKind::Recovery => {
                self.stop_agent(Signal::SIGTERM).await;
                remove_durably(&self.store.join("credentials/secret"))?;
                self.agent = self.launcher.start(&self.env.bus).await;
                // A missing secret is registered again like a refused one (the recovery
                // marker is written first either way).
                self.wait_for_log(&["registering the device", "recovering by registering again"])
                    .await
            }
            CutKind::Renewal => {
                self.env
                    .sandbox
                    .pairing()
                    .set_certificate_validity(Some(SHORT_CERTIFICATE));
                self.stop_agent(Signal::SIGTERM).await;
                remove_durably(&self.store.join("credentials/client.crt"))?;
                self.agent = self.launcher.start(&self.env.bus).await;
                self.wait_for_log(&["the client certificate is due for renewal"])
                    .await
            }
        }
    }

    async fn stop_agent(&mut self, signal: Signal) {
        self.agent_stops.push(Instant::now());
        self.launcher
            .stop(&mut self.agent, signal, &self.env.bus)
            .await;
    }

    fn current_log(&self) -> String {
        self.launcher
            .logs
            .last()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Waits until the current instance logs one of `needles`.
    async fn wait_for_log(&self, needles: &[&str]) -> Result<(), String> {
        let deadline = Instant::now() + CONNECT_DEADLINE;
        while !needles
            .iter()
            .any(|needle| self.current_log().contains(needle))
        {
            if Instant::now() > deadline {
                return Err(format!("the agent never logged any of {needles:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn failed(&self, kind: CutKind, failure: String) -> Cut {
        Cut {
            kind,
            lost_files: 0,
            lost_bytes: 0,
            lost_entries: 0,
            recovery: Duration::ZERO,
            moved_aside: false,
            reported: false,
            failure: Some(failure),
        }
    }

    /// Stops the agent cleanly and unmounts the filesystem (everything made durable); the
    /// times the agent was stopped, when it was down after the cuts, and the launcher (its
    /// logs).
    pub async fn stop(mut self) -> Stopped {
        self.stop_agent(Signal::SIGTERM).await;
        if let Some(lazy) = self.lazy.take() {
            lazy.unmount().expect("clean unmount");
        }
        Stopped {
            agent_stops: self.agent_stops,
            downtimes: self.downtimes,
            launcher: self.launcher,
        }
    }
}

/// What is left of the rig once the agent stopped.
pub struct Stopped {
    pub agent_stops: Vec<Instant>,
    pub downtimes: Vec<(Instant, Instant)>,
    pub launcher: Launcher,
}

/// Removes `path` and makes the removal durable (fsync of its folder), as an operator's
/// `rm` followed by `sync` would.
fn remove_durably(path: &Path) -> Result<(), String> {
    std::fs::remove_file(path).map_err(|e| format!("removing {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| format!("syncing {}: {e}", dir.display()))
}

/// `agent.db.corrupt-*` files in the store.
fn corrupt_files(store: &Path) -> usize {
    std::fs::read_dir(store)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("agent.db.corrupt-")
                })
                .count()
        })
        .unwrap_or(0)
}
