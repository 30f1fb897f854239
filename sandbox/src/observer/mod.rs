//! The observer: Astarte's side of the broker, with the `observer` certificate. It sees
//! everything devices publish (subscribed to `<realm>/#` at QoS 2, with a persistent session)
//! and plays Astarte when a test publishes server-owned data or control messages.
//!
//! It is two MQTT connections with their own client ids:
//!
//! - receiving: a `mosquitto_sub` child process ([`subscriber`]). rumqttc can't be used on this
//!   side: it forgets its inbound QoS 2 state on every reconnection, so when a persistent
//!   broker, restarted in the middle of a QoS 2 exchange, resends its PUBREL right after
//!   CONNACK, rumqttc takes it for an unsolicited PUBREL and drops the connection; the broker
//!   resends it on the next connection, and so on: the observer never received anything again.
//!   rumqttc can't answer that PUBREL with a PUBCOMP by itself either. libmosquitto keeps the
//!   state across reconnections and answers every PUBREL.
//! - publishing: a rumqttc client ([`publisher`]) with no subscription, hence no inbound QoS 2.
//!
//! The observer's own publishes match its subscription, so they come back to it like any other
//! message.

mod publisher;
mod subscriber;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout_at};

use crate::ca::Identity;
use crate::tls::TlsError;
use publisher::Publisher;
use subscriber::{Invocation, Link, Subscriber};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    #[error("couldn't configure TLS for the observer")]
    Tls(#[from] TlsError),
    #[error("the observer needs {program}, which is not in PATH: install the {package} package")]
    Missing {
        program: &'static str,
        package: &'static str,
    },
    #[error("couldn't write the observer's certificate files")]
    Files(#[source] std::io::Error),
    #[error("couldn't start the observer's {}", subscriber::PROGRAM)]
    Spawn(#[source] std::io::Error),
    #[error("the observer was not connected within {CONNECT_TIMEOUT:?} (last error: {last_error})")]
    Connect { last_error: String },
    #[error("couldn't queue a publish on {topic}")]
    Publish {
        topic: String,
        #[source]
        source: rumqttc::ClientError,
    },
    #[error("the publish on {topic} was not acknowledged within {PUBLISH_TIMEOUT:?}")]
    PublishTimeout { topic: String },
    #[error("no matching message within {timeout:?}; unconsumed: {unconsumed:?}; {subscriber}")]
    Timeout {
        timeout: Duration,
        unconsumed: Vec<String>,
        /// The state of the receiving side (its exits, lines that did not parse).
        subscriber: String,
    },
    #[error("the observer stopped: {reason}")]
    Stopped { reason: String },
    #[error("QoS {0} is not 0, 1 or 2")]
    Qos(u8),
}

/// Where and as whom the observer connects.
#[derive(Debug, Clone)]
pub struct ObserverConfig {
    pub host: String,
    pub port: u16,
    pub realm: String,
    pub ca_pem: String,
    pub identity: Identity,
}

/// A message seen on the broker, with the QoS it was delivered with (the subscription is
/// QoS 2, so the QoS it was published with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub payload: Vec<u8>,
}

/// Dropping the observer kills and reaps its mosquitto_sub, closes its connections and
/// removes its files.
pub struct Observer {
    subscriber: Subscriber,
    publisher: Publisher,
    messages: mpsc::UnboundedReceiver<Observed>,
    link: watch::Receiver<Link>,
    unconsumed: VecDeque<Observed>,
    history: Vec<Observed>,
    // Last: the files go only after mosquitto_sub is dead.
    _files: TempDir,
}

impl Observer {
    /// Connects both sides and returns once the subscription to `<realm>/#` is acknowledged.
    /// Fails if `mosquitto_sub` is missing, or exits before it is subscribed (with its
    /// stderr).
    pub async fn connect(config: ObserverConfig) -> Result<Self, ObserverError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let files = write_files(&config).map_err(ObserverError::Files)?;
        let id = unique_id();
        let args = subscriber_args(&config, &id, files.path());
        let invocation = Invocation::new(files.path(), id.clone(), args)?;
        let mut publisher = Publisher::start(&config, format!("{id}-publisher"))?;
        let (message_tx, messages) = mpsc::unbounded_channel();
        let (link_tx, mut link) = watch::channel(Link::default());
        let subscriber = Subscriber::start(invocation, message_tx, link_tx)?;
        let ready = link.wait_for(|l| l.subscribed || l.failed.is_some());
        let outcome = timeout_at(deadline, ready)
            .await
            .map(|r| r.map(|l| l.failed.clone()));
        match outcome {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(reason))) => return Err(ObserverError::Stopped { reason }),
            Ok(Err(_)) => {
                return Err(ObserverError::Stopped {
                    reason: "the subscriber's thread ended".to_owned(),
                });
            }
            Err(_) => {
                return Err(ObserverError::Connect {
                    last_error: link.borrow().summary(),
                });
            }
        }
        publisher
            .wait_connected(deadline)
            .await
            .map_err(|last_error| ObserverError::Connect {
                last_error: format!("the publisher: {last_error}"),
            })?;
        Ok(Self {
            subscriber,
            publisher,
            messages,
            link,
            unconsumed: VecDeque::new(),
            history: Vec::new(),
            _files: files,
        })
    }

    /// The next message not yet returned by `next` or `wait_for`, in arrival order; `None`
    /// after `timeout`, or at once if the observer stopped receiving.
    pub async fn next(&mut self, timeout: Duration) -> Option<Observed> {
        if let Some(message) = self.unconsumed.pop_front() {
            return Some(message);
        }
        let deadline = Instant::now() + timeout;
        self.receive(deadline).await.ok().flatten()
    }

    /// The first not-yet-returned message matching `pred`; the ones skipped stay available to
    /// `next` and `wait_for`, and every message is kept in [`Observer::history`].
    pub async fn wait_for(
        &mut self,
        pred: impl Fn(&Observed) -> bool,
        timeout: Duration,
    ) -> Result<Observed, ObserverError> {
        if let Some(at) = self.unconsumed.iter().position(&pred) {
            if let Some(message) = self.unconsumed.remove(at) {
                return Ok(message);
            }
        }
        let deadline = Instant::now() + timeout;
        while let Some(message) = self.receive(deadline).await? {
            if pred(&message) {
                return Ok(message);
            }
            self.unconsumed.push_back(message);
        }
        let unconsumed = self.unconsumed.iter().map(|m| m.topic.clone()).collect();
        Err(ObserverError::Timeout {
            timeout,
            unconsumed,
            subscriber: self.link.borrow().summary(),
        })
    }

    /// The first not-yet-returned message on exactly `topic`.
    pub async fn wait_for_topic(
        &mut self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Observed, ObserverError> {
        self.wait_for(|m| m.topic == topic, timeout).await
    }

    /// Every message received so far (including the observer's own publishes, which match its
    /// subscription), in arrival order.
    pub fn history(&self) -> &[Observed] {
        &self.history
    }

    /// Waits until the observer is (again) subscribed, e.g. after a broker restart. The
    /// receiving side learns that a connection was lost when it reconnects (within a second
    /// or so), so right after a restart this may still see the old subscription.
    pub async fn wait_subscribed(&mut self, timeout: Duration) -> Result<(), ObserverError> {
        let subscribed = self.link.wait_for(|l| l.subscribed || l.failed.is_some());
        let outcome = tokio::time::timeout(timeout, subscribed)
            .await
            .map(|r| r.map(|l| l.failed.clone()));
        match outcome {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(reason))) => Err(ObserverError::Stopped { reason }),
            Ok(Err(_)) => Err(ObserverError::Stopped {
                reason: "the subscriber's thread ended".to_owned(),
            }),
            Err(_) => Err(ObserverError::Connect {
                last_error: self.link.borrow().summary(),
            }),
        }
    }

    /// Publishes (retain off, as Astarte does) and returns once the broker acknowledged it:
    /// written for QoS 0, PUBACK for QoS 1, PUBCOMP for QoS 2.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
    ) -> Result<(), ObserverError> {
        self.publisher.publish(topic, payload, qos).await
    }

    /// The process id of the running `mosquitto_sub` (`None` while one that exited is being
    /// replaced).
    pub fn subscriber_pid(&self) -> Option<u32> {
        self.subscriber.pid()
    }

    /// `Ok(None)` at the deadline; `Stopped` once nothing can arrive any more.
    async fn receive(&mut self, deadline: Instant) -> Result<Option<Observed>, ObserverError> {
        match timeout_at(deadline, self.messages.recv()).await {
            Ok(Some(message)) => {
                self.history.push(message.clone());
                Ok(Some(message))
            }
            Ok(None) => Err(ObserverError::Stopped {
                reason: self.link.borrow().summary(),
            }),
            Err(_) => Ok(None),
        }
    }
}

