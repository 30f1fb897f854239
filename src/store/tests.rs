use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::schema::{MIGRATIONS, migrate};
use super::*;

fn message(n: u8) -> StoredMessage {
    StoredMessage {
        interface: "org.example.Stored".into(),
        major: 1,
        path: "/value".into(),
        payload: vec![n; 10],
        qos: 1,
        expires_at_ms: None,
    }
}

fn open(dir: &Path) -> Opened {
    Store::open(dir, StoreOptions::default()).unwrap()
}

fn reopen(opened: Opened) -> Opened {
    let dir = opened.store.dir().to_owned();
    opened.store.close().unwrap();
    open(&dir)
}

async fn all(store: &Store) -> Vec<QueuedRow> {
    store.load(0, 10_000).await.unwrap().rows
}

#[tokio::test]
async fn stored_messages_survive_a_restart_in_order_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let first = opened.store.append(message(1)).await.unwrap();
    let second = opened.store.append(message(2)).await.unwrap();
    assert!(first < second);

    let opened = reopen(opened);
    assert_eq!(opened.backlog, Some((first, second)));
    let rows = all(&opened.store).await;
    assert_eq!(
        rows.iter().map(|row| row.seq).collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(rows[1].message, message(2));

    opened.store.ack(vec![first]);
    let opened = reopen(opened);
    assert_eq!(opened.backlog, Some((second, second)));
    assert!(
        opened.store.sequence().load(Ordering::Relaxed) > second,
        "sequence numbers keep growing across restarts"
    );
}

#[tokio::test]
async fn concurrent_appends_all_commit_and_get_distinct_places() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let appends = (0..200u8).map(|n| {
        let store = opened.store.clone();
        tokio::spawn(async move { store.append(message(n)).await })
    });
    let mut seqs = Vec::new();
    for append in appends {
        seqs.push(append.await.unwrap().unwrap());
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 200);
    assert_eq!(opened.store.counters().queued.load(Ordering::Relaxed), 200);
    assert_eq!(all(&opened.store).await.len(), 200);
}

#[tokio::test]
async fn a_full_queue_refuses_new_messages_and_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Store::open(
        dir.path(),
        StoreOptions {
            max_queue_bytes: 25,
        },
    )
    .unwrap();
    opened.store.append(message(1)).await.unwrap();
    opened.store.append(message(2)).await.unwrap();
    let refused = opened.store.append(message(3)).await;
    assert!(matches!(
        refused,
        Err(StoreError::QueueFull { bytes: 20, max: 25 })
    ));
    assert_eq!(all(&opened.store).await.len(), 2);
    opened.store.ack(vec![all(&opened.store).await[0].seq]);
    // Acks are committed in batches: wait for this one before asking for room again.
    let committed = async {
        while opened.store.counters().queued.load(Ordering::Relaxed) != 1 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), committed)
        .await
        .expect("the ack is committed");
    assert!(
        opened.store.append(message(4)).await.is_ok(),
        "room again after an ack"
    );
    let opened = reopen(opened);
    assert_eq!(all(&opened.store).await.len(), 2);
}

#[tokio::test]
async fn expired_rows_are_removed_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let mut old = message(1);
    old.expires_at_ms = Some(1);
    opened.store.append(old).await.unwrap();
    let fresh = opened.store.append(message(2)).await.unwrap();
    let loaded = opened.store.load(0, 10).await.unwrap();
    assert_eq!(
        loaded.rows.iter().map(|row| row.seq).collect::<Vec<_>>(),
        [fresh]
    );
    assert_eq!(opened.store.counters().queued.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_read_at_its_limit_says_more_may_follow() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    for n in 0..3 {
        opened.store.append(message(n)).await.unwrap();
    }
    let first = opened.store.load(0, 2).await.unwrap();
    assert!(first.more);
    let rest = opened.store.load(first.seen_upto + 1, 2).await.unwrap();
    assert_eq!(rest.rows.len(), 1);
    assert!(!rest.more);
}

#[tokio::test]
async fn a_dead_letter_leaves_the_queue_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let seq = opened.store.append(message(1)).await.unwrap();
    opened.store.dead_letter(seq);
    let opened = reopen(opened);
    assert_eq!(opened.backlog, None);
    // The store holds the database's lock while it is open.
    opened.store.close().unwrap();
    let dead: i64 = Connection::open(dir.path().join(DATABASE_FILE))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM dead_letters", [], |row| row.get(0))
        .unwrap();
    assert_eq!(dead, 1);
}

fn property(interface: &str, path: &str, payload: &[u8]) -> PropertyRow {
    PropertyRow {
        interface: interface.into(),
        path: path.into(),
        ownership: Ownership::Server,
        major: 2,
        payload: payload.to_vec(),
    }
}

#[tokio::test]
async fn properties_are_kept_replaced_deleted_and_dropped_per_interface() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let store = &opened.store;
    store
        .put_property(property("a.I", "/x", b"1"))
        .await
        .unwrap();
    store
        .put_property(property("a.I", "/x", b"2"))
        .await
        .unwrap();
    store
        .put_property(property("a.I", "/y", b"3"))
        .await
        .unwrap();
    store
        .put_property(property("b.I", "/z", b"4"))
        .await
        .unwrap();
    store.delete_property("a.I", "/y").await.unwrap();
    let opened = reopen(opened);
    assert_eq!(
        opened.properties,
        [property("a.I", "/x", b"2"), property("b.I", "/z", b"4")]
    );
    opened.store.drop_interface("a.I").await.unwrap();
    let opened = reopen(opened);
    assert_eq!(opened.properties, [property("b.I", "/z", b"4")]);
}

