//! The observer: what it reports of each message, and that it keeps observing across broker
//! restarts and crashes, and leaves no process behind.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use astarte_sandbox::{Identity, Observer, Sandbox, SandboxOptions, client_config};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use support::{ID, WAIT, pair};
use tokio::task::JoinHandle;

async fn persistent() -> Sandbox {
    let opts = SandboxOptions {
        broker_persistence: true,
        ..SandboxOptions::default()
    };
    Sandbox::start(opts).await.unwrap()
}

#[tokio::test]
async fn it_reports_topic_qos_retain_and_payload_of_any_message() {
    let sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let mut observer = sb.observer().await.unwrap();
    let sent = [
        ("test/a b/c", 2, b"hello".to_vec()),
        ("test/empty", 1, Vec::new()),
        (
            "test/\u{e9}\u{1f600}/ leading and trailing ",
            0,
            vec![0, 0xff, b'\n'],
        ),
        ("test/big", 2, vec![0xab; 60_000]),
    ];
    for (topic, qos, payload) in &sent {
        observer
            .publish(topic, payload.clone(), *qos)
            .await
            .unwrap();
        let seen = observer.wait_for_topic(topic, WAIT).await.unwrap();
        assert_eq!(
            (seen.qos, seen.retain, &seen.payload),
            (*qos, false, payload)
        );
    }
    assert_eq!(observer.history().len(), sent.len());
}

#[tokio::test]
async fn it_keeps_observing_across_broker_restarts() {
    let mut sb = persistent().await;
    let mut observer = sb.observer().await.unwrap();
    for round in 0..3 {
        sb.restart_broker().await.unwrap();
        // Published right away: the session the broker kept queues it until the observer is
        // back.
        let topic = format!("test/after-restart/{round}");
        observer.publish(&topic, vec![round], 2).await.unwrap();
        let seen = observer.wait_for_topic(&topic, WAIT).await.unwrap();
        assert_eq!((seen.qos, seen.payload), (2, vec![round]));
        observer.wait_subscribed(WAIT).await.unwrap();
    }
}

/// The case that made a rumqttc observer deaf for good: a restart in the middle of a QoS 2
/// delivery to the observer (PUBREC sent, PUBREL not completed), whose PUBREL the broker
/// resends right after the next CONNACK. A device publishes QoS 2 messages all along, so some
/// restarts catch one half-done.
#[tokio::test]
async fn it_keeps_receiving_when_restarts_interrupt_qos_2_deliveries() {
    let mut sb = persistent().await;
    let mut observer = sb.observer().await.unwrap();
    let identity = pair(&sb, ID).await;
    let prefix = format!("test/{ID}/org.example.Feed/");
    let queued = Arc::new(AtomicU32::new(0));
    let feeder = feed(&sb, &identity, prefix.clone(), queued.clone());
    let number = |topic: &str| topic.strip_prefix(&prefix)?.parse::<u32>().ok();
    for round in 0..12u64 {
        tokio::time::sleep(Duration::from_millis(100 + 37 * round)).await;
        sb.restart_broker().await.unwrap();
        let after = queued.load(Ordering::SeqCst);
        let newer = observer
            .wait_for(|m| number(&m.topic).is_some_and(|n| n > after), WAIT * 2)
            .await;
        if let Err(err) = newer {
            panic!(
                "round {round}: nothing after {after}: {err}\n{}",
                sb.broker_log()
            );
        }
    }
    for task in feeder {
        task.abort();
    }
}

/// More than mosquitto's default cap of 1,000 queued messages per client, published while the
/// observer reconnects after a restart: the session the broker kept for it holds them all
/// (a capped queue dropped part of an agent's backlog resent after a broker restart).
#[tokio::test]
async fn it_gets_every_message_published_while_it_reconnects() {
    const COUNT: u32 = 1500;
    let mut sb = persistent().await;
    let mut observer = sb.observer().await.unwrap();
    let identity = pair(&sb, ID).await;
    let prefix = format!("test/{ID}/org.example.Burst/");
    sb.restart_broker().await.unwrap();

    publish_acknowledged(&sb, &identity, &prefix, COUNT).await;

    for n in 0..COUNT {
        let topic = format!("{prefix}{n}");
        if let Err(err) = observer.wait_for_topic(&topic, WAIT).await {
            panic!("{topic}: {err}");
        }
    }
}

