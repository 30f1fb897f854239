//! The command ledger (table `commands`): every remote command the device accepted, in
//! arrival order, with its last result. At-most-once execution rests on it: a command is
//! inserted (durably) before anything else happens to it, and an id already present is
//! never inserted again.
//!
//! `published` is the status whose result was last handed to the outgoing queue: a
//! finished command whose status differs (the agent stopped in between, or the queue
//! refused it) has its result published again at start-up.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{OptionalExtension, Row, Transaction, params};
use tokio::sync::oneshot;

use super::answer::{self, Aborted, Pending, Reply};
use super::{CommandResult, Status};
use super::{Request, Store, StoreError};

/// A command as it enters the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommand {
    pub id: String,
    pub name: String,
    pub args: Vec<String>,
    pub timeout_seconds: i32,
    pub received_at_ms: i64,
}

/// What inserting a command found.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// The id was new: the command is in the ledger as `received`, at this place in line.
    New { seq: u64 },
    /// The id was already there: this is its entry (never run it again).
    Existing(LedgerEntry),
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    /// Arrival order.
    pub seq: u64,
    pub name: String,
    pub args: Vec<String>,
    pub timeout_seconds: i32,
    pub received_at_ms: i64,
    /// The last result (its timestamp is when the status last changed).
    pub last: CommandResult,
}

/// Which rows to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Query {
    /// `received` and `running`, in arrival order.
    Unfinished,
    /// Finished, with a result not yet handed to the queue, in arrival order.
    Unpublished,
    /// The newest `n`, in arrival order.
    Recent(usize),
}

pub(crate) enum LedgerRequest {
    Insert {
        command: NewCommand,
        reply: Reply<Inserted>,
    },
    Update {
        result: CommandResult,
        reply: Reply<()>,
    },
    Published {
        id: String,
        status: Status,
    },
    Read {
        query: Query,
        reply: Reply<Vec<LedgerEntry>>,
    },
    Prune {
        finished_before_ms: i64,
        keep: u32,
        reply: Reply<usize>,
    },
}

impl LedgerRequest {
    /// Inserts and status changes are promises (at most once): they commit with FULL sync.
    pub(super) fn is_durable(&self) -> bool {
        matches!(
            self,
            LedgerRequest::Insert { .. } | LedgerRequest::Update { .. }
        )
    }

