//! The observer: an MQTT 3.1.1 client with the `observer` certificate, subscribed to
//! `<realm>/#`. It sees everything devices publish and plays Astarte's side when a test
//! publishes server-owned data or control messages.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use crate::ca::Identity;
use crate::tls::{TlsError, client_config};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// Comfortably above the broker's packet cap, so the observer never drops what the broker let in.
const MAX_PACKET: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    #[error("couldn't configure TLS for the observer")]
    Tls(#[from] TlsError),
    #[error(
        "the observer was not subscribed within {CONNECT_TIMEOUT:?} (last error: {last_error})"
    )]
    Connect { last_error: String },
    #[error("couldn't queue a publish on {topic}")]
    Publish {
        topic: String,
        #[source]
        source: rumqttc::ClientError,
    },
    #[error("the publish on {topic} was not acknowledged within {PUBLISH_TIMEOUT:?}")]
    PublishTimeout { topic: String },
    #[error("no matching message within {timeout:?}; unconsumed: {unconsumed:?}")]
    Timeout {
        timeout: Duration,
        unconsumed: Vec<String>,
    },
    #[error("the observer's connection task ended")]
    Stopped,
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

/// A message seen on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub payload: Vec<u8>,
}

enum Ack {
    /// The event loop wrote a PUBLISH with this packet id.
    Sent(u16),
    /// PUBACK or PUBCOMP for this packet id.
    Done(u16),
}

#[derive(Clone, Default)]
struct Link {
    subscribed: bool,
    last_error: Option<String>,
}

pub struct Observer {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<Observed>,
    acks: Mutex<mpsc::UnboundedReceiver<Ack>>,
    link: watch::Receiver<Link>,
    unconsumed: VecDeque<Observed>,
    history: Vec<Observed>,
    driver: JoinHandle<()>,
}

impl Observer {
    /// Connects and returns once the subscription to `<realm>/#` is acknowledged.
    pub async fn connect(config: ObserverConfig) -> Result<Self, ObserverError> {
        let tls = client_config(&config.ca_pem, Some(&config.identity))?;
        let mut options = MqttOptions::new(unique_id(), config.host, config.port);
        options
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)))
            .set_keep_alive(Duration::from_secs(30))
            // A persistent session keeps the subscription (and queued messages) across a
            // restart of a persistent broker.
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        let (client, eventloop) = AsyncClient::new(options, 64);
        let (msg_tx, messages) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (link_tx, mut link) = watch::channel(Link::default());
        let filter = format!("{}/#", config.realm);
        let driver = tokio::spawn(drive(
            eventloop,
            client.clone(),
            filter,
            msg_tx,
            ack_tx,
            link_tx,
        ));
        let subscribed = link.wait_for(|l| l.subscribed);
        let ready = matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, subscribed).await,
            Ok(Ok(_))
        );
        if !ready {
            driver.abort();
            let last_error = link.borrow().last_error.clone().unwrap_or_default();
            return Err(ObserverError::Connect { last_error });
        }
        Ok(Self {
            client,
            messages,
            acks: Mutex::new(acks),
            link,
            unconsumed: VecDeque::new(),
            history: Vec::new(),
            driver,
        })
    }

    /// The next message not yet returned by `next` or `wait_for`, in arrival order.
    pub async fn next(&mut self, timeout: Duration) -> Option<Observed> {
        if let Some(message) = self.unconsumed.pop_front() {
            return Some(message);
        }
        let deadline = Instant::now() + timeout;
        self.receive(deadline).await
    }

    /// The first not-yet-returned message matching `pred`; the ones skipped stay available to
    /// `next` and `wait_for`, and every message is kept in [`Observer::history`].
    pub async fn wait_for(
        &mut self,
        pred: impl Fn(&Observed) -> bool,
        timeout: Duration,
    ) -> Result<Observed, ObserverError> {
        if let Some(at) = self.unconsumed.iter().position(&pred) {
            return self.unconsumed.remove(at).ok_or(ObserverError::Stopped);
        }
        let deadline = Instant::now() + timeout;
        while let Some(message) = self.receive(deadline).await {
            if pred(&message) {
                return Ok(message);
            }
            self.unconsumed.push_back(message);
        }
        let unconsumed = self.unconsumed.iter().map(|m| m.topic.clone()).collect();
        Err(ObserverError::Timeout {
            timeout,
            unconsumed,
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

    /// Waits until the observer is (again) subscribed, e.g. after a broker restart.
    pub async fn wait_subscribed(&mut self, timeout: Duration) -> Result<(), ObserverError> {
        let subscribed = self.link.wait_for(|l| l.subscribed);
        let outcome = tokio::time::timeout(timeout, subscribed)
            .await
            .map(|r| r.is_ok());
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(ObserverError::Stopped),
            Err(_) => Err(ObserverError::Connect {
                last_error: self.link.borrow().last_error.clone().unwrap_or_default(),
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
        let level = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            other => return Err(ObserverError::Qos(other)),
        };
        // One publish at a time, so the next `Outgoing::Publish` is this one's packet id.
        let mut acks = self.acks.lock().await;
        while acks.try_recv().is_ok() {}
        self.client
            .publish(topic, level, false, payload)
            .await
            .map_err(|source| ObserverError::Publish {
                topic: topic.to_owned(),
                source,
            })?;
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        let timed_out = || ObserverError::PublishTimeout {
            topic: topic.to_owned(),
        };
        let mut sent = None;
        loop {
            let ack = timeout_at(deadline, acks.recv())
                .await
                .map_err(|_| timed_out())?;
            match (ack.ok_or(ObserverError::Stopped)?, sent) {
                (Ack::Sent(_), None) if qos == 0 => return Ok(()),
                (Ack::Sent(pkid), None) => sent = Some(pkid),
                (Ack::Done(pkid), Some(ours)) if pkid == ours => return Ok(()),
                _ => {}
            }
        }
    }

    async fn receive(&mut self, deadline: Instant) -> Option<Observed> {
        let message = timeout_at(deadline, self.messages.recv()).await.ok()??;
        self.history.push(message.clone());
        Some(message)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Drives the event loop for the observer's whole life, reconnecting after errors.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filter: String,
    messages: mpsc::UnboundedSender<Observed>,
    acks: mpsc::UnboundedSender<Ack>,
    link: watch::Sender<Link>,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                if connack.session_present {
                    link.send_modify(|l| l.subscribed = true);
                } else if let Err(err) = client.try_subscribe(filter.as_str(), QoS::ExactlyOnce) {
                    link.send_modify(|l| l.last_error = Some(err.to_string()));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => link.send_modify(|l| l.subscribed = true),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = messages.send(Observed {
                    topic: p.topic,
                    qos: p.qos as u8,
                    retain: p.retain,
                    payload: p.payload.to_vec(),
                });
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let _ = acks.send(Ack::Done(ack.pkid));
            }
            Ok(Event::Incoming(Packet::PubComp(comp))) => {
                let _ = acks.send(Ack::Done(comp.pkid));
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let _ = acks.send(Ack::Sent(pkid));
            }
            Ok(_) => {}
            Err(err) => {
                link.send_modify(|l| {
                    l.subscribed = false;
                    l.last_error = Some(err.to_string());
                });
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

/// Observers share the `observer` certificate but each needs its own client id on its broker.
fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("observer-{}-{n}", std::process::id())
}
