use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::HANG_GUARD;
use crate::commands::exec::{Execution, Exit, FIXED_PATH, run, text_of};

fn execution(argv: &[&str]) -> Execution {
    Execution {
        argv: argv.iter().map(|arg| arg.to_string()).collect(),
        timeout: HANG_GUARD,
        max_output_bytes: 1000,
    }
}

async fn run_it(execution: &Execution) -> crate::commands::exec::Outcome {
    tokio::time::timeout(HANG_GUARD * 2, run(execution, &CancellationToken::new()))
        .await
        .expect("the run ends")
}

/// Whether a process is gone (or a zombie nobody reaped yet: it runs no more).
fn is_dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_dead(pid_file: &Path) {
    let pid = std::fs::read_to_string(pid_file).unwrap().trim().to_owned();
    tokio::time::timeout(HANG_GUARD, async {
        while !is_dead(&pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("process {pid} is still alive"));
}

#[tokio::test]
async fn output_and_exit_code_are_captured() {
    let outcome = run_it(&execution(&[
        "/bin/sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]))
    .await;
    assert_eq!(outcome.exit, Exit::Code(3));
    assert_eq!(outcome.stdout, "out\n");
    assert_eq!(outcome.stderr, "err\n");
    assert!(!outcome.truncated);
}

#[tokio::test]
async fn arguments_are_passed_as_is_without_a_shell() {
    let outcome = run_it(&execution(&["/bin/echo", "$(id)", "; ls", "*"])).await;
    assert_eq!(outcome.stdout, "$(id) ; ls *\n");
}

#[tokio::test]
async fn the_environment_is_only_a_fixed_path_and_stdin_is_empty_and_cwd_is_root() {
    let outcome = run_it(&execution(&["/usr/bin/env"])).await;
    assert_eq!(outcome.stdout, format!("PATH={FIXED_PATH}\n"));
    // `cat` would wait forever on an inherited terminal or pipe.
    let outcome = run_it(&execution(&["/bin/cat"])).await;
    assert_eq!(
        (outcome.exit, outcome.stdout),
        (Exit::Code(0), String::new())
    );
    let outcome = run_it(&execution(&["/bin/sh", "-c", "pwd"])).await;
    assert_eq!(outcome.stdout, "/\n");
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group_grandchildren_included() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild");
    let script = format!("sleep 100 & echo $! > {}; sleep 100", pid_file.display());
    let mut timed = execution(&["/bin/sh", "-c", &script]);
    timed.timeout = Duration::from_secs(1);
    let outcome = run_it(&timed).await;
    assert_eq!(outcome.exit, Exit::TimedOut);
    wait_dead(&pid_file).await;
}

#[tokio::test]
async fn what_a_command_leaves_running_is_killed_when_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("leftover");
    let script = format!("sleep 100 & echo $! > {}; echo done", pid_file.display());
    let outcome = run_it(&execution(&["/bin/sh", "-c", &script])).await;
    assert_eq!(
        (outcome.exit, outcome.stdout.as_str()),
        (Exit::Code(0), "done\n")
    );
    wait_dead(&pid_file).await;
}

#[tokio::test]
async fn cancelling_kills_the_group_and_reports_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child");
    let script = format!("sleep 100 & echo $! > {}; wait", pid_file.display());
    let cancel = CancellationToken::new();
    let execution = execution(&["/bin/sh", "-c", &script]);
    let running = tokio::spawn({
        let cancel = cancel.clone();
        async move { run(&execution, &cancel).await }
    });
    tokio::time::timeout(HANG_GUARD, async {
        while !pid_file.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    cancel.cancel();
    let outcome = tokio::time::timeout(HANG_GUARD, running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.exit, Exit::Cancelled);
    wait_dead(&pid_file).await;
}

#[tokio::test]
async fn output_over_the_cap_is_cut_while_the_rest_is_drained() {
    // 200 KB is more than a pipe holds: the child finishes only if the agent keeps reading.
    let outcome = run_it(&execution(&[
        "/bin/sh",
        "-c",
        "head -c 200000 /dev/zero | tr '\\0' a; echo tail >&2",
    ]))
    .await;
    assert_eq!(outcome.exit, Exit::Code(0));
    assert_eq!(outcome.stdout, "a".repeat(1000));
    assert_eq!(outcome.stderr, "tail\n");
    assert!(outcome.truncated);
}

#[tokio::test]
async fn a_signal_and_a_missing_program_are_reported() {
    let outcome = run_it(&execution(&["/bin/sh", "-c", "kill -TERM $$"])).await;
    assert_eq!(outcome.exit, Exit::Signal(15));
    let outcome = run_it(&execution(&["/nonexistent/program"])).await;
    assert!(
        matches!(outcome.exit, Exit::SpawnFailed(reason) if reason.contains("/nonexistent/program"))
    );
}

#[test]
fn text_is_cut_at_a_character_boundary_and_invalid_bytes_are_replaced() {
    // "é" is c3 a9: a cut after c3 drops the half character.
    assert_eq!(text_of(b"ab\xc3", true, 3), ("ab".into(), true));
    assert_eq!(text_of("abé".as_bytes(), false, 4), ("abé".into(), false));
    // An invalid byte becomes U+FFFD (3 bytes); the text is cut again to stay in the cap.
    assert_eq!(text_of(b"a\xff", false, 4), ("a\u{fffd}".into(), false));
    assert_eq!(text_of(b"ab\xff", false, 4), ("ab".into(), true));
    assert_eq!(text_of(b"\xe2\x82\xac", true, 3), ("€".into(), true));
}