/// A device publishes `<prefix><n>` for n in 0..count at QoS 1, as fast as the broker takes
/// them; returns once the broker acknowledged every one.
async fn publish_acknowledged(sb: &Sandbox, identity: &Identity, prefix: &str, count: u32) {
    let tls = client_config(sb.ca_pem(), Some(identity)).unwrap();
    let mut options = MqttOptions::new(format!("test/{ID}"), "localhost", sb.broker_port());
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let prefix = prefix.to_owned();
    let publisher = tokio::spawn(async move {
        for n in 0..count {
            let topic = format!("{prefix}{n}");
            client
                .publish(topic, QoS::AtLeastOnce, false, vec![1])
                .await
                .unwrap();
        }
        client
    });
    let mut acknowledged = 0;
    while acknowledged < count {
        match tokio::time::timeout(WAIT, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acknowledged += 1,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => panic!("the device lost the broker: {err}"),
            Err(_) => panic!("{acknowledged} of {count} acknowledged"),
        }
    }
    drop(publisher.await.unwrap());
}

/// A device that publishes `<prefix><n>` at QoS 2 every few milliseconds, `n` counting up in
/// `queued`, and reconnects (keeping its session) whenever the broker goes away. It subscribes
/// to nothing.
fn feed(
    sb: &Sandbox,
    identity: &Identity,
    prefix: String,
    queued: Arc<AtomicU32>,
) -> [JoinHandle<()>; 2] {
    let tls = client_config(sb.ca_pem(), Some(identity)).unwrap();
    let mut options = MqttOptions::new(format!("test/{ID}"), "localhost", sb.broker_port());
    options
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)))
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let driver = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let publisher = tokio::spawn(async move {
        for n in 1.. {
            queued.store(n, Ordering::SeqCst);
            let topic = format!("{prefix}{n}");
            if client
                .publish(topic, QoS::ExactlyOnce, false, vec![1])
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    });
    [driver, publisher]
}

#[tokio::test]
async fn it_keeps_observing_after_the_broker_is_killed() {
    let mut sb = persistent().await;
    let mut observer = sb.observer().await.unwrap();
    let before = observer.subscriber_pid().unwrap();
    sb.kill_broker();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sb.start_broker().await.unwrap();
    // A killed broker forgot the session: only what is published once the observer has
    // subscribed again arrives.
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    let mut attempt = 0u8;
    loop {
        let topic = format!("test/after-kill/{attempt}");
        observer.publish(&topic, vec![attempt], 1).await.unwrap();
        if observer
            .wait_for_topic(&topic, Duration::from_secs(2))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing observed after the broker came back"
        );
        attempt += 1;
    }
    observer.wait_subscribed(WAIT).await.unwrap();
    // mosquitto_sub exits when OpenSSL sees the connection end without a TLS close: another
    // took its place.
    assert_ne!(observer.subscriber_pid(), Some(before));
}

#[tokio::test]
async fn dropping_it_kills_and_reaps_mosquitto_sub() {
    let sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let observer = sb.observer().await.unwrap();
    let pid = observer.subscriber_pid().unwrap();
    let proc = format!("/proc/{pid}");
    let cmdline = std::fs::read(format!("{proc}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("mosquitto_sub"));
    drop(observer);
    // A zombie would still have a /proc entry until reaped.
    assert!(!std::path::Path::new(&proc).exists());
}

#[tokio::test]
async fn it_fails_with_the_reason_when_the_broker_is_down() {
    let mut sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let config = sb.observer_config();
    sb.stop_broker().await;
    let err = match Observer::connect(config).await {
        Ok(_) => panic!("connected to a stopped broker"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("mosquitto_sub exited") && err.contains("Connection refused"),
        "{err}"
    );
}
