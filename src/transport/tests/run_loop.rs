//! The session's run loop, how a session ends, and its stop (flush, DISCONNECT, whether the
//! broker's session may be resumed). Events come through the driver's channel; the clock is
//! paused where a test says how long something waits, so that waiting costs no time.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use rumqttc::{Incoming, PubAck, Publish};
use tokio::time::Instant;

use super::*;
use crate::tasks::Task;
use crate::transport::resume::{FILE_NAME, ResumeRecord};
use crate::transport::session::{self, Endpoint, FLUSH_TIMEOUT};

/// A stand-in for the MQTT driver task: ends when it is told to stop.
fn driver_task(rig: &Rig) -> Task {
    rig.context.network.spawn("mqtt-driver", |stop| async move {
        stop.cancelled().await;
        Ok::<(), Infallible>(())
    })
}

/// Fails instead of hanging (with the clock paused, a wait for nothing ends at once).
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(600), future)
        .await
        .expect("the session is stuck")
}

fn connected(generation: u64, session_present: bool) -> DriverEvent {
    DriverEvent::Connected {
        generation,
        session_present,
    }
}

fn puback(pkid: u16) -> DriverEvent {
    mqtt(Event::Incoming(Incoming::PubAck(PubAck::new(pkid))))
}

#[tokio::test(start_paused = true)]
async fn the_run_loop_feeds_data_queued_while_it_waits() {
    let rig = Rig::new();
    let (mut session, driver) = rig.session_with_driver(Resume::AfterCleanStop);
    let cancel = CancellationToken::new();
    let script = async {
        rig.link.set(1);
        driver.send(connected(1, true)).await.unwrap();
        rig.until_state(AgentState::Connected).await;
        rig.queue(datum(1, 1, Retention::Volatile));
        let request = rig.next_request().await;
        cancel.cancel();
        request
    };

    let (end, request) = within(async { tokio::join!(session.run(&cancel), script) }).await;

    assert_eq!(end, SessionEnd::Shutdown);
    assert_eq!(tags([&request]), [1]);
}

#[tokio::test(start_paused = true)]
async fn the_run_loop_acknowledges_server_data_when_its_feature_confirms_the_receipt() {
    let rig = Rig::new();
    let (mut session, driver) = rig.session_with_driver(Resume::AfterCleanStop);
    let cancel = CancellationToken::new();
    let script = async {
        rig.link.set(1);
        driver.send(connected(1, true)).await.unwrap();
        let payload = encode_individual(&AstarteValue::String("reboot".into()), None).unwrap();
        let mut publish = Publish::new(
            format!("{BASE}/{COMMANDS}/a/value"),
            QoS::AtLeastOnce,
            payload,
        );
        publish.pkid = 9;
        let incoming = mqtt(Event::Incoming(Incoming::Publish(publish)));
        driver.send(incoming).await.unwrap();
        let routed = rig.next_routed().await;
        assert!(rig.requests().is_empty(), "not before the confirmation");
        routed.receipt.confirm();
        let request = rig.next_request().await;
        cancel.cancel();
        request
    };

    let (end, request) = within(async { tokio::join!(session.run(&cancel), script) }).await;

    assert_eq!(end, SessionEnd::Shutdown);
    assert_eq!(describe(&request), "puback 9");
}

