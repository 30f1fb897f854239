//! Where results go: a [`ResultSink`]. The agent's sink queues each result as a `stored`,
//! `unique` object message through [`DeviceApi`], exactly like an app's `SendObject`, so
//! results reach Astarte across outages and restarts, in order.

use std::future::Future;
use std::sync::Arc;

use crate::api::{ApiError, DeviceApi};

use super::result::CommandResult;
use super::{RESULT_PATH, RESULTS_INTERFACE};

/// A result could not be queued.
#[derive(Debug, thiserror::Error)]
#[error("couldn't queue the result of command {id}")]
pub struct PublishError {
    pub id: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Takes each result the engine produces, in order. `publish` resolves once the result is
/// queued for Astarte (on disk, for the agent's sink).
pub trait ResultSink: Send + Sync + 'static {
    fn publish(
        &self,
        result: &CommandResult,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// The agent's sink: `CommandResults` `/result` objects through the device API. The
/// interface must be in the registry (it is when `[commands] enabled = true`).
#[derive(Clone)]
pub struct DeviceApiSink {
    api: Arc<DeviceApi>,
}

impl DeviceApiSink {
    pub fn new(api: Arc<DeviceApi>) -> DeviceApiSink {
        DeviceApiSink { api }
    }
}

impl ResultSink for DeviceApiSink {
    async fn publish(&self, result: &CommandResult) -> Result<(), PublishError> {
        let failed = |source: ApiError| PublishError {
            id: result.id.clone(),
            source: Box::new(source),
        };
        let target = self
            .api
            .object_datastream(RESULTS_INTERFACE, RESULT_PATH)
            .map_err(failed)?;
        self.api
            .send_object(&target, result.values(), Some(result.timestamp_ms))
            .await
            .map_err(failed)
    }
}
