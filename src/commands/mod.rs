//! Remote commands: Astarte asks the device to run something (`Commands` `/request`), the
//! device answers with every status change of it (`CommandResults` `/result`).
//!
//! - [`interfaces`]: both interfaces, embedded from the repository's `interfaces/` folder.
//! - [`route`]: how the router hands `/request` objects to the engine (acknowledged once
//!   in the ledger); [`CommandRequest::from_object`] reads one.
//! - [`Engine`]: the task that runs commands, at most once each, in arrival order, at most
//!   `max_parallel` at once, with a ledger in the store; [`CommandsHandle`] talks to it.
//! - [`exec`]: running a configured command (no shell, cleared environment, own process
//!   group killed on timeout).
//! - [`CommandResult`]: a result, always small enough for Astarte's message cap.
//! - [`ResultSink`]: where results go ([`DeviceApiSink`] queues them as stored messages).
//! - [`HandlerRequest`]: a command for an app that handles it over D-Bus; [`Completion`]: the
//!   app's report of how it ended.

mod engine;
pub mod exec;
mod handlers;
mod lifecycle;
mod options;
mod recovery;
mod request;
mod result;
mod sink;

#[cfg(test)]
mod tests;

use tokio::sync::{mpsc, oneshot};

pub use engine::{DEFAULT_HANDLER_GRACE, Engine, Executor, INPUT_QUEUE, Input};
pub use handlers::{Completion, HandlerError, HandlerRequest, MAX_HANDLERS, MAX_HANDLERS_PER_APP};
pub use options::{
    CommandSpec, CommandsOptions, DEFAULT_LEDGER_MAX_AGE_DAYS, DEFAULT_LEDGER_MAX_ENTRIES,
    DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_PARALLEL, DEFAULT_TIMEOUT_SECONDS, compile_args_pattern,
    is_valid_name,
};
pub use request::{CommandRequest, RequestError};
pub use result::{
    CommandResult, MAX_DETAIL_BYTES, MAX_ID_BYTES, MAX_OUTPUT_BYTES, NO_EXIT_CODE, PAYLOAD_BUDGET,
    Status,
};
pub use sink::{DeviceApiSink, PublishError, ResultSink};

use crate::interface::{Interface, InterfaceError};
use crate::router::{Route, Routed};
use crate::store::{LedgerEntry, StoreError};

/// Server-owned: requests arrive here.
pub const REQUESTS_INTERFACE: &str = "org.astarte-platform.agent.Commands";
/// Device-owned: results go out here.
pub const RESULTS_INTERFACE: &str = "org.astarte-platform.agent.CommandResults";
/// The object path of a request.
pub const REQUEST_PATH: &str = "/request";
/// The object path of a result.
pub const RESULT_PATH: &str = "/result";

const REQUESTS_JSON: &str =
    include_str!("../../interfaces/org.astarte-platform.agent.Commands.json");
const RESULTS_JSON: &str =
    include_str!("../../interfaces/org.astarte-platform.agent.CommandResults.json");

/// Both command interfaces, parsed and validated like any interface file. They join the
/// registry (and the introspection) only with `[commands] enabled = true`.
pub fn interfaces() -> Result<Vec<Interface>, InterfaceError> {
    Ok(vec![
        Interface::from_json(REQUESTS_JSON)?,
        Interface::from_json(RESULTS_JSON)?,
    ])
}

/// The interfaces the agent adds to its own: both command interfaces when `[commands]` is
/// enabled, none otherwise (they were validated by a unit test, so failing here is a bug,
/// logged and survived).
pub fn builtin_interfaces(options: &CommandsOptions) -> Vec<Interface> {
    if !options.enabled {
        return Vec::new();
    }
    interfaces().unwrap_or_else(|error| {
        tracing::error!(%error, "the built-in command interfaces are invalid: remote commands are off");
        Vec::new()
    })
}

/// The JSON documents of both interfaces (what the realm administrator installs).
pub fn interface_documents() -> [(&'static str, &'static str); 2] {
    [
        (REQUESTS_INTERFACE, REQUESTS_JSON),
        (RESULTS_INTERFACE, RESULTS_JSON),
    ]
}

/// The router's way to the engine: the [`Route`] that claims the `Commands` interface, and
/// the receiver to give to [`Engine::run`]. The router never waits: when the engine is
/// behind, a request stays unacknowledged and the broker delivers it again later.
pub fn route() -> (Route, mpsc::Receiver<Routed>) {
    let (sender, receiver) = mpsc::channel(INPUT_QUEUE);
    let route = Route {
        interfaces: vec![REQUESTS_INTERFACE.to_owned()],
        sender,
    };
    (route, receiver)
}

/// A handle and the receiver to give to [`Engine::run`].
pub fn channel() -> (CommandsHandle, mpsc::Receiver<Input>) {
    let (inputs, receiver) = mpsc::channel(INPUT_QUEUE);
    (CommandsHandle { inputs }, receiver)
}

/// Talks to the engine; cheap to clone. Every method waits while the engine's queue is
/// full.
#[derive(Clone)]
pub struct CommandsHandle {
    inputs: mpsc::Sender<Input>,
}

impl CommandsHandle {
    /// Hands over a request received from Astarte; false when the engine has stopped.
    pub async fn request(&self, request: CommandRequest) -> bool {
        self.inputs.send(Input::Request(request)).await.is_ok()
    }

    /// `RegisterHandler(name)` from the app with the unique bus name `owner`.
    pub async fn register_handler(&self, name: &str, owner: &str) -> Result<(), HandlerError> {
        let (reply, answer) = oneshot::channel();
        self.call(
            Input::RegisterHandler {
                name: name.to_owned(),
                owner: owner.to_owned(),
                reply,
            },
            answer,
        )
        .await
    }

    /// `Complete(id, exit_code, stdout, stderr)` from the app `owner`.
    pub async fn complete(&self, owner: &str, completion: Completion) -> Result<(), HandlerError> {
        let (reply, answer) = oneshot::channel();
        self.call(
            Input::Complete {
                owner: owner.to_owned(),
                completion,
                reply,
            },
            answer,
        )
        .await
    }

    /// The app `owner` left the bus: its registrations end, its running commands become
    /// `failed` with `detail`.
    pub async fn handler_gone(&self, owner: &str, detail: &str) {
        let _ = self
            .inputs
            .send(Input::HandlerGone {
                owner: owner.to_owned(),
                detail: detail.to_owned(),
            })
            .await;
    }

    /// The newest `limit` ledger entries, oldest first (`ListCommands`: id, name, status,
    /// received_at_ms).
    pub async fn list(&self, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self
            .inputs
            .send(Input::List { limit, reply })
            .await
            .is_err()
        {
            return Err(StoreError::Stopped);
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    async fn call(
        &self,
        input: Input,
        answer: oneshot::Receiver<Result<(), HandlerError>>,
    ) -> Result<(), HandlerError> {
        if self.inputs.send(input).await.is_err() {
            return Err(HandlerError::Stopped);
        }
        answer.await.map_err(|_| HandlerError::Stopped)?
    }
}
