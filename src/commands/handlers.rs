//! Commands served by apps over D-Bus: registration, dispatch, completion, and what
//! happens when a handler goes away or takes too long. The D-Bus face
//! (`RegisterHandler`, the unicast `CommandRequested` signal, `Complete`, watching the
//! app's connection) lives in `dbus/`; this is the engine's side of it.

use std::time::Duration;

use tokio::time::Instant;

use super::engine::{Engine, Executor, Pending};
use super::exec::text_of;
use super::options::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_SECONDS, is_valid_name};
use super::result::{CommandResult, Status};
use super::sink::ResultSink;
use crate::clock::now_ms;

/// Most command names one app (one bus connection) may handle.
pub const MAX_HANDLERS_PER_APP: usize = 32;
/// Most command names handled by apps altogether.
pub const MAX_HANDLERS: usize = 256;

/// A command for the app `owner` (its unique bus name): send it `CommandRequested(id, name,
/// args)`, to that app only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerRequest {
    pub owner: String,
    pub id: String,
    pub name: String,
    pub args: Vec<String>,
}

/// `Complete(id, exit_code, stdout, stderr)`: a handler reports how a command it was given
/// ended (D-Bus keeps the four arguments; see `dbus/commands.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub id: String,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Completion {
    /// The final result: `completed` for exit code 0, else `failed`; the output is cut like a
    /// configured command's.
    pub(super) fn into_result(self, timestamp_ms: i64) -> CommandResult {
        let (stdout, stdout_cut) = text_of(self.stdout.as_bytes(), false, DEFAULT_MAX_OUTPUT_BYTES);
        let (stderr, stderr_cut) = text_of(self.stderr.as_bytes(), false, DEFAULT_MAX_OUTPUT_BYTES);
        let exit_code = self.exit_code;
        let (status, detail) = if exit_code == 0 {
            (Status::Completed, String::new())
        } else {
            (
                Status::Failed,
                format!("the handler reported exit code {exit_code}"),
            )
        };
        CommandResult {
            id: self.id,
            status,
            exit_code,
            stdout,
            stderr,
            truncated: stdout_cut || stderr_cut,
            detail,
            timestamp_ms,
        }
    }
}

/// Why a handler's call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error("{0:?} is not a command name: use 1-64 letters, digits, '_', '.' or '-'")]
    InvalidName(String),
    #[error(
        "command {0:?} is configured on the device: configured commands can't be handled by an app"
    )]
    Configured(String),
    #[error("command {0:?} is already handled by another app")]
    Taken(String),
    #[error("command {0:?} is not running for this handler (unknown, finished, or another app's)")]
    NotRunning(String),
    #[error("this app already handles {max} commands, the most one app may")]
    TooManyForApp { max: usize },
    #[error("apps already handle {max} commands, the most the agent keeps")]
    TooMany { max: usize },
    #[error("remote commands are not running")]
    Stopped,
}

/// The time a handler gets: the request's (positive) timeout, else the default timeout of
/// configured commands.
pub(super) fn handler_timeout(requested_seconds: i32) -> Duration {
    match u64::try_from(requested_seconds) {
        Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
        _ => Duration::from_secs(DEFAULT_TIMEOUT_SECONDS.into()),
    }
}

impl<S: ResultSink> Engine<S> {
    /// `RegisterHandler(name)` from the app `owner`; parked commands for `name` get in line.
    pub(super) fn register(&mut self, name: String, owner: String) -> Result<(), HandlerError> {
        if !is_valid_name(&name) {
            return Err(HandlerError::InvalidName(name));
        }
        if self.options.commands.contains_key(&name) {
            return Err(HandlerError::Configured(name));
        }
        if let Some(current) = self.handlers.get(&name)
            && *current != owner
        {
            return Err(HandlerError::Taken(name));
        }
        if !self.handlers.contains_key(&name) {
            if self.handlers.len() >= MAX_HANDLERS {
                return Err(HandlerError::TooMany { max: MAX_HANDLERS });
            }
            let of_app = self.handlers.values().filter(|app| **app == owner).count();
            if of_app >= MAX_HANDLERS_PER_APP {
                return Err(HandlerError::TooManyForApp {
                    max: MAX_HANDLERS_PER_APP,
                });
            }
        }
        tracing::info!(command_name = %name, %owner, "an app handles this command");
        let waiting: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, pending)| pending.name == name)
            .map(|(seq, _)| *seq)
            .collect();
        self.handlers.insert(name, owner);
        for seq in waiting {
            if let Some(pending) = self.parked.remove(&seq) {
                self.pending.insert(seq, pending);
            }
        }
        Ok(())
    }

    /// Sends a started command to its handler; false when nothing listens on the D-Bus side.
    pub(super) fn dispatch_to(&self, owner: &str, pending: &Pending) -> bool {
        let request = HandlerRequest {
            owner: owner.to_owned(),
            id: pending.id.clone(),
            name: pending.name.clone(),
            args: pending.args.clone(),
        };
        self.dispatch.send(request).is_ok()
    }

    /// `Complete` from the app `owner`.
    pub(super) async fn complete(
        &mut self,
        owner: &str,
        completion: Completion,
    ) -> Result<(), HandlerError> {
        let id = completion.id.as_str();
        let mine = self.running.get(id).is_some_and(
            |running| matches!(&running.executor, Executor::Handler(handler) if handler == owner),
        );
        let Some(running) = mine.then(|| self.running.remove(id)).flatten() else {
            return Err(HandlerError::NotRunning(completion.id));
        };
        self.finish(&running.name, completion.into_result(now_ms()))
            .await;
        self.start_ready().await;
        Ok(())
    }

    /// The app `owner` left the bus: its names are free again and its running commands fail.
    pub(super) async fn handler_gone(&mut self, owner: &str, detail: &str) {
        self.handlers.retain(|_, handler| handler != owner);
        let orphans: Vec<String> = self
            .running
            .iter()
            .filter(|(_, running)| matches!(&running.executor, Executor::Handler(handler) if handler == owner))
            .map(|(id, _)| id.clone())
            .collect();
        for id in orphans {
            if let Some(running) = self.running.remove(&id) {
                let failed = CommandResult::bare(&id, Status::Failed, detail, now_ms());
                self.finish(&running.name, failed).await;
            }
        }
        self.start_ready().await;
    }

    /// The earliest deadline of a handler command.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.running
            .values()
            .filter_map(|running| running.deadline)
            .min()
    }

    /// Handler commands past their deadline become `timeout` (the app may still be at it).
    pub(super) async fn expire_handlers(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .running
            .iter()
            .filter(|(_, running)| running.deadline.is_some_and(|deadline| deadline <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(running) = self.running.remove(&id) {
                let detail = format!(
                    "the handler did not complete it within {} s",
                    running.timeout.as_secs()
                );
                let result = CommandResult::bare(&id, Status::Timeout, detail, now_ms());
                self.finish(&running.name, result).await;
            }
        }
        self.start_ready().await;
    }

    /// The start-up grace is over: commands still waiting for a handler are rejected.
    pub(super) async fn end_grace(&mut self) {
        let parked = std::mem::take(&mut self.parked);
        for (_, pending) in parked {
            self.admit(pending).await;
        }
        self.start_ready().await;
    }
}
