//! Rules across the mappings of one interface (protocol reference 4.3): endpoint
//! uniqueness, no ambiguity, and the object aggregation constraints.
//!
//! Ambiguity is checked pairwise with the same outcome as Astarte's endpoints automaton:
//! every endpoint must resolve only to itself, so no concrete path may match two
//! endpoints, and no path of one endpoint may be a prefix of another endpoint's paths.

use super::endpoint::{Endpoint, Level};
use super::error::InterfaceError;
use super::model::{DatabaseRetention, Mapping};

pub fn check_endpoints(mappings: &[Mapping]) -> Result<(), InterfaceError> {
    let normalized: Vec<String> = mappings.iter().map(|m| m.endpoint.normalized()).collect();
    for (i, first) in mappings.iter().enumerate() {
        for (j, second) in mappings.iter().enumerate().skip(i + 1) {
            if normalized[i] == normalized[j] {
                return Err(InterfaceError::DuplicateEndpoint {
                    first: first.endpoint.to_string(),
                    second: second.endpoint.to_string(),
                });
            }
            if let Some(reason) = ambiguity(&first.endpoint, &second.endpoint) {
                return Err(InterfaceError::AmbiguousEndpoints {
                    first: first.endpoint.to_string(),
                    second: second.endpoint.to_string(),
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// Why two endpoints overlap, with an example path, or `None` when they don't.
fn ambiguity(a: &Endpoint, b: &Endpoint) -> Option<String> {
    let (short, long) = if a.depth() <= b.depth() {
        (a, b)
    } else {
        (b, a)
    };
    let overlapping = short
        .levels
        .iter()
        .zip(&long.levels)
        .all(|(x, y)| x.overlaps(y));
    if !overlapping {
        return None;
    }
    let example: String = short
        .levels
        .iter()
        .zip(&long.levels)
        .map(|(x, y)| match (x, y) {
            (Level::Literal(literal), _) | (_, Level::Literal(literal)) => format!("/{literal}"),
            _ => "/x".to_owned(),
        })
        .collect();
    Some(if short.depth() == long.depth() {
        format!("the path {example} matches both")
    } else {
        format!("the path {example} of {short} is also a prefix of paths of {long}")
    })
}

/// Object aggregation: every endpoint shares all levels but the last (parameter names
/// included), the last level is a literal key, and the delivery attributes are equal.
pub fn check_object(interface: &str, mappings: &[Mapping]) -> Result<(), InterfaceError> {
    let Some(first) = mappings.first() else {
        return Ok(());
    };
    for mapping in mappings {
        if mapping.object_key().is_none() {
            return Err(InterfaceError::ObjectKeyParameter {
                endpoint: mapping.endpoint.to_string(),
            });
        }
    }
    let prefix = |mapping: &Mapping| -> Vec<Level> {
        let levels = &mapping.endpoint.levels;
        levels
            .split_last()
            .map_or_else(Vec::new, |(_, prefix)| prefix.to_vec())
    };
    let first_prefix = prefix(first);
    for other in &mappings[1..] {
        let pair = || (first.endpoint.to_string(), other.endpoint.to_string());
        if prefix(other) != first_prefix {
            let (first, second) = pair();
            return Err(InterfaceError::ObjectPrefix { first, second });
        }
        if let Some(key) = differing_attribute(first, other) {
            let (first, second) = pair();
            return Err(InterfaceError::ObjectAttribute { key, first, second });
        }
    }
    if first_prefix.is_empty() {
        tracing::warn!(
            interface,
            "object interface with depth-1 endpoints is deprecated, use at least two levels"
        );
    }
    Ok(())
}

fn differing_attribute(a: &Mapping, b: &Mapping) -> Option<&'static str> {
    let ttl = |mapping: &Mapping| match mapping.database_retention {
        DatabaseRetention::NoTtl => None,
        DatabaseRetention::UseTtl { ttl_seconds } => Some(ttl_seconds),
    };
    [
        ("reliability", a.reliability == b.reliability),
        ("retention", a.retention == b.retention),
        ("expiry", a.expiry_seconds == b.expiry_seconds),
        ("allow_unset", a.allow_unset == b.allow_unset),
        (
            "explicit_timestamp",
            a.explicit_timestamp == b.explicit_timestamp,
        ),
        (
            "database_retention_policy",
            ttl(a).is_some() == ttl(b).is_some(),
        ),
        ("database_retention_ttl", ttl(a) == ttl(b)),
    ]
    .into_iter()
    .find(|(_, same)| !same)
    .map(|(key, _)| key)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;
    use crate::interface::test_support::{object, properties, with_mappings};
    use crate::interface::{Aggregation, Interface};

    fn endpoints(top: Value, list: &[&str]) -> Result<Interface, InterfaceError> {
        let mappings: Vec<Value> = list
            .iter()
            .map(|endpoint| json!({"endpoint": endpoint, "type": "integer"}))
            .collect();
        Interface::from_json(&with_mappings(top, Value::Array(mappings)))
    }

    fn objects(mappings: Value) -> Result<Interface, InterfaceError> {
        Interface::from_json(&with_mappings(object(), mappings))
    }

    #[rstest]
    #[case::different_literals(&["/a/value", "/b/value"])]
    #[case::different_last_levels(&["/%{id}/value", "/%{id}/other"])]
    #[case::parameter_and_disjoint_literal(&["/a/c", "/%{y}/b"])]
    #[case::disjoint_first_levels(&["/led/%{id}/enabled", "/sampling", "/tags"])]
    #[case::same_literals_different_depth_disjoint(&["/a/%{x}/c", "/a/%{y}/d"])]
    #[case::case_differs_in_a_literal_only(&["/Config/x", "/config/y"])]
    fn unambiguous_endpoints_are_accepted(#[case] list: &[&str]) {
        assert!(endpoints(json!({}), list).is_ok());
    }

    #[rstest]
    #[case::parameter_names_differ(&["/%{a}/value", "/%{b}/value"])]
    #[case::case_differs(&["/Value", "/value"])]
    #[case::identical(&["/a", "/a"])]
    fn endpoints_equal_after_normalization_conflict(#[case] list: &[&str]) {
        let result = endpoints(json!({}), list);
        assert!(
            matches!(result, Err(InterfaceError::DuplicateEndpoint { .. })),
            "{result:?}"
        );
    }

    #[rstest]
    #[case::literal_and_parameter(&["/%{i}/value", "/myPath/value"], "the path /myPath/value matches both")]
    #[case::crossing_parameters(&["/a/%{x}", "/%{y}/b"], "the path /a/b matches both")]
    #[case::prefix_through_parameter(&["/some/thing", "/some/%{p}/value"], "prefix")]
    #[case::literal_prefix(&["/a/b/c", "/a/b"], "prefix")]
    #[case::literal_prefix_of_parameter(&["/name", "/%{slot}/threshold"], "prefix")]
    fn ambiguous_endpoints_are_rejected(#[case] list: &[&str], #[case] reason: &str) {
        match endpoints(json!({}), list) {
            Err(InterfaceError::AmbiguousEndpoints { reason: got, .. }) => {
                assert!(got.contains(reason), "{got:?} should mention {reason:?}")
            }
            other => panic!("expected AmbiguousEndpoints, got {other:?}"),
        }
    }

    #[test]
    fn ambiguity_applies_to_properties_too() {
        let result = endpoints(properties(), &["/%{i}/value", "/x/value"]);
        assert!(matches!(
            result,
            Err(InterfaceError::AmbiguousEndpoints { .. })
        ));
    }

    #[test]
    fn object_with_identical_prefix_and_attributes_is_accepted() {
        let iface = objects(json!([
            {"endpoint": "/%{room}/temperature", "type": "double", "reliability": "unique", "explicit_timestamp": true},
            {"endpoint": "/%{room}/humidity", "type": "double", "reliability": "unique", "explicit_timestamp": true},
        ]))
        .unwrap();
        assert_eq!(iface.aggregation, Aggregation::Object);
    }

    #[test]
    fn legacy_aggregate_true_applies_object_rules() {
        let result = Interface::from_json(&with_mappings(
            json!({"aggregate": true}),
            json!([{"endpoint": "/a/x", "type": "double"}, {"endpoint": "/b/y", "type": "double"}]),
        ));
        assert!(
            matches!(result, Err(InterfaceError::ObjectPrefix { .. })),
            "{result:?}"
        );
    }

    /// Runs `f` and returns what it logged.
    fn logs_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn deprecated_depth_one_object_endpoints_are_accepted_with_a_warning() {
        let logs = logs_of(|| {
            objects(json!([
                {"endpoint": "/temperature", "type": "double"},
                {"endpoint": "/humidity", "type": "double"},
            ]))
            .unwrap();
        });
        assert!(
            logs.contains("WARN") && logs.contains("deprecated"),
            "{logs}"
        );
    }

    #[test]
    fn deeper_object_endpoints_log_no_warning() {
        let logs = logs_of(|| {
            objects(json!([{"endpoint": "/%{r}/a", "type": "double"}])).unwrap();
        });
        assert_eq!(logs, "");
    }

    #[rstest]
    #[case::parameter_names_differ("/%{a}/x", "/%{b}/y")]
    #[case::literal_prefix_differs("/a/x", "/b/y")]
    #[case::depth_differs("/a/x", "/a/b/y")]
    #[case::parameter_versus_literal("/%{a}/x", "/a/y")]
    fn object_endpoints_must_share_the_exact_prefix(#[case] first: &str, #[case] second: &str) {
        let result = objects(json!([
            {"endpoint": first, "type": "double"},
            {"endpoint": second, "type": "double"},
        ]));
        assert!(
            matches!(result, Err(InterfaceError::ObjectPrefix { .. })),
            "{result:?}"
        );
    }

    #[rstest]
    #[case::reliability(json!({"reliability": "unique"}), "reliability")]
    #[case::retention(json!({"retention": "stored"}), "retention")]
    #[case::expiry(json!({"expiry": 60}), "expiry")]
    #[case::explicit_timestamp(json!({"explicit_timestamp": true}), "explicit_timestamp")]
    #[case::policy(json!({"database_retention_policy": "use_ttl", "database_retention_ttl": 60}), "database_retention_policy")]
    fn object_mappings_must_share_delivery_attributes(#[case] extra: Value, #[case] key: &str) {
        let mut second = json!({"endpoint": "/%{r}/b", "type": "double"});
        crate::interface::test_support::merge(&mut second, extra);
        let result = objects(json!([{"endpoint": "/%{r}/a", "type": "double"}, second]));
        assert!(
            matches!(&result, Err(InterfaceError::ObjectAttribute { key: got, .. }) if *got == key),
            "{result:?}"
        );
    }

    #[test]
    fn object_mappings_must_share_the_ttl() {
        let ttl = |ttl: u32, endpoint: &str| {
            json!({"endpoint": endpoint, "type": "double",
                   "database_retention_policy": "use_ttl", "database_retention_ttl": ttl})
        };
        let result = objects(json!([ttl(60, "/%{r}/a"), ttl(120, "/%{r}/b")]));
        assert!(
            matches!(
                &result,
                Err(InterfaceError::ObjectAttribute {
                    key: "database_retention_ttl",
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn object_keys_must_be_literals() {
        let result = objects(json!([{"endpoint": "/%{r}/%{key}", "type": "double"}]));
        assert!(
            matches!(result, Err(InterfaceError::ObjectKeyParameter { .. })),
            "{result:?}"
        );
    }
}
