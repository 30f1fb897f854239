//! Resolving concrete paths to mappings, and the QoS a mapping is published with.

use super::model::{Interface, InterfaceType, Mapping, Reliability};
use super::path::{ConcretePath, PathSyntaxError};

/// Why a path does not resolve on an interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("malformed path `{path}`: {reason}")]
    MalformedPath {
        path: String,
        reason: PathSyntaxError,
    },
    #[error("interface {interface} has no mapping for path {path}")]
    NoMapping { interface: String, path: String },
    #[error("interface {interface} is object-aggregated, send a whole object instead")]
    NotIndividual { interface: String },
    #[error("interface {interface} is not object-aggregated, send individual values instead")]
    NotObject { interface: String },
}

impl Interface {
    /// The mapping a concrete path such as `/room1/temperature` resolves to, on an
    /// individual interface. Validation guarantees at most one mapping matches.
    pub fn mapping(&self, path: &str) -> Result<&Mapping, PathError> {
        if self.is_object() {
            return Err(PathError::NotIndividual {
                interface: self.name.clone(),
            });
        }
        let concrete = parse(path)?;
        self.mappings
            .iter()
            .find(|mapping| mapping.endpoint.matches_path(&concrete))
            .ok_or_else(|| self.no_mapping(path))
    }

    /// On an object interface, the mappings of the object published on `path` (every
    /// endpoint level but the last; `/` for deprecated depth-1 endpoints), each with its
    /// key inside the object, in interface order.
    pub fn object_mappings(&self, path: &str) -> Result<Vec<(&str, &Mapping)>, PathError> {
        if !self.is_object() {
            return Err(PathError::NotObject {
                interface: self.name.clone(),
            });
        }
        let concrete = parse(path)?;
        let found: Vec<(&str, &Mapping)> = self
            .mappings
            .iter()
            .filter(|mapping| mapping.endpoint.matches_object_path(&concrete))
            .filter_map(|mapping| mapping.object_key().map(|key| (key, mapping)))
            .collect();
        if found.is_empty() {
            return Err(self.no_mapping(path));
        }
        Ok(found)
    }

    /// MQTT QoS for publishing on `mapping`: properties always 2, datastreams by
    /// reliability (unreliable 0, guaranteed 1, unique 2).
    pub fn qos(&self, mapping: &Mapping) -> u8 {
        if self.interface_type == InterfaceType::Properties {
            return 2;
        }
        match mapping.reliability {
            Reliability::Unreliable => 0,
            Reliability::Guaranteed => 1,
            Reliability::Unique => 2,
        }
    }

    fn no_mapping(&self, path: &str) -> PathError {
        PathError::NoMapping {
            interface: self.name.clone(),
            path: path.to_owned(),
        }
    }
}

