//! The full MQTT v1 handshake, run whenever the broker has no session for the device:
//! subscribe first (Astarte answers emptyCache by publishing to the device and disconnects it
//! if nobody is subscribed), then introspection, emptyCache, the producer purge list and every
//! device-owned property value — each acknowledged before application data flows.

use std::collections::VecDeque;

use crate::data::{payload, purge};
use crate::interface::registry::Registry;
use crate::properties::PropertyStore;
use crate::topic::Topics;

/// One step of the handshake, fed to rumqttc in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Subscribe(Vec<String>),
    /// Wait until every earlier step is acknowledged.
    Barrier,
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
}

/// Builds the steps from the interfaces and the stored device-owned properties.
pub fn steps(topics: &Topics, registry: &Registry, properties: &PropertyStore) -> VecDeque<Step> {
    let mut filters = vec![topics.consumer_properties()];
    filters.extend(
        registry
            .server_owned()
            .map(|interface| topics.interface_filter(&interface.name)),
    );

    // Values of interfaces that are no longer loaded (removed at runtime) stay dormant.
    let device_properties: Vec<_> = properties
        .device_owned()
        .into_iter()
        .filter(|(key, _)| registry.get(&key.interface).is_some())
        .collect();
    let purge_entries: Vec<String> = device_properties
        .iter()
        .map(|(key, _)| format!("{}{}", key.interface, key.path))
        .collect();

    let mut steps = VecDeque::from([
        Step::Subscribe(filters),
        Step::Barrier,
        Step::Publish {
            topic: topics.base().to_owned(),
            payload: registry.introspection().into_bytes(),
        },
        Step::Publish {
            topic: topics.empty_cache(),
            payload: b"1".to_vec(),
        },
        Step::Publish {
            topic: topics.producer_properties(),
            payload: purge::encode_purge_list(&purge_entries),
        },
    ]);
    for (key, value) in device_properties {
        match payload::encode_individual(&value, None) {
            Ok(payload) => steps.push_back(Step::Publish {
                topic: topics.data(&key.interface, &key.path),
                payload,
            }),
            // Stored values were validated when set; an encoding failure means a bug, not bad input.
            Err(error) => {
                tracing::error!(interface = %key.interface, path = %key.path, %error, "couldn't encode a stored property")
            }
        }
    }
    steps.push_back(Step::Barrier);
    steps
}
