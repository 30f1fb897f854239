//! One message waiting for the MQTT session, and its row in the store.

use crate::interface::Retention;

/// One MQTT publish towards Astarte, already validated and encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Position in the order of accepted calls; keeps order across requeues and restarts
    /// (0 until the queue or the store gives the message its place).
    pub seq: u64,
    pub interface: String,
    pub major: u32,
    /// Concrete path (for an object, the common prefix), always starting with `/`.
    pub path: String,
    /// BSON payload; empty for a property unset.
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retention: Retention,
    /// Wall-clock deadline in ms since the epoch; not sent after it.
    pub expires_at_ms: Option<i64>,
    pub is_property: bool,
}

impl Message {
    /// Whether the message is a row of the stored queue (removed from disk once acknowledged).
    pub fn is_stored(&self) -> bool {
        !self.is_property && self.retention == Retention::Stored
    }

    pub(super) fn is_volatile(&self) -> bool {
        !self.is_property && self.retention != Retention::Stored
    }
}

impl Message {
    /// The row the store keeps for a stored message.
    pub fn to_stored(&self) -> crate::store::StoredMessage {
        crate::store::StoredMessage {
            interface: self.interface.clone(),
            major: self.major,
            path: self.path.clone(),
            payload: self.payload.clone(),
            qos: self.qos,
            expires_at_ms: self.expires_at_ms,
        }
    }

    pub fn with_seq(self, seq: u64) -> Message {
        Message { seq, ..self }
    }
}

impl Message {
    pub(super) fn from_row(row: crate::store::QueuedRow) -> Message {
        let stored = row.message;
        Message {
            seq: row.seq,
            interface: stored.interface,
            major: stored.major,
            path: stored.path,
            payload: stored.payload,
            qos: stored.qos,
            retention: Retention::Stored,
            expires_at_ms: stored.expires_at_ms,
            is_property: false,
        }
    }
}
