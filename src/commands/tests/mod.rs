//! Tests of remote commands: real processes, a real store in a temporary folder, and a sink
//! that records what would be queued.

mod audit;
mod engine;
mod exec;
mod handlers;
mod interfaces;
mod recovery;
mod result;
mod routed;
mod sink;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::store::{Store, StoreOptions};

/// The longest any test waits for something that should happen (a hang guard, not a timing
/// assertion).
pub(super) const HANG_GUARD: Duration = Duration::from_secs(30);

/// Records every result, in order.
pub(super) struct Recorder(mpsc::UnboundedSender<CommandResult>);

impl ResultSink for Recorder {
    async fn publish(&self, result: &CommandResult) -> Result<(), PublishError> {
        let _ = self.0.send(result.clone());
        Ok(())
    }
}

/// A command run by `/bin/sh -c script` (tests may use a shell; the agent never adds one).
/// Request arguments become `$1`, `$2`...
pub(super) fn shell(script: &str) -> CommandSpec {
    CommandSpec::new(vec![
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
    ])
}

pub(super) fn options(max_parallel: usize, commands: Vec<(&str, CommandSpec)>) -> CommandsOptions {
    CommandsOptions {
        enabled: true,
        max_parallel,
        commands: commands
            .into_iter()
            .map(|(name, spec)| (name.to_owned(), Arc::new(spec)))
            .collect(),
        ..CommandsOptions::default()
    }
}

pub(super) fn request(id: &str, command: &str, args: &[&str]) -> CommandRequest {
    CommandRequest {
        id: id.into(),
        command: command.into(),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        timeout_seconds: 0,
    }
}

/// An engine running on a store in `dir`.
pub(super) struct Harness {
    pub handle: CommandsHandle,
    /// What the router would use.
    pub route: crate::router::Route,
    pub results: mpsc::UnboundedReceiver<CommandResult>,
    pub handler_requests: mpsc::UnboundedReceiver<HandlerRequest>,
    pub store: Store,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), String>>,
}

impl Harness {
    /// Starts an engine without a grace period for handlers (unknown names are rejected).
    pub async fn start(dir: &Path, options: CommandsOptions) -> Harness {
        Harness::start_with_grace(dir, options, Duration::ZERO).await
    }

    pub async fn start_with_grace(
        dir: &Path,
        options: CommandsOptions,
        grace: Duration,
    ) -> Harness {
        let store = Store::open(dir, StoreOptions::default()).unwrap().store;
        let (sink, results) = mpsc::unbounded_channel();
        let (handle, inputs) = channel();
        let (route, routed) = route();
        let options = CommandsOptions {
            handler_wait: grace,
            ..options
        };
        let (engine, handler_requests) = Engine::new(
            Arc::new(options),
            store.clone(),
            Recorder(sink),
            inputs,
            routed,
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(engine.run(cancel.clone()));
        Harness {
            handle,
            route,
            results,
            handler_requests,
            store,
            cancel,
            task,
        }
    }

    pub async fn send(&self, request: CommandRequest) {
        assert!(self.handle.request(request).await, "the engine stopped");
    }

    /// The next result.
    pub async fn next(&mut self) -> CommandResult {
        tokio::time::timeout(HANG_GUARD, self.results.recv())
            .await
            .expect("a result in time")
            .expect("the engine is running")
    }

    /// Results until (and with) the final one of `id`; other commands' results are kept
    /// in the returned list too, in order.
    pub async fn until_final(&mut self, id: &str) -> Vec<CommandResult> {
        let mut seen = Vec::new();
        loop {
            let result = self.next().await;
            let done = result.id == id && result.status.is_final();
            seen.push(result);
            if done {
                return seen;
            }
        }
    }

    /// Stops the engine (killing what runs) and closes the store.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(HANG_GUARD, self.task)
            .await
            .expect("the engine stops in time")
            .unwrap()
            .unwrap();
        let store = self.store;
        tokio::task::spawn_blocking(move || store.close().unwrap())
            .await
            .unwrap();
    }
}

/// `(id, status)` of each result, for compact assertions.
pub(super) fn statuses(results: &[CommandResult]) -> Vec<(String, Status)> {
    results
        .iter()
        .map(|result| (result.id.clone(), result.status))
        .collect()
}

/// Lines of a file the test commands append to (empty when it does not exist).
pub(super) fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
