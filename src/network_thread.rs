//! The network thread: a second single-threaded runtime that runs the MQTT connection (the
//! task that polls rumqttc, TLS included), when the device key is in a TPM.
//!
//! A TLS handshake signs with the device key inside rustls, synchronously. With the TPM
//! backend that signature waits for the TPM: tens to hundreds of milliseconds for a discrete
//! TPM, up to the TPM deadline (10 s) for a stuck one. On this thread such a wait holds only
//! the connection; D-Bus answers, command results, the queue and the systemd watchdog go on
//! on the main runtime. The two runtimes talk over channels only.
//!
//! With the key in a file the signature takes microseconds. Then the thread is only worth its
//! cost where it can run beside the main runtime: with two CPUs or more, TLS and MQTT work
//! runs in parallel with D-Bus (the benchmark's throughput). With one CPU (a small board, or
//! a service confined to one CPU) the connection runs on the main runtime
//! ([`NetworkThread::inline`]): no thread, and every message handed to rumqttc and every
//! event it reports stays on one thread instead of waking another (a system call and a
//! context switch each way, per message: about a quarter of the agent's CPU time per
//! message, measured on one CPU).

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::tasks::{TaskError, Worker, spawn_thread};

/// Stack of the network runtime's blocking threads (name resolution).
const BLOCKING_STACK: usize = 256 * 1024;

pub struct NetworkThread {
    handle: Handle,
    /// The thread, when the connection has one.
    thread: Option<(oneshot::Sender<()>, Worker)>,
}

impl NetworkThread {
    /// A thread of its own with the TPM backend (`in_tpm`) or when the process may use more
    /// than one CPU, else the current runtime.
    pub fn for_backend(in_tpm: bool) -> std::io::Result<NetworkThread> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        if in_tpm || cpus > 1 {
            NetworkThread::start()
        } else {
            Ok(NetworkThread::inline())
        }
    }

    /// The connection on the current runtime: nothing to start or stop. Call it within a
    /// runtime.
    pub fn inline() -> NetworkThread {
        NetworkThread {
            handle: Handle::current(),
            thread: None,
        }
    }

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
            thread: Some((stop, worker)),
        })
    }

    /// Where to spawn the connection's tasks (`Spawner::on`).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the runtime and joins the thread, at most `deadline`. Blocking.
    pub fn stop_within(self, deadline: Duration) -> Result<(), TaskError> {
        let Some((stop, worker)) = self.thread else {
            return Ok(());
        };
        let _ = stop.send(());
        worker.join_within(deadline)
    }
}
