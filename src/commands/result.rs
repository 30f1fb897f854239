//! What the device reports about a command: one `CommandResults` object per status change,
//! sized so that it always fits Astarte's 65,535-byte message cap.
//!
//! The BSON size of a result is computed exactly from the lengths of its strings (every key
//! and every fixed-size value is known), so fitting a result is arithmetic, not trial
//! encoding; a test compares the arithmetic with the real encoder.

pub use crate::store::{CommandResult, NO_EXIT_CODE, Status};

use crate::data::{AstarteValue, PayloadError, encode_object};
use crate::topic::MAX_REMAINING_LENGTH;

use super::{RESULT_PATH, RESULTS_INTERFACE};

/// Longest command id accepted: ids travel in every result, so they count against its size.
pub const MAX_ID_BYTES: usize = 256;

/// Longest `detail`; longer ones are cut.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// The longest topic a result can go out on: a 48-character realm, a 22-character device ID.
const MAX_TOPIC_BYTES: usize = 48 + 1 + 22 + 1 + RESULTS_INTERFACE.len() + RESULT_PATH.len();

/// Payload bytes a result may take: the broker caps topic length prefix (2), topic, packet
/// id (2, QoS 2) and payload at [`MAX_REMAINING_LENGTH`].
pub const PAYLOAD_BUDGET: usize = MAX_REMAINING_LENGTH - 2 - MAX_TOPIC_BYTES - 2;

/// BSON bytes of a result besides the contents of its strings: the envelope with `t` and
/// `v`, every key, every length prefix and terminator, the integer and the boolean.
const FIXED_BYTES: usize = {
    // {"t": datetime, "v": {...}}: header 4, `t` 1+2+8, `v` 1+2, terminator 1.
    let envelope = 4 + 11 + 3 + 1;
    // Embedded document: header 4 and terminator 1.
    let object = 4 + 1;
    let strings = string_element("id")
        + string_element("status")
        + string_element("stdout")
        + string_element("stderr")
        + string_element("detail");
    let exit_code = 1 + "exitCode".len() + 1 + 4;
    let truncated = 1 + "truncated".len() + 1 + 1;
    envelope + object + strings + exit_code + truncated
};

/// BSON bytes of a string element besides its text: type 1, key, NUL 1, length 4, NUL 1.
const fn string_element(key: &str) -> usize {
    1 + key.len() + 1 + 4 + 1
}

/// The longest status name.
const MAX_STATUS_BYTES: usize = "interrupted".len();

/// Largest `max_output_bytes` a command may have: stdout and stderr both at this size fit
/// one result together with the longest id, detail and status. 32,004 bytes.
pub const MAX_OUTPUT_BYTES: usize =
    (PAYLOAD_BUDGET - FIXED_BYTES - MAX_ID_BYTES - MAX_DETAIL_BYTES - MAX_STATUS_BYTES) / 2;

impl CommandResult {
    /// Bytes of the BSON payload [`CommandResult::encode`] produces.
    pub fn encoded_len(&self) -> usize {
        FIXED_BYTES
            + self.id.len()
            + self.status.name().len()
            + self.stdout.len()
            + self.stderr.len()
            + self.detail.len()
    }

    /// Cuts what must be cut so the result fits [`PAYLOAD_BUDGET`]: the detail beyond
    /// [`MAX_DETAIL_BYTES`], then stdout and stderr (each keeps at least half of what is
    /// left, or all it needs); `truncated` is set when output was cut. An id longer than
    /// [`MAX_ID_BYTES`] is cut too (the engine never lets one in).
    pub fn fit(&mut self) {
        cut(&mut self.detail, MAX_DETAIL_BYTES);
        cut(&mut self.id, MAX_ID_BYTES);
        let excess = self.encoded_len().saturating_sub(PAYLOAD_BUDGET);
        if excess == 0 {
            return;
        }
        let room = (self.stdout.len() + self.stderr.len()).saturating_sub(excess);
        let (small, large) = if self.stdout.len() <= self.stderr.len() {
            (self.stdout.len(), self.stderr.len())
        } else {
            (self.stderr.len(), self.stdout.len())
        };
        let small_keeps = small.min(room / 2);
        let large_keeps = (room - small_keeps).min(large);
        let (stdout_keeps, stderr_keeps) = if self.stdout.len() <= self.stderr.len() {
            (small_keeps, large_keeps)
        } else {
            (large_keeps, small_keeps)
        };
        cut(&mut self.stdout, stdout_keeps);
        cut(&mut self.stderr, stderr_keeps);
        self.truncated = true;
    }

    /// The object's keys and values, in interface order, after [`CommandResult::fit`].
    pub fn values(&self) -> Vec<(String, AstarteValue)> {
        let mut fitted = self.clone();
        fitted.fit();
        let exit_code = if fitted.exit_code == i32::MIN {
            // Astarte refuses i32::MIN; it is no real exit code anyway.
            NO_EXIT_CODE
        } else {
            fitted.exit_code
        };
        vec![
            ("id".into(), AstarteValue::String(fitted.id)),
            (
                "status".into(),
                AstarteValue::String(fitted.status.name().into()),
            ),
            ("exitCode".into(), AstarteValue::Integer(exit_code)),
            ("stdout".into(), AstarteValue::String(fitted.stdout)),
            ("stderr".into(), AstarteValue::String(fitted.stderr)),
            ("truncated".into(), AstarteValue::Boolean(fitted.truncated)),
            ("detail".into(), AstarteValue::String(fitted.detail)),
        ]
    }

    /// The BSON payload `{"v": {...}, "t": timestamp}`, at most [`PAYLOAD_BUDGET`] bytes.
    pub fn encode(&self) -> Result<Vec<u8>, PayloadError> {
        encode_object(&self.values(), Some(self.timestamp_ms))
    }
}

/// Shortens `text` to at most `max` bytes, at a character boundary.
pub(crate) fn cut(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}