#[test]
fn a_corrupt_database_is_moved_aside_and_a_fresh_one_created() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DATABASE_FILE), vec![0x5a; 8192]).unwrap();
    let opened = open(dir.path());
    assert_eq!(opened.backlog, None);
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("agent.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&aside[0])).unwrap(),
        vec![0x5a; 8192],
        "the corrupt file is kept as it was"
    );
}

#[test]
fn the_database_is_private_and_in_wal_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let mode = std::fs::metadata(dir.path().join(DATABASE_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    opened.store.close().unwrap();
    let mode: String = Connection::open(dir.path().join(DATABASE_FILE))
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn every_older_schema_migrates_to_the_current_one_keeping_its_rows() {
    for version in 0..MIGRATIONS.len() {
        let dir = tempfile::tempdir().unwrap();
        {
            let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            for (index, migration) in MIGRATIONS.iter().enumerate().take(version) {
                connection.execute_batch(migration).unwrap();
                connection
                    .pragma_update(None, "user_version", index as i64 + 1)
                    .unwrap();
            }
            if version >= 1 {
                connection
                    .execute(
                        "INSERT INTO queue (seq, interface, major, path, payload, qos) VALUES (7, 'a.I', 0, '/p', x'01', 1)",
                        [],
                    )
                    .unwrap();
            }
        }
        let opened = open(dir.path());
        if version >= 1 {
            assert_eq!(opened.backlog, Some((7, 7)), "from version {version}");
        }
        opened.store.close().unwrap();
        let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let current: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(current, SCHEMA_VERSION, "from version {version}");
        let commands: i64 = connection
            .query_row("SELECT COUNT(*) FROM commands", [], |row| row.get(0))
            .unwrap();
        assert_eq!(
            commands, 0,
            "the command ledger exists, empty, from version {version}"
        );
        migrate(&connection).unwrap();
    }
}

#[test]
fn a_newer_schema_is_refused_rather_than_misread() {
    let dir = tempfile::tempdir().unwrap();
    Connection::open(dir.path().join(DATABASE_FILE))
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(StoreError::Open { .. })
    ));
}

#[test]
fn the_0_1_property_file_is_imported_once_then_removed() {
    use bson::{Bson, doc, spec::BinarySubtype};
    let dir = tempfile::tempdir().unwrap();
    let value = doc! { "v": 5_i64 }.to_vec().unwrap();
    let entry = |owner: &str, name: &str| {
        Bson::Document(doc! {
            "o": owner, "i": name, "m": 1_i64, "p": "/a/value",
            "v": Bson::Binary(bson::Binary { subtype: BinarySubtype::Generic, bytes: value.clone() }),
        })
    };
    let file = doc! { "version": 1, "properties": [entry("device", "a.Device"), entry("server", "a.Server")] };
    let legacy = dir.path().join(legacy::LEGACY_PROPERTIES_FILE);
    std::fs::write(&legacy, file.to_vec().unwrap()).unwrap();

    let opened = open(dir.path());
    assert!(!legacy.exists(), "the old file is removed after the import");
    assert_eq!(opened.properties.len(), 2);
    assert_eq!(opened.properties[0].interface, "a.Device");
    assert_eq!(opened.properties[0].ownership, Ownership::Device);
    assert_eq!(opened.properties[0].payload, value);
    assert_eq!(opened.properties[1].ownership, Ownership::Server);
    let opened = reopen(opened);
    assert_eq!(opened.properties.len(), 2, "nothing lost, nothing doubled");
}

#[test]
fn an_unreadable_0_1_property_file_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join(legacy::LEGACY_PROPERTIES_FILE);
    std::fs::write(&legacy, b"\x05\x00garbage").unwrap();
    let opened = open(dir.path());
    assert!(opened.properties.is_empty());
    assert!(!legacy.exists());
    assert!(dir.path().join("properties.unreadable").exists());
}

/// Found by fuzzing (tests/fuzz/store.rs): a row at the largest sequence number made the
/// next one overflow (a panic in debug builds, a negative number in release ones).
#[test]
fn a_row_at_the_largest_sequence_number_is_moved_aside_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).store.close().unwrap();
    let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    connection
        .execute_batch(
            "INSERT INTO queue VALUES (9223372036854775807, 'x', 0, '/p', X'00', 1, NULL)",
        )
        .unwrap();
    drop(connection);
    // A damaged row is corruption like a damaged page: the agent starts with an empty store
    // instead of refusing to start.
    let opened = open(dir.path());
    assert_eq!(opened.backlog, None);
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("agent.db.corrupt-")
        })
        .count();
    assert_eq!(aside, 1);
}

#[tokio::test]
async fn acknowledged_runs_are_removed_and_a_row_between_them_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let mut seqs = Vec::new();
    for n in 0..6 {
        seqs.push(opened.store.append(message(n)).await.unwrap());
    }
    // Out of order, repeated, and without seqs[3] (still in flight).
    opened
        .store
        .ack(vec![seqs[5], seqs[0], seqs[1], seqs[4], seqs[2], seqs[1]]);
    let opened = reopen(opened);
    assert_eq!(opened.backlog, Some((seqs[3], seqs[3])));
    assert_eq!(opened.store.counters().queued.load(Ordering::Relaxed), 1);
    assert_eq!(
        opened.store.counters().queued_bytes.load(Ordering::Relaxed),
        10
    );
}

#[tokio::test]
async fn a_lone_acknowledgement_is_written_after_the_delay_without_other_work() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let seq = opened.store.append(message(1)).await.unwrap();
    opened.store.ack(vec![seq]);
    let counters = opened.store.counters();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while counters.queued.load(Ordering::Relaxed) > 0 {
        assert!(std::time::Instant::now() < deadline, "never removed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let opened = reopen(opened);
    assert_eq!(opened.backlog, None);
}
