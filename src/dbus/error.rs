//! The one place where agent errors become D-Bus errors (`org.astarte_platform.Agent1.Error.*`).

use crate::api::ApiError;
use crate::data::dbus::ConversionError;

/// Error names are part of the D-Bus API (documented in docs/dbus-api.md).
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.astarte_platform.Agent1.Error")]
pub enum AgentError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The interface is not among the agent's interfaces.
    UnknownInterface(String),
    /// The path matches no mapping of the interface (or no object endpoint prefix), or an
    /// object is empty or lacks a required key.
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
    /// The stored queue is full (`[store] max_queue_bytes`).
    QueueFull(String),
    /// The agent couldn't store the value (disk full, read-only, I/O error).
    Storage(String),
    /// `AddInterface` was given an interface that fails validation.
    InvalidInterface(String),
    /// `RemoveInterface` of an interface loaded from `interfaces_dir`.
    InterfaceNotRemovable(String),
    /// A documented limit of the local API was reached (docs/dbus-api.md, "Local API limits").
    LimitExceeded(String),
    /// `Register` was given something that is not a Pairing agent JWT.
    InvalidToken(String),
    /// Remote commands are off (`[commands] enabled = false`).
    CommandsDisabled(String),
    /// `RegisterHandler` with a name that is not a command name.
    InvalidCommandName(String),
    /// `RegisterHandler` for a command configured on the device or handled by another app.
    CommandTaken(String),
    /// `Complete` of a command that is not running for the calling app.
    CommandNotRunning(String),
}

impl From<ApiError> for AgentError {
    fn from(error: ApiError) -> Self {
        let message = crate::error_chain::error_chain(&error);
        match error {
            ApiError::UnknownInterface(_) => AgentError::UnknownInterface(message),
            ApiError::UnknownPath(_)
            | ApiError::EmptyObject { .. }
            | ApiError::MissingObjectKey { .. } => AgentError::UnknownPath(message),
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
            // The store logs each failure episode once, with what the operator must do;
            // callers get a plain message without internal paths.
            ApiError::Storage(_) => AgentError::Storage(
                "the agent couldn't store the data (disk full or read-only?); it was not accepted. See the agent's log"
                    .into(),
            ),
            ApiError::Encoding(_) => AgentError::OutOfRange(message),
            ApiError::InvalidInterface(_) => AgentError::InvalidInterface(message),
            ApiError::InterfaceNotRemovable(_) => AgentError::InterfaceNotRemovable(message),
            ApiError::LimitExceeded(_) => AgentError::LimitExceeded(message),
        }
    }
}

impl From<crate::provisioning::TokenError> for AgentError {
    fn from(error: crate::provisioning::TokenError) -> Self {
        AgentError::InvalidToken(error.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both object refusals keep the D-Bus name they always had (docs/dbus-api.md).
    #[test]
    fn empty_objects_and_missing_object_keys_are_unknown_paths_on_d_bus() {
        let empty = ApiError::EmptyObject {
            interface: "org.example.Object".into(),
            path: "/room1".into(),
        };
        let missing = ApiError::MissingObjectKey {
            interface: "org.example.Object".into(),
            path: "/room1".into(),
            key: "temperature".into(),
        };
        for (error, expected) in [
            (
                empty,
                "org.example.Object/room1: an object needs at least one key",
            ),
            (
                missing,
                "org.example.Object/room1: required object key \"temperature\" is missing",
            ),
        ] {
            match AgentError::from(error) {
                AgentError::UnknownPath(message) => assert_eq!(message, expected),
                other => panic!("{other:?}"),
            }
        }
    }
}