#[tokio::test(start_paused = true)]
async fn the_run_loop_announces_interfaces_changed_while_it_waits() {
    let rig = Rig::new();
    let (mut session, driver) = rig.session_with_driver(Resume::AfterCleanStop);
    let cancel = CancellationToken::new();
    let script = async {
        rig.link.set(1);
        driver.send(connected(1, true)).await.unwrap();
        rig.until_state(AgentState::Connected).await;
        rig.context.registry.replace(registry().without(SENSOR));
        while describe(&rig.next_request().await) != "introspection" {}
        cancel.cancel();
    };

    let (end, ()) = within(async { tokio::join!(session.run(&cancel), script) }).await;

    assert_eq!(end, SessionEnd::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn a_driver_that_stops_on_its_own_ends_the_session_as_failed() {
    let rig = Rig::new();
    let (mut session, driver) = rig.session_with_driver(Resume::Clean);
    drop(driver);

    let end = within(session.run(&CancellationToken::new())).await;

    assert_eq!(end, SessionEnd::Failed);
}

#[test]
fn a_client_certificate_the_broker_refuses_ends_the_session_telling_whether_it_was_accepted_before()
{
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    let rejected = || LostReason::CertificateRejected("bad certificate".into());

    let before = rig.lose_with(&mut session, rejected());
    rig.connect(&mut session, false);
    let after = rig.lose_with(&mut session, rejected());

    let ended = |had_connected| Some(SessionEnd::CertificateRejected { had_connected });
    assert_eq!((before, after), (ended(false), ended(true)));
}

#[test]
fn other_failures_leave_the_session_reconnecting() {
    let rig = Rig::new();
    let mut session = rig.session(Resume::Clean);
    rig.connect(&mut session, false);

    for reason in [
        LostReason::BrokerUntrusted("unknown issuer".into()),
        LostReason::Refused("NotAuthorized".into()),
        LostReason::Other("connection reset".into()),
    ] {
        assert_eq!(rig.lose_with(&mut session, reason), None);
        assert_eq!(rig.state(), AgentState::Disconnected);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stop_once_everything_is_acknowledged_disconnects_at_once_and_may_be_resumed() {
    let rig = Rig::new();
    rig.queue(datum(1, 1, Retention::Volatile));
    let (mut session, driver) = rig.session_with_driver(Resume::AfterCleanStop);
    rig.connect(&mut session, true);
    let written = rig.write(&mut session);
    driver.send(puback(written[0].pkid)).await.unwrap();
    let started = Instant::now();
    let script = async {
        let request = rig.next_request().await;
        drop(driver); // the driver ends once DISCONNECT is written
        request
    };

    let (resumable, request) =
        within(async { tokio::join!(session.close(driver_task(&rig)), script) }).await;

    assert!(resumable);
    assert_eq!(describe(&request), "disconnect");
    assert!(started.elapsed() < FLUSH_TIMEOUT, "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_stop_sends_what_is_still_queued_before_disconnecting() {
    let rig = Rig::new();
    let (mut session, driver) = rig.session_with_driver(Resume::AfterCleanStop);
    rig.connect(&mut session, true);
    rig.queue(datum(1, 1, Retention::Volatile));
    let script = async {
        let publish = rig.next_request().await;
        let pkid = rig.pkid();
        driver
            .send(mqtt(Event::Outgoing(Outgoing::Publish(pkid))))
            .await
            .unwrap();
        driver.send(puback(pkid)).await.unwrap();
        let disconnect = rig.next_request().await;
        drop(driver);
        (publish, disconnect)
    };

    let (resumable, (publish, disconnect)) =
        within(async { tokio::join!(session.close(driver_task(&rig)), script) }).await;

    assert!(resumable);
    assert_eq!(tags([&publish]), [1]);
    assert_eq!(describe(&disconnect), "disconnect");
}

#[tokio::test(start_paused = true)]
async fn a_stop_with_data_unacknowledged_requeues_it_and_may_not_be_resumed() {
    let rig = Rig::new();
    rig.queue(datum(1, 1, Retention::Volatile));
    let (mut session, driver) = rig.session_with_driver(Resume::AfterCleanStop);
    rig.connect(&mut session, true);
    rig.write(&mut session);
    drop(driver); // the connection dropped: no acknowledgement comes

    let resumable = within(session.close(driver_task(&rig))).await;

    assert!(!resumable);
    assert_eq!(
        rig.requests().iter().map(describe).collect::<Vec<_>>(),
        ["disconnect"]
    );
    assert_eq!(rig.context.queue.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stop_while_down_neither_waits_nor_disconnects_and_may_not_be_resumed() {
    let rig = Rig::new();
    rig.queue(datum(1, 1, Retention::Volatile));
    let (session, _driver) = rig.session_with_driver(Resume::AfterCleanStop);
    let started = Instant::now();

    let resumable = within(session.close(driver_task(&rig))).await;

    assert!(!resumable);
    assert!(rig.requests().is_empty());
    assert!(started.elapsed() < FLUSH_TIMEOUT, "{:?}", started.elapsed());
}

/// A local port nobody listens on: every connection attempt is refused at once.
fn nowhere(rig: &Rig) -> Endpoint {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tls = crate::tls::http_config(Arc::new(rustls::RootCertStore::empty())).unwrap();
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        tls: Arc::new(tls),
        resume: ResumeRecord::in_dir(rig.dir.path()),
    }
}

#[test]
fn a_first_connection_starts_a_clean_broker_session_unless_the_previous_one_may_be_resumed() {
    let endpoint = nowhere(&Rig::new());

    let clean = |resume| session::mqtt_options(BASE, &endpoint, resume).clean_session();

    assert_eq!(
        [Resume::Clean, Resume::AfterCleanStop, Resume::AfterCrash].map(clean),
        [true, false, false]
    );
}

#[test]
fn after_a_crash_every_packet_id_rumqttc_may_use_is_released() {
    let endpoint = nowhere(&Rig::new());
    let window = session::mqtt_options(BASE, &endpoint, Resume::AfterCrash).inflight();

    let released: Vec<u16> = session::release_every_packet_id()
        .map(|request| match request {
            Request::PubRel(rel) => rel.pkid,
            other => panic!("not a release: {other:?}"),
        })
        .collect();

    assert_eq!(released, (1..=window).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_session_stopped_before_it_ever_connected_leaves_nothing_to_resume() {
    let rig = Rig::new();
    let endpoint = nowhere(&rig);
    let cancel = CancellationToken::new();
    let script = async {
        rig.until_state(AgentState::Disconnected).await;
        cancel.cancel();
    };

    let running = async { tokio::join!(session::run(&rig.context, endpoint, &cancel), script) };
    let (end, ()) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the session is stuck");

    assert_eq!(end, SessionEnd::Shutdown);
    assert!(!rig.dir.path().join(FILE_NAME).exists());
}
