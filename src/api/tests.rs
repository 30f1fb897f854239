//! The API's own refusals, on a real store in a temporary folder.

use std::collections::BTreeSet;

use super::*;
use crate::interface::runtime::LiveRegistry;
use crate::store::StoreOptions;

const OBJECT: &str = "org.example.Object";

/// An object datastream whose `temperature` key is required.
const OBJECT_JSON: &str = r#"{
  "interface_name": "org.example.Object",
  "version_major": 0,
  "version_minor": 1,
  "type": "datastream",
  "ownership": "device",
  "aggregation": "object",
  "mappings": [
    {"endpoint": "/%{room}/temperature", "type": "double", "retention": "volatile", "required": true},
    {"endpoint": "/%{room}/label", "type": "string", "retention": "volatile"}
  ]
}"#;

/// A device API over a temporary store, and the object `/room1` of [`OBJECT`].
struct Room {
    _dir: tempfile::TempDir,
    api: DeviceApi,
    target: ObjectTarget,
}

impl Room {
    fn new() -> Room {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default())
            .unwrap()
            .store;
        let registry = Registry::from_interfaces(vec![Interface::from_json(OBJECT_JSON).unwrap()]);
        let properties = Arc::new(PropertyStore::load(store.clone(), Vec::new(), &registry));
        let queue = Arc::new(Queue::new(store.sequence(), None));
        let api = DeviceApi::new(
            Arc::new(LiveRegistry::new(registry, BTreeSet::new())),
            properties,
            queue,
            store,
            Topics::new("test", "AJInS0w3VpWpuOqkXhgZdA"),
        );
        let target = api.object_datastream(OBJECT, "/room1").unwrap();
        Room {
            _dir: dir,
            api,
            target,
        }
    }

    async fn send(&self, values: Vec<(&str, AstarteValue)>) -> Result<(), ApiError> {
        let values = values
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        self.api.send_object(&self.target, values, None).await
    }
}

#[tokio::test]
async fn an_object_without_keys_is_an_empty_object() {
    let error = Room::new().send(Vec::new()).await.unwrap_err();

    assert!(
        matches!(&error, ApiError::EmptyObject { interface, path } if interface == OBJECT && path == "/room1"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "org.example.Object/room1: an object needs at least one key"
    );
}

#[tokio::test]
async fn an_object_without_a_required_key_is_missing_that_key() {
    let values = vec![("label", AstarteValue::String("x".into()))];

    let error = Room::new().send(values).await.unwrap_err();

    assert!(
        matches!(&error, ApiError::MissingObjectKey { key, .. } if key == "temperature"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "org.example.Object/room1: required object key \"temperature\" is missing"
    );
}

#[tokio::test]
async fn an_object_with_its_required_key_is_queued() {
    let room = Room::new();

    room.send(vec![("temperature", AstarteValue::Double(21.5))])
        .await
        .unwrap();

    assert_eq!(room.api.queued_messages(), 1);
}

#[test]
fn an_unknown_object_key_is_still_an_unknown_path() {
    let error = Room::new().target.key("pressure").unwrap_err();

    assert!(matches!(error, ApiError::UnknownPath(_)), "{error:?}");
}
