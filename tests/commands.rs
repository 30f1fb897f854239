//! Remote commands from outside: the observer publishes requests as Astarte would and reads
//! the results the real agent sends, across restarts, crashes and broker outages.

mod common;

use std::path::Path;

use astarte_sandbox::{Observer, ObserverError};
use bson::{Document, doc};
use common::*;
use futures_util::StreamExt;
use nix::sys::signal::Signal;

const REQUESTS: &str = "org.astarte-platform.agent.Commands";
const RESULTS: &str = "org.astarte-platform.agent.CommandResults";

/// `[commands]` for these tests; `dir` is where commands leave their traces.
fn commands_config(dir: &Path, extra: &str) -> String {
    let dir = dir.display();
    format!(
        r#"[commands]
enabled = true
max_parallel = 1
handler_wait_seconds = 0
{extra}
[commands.hello]
exec = ["/bin/echo", "hello"]
args_pattern = "[a-z]+"

[commands.count]
exec = ["/bin/sh", "-c", "echo run >> {dir}/count; sleep \"$1\"", "count"]
args_pattern = "[0-9]+"
timeout_seconds = 60

[commands.hang]
exec = ["/bin/sh", "-c", "sleep 300 & echo $! > {dir}/hang.pid; wait"]
timeout_seconds = 1

[commands.loud]
exec = ["/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a"]
max_output_bytes = 32000
"#
    )
}

async fn commands_env(extra: &str) -> TestEnv {
    let env = TestEnv::persistent().await;
    env.write_config(&commands_config(env.dir.path(), extra));
    env
}

async fn request(observer: &Observer, env: &TestEnv, id: &str, command: &str, args: &[&str]) {
    let args: Vec<&str> = args.to_vec();
    let payload = doc! {"v": {"id": id, "command": command, "args": args, "timeoutSeconds": 0}};
    observer
        .publish(
            &env.topic(REQUESTS, "/request"),
            payload.to_vec().unwrap(),
            1,
        )
        .await
        .unwrap();
}

/// Results for `id`, in arrival order, until one with a final status.
async fn results_until_final(observer: &mut Observer, env: &TestEnv, id: &str) -> Vec<Document> {
    match try_results_until_final(observer, env, id).await {
        Ok(results) => results,
        Err(error) => panic!("no final result for {id}: {error}"),
    }
}

/// Like [`results_until_final`], the observer's error (nothing within [`TIMEOUT`] of the
/// previous result) returned, so a test can add what explains it.
async fn try_results_until_final(
    observer: &mut Observer,
    env: &TestEnv,
    id: &str,
) -> Result<Vec<Document>, ObserverError> {
    let topic = env.topic(RESULTS, "/result");
    let mut results = Vec::new();
    loop {
        let message = observer.wait_for_topic(&topic, TIMEOUT).await?;
        let document = astarte_sandbox::decode_bson(&message.payload).unwrap();
        let result = document.get_document("v").unwrap().clone();
        assert!(message.payload.len() < 65_535);
        if result.get_str("id").unwrap() != id {
            continue;
        }
        let status = result.get_str("status").unwrap().to_owned();
        results.push(result);
        if !["received", "running"].contains(&status.as_str()) {
            return Ok(results);
        }
    }
}

fn statuses(results: &[Document]) -> Vec<&str> {
    results
        .iter()
        .map(|r| r.get_str("status").unwrap())
        .collect()
}

