use std::path::Path;

use super::*;
use crate::interface::registry::Registry;
use crate::interface::{MappingType, Ownership, Reliability, Retention};

#[test]
fn the_request_interface_is_a_server_owned_guaranteed_object_at_request() {
    let interfaces = interfaces().unwrap();
    let requests = &interfaces[0];
    assert_eq!(requests.name, REQUESTS_INTERFACE);
    assert_eq!(requests.ownership, Ownership::Server);
    assert!(requests.is_object() && !requests.is_properties());
    let keys: Vec<(&str, MappingType, Reliability)> = requests
        .object_mappings(REQUEST_PATH)
        .unwrap()
        .into_iter()
        .map(|(key, mapping)| (key, mapping.mapping_type, mapping.reliability))
        .collect();
    use MappingType::*;
    assert_eq!(
        keys,
        [
            ("id", String, Reliability::Guaranteed),
            ("command", String, Reliability::Guaranteed),
            ("args", StringArray, Reliability::Guaranteed),
            ("timeoutSeconds", Integer, Reliability::Guaranteed),
        ]
    );
}

#[test]
fn the_result_interface_is_a_device_owned_unique_stored_timestamped_object_at_result() {
    let interfaces = interfaces().unwrap();
    let results = &interfaces[1];
    assert_eq!(results.name, RESULTS_INTERFACE);
    assert_eq!(results.ownership, Ownership::Device);
    let mappings = results.object_mappings(RESULT_PATH).unwrap();
    let keys: Vec<&str> = mappings.iter().map(|(key, _)| *key).collect();
    assert_eq!(
        keys,
        [
            "id",
            "status",
            "exitCode",
            "stdout",
            "stderr",
            "truncated",
            "detail"
        ]
    );
    for (key, mapping) in &mappings {
        assert_eq!(mapping.reliability, Reliability::Unique, "{key}");
        assert_eq!(mapping.retention, Retention::Stored, "{key}");
        assert!(mapping.explicit_timestamp, "{key}");
        assert_eq!(results.qos(mapping), 2, "{key}");
    }
}

#[test]
fn the_repository_folder_holds_exactly_the_embedded_interfaces() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/interfaces"));
    let (registry, problems) = Registry::load_dir(dir).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let embedded = Registry::from_interfaces(interfaces().unwrap());
    assert_eq!(registry, embedded);
}
