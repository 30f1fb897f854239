//! `org.astarte_platform.Agent1.Commands`: apps that handle remote commands, and the ledger.
//!
//! An app calls `RegisterHandler(name)`; the agent then sends each request for that name to
//! that app only, as the unicast signal `CommandRequested(id, name, args)`, and the app
//! answers with `Complete(id, exit_code, stdout, stderr)`. When the app's bus connection goes
//! away, its registrations end and its unfinished commands become `failed`. `CommandFinished`
//! is broadcast for every final result.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zbus::message::Header;
use zbus::names::BusName;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, interface};

use crate::commands::{
    CommandResult, CommandsHandle, Completion, HandlerError, HandlerRequest, ResultSink,
};
use crate::dbus::OBJECT_PATH;
use crate::dbus::error::AgentError;

/// Most entries `ListCommands` returns.
pub const LIST_LIMIT: usize = 1000;

pub struct CommandsService {
    /// `None` when `[commands] enabled = false`: every method says so.
    handle: Option<CommandsHandle>,
}

impl CommandsService {
    pub fn new(handle: Option<CommandsHandle>) -> CommandsService {
        CommandsService { handle }
    }

    fn handle(&self) -> Result<&CommandsHandle, AgentError> {
        self.handle.as_ref().ok_or_else(|| {
            AgentError::CommandsDisabled(
                "remote commands are off: set [commands] enabled = true".into(),
            )
        })
    }
}

fn caller(header: &Header<'_>) -> Result<String, AgentError> {
    header
        .sender()
        .map(|sender| sender.to_string())
        .ok_or_else(|| AgentError::ZBus(zbus::Error::MissingField))
}

#[interface(name = "org.astarte_platform.Agent1.Commands")]
impl CommandsService {
    /// Makes the calling app the handler of command `name` until it calls again from another
    /// connection or leaves the bus. Refused for names configured in `[commands.<name>]`.
    async fn register_handler(
        &self,
        name: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(), AgentError> {
        let owner = caller(&header)?;
        let handle = self.handle()?;
        handle.register_handler(name, &owner).await?;
        // The app may have left the bus before its call got here, and its departure may have
        // been handled before this registration: then nothing would ever free the name.
        let bus = zbus::fdo::DBusProxy::new(connection).await?;
        let present = match BusName::try_from(owner.as_str()) {
            Ok(name) => bus.name_has_owner(name).await.unwrap_or(true),
            Err(_) => true,
        };
        if !present {
            handle
                .handler_gone(&owner, "the app left the bus while registering")
                .await;
            return Ok(());
        }
        tracing::info!(command_name = name, handler = %owner, "command handler registered");
        Ok(())
    }

    /// The outcome of a command sent to the calling app with `CommandRequested`.
    async fn complete(
        &self,
        id: &str,
        exit_code: i32,
        stdout: String,
        stderr: String,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let owner = caller(&header)?;
        let completion = Completion {
            id: id.to_owned(),
            exit_code,
            stdout,
            stderr,
        };
        Ok(self.handle()?.complete(&owner, completion).await?)
    }

    /// The recent ledger, oldest first: id, command name, status, received_at_ms.
    async fn list_commands(&self) -> Result<Vec<(String, String, String, i64)>, AgentError> {
        let entries = self.handle()?.list(LIST_LIMIT).await.map_err(|error| {
            AgentError::Storage(format!("couldn't read the command ledger: {error}"))
        })?;
        Ok(entries
            .into_iter()
            .map(|entry| {
                (
                    entry.last.id,
                    entry.name,
                    entry.last.status.name().to_owned(),
                    entry.received_at_ms,
                )
            })
            .collect())
    }

    /// A command for this app (unicast to the app that registered `name`).
    #[zbus(signal)]
    pub async fn command_requested(
        emitter: &SignalEmitter<'_>,
        id: &str,
        name: &str,
        args: &[String],
    ) -> zbus::Result<()>;

    /// A command reached its final status (`completed`, `failed`, `rejected`, `timeout` or
    /// `interrupted`).
    #[zbus(signal)]
    pub async fn command_finished(
        emitter: &SignalEmitter<'_>,
        id: &str,
        status: &str,
    ) -> zbus::Result<()>;
}

impl From<HandlerError> for AgentError {
    fn from(error: HandlerError) -> Self {
        let message = error.to_string();
        match error {
            HandlerError::InvalidName(_) => AgentError::InvalidCommandName(message),
            HandlerError::Configured(_) | HandlerError::Taken(_) => {
                AgentError::CommandTaken(message)
            }
            HandlerError::NotRunning(_) => AgentError::CommandNotRunning(message),
            HandlerError::TooManyForApp { .. } | HandlerError::TooMany { .. } => {
                AgentError::LimitExceeded(message)
            }
            HandlerError::Stopped => AgentError::CommandsDisabled(message),
        }
    }
}

/// The results sink that also tells D-Bus about final results.
pub struct SignalingSink<S> {
    inner: S,
    finished: mpsc::UnboundedSender<(String, String)>,
}

impl<S> SignalingSink<S> {
    pub fn new(inner: S) -> (SignalingSink<S>, mpsc::UnboundedReceiver<(String, String)>) {
        let (finished, receiver) = mpsc::unbounded_channel();
        (SignalingSink { inner, finished }, receiver)
    }
}

impl<S: ResultSink> ResultSink for SignalingSink<S> {
    async fn publish(&self, result: &CommandResult) -> Result<(), crate::commands::PublishError> {
        self.inner.publish(result).await?;
        if result.status.is_final() {
            let _ = self
                .finished
                .send((result.id.clone(), result.status.name().to_owned()));
        }
        Ok(())
    }
}

/// The D-Bus side of remote commands: unicasts requests to their handler, broadcasts final
/// results, and tells the engine when a handler leaves the bus.
pub async fn serve(
    connection: Connection,
    handle: CommandsHandle,
    mut requests: mpsc::UnboundedReceiver<HandlerRequest>,
    mut finished: mpsc::UnboundedReceiver<(String, String)>,
    cancel: CancellationToken,
) -> Result<(), String> {
    let failed = |error: zbus::Error| format!("D-Bus commands: {error}");
    let bus = zbus::fdo::DBusProxy::new(&connection)
        .await
        .map_err(failed)?;
    let mut owners = bus.receive_name_owner_changed().await.map_err(failed)?;
    let emitter = SignalEmitter::new(&connection, OBJECT_PATH).map_err(failed)?;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            Some(request) = requests.recv() => {
                let Ok(destination) = BusName::try_from(request.owner.as_str()) else { continue };
                let unicast = emitter.clone().set_destination(destination);
                if let Err(error) = CommandsService::command_requested(&unicast, &request.id, &request.name, &request.args).await {
                    tracing::warn!(%error, command_id = %request.id, "couldn't send CommandRequested to its handler");
                }
            }
            Some(done) = finished.recv() => {
                let (id, status): (String, String) = done;
                if let Err(error) = CommandsService::command_finished(&emitter, &id, &status).await {
                    tracing::debug!(%error, "couldn't emit CommandFinished");
                }
            }
            Some(change) = owners.next() => {
                let Ok(args) = change.args() else { continue };
                // A unique name (":1.42") losing its owner: that app's connection is gone.
                if args.name().starts_with(':') && args.new_owner().is_none() {
                    handle
                        .handler_gone(args.name(), "the app handling this command left the bus before completing it")
                        .await;
                }
            }
        }
    }
}
