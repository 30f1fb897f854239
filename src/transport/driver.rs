//! The only task that polls rumqttc's event loop. Polling continuously keeps acknowledgements
//! and keep-alives flowing whatever the rest of the agent does; events go to the session
//! logic over a channel, and connection failures are retried here with backoff and jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{ConnectionError, Event, EventLoop, Outgoing, Packet, StateError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::replay::WriteOrder;
use crate::backoff::Backoff;

/// What the driver reports to the session logic.
#[derive(Debug)]
pub enum DriverEvent {
    /// CONNACK accepted: connection number `generation` is up.
    Connected {
        generation: u64,
        session_present: bool,
    },
    Mqtt(Event),
    Lost(LostReason),
}

/// Which connection is up right now: 0 while down, else its generation. The driver updates it
/// the moment rumqttc reports a change, before the session hears of it, so the session never
/// hands requests to a connection rumqttc has already cleaned up (they would be sent twice,
/// and ahead of the next handshake). The session can also ask that the next connection
/// starts a clean MQTT session.
#[derive(Debug, Clone, Default)]
pub struct Link(Arc<LinkState>);

#[derive(Debug, Default)]
pub struct LinkState {
    generation: AtomicU64,
    clean_next: AtomicBool,
}

impl Link {
    pub fn current(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    pub(super) fn set(&self, generation: u64) {
        self.0.generation.store(generation, Ordering::Release);
    }

    /// The next connection asks the broker for a clean session.
    pub fn request_clean_session(&self) {
        self.0.clean_next.store(true, Ordering::Release);
    }

    pub(super) fn take_clean_request(&self) -> bool {
        self.0.clean_next.swap(false, Ordering::AcqRel)
    }
}

/// Why a connection attempt or a connection failed, as far as the session cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// The broker refused our client certificate during the TLS handshake.
    CertificateRejected(String),
    /// The broker's certificate is not trusted by our roots (system roots plus `ca_file`).
    BrokerUntrusted(String),
    /// The broker refused the MQTT CONNECT.
    Refused(String),
    /// Anything else: network down, broker gone, timeout, protocol error.
    Other(String),
}

pub const RECONNECT_BASE: Duration = Duration::from_secs(1);
pub const RECONNECT_MAX: Duration = Duration::from_secs(60);
/// A connection that lasted this long resets the reconnection backoff; a broker that drops
/// the device right after accepting it (Astarte does, on invalid messages) is backed off.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(30);

/// Task: polls until `stop` fires, the client is dropped, or a DISCONNECT was sent.
pub async fn drive(
    eventloop: EventLoop,
    events: mpsc::Sender<DriverEvent>,
    link: Link,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut driver = Driver {
        eventloop,
        events,
        link,
        backoff: Backoff::new(RECONNECT_BASE, RECONNECT_MAX),
        generation: 0,
        connected_at: None,
        write_order: WriteOrder::default(),
    };
    while let Some(polled) = driver.poll(&stop).await {
        let keep_going = match polled {
            Ok(event) => driver.on_event(event).await,
            Err(ConnectionError::RequestsDone) => false,
            Err(error) => driver.on_error(error, &stop).await,
        };
        if !keep_going {
            break;
        }
    }
    Ok(())
}

/// The state of the polling loop.
struct Driver {
    eventloop: EventLoop,
    events: mpsc::Sender<DriverEvent>,
    link: Link,
    backoff: Backoff,
    generation: u64,
    connected_at: Option<Instant>,
    /// The order rumqttc's replay after a lost connection must keep (see replay.rs).
    write_order: WriteOrder,
}

impl Driver {
    /// The next event of rumqttc; `None` once `stop` fires.
    async fn poll(&mut self, stop: &CancellationToken) -> Option<Result<Event, ConnectionError>> {
        tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            polled = self.eventloop.poll() => Some(polled),
        }
    }

    /// Passes an event on; false when the driver should stop (the session is gone, or a
    /// DISCONNECT was written).
    async fn on_event(&mut self, event: Event) -> bool {
        let event = match event {
            // A clean connection only wipes what the broker kept; its own session would end
            // with it (MQTT 3.1.1), so nothing could ever be resumed. Drop it at once and
            // connect again keeping the session: the handshake then builds a session that
            // outlives this connection and this process (see resume.rs).
            Event::Incoming(Packet::ConnAck(_)) if self.eventloop.mqtt_options.clean_session() => {
                self.eventloop.clean();
                self.write_order.forget();
                self.eventloop.mqtt_options.set_clean_session(false);
                tracing::debug!("broker session wiped; reconnecting to start a lasting one");
                return true;
            }
            Event::Incoming(Packet::ConnAck(ack)) => {
                self.generation += 1;
                self.link.set(self.generation);
                self.connected_at = Some(Instant::now());
                if !ack.session_present {
                    // rumqttc keeps a parked publish across a lost session; the session logic
                    // requeues it, so drop it here or rumqttc would stop taking requests.
                    self.eventloop.state.collision = None;
                    self.write_order.forget();
                }
                DriverEvent::Connected {
                    generation: self.generation,
                    session_present: ack.session_present,
                }
            }
            event => {
                self.write_order.note(&event);
                let disconnected = matches!(event, Event::Outgoing(Outgoing::Disconnect));
                return self.events.send(DriverEvent::Mqtt(event)).await.is_ok() && !disconnected;
            }
        };
        self.events.send(event).await.is_ok()
    }

    /// The connection failed or was lost: report it, wait out the backoff; false when the
    /// driver should stop.
    async fn on_error(&mut self, error: ConnectionError, stop: &CancellationToken) -> bool {
        self.link.set(0);
        let eventloop = &mut self.eventloop;
        self.write_order
            .restore(&mut eventloop.pending, &eventloop.state.events);
        if matches!(
            error,
            ConnectionError::MqttState(StateError::Unsolicited(_))
        ) {
            // rumqttc forgets inbound QoS 2 state on reconnect; a broker resending PUBREL
            // would then fail every resumed session. Start the next one clean.
            self.eventloop.mqtt_options.set_clean_session(true);
        }
        if self
            .connected_at
            .take()
            .is_some_and(|since| since.elapsed() >= STABLE_CONNECTION)
        {
            self.backoff.reset();
        }
        if self
            .events
            .send(DriverEvent::Lost(classify(&error)))
            .await
            .is_err()
        {
            return false;
        }
        let delay = self.backoff.next_delay();
        tokio::select! {
            biased;
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        if self.link.take_clean_request() {
            self.eventloop.mqtt_options.set_clean_session(true);
        }
        true
    }
}

/// Finds the TLS cause of a connection error, if any, to tell certificate problems apart.
pub fn classify(error: &ConnectionError) -> LostReason {
    let text = crate::error_chain::error_chain(error);
    if let ConnectionError::ConnectionRefused(code) = error {
        return LostReason::Refused(format!("{code:?}"));
    }
    match find_rustls_error(error) {
        Some(rustls::Error::AlertReceived(alert)) if is_client_certificate_alert(*alert) => {
            LostReason::CertificateRejected(text)
        }
        Some(rustls::Error::InvalidCertificate(_))
        | Some(rustls::Error::NoCertificatesPresented) => LostReason::BrokerUntrusted(text),
        _ => LostReason::Other(text),
    }
}

fn is_client_certificate_alert(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
    )
}

fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // io::Error hides its payload from `source()` in some versions: look inside explicitly.
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(found) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(found);
        }
        current = error.source();
    }
    None
}
