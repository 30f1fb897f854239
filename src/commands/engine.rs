//! The command engine: one task that owns the queue of commands, decides what runs, and
//! reports every status change.
//!
//! For each request: the ledger first (durably), then the `received` result; an id the
//! ledger knows is never run again, its last result is sent again. Commands start in
//! arrival order, at most `max_parallel` at once; each start is recorded (`running`,
//! durably) before the process starts, so a crash can never lead to a second run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::REQUESTS_INTERFACE;
use super::handlers::{Completion, HandlerError, HandlerRequest};
use super::options::{CommandSpec, CommandsOptions};
use super::request::CommandRequest;
use super::result::{CommandResult, Status};
use super::sink::ResultSink;
use crate::clock::now_ms;
use crate::error_chain::error_chain;
use crate::router::Routed;
use crate::router::ServerEvent;
use crate::store::{Inserted, LedgerEntry, NewCommand, Store};

/// How often finished commands are pruned from the ledger (also once at start-up).
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// How long after start-up a request for a name nobody handles yet waits for an app to
/// register a handler, before it is rejected: apps register after the agent starts.
pub const DEFAULT_HANDLER_GRACE: Duration = Duration::from_secs(60);
/// Requests waiting for the engine; senders wait beyond it.
pub const INPUT_QUEUE: usize = 64;

/// What the engine is asked to do.
pub enum Input {
    /// A request from Astarte.
    Request(CommandRequest),
    /// An app asks to handle `name` (its unique bus name is `owner`).
    RegisterHandler {
        name: String,
        owner: String,
        reply: oneshot::Sender<Result<(), HandlerError>>,
    },
    /// A handler reports the end of a command it was given.
    Complete {
        owner: String,
        completion: Completion,
        reply: oneshot::Sender<Result<(), HandlerError>>,
    },
    /// A handler's connection went away: its registrations end and its unfinished
    /// commands fail with `detail`.
    HandlerGone { owner: String, detail: String },
    /// The newest `limit` ledger entries, oldest first (for `ListCommands`).
    List {
        limit: usize,
        reply: oneshot::Sender<Result<Vec<LedgerEntry>, crate::store::StoreError>>,
    },
}

/// Who runs a command.
#[derive(Debug, Clone)]
pub enum Executor {
    /// A `[commands.<name>]` table of the configuration.
    Configured(Arc<CommandSpec>),
    /// The app with this unique bus name, over D-Bus.
    Handler(String),
}

/// A command waiting for its turn.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub seq: u64,
    pub id: String,
    pub name: String,
    pub args: Vec<String>,
    pub timeout_seconds: i32,
}

/// A command that runs.
pub(super) struct Running {
    pub name: String,
    pub executor: Executor,
    /// For handler commands: when it becomes `timeout`.
    pub deadline: Option<Instant>,
    pub timeout: Duration,
}

/// A run that ended (sent by the runner task).
pub(super) struct Finished {
    pub id: String,
    pub result: CommandResult,
}

/// What to do with a command now.
pub(super) enum Decision {
    Queue,
    /// Nobody handles the name yet; wait for a handler during the start-up grace.
    Park,
    Refuse(String),
}

/// The engine task. Build it with [`Engine::new`], run it with [`Engine::run`].
pub struct Engine<S> {
    pub(super) options: Arc<CommandsOptions>,
    pub(super) store: Store,
    pub(super) sink: S,
    pub(super) dispatch: mpsc::UnboundedSender<HandlerRequest>,
    inputs: mpsc::Receiver<Input>,
    routed: mpsc::Receiver<Routed>,
    finished: mpsc::UnboundedReceiver<Finished>,
    pub(super) grace_ends: Instant,
    pub(super) pending: BTreeMap<u64, Pending>,
    pub(super) parked: BTreeMap<u64, Pending>,
    pub(super) running: HashMap<String, Running>,
    /// Handled command names and their app.
    pub(super) handlers: HashMap<String, String>,
    pub(super) finished_tx: mpsc::UnboundedSender<Finished>,
    pub(super) runners: JoinSet<()>,
    /// Stops the runs when the engine stops.
    pub(super) cancel: CancellationToken,
}

impl<S: ResultSink> Engine<S> {
    /// The engine, serving `inputs` (from D-Bus and the agent) and `routed` (requests from
    /// Astarte); and where it sends requests for D-Bus handlers (`CommandRequested`).
    pub fn new(
        options: Arc<CommandsOptions>,
        store: Store,
        sink: S,
        inputs: mpsc::Receiver<Input>,
        routed: mpsc::Receiver<Routed>,
    ) -> (Engine<S>, mpsc::UnboundedReceiver<HandlerRequest>) {
        let (dispatch, handler_requests) = mpsc::unbounded_channel();
        let (finished_tx, finished) = mpsc::unbounded_channel();
        let engine = Engine {
            options,
            store,
            sink,
            dispatch,
            inputs,
            routed,
            finished,
            grace_ends: Instant::now(),
            pending: BTreeMap::new(),
            parked: BTreeMap::new(),
            running: HashMap::new(),
            handlers: HashMap::new(),
            finished_tx,
            runners: JoinSet::new(),
            cancel: CancellationToken::new(),
        };
        (engine, handler_requests)
    }

