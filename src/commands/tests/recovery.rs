//! What a restart finds in the ledger: commands that were waiting, running, or whose result
//! never reached the queue.

use super::*;
use crate::store::{Inserted, NewCommand};

/// Puts a command in the ledger as the last run left it, without an engine.
async fn leave_in_ledger(store: &Store, id: &str, name: &str, status: Status) {
    let inserted = store
        .command_insert(NewCommand {
            id: id.into(),
            name: name.into(),
            args: Vec::new(),
            timeout_seconds: 0,
            received_at_ms: 1,
        })
        .await
        .unwrap();
    assert!(matches!(inserted, Inserted::New { .. }));
    if status != Status::Received {
        store
            .command_update(CommandResult::bare(id, status, "", 2))
            .await
            .unwrap();
    }
}

fn close(store: Store) {
    store.close().unwrap();
}

#[tokio::test]
async fn a_command_running_when_the_agent_stops_is_interrupted_after_restart_and_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("runs");
    let script = format!("echo run >> {}; sleep 100", marker.display());
    let commands = || options(2, vec![("slow", shell(&script))]);
    let mut engine = Harness::start(dir.path(), commands()).await;
    engine.send(request("1", "slow", &[])).await;
    assert_eq!(engine.next().await.status, Status::Received);
    assert_eq!(engine.next().await.status, Status::Running);
    tokio::time::timeout(HANG_GUARD, async {
        while lines(&marker).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    engine.stop().await;

    let mut engine = Harness::start(dir.path(), commands()).await;
    let after = engine.next().await;
    assert_eq!(
        (after.id.as_str(), after.status),
        ("1", Status::Interrupted)
    );
    assert!(after.detail.contains("not run again"), "{}", after.detail);
    engine.send(request("2", "slow-not-configured", &[])).await;
    engine.until_final("2").await;
    assert_eq!(lines(&marker), ["run"], "no second run");
    engine.stop().await;
}

#[tokio::test]
async fn an_interrupted_command_runs_again_when_it_asks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("runs");
    let mut again = shell(&format!("echo run >> {}", marker.display()));
    again.rerun_on_restart = true;
    let opened = Store::open(dir.path(), StoreOptions::default()).unwrap();
    leave_in_ledger(&opened.store, "1", "again", Status::Running).await;
    tokio::task::spawn_blocking(move || close(opened.store))
        .await
        .unwrap();

    let mut engine = Harness::start(dir.path(), options(2, vec![("again", again)])).await;
    let results = engine.until_final("1").await;
    assert_eq!(
        statuses(&results),
        [
            ("1".into(), Status::Running),
            ("1".into(), Status::Completed)
        ]
    );
    assert_eq!(lines(&marker), ["run"]);
    engine.stop().await;
}

#[tokio::test]
async fn received_but_not_started_commands_start_after_restart_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let order = dir.path().join("order");
    let mut step = shell(&format!("echo \"$1\" >> {}", order.display()));
    step.args_pattern = Some(compile_args_pattern("[a-z]").unwrap());
    let opened = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for id in ["c", "a", "b"] {
        opened
            .store
            .command_insert(NewCommand {
                id: id.into(),
                name: "step".into(),
                args: vec![id.into()],
                timeout_seconds: 0,
                received_at_ms: 1,
            })
            .await
            .unwrap();
    }
    tokio::task::spawn_blocking(move || close(opened.store))
        .await
        .unwrap();

    let mut engine = Harness::start(dir.path(), options(1, vec![("step", step)])).await;
    engine.until_final("b").await;
    assert_eq!(
        lines(&order),
        ["c", "a", "b"],
        "arrival order, not id order"
    );
    engine.stop().await;
}

#[tokio::test]
async fn a_final_result_that_never_reached_the_queue_is_published_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Store::open(dir.path(), StoreOptions::default()).unwrap();
    leave_in_ledger(&opened.store, "1", "x", Status::Completed).await;
    leave_in_ledger(&opened.store, "2", "x", Status::Failed).await;
    opened.store.command_published("2", Status::Failed);
    tokio::task::spawn_blocking(move || close(opened.store))
        .await
        .unwrap();

    let mut engine = Harness::start(dir.path(), options(2, vec![])).await;
    let republished = engine.next().await;
    assert_eq!(
        (republished.id.as_str(), republished.status),
        ("1", Status::Completed)
    );
    // Nothing else is pending: a new request is the next thing reported.
    engine.send(request("3", "x", &[])).await;
    assert_eq!(engine.next().await.id, "3");
    engine.stop().await;
}
