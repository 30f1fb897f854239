//! The broker behaves like Astarte's: mutual TLS with Pairing's certificates, devices confined to
//! their own topics, and a log that tells what each client did.

mod support;

use astarte_sandbox::{BrokerEvent, LoggedPublish, Sandbox, SandboxOptions};
use rumqttc::{Event, Packet, QoS};
use support::{Device, ID, OTHER_ID, WAIT, pair};

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).await.unwrap()
}

fn published(topic: &str, qos: u8, payload_len: usize) -> LoggedPublish {
    LoggedPublish {
        topic: topic.to_owned(),
        qos,
        retain: false,
        payload_len,
    }
}

#[tokio::test]
async fn device_publishes_on_its_own_topics_and_is_denied_elsewhere() {
    let sb = sandbox().await;
    let mut observer = sb.observer().await.unwrap();
    let identity = pair(&sb, ID).await;
    let base = format!("test/{ID}");
    let mut device = Device::connect(&sb, &identity, &base, true).await;

    let consumer = format!("{base}/control/consumer/properties");
    device
        .client
        .subscribe(&consumer, QoS::ExactlyOnce)
        .await
        .unwrap();
    device
        .wait(|e| matches!(e, Event::Incoming(Packet::SubAck(_))))
        .await;
    let introspection = b"org.example.Values:1:0".to_vec();
    device
        .client
        .publish(&base, QoS::ExactlyOnce, false, introspection.clone())
        .await
        .unwrap();
    let seen = observer.wait_for_topic(&base, WAIT).await.unwrap();
    assert_eq!((seen.qos, seen.payload), (2, introspection));

    let foreign = format!("test/{OTHER_ID}/org.example.Values/v");
    device
        .client
        .publish(&foreign, QoS::AtLeastOnce, false, vec![1])
        .await
        .unwrap();
    device
        .wait(|e| matches!(e, Event::Incoming(Packet::PubAck(_))))
        .await;
    // A later publish of the same client is routed after the denied one would have been.
    let marker = format!("{base}/org.example.Values/marker");
    device
        .client
        .publish(&marker, QoS::AtLeastOnce, false, vec![2])
        .await
        .unwrap();
    observer.wait_for_topic(&marker, WAIT).await.unwrap();
    assert!(observer.history().iter().all(|m| m.topic != foreign));

    // The QoS 2 exchange's PUBREL is not what this test is about.
    let mut events = sb.device_events(&base);
    events.retain(|event| !matches!(event, BrokerEvent::PubRel { .. }));
    let expected = [
        BrokerEvent::Connected {
            protocol_level: 4,
            clean_session: true,
            keep_alive: 30,
            username: Some(base.clone()),
        },
        BrokerEvent::ConnAck {
            session_present: false,
            return_code: 0,
        },
        BrokerEvent::Subscribe {
            topic: consumer,
            qos: 2,
        },
        BrokerEvent::Publish(published(&base, 2, 22)),
        BrokerEvent::PublishDenied(published(&foreign, 1, 1)),
        BrokerEvent::Publish(published(&marker, 1, 1)),
    ];
    assert_eq!(events, expected);
}

#[tokio::test]
async fn observer_publish_reaches_a_subscribed_device_once_acknowledged() {
    let sb = sandbox().await;
    let observer = sb.observer().await.unwrap();
    let identity = pair(&sb, ID).await;
    let base = format!("test/{ID}");
    let mut device = Device::connect(&sb, &identity, &base, true).await;
    let topic = format!("{base}/org.example.Config/value");
    device
        .client
        .subscribe(format!("{base}/org.example.Config/#"), QoS::ExactlyOnce)
        .await
        .unwrap();
    device
        .wait(|e| matches!(e, Event::Incoming(Packet::SubAck(_))))
        .await;

    let payload = vec![0x09, 0, 0, 0, 0x08, 0x76, 0, 0x01, 0];
    observer.publish(&topic, payload.clone(), 2).await.unwrap();
    let Event::Incoming(Packet::Publish(p)) = device
        .wait(|e| matches!(e, Event::Incoming(Packet::Publish(_))))
        .await
    else {
        unreachable!()
    };
    assert_eq!(
        (p.topic, p.qos, p.payload.to_vec()),
        (topic, QoS::ExactlyOnce, payload)
    );
}

#[tokio::test]
async fn persistent_broker_keeps_queued_messages_across_a_restart() {
    let opts = SandboxOptions {
        broker_persistence: true,
        ..SandboxOptions::default()
    };
    let mut sb = Sandbox::start(opts).await.unwrap();
    let identity = pair(&sb, ID).await;
    let base = format!("test/{ID}");
    let topic = format!("{base}/control/consumer/properties");
    let device = Device::connect(&sb, &identity, &base, false).await;
    device
        .client
        .subscribe(&topic, QoS::ExactlyOnce)
        .await
        .unwrap();
    sb.wait_for_event(&base, |e| matches!(e, BrokerEvent::Subscribe { .. }), WAIT)
        .await
        .unwrap();
    device.client.disconnect().await.unwrap();
    sb.wait_for_event(
        &base,
        |e| matches!(e, BrokerEvent::Disconnected { .. }),
        WAIT,
    )
    .await
    .unwrap();
    drop(device);

    let observer = sb.observer().await.unwrap();
    let list = astarte_sandbox::encode_purge_list(&["org.example.Config/value"]);
    observer.publish(&topic, list.clone(), 2).await.unwrap();
    drop(observer);
    sb.restart_broker().await.unwrap();

    let mut device = Device::connect(&sb, &identity, &base, false).await;
    let Event::Incoming(Packet::Publish(p)) = device
        .wait(|e| matches!(e, Event::Incoming(Packet::Publish(_))))
        .await
    else {
        unreachable!()
    };
    assert_eq!((p.topic, p.payload.to_vec()), (topic, list));
    let acks = sb.device_events(&base);
    let connacks: Vec<_> = acks
        .iter()
        .filter(|e| matches!(e, BrokerEvent::ConnAck { .. }))
        .collect();
    assert_eq!(
        connacks.last(),
        Some(&&BrokerEvent::ConnAck {
            session_present: true,
            return_code: 0
        })
    );
}

#[tokio::test]
async fn two_sandboxes_run_side_by_side() {
    let (a, b) = tokio::join!(sandbox(), sandbox());
    assert_ne!(a.broker_port(), b.broker_port());
    assert_ne!(a.pairing_url(), b.pairing_url());
    let (oa, ob) = tokio::join!(a.observer(), b.observer());
    oa.unwrap();
    ob.unwrap();
}

#[tokio::test]
async fn dropping_the_sandbox_kills_and_reaps_mosquitto() {
    let sb = sandbox().await;
    let pid = sb.broker_pid().unwrap();
    let dir = sb.dir().to_owned();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(sb);
    // A zombie would still have a /proc entry until reaped.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists());
}

#[tokio::test]
async fn stopped_broker_refuses_connections_until_started_again() {
    let mut sb = sandbox().await;
    let port = sb.broker_port();
    sb.stop_broker().await;
    assert!(!sb.broker_running());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    sb.start_broker().await.unwrap();
    assert_eq!(sb.broker_port(), port);
    sb.observer().await.unwrap();
}
