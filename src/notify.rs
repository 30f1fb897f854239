//! systemd's notification protocol (`READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1`) over
//! `$NOTIFY_SOCKET`, and the two tasks that keep systemd informed: the state as `STATUS=`,
//! and the watchdog.
//! A few lines of std instead of a dependency; a no-op when not started by systemd.

use std::convert::Infallible;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::StateRx;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends one notification; failures are logged, never fatal (systemd may be absent). Never
/// waits: the socket is non-blocking, so a notify socket nobody reads (its queue full) drops
/// the notification instead of stopping the runtime.
pub fn notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
        None => SocketAddr::from_pathname(std::path::Path::new(&path)),
    };
    let result = address.and_then(|address| {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        socket.send_to_addr(message.as_bytes(), &address)
    });
    match result {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
            tracing::debug!(
                message,
                "systemd's notify socket is full: notification dropped"
            );
        }
        Err(error) => tracing::warn!(%error, "couldn't notify systemd"),
    }
}

/// How often to send `WATCHDOG=1`: half the `WatchdogSec=` systemd passes in `$WATCHDOG_USEC`
/// (when `$WATCHDOG_PID`, if set, is this process); `None` when no watchdog is asked for.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str().and_then(|pid| pid.parse::<u32>().ok()) != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| std::time::Duration::from_micros(usec / 2))
}

/// Task: tells systemd the runtime is alive; a stuck runtime stops the pings and systemd
/// restarts the service (`WatchdogSec=` in the unit).
pub async fn feed_watchdog(
    interval: Duration,
    cancel: CancellationToken,
) -> Result<(), Infallible> {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => notify("WATCHDOG=1"),
        }
    }
}

/// Task: logs every state change and sends it to systemd as `STATUS=`.
pub async fn report_state(mut state: StateRx, cancel: CancellationToken) -> Result<(), Infallible> {
    loop {
        let current = *state.borrow_and_update();
        tracing::info!(state = %current, "agent state");
        notify(&format!("STATUS={current}"));
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = state.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}
