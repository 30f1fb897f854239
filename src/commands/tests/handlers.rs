//! The engine's side of D-Bus handlers.

use super::*;

const APP: &str = ":1.42";
const OTHER_APP: &str = ":1.43";

fn completion(id: &str, exit_code: i32, stdout: &str) -> Completion {
    Completion {
        id: id.into(),
        exit_code,
        stdout: stdout.into(),
        stderr: String::new(),
    }
}

#[tokio::test]
async fn a_handler_gets_its_commands_only_and_completes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(dir.path(), options(2, vec![])).await;
    engine.handle.register_handler("greet", APP).await.unwrap();
    engine
        .handle
        .register_handler("other", OTHER_APP)
        .await
        .unwrap();
    engine.send(request("1", "greet", &["world"])).await;
    let dispatched = tokio::time::timeout(HANG_GUARD, engine.handler_requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dispatched,
        HandlerRequest {
            owner: APP.into(),
            id: "1".into(),
            name: "greet".into(),
            args: vec!["world".into()]
        }
    );
    assert_eq!(
        engine
            .handle
            .complete(OTHER_APP, completion("1", 0, ""))
            .await,
        Err(HandlerError::NotRunning("1".into())),
        "another app can't complete it"
    );
    engine
        .handle
        .complete(APP, completion("1", 0, "hello world\n"))
        .await
        .unwrap();
    let results = engine.until_final("1").await;
    assert_eq!(
        statuses(&results),
        [
            ("1".into(), Status::Received),
            ("1".into(), Status::Running),
            ("1".into(), Status::Completed)
        ]
    );
    assert_eq!(results[2].stdout, "hello world\n");
    assert_eq!(
        engine.handle.complete(APP, completion("1", 0, "")).await,
        Err(HandlerError::NotRunning("1".into())),
        "a finished command can't complete again"
    );
    engine.stop().await;
}

#[tokio::test]
async fn a_handler_that_leaves_fails_its_running_commands_and_frees_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(dir.path(), options(2, vec![])).await;
    engine.handle.register_handler("greet", APP).await.unwrap();
    engine.send(request("1", "greet", &[])).await;
    engine.handler_requests.recv().await.unwrap();
    engine
        .handle
        .handler_gone(APP, "the app that handles it left the bus")
        .await;
    let failed = engine.until_final("1").await.pop().unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.detail, "the app that handles it left the bus");
    engine.send(request("2", "greet", &[])).await;
    assert_eq!(
        engine.until_final("2").await.pop().unwrap().status,
        Status::Rejected
    );
    engine
        .handle
        .register_handler("greet", OTHER_APP)
        .await
        .unwrap();
    engine.stop().await;
}

#[tokio::test]
async fn a_handler_command_past_its_timeout_is_reported_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Harness::start(dir.path(), options(2, vec![])).await;
    engine.handle.register_handler("slow", APP).await.unwrap();
    let mut slow = request("1", "slow", &[]);
    slow.timeout_seconds = 1;
    engine.send(slow).await;
    let done = engine.until_final("1").await.pop().unwrap();
    assert_eq!(
        (done.status, done.exit_code),
        (Status::Timeout, NO_EXIT_CODE)
    );
    engine.stop().await;
}

#[tokio::test]
async fn registrations_are_refused_for_configured_taken_or_malformed_names() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Harness::start(dir.path(), options(2, vec![("reboot", shell("true"))])).await;
    let register = |name: &'static str, owner: &'static str| {
        let handle = engine.handle.clone();
        async move { handle.register_handler(name, owner).await }
    };
    assert_eq!(
        register("reboot", APP).await,
        Err(HandlerError::Configured("reboot".into()))
    );
    assert_eq!(
        register("a b", APP).await,
        Err(HandlerError::InvalidName("a b".into()))
    );
    register("greet", APP).await.unwrap();
    register("greet", APP).await.unwrap();
    assert_eq!(
        register("greet", OTHER_APP).await,
        Err(HandlerError::Taken("greet".into()))
    );
    engine.stop().await;
}

#[tokio::test]
async fn registrations_are_bounded_per_app_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Harness::start(dir.path(), options(2, vec![])).await;
    for index in 0..MAX_HANDLERS_PER_APP {
        engine
            .handle
            .register_handler(&format!("mine-{index}"), APP)
            .await
            .unwrap();
    }
    assert_eq!(
        engine.handle.register_handler("one-more", APP).await,
        Err(HandlerError::TooManyForApp {
            max: MAX_HANDLERS_PER_APP
        })
    );
    engine
        .handle
        .register_handler("mine-0", APP)
        .await
        .expect("registering a name the app already handles again is not a new one");
    let apps = (MAX_HANDLERS - MAX_HANDLERS_PER_APP).div_ceil(MAX_HANDLERS_PER_APP);
    let mut registered = MAX_HANDLERS_PER_APP;
    for app in 0..apps {
        let owner = format!(":2.{app}");
        for index in 0..MAX_HANDLERS_PER_APP.min(MAX_HANDLERS - registered) {
            let name = format!("app{app}-{index}");
            engine.handle.register_handler(&name, &owner).await.unwrap();
            registered += 1;
        }
    }
    assert_eq!(
        engine.handle.register_handler("beyond", ":3.1").await,
        Err(HandlerError::TooMany { max: MAX_HANDLERS })
    );
    engine.handle.handler_gone(APP, "gone").await;
    engine
        .handle
        .register_handler("beyond", ":3.1")
        .await
        .expect("names of an app that left are free again");
    engine.stop().await;
}

#[tokio::test]
async fn during_the_start_up_grace_a_command_waits_for_its_handler() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine =
        Harness::start_with_grace(dir.path(), options(2, vec![]), HANG_GUARD * 10).await;
    engine.send(request("1", "late", &[])).await;
    assert_eq!(engine.next().await.status, Status::Received);
    engine.handle.register_handler("late", APP).await.unwrap();
    assert_eq!(engine.next().await.status, Status::Running);
    let dispatched = engine.handler_requests.recv().await.unwrap();
    assert_eq!(
        (dispatched.id.as_str(), dispatched.owner.as_str()),
        ("1", APP)
    );
    engine.stop().await;
}

#[test]
fn a_completion_is_completed_for_exit_code_0_else_failed_and_its_output_is_cut() {
    let done = completion("1", 0, "ok").into_result(7);
    assert_eq!(
        (
            done.status,
            done.exit_code,
            done.stdout.as_str(),
            done.detail.as_str()
        ),
        (Status::Completed, 0, "ok", "")
    );
    assert_eq!(done.timestamp_ms, 7);

    let mut long = completion("2", 3, &"x".repeat(DEFAULT_MAX_OUTPUT_BYTES + 1));
    long.stderr = "oops".into();
    let failed = long.into_result(8);
    assert_eq!(
        (failed.status, failed.exit_code, failed.detail.as_str()),
        (Status::Failed, 3, "the handler reported exit code 3")
    );
    assert_eq!(failed.stdout.len(), DEFAULT_MAX_OUTPUT_BYTES);
    assert_eq!(failed.stderr, "oops");
    assert!(failed.truncated);
}
