//! Why an interface file was rejected, worded so an operator can fix the file.

use std::fmt;

use super::endpoint::EndpointError;

/// Where in the interface a problem is: the top level, or one mapping (named by its
/// endpoint as written, or by its index when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Interface,
    Mapping(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Interface => f.write_str("interface"),
            Location::Mapping(label) => write!(f, "mapping {label}"),
        }
    }
}

/// One variant per rule family of the interface schema (protocol reference, section 4).
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("the document is larger than {max} bytes, the most an interface may take")]
    DocumentTooLarge { max: usize },
    #[error("not valid json: {0}")]
    Json(serde_json::Error),
    #[error("wrong value type at {0}")]
    WrongType(serde_json::Error),
    #[error("{at}: missing required key `{key}`")]
    MissingKey { at: Location, key: &'static str },
    #[error("interface name `{name}` is invalid: {reason}")]
    InvalidName { name: String, reason: String },
    #[error(
        "version 0.0 is invalid: `version_minor` must be greater than 0 when `version_major` is 0"
    )]
    NullVersion,
    #[error("{at}: `{key}` is {value}, expected {expected}")]
    InvalidValue {
        at: Location,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{at}: `{key}` is {len} characters long, at most {max} allowed")]
    TooLong {
        at: Location,
        key: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "properties interfaces cannot be object-aggregated, use `\"aggregation\": \"individual\"`"
    )]
    ObjectProperties,
    #[error("the interface has {count} mappings, expected 1 to 1024")]
    MappingCount { count: usize },
    #[error("{at}: `{key}` is {only}-only, remove it")]
    NotApplicable {
        at: Location,
        key: &'static str,
        only: &'static str,
    },
    #[error("{at}: {problem}")]
    DatabaseRetention { at: Location, problem: &'static str },
    #[error("mapping {endpoint}: invalid endpoint: {reason}")]
    InvalidEndpoint {
        endpoint: String,
        reason: EndpointError,
    },
    #[error(
        "mappings {first} and {second} conflict: their endpoints are equal once parameter names are removed and case is ignored"
    )]
    DuplicateEndpoint { first: String, second: String },
    #[error("mappings {first} and {second} are ambiguous: {reason}")]
    AmbiguousEndpoints {
        first: String,
        second: String,
        reason: String,
    },
    #[error(
        "object mappings {first} and {second} must have the same endpoint prefix (every level but the last, parameter names included)"
    )]
    ObjectPrefix { first: String, second: String },
    #[error("object mappings {first} and {second} must have the same `{key}`")]
    ObjectAttribute {
        key: &'static str,
        first: String,
        second: String,
    },
    #[error(
        "object mapping {endpoint}: the last level must be a literal, it is the key inside the object"
    )]
    ObjectKeyParameter { endpoint: String },
}

/// Every problem found in one document. Validation goes on after a broken rule wherever the
/// rest does not depend on it, so one run reports every problem of a file.
#[derive(Debug, Default)]
pub(super) struct Findings(Vec<InterfaceError>);

impl Findings {
    /// The value, or `None` with its problem recorded.
    pub(super) fn take<T>(&mut self, result: Result<T, InterfaceError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(problem) => {
                self.0.push(problem);
                None
            }
        }
    }

    pub(super) fn push(&mut self, problem: InterfaceError) {
        self.0.push(problem);
    }

    pub(super) fn extend(&mut self, problems: Vec<InterfaceError>) {
        self.0.extend(problems);
    }

    /// `value` when nothing was found; every problem otherwise (`value` is `None` only when
    /// something was).
    pub(super) fn finish<T>(self, value: Option<T>) -> Result<T, Vec<InterfaceError>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(self.0),
        }
    }
}
