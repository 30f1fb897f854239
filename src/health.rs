//! What the `status` command and the D-Bus properties report about the connection, beyond
//! the state: the broker in use and when the client certificate expires.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Health {
    broker: Mutex<String>,
    certificate_expiry_ms: AtomicI64,
}

impl Health {
    /// Records the credentials a session is about to use.
    pub fn set_credentials(&self, broker: String, not_after: SystemTime) {
        *self
            .broker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = broker;
        let expiry = not_after
            .duration_since(UNIX_EPOCH)
            .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.certificate_expiry_ms.store(expiry, Ordering::Relaxed);
    }

    /// `host:port` of the broker, empty before the first credentials.
    pub fn broker(&self) -> String {
        self.broker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The client certificate's `notAfter` in ms since the epoch; 0 before the first one.
    pub fn certificate_expiry_ms(&self) -> i64 {
        self.certificate_expiry_ms.load(Ordering::Relaxed)
    }
}