fn runs(env: &TestEnv) -> usize {
    std::fs::read_to_string(env.path("count"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_configured_command_runs_and_reports_received_running_completed() {
    let env = commands_env("").await;
    let mut observer = env.observer().await;
    let (agent, proxy) = env.start_connected_agent().await;
    assert!(
        proxy
            .interfaces()
            .await
            .unwrap()
            .iter()
            .any(|i| i.starts_with(REQUESTS)),
        "the command interfaces are in the introspection"
    );
    request(&observer, &env, "c1", "hello", &["world"]).await;
    let results = results_until_final(&mut observer, &env, "c1").await;
    assert_eq!(
        statuses(&results),
        ["received", "running", "completed"],
        "{}",
        agent.log()
    );
    let done = results.last().unwrap();
    assert_eq!(done.get_i32("exitCode").unwrap(), 0);
    assert_eq!(done.get_str("stdout").unwrap(), "hello world\n");
    assert!(!done.get_bool("truncated").unwrap());
}

#[tokio::test]
async fn arguments_unknown_names_and_a_timeout_end_as_they_should() {
    let env = commands_env("").await;
    let mut observer = env.observer().await;
    let (_agent, _proxy) = env.start_connected_agent().await;

    request(&observer, &env, "bad-args", "count", &["1; rm -rf /"]).await;
    let results = results_until_final(&mut observer, &env, "bad-args").await;
    assert_eq!(statuses(&results), ["received", "rejected"]);
    assert_eq!(runs(&env), 0, "never ran");

    request(&observer, &env, "unknown", "format-disk", &[]).await;
    let results = results_until_final(&mut observer, &env, "unknown").await;
    assert_eq!(statuses(&results).last(), Some(&"rejected"));
    assert!(
        !results
            .last()
            .unwrap()
            .get_str("detail")
            .unwrap()
            .is_empty()
    );

    request(&observer, &env, "slow", "hang", &[]).await;
    let results = results_until_final(&mut observer, &env, "slow").await;
    assert_eq!(statuses(&results).last(), Some(&"timeout"));
    let pid: i32 = std::fs::read_to_string(env.path("hang.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The whole process group was killed, the background sleep included (a zombie waiting
    // for a reaper counts as dead: PID 1 of a container may not reap).
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    let wait = async {
        while !dead() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    assert!(
        tokio::time::timeout(TIMEOUT, wait).await.is_ok(),
        "the grandchild {pid} was killed with its group"
    );

    request(&observer, &env, "loud", "loud", &[]).await;
    let results = results_until_final(&mut observer, &env, "loud").await;
    let done = results.last().unwrap();
    assert_eq!(done.get_str("status").unwrap(), "completed");
    assert!(done.get_bool("truncated").unwrap());
    assert!(done.get_str("stdout").unwrap().len() <= 32_000);
}

#[tokio::test]
async fn the_same_id_runs_once_and_its_result_is_sent_again() {
    let env = commands_env("").await;
    let mut observer = env.observer().await;
    let (_agent, _proxy) = env.start_connected_agent().await;
    let app = env.bus.connection().await;
    let commands = common::proxy::CommandsProxy::new(&app).await.unwrap();
    request(&observer, &env, "once", "count", &["0"]).await;
    let first = results_until_final(&mut observer, &env, "once").await;
    assert_eq!(statuses(&first).last(), Some(&"completed"));
    request(&observer, &env, "once", "count", &["0"]).await;
    let again = results_until_final(&mut observer, &env, "once").await;
    assert_eq!(
        statuses(&again),
        ["completed"],
        "the last result, sent again"
    );
    assert_eq!(runs(&env), 1);
    let listed = commands.list_commands().await.unwrap();
    assert_eq!(
        listed.iter().filter(|(id, ..)| id == "once").count(),
        1,
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_command_sent_while_the_agent_is_stopped_runs_after_it_starts() {
    let env = commands_env("").await;
    let mut observer = env.observer().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    assert!(agent.stop().await.success());
    request(&observer, &env, "while-down", "count", &["0"]).await;
    let (_agent, _proxy) = env.start_connected_agent().await;
    let results = results_until_final(&mut observer, &env, "while-down").await;
    assert_eq!(statuses(&results).last(), Some(&"completed"));
    assert_eq!(runs(&env), 1);
}

#[tokio::test]
async fn a_command_sent_while_the_agent_is_down_after_a_crash_runs_after_it_restarts() {
    let env = commands_env("").await;
    let mut observer = env.observer().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    env.wait_for_session_record().await;
    agent.stop_with(Signal::SIGKILL).await;
    // The broker keeps it in the device's session while the device is down.
    request(&observer, &env, "after-crash", "count", &["0"]).await;
    let (_agent, _proxy) = env.start_connected_agent().await;
    let results = results_until_final(&mut observer, &env, "after-crash").await;
    assert_eq!(statuses(&results).last(), Some(&"completed"));
    assert_eq!(runs(&env), 1);
}

#[tokio::test]
async fn sigkill_while_running_reports_interrupted_and_queued_commands_run_after_restart() {
    let env = commands_env("").await;
    let mut observer = env.observer().await;
    let (mut agent, _proxy) = env.start_connected_agent().await;
    request(&observer, &env, "long", "count", &["30"]).await;
    let topic = env.topic(RESULTS, "/result");
    // Wait until it runs, then queue a second one behind it (max_parallel = 1).
    loop {
        let message = observed(&mut observer, &topic).await;
        let document = astarte_sandbox::decode_bson(&message.payload).unwrap();
        if document
            .get_document("v")
            .unwrap()
            .get_str("status")
            .unwrap()
            == "running"
        {
            break;
        }
    }
    request(&observer, &env, "next", "count", &["0"]).await;
    agent
        .wait_for_log("command_id=next command_name=count status=received")
        .await;
    agent.stop_with(Signal::SIGKILL).await;
    assert_eq!(runs(&env), 1);

    let (_agent, _proxy) = env.start_connected_agent().await;
    let long = results_until_final(&mut observer, &env, "long").await;
    assert_eq!(statuses(&long).last(), Some(&"interrupted"));
    let next = results_until_final(&mut observer, &env, "next").await;
    assert_eq!(statuses(&next).last(), Some(&"completed"));
    assert_eq!(
        runs(&env),
        2,
        "the interrupted one did not run again, the queued one ran"
    );
}

#[tokio::test]
async fn results_produced_while_the_broker_is_down_arrive_after_it_returns() {
    let mut env = commands_env("").await;
    let mut observer = env.observer().await;
    let (agent, proxy) = env.start_connected_agent().await;
    request(&observer, &env, "during-outage", "count", &["2"]).await;
    agent.wait_for_log("status=running").await;
    env.sandbox.stop_broker().await;
    wait_for_state(&proxy, "disconnected", &agent).await;
    agent.wait_for_log("status=completed").await;
    env.sandbox.start_broker().await.unwrap();
    let results = tokio::time::timeout(
        TIMEOUT * 2,
        try_results_until_final(&mut observer, &env, "during-outage"),
    )
    .await;
    let results = match results {
        Ok(Ok(results)) => results,
        Ok(Err(error)) => panic!(
            "no final result: {error}\nagent:\n{}\nbroker:\n{}",
            agent.log(),
            env.sandbox.broker_log()
        ),
        Err(_) => panic!(
            "no final result within {:?}:\nagent:\n{}\nbroker:\n{}",
            TIMEOUT * 2,
            agent.log(),
            env.sandbox.broker_log()
        ),
    };
    assert_eq!(statuses(&results).last(), Some(&"completed"));
}

#[tokio::test]
async fn a_dbus_handler_gets_only_its_commands_and_a_vanished_handler_fails_them() {
    let env = commands_env("").await;
    let mut observer = env.observer().await;
    let (_agent, proxy) = env.start_connected_agent().await;
    let app = env.bus.connection().await;
    let handler = common::proxy::CommandsProxy::new(&app).await.unwrap();
    let other_app = env.bus.connection().await;
    let other = common::proxy::CommandsProxy::new(&other_app).await.unwrap();
    let mut mine = handler.receive_command_requested().await.unwrap();
    let mut theirs = other.receive_command_requested().await.unwrap();
    handler.register_handler("update").await.unwrap();
    assert_eq!(
        error_name(other.register_handler("update").await),
        "org.astarte_platform.Agent1.Error.CommandTaken"
    );
    assert_eq!(
        error_name(other.register_handler("hello").await),
        "org.astarte_platform.Agent1.Error.CommandTaken",
        "configured commands can't be taken over"
    );

    request(&observer, &env, "u1", "update", &["v2"]).await;
    let signal = tokio::time::timeout(TIMEOUT, mine.next())
        .await
        .unwrap()
        .unwrap();
    let args = signal.args().unwrap();
    assert_eq!((args.id.as_str(), args.name.as_str()), ("u1", "update"));
    assert_eq!(args.args, ["v2"]);
    handler.complete("u1", 0, "updated", "").await.unwrap();
    let results = results_until_final(&mut observer, &env, "u1").await;
    let done = results.last().unwrap();
    assert_eq!(done.get_str("status").unwrap(), "completed");
    assert_eq!(done.get_str("stdout").unwrap(), "updated");
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), theirs.next())
            .await
            .is_err(),
        "the other app never saw it"
    );

    request(&observer, &env, "u2", "update", &[]).await;
    tokio::time::timeout(TIMEOUT, mine.next())
        .await
        .unwrap()
        .unwrap();
    drop(handler);
    drop(mine);
    drop(app);
    let results = results_until_final(&mut observer, &env, "u2").await;
    let done = results.last().unwrap();
    assert_eq!(done.get_str("status").unwrap(), "failed");
    assert!(done.get_str("detail").unwrap().contains("left the bus"));
    let _ = proxy;
}

#[tokio::test]
async fn a_command_sent_while_the_device_is_offline_runs_when_it_reconnects() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: cutting a TCP connection (ss -K) needs root");
        return;
    }
    let env = commands_env("").await;
    let mut observer = env.observer().await;
    let (agent, proxy) = env.start_connected_agent().await;
    let mut states = StateWatcher::new(&proxy).await;
    cut_connection(&agent, env.sandbox.broker_port());
    states.next("disconnected", &agent).await;
    // The broker keeps it in the device's session until the device is back.
    request(&observer, &env, "offline", "count", &["0"]).await;
    let results = results_until_final(&mut observer, &env, "offline").await;
    assert_eq!(statuses(&results).last(), Some(&"completed"));
    assert_eq!(runs(&env), 1);
}
