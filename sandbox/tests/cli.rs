//! `astarte-sandbox up` prints what it observes; `publish` plays Astarte's side; SIGTERM tears
//! everything down cleanly.

mod support;

use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{ID, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_astarte-sandbox");

async fn line_with(
    lines: &mut Lines<BufReader<impl tokio::io::AsyncRead + Unpin>>,
    needle: &str,
) -> String {
    let found = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("output ended before a line with {needle:?}");
    };
    tokio::time::timeout(WAIT, found).await.unwrap()
}

async fn publish(dir: &std::path::Path, topic: &str, payload: &[&str]) {
    let status = Command::new(BIN)
        .args(["publish", "--dir"])
        .arg(dir)
        .args(["--topic", topic])
        .args(payload)
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn up_prints_observed_messages_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Command::new(BIN)
        .args(["up", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(up.stderr.take().unwrap()).lines();
    let mut stdout: Lines<BufReader<ChildStdout>> =
        BufReader::new(up.stdout.take().unwrap()).lines();
    line_with(&mut stderr, "sandbox up").await;
    let env = std::fs::read_to_string(dir.path().join("sandbox.env")).unwrap();
    for key in [
        "SANDBOX_PAIRING_URL",
        "SANDBOX_CA_FILE",
        "SANDBOX_TOKEN_FILE",
        "SANDBOX_BROKER_URL",
        "SANDBOX_REALM",
        "SANDBOX_DIR",
    ] {
        assert!(
            env.contains(&format!("{key}='")),
            "{key} missing from {env}"
        );
    }

    let topic = format!("test/{ID}/org.example.Config/when");
    let date = r#"{"v": {"$date": {"$numberLong": "1700000000000"}}}"#;
    publish(dir.path(), &topic, &["--bson", date]).await;
    let line = line_with(&mut stdout, &topic).await;
    assert_eq!(
        line,
        format!(r#"{topic} qos=2 {{"v":{{"$date":"2023-11-14T22:13:20Z"}}}}"#)
    );

    publish(dir.path(), &topic, &["--empty", "--qos", "1"]).await;
    assert_eq!(
        line_with(&mut stdout, &topic).await,
        format!("{topic} qos=1 (empty: unset)")
    );

    let consumer = format!("test/{ID}/control/consumer/properties");
    publish(
        dir.path(),
        &consumer,
        &["--purge-list", "org.example.Config/a;org.example.Config/b"],
    )
    .await;
    let line = line_with(&mut stdout, &consumer).await;
    assert_eq!(
        line,
        format!("{consumer} qos=2 purge list [org.example.Config/a;org.example.Config/b]")
    );

    let pid = Pid::from_raw(i32::try_from(up.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(WAIT, up.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap();
    assert!(
        log.contains("terminating"),
        "mosquitto was not stopped: {log}"
    );
}