    /// Answers a request its transaction never applied.
    pub(super) fn fail(self, error: StoreError) {
        match self {
            LedgerRequest::Insert { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            LedgerRequest::Update { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            LedgerRequest::Read { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            LedgerRequest::Prune { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            LedgerRequest::Published { .. } => {}
        }
    }
}

/// Small columns first: a scan for unfinished rows does not follow the output's overflow pages.
const COLUMNS: &str = "seq, id, name, status, exit_code, truncated, timeout_seconds, received_at_ms, updated_at_ms, args, detail, stdout, stderr";
const UNFINISHED: &str = "status IN ('received', 'running')";

/// Applies one ledger request inside the writer's transaction.
pub(super) fn apply(
    transaction: &Transaction<'_>,
    request: LedgerRequest,
) -> Result<Box<dyn Pending>, Aborted> {
    match request {
        LedgerRequest::Insert { command, reply } => {
            answer::answered(reply, insert(transaction, &command))
        }
        LedgerRequest::Update { result, reply } => {
            answer::answered(reply, update(transaction, &result))
        }
        LedgerRequest::Published { id, status } => {
            let published = transaction
                .prepare_cached("UPDATE commands SET published = ?2 WHERE id = ?1")
                .and_then(|mut statement| statement.execute(params![id, status.name()]));
            answer::answered_done(None, published.map(drop))
        }
        LedgerRequest::Read { query, reply } => answer::answered(reply, read(transaction, query)),
        LedgerRequest::Prune {
            finished_before_ms,
            keep,
            reply,
        } => answer::answered(reply, prune(transaction, finished_before_ms, keep)),
    }
}

fn update(transaction: &Transaction<'_>, result: &CommandResult) -> Result<(), rusqlite::Error> {
    transaction
        .prepare_cached(
            "UPDATE commands SET status = ?2, exit_code = ?3, truncated = ?4, updated_at_ms = ?5, detail = ?6, stdout = ?7, stderr = ?8 WHERE id = ?1",
        )?
        .execute(params![
            result.id,
            result.status.name(),
            result.exit_code,
            result.truncated,
            result.timestamp_ms,
            result.detail,
            result.stdout,
            result.stderr
        ])?;
    Ok(())
}

/// Removes finished entries older than `finished_before_ms`, then all but the newest `keep`.
fn prune(
    transaction: &Transaction<'_>,
    finished_before_ms: i64,
    keep: u32,
) -> Result<usize, rusqlite::Error> {
    let aged = transaction
        .prepare_cached(&format!(
            "DELETE FROM commands WHERE NOT ({UNFINISHED}) AND updated_at_ms < ?1"
        ))?
        .execute(params![finished_before_ms])?;
    let surplus = transaction
        .prepare_cached(&format!(
            "DELETE FROM commands WHERE seq IN (SELECT seq FROM commands WHERE NOT ({UNFINISHED}) ORDER BY seq DESC LIMIT -1 OFFSET ?1)"
        ))?
        .execute(params![keep])?;
    Ok(aged + surplus)
}

fn insert(
    transaction: &Transaction<'_>,
    command: &NewCommand,
) -> Result<Inserted, rusqlite::Error> {
    let args = serde_json::to_string(&command.args)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
    let seq: Option<i64> = transaction
        .prepare_cached(
            "INSERT INTO commands (id, name, status, exit_code, truncated, timeout_seconds, received_at_ms, updated_at_ms, args, detail, stdout, stderr)
             VALUES (?1, ?2, 'received', -1, 0, ?3, ?4, ?4, ?5, '', '', '')
             ON CONFLICT (id) DO NOTHING RETURNING seq",
        )?
        .query_row(
            params![
                command.id,
                command.name,
                command.timeout_seconds,
                command.received_at_ms,
                args
            ],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(seq) = seq {
        return Ok(Inserted::New { seq: seq as u64 });
    }
    let existing = transaction
        .prepare_cached(&format!("SELECT {COLUMNS} FROM commands WHERE id = ?1"))?
        .query_row(params![command.id], entry)?;
    Ok(Inserted::Existing(existing))
}

fn read(transaction: &Transaction<'_>, query: Query) -> Result<Vec<LedgerEntry>, rusqlite::Error> {
    let (sql, limit) = match query {
        Query::Unfinished => (
            format!("SELECT {COLUMNS} FROM commands WHERE {UNFINISHED} ORDER BY seq"),
            None,
        ),
        Query::Unpublished => (
            format!(
                "SELECT {COLUMNS} FROM commands WHERE NOT ({UNFINISHED}) AND published IS NOT status ORDER BY seq"
            ),
            None,
        ),
        Query::Recent(n) => (
            format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM commands ORDER BY seq DESC LIMIT ?1) ORDER BY seq"
            ),
            Some(n as i64),
        ),
    };
    let mut statement = transaction.prepare_cached(&sql)?;
    let rows = match limit {
        Some(limit) => statement.query_map(params![limit], entry)?,
        None => statement.query_map([], entry)?,
    };
    rows.collect()
}

fn entry(row: &Row<'_>) -> Result<LedgerEntry, rusqlite::Error> {
    let args: String = row.get("args")?;
    let args = serde_json::from_str(&args).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(error))
    })?;
    let id: String = row.get("id")?;
    Ok(LedgerEntry {
        seq: row.get::<_, i64>("seq")? as u64,
        name: row.get("name")?,
        args,
        timeout_seconds: row.get("timeout_seconds")?,
        received_at_ms: row.get("received_at_ms")?,
        last: CommandResult {
            id,
            status: row.get::<_, StatusColumn>("status")?.0,
            exit_code: row.get("exit_code")?,
            stdout: row.get("stdout")?,
            stderr: row.get("stderr")?,
            truncated: row.get("truncated")?,
            detail: row.get("detail")?,
            timestamp_ms: row.get("updated_at_ms")?,
        },
    })
}

/// A status stored as its wire name.
struct StatusColumn(Status);

impl FromSql for StatusColumn {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        Status::from_name(text)
            .map(StatusColumn)
            .ok_or_else(|| FromSqlError::Other(format!("unknown command status {text:?}").into()))
    }
}

impl Store {
    /// Puts a command in the ledger unless its id is there already; resolves once it is on
    /// disk. An [`Inserted::Existing`] command must not run again.
    pub async fn command_insert(&self, command: NewCommand) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Ledger(LedgerRequest::Insert { command, reply }))?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Records a command's new status and result (by its id); resolves once it is on disk.
    pub async fn command_update(&self, result: CommandResult) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Ledger(LedgerRequest::Update { result, reply }))?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Notes that the result with `status` was handed to the outgoing queue (without waiting:
    /// losing the note only means the result is queued again after a restart).
    pub fn command_published(&self, id: &str, status: Status) {
        self.send_later(Request::Ledger(LedgerRequest::Published {
            id: id.to_owned(),
            status,
        }));
    }

    /// Commands received but not finished (`received`, `running`), in arrival order.
    pub async fn commands_unfinished(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        self.read_ledger(Query::Unfinished).await
    }

    /// Finished commands whose last result was not handed to the queue, in arrival order.
    pub async fn commands_unpublished(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        self.read_ledger(Query::Unpublished).await
    }

    /// The newest `limit` commands, in arrival order.
    pub async fn commands_recent(&self, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        self.read_ledger(Query::Recent(limit)).await
    }

    /// Forgets finished commands that finished before `finished_before_ms`, and all but the
    /// newest `keep` finished ones; unfinished commands are always kept. Returns how many
    /// went.
    pub async fn commands_prune(
        &self,
        finished_before_ms: i64,
        keep: u32,
    ) -> Result<usize, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Ledger(LedgerRequest::Prune {
            finished_before_ms,
            keep,
            reply,
        }))?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    async fn read_ledger(&self, query: Query) -> Result<Vec<LedgerEntry>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Ledger(LedgerRequest::Read { query, reply }))?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}
