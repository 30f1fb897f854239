//! The one place where agent errors become D-Bus errors (`org.astarte_platform.Agent1.Error.*`).

use crate::api::ApiError;
use crate::data::dbus::ConversionError;

/// Error names are part of the D-Bus API (documented in README).
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.astarte_platform.Agent1.Error")]
pub enum AgentError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The interface is not among the agent's interfaces.
    UnknownInterface(String),
    /// The path matches no mapping of the interface (or no object endpoint prefix).
    UnknownPath(String),
    /// The variant's D-Bus type does not match the mapping's Astarte type.
    WrongType(String),
    /// The value does not fit the mapping's type or Astarte's limits.
    OutOfRange(String),
    /// Device apps may only write device-owned interfaces.
    WrongOwnership(String),
    /// Individual vs object aggregation mismatch.
    WrongAggregation(String),
    /// Datastream method on a properties interface or vice versa.
    WrongInterfaceType(String),
    /// Unset on a mapping without `allow_unset`.
    UnsetNotAllowed(String),
    /// The property has no value.
    NotSet(String),
    /// A timestamp was given for a mapping without `explicit_timestamp`.
    UnexpectedTimestamp(String),
    /// The message would exceed the broker's 65,535-byte limit.
    TooLarge(String),
    /// The offline queue is full.
    QueueFull(String),
    /// The agent couldn't store the value (disk full, I/O error).
    Storage(String),
}

impl From<ApiError> for AgentError {
    fn from(error: ApiError) -> Self {
        let message = crate::error_chain::error_chain(&error);
        match error {
            ApiError::UnknownInterface(_) => AgentError::UnknownInterface(message),
            ApiError::UnknownPath(_) => AgentError::UnknownPath(message),
            ApiError::WrongType(_) => AgentError::WrongType(message),
            ApiError::OutOfRange(_) => AgentError::OutOfRange(message),
            ApiError::WrongOwnership { .. } => AgentError::WrongOwnership(message),
            ApiError::WrongAggregation { .. } => AgentError::WrongAggregation(message),
            ApiError::WrongInterfaceType { .. } => AgentError::WrongInterfaceType(message),
            ApiError::UnsetNotAllowed { .. } => AgentError::UnsetNotAllowed(message),
            ApiError::NotSet { .. } => AgentError::NotSet(message),
            ApiError::UnexpectedTimestamp { .. } => AgentError::UnexpectedTimestamp(message),
            ApiError::TooLarge { .. } => AgentError::TooLarge(message),
            ApiError::QueueFull(_) => AgentError::QueueFull(message),
            ApiError::Storage(_) => {
                tracing::error!(error = %message, "couldn't store a property: check free space and permissions of store_dir");
                AgentError::Storage("the agent couldn't store the value; see its log".into())
            }
            ApiError::Encoding(_) => AgentError::OutOfRange(message),
        }
    }
}

impl From<ConversionError> for AgentError {
    fn from(error: ConversionError) -> Self {
        let message = crate::error_chain::error_chain(&error);
        match error {
            ConversionError::WrongType { .. } => AgentError::WrongType(message),
            _ => AgentError::OutOfRange(message),
        }
    }
}
