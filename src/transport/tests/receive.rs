//! Decoding server data: what becomes an event, what is stored, what is refused.

use crate::transport::receive::{ReceiveError, handle};

use super::*;

const LIMITS: &str = "org.example.Limits";
const BLOB: &str = "org.example.Blob";
const ROOM: &str = "org.example.Room";
const GONE: &str = "org.example.Gone";

fn parse(document: serde_json::Value) -> Interface {
    Interface::from_json(&document.to_string()).unwrap()
}

/// The test interfaces, plus a property without unset, a binaryblob property and an object
/// datastream, all server-owned.
fn interfaces() -> Registry {
    let limits = parse(json!({
        "interface_name": LIMITS, "version_major": 1, "version_minor": 0,
        "type": "properties", "ownership": "server",
        "mappings": [{"endpoint": "/%{id}/value", "type": "integer"}]
    }));
    let room = parse(json!({
        "interface_name": ROOM, "version_major": 1, "version_minor": 0,
        "type": "datastream", "ownership": "server", "aggregation": "object",
        "mappings": [
            {"endpoint": "/%{id}/a", "type": "integer"},
            {"endpoint": "/%{id}/b", "type": "string"}
        ]
    }));
    let blob = interface(BLOB, "properties", "server", "binaryblob");
    registry()
        .with(Arc::new(limits))
        .with(Arc::new(room))
        .with(Arc::new(blob))
}

struct Device {
    _rig: Rig,
    registry: Registry,
    properties: PropertyStore,
    topics: Topics,
}

impl Device {
    fn new() -> Device {
        let rig = Rig::new();
        let registry = interfaces();
        let properties = PropertyStore::load(rig.context.store.clone(), Vec::new(), &registry);
        Device {
            _rig: rig,
            registry,
            properties,
            topics: Topics::new("test", "dev"),
        }
    }

    /// Astarte publishes `bytes` on `<base>/<rest>`.
    fn receive(&self, rest: &str, bytes: &[u8]) -> Result<Vec<ServerEvent>, ReceiveError> {
        let topic = format!("{BASE}/{rest}");
        handle(
            &self.topics,
            &self.registry,
            &self.properties,
            &topic,
            bytes,
        )
    }

    fn set(&self, interface: &str, path: &str, value: i32) {
        let interface = self.registry.get(interface).unwrap();
        self.properties
            .set_server(interface, path, AstarteValue::Integer(value));
    }
}

fn integer(value: i32) -> Vec<u8> {
    encode_individual(&AstarteValue::Integer(value), None).unwrap()
}

fn unset(interface: &str, path: &str) -> ServerEvent {
    ServerEvent::Unset {
        interface: interface.into(),
        path: path.into(),
    }
}

#[test]
fn a_server_property_is_stored_and_reported_as_a_value() {
    let device = Device::new();

    let events = device.receive("org.example.Settings/a/value", &integer(5));

    assert!(
        matches!(&events.unwrap()[..], [ServerEvent::Value { interface, path, value: AstarteValue::Integer(5), .. }]
            if interface == SETTINGS && path == "/a/value")
    );
    assert_eq!(
        device.properties.get(SETTINGS, "/a/value"),
        Some(AstarteValue::Integer(5))
    );
}

#[test]
fn a_server_datastream_value_is_reported_and_not_stored() {
    let device = Device::new();
    let payload = encode_individual(&AstarteValue::String("reboot".into()), None).unwrap();

    let events = device.receive("org.example.Commands/a/value", &payload);

    assert!(matches!(
        &events.unwrap()[..],
        [ServerEvent::Value { value: AstarteValue::String(name), .. }] if name == "reboot"
    ));
    assert_eq!(device.properties.get(COMMANDS, "/a/value"), None);
}

#[test]
fn an_object_is_reported_with_each_value_under_its_key() {
    let device = Device::new();
    let values = vec![
        ("a".to_owned(), AstarteValue::Integer(1)),
        ("b".to_owned(), AstarteValue::String("x".into())),
    ];
    let payload = crate::data::encode_object(&values, Some(1_000)).unwrap();

    let events = device.receive("org.example.Room/r1", &payload).unwrap();

    assert_eq!(
        events,
        [ServerEvent::Object {
            interface: ROOM.into(),
            path: "/r1".into(),
            values,
            timestamp_ms: 1_000
        }]
    );
}

#[test]
fn an_empty_object_is_refused() {
    let error = Device::new()
        .receive("org.example.Room/r1", b"")
        .unwrap_err();

    assert!(
        matches!(error, ReceiveError::EmptyDatastream { .. }),
        "{error}"
    );
}

#[test]
fn an_empty_payload_unsets_a_server_property() {
    let device = Device::new();
    device.set(SETTINGS, "/a/value", 5);

    let events = device.receive("org.example.Settings/a/value", b"").unwrap();

    assert_eq!(events, [unset(SETTINGS, "/a/value")]);
    assert_eq!(device.properties.get(SETTINGS, "/a/value"), None);
}

#[test]
fn an_empty_binaryblob_unsets_a_server_property() {
    let device = Device::new();
    let blob = bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: Vec::new(),
    };
    let empty = bson::doc! {"v": blob}.to_vec().unwrap();

    let events = device.receive("org.example.Blob/a/value", &empty).unwrap();

    assert_eq!(events, [unset(BLOB, "/a/value")]);
}

#[test]
fn an_unset_of_a_mapping_without_allow_unset_is_refused() {
    let device = Device::new();
    device.set(LIMITS, "/a/value", 5);

    let error = device
        .receive("org.example.Limits/a/value", b"")
        .unwrap_err();

    assert!(
        matches!(error, ReceiveError::UnsetNotAllowed { .. }),
        "{error}"
    );
    assert_eq!(
        device.properties.get(LIMITS, "/a/value"),
        Some(AstarteValue::Integer(5))
    );
}

#[test]
fn an_empty_payload_on_a_datastream_is_refused() {
    let error = Device::new()
        .receive("org.example.Commands/a/value", b"")
        .unwrap_err();

    assert!(
        matches!(error, ReceiveError::EmptyDatastream { .. }),
        "{error}"
    );
}

#[test]
fn data_on_a_device_owned_interface_is_refused() {
    let error = Device::new()
        .receive("org.example.Status/a/value", &integer(1))
        .unwrap_err();

    assert!(matches!(error, ReceiveError::NotServerOwned(_)), "{error}");
}

#[test]
fn a_topic_that_is_not_a_data_topic_of_this_device_is_refused() {
    let error = Device::new()
        .receive("control/emptyCache", b"1")
        .unwrap_err();

    assert!(matches!(error, ReceiveError::UnexpectedTopic(_)), "{error}");
}

#[test]
fn the_consumer_purge_list_unsets_every_server_property_it_does_not_list() {
    let device = Device::new();
    device.set(SETTINGS, "/a/value", 1);
    device.set(SETTINGS, "/b/value", 2);
    let gone = interface(GONE, "properties", "server", "integer");
    device
        .properties
        .set_server(&gone, "/a/value", AstarteValue::Integer(3));
    let listed = crate::data::encode_purge_list(&["org.example.Settings/a/value".to_owned()]);

    let events = device
        .receive("control/consumer/properties", &listed)
        .unwrap();

    assert_eq!(
        events,
        [unset(SETTINGS, "/b/value")],
        "nothing is told of interfaces no longer loaded"
    );
    assert_eq!(
        device.properties.get(SETTINGS, "/a/value"),
        Some(AstarteValue::Integer(1))
    );
    assert_eq!(device.properties.get(GONE, "/a/value"), None);
}
