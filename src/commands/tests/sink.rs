//! The agent's sink: a result becomes a stored, unique object message on `/result`.

use std::collections::BTreeSet;

use super::*;
use crate::api::DeviceApi;
use crate::data::{AstarteValue, decode_object};
use crate::interface::registry::Registry;
use crate::interface::runtime::LiveRegistry;
use crate::properties::PropertyStore;
use crate::queue::Queue;
use crate::topic::Topics;

#[tokio::test]
async fn a_result_is_queued_on_disk_as_a_unique_object_on_result() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let store = opened.store;
    let registry = Registry::from_interfaces(interfaces().unwrap());
    let properties = Arc::new(PropertyStore::load(store.clone(), Vec::new(), &registry));
    let queue = Arc::new(Queue::new(store.sequence(), None));
    let api = Arc::new(DeviceApi::new(
        Arc::new(LiveRegistry::new(registry, BTreeSet::new())),
        properties,
        queue,
        store.clone(),
        Topics::new("test", "AJInS0w3VpWpuOqkXhgZdA"),
    ));
    let mut result = CommandResult::bare("7", Status::Completed, "", 1_700_000_000_000);
    result.exit_code = 0;
    result.stdout = "x".repeat(70_000);

    DeviceApiSink::new(api).publish(&result).await.unwrap();

    let rows = store.load(0, 10).await.unwrap().rows;
    assert_eq!(rows.len(), 1, "on disk when publish returns");
    let message = &rows[0].message;
    assert_eq!(
        (
            message.interface.as_str(),
            message.path.as_str(),
            message.qos
        ),
        (RESULTS_INTERFACE, RESULT_PATH, 2)
    );
    let decoded = decode_object(&message.payload, |key| {
        let interface = &interfaces().ok()?[1];
        interface
            .object_mappings(RESULT_PATH)
            .ok()?
            .into_iter()
            .find(|(name, _)| *name == key)
            .map(|(_, mapping)| mapping.mapping_type)
    })
    .unwrap();
    assert_eq!(decoded.timestamp_ms, Some(result.timestamp_ms));
    assert_eq!(
        decoded.values[0],
        ("id".into(), AstarteValue::String("7".into()))
    );
    assert_eq!(
        decoded.values[5],
        ("truncated".into(), AstarteValue::Boolean(true)),
        "output beyond the message cap was cut"
    );
    tokio::task::spawn_blocking(move || store.close().unwrap())
        .await
        .unwrap();
}
