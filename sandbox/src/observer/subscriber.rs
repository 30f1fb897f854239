//! The observer's receiving side: `mosquitto_sub` as a child process, with a persistent session
//! subscribed to `<realm>/#` at QoS 2.
//!
//! libmosquitto keeps its inbound QoS 2 state across reconnections within the process and
//! answers every PUBREL with PUBCOMP, even for a packet id it does not know, so a broker that
//! resends a PUBREL after a restart never traps it (see [`super`] for why rumqttc can't be
//! used here).
//!
//! Its standard output, line-buffered through `stdbuf -oL`, carries two kinds of lines:
//! messages, in the format [`FORMAT`] (`MSG <qos> <retain> <payload in hex> <topic>`, the topic
//! last because it may contain spaces), and libmosquitto's debug log (`-d`), whose
//! `Client <id> sending CONNECT`, `received CONNACK (0)` and `received SUBACK` lines tell when
//! the subscription is (again) in place. Every other line is kept for error reports.
//!
//! mosquitto_sub leaves its reconnection loop, and exits, on a TLS error while reading, which
//! is how OpenSSL reports a broker that went away without closing the TLS session (always on
//! SIGKILL, now and then on SIGTERM). The observer then starts a new one with the same client
//! id, which resumes the session the broker kept; only a QoS 2 message caught between PUBREC
//! and PUBREL at that moment is lost with the old process.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Observed, ObserverError};

pub(super) const PROGRAM: &str = "mosquitto_sub";
pub(super) const PACKAGE: &str = "mosquitto-clients";
/// `stdbuf -oL` makes mosquitto_sub's stdout line-buffered: on a pipe, its debug lines would
/// otherwise wait in the buffer until the next message flushes it.
const STDBUF: &str = "stdbuf";
const STDBUF_PACKAGE: &str = "coreutils";
/// The first token marks message lines; the topic goes last since it may contain spaces; the
/// payload is hex, empty for an empty payload (`MSG 1 0  topic`).
pub(super) const FORMAT: &str = "MSG %q %r %x %t";
const MESSAGE_PREFIX: &[u8] = b"MSG ";
/// Between a mosquitto_sub that exited and the next one (the broker is probably down).
const RESPAWN_DELAY: Duration = Duration::from_secs(1);
const STDERR_FILE: &str = "mosquitto_sub.stderr";
/// Unrecognised output lines kept for error reports.
const KEPT_LINES: usize = 10;
const KEPT_STDERR_BYTES: u64 = 4096;

/// What the subscriber's process has been through, for `wait_subscribed` and error reports.
#[derive(Clone, Debug, Default)]
pub(super) struct Link {
    /// The running mosquitto_sub has its SUBACK (cleared when it reconnects or exits).
    pub subscribed: bool,
    /// CONNACKs seen, over every process.
    pub connections: u32,
    /// mosquitto_sub processes that exited on their own and were replaced.
    pub exits: u32,
    /// Message lines that did not parse, skipped.
    pub unparsed: u32,
    /// Why the last mosquitto_sub exited, or the last line that did not parse.
    pub last_error: Option<String>,
    /// The subscriber gave up: no message will arrive any more.
    pub failed: Option<String>,
}

impl Link {
    /// One line for an error message.
    pub fn summary(&self) -> String {
        let mut summary = if let Some(failed) = &self.failed {
            format!("the subscriber stopped: {failed}")
        } else if self.subscribed {
            "the subscriber is subscribed".to_owned()
        } else {
            "the subscriber is not subscribed right now".to_owned()
        };
        summary.push_str(&format!(
            " ({} connection(s), {} {PROGRAM} exit(s), {} unparsed line(s))",
            self.connections, self.exits, self.unparsed
        ));
        if let (None, Some(last)) = (&self.failed, &self.last_error) {
            summary.push_str(&format!("; last error: {last}"));
        }
        summary
    }
}

/// How to run mosquitto_sub.
pub(super) struct Invocation {
    pub program: PathBuf,
    pub stdbuf: PathBuf,
    pub args: Vec<OsString>,
    pub client_id: String,
    /// Where its stderr goes (rewritten for each process).
    pub stderr: PathBuf,
}

