//! Why a request from an app was refused.

use crate::data::payload;
use crate::properties::PropertyStoreError;
use crate::store::StoreError;

/// Each variant becomes `org.astarte_platform.Agent1.Error.<Variant>`, unless its doc names
/// another error (see `dbus/error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "unknown interface {0:?}: it is not among the agent's interfaces (see the Interfaces property)"
    )]
    UnknownInterface(String),
    #[error("{0}")]
    UnknownPath(String),
    /// `SendObject` with no key at all. D-Bus: `UnknownPath`.
    #[error("{interface}{path}: an object needs at least one key")]
    EmptyObject { interface: String, path: String },
    /// `SendObject` without a key whose mapping is `required`. D-Bus: `UnknownPath`.
    #[error("{interface}{path}: required object key {key:?} is missing")]
    MissingObjectKey {
        interface: String,
        path: String,
        key: String,
    },
    #[error("{0}")]
    WrongType(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("interface {interface} is {owner}-owned: {hint}")]
    WrongOwnership {
        interface: String,
        owner: &'static str,
        hint: &'static str,
    },
    #[error("interface {interface} is {actual}-aggregated: use {hint}")]
    WrongAggregation {
        interface: String,
        actual: &'static str,
        hint: &'static str,
    },
    #[error("interface {interface} is a {actual} interface: use {hint}")]
    WrongInterfaceType {
        interface: String,
        actual: &'static str,
        hint: &'static str,
    },
    #[error("mapping {endpoint} of {interface} does not allow unset (allow_unset is false)")]
    UnsetNotAllowed { interface: String, endpoint: String },
    #[error(
        "mapping {endpoint} of {interface} has explicit_timestamp false, so Astarte would ignore the timestamp: use Send or SendObject"
    )]
    UnexpectedTimestamp { interface: String, endpoint: String },
    #[error("property {interface}{path} is not set")]
    NotSet { interface: String, path: String },
    #[error(
        "the message would be {size} bytes on the wire; Astarte's broker accepts at most {max}"
    )]
    TooLarge { size: usize, max: usize },
    #[error("{0}")]
    QueueFull(StoreError),
    #[error("couldn't store the data")]
    Storage(#[source] StoreError),
    #[error("couldn't encode the value: {0}")]
    Encoding(#[from] payload::PayloadError),
    #[error("invalid interface: {0}")]
    InvalidInterface(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error(
        "interface {0} comes from interfaces_dir: change or remove its file there (and reload or restart the agent)"
    )]
    InterfaceNotRemovable(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::QueueFull { .. } => ApiError::QueueFull(error),
            other => ApiError::Storage(other),
        }
    }
}

impl From<PropertyStoreError> for ApiError {
    fn from(error: PropertyStoreError) -> Self {
        match error {
            PropertyStoreError::Store(error) => error.into(),
            PropertyStoreError::Encode(error) => ApiError::Encoding(error),
            PropertyStoreError::TooMany => ApiError::LimitExceeded(error.to_string()),
        }
    }
}
