//! A command request as Astarte sends it: one object on `Commands` `/request`.

use crate::data::AstarteValue;

use super::result::MAX_ID_BYTES;

/// A decoded request. Missing keys get neutral values (no arguments, the configured
/// timeout); a missing command name is rejected by the engine, which can still answer
/// because the id is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub id: String,
    pub command: String,
    pub args: Vec<String>,
    /// Seconds the server allows; 0 or less means the configured timeout.
    pub timeout_seconds: i32,
}

/// A request that cannot even be answered: results are matched by id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("command request without an id: it can't be answered, dropping it")]
    MissingId,
    #[error(
        "command request id of {0} bytes (at most {MAX_ID_BYTES}): it can't be answered, dropping it"
    )]
    IdTooLong(usize),
}

impl CommandRequest {
    /// Reads the keys of a received `/request` object (the transport has typed them against
    /// the interface already; a key of another type is ignored like an absent one).
    pub fn from_object(values: &[(String, AstarteValue)]) -> Result<CommandRequest, RequestError> {
        let mut request = CommandRequest {
            id: String::new(),
            command: String::new(),
            args: Vec::new(),
            timeout_seconds: 0,
        };
        for (key, value) in values {
            match (key.as_str(), value) {
                ("id", AstarteValue::String(id)) => request.id = id.clone(),
                ("command", AstarteValue::String(command)) => request.command = command.clone(),
                ("args", AstarteValue::StringArray(args)) => request.args = args.clone(),
                ("timeoutSeconds", AstarteValue::Integer(seconds)) => {
                    request.timeout_seconds = *seconds
                }
                _ => {}
            }
        }
        request.check()?;
        Ok(request)
    }

    /// An id the device can answer with: present and short enough for every result.
    pub fn check(&self) -> Result<(), RequestError> {
        if self.id.is_empty() {
            return Err(RequestError::MissingId);
        }
        if self.id.len() > MAX_ID_BYTES {
            return Err(RequestError::IdTooLong(self.id.len()));
        }
        Ok(())
    }
}
