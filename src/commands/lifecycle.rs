//! A command's life after it is admitted: started in order within `max_parallel`, run by its
//! executor, finished in the ledger (durably) before its result is published.

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::engine::{Decision, Engine, Executor, Finished, Pending, Running};
use super::exec::{self, Execution, Exit};
use super::options::CommandSpec;
use super::result::{CommandResult, NO_EXIT_CODE, Status};
use super::sink::ResultSink;
use crate::clock::now_ms;
use crate::error_chain::error_chain;

impl<S: ResultSink> Engine<S> {
    pub(super) async fn start_ready(&mut self) {
        while self.running.len() < self.options.max_parallel {
            let Some((_, pending)) = self.pending.pop_first() else {
                break;
            };
            self.start(pending).await;
        }
    }

    async fn start(&mut self, pending: Pending) {
        let executor = match self.options.commands.get(&pending.name) {
            Some(spec) => Executor::Configured(spec.clone()),
            None => match self.handlers.get(&pending.name) {
                Some(owner) => Executor::Handler(owner.clone()),
                None => {
                    let reason = format!("no app handles command {:?} any more", pending.name);
                    let rejected =
                        CommandResult::bare(&pending.id, Status::Rejected, reason, now_ms());
                    self.finish(&pending.name, rejected).await;
                    return;
                }
            },
        };
        if let Decision::Refuse(reason) = self.decide(&pending) {
            let rejected = CommandResult::bare(&pending.id, Status::Rejected, reason, now_ms());
            self.finish(&pending.name, rejected).await;
            return;
        }
        let running = CommandResult::bare(&pending.id, Status::Running, "", now_ms());
        // Recorded before it starts: after a crash it is `interrupted`, never run twice.
        if let Err(error) = self.store.command_update(running.clone()).await {
            tracing::error!(
                command_id = %pending.id,
                command_name = %pending.name,
                error = %error_chain(&error),
                "couldn't record that the command starts: not starting it (it is tried again after a restart)"
            );
            return;
        }
        self.publish(&pending.name, running).await;
        let timeout = match &executor {
            Executor::Configured(spec) => spec.timeout_for(pending.timeout_seconds),
            Executor::Handler(_) => super::handlers::handler_timeout(pending.timeout_seconds),
        };
        let deadline = match &executor {
            Executor::Configured(spec) => {
                self.spawn_runner(&pending, spec, timeout);
                None
            }
            Executor::Handler(owner) => {
                if !self.dispatch_to(owner, &pending) {
                    let detail = "couldn't reach the app that handles it (D-Bus side not running)";
                    let failed = CommandResult::bare(&pending.id, Status::Failed, detail, now_ms());
                    self.finish(&pending.name, failed).await;
                    return;
                }
                Some(Instant::now() + timeout)
            }
        };
        self.running.insert(
            pending.id,
            Running {
                name: pending.name,
                executor,
                deadline,
                timeout,
            },
        );
    }

    fn spawn_runner(&mut self, pending: &Pending, spec: &CommandSpec, timeout: Duration) {
        let execution = Execution {
            argv: spec.exec.iter().chain(&pending.args).cloned().collect(),
            timeout,
            max_output_bytes: spec.max_output_bytes,
        };
        let id = pending.id.clone();
        let finished = self.finished_tx.clone();
        let cancel = self.cancel.clone();
        self.runners.spawn(
            async move {
                let outcome = exec::run(&execution, &cancel).await;
                if outcome.exit == Exit::Cancelled {
                    return;
                }
                let result = result_of(&id, outcome, timeout);
                let _ = finished.send(Finished { id, result });
            }
            .in_current_span(),
        );
    }

    pub(super) async fn on_finished(&mut self, done: Finished) {
        // Reap the runner task.
        while self.runners.try_join_next().is_some() {}
        if let Some(running) = self.running.remove(&done.id) {
            self.finish(&running.name, done.result).await;
            self.start_ready().await;
        }
    }

    /// Records a final result, then publishes it.
    pub(super) async fn finish(&mut self, name: &str, result: CommandResult) {
        if let Err(error) = self.store.command_update(result.clone()).await {
            tracing::error!(
                command_id = %result.id,
                command_name = %name,
                error = %error_chain(&error),
                "couldn't record the command's result in the ledger"
            );
        }
        self.publish(name, result).await;
    }

    /// Logs a result (the audit trail) and hands it to the sink.
    pub(super) async fn publish(&self, name: &str, result: CommandResult) {
        tracing::info!(
            command_id = %result.id,
            command_name = %name,
            status = %result.status,
            exit_code = result.exit_code,
            truncated = result.truncated,
            detail = %result.detail,
            "command result"
        );
        match self.sink.publish(&result).await {
            Ok(()) if result.status.is_final() => {
                self.store.command_published(&result.id, result.status);
            }
            Ok(()) => {}
            Err(error) => tracing::error!(
                command_id = %result.id,
                command_name = %name,
                status = %result.status,
                error = %error_chain(&error),
                "couldn't queue the command's result (a final one is queued again at the next start)"
            ),
        }
    }
}

/// The final result of a configured command's run.
fn result_of(id: &str, outcome: exec::Outcome, timeout: Duration) -> CommandResult {
    let (status, exit_code, detail) = match outcome.exit {
        Exit::Code(0) => (Status::Completed, 0, String::new()),
        Exit::Code(code) => (Status::Failed, code, format!("exited with code {code}")),
        Exit::Signal(signal) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|signal| signal.as_str().to_owned())
                .unwrap_or_else(|_| format!("signal {signal}"));
            (Status::Failed, NO_EXIT_CODE, format!("killed by {name}"))
        }
        Exit::TimedOut => (
            Status::Timeout,
            NO_EXIT_CODE,
            format!(
                "still running after {} s: killed with its whole process group",
                timeout.as_secs()
            ),
        ),
        Exit::SpawnFailed(reason) => (Status::Failed, NO_EXIT_CODE, reason),
        Exit::Cancelled => (
            Status::Interrupted,
            NO_EXIT_CODE,
            "the agent stopped while the command ran".into(),
        ),
    };
    CommandResult {
        id: id.to_owned(),
        status,
        exit_code,
        stdout: outcome.stdout,
        stderr: outcome.stderr,
        truncated: outcome.truncated,
        detail,
        timestamp_ms: now_ms(),
    }
}
