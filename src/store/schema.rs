//! Opening the database: settings, corruption handling, versioned migrations, and what the
//! store holds at start-up.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{PropertyRow, StoreError, legacy};
use crate::interface::Ownership;

pub const DATABASE_FILE: &str = "agent.db";

/// Schema versions, oldest first; `PRAGMA user_version` is the number applied. Never edit
/// a shipped migration: add a new one (and its test from every older version).
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the stored queue, property values, dead letters.
    "CREATE TABLE queue (
        seq INTEGER PRIMARY KEY,
        interface TEXT NOT NULL,
        major INTEGER NOT NULL,
        path TEXT NOT NULL,
        payload BLOB NOT NULL,
        qos INTEGER NOT NULL,
        expires_at_ms INTEGER
    );
    CREATE TABLE properties (
        interface TEXT NOT NULL,
        path TEXT NOT NULL,
        ownership INTEGER NOT NULL,
        major INTEGER NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (interface, path)
    ) WITHOUT ROWID;
    CREATE TABLE dead_letters (
        seq INTEGER PRIMARY KEY,
        interface TEXT NOT NULL,
        major INTEGER NOT NULL,
        path TEXT NOT NULL,
        payload BLOB NOT NULL,
        qos INTEGER NOT NULL,
        failed_at_ms INTEGER NOT NULL
    );",
    // 2: the ledger of remote commands (see `ledger.rs`). `seq` is the arrival order; small
    // columns come first so that scans by status stay off the output's overflow pages.
    "CREATE TABLE commands (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        published TEXT,
        exit_code INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        timeout_seconds INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        args TEXT NOT NULL,
        detail TEXT NOT NULL,
        stdout TEXT NOT NULL,
        stderr TEXT NOT NULL
    );",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Small pages: a commit of a few small rows writes less of the flash (every page a commit
/// changes is written whole to the WAL). SQLite's smallest; a database created by an earlier
/// agent (1024-byte pages) keeps its pages: in WAL mode the page size is fixed at creation.
const PAGE_SIZE: u32 = 512;

/// SQLite's page cache, in KiB (negative values of `cache_size` are KiB).
const CACHE_KIB: i64 = -256;

/// WAL pages written before a checkpoint copies them into the database (SQLite's default:
/// about 0.5 MiB of WAL with 512-byte pages).
const WAL_CHECKPOINT_PAGES: i64 = 1000;

/// Bytes the WAL is cut back to after a checkpoint: more than it reaches between two
/// checkpoints, so that it is never cut in normal running, only after a large transaction.
const WAL_SIZE_LIMIT: i64 = 2 * 1024 * 1024;

/// How long (ms) opening waits for a lock held by a closing connection.
const BUSY_TIMEOUT_MS: i64 = 5000;

/// What the database holds when it is opened.
pub(super) struct Contents {
    pub queued: u64,
    pub queued_bytes: u64,
    pub next_seq: u64,
    pub backlog: Option<(u64, u64)>,
    pub properties: Vec<PropertyRow>,
    /// The database was created by this open (a new device, or a corrupt one moved aside).
    pub fresh: bool,
}

/// Opens the database in `dir`, moving a corrupt one aside and starting afresh: corrupt pages
/// found by the check at open, or damaged rows found while reading the contents.
pub(super) fn open(dir: &Path) -> Result<(Connection, Contents), StoreError> {
    let path = dir.join(DATABASE_FILE);
    match open_and_read(dir, &path)? {
        Ok(opened) => Ok(opened),
        Err(error) if is_corruption(&error) => {
            let moved = move_aside(&path)?;
            tracing::error!(
                path = %path.display(),
                moved_to = %moved.display(),
                error = %crate::error_chain::error_chain(&error),
                "the store database is corrupt: moved it aside and started an empty one (queued messages and properties in it are not used; keep the file for analysis)"
            );
            open_and_read(dir, &path)?.map_err(|source| StoreError::Open { path, source })
        }
        Err(source) => Err(StoreError::Open { path, source }),
    }
}

/// The database and what it holds; the outer error is the 0.1 import's, the inner SQLite's
/// (the connection is closed when that is returned, so the file can be moved aside).
fn open_and_read(
    dir: &Path,
    path: &Path,
) -> Result<Result<(Connection, Contents), rusqlite::Error>, StoreError> {
    let (connection, fresh) = match open_checked(path) {
        Ok(opened) => opened,
        Err(error) => return Ok(Err(error)),
    };
    legacy::import(dir, &connection)?;
    Ok(read_contents(&connection, fresh).map(|contents| (connection, contents)))
}

