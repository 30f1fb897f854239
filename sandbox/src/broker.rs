//! mosquitto 2.0 as a child process, configured like Astarte's broker: mutual TLS 1.2 on a
//! loopback port, the certificate CN as username, devices confined to `<CN>/#` by an ACL.

use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);
/// Free-port races with other tests are resolved by picking another port this many times.
const PORT_ATTEMPTS: u32 = 5;
const LOG_TAIL_BYTES: u64 = 4096;

pub(crate) const CONFIG_FILE: &str = "mosquitto.conf";
pub(crate) const LOG_FILE: &str = "mosquitto.log";
const STDERR_FILE: &str = "mosquitto.stderr";
const ACL_FILE: &str = "mosquitto.acl";
const DB_DIR: &str = "mosquitto-db";
/// Files the sandbox writes for the broker's TLS.
pub(crate) const CA_FILE: &str = "ca.pem";
pub(crate) const CERT_FILE: &str = "broker.pem";
pub(crate) const KEY_FILE: &str = "broker.key";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("couldn't write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mosquitto's config can't name {0}: the path has whitespace or is not UTF-8")]
    UnusablePath(PathBuf),
    #[error("couldn't find a free loopback port")]
    FreePort(#[source] std::io::Error),
    #[error("couldn't start {MOSQUITTO}")]
    Spawn(#[source] std::io::Error),
    #[error("mosquitto exited ({status}) while starting; its log ends with:\n{log_tail}")]
    Exited {
        status: ExitStatus,
        log_tail: String,
    },
    #[error(
        "mosquitto did not listen on port {port} within {READY_TIMEOUT:?}; its log ends with:\n{log_tail}"
    )]
    NotReady { port: u16, log_tail: String },
}

/// The broker process and where it keeps its files.
pub(crate) struct Broker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Writes the config and starts mosquitto on a free port. The TLS files must already be in
    /// `dir` under [`CA_FILE`], [`CERT_FILE`] and [`KEY_FILE`].
    /// With `log_messages` off, only connections and errors are logged, not every packet
    /// (the benchmark keeps the broker's per-message cost down).
    pub async fn start(
        dir: &Path,
        persistence: bool,
        max_packet_size: u32,
        log_messages: bool,
    ) -> Result<Self, BrokerError> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            write_config(dir, port, persistence, max_packet_size, log_messages)?;
            let mut broker = Self {
                dir: dir.to_owned(),
                port,
                child: None,
            };
            match broker.spawn().await {
                Ok(()) => return Ok(broker),
                Err(err @ BrokerError::Exited { .. }) if port_taken(&err) => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or(BrokerError::FreePort(std::io::ErrorKind::AddrInUse.into())))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts mosquitto again with the same config and port (a no-op if it is running).
    pub async fn spawn(&mut self) -> Result<(), BrokerError> {
        if self.child.is_some() {
            return Ok(());
        }
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(STDERR_FILE))
            .map_err(|source| BrokerError::Write {
                path: self.dir.join(STDERR_FILE),
                source,
            })?;
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.dir.join(CONFIG_FILE))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(BrokerError::Spawn)?;
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Graceful stop (SIGTERM, so a persistent broker saves its sessions), SIGKILL after a
    /// deadline.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        reap(child);
    }

    /// Abrupt stop, like a crash: SIGKILL, nothing saved.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            reap(child);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read(self.dir.join(LOG_FILE))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    async fn wait_ready(&mut self) -> Result<(), BrokerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let log_tail = log_tail(&self.dir);
                    return Err(BrokerError::Exited { status, log_tail });
                }
            }
            let probe = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
            if probe.await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                let log_tail = log_tail(&self.dir);
                return Err(BrokerError::NotReady {
                    port: self.port,
                    log_tail,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL and wait, so no zombie is left behind.
fn reap(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn port_taken(err: &BrokerError) -> bool {
    matches!(err, BrokerError::Exited { log_tail, .. } if log_tail.contains("in use"))
}

fn free_port() -> Result<u16, BrokerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(BrokerError::FreePort)?;
    Ok(listener.local_addr().map_err(BrokerError::FreePort)?.port())
}

fn write_config(
    dir: &Path,
    port: u16,
    persistence: bool,
    max_packet_size: u32,
    log_messages: bool,
) -> Result<(), BrokerError> {
    let path = |name: &str| -> Result<String, BrokerError> {
        let full = dir.join(name);
        match full.to_str() {
            Some(s) if !s.chars().any(char::is_whitespace) => Ok(s.to_owned()),
            _ => Err(BrokerError::UnusablePath(full)),
        }
    };
    let acl = "user observer\ntopic readwrite #\n\npattern readwrite %u/#\n";
    write(&dir.join(ACL_FILE), acl)?;
    let persistence = if persistence {
        let db = dir.join(DB_DIR);
        std::fs::create_dir_all(&db).map_err(|source| BrokerError::Write {
            path: db.clone(),
            source,
        })?;
        format!(
            "persistence true\npersistence_location {}/\n",
            path(DB_DIR)?
        )
    } else {
        "persistence false\n".to_owned()
    };
    let log_type = if log_messages {
        "log_type all\n"
    } else {
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
    };
    let config = format!(
        "# Generated by astarte-sandbox: an Astarte-like broker for tests.
per_listener_settings false
# As root mosquitto would drop to user `mosquitto`, which can't read a private temp dir.
user root
listener {port} 127.0.0.1
cafile {ca}
certfile {cert}
keyfile {key}
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
max_packet_size {max_packet_size}
max_inflight_messages 100
# What the broker queues for a client that is away or slow: far more than any test sends
# (mosquitto's default, 1000, dropped part of a backlog resent while the observer reconnected;
# 0 (no limit) made mosquitto 2.0.11 drop a device whose publish the ACL denied). A test
# decides what arrives, not the broker's queue.
max_queued_messages 1000000
acl_file {acl}
{persistence}log_dest file {log}
{log_type}connection_messages true
",
        ca = path(CA_FILE)?,
        cert = path(CERT_FILE)?,
        key = path(KEY_FILE)?,
        acl = path(ACL_FILE)?,
        log = path(LOG_FILE)?,
    );
    write(&dir.join(CONFIG_FILE), &config)
}

pub(crate) fn write(path: &Path, contents: &str) -> Result<(), BrokerError> {
    std::fs::write(path, contents).map_err(|source| BrokerError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The end of the log and of mosquitto's stderr, for error messages.
fn log_tail(dir: &Path) -> String {
    [LOG_FILE, STDERR_FILE]
        .iter()
        .filter_map(|name| tail(&dir.join(name)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
        .ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
