//! The MQTT driver: what it tells the session, against a stand-in broker on a local port
//! (plain TCP, answering CONNECT by hand); how it classifies connection errors; the link.

use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError, MqttOptions, TlsError};
use rustls::AlertDescription;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::transport::driver::{classify, drive};

/// A stand-in broker: the listener, and options to connect to it.
async fn broker(clean_session: bool) -> (TcpListener, MqttOptions) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut options = MqttOptions::new("test/dev", "127.0.0.1", port);
    options
        .set_clean_session(clean_session)
        .set_manual_acks(true);
    (listener, options)
}

/// Reads one MQTT packet: its first byte (type and flags) and its body.
async fn read_packet(socket: &mut TcpStream) -> (u8, Vec<u8>) {
    let kind = socket.read_u8().await.unwrap();
    let (mut length, mut shift) = (0, 0);
    loop {
        let byte = socket.read_u8().await.unwrap();
        length |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let mut body = vec![0; length];
    socket.read_exact(&mut body).await.unwrap();
    (kind, body)
}

/// Accepts a connection and reads its CONNECT; returns whether it asks for a clean session.
async fn accept(listener: &TcpListener) -> (TcpStream, bool) {
    let (mut socket, _) = listener.accept().await.unwrap();
    let (kind, body) = read_packet(&mut socket).await;
    assert_eq!(kind, 0x10, "CONNECT");
    // Protocol name (2 + 4 bytes), level, then the connect flags.
    let clean = body[7] & 0x02 != 0;
    (socket, clean)
}

/// Reads a QoS 1 PUBLISH; returns its packet id and the last byte of its payload.
async fn read_publish(socket: &mut TcpStream) -> (u16, u8) {
    let (kind, body) = read_packet(socket).await;
    assert_eq!(kind & 0xf0, 0x30, "PUBLISH");
    let topic = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let pkid = u16::from_be_bytes([body[2 + topic], body[3 + topic]]);
    (pkid, body[body.len() - 1])
}

async fn connack(socket: &mut TcpStream, session_present: bool) {
    socket
        .write_all(&[0x20, 0x02, u8::from(session_present), 0x00])
        .await
        .unwrap();
}

/// Fails instead of hanging.
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("the driver is stuck")
}

struct Driving {
    client: AsyncClient,
    events: mpsc::Receiver<DriverEvent>,
    link: Link,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), std::convert::Infallible>>,
}

fn start(options: MqttOptions) -> Driving {
    let (client, eventloop) = AsyncClient::new(options, 10);
    let (events_tx, events) = mpsc::channel(64);
    let (link, stop) = (Link::default(), CancellationToken::new());
    let task = tokio::spawn(drive(eventloop, events_tx, link.clone(), stop.clone()));
    Driving {
        client,
        events,
        link,
        stop,
        task,
    }
}

