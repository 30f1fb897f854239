//! The SQLite store after a torn write: rows are written, the database and WAL files are
//! copied mid-flight (what a power cut leaves), then truncated, bit-flipped or have a page
//! zeroed, or get rows of the wrong shape. Reopening yields a usable store (a corrupt file
//! is moved aside) or a typed `StoreError`; never a panic.

use std::path::Path;

use astarte_agent::interface::Ownership;
use astarte_agent::store::{PropertyRow, Store, StoreError, StoreOptions, StoredMessage};
use fastrand::Rng;

use crate::{driver, mutate};

const DB: &str = "agent.db";
const WAL: &str = "agent.db-wal";
/// The store's page size (src/store/schema.rs).
const PAGE: usize = 512;

fn assert_typed(error: &StoreError) {
    match error {
        StoreError::Open { .. }
        | StoreError::MoveAside { .. }
        | StoreError::Import { .. }
        | StoreError::Write(_)
        | StoreError::QueueFull { .. }
        | StoreError::File { .. }
        | StoreError::Thread(_)
        | StoreError::Stopped => driver::assert_message(error),
    }
}

fn message(rng: &mut Rng) -> StoredMessage {
    StoredMessage {
        interface: format!("org.example.I{}", rng.u8(0..4)),
        major: rng.u32(0..3),
        path: format!("/p/{}", rng.u32(..)),
        payload: (0..rng.usize(1..600)).map(|_| rng.u8(..)).collect(),
        qos: rng.u8(1..3),
        expires_at_ms: rng.bool().then(|| rng.i64(..)),
    }
}

/// Writes rows and snapshots the files while the store is open, as a power cut would.
async fn write_and_snapshot(rng: &mut Rng, live: &Path, snapshot: &Path) {
    let opened = Store::open(live, StoreOptions::default()).expect("a fresh store opens");
    for _ in 0..rng.usize(1..40) {
        opened.store.append(message(rng)).await.expect("append");
    }
    for index in 0..rng.usize(0..10) {
        let row = PropertyRow {
            interface: "org.example.P".into(),
            path: format!("/p{index}"),
            ownership: if rng.bool() {
                Ownership::Device
            } else {
                Ownership::Server
            },
            major: 1,
            payload: vec![5, 0, 0, 0, 0],
        };
        opened.store.put_property(row).await.expect("put");
    }
    for name in [DB, WAL] {
        if let Ok(bytes) = std::fs::read(live.join(name)) {
            std::fs::write(snapshot.join(name), bytes).expect("snapshot");
        }
    }
    opened.store.close().unwrap();
}

fn corrupt_file(rng: &mut Rng, path: &Path) {
    let Ok(mut bytes) = std::fs::read(path) else {
        return;
    };
    let len = bytes.len();
    match rng.u8(0..4) {
        0 => bytes.truncate(rng.usize(0..=len)),
        1 if len >= PAGE => {
            let page = rng.usize(0..len / PAGE);
            bytes[page * PAGE..(page + 1) * PAGE].fill(0);
        }
        2 if len > 0 => {
            for _ in 0..rng.usize(1..8) {
                let at = rng.usize(0..len);
                bytes[at] ^= 1 << rng.u8(0..8);
            }
        }
        _ => mutate::bytes(rng, &mut bytes),
    }
    std::fs::write(path, bytes).expect("write the corrupted file");
}

/// Rows a buggy writer or a foreign tool could leave: wrong types and out-of-range numbers.
fn corrupt_rows(rng: &mut Rng, dir: &Path) {
    let Ok(connection) = rusqlite::Connection::open(dir.join(DB)) else {
        return;
    };
    let statement = [
        "UPDATE queue SET major = -1 WHERE seq = (SELECT MIN(seq) FROM queue)",
        "UPDATE queue SET interface = X'FF00' WHERE seq = (SELECT MAX(seq) FROM queue)",
        "UPDATE queue SET payload = NULL",
        "UPDATE properties SET ownership = 7, major = 4294967296",
        "UPDATE properties SET payload = 'text'",
        "INSERT INTO queue VALUES (9223372036854775807, 'x', 0, '/p', X'00', 9, NULL)",
        "PRAGMA user_version = 999",
    ][rng.usize(0..7)];
    let _ = connection.execute_batch(statement);
}

async fn reopen(rng: &mut Rng, dir: &Path) {
    let opened = match Store::open(dir, StoreOptions::default()) {
        Ok(opened) => opened,
        Err(error) => return assert_typed(&error),
    };
    // Usable: reading answers, and a new message is stored and read back.
    if let Err(error) = opened.store.load(0, 10_000).await {
        assert_typed(&error);
    }
    let fresh = StoredMessage {
        expires_at_ms: None,
        ..message(rng)
    };
    match opened.store.append(fresh.clone()).await {
        Ok(seq) => match opened.store.load(seq, 1).await {
            Ok(loaded) => {
                let row = loaded.rows.first().expect("the row just appended");
                assert_eq!((row.seq, &row.message.payload), (seq, &fresh.payload));
            }
            Err(error) => assert_typed(&error),
        },
        Err(error) => assert_typed(&error),
    }
    opened.store.close().unwrap();
}

fn case(rng: &mut Rng, runtime: &tokio::runtime::Runtime) {
    let live = tempfile::tempdir().expect("a temp dir");
    let snapshot = tempfile::tempdir().expect("a temp dir");
    runtime.block_on(write_and_snapshot(rng, live.path(), snapshot.path()));
    match rng.u8(0..4) {
        0 => corrupt_file(rng, &snapshot.path().join(DB)),
        1 => corrupt_file(rng, &snapshot.path().join(WAL)),
        2 => {
            corrupt_file(rng, &snapshot.path().join(DB));
            corrupt_file(rng, &snapshot.path().join(WAL));
        }
        _ => corrupt_rows(rng, snapshot.path()),
    }
    runtime.block_on(reopen(rng, snapshot.path()));
}

#[test]
fn store_torn_writes() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    driver::run("store_torn_writes", 60, |rng| case(rng, &runtime));
}
