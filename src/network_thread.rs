//! The network thread: a second single-threaded runtime that runs the MQTT connection (the
//! task that polls rumqttc, TLS included).
//!
//! A TLS handshake signs with the device key inside rustls, synchronously. With the TPM
//! backend that signature waits for the TPM: tens to hundreds of milliseconds for a discrete
//! TPM, up to the TPM deadline (10 s) for a stuck one. On this thread such a wait holds only
//! the connection; D-Bus answers, command results, the queue and the systemd watchdog go on
//! on the main runtime. The two runtimes talk over channels only.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::tasks::{TaskError, Worker, spawn_thread};

/// Stack of the network runtime's blocking threads (name resolution).
const BLOCKING_STACK: usize = 256 * 1024;

pub struct NetworkThread {
    handle: Handle,
    stop: oneshot::Sender<()>,
    worker: Worker,
}

impl NetworkThread {
    /// Starts the thread and its runtime.
    pub fn start() -> std::io::Result<NetworkThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("network")
            // Its blocking pool only resolves the broker's name: one thread, gone when idle.
            .max_blocking_threads(1)
            .thread_keep_alive(Duration::from_secs(1))
            .thread_stack_size(BLOCKING_STACK)
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let worker = spawn_thread("network", move || {
            let _ = runtime.block_on(stopped);
            // Tasks still on it were given their deadline by their owners already.
            runtime.shutdown_timeout(Duration::from_millis(100));
        })?;
        Ok(NetworkThread {
            handle,
            stop,
            worker,
        })
    }

    /// Where to spawn the connection's tasks (`Spawner::on`).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the runtime and joins the thread, at most `deadline`. Blocking.
    pub fn stop_within(self, deadline: Duration) -> Result<(), TaskError> {
        let _ = self.stop.send(());
        self.worker.join_within(deadline)
    }
}
