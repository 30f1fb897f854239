//! SQLite on the power-cut filesystem, configured as the agent's store (WAL journal, its `-shm`
//! file mmap'ed, fcntl locks): with `synchronous = FULL` every committed row survives a cut and
//! the database stays sound; with `synchronous = OFF` the last commits are lost, which shows
//! the filesystem really loses what was not fsynced.

mod lazyfs_support;

use std::path::Path;

use lazyfs_support::Dirs;
use rusqlite::Connection;
use rusqlite::config::DbConfig;

const DATABASE: &str = "agent.db";

/// Opens `path` in WAL mode with `synchronous` as given. Closing it does not checkpoint: like a
/// killed process, it leaves its committed transactions in the WAL.
fn open(path: &Path, synchronous: &str) -> Connection {
    let connection = Connection::open(path).unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    connection
        .pragma_update(None, "synchronous", synchronous)
        .unwrap();
    connection
        .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .unwrap();
    connection
        .execute_batch("CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY, payload BLOB)")
        .unwrap();
    connection
}

fn payload(id: u32) -> Vec<u8> {
    (0..1000).map(|i| (id * 31 + i) as u8).collect()
}

/// Commits rows `ids`, one transaction each.
fn insert(connection: &Connection, ids: std::ops::Range<u32>) {
    for id in ids {
        connection
            .execute(
                "INSERT INTO queue (id, payload) VALUES (?1, ?2)",
                (id, payload(id)),
            )
            .unwrap();
    }
}

/// Checks the database is sound and returns the ids it holds (each with its exact payload).
fn ids(connection: &Connection) -> Vec<u32> {
    let check: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut statement = connection
        .prepare("SELECT id, payload FROM queue ORDER BY id")
        .unwrap();
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, u32>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .unwrap();
    rows.map(|row| {
        let (id, stored) = row.unwrap();
        assert_eq!(stored, payload(id), "row {id}");
        id
    })
    .collect()
}

#[test]
fn with_synchronous_full_every_committed_row_survives_a_cut() {
    let dirs = Dirs::new();
    let lazy = dirs.mount();
    let connection = open(&dirs.mnt(DATABASE), "FULL");
    insert(&connection, 0..200);
    assert!(dirs.mnt("agent.db-shm").exists() && dirs.mnt("agent.db-wal").exists());

    // The power goes while the process still has the database open.
    let stats = lazy.cut().unwrap();
    drop(connection); // its disk is gone: closing fails quietly

    assert!(stats.file_syncs >= 200, "{stats:?}");
    let _lazy = dirs.mount();
    let connection = open(&dirs.mnt(DATABASE), "FULL");
    assert_eq!(ids(&connection), (0..200).collect::<Vec<_>>());
}

#[test]
fn with_synchronous_off_the_last_commits_are_lost() {
    let dirs = Dirs::new();
    let lazy = dirs.mount();
    let connection = open(&dirs.mnt(DATABASE), "FULL");
    insert(&connection, 0..10);
    connection
        .pragma_update(None, "synchronous", "OFF")
        .unwrap();
    insert(&connection, 10..110);
    assert_eq!(ids(&connection).len(), 110);
    drop(connection); // closed without checkpoint, like a killed process

    let stats = lazy.cut().unwrap();

    assert!(stats.bytes_discarded >= 100 * 1000, "{stats:?}");
    let _lazy = dirs.mount();
    let connection = open(&dirs.mnt(DATABASE), "FULL");
    assert_eq!(ids(&connection), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_checkpointed_database_survives_its_deleted_wal_coming_back() {
    let dirs = Dirs::new();
    let lazy = dirs.mount();
    let connection = open(&dirs.mnt(DATABASE), "FULL");
    insert(&connection, 0..50);
    // A clean close: checkpoint into agent.db (fsynced), then the WAL is unlinked without an
    // fsync of the directory, so the cut brings it back.
    connection
        .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
        .unwrap();
    drop(connection);
    assert!(!dirs.mnt("agent.db-wal").exists());

    lazy.cut().unwrap();

    assert!(dirs.backing("agent.db-wal").exists());
    let _lazy = dirs.mount();
    let connection = open(&dirs.mnt(DATABASE), "FULL");
    assert_eq!(ids(&connection), (0..50).collect::<Vec<_>>());
}

#[test]
fn a_clean_unmount_keeps_commits_made_with_synchronous_off() {
    let dirs = Dirs::new();
    let lazy = dirs.mount();
    let connection = open(&dirs.mnt(DATABASE), "OFF");
    insert(&connection, 0..30);
    drop(connection);
    lazy.unmount().unwrap();

    let _lazy = dirs.mount();
    let connection = open(&dirs.mnt(DATABASE), "FULL");
    assert_eq!(ids(&connection), (0..30).collect::<Vec<_>>());
}
