//! [`Sandbox`]: one self-contained Astarte stand-in (CA, broker, Pairing, tokens) in a folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use crate::broker::{self, Broker, BrokerError};
use crate::ca::{self, CaError, Identity, TestCa};
use crate::env::{self, EnvError, OBSERVER_CERT, OBSERVER_KEY, TOKEN_FILE};
use crate::events::{BrokerEvent, parse_events};
use crate::observer::{Observer, ObserverConfig, ObserverError};
use crate::pairing::{PairingError, PairingState};
use crate::stand_in::{self, DEFAULT_VALIDITY, PairingOptions, PairingStandIn};
use crate::token::TokenError;

const EVENT_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("realm {0:?} does not match ^[a-z][a-z0-9]{{0,47}}$")]
    InvalidRealm(String),
    #[error("couldn't prepare the sandbox folder {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("test CA failed")]
    Ca(#[from] CaError),
    #[error("broker failed")]
    Broker(#[from] BrokerError),
    #[error("pairing server failed")]
    Pairing(#[from] PairingError),
    #[error("token signing failed")]
    Token(#[from] TokenError),
    #[error("observer failed")]
    Observer(#[from] ObserverError),
    #[error("couldn't write the sandbox description")]
    Env(#[from] EnvError),
    #[error("no matching broker event for {client_id} within {timeout:?}; its events: {events:?}")]
    EventTimeout {
        client_id: String,
        timeout: Duration,
        events: Vec<BrokerEvent>,
    },
}

/// Astarte's cap on a message's remaining length plus the fixed header.
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 65_540;

#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Default `test`.
    pub realm: String,
    /// Lifetime of device certificates counted from issuance; default 2190h (about 91 days).
    pub certificate_validity: Duration,
    /// How far `notBefore` of device certificates is backdated; default 5 min, like CFSSL.
    pub certificate_backdate: Duration,
    /// mosquitto keeps sessions and queued messages across [`Sandbox::restart_broker`].
    pub broker_persistence: bool,
    /// mosquitto disconnects a client that sends a larger packet (Astarte's broker refuses
    /// more than 65,535 bytes of remaining length: default 65,540). A smaller value makes
    /// a message the broker refuses, like Astarte's disconnect on invalid data.
    pub broker_max_packet_size: u32,
    /// mosquitto logs every packet (`log_type all`), which [`Sandbox::device_events`] reads;
    /// default on. Off, it logs only connections and errors (for the benchmark).
    pub broker_log_messages: bool,
    /// Where to put the files; `None` for a temporary folder removed on drop.
    pub dir: Option<PathBuf>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            realm: "test".to_owned(),
            certificate_validity: DEFAULT_VALIDITY,
            certificate_backdate: ca::DEFAULT_BACKDATE,
            broker_persistence: false,
            broker_max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            broker_log_messages: true,
            dir: None,
        }
    }
}

/// A running sandbox. Dropping it kills mosquitto (and reaps it), stops the Pairing server and
/// removes its temporary folder.
pub struct Sandbox {
    dir: PathBuf,
    observer_identity: Identity,
    pairing: PairingStandIn,
    broker: Broker,
    // Last: the folder goes only after mosquitto is dead.
    _tempdir: Option<TempDir>,
}

impl Sandbox {
    pub async fn start(opts: SandboxOptions) -> Result<Self, SandboxError> {
        stand_in::check_realm(&opts.realm)?;
        let (tempdir, dir) = prepare_dir(opts.dir.as_deref())?;
        let ca = TestCa::generate("Astarte Sandbox CA")?;
        let ca_pem = ca.cert_pem()?;
        let server = ca.issue_server()?;
        let observer_identity =
            ca.issue_client("observer", Duration::from_secs(10 * 365 * 86400))?;
        for (name, contents) in [
            (broker::CA_FILE, &ca_pem),
            (broker::CERT_FILE, &server.cert_pem),
            (broker::KEY_FILE, &server.key_pem),
            (OBSERVER_CERT, &observer_identity.cert_pem),
            (OBSERVER_KEY, &observer_identity.key_pem),
        ] {
            env::write(&dir.join(name), contents)?;
        }
        let broker = Broker::start(
            &dir,
            opts.broker_persistence,
            opts.broker_max_packet_size,
            opts.broker_log_messages,
        )
        .await?;
        let pairing = PairingStandIn::start_with_ca(
            PairingOptions {
                realm: opts.realm,
                broker_url: broker_url(broker.port()),
                base_path: String::new(),
                certificate_validity: opts.certificate_validity,
                certificate_backdate: opts.certificate_backdate,
            },
            Arc::new(ca),
        )
        .await?;
        Ok(Self {
            dir,
            observer_identity,
            pairing,
            broker,
            _tempdir: tempdir,
        })
    }

    pub fn realm(&self) -> &str {
        self.pairing.realm()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `http://127.0.0.1:<port>`
    pub fn pairing_url(&self) -> String {
        self.pairing.url()
    }

    /// PEM file of the CA that signs the broker and device certificates.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(broker::CA_FILE)
    }

    pub fn ca_pem(&self) -> &str {
        self.pairing.ca_pem()
    }

    pub fn ca(&self) -> &TestCa {
        self.pairing.ca()
    }

    /// `mqtts://localhost:<port>/`, as Pairing reports it.
    pub fn broker_url(&self) -> String {
        broker_url(self.broker.port())
    }

    pub fn broker_port(&self) -> u16 {
        self.broker.port()
    }

    /// A valid agent JWT for the realm (`a_pa` `[".*::.*"]`, expiring in about ten years).
    pub fn agent_token(&self) -> String {
        self.pairing.agent_token()
    }

    /// A JWT with the given `a_pa` claim, valid for an hour.
    pub fn token_with_claims(&self, a_pa: &[&str]) -> Result<String, SandboxError> {
        self.pairing.token_with_claims(a_pa)
    }

    /// A full-access JWT that expired a minute ago.
    pub fn expired_token(&self) -> Result<String, SandboxError> {
        self.pairing.expired_token()
    }

    pub fn pairing(&self) -> &Arc<PairingState> {
        self.pairing.state()
    }

    /// A client certificate signed by the sandbox CA, outside of Pairing (e.g. for a test
    /// "device" or a CN the ACL must refuse).
    pub fn issue_client_certificate(
        &self,
        cn: &str,
        validity: Duration,
    ) -> Result<Identity, SandboxError> {
        Ok(self.pairing.ca().issue_client(cn, validity)?)
    }

    pub fn observer_config(&self) -> ObserverConfig {
        ObserverConfig {
            host: "localhost".to_owned(),
            port: self.broker.port(),
            realm: self.realm().to_owned(),
            ca_pem: self.ca_pem().to_owned(),
            identity: self.observer_identity.clone(),
        }
    }

    /// A new observer, subscribed to `<realm>/#` when this returns.
    pub async fn observer(&self) -> Result<Observer, SandboxError> {
        Ok(Observer::connect(self.observer_config()).await?)
    }

    /// mosquitto's log so far (all restarts).
    pub fn broker_log(&self) -> String {
        self.broker.log()
    }

    /// What the broker logged about `client_id`, in order.
    pub fn device_events(&self, client_id: &str) -> Vec<BrokerEvent> {
        parse_events(&self.broker.log(), client_id)
    }

    /// Waits until the broker has logged an event of `client_id` matching `pred`, and returns
    /// it. mosquitto's log is the only window on its view, so this re-reads it periodically.
    pub async fn wait_for_event(
        &self,
        client_id: &str,
        pred: impl Fn(&BrokerEvent) -> bool,
        timeout: Duration,
    ) -> Result<BrokerEvent, SandboxError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let events = self.device_events(client_id);
            if let Some(event) = events.iter().find(|e| pred(e)) {
                return Ok(event.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SandboxError::EventTimeout {
                    client_id: client_id.to_owned(),
                    timeout,
                    events,
                });
            }
            tokio::time::sleep(EVENT_POLL).await;
        }
    }

    /// Graceful stop and start on the same port (sessions survive if persistence is on).
    pub async fn restart_broker(&mut self) -> Result<(), SandboxError> {
        self.broker.stop().await;
        Ok(self.broker.spawn().await?)
    }

    /// Graceful stop (SIGTERM; a persistent broker saves its sessions).
    pub async fn stop_broker(&mut self) {
        self.broker.stop().await;
    }

    /// Crash-like stop (SIGKILL).
    pub fn kill_broker(&mut self) {
        self.broker.kill();
    }

    /// Starts a stopped broker again on the same port.
    pub async fn start_broker(&mut self) -> Result<(), SandboxError> {
        Ok(self.broker.spawn().await?)
    }

    /// mosquitto's process id while it runs.
    pub fn broker_pid(&self) -> Option<u32> {
        self.broker.pid()
    }

    pub fn broker_running(&self) -> bool {
        self.broker.is_running()
    }

    /// Writes `sandbox.env` (shell-sourceable) and the agent token file; returns the env path.
    pub fn write_env(&self) -> Result<PathBuf, SandboxError> {
        let token_file = self.dir.join(TOKEN_FILE);
        env::write(&token_file, &self.agent_token())?;
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let vars = [
            ("SANDBOX_PAIRING_URL", self.pairing_url()),
            ("SANDBOX_CA_FILE", path(&self.ca_file())),
            ("SANDBOX_TOKEN_FILE", path(&token_file)),
            ("SANDBOX_BROKER_URL", self.broker_url()),
            ("SANDBOX_REALM", self.realm().to_owned()),
            ("SANDBOX_DIR", path(&self.dir)),
        ];
        Ok(env::write_env(&self.dir, &vars)?)
    }
}

fn broker_url(port: u16) -> String {
    format!("mqtts://localhost:{port}/")
}

fn prepare_dir(dir: Option<&Path>) -> Result<(Option<TempDir>, PathBuf), SandboxError> {
    let dir_err = |path: &Path| {
        let path = path.to_owned();
        move |source| SandboxError::Dir { path, source }
    };
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(dir_err(dir))?;
            Ok((None, dir.to_owned()))
        }
        None => {
            let tmp = std::env::temp_dir();
            let tempdir = tempfile::Builder::new()
                .prefix("astarte-sandbox-")
                .tempdir()
                .map_err(dir_err(&tmp))?;
            let path = tempdir.path().to_owned();
            Ok((Some(tempdir), path))
        }
    }
}
