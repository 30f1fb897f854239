//! The refill task: while part of the stored backlog waits on disk, it reads the next rows
//! into the queue's window as the window drains. The MQTT session never waits for it: rows
//! appear in the queue and wake the session like any new message.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Queue, REFILL_ROWS};
use crate::store::Store;

/// Wait after a failed read before the next attempt.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Task: refills `queue` from `store` until cancelled.
pub async fn refill(
    queue: Arc<Queue>,
    store: Store,
    cancel: CancellationToken,
) -> Result<(), Infallible> {
    loop {
        let from = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            from = queue.wants_refill() => from,
        };
        let loaded = store.load(from, REFILL_ROWS).await;
        if let Err(error) = &loaded {
            tracing::warn!(error = %crate::error_chain::error_chain(error), "couldn't read the stored queue; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(RETRY_DELAY) => {}
            }
        }
        queue.refill(loaded.map_err(|_| ()));
    }
}

impl Queue {
    /// Resolves with the sequence number to read from, once the window should be refilled
    /// (and marks the refill as requested: one at a time).
    pub async fn wants_refill(&self) -> u64 {
        loop {
            let notified = self.refill_wakeup.notified();
            if let Some(from) = self.refill_needed() {
                return from;
            }
            notified.await;
        }
    }
}