#[tokio::test]
async fn a_clean_connection_is_replaced_at_once_by_a_lasting_one_before_the_session_hears_of_it() {
    let (listener, options) = broker(true).await;
    let mut driving = start(options);

    let (mut first, first_clean) = within(accept(&listener)).await;
    connack(&mut first, false).await;
    let (mut second, second_clean) = within(accept(&listener)).await;
    assert_eq!((first_clean, second_clean), (true, false));
    assert_eq!(driving.link.current(), 0, "no connection is up yet");
    connack(&mut second, false).await;

    let event = within(driving.events.recv()).await.unwrap();
    assert!(
        matches!(
            event,
            DriverEvent::Connected {
                generation: 1,
                session_present: false
            }
        ),
        "{event:?}"
    );
    assert_eq!(driving.link.current(), 1);
    driving.stop.cancel();
    within(driving.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_lost_connection_clears_the_link_before_it_is_reported() {
    let (listener, options) = broker(false).await;
    let mut driving = start(options);
    let (mut socket, _) = within(accept(&listener)).await;
    connack(&mut socket, true).await;
    let event = within(driving.events.recv()).await.unwrap();
    assert!(
        matches!(
            event,
            DriverEvent::Connected {
                generation: 1,
                session_present: true
            }
        ),
        "{event:?}"
    );

    drop(socket);

    let event = within(driving.events.recv()).await.unwrap();
    assert!(
        matches!(event, DriverEvent::Lost(LostReason::Other(_))),
        "{event:?}"
    );
    assert_eq!(driving.link.current(), 0);
    driving.stop.cancel();
    within(driving.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_driver_ends_once_its_disconnect_is_written() {
    let (listener, options) = broker(false).await;
    let mut driving = start(options);
    let (mut socket, _) = within(accept(&listener)).await;
    connack(&mut socket, false).await;
    within(driving.events.recv()).await.unwrap();

    driving.client.try_disconnect().unwrap();

    within(driving.task).await.unwrap().unwrap();
    let mut reported = Vec::new();
    while let Ok(event) = driving.events.try_recv() {
        reported.push(event);
    }
    assert!(
        matches!(
            reported.last(),
            Some(DriverEvent::Mqtt(Event::Outgoing(Outgoing::Disconnect)))
        ),
        "{reported:?}"
    );
}

impl Driving {
    /// Skips events until one matches.
    async fn until(&mut self, wanted: impl Fn(&DriverEvent) -> bool) {
        loop {
            let event = within(self.events.recv()).await.unwrap();
            if wanted(&event) {
                return;
            }
        }
    }

    fn publish(&self, tag: u8) {
        let topic = format!("{BASE}/{SENSOR}/a/value");
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, vec![tag])
            .unwrap();
    }
}

/// A driver connected to the stand-in broker (which kept the session), that has handed
/// publishes 1, 2 and 3 (QoS 1) to rumqttc; the broker's side of the connection.
async fn connected_and_publishing(
    listener: &TcpListener,
    options: MqttOptions,
) -> (Driving, TcpStream) {
    let mut driving = start(options);
    let (mut socket, _) = within(accept(listener)).await;
    connack(&mut socket, true).await;
    driving
        .until(|event| matches!(event, DriverEvent::Connected { .. }))
        .await;
    for tag in 1..=3 {
        driving.publish(tag);
    }
    (driving, socket)
}

#[tokio::test]
async fn a_publish_parked_behind_a_packet_id_in_use_is_dropped_with_a_lost_broker_session() {
    let (listener, mut options) = broker(false).await;
    options.set_inflight(2);
    let (mut driving, mut socket) = connected_and_publishing(&listener, options).await;
    assert_eq!(within(read_publish(&mut socket)).await, (1, 1));
    assert_eq!(within(read_publish(&mut socket)).await, (2, 2));
    // Only 2 is acknowledged: 3 gets packet id 1 again, still in use, and is parked.
    socket.write_all(&[0x40, 0x02, 0x00, 0x02]).await.unwrap();
    driving
        .until(|event| {
            matches!(
                event,
                DriverEvent::Mqtt(Event::Outgoing(Outgoing::AwaitAck(1)))
            )
        })
        .await;

    drop(socket);
    let (mut socket, _) = within(accept(&listener)).await;
    connack(&mut socket, false).await;
    driving
        .until(|event| matches!(event, DriverEvent::Connected { .. }))
        .await;
    driving.publish(4);

    let (_, tag) = within(read_publish(&mut socket)).await;
    assert_eq!(
        tag, 4,
        "rumqttc takes requests again (the session requeues 1 and 3)"
    );
    driving.stop.cancel();
    within(driving.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_replay_cut_short_is_replayed_next_time_in_the_original_order() {
    let (listener, mut options) = broker(false).await;
    // rumqttc waits this long before each replayed request: the test drops the connection
    // between two of them.
    options.set_pending_throttle(Duration::from_millis(500));
    let (driving, mut socket) = connected_and_publishing(&listener, options).await;
    for tag in 1..=3 {
        assert_eq!(
            within(read_publish(&mut socket)).await,
            (u16::from(tag), tag)
        );
    }
    drop(socket);

    // The broker takes the first replayed message and drops the connection again (Astarte
    // does on a message it refuses): 2 and 3 were not replayed yet.
    let (mut socket, _) = within(accept(&listener)).await;
    connack(&mut socket, true).await;
    assert_eq!(within(read_publish(&mut socket)).await, (1, 1));
    drop(socket);

    let (mut socket, _) = within(accept(&listener)).await;
    connack(&mut socket, true).await;
    let mut replayed = Vec::new();
    for _ in 1..=3 {
        replayed.push(within(read_publish(&mut socket)).await);
    }
    assert_eq!(replayed, [(1, 1), (2, 2), (3, 3)]);
    driving.stop.cancel();
    within(driving.task).await.unwrap().unwrap();
}

/// A TLS failure as rustls reports it through tokio-rustls and rumqttc.
fn tls_failure(error: rustls::Error) -> ConnectionError {
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
    ConnectionError::Tls(TlsError::Io(io))
}

#[test]
fn an_alert_about_the_client_certificate_is_a_rejected_certificate() {
    for alert in [
        AlertDescription::BadCertificate,
        AlertDescription::UnsupportedCertificate,
        AlertDescription::CertificateRevoked,
        AlertDescription::CertificateExpired,
        AlertDescription::CertificateUnknown,
        AlertDescription::UnknownCA,
        AlertDescription::AccessDenied,
        AlertDescription::CertificateRequired,
    ] {
        let reason = classify(&tls_failure(rustls::Error::AlertReceived(alert)));
        assert!(
            matches!(reason, LostReason::CertificateRejected(_)),
            "{alert:?}: {reason:?}"
        );
    }
}

#[test]
fn another_alert_is_another_failure() {
    let error = tls_failure(rustls::Error::AlertReceived(
        AlertDescription::HandshakeFailure,
    ));

    assert!(matches!(classify(&error), LostReason::Other(_)));
}

#[test]
fn a_broker_certificate_our_roots_do_not_trust_is_an_untrusted_broker() {
    let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
    for error in [
        ConnectionError::Tls(TlsError::TLS(unknown)),
        tls_failure(rustls::Error::NoCertificatesPresented),
    ] {
        let reason = classify(&error);
        assert!(
            matches!(reason, LostReason::BrokerUntrusted(_)),
            "{reason:?}"
        );
    }
}

#[test]
fn a_refused_connect_is_told_apart_from_network_failures() {
    let refused = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
    let network = ConnectionError::Io(std::io::ErrorKind::ConnectionRefused.into());

    assert_eq!(
        classify(&refused),
        LostReason::Refused("NotAuthorized".into())
    );
    assert!(matches!(classify(&network), LostReason::Other(_)));
}

#[test]
fn the_link_holds_the_generation_of_the_connection_that_is_up_for_every_clone() {
    let link = Link::default();
    let clone = link.clone();
    assert_eq!(clone.current(), 0);

    link.set(3);

    assert_eq!(clone.current(), 3);
}

#[test]
fn a_request_for_a_clean_session_is_taken_once() {
    let link = Link::default();
    assert!(!link.take_clean_request());

    link.clone().request_clean_session();

    assert!(link.take_clean_request());
    assert!(!link.take_clean_request());
}
