//! The only task that polls rumqttc's event loop. Polling continuously keeps acknowledgements
//! and keep-alives flowing whatever the rest of the agent does; events go to the session
//! logic over a channel, and connection failures are retried here with backoff and jitter.

use std::time::Duration;

use rumqttc::{ConnectionError, Event, EventLoop, StateError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// What the driver reports to the session logic.
#[derive(Debug)]
pub enum DriverEvent {
    Mqtt(Event),
    Lost(LostReason),
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

/// Polls until `stop` fires, the client is dropped, or a DISCONNECT was sent.
pub async fn drive(
    mut eventloop: EventLoop,
    events: mpsc::Sender<DriverEvent>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(RECONNECT_BASE, RECONNECT_MAX);
    loop {
        let polled = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            polled = eventloop.poll() => polled,
        };
        match polled {
            Ok(event) => {
                let connected = matches!(event, Event::Incoming(rumqttc::Packet::ConnAck(_)));
                let disconnected = matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect));
                if connected {
                    backoff.reset();
                    // Only the first connection of an event loop starts clean (see session.rs).
                    eventloop.mqtt_options.set_clean_session(false);
                }
                if events.send(DriverEvent::Mqtt(event)).await.is_err() || disconnected {
                    return;
                }
            }
            Err(ConnectionError::RequestsDone) => return,
            Err(error) => {
                if matches!(
                    error,
                    ConnectionError::MqttState(StateError::Unsolicited(_))
                ) {
                    // rumqttc forgets inbound QoS 2 state on reconnect; a broker resending PUBREL
                    // would then fail every resumed session. Start the next one clean.
                    eventloop.mqtt_options.set_clean_session(true);
                }
                let reason = classify(&error);
                if events.send(DriverEvent::Lost(reason)).await.is_err() {
                    return;
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Finds the TLS cause of a connection error, if any, to tell certificate problems apart.
pub fn classify(error: &ConnectionError) -> LostReason {
    let text = crate::check::error_chain(error);
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
        {
            if let Some(found) = inner.downcast_ref::<rustls::Error>() {
                return Some(found);
            }
        }
        current = error.source();
    }
    None
}
