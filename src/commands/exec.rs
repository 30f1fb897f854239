//! Running one configured command: its `exec` line plus the request's arguments, as a plain
//! argument vector. No shell, no interpolation: remote input only ever becomes whole
//! arguments. The child gets an empty environment with a fixed `PATH`, `/dev/null` as
//! stdin, `/` as working directory, and a process group of its own, so that a timeout can
//! kill everything it started.
//!
//! When the command's main process exits, whatever it left behind in its group is killed
//! too: nothing a remote command starts outlives it (a deliberate daemon belongs in a
//! systemd unit, e.g. `systemd-run`).

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// The only environment a command gets.
pub const FIXED_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// After the main process is gone and its group killed, how long its output pipes may take
/// to close (a process that left the group with `setsid` may still hold them).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// One run: the full argument vector, its time limit and its output cap.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Program (absolute path) first, then every argument.
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Cap of stdout and of stderr each, in bytes of UTF-8.
    pub max_output_bytes: usize,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The main process exited with this code.
    Code(i32),
    /// The main process was killed by this signal (not by the agent).
    Signal(i32),
    /// Its time ran out; the whole group was killed.
    TimedOut,
    /// The agent is stopping; the whole group was killed.
    Cancelled,
    /// It could not be started.
    SpawnFailed(String),
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    /// Some output was cut at the cap.
    pub truncated: bool,
}

/// Runs `execution` to its end, its timeout, or `cancel`.
pub async fn run(execution: &Execution, cancel: &CancellationToken) -> Outcome {
    let failed = |reason: String| Outcome {
        exit: Exit::SpawnFailed(reason),
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
    };
    let Some((program, args)) = execution.argv.split_first() else {
        return failed("empty command line".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", FIXED_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return failed(format!("couldn't start {program}: {error}")),
    };
    let cap = execution.max_output_bytes;
    let (mut out, mut err) = (Captured::default(), Captured::default());
    let watched = watch(child, program, execution, cancel, &mut out, &mut err).await;
    // Output still open after the drain is cut short.
    out.cut |= !watched.stdout_done;
    err.cut |= !watched.stderr_done;
    let (stdout, stdout_cut) = text_of(&out.bytes, out.cut, cap);
    let (stderr, stderr_cut) = text_of(&err.bytes, err.cut, cap);
    Outcome {
        exit: watched.exit,
        stdout,
        stderr,
        truncated: stdout_cut || stderr_cut,
    }
}

/// How a watched process ended, and whether its outputs were read to their end.
struct Watched {
    exit: Exit,
    stdout_done: bool,
    stderr_done: bool,
}

/// Reads the child's outputs all along (a child writing more than a pipe holds must not
/// block) until it exits, times out or is cancelled, then a little longer for what is left.
async fn watch(
    mut child: tokio::process::Child,
    program: &str,
    execution: &Execution,
    cancel: &CancellationToken,
    out: &mut Captured,
    err: &mut Captured,
) -> Watched {
    // The group id is the child's pid (`process_group(0)`).
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    let cap = execution.max_output_bytes;
    let stdout = capture(child.stdout.take(), cap, out);
    let stderr = capture(child.stderr.take(), cap, err);
    let timeout = tokio::time::sleep(execution.timeout);
    let drain = tokio::time::sleep(DRAIN_AFTER_EXIT);
    tokio::pin!(stdout, stderr, timeout, drain);
    let (mut stdout_done, mut stderr_done) = (false, false);
    let mut exit = None;
    while exit.is_none() || !stdout_done || !stderr_done {
        // The end, and whether the child was reaped already.
        let ended = tokio::select! {
            status = child.wait(), if exit.is_none() => Some((exit_of(status, program), true)),
            () = &mut timeout, if exit.is_none() => Some((Exit::TimedOut, false)),
            () = cancel.cancelled(), if exit.is_none() => Some((Exit::Cancelled, false)),
            () = &mut stdout, if !stdout_done => { stdout_done = true; None }
            () = &mut stderr, if !stderr_done => { stderr_done = true; None }
            () = &mut drain, if exit.is_some() => {
                tracing::debug!(%program, "a process outside the command's group kept its output open");
                break;
            }
        };
        if let Some((ended, reaped)) = ended {
            // Whatever the command left running goes with it.
            kill_group(group);
            if !reaped {
                let _ = child.wait().await;
            }
            exit = Some(ended);
            drain
                .as_mut()
                .reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
        }
    }
    Watched {
        exit: exit.unwrap_or(Exit::Cancelled),
        stdout_done,
        stderr_done,
    }
}

fn exit_of(status: std::io::Result<std::process::ExitStatus>, program: &str) -> Exit {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::SpawnFailed("the process ended without a status".into()),
        },
        Err(error) => Exit::SpawnFailed(format!("couldn't wait for {program}: {error}")),
    }
}

/// SIGKILL to the whole group; a group that is already gone is fine.
fn kill_group(group: Option<Pid>) {
    if let Some(group) = group
        && let Err(error) = killpg(group, Signal::SIGKILL)
        && error != nix::errno::Errno::ESRCH
    {
        tracing::warn!(%error, group = group.as_raw(), "couldn't kill a command's process group");
    }
}

/// Bytes read from a pipe, at most the cap, and whether more came.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    cut: bool,
}

/// Reads a pipe to its end, keeping at most `cap` bytes; the rest is read and dropped, so
/// the child never blocks on a full pipe.
async fn capture(pipe: Option<impl AsyncRead + Unpin>, cap: usize, into: &mut Captured) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut chunk = vec![0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let room = cap.saturating_sub(into.bytes.len());
                into.bytes.extend_from_slice(&chunk[..read.min(room)]);
                into.cut |= read > room;
            }
        }
    }
}

/// Turns captured bytes into at most `cap` bytes of text: an incomplete character left at
/// a cut is dropped, invalid bytes become U+FFFD (three bytes each, so the text is cut
/// again at a character boundary when that makes it longer than `cap`).
pub(crate) fn text_of(bytes: &[u8], cut: bool, cap: usize) -> (String, bool) {
    let bytes = if cut {
        &bytes[..bytes.len() - incomplete_tail(bytes)]
    } else {
        bytes
    };
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    let shortened = super::result::cut(&mut text, cap);
    (text, cut || shortened)
}

/// Length of an incomplete UTF-8 sequence at the end of `bytes` (0 when there is none).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 != 0x80 {
            let width = match byte {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if width > back { back } else { 0 };
        }
    }
    0
}