/// The CA, certificate and key (owner-only) in a private temporary folder.
fn write_files(config: &ObserverConfig) -> std::io::Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("astarte-observer-")
        .tempdir()?;
    let write = |name: &str, contents: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.path().join(name))?
            .write_all(contents.as_bytes())
    };
    write(CA_FILE, &config.ca_pem)?;
    write(CERT_FILE, &config.identity.cert_pem)?;
    write(KEY_FILE, &config.identity.key_pem)?;
    Ok(dir)
}

const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "observer.pem";
const KEY_FILE: &str = "observer.key";

/// A persistent session (`-c`) subscribed to `<realm>/#` at QoS 2, with debug lines (`-d`)
/// for the connection state and messages in [`subscriber::FORMAT`].
fn subscriber_args(config: &ObserverConfig, id: &str, dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut arg = |flag: &str, value: OsString| {
        args.push(flag.into());
        args.push(value);
    };
    arg("-h", config.host.clone().into());
    arg("-p", config.port.to_string().into());
    arg("--cafile", dir.join(CA_FILE).into());
    arg("--cert", dir.join(CERT_FILE).into());
    arg("--key", dir.join(KEY_FILE).into());
    arg("-i", id.into());
    arg("-q", "2".into());
    arg("-t", format!("{}/#", config.realm).into());
    arg("-F", subscriber::FORMAT.into());
    args.push("-c".into());
    args.push("-d".into());
    args
}

/// Observers share the `observer` certificate but each needs its own client ids on its broker.
fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("observer-{}-{n}", std::process::id())
}
