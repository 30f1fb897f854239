//! The ledger's rows: where a remote command stands, and the result recorded for it. The store
//! owns them; the commands feature fills them in and turns them into Astarte messages.

/// Where a command stands. The names are part of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// In the ledger, waiting for its turn.
    Received,
    /// Started: its process runs, or its D-Bus handler was told.
    Running,
    /// Exited with code 0 (or its handler reported 0).
    Completed,
    /// Exited with another code, was killed by a signal, could not start, or its handler
    /// went away.
    Failed,
    /// Never run: unknown command, arguments refused, or no handler.
    Rejected,
    /// Killed, with its whole process group, when its time ran out.
    Timeout,
    /// The agent stopped while it ran (restart, crash, power loss); not run again.
    Interrupted,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Received,
        Status::Running,
        Status::Completed,
        Status::Failed,
        Status::Rejected,
        Status::Timeout,
        Status::Interrupted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
            Status::Timeout => "timeout",
            Status::Interrupted => "interrupted",
        }
    }

    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.name() == name)
    }

    /// Whether the command is done: nothing about it will change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Received | Status::Running)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Exit code reported where there is none (not started, killed by a signal, timed out).
pub const NO_EXIT_CODE: i32 = -1;

/// One `CommandResults` object.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult {
    pub id: String,
    pub status: Status,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub detail: String,
    /// When the status changed (ms since the epoch): the result's explicit timestamp.
    pub timestamp_ms: i64,
}

impl CommandResult {
    /// A result without output: `received`, `running`, `rejected`, `interrupted`...
    pub fn bare(id: &str, status: Status, detail: impl Into<String>, timestamp_ms: i64) -> Self {
        CommandResult {
            id: id.to_owned(),
            status,
            exit_code: NO_EXIT_CODE,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            detail: detail.into(),
            timestamp_ms,
        }
    }
}