    /// Recovers what the ledger holds, then serves its inputs until `cancel` fires or every
    /// sender is gone. Requests for a name nobody handles yet wait `handler_wait` after the
    /// start for an app to register. Running processes are killed (with their groups) on the
    /// way out; their ledger entries stay `running`, so the next start reports them
    /// `interrupted` (or runs them again, with `rerun_on_restart`). Fails only when the
    /// ledger can't be read at start-up.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), String> {
        self.grace_ends = Instant::now() + self.options.handler_wait;
        self.recover()
            .await
            .map_err(|error| format!("remote commands: {}", error_chain(&error)))?;
        self.prune().await;
        self.start_ready().await;
        let mut prune = tokio::time::interval_at(Instant::now() + PRUNE_INTERVAL, PRUNE_INTERVAL);
        loop {
            let deadline = self.next_deadline();
            let grace_ends = self.grace_ends;
            let parked = !self.parked.is_empty();
            tokio::select! {
                () = cancel.cancelled() => break,
                input = self.inputs.recv() => match input {
                    Some(input) => self.on_input(input).await,
                    None => break,
                },
                Some(message) = self.routed.recv() => self.on_routed(message).await,
                Some(done) = self.finished.recv() => self.on_finished(done).await,
                () = tokio::time::sleep_until(grace_ends), if parked => self.end_grace().await,
                () = until(deadline) => self.expire_handlers().await,
                _ = prune.tick() => self.prune().await,
            }
        }
        self.cancel.cancel();
        while self.runners.join_next().await.is_some() {}
        tracing::debug!("remote commands stopped");
        Ok(())
    }

    async fn on_input(&mut self, input: Input) {
        match input {
            Input::Request(request) => {
                self.on_request(request).await;
            }
            Input::RegisterHandler { name, owner, reply } => {
                let _ = reply.send(self.register(name, owner));
                self.start_ready().await;
            }
            Input::Complete {
                owner,
                completion,
                reply,
            } => {
                let outcome = self.complete(&owner, completion).await;
                let _ = reply.send(outcome);
            }
            Input::HandlerGone { owner, detail } => self.handler_gone(&owner, &detail).await,
            Input::List { limit, reply } => {
                let _ = reply.send(self.store.commands_recent(limit).await);
            }
        }
    }

    /// A message the router handed over: confirmed (acknowledged to the broker) once the
    /// command is in the ledger, or when it can never be answered; left unconfirmed when
    /// the ledger can't take it, so the broker delivers it again.
    async fn on_routed(&mut self, message: Routed) {
        let Routed { event, receipt } = message;
        let request = match event {
            ServerEvent::Object {
                interface, values, ..
            } if interface == REQUESTS_INTERFACE => CommandRequest::from_object(&values),
            other => {
                tracing::warn!(event = ?other, "not a command request: ignoring it");
                receipt.confirm();
                return;
            }
        };
        match request {
            Ok(request) => {
                if self.on_request(request).await {
                    receipt.confirm();
                }
            }
            Err(error) => {
                tracing::warn!("{error}");
                receipt.confirm();
            }
        }
    }

    /// Returns whether the request is settled: in the ledger (new or known), or dropped
    /// because it can't be answered. False when the ledger could not record it.
    async fn on_request(&mut self, request: CommandRequest) -> bool {
        if let Err(error) = request.check() {
            tracing::warn!(command_name = %request.command, "{error}");
            return true;
        }
        tracing::info!(
            command_id = %request.id,
            command_name = %request.command,
            args = ?request.args,
            timeout_seconds = request.timeout_seconds,
            "command request"
        );
        let received_at_ms = now_ms();
        let inserted = self
            .store
            .command_insert(NewCommand {
                id: request.id.clone(),
                name: request.command.clone(),
                args: request.args.clone(),
                timeout_seconds: request.timeout_seconds,
                received_at_ms,
            })
            .await;
        let seq = match inserted {
            Ok(Inserted::New { seq }) => seq,
            Ok(Inserted::Existing(entry)) => {
                tracing::info!(
                    command_id = %request.id,
                    command_name = %entry.name,
                    status = %entry.last.status,
                    "command id already in the ledger: not running it again, sending its last result again"
                );
                self.publish(&entry.name, entry.last).await;
                return true;
            }
            Err(error) => {
                tracing::error!(
                    command_id = %request.id,
                    command_name = %request.command,
                    error = %error_chain(&error),
                    "couldn't record the command in the ledger: not running it (Astarte delivers it again after a reconnection)"
                );
                return false;
            }
        };
        let received = CommandResult::bare(&request.id, Status::Received, "", received_at_ms);
        self.publish(&request.command, received).await;
        let pending = Pending {
            seq,
            id: request.id,
            name: request.command,
            args: request.args,
            timeout_seconds: request.timeout_seconds,
        };
        self.admit(pending).await;
        self.start_ready().await;
        true
    }

    /// Puts a received command in line, parks it, or rejects it.
    pub(super) async fn admit(&mut self, pending: Pending) {
        match self.decide(&pending) {
            Decision::Queue => {
                self.pending.insert(pending.seq, pending);
            }
            Decision::Park => {
                tracing::info!(command_id = %pending.id, command_name = %pending.name, "no app handles this command yet: waiting for one to register");
                self.parked.insert(pending.seq, pending);
            }
            Decision::Refuse(reason) => {
                let rejected = CommandResult::bare(&pending.id, Status::Rejected, reason, now_ms());
                self.finish(&pending.name, rejected).await;
            }
        }
    }

    pub(super) fn decide(&self, pending: &Pending) -> Decision {
        if pending.name.is_empty() {
            return Decision::Refuse("the request names no command".into());
        }
        if let Some(spec) = self.options.commands.get(&pending.name) {
            return match spec.refuse_args(&pending.args) {
                Some(reason) => Decision::Refuse(reason),
                None => Decision::Queue,
            };
        }
        if self.handlers.contains_key(&pending.name) {
            Decision::Queue
        } else if Instant::now() < self.grace_ends {
            Decision::Park
        } else {
            Decision::Refuse(format!(
                "unknown command {:?}: not configured on the device and no app handles it",
                pending.name
            ))
        }
    }
}

/// Sleeps until `deadline`; forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
