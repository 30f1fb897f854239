//! The observer's publishing side: a rumqttc client with the observer certificate and its own
//! client id. It subscribes to nothing, so it never receives a QoS 2 message (rumqttc forgets
//! its inbound QoS 2 state on every reconnection, see [`super`]); its own unacknowledged QoS 1
//! and 2 publishes are sent again after a reconnection to a session the broker kept.

use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::{ObserverConfig, ObserverError, PUBLISH_TIMEOUT};
use crate::tls::client_config;

const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// Comfortably above the broker's packet cap, so the observer can publish whatever a test
/// wants the broker to judge.
const MAX_PACKET: usize = 1 << 20;

enum Ack {
    /// The event loop wrote a PUBLISH with this packet id.
    Sent(u16),
    /// PUBACK or PUBCOMP for this packet id.
    Done(u16),
}

#[derive(Clone, Default)]
struct Link {
    connected: bool,
    last_error: Option<String>,
}

pub(super) struct Publisher {
    client: AsyncClient,
    acks: Mutex<mpsc::UnboundedReceiver<Ack>>,
    link: watch::Receiver<Link>,
    driver: JoinHandle<()>,
}

impl Publisher {
    /// Starts connecting in the background; see [`Publisher::wait_connected`].
    pub fn start(config: &ObserverConfig, client_id: String) -> Result<Self, ObserverError> {
        let tls = client_config(&config.ca_pem, Some(&config.identity))?;
        let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
        options
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)))
            .set_keep_alive(Duration::from_secs(30))
            // A session the broker keeps lets rumqttc finish a publish interrupted by a broker
            // restart (persistent broker).
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        let (client, eventloop) = AsyncClient::new(options, 64);
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (link_tx, link) = watch::channel(Link::default());
        let driver = tokio::spawn(drive(eventloop, ack_tx, link_tx));
        Ok(Self {
            client,
            acks: Mutex::new(acks),
            link,
            driver,
        })
    }

    /// Waits for the first CONNACK; the error is the last connection error.
    pub async fn wait_connected(&mut self, deadline: Instant) -> Result<(), String> {
        let connected = self.link.wait_for(|l| l.connected);
        let outcome = timeout_at(deadline, connected).await.map(|r| r.is_ok());
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err("the publisher's connection task ended".to_owned()),
            Err(_) => Err(self
                .link
                .borrow()
                .last_error
                .clone()
                .unwrap_or_else(|| "no CONNACK".to_owned())),
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
        let stopped = || ObserverError::Stopped {
            reason: "the publisher's connection task ended".to_owned(),
        };
        let mut sent = None;
        loop {
            let ack = timeout_at(deadline, acks.recv())
                .await
                .map_err(|_| timed_out())?;
            match (ack.ok_or_else(stopped)?, sent) {
                (Ack::Sent(_), None) if qos == 0 => return Ok(()),
                (Ack::Sent(pkid), None) => sent = Some(pkid),
                (Ack::Done(pkid), Some(ours)) if pkid == ours => return Ok(()),
                _ => {}
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Drives the event loop for the publisher's whole life, reconnecting after errors.
async fn drive(
    mut eventloop: EventLoop,
    acks: mpsc::UnboundedSender<Ack>,
    link: watch::Sender<Link>,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => link.send_modify(|l| l.connected = true),
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
                    l.connected = false;
                    l.last_error = Some(err.to_string());
                });
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}