fn parse(path: &str) -> Result<ConcretePath<'_>, PathError> {
    ConcretePath::parse(path).map_err(|reason| PathError::MalformedPath {
        path: path.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;
    use crate::interface::test_support::{object, properties, with_mappings};

    fn iface(top: Value, mappings: Value) -> Interface {
        Interface::from_json(&with_mappings(top, mappings)).unwrap()
    }

    fn individual() -> Interface {
        iface(
            json!({}),
            json!([
                {"endpoint": "/%{sensor}/value", "type": "double", "reliability": "guaranteed"},
                {"endpoint": "/config/enabled", "type": "boolean", "reliability": "unique"},
                {"endpoint": "/%{sensor}/limits/%{key}", "type": "integer"},
            ]),
        )
    }

    fn environment() -> Interface {
        iface(
            object(),
            json!([
                {"endpoint": "/building/%{room}/temperature", "type": "double"},
                {"endpoint": "/building/%{room}/label", "type": "string"},
            ]),
        )
    }

    #[rstest]
    #[case::parameter("/room1/value", "/%{sensor}/value")]
    #[case::literal("/config/enabled", "/config/enabled")]
    #[case::two_parameters("/s1/limits/max", "/%{sensor}/limits/%{key}")]
    #[case::parameter_takes_a_literal_looking_value("/config/value", "/%{sensor}/value")]
    fn individual_paths_resolve_to_their_mapping(#[case] path: &str, #[case] endpoint: &str) {
        let iface = individual();
        assert_eq!(iface.mapping(path).unwrap().endpoint.to_string(), endpoint);
    }

    #[rstest]
    #[case::too_short("/room1")]
    #[case::too_long("/room1/value/x")]
    #[case::literal_case_differs("/Config/enabled")]
    #[case::unknown_literal("/config/disabled")]
    fn unmatched_paths_are_no_mapping(#[case] path: &str) {
        assert_eq!(
            individual().mapping(path),
            Err(PathError::NoMapping {
                interface: "org.example.Test".into(),
                path: path.into()
            })
        );
    }

    #[rstest]
    #[case::empty_level("//value", PathSyntaxError::EmptyLevel { position: 1 })]
    #[case::trailing_slash("/room1/value/", PathSyntaxError::TrailingSlash)]
    #[case::no_leading_slash("room1/value", PathSyntaxError::NoLeadingSlash)]
    #[case::wildcard("/+/value", PathSyntaxError::ForbiddenCharacter { level: "+".into(), forbidden: '+' })]
    fn malformed_paths_are_reported_as_such(#[case] path: &str, #[case] reason: PathSyntaxError) {
        assert_eq!(
            individual().mapping(path),
            Err(PathError::MalformedPath {
                path: path.into(),
                reason
            })
        );
    }

    #[test]
    fn individual_lookup_on_an_object_interface_is_refused() {
        let iface = environment();
        let result = iface.mapping("/building/kitchen/temperature");
        assert!(
            matches!(result, Err(PathError::NotIndividual { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn object_path_resolves_to_every_key_in_interface_order() {
        let iface = environment();
        let found: Vec<(&str, String)> = iface
            .object_mappings("/building/kitchen")
            .unwrap()
            .into_iter()
            .map(|(key, mapping)| (key, mapping.endpoint.to_string()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("temperature", "/building/%{room}/temperature".to_owned()),
                ("label", "/building/%{room}/label".to_owned()),
            ]
        );
    }

    #[rstest]
    #[case::full_endpoint_path("/building/kitchen/temperature")]
    #[case::wrong_literal("/garage/kitchen")]
    #[case::too_short("/building")]
    fn object_paths_that_are_not_the_prefix_are_no_mapping(#[case] path: &str) {
        let iface = environment();
        let result = iface.object_mappings(path);
        assert!(
            matches!(result, Err(PathError::NoMapping { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn depth_one_object_is_published_on_the_root_path() {
        let iface = iface(
            object(),
            json!([{"endpoint": "/temperature", "type": "double"}, {"endpoint": "/humidity", "type": "double"}]),
        );
        let keys: Vec<&str> = iface
            .object_mappings("/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["temperature", "humidity"]);
    }

    #[test]
    fn object_lookup_on_an_individual_interface_is_refused() {
        let iface = individual();
        let result = iface.object_mappings("/room1");
        assert!(
            matches!(result, Err(PathError::NotObject { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn malformed_object_path_is_reported_as_such() {
        let iface = environment();
        let result = iface.object_mappings("/building/");
        assert!(
            matches!(result, Err(PathError::MalformedPath { .. })),
            "{result:?}"
        );
    }

    #[rstest]
    #[case("/room1/value", 1)]
    #[case("/config/enabled", 2)]
    #[case("/s1/limits/max", 0)]
    fn datastream_qos_follows_reliability(#[case] path: &str, #[case] qos: u8) {
        let iface = individual();
        assert_eq!(iface.qos(iface.mapping(path).unwrap()), qos);
    }

    #[test]
    fn properties_are_always_qos_2() {
        let iface = iface(properties(), json!([{"endpoint": "/a", "type": "double"}]));
        assert_eq!(iface.qos(iface.mapping("/a").unwrap()), 2);
    }
}
