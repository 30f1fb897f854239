//! Shutdown on SIGTERM (systemd) or SIGINT (Ctrl-C); reload on SIGHUP.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

/// Installs the handlers now (inside the runtime's context), so a signal that arrives while
/// the agent is still starting already means "stop cleanly"; the future resolves on the first
/// SIGTERM or SIGINT.
pub fn install() -> impl Future<Output = ()> {
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (mut term, mut int) = match handlers {
            (Ok(term), Ok(int)) => (term, int),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "couldn't install signal handlers; stop the agent with SIGKILL");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    }
}

/// The SIGHUP stream (reload), installed now so that a SIGHUP during start-up does not kill
/// the agent (its default action); `None` if it cannot be installed.
pub fn install_reload() -> Option<tokio::signal::unix::Signal> {
    match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            tracing::warn!(%error, "couldn't install the SIGHUP handler: reload by restarting the agent");
            None
        }
    }
}
