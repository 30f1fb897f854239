use super::*;

#[tokio::test]
async fn a_configured_command_is_received_then_runs_then_completes_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(
        dir.path(),
        options(2, vec![("hello", shell("echo hello; echo warn >&2"))]),
    )
    .await;
    engine.send(request("1", "hello", &[])).await;
    let results = engine.until_final("1").await;
    assert_eq!(
        statuses(&results),
        [
            ("1".into(), Status::Received),
            ("1".into(), Status::Running),
            ("1".into(), Status::Completed)
        ]
    );
    let done = &results[2];
    assert_eq!(
        (done.exit_code, done.stdout.as_str(), done.stderr.as_str()),
        (0, "hello\n", "warn\n")
    );
    assert!(!done.truncated && done.detail.is_empty());
    engine.stop().await;
}

#[tokio::test]
async fn a_non_zero_exit_is_failed_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(dir.path(), options(2, vec![("bad", shell("exit 4"))])).await;
    engine.send(request("1", "bad", &[])).await;
    let done = engine.until_final("1").await.pop().unwrap();
    assert_eq!((done.status, done.exit_code), (Status::Failed, 4));
    assert!(done.detail.contains("code 4"), "{}", done.detail);
    engine.stop().await;
}

#[tokio::test]
async fn the_same_id_twice_runs_once_and_its_result_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("runs");
    let script = format!("echo run >> {}; echo out", marker.display());
    let mut engine = Harness::start(dir.path(), options(2, vec![("once", shell(&script))])).await;
    engine.send(request("same", "once", &[])).await;
    let first = engine.until_final("same").await.pop().unwrap();
    engine.send(request("same", "once", &[])).await;
    let again = engine.next().await;
    assert_eq!(again, first, "the last result, as it was");
    assert_eq!(lines(&marker), ["run"]);
    engine.stop().await;
}

#[tokio::test]
async fn a_duplicate_is_recognised_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("runs");
    let script = format!("echo run >> {}", marker.display());
    let commands = || options(2, vec![("once", shell(&script))]);
    let mut engine = Harness::start(dir.path(), commands()).await;
    engine.send(request("same", "once", &[])).await;
    engine.until_final("same").await;
    engine.stop().await;
    let mut engine = Harness::start(dir.path(), commands()).await;
    engine.send(request("same", "once", &[])).await;
    assert_eq!(engine.next().await.status, Status::Completed);
    assert_eq!(lines(&marker), ["run"]);
    engine.stop().await;
}

#[tokio::test]
async fn an_unknown_command_is_rejected_without_a_handler_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(dir.path(), options(2, vec![])).await;
    engine.send(request("1", "nope", &[])).await;
    let results = engine.until_final("1").await;
    assert_eq!(
        statuses(&results),
        [
            ("1".into(), Status::Received),
            ("1".into(), Status::Rejected)
        ]
    );
    assert!(
        results[1].detail.contains("unknown command \"nope\""),
        "{}",
        results[1].detail
    );
    assert_eq!(results[1].exit_code, NO_EXIT_CODE);
    engine.stop().await;
}

#[tokio::test]
async fn arguments_are_rejected_without_running_unless_each_fully_matches_the_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("runs");
    let mut with_pattern = shell(&format!("echo \"$1\" >> {}", marker.display()));
    with_pattern.args_pattern = Some(compile_args_pattern("[a-z]+").unwrap());
    let without_pattern = shell(&format!("echo none >> {}", marker.display()));
    let mut engine = Harness::start(
        dir.path(),
        options(2, vec![("echo", with_pattern), ("plain", without_pattern)]),
    )
    .await;
    for (id, command, args) in [
        ("1", "echo", &["ok", "x; reboot"][..]),
        ("2", "echo", &["okX"][..]),
        ("3", "plain", &["anything"][..]),
    ] {
        engine.send(request(id, command, args)).await;
        let refused = engine.until_final(id).await.pop().unwrap();
        assert_eq!(refused.status, Status::Rejected, "{id}");
    }
    engine.send(request("4", "echo", &["fine"])).await;
    assert_eq!(
        engine.until_final("4").await.pop().unwrap().status,
        Status::Completed
    );
    assert_eq!(lines(&marker), ["fine"], "only the accepted request ran");
    engine.stop().await;
}

