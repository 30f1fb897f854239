//! Start-up: what the last run left in the ledger, and keeping the ledger small.

use super::engine::{Engine, Pending};
use super::result::{CommandResult, Status};
use super::sink::ResultSink;
use crate::clock::now_ms;
use crate::error_chain::error_chain;

impl<S: ResultSink> Engine<S> {
    /// At start-up: unfinished commands of the last run, and results it could not queue.
    pub(super) async fn recover(&mut self) -> Result<(), crate::store::StoreError> {
        for entry in self.store.commands_unfinished().await? {
            let pending = Pending {
                seq: entry.seq,
                id: entry.last.id.clone(),
                name: entry.name.clone(),
                args: entry.args.clone(),
                timeout_seconds: entry.timeout_seconds,
            };
            match entry.last.status {
                Status::Received => self.admit(pending).await,
                Status::Running if self.reruns(&entry.name) => {
                    tracing::info!(command_id = %pending.id, command_name = %pending.name, "the agent stopped while the command ran: running it again (rerun_on_restart)");
                    self.pending.insert(pending.seq, pending);
                }
                _ => {
                    let detail = "the agent stopped while the command ran (restart, crash or power loss); it is not run again";
                    let interrupted =
                        CommandResult::bare(&pending.id, Status::Interrupted, detail, now_ms());
                    self.finish(&pending.name, interrupted).await;
                }
            }
        }
        for entry in self.store.commands_unpublished().await? {
            self.publish(&entry.name, entry.last).await;
        }
        Ok(())
    }

    fn reruns(&self, name: &str) -> bool {
        self.options
            .commands
            .get(name)
            .is_some_and(|spec| spec.rerun_on_restart)
    }

    pub(super) async fn prune(&self) {
        let max_age_ms = i64::from(self.options.ledger_max_age_days) * 24 * 3600 * 1000;
        match self
            .store
            .commands_prune(now_ms() - max_age_ms, self.options.ledger_max_entries)
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "forgot old finished commands"),
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "couldn't prune the command ledger")
            }
        }
    }
}
