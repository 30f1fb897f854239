//! The command ledger in a real database.

use super::*;
use super::{CommandResult, Status};

fn command(id: &str) -> NewCommand {
    NewCommand {
        id: id.into(),
        name: "reboot".into(),
        args: vec!["now".into(), "é \"quoted\"".into()],
        timeout_seconds: 10,
        received_at_ms: 1000,
    }
}

fn finished(id: &str, status: Status, at_ms: i64) -> CommandResult {
    CommandResult {
        id: id.into(),
        status,
        exit_code: 3,
        stdout: "out".into(),
        stderr: "err".into(),
        truncated: true,
        detail: "why".into(),
        timestamp_ms: at_ms,
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

fn ids(entries: &[LedgerEntry]) -> Vec<&str> {
    entries.iter().map(|entry| entry.last.id.as_str()).collect()
}

#[tokio::test]
async fn a_known_id_is_never_inserted_again_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let Inserted::New { seq } = opened.store.command_insert(command("a")).await.unwrap() else {
        panic!("a new id");
    };
    opened
        .store
        .command_update(finished("a", Status::Failed, 2000))
        .await
        .unwrap();
    let opened = reopen(opened);
    let again = opened.store.command_insert(command("a")).await.unwrap();
    assert_eq!(
        again,
        Inserted::Existing(LedgerEntry {
            seq,
            name: "reboot".into(),
            args: command("a").args,
            timeout_seconds: 10,
            received_at_ms: 1000,
            last: finished("a", Status::Failed, 2000),
        })
    );
}

#[tokio::test]
async fn unfinished_commands_are_read_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    for id in ["z", "y", "x", "w"] {
        opened.store.command_insert(command(id)).await.unwrap();
    }
    let running = CommandResult::bare("y", Status::Running, "", 1500);
    opened.store.command_update(running).await.unwrap();
    opened
        .store
        .command_update(finished("x", Status::Completed, 1600))
        .await
        .unwrap();
    let unfinished = opened.store.commands_unfinished().await.unwrap();
    assert_eq!(ids(&unfinished), ["z", "y", "w"]);
    assert_eq!(unfinished[0].last.status, Status::Received);
    assert_eq!(unfinished[1].last.status, Status::Running);
    assert!(unfinished[0].seq < unfinished[1].seq && unfinished[1].seq < unfinished[2].seq);
}

#[tokio::test]
async fn a_final_result_is_unpublished_until_noted_as_published() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    for id in ["a", "b"] {
        opened.store.command_insert(command(id)).await.unwrap();
        opened
            .store
            .command_update(finished(id, Status::Completed, 2000))
            .await
            .unwrap();
    }
    opened.store.command_published("a", Status::Completed);
    let opened = reopen(opened);
    assert_eq!(
        ids(&opened.store.commands_unpublished().await.unwrap()),
        ["b"]
    );
    // A later status change makes it unpublished again until that one is published.
    opened
        .store
        .command_update(finished("a", Status::Interrupted, 3000))
        .await
        .unwrap();
    assert_eq!(
        ids(&opened.store.commands_unpublished().await.unwrap()),
        ["a", "b"]
    );
}

#[tokio::test]
async fn pruning_forgets_old_and_surplus_finished_commands_never_unfinished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    let store = &opened.store;
    // Arrival order: old (finished long ago), waiting, f1, f2, f3 (finished recently).
    for id in ["old", "waiting", "f1", "f2", "f3"] {
        store.command_insert(command(id)).await.unwrap();
    }
    store
        .command_update(finished("old", Status::Completed, 10))
        .await
        .unwrap();
    for id in ["f1", "f2", "f3"] {
        store
            .command_update(finished(id, Status::Completed, 5000))
            .await
            .unwrap();
    }
    assert_eq!(store.commands_prune(100, 1000).await.unwrap(), 1, "by age");
    assert_eq!(
        store.commands_prune(100, 2).await.unwrap(),
        1,
        "by count, oldest first"
    );
    let left = store.commands_recent(100).await.unwrap();
    assert_eq!(ids(&left), ["waiting", "f2", "f3"]);
    assert_eq!(store.commands_prune(i64::MAX, 1).await.unwrap(), 2);
    assert_eq!(ids(&store.commands_recent(100).await.unwrap()), ["waiting"]);
}

#[tokio::test]
async fn recent_commands_are_the_newest_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path());
    for id in ["1", "2", "3", "4"] {
        opened.store.command_insert(command(id)).await.unwrap();
    }
    assert_eq!(
        ids(&opened.store.commands_recent(2).await.unwrap()),
        ["3", "4"]
    );
}