#[tokio::test]
async fn commands_start_in_arrival_order_one_at_a_time_with_max_parallel_1() {
    let dir = tempfile::tempdir().unwrap();
    let order = dir.path().join("order");
    let mut step = shell(&format!("echo \"$1\" >> {}", order.display()));
    step.args_pattern = Some(compile_args_pattern("[a-z]").unwrap());
    let mut engine = Harness::start(dir.path(), options(1, vec![("step", step)])).await;
    for id in ["a", "b", "c", "d"] {
        engine.send(request(id, "step", &[id])).await;
    }
    let results = engine.until_final("d").await;
    assert_eq!(lines(&order), ["a", "b", "c", "d"]);
    // Each command starts only after the previous one finished.
    let started_or_done: Vec<(String, Status)> = statuses(&results)
        .into_iter()
        .filter(|(_, status)| *status != Status::Received)
        .collect();
    let expected: Vec<(String, Status)> = ["a", "b", "c", "d"]
        .iter()
        .flat_map(|id| {
            [
                (id.to_string(), Status::Running),
                (id.to_string(), Status::Completed),
            ]
        })
        .collect();
    assert_eq!(started_or_done, expected);
    engine.stop().await;
}

#[tokio::test]
async fn a_hanging_command_holds_one_slot_only_and_times_out_with_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(
        dir.path(),
        options(
            2,
            vec![
                ("hang", shell("sleep 100 & sleep 100")),
                ("quick", shell("echo quick")),
            ],
        ),
    )
    .await;
    let mut short = request("short", "hang", &[]);
    short.timeout_seconds = 1;
    engine.send(short).await;
    engine.send(request("long", "hang", &[])).await;
    engine.send(request("q", "quick", &[])).await;
    let results = engine.until_final("q").await;
    let position = |id: &str, status: Status| {
        results
            .iter()
            .position(|result| result.id == id && result.status == status)
            .unwrap_or_else(|| panic!("{id} {status}: {:?}", statuses(&results)))
    };
    // Two run; the third starts only when the short one's time is up.
    assert!(position("q", Status::Running) > position("short", Status::Timeout));
    let timeout = &results[position("short", Status::Timeout)];
    assert_eq!(timeout.exit_code, NO_EXIT_CODE);
    assert!(timeout.detail.contains("1 s"), "{}", timeout.detail);
    assert!(
        !results
            .iter()
            .any(|result| result.id == "long" && result.status.is_final())
    );
    engine.stop().await;
}

#[tokio::test]
async fn output_over_max_output_bytes_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = shell("head -c 100000 /dev/zero | tr '\\0' x");
    big.max_output_bytes = 10;
    let mut engine = Harness::start(dir.path(), options(2, vec![("big", big)])).await;
    engine.send(request("1", "big", &[])).await;
    let done = engine.until_final("1").await.pop().unwrap();
    assert_eq!((done.stdout.as_str(), done.truncated), ("xxxxxxxxxx", true));
    engine.stop().await;
}

#[tokio::test]
async fn a_command_killed_by_a_signal_fails_and_names_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(
        dir.path(),
        options(2, vec![("die", shell("kill -KILL $$"))]),
    )
    .await;
    engine.send(request("1", "die", &[])).await;
    let done = engine.until_final("1").await.pop().unwrap();
    assert_eq!(
        (done.status, done.exit_code),
        (Status::Failed, NO_EXIT_CODE)
    );
    assert!(done.detail.contains("SIGKILL"), "{}", done.detail);
    engine.stop().await;
}

#[tokio::test]
async fn the_ledger_lists_recent_commands_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(dir.path(), options(2, vec![("ok", shell("true"))])).await;
    for id in ["1", "2", "3"] {
        engine.send(request(id, "ok", &[])).await;
        engine.until_final(id).await;
    }
    let listed = engine.handle.list(2).await.unwrap();
    let listed: Vec<(&str, &str, Status)> = listed
        .iter()
        .map(|entry| {
            (
                entry.last.id.as_str(),
                entry.name.as_str(),
                entry.last.status,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("2", "ok", Status::Completed),
            ("3", "ok", Status::Completed)
        ]
    );
    engine.stop().await;
}