/// Opens, configures, checks and migrates; whether the database was new (no schema yet). Any
/// error here is reported by its SQLite code.
fn open_checked(path: &Path) -> Result<(Connection, bool), rusqlite::Error> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    set_private_mode(path);
    // A connection of this process that is closing (a store being reopened) still holds the
    // lock for a moment: wait for it rather than fail.
    // (The pragma, not `Connection::busy_timeout`: that one needs SQLite 3.44's client data,
    // and the system's library may be older.)
    connection.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)?;
    connection.pragma_update(None, "page_size", PAGE_SIZE)?;
    // The writer's connection is the only one: it keeps the lock from its first read on, so
    // no transaction takes or releases file locks, and the WAL index lives in the heap
    // instead of a shared-memory file (`agent.db-shm`, mapped). Set before the journal mode
    // (which reads the database). Other processes can open the database once the agent has
    // stopped.
    connection.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "the store could not switch to WAL journaling");
    }
    connection.pragma_update(None, "synchronous", "FULL")?;
    // A small page cache: the store is written far more than it is read.
    connection.pragma_update(None, "cache_size", CACHE_KIB)?;
    // No memory-mapped reads (the page cache above is enough for a queue read in order).
    connection.pragma_update(None, "mmap_size", 0)?;
    // The WAL is checkpointed at SQLite's default size (1000 pages, about 1 MiB) and kept at
    // that size afterwards: later commits overwrite it from its start, which syncs no
    // file-size change. One grown by a large transaction is cut back to this limit.
    connection.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    connection.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    let check: String = connection.query_row("PRAGMA quick_check(1)", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(check),
        ));
    }
    let fresh =
        connection.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))? == 0;
    migrate(&connection)?;
    Ok((connection, fresh))
}

/// Applies the migrations the database lacks, each in its own transaction.
pub(super) fn migrate(connection: &Connection) -> Result<(), rusqlite::Error> {
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "the store has schema version {version}, newer than this agent's {SCHEMA_VERSION} (a downgrade?)"
            )),
        ));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = index as i64 + 1;
        connection.execute_batch(&format!(
            "BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {next}; COMMIT;"
        ))?;
        tracing::info!(version = next, "store schema migrated");
    }
    Ok(())
}

fn read_contents(connection: &Connection, fresh: bool) -> Result<Contents, rusqlite::Error> {
    let (queued, queued_bytes, first, last): (i64, i64, Option<i64>, Option<i64>) = connection
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), MIN(seq), MAX(seq) FROM queue",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )?;
    let last_dead: Option<i64> = connection
        .query_row("SELECT MAX(seq) FROM dead_letters", [], |row| row.get(0))
        .optional()?
        .flatten();
    // A sequence number at i64::MAX only comes from a damaged row: refuse it, don't overflow.
    let next_seq = last
        .max(last_dead)
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some("the queue's sequence numbers are exhausted".into()),
            )
        })?;
    let mut statement = connection
        .prepare("SELECT interface, path, ownership, major, payload FROM properties ORDER BY interface, path")?;
    let properties = statement
        .query_map([], |row| {
            Ok(PropertyRow {
                interface: row.get(0)?,
                path: row.get(1)?,
                ownership: ownership_from_code(row.get(2)?),
                major: row.get(3)?,
                payload: row.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Contents {
        queued: queued as u64,
        queued_bytes: queued_bytes as u64,
        next_seq: next_seq as u64,
        backlog: first
            .zip(last)
            .map(|(first, last)| (first as u64, last as u64)),
        properties,
        fresh,
    })
}

pub(super) fn ownership_code(ownership: Ownership) -> i64 {
    match ownership {
        Ownership::Device => 0,
        Ownership::Server => 1,
    }
}

pub(super) fn ownership_from_code(code: i64) -> Ownership {
    if code == 0 {
        Ownership::Device
    } else {
        Ownership::Server
    }
}

fn is_corruption(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Renames the database and its WAL to `<name>.corrupt-<unix seconds>`; never deletes them.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let target = with_suffix(path, &format!(".corrupt-{stamp}"));
    for (from, to) in [
        (with_suffix(path, "-wal"), with_suffix(&target, "-wal")),
        (path.to_owned(), target.clone()),
    ] {
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::MoveAside { path: from, source }),
        }
    }
    // The shared-memory index is rebuilt from the WAL; a stale one must not be reused.
    let _ = std::fs::remove_file(with_suffix(path, "-shm"));
    Ok(target)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The database holds queued data and property values: readable by the agent only.
fn set_private_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), %error, "couldn't make the store private (mode 0600)");
    }
}
