use super::*;
use crate::interface::Interface;
use crate::store::StoreOptions;

fn interface(name: &str, ownership: &str, major: u32) -> Interface {
    Interface::from_json(&format!(
        r#"{{"interface_name": "{name}", "version_major": {major}, "version_minor": 1, "type": "properties",
            "ownership": "{ownership}", "mappings": [{{"endpoint": "/%{{id}}/value", "type": "longinteger", "allow_unset": true}}]}}"#
    ))
    .unwrap()
}

fn load(dir: &std::path::Path, interfaces: Vec<Interface>) -> PropertyStore {
    let opened = Store::open(dir, StoreOptions::default()).unwrap();
    PropertyStore::load(
        opened.store,
        opened.properties,
        &Registry::from_interfaces(interfaces),
    )
}

/// Stops the store's writer once everything sent to it is committed.
fn close(store: PropertyStore) {
    store.store.clone().close().unwrap();
}

#[tokio::test]
async fn device_values_survive_a_restart_with_their_exact_type() {
    let dir = tempfile::tempdir().unwrap();
    let device = interface("org.example.Device", "device", 1);
    let store = load(dir.path(), vec![device.clone()]);
    assert!(
        store
            .set_device(&device, "/a/value", AstarteValue::LongInteger(5))
            .await
            .unwrap()
    );
    close(store);

    let reloaded = load(dir.path(), vec![device]);
    assert_eq!(
        reloaded.get("org.example.Device", "/a/value"),
        Some(AstarteValue::LongInteger(5))
    );
    assert_eq!(reloaded.device_owned().len(), 1);
}

#[tokio::test]
async fn setting_the_same_value_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let device = interface("org.example.Device", "device", 0);
    let store = load(dir.path(), vec![device.clone()]);
    assert!(
        store
            .set_device(&device, "/a/value", AstarteValue::LongInteger(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_device(&device, "/a/value", AstarteValue::LongInteger(1))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_device(&device, "/a/value", AstarteValue::LongInteger(2))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_unset_is_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let device = interface("org.example.Device", "device", 0);
    let store = load(dir.path(), vec![device.clone()]);
    store
        .set_device(&device, "/a/value", AstarteValue::LongInteger(1))
        .await
        .unwrap();
    assert!(
        store
            .unset_device("org.example.Device", "/a/value")
            .await
            .unwrap()
    );
    assert!(
        !store
            .unset_device("org.example.Device", "/a/value")
            .await
            .unwrap()
    );
    close(store);
    assert_eq!(
        load(dir.path(), vec![device]).get("org.example.Device", "/a/value"),
        None
    );
}

#[tokio::test]
async fn values_of_another_major_version_are_dropped_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let old = interface("org.example.Device", "device", 1);
    let store = load(dir.path(), vec![old.clone()]);
    store
        .set_device(&old, "/a/value", AstarteValue::LongInteger(5))
        .await
        .unwrap();
    close(store);

    let new_major = interface("org.example.Device", "device", 2);
    let reloaded = load(dir.path(), vec![new_major]);
    assert_eq!(reloaded.get("org.example.Device", "/a/value"), None);
    close(reloaded);
    assert_eq!(
        load(dir.path(), vec![old]).get("org.example.Device", "/a/value"),
        None,
        "dropped from disk too"
    );
}

#[tokio::test]
async fn consumer_purge_list_keeps_listed_server_values_and_all_device_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = interface("org.example.Server", "server", 0);
    let device = interface("org.example.Device", "device", 0);
    let store = load(dir.path(), vec![server.clone(), device.clone()]);
    store.set_server(&server, "/kept/value", AstarteValue::LongInteger(1));
    store.set_server(&server, "/gone/value", AstarteValue::LongInteger(2));
    store
        .set_device(&device, "/mine/value", AstarteValue::LongInteger(3))
        .await
        .unwrap();

    let listed = HashSet::from(["org.example.Server/kept/value".to_owned()]);
    let removed = store.retain_server_owned(&listed);
    assert_eq!(removed, [key("org.example.Server", "/gone/value")]);
    assert!(store.get("org.example.Server", "/kept/value").is_some());
    assert!(store.get("org.example.Device", "/mine/value").is_some());
    assert_eq!(store.list("org.example.Server").len(), 1);
}

#[tokio::test]
async fn dropping_an_interface_forgets_its_values_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let device = interface("org.example.Device", "device", 0);
    let store = load(dir.path(), vec![device.clone()]);
    store
        .set_device(&device, "/a/value", AstarteValue::LongInteger(1))
        .await
        .unwrap();
    store.drop_interface("org.example.Device").await.unwrap();
    assert!(store.list("org.example.Device").is_empty());
    close(store);
    assert!(
        load(dir.path(), vec![device])
            .list("org.example.Device")
            .is_empty()
    );
}

#[tokio::test]
async fn device_values_stop_at_the_limit_and_unsetting_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let device = interface("org.example.Device", "device", 0);
    let server = interface("org.example.Server", "server", 0);
    let store = load(dir.path(), vec![device.clone(), server.clone()]);
    store.set_server(&server, "/s/value", AstarteValue::LongInteger(1));
    for id in 0..MAX_DEVICE_PROPERTIES {
        let path = format!("/{id}/value");
        store
            .set_device(&device, &path, AstarteValue::LongInteger(1))
            .await
            .unwrap();
    }
    let extra = store
        .set_device(&device, "/extra/value", AstarteValue::LongInteger(1))
        .await;
    assert!(
        matches!(extra, Err(PropertyStoreError::TooMany)),
        "{extra:?}"
    );
    // Values already set can still change, and an unset makes room for a new one.
    let changed = store.set_device(&device, "/0/value", AstarteValue::LongInteger(2));
    assert!(changed.await.unwrap());
    assert!(store.unset_device(&device.name, "/0/value").await.unwrap());
    let extra = store.set_device(&device, "/extra/value", AstarteValue::LongInteger(1));
    assert!(extra.await.unwrap());
}