impl Invocation {
    /// Finds mosquitto_sub and stdbuf in `PATH`.
    pub fn new(dir: &Path, client_id: String, args: Vec<OsString>) -> Result<Self, ObserverError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let find = |program, package| {
            find_program(program, &path).ok_or(ObserverError::Missing { program, package })
        };
        Ok(Self {
            program: find(PROGRAM, PACKAGE)?,
            stdbuf: find(STDBUF, STDBUF_PACKAGE)?,
            args,
            client_id,
            stderr: dir.join(STDERR_FILE),
        })
    }

    fn spawn(&self) -> std::io::Result<(Child, ChildStdout)> {
        let stderr = File::create(&self.stderr)?;
        let mut child = Command::new(&self.stdbuf)
            .arg("-oL")
            .arg(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            std::io::Error::other("no stdout pipe")
        })?;
        Ok((child, stdout))
    }

    fn stderr_tail(&self) -> String {
        let Ok(mut file) = File::open(&self.stderr) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut bytes = Vec::new();
        let _ = file
            .by_ref()
            .take(KEPT_STDERR_BYTES)
            .read_to_end(&mut bytes);
        let mut text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
        if len > KEPT_STDERR_BYTES {
            text.push_str(" [...]");
        }
        text
    }
}

struct Slot {
    /// The running process; taken by whoever reaps it.
    child: Option<Child>,
    /// The observer is being dropped: start nothing more.
    stopping: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    /// Wakes a respawn delay when `stopping` is set.
    stop: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running mosquitto_sub and the thread that reads it. Dropping it kills and reaps the
/// process and joins the thread.
pub(super) struct Subscriber {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Starts mosquitto_sub; messages go to `messages`, its state to `link`.
    pub fn start(
        invocation: Invocation,
        messages: mpsc::UnboundedSender<Observed>,
        link: watch::Sender<Link>,
    ) -> Result<Self, ObserverError> {
        let (child, stdout) = invocation.spawn().map_err(ObserverError::Spawn)?;
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                child: Some(child),
                stopping: false,
            }),
            stop: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let reader = std::thread::Builder::new()
            .name("observer-sub".to_owned())
            .spawn(move || supervise(invocation, stdout, &thread_shared, &messages, &link));
        let reader = match reader {
            Ok(reader) => reader,
            Err(err) => {
                if let Some(mut child) = shared.lock().child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(ObserverError::Spawn(err));
            }
        };
        Ok(Self {
            shared,
            reader: Some(reader),
        })
    }

    /// The running mosquitto_sub's process id (none between a process that exited and the
    /// next).
    pub fn pid(&self) -> Option<u32> {
        self.shared.lock().child.as_ref().map(Child::id)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let child = {
            let mut slot = self.shared.lock();
            slot.stopping = true;
            slot.child.take()
        };
        self.shared.stop.notify_all();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The process is gone, so its stdout is at EOF and the thread ends.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The reader thread: reads one process after another until the observer is dropped, or
/// gives up if the very first one exits before it was subscribed (a bad configuration or an
/// unreachable broker, which `Observer::connect` reports).
fn supervise(
    invocation: Invocation,
    mut stdout: ChildStdout,
    shared: &Shared,
    messages: &mpsc::UnboundedSender<Observed>,
    link: &watch::Sender<Link>,
) {
    let mut ever_subscribed = false;
    loop {
        let kept = read_output(stdout, &invocation.client_id, messages, link);
        ever_subscribed |= kept.subscribed;
        let Some(mut child) = shared.lock().child.take() else {
            return; // dropped: the observer killed and reaped it
        };
        let status = match child.wait() {
            Ok(status) => status.to_string(),
            Err(err) => format!("status unknown: {err}"),
        };
        let mut reason = format!("{PROGRAM} exited ({status})");
        let stderr = invocation.stderr_tail();
        if !stderr.is_empty() {
            reason.push_str(&format!("; its stderr: {stderr}"));
        }
        if !kept.lines.is_empty() {
            let lines: Vec<&str> = kept.lines.iter().map(String::as_str).collect();
            reason.push_str(&format!("; its last output: {}", lines.join(" | ")));
        }
        if !ever_subscribed {
            link.send_modify(|l| {
                l.subscribed = false;
                l.failed = Some(reason);
            });
            return;
        }
        tracing::warn!(%reason, "the observer's subscriber exited; starting another");
        link.send_modify(|l| {
            l.subscribed = false;
            l.exits += 1;
            l.last_error = Some(reason);
        });
        let slot = shared.lock();
        let (mut slot, _) = shared
            .stop
            .wait_timeout_while(slot, RESPAWN_DELAY, |s| !s.stopping)
            .unwrap_or_else(PoisonError::into_inner);
        if slot.stopping {
            return;
        }
        match invocation.spawn() {
            Ok((child, out)) => {
                slot.child = Some(child);
                stdout = out;
            }
            Err(err) => {
                let failed = format!("couldn't start {PROGRAM} again: {err}");
                link.send_modify(|l| l.failed = Some(failed));
                return;
            }
        }
    }
}

/// What one process printed besides messages.
#[derive(Default)]
struct Kept {
    subscribed: bool,
    lines: VecDeque<String>,
}

/// Reads one process's stdout until EOF.
fn read_output(
    stdout: ChildStdout,
    client_id: &str,
    messages: &mpsc::UnboundedSender<Observed>,
    link: &watch::Sender<Link>,
) -> Kept {
    let mut kept = Kept::default();
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return kept,
            Ok(_) => {}
            Err(err) => {
                kept.lines
                    .push_back(format!("(reading its output failed: {err})"));
                return kept;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        match parse_line(&line, client_id) {
            Line::Message(message) => {
                let _ = messages.send(message);
            }
            Line::Unparsed => {
                let shown = shorten(&String::from_utf8_lossy(&line));
                tracing::warn!(line = %shown, "skipped an observer line that does not parse");
                link.send_modify(|l| {
                    l.unparsed += 1;
                    l.last_error = Some(format!("unparsed line: {shown}"));
                });
            }
            Line::Connecting => link.send_modify(|l| l.subscribed = false),
            Line::Connected => link.send_modify(|l| l.connections += 1),
            Line::Subscribed => {
                kept.subscribed = true;
                link.send_modify(|l| l.subscribed = true);
            }
            Line::Debug => {}
            Line::Other(text) => {
                if kept.lines.len() == KEPT_LINES {
                    kept.lines.pop_front();
                }
                kept.lines.push_back(shorten(&text));
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Line {
    Message(Observed),
    /// A message line that does not parse.
    Unparsed,
    /// `sending CONNECT`: a new connection, not subscribed until its SUBACK.
    Connecting,
    /// `received CONNACK (0)`
    Connected,
    /// `received SUBACK`
    Subscribed,
    /// Another debug line of this client (packets sent and received).
    Debug,
    /// Anything else: errors libmosquitto logs (e.g. `OpenSSL Error[0]: ...`).
    Other(String),
}

fn parse_line(line: &[u8], client_id: &str) -> Line {
    if let Some(rest) = line.strip_prefix(MESSAGE_PREFIX) {
        return parse_message(rest).map_or(Line::Unparsed, Line::Message);
    }
    let text = String::from_utf8_lossy(line);
    let Some(event) = text
        .strip_prefix("Client ")
        .and_then(|rest| rest.strip_prefix(client_id))
        .and_then(|rest| rest.strip_prefix(' '))
    else {
        return if text.starts_with("Subscribed (mid: ") {
            Line::Debug
        } else {
            Line::Other(text.into_owned())
        };
    };
    if event == "sending CONNECT" {
        Line::Connecting
    } else if event == "received CONNACK (0)" {
        Line::Connected
    } else if event == "received SUBACK" {
        Line::Subscribed
    } else if event.starts_with("received ") || event.starts_with("sending ") {
        Line::Debug
    } else {
        Line::Other(text.into_owned())
    }
}

/// `<qos> <retain> <hex payload> <topic>`
fn parse_message(rest: &[u8]) -> Option<Observed> {
    let mut fields = rest.splitn(4, |&b| b == b' ');
    let qos = match fields.next()? {
        b"0" => 0,
        b"1" => 1,
        b"2" => 2,
        _ => return None,
    };
    let retain = match fields.next()? {
        b"0" => false,
        b"1" => true,
        _ => return None,
    };
    let payload = decode_hex(fields.next()?)?;
    let topic = std::str::from_utf8(fields.next()?).ok()?;
    if topic.is_empty() {
        return None;
    }
    Some(Observed {
        topic: topic.to_owned(),
        qos,
        retain,
        payload,
    })
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    let pairs = hex.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    pairs
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// `name` in `path` (a `PATH` value), if it is an executable file there.
fn find_program(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, qos: u8, retain: bool, payload: &[u8]) -> Line {
        Line::Message(Observed {
            topic: topic.to_owned(),
            qos,
            retain,
            payload: payload.to_vec(),
        })
    }

    #[test]
    fn message_lines_parse_with_any_topic() {
        let id = "observer-1-0";
        assert_eq!(
            parse_line(b"MSG 2 0 68656c6c6f test/a b/c", id),
            message("test/a b/c", 2, false, b"hello")
        );
        assert_eq!(
            parse_line(b"MSG 1 1  test/empty", id),
            message("test/empty", 1, true, b"")
        );
        assert_eq!(
            parse_line(b"MSG 0 0 00ff  leading space", id),
            message(" leading space", 0, false, &[0, 0xff])
        );
        assert_eq!(
            parse_line("MSG 2 0 01 test/\u{e9}\u{1f600}/\u{fffd}".as_bytes(), id),
            message("test/\u{e9}\u{1f600}/\u{fffd}", 2, false, &[1])
        );
    }

    #[test]
    fn broken_message_lines_are_unparsed_not_panics() {
        let id = "observer-1-0";
        for line in [
            &b"MSG "[..],
            b"MSG 3 0 00 t",
            b"MSG 1 2 00 t",
            b"MSG 1 0 0 t",
            b"MSG 1 0 zz t",
            b"MSG 1 0 00",
            b"MSG 1 0 00 ",
            b"MSG 1 0 00 \xff\xfe",
            b"MSG 10 00 t",
        ] {
            assert_eq!(parse_line(line, id), Line::Unparsed, "{line:?}");
        }
    }

    #[test]
    fn debug_lines_give_the_connection_state() {
        let id = "observer-1-0";
        let line = |text: &str| parse_line(text.as_bytes(), id);
        assert_eq!(
            line("Client observer-1-0 sending CONNECT"),
            Line::Connecting
        );
        assert_eq!(
            line("Client observer-1-0 received CONNACK (0)"),
            Line::Connected
        );
        assert_eq!(
            line("Client observer-1-0 received SUBACK"),
            Line::Subscribed
        );
        assert_eq!(
            line("Client observer-1-0 received PUBREL (Mid: 1)"),
            Line::Debug
        );
        assert_eq!(line("Subscribed (mid: 1): 2"), Line::Debug);
        // Another client's lines, refusals and errors are kept for reports, not acted on.
        assert!(matches!(
            line("Client observer-1-01 received SUBACK"),
            Line::Other(_)
        ));
        assert!(matches!(
            line("Client observer-1-0 received CONNACK (5)"),
            Line::Debug
        ));
        assert!(matches!(
            line("OpenSSL Error[0]: error:0A000126:SSL routines::unexpected eof while reading"),
            Line::Other(_)
        ));
    }

    #[test]
    fn a_missing_program_is_named_with_its_package() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(find_program(PROGRAM, empty.path().as_os_str()), None);
        let err = ObserverError::Missing {
            program: PROGRAM,
            package: PACKAGE,
        };
        assert_eq!(
            err.to_string(),
            "the observer needs mosquitto_sub, which is not in PATH: install the \
             mosquitto-clients package"
        );
        assert!(find_program("sh", OsStr::new("/nonexistent:/bin:/usr/bin")).is_some());
    }

    #[test]
    fn hex_decodes_both_cases() {
        assert_eq!(decode_hex(b""), Some(vec![]));
        assert_eq!(decode_hex(b"00ffAb"), Some(vec![0, 0xff, 0xab]));
        assert_eq!(decode_hex(b"0g"), None);
    }
}
