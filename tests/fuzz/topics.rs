//! Incoming MQTT topics (`Topics::parse`): a data topic built by `Topics::data` parses back
//! into its interface and path; any other string parses to nothing or to a split that
//! rebuilds the exact topic, and never panics (multi-byte characters included).

use astarte_agent::topic::{IncomingTopic, Topics};
use fastrand::Rng;

use crate::{driver, mutate};

fn segment(rng: &mut Rng) -> String {
    let text = mutate::any_string(rng).replace('/', "");
    if text.is_empty() { "x".into() } else { text }
}

fn check(topics: &Topics, topic: &str) {
    match topics.parse(topic) {
        None => {}
        Some(IncomingTopic::ConsumerProperties) => {
            assert_eq!(topic, topics.consumer_properties());
        }
        Some(IncomingTopic::Data { interface, path }) => {
            assert!(!interface.is_empty() && interface != "control" && !interface.contains('/'));
            assert!(path.starts_with('/'), "{path:?}");
            assert_eq!(topics.data(interface, path), topic);
        }
    }
}

fn case(rng: &mut Rng) {
    let topics = Topics::new(&segment(rng), &segment(rng));
    let interface = segment(rng);
    let path: String = (0..rng.usize(1..5))
        .map(|_| format!("/{}", mutate::any_string(rng)))
        .collect();
    let topic = topics.data(&interface, &path);
    if interface != "control" {
        assert_eq!(
            topics.parse(&topic),
            Some(IncomingTopic::Data {
                interface: &interface,
                path: &path
            })
        );
    }
    let mutated = match rng.u8(0..3) {
        0 => mutate::text(rng, &topics.consumer_properties()),
        1 => mutate::text(rng, topics.base()),
        _ => mutate::text(rng, &topic),
    };
    check(&topics, &mutated);
}

#[test]
fn mqtt_topics() {
    driver::run("mqtt_topics", 5000, case);
}
