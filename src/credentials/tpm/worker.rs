//! The one thread that talks to the TPM, and the deadline every caller waits with.
//!
//! ESAPI's synchronous calls wait for the TPM's answer without a timeout (they set the TCTI
//! timeout to "block" whatever `Esys_SetTimeout` says): a TPM, simulator or resource manager
//! that accepts a command and never answers would hang its caller for good, and `sign` is
//! called from TLS handshakes on the async runtime. So the ESAPI context lives on a worker
//! thread, callers hand it jobs and wait at most `timeout` for the answer.
//!
//! A worker that misses a deadline is written off: it is left to finish (or hang) alone, and
//! no new worker is started until it has ended, so a wedged TPM costs one blocked thread, not
//! one per call; meanwhile calls fail at once after waiting out their own deadline. The
//! context is kept between jobs and opened again after a transport failure; one job is tried
//! a second time on a fresh connection if the kept one turned out to be dead (a restarted
//! simulator or resource manager). Every job is idempotent: nothing persists in the TPM.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::esys::Context;
use super::failure::Failure;
use super::tcti::Tcti;
use crate::tasks::{self, Ended};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The way to the TPM, shared by the backend and the keys it hands out.
#[derive(Debug)]
pub(super) struct Tpm {
    tcti: Tcti,
    timeout: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    worker: Option<Worker>,
    /// A worker that missed a deadline and may still be blocked in the TPM.
    wedged: Option<Arc<Ended>>,
}

#[derive(Debug)]
struct Worker {
    jobs: Sender<Job>,
    thread: tasks::Worker,
}

/// How long dropping the TPM waits for an idle worker to end.
const STOP_DEADLINE: Duration = Duration::from_secs(1);

impl Tpm {
    pub(super) fn new(tcti: Tcti, timeout: Duration) -> Tpm {
        Tpm {
            tcti,
            timeout,
            state: Mutex::default(),
        }
    }

    pub(super) fn tcti(&self) -> &Tcti {
        &self.tcti
    }

    /// Runs `op` on the worker's context and waits for its result, at most the timeout.
    pub(super) fn run<T, F>(&self, op: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: Fn(&mut Context) -> Result<T, Failure> + Send + 'static,
    {
        let deadline = Instant::now() + self.timeout;
        let (jobs, ended) = self.worker(deadline)?;
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |connection| {
            // The caller gave up: don't spend TPM time on an answer nobody reads.
            if Instant::now() < deadline {
                let _ = reply.send(connection.run(&op));
            }
        });
        if jobs.send(job).is_err() {
            return Err(self.lost(&ended));
        }
        match answer.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => result,
            // Dropped unanswered before the deadline: the worker died.
            Err(RecvTimeoutError::Disconnected) if Instant::now() < deadline => {
                Err(self.lost(&ended))
            }
            // Timed out, or skipped by a worker that reached it too late.
            Err(_) => {
                self.write_off(&ended);
                Err(Failure::Unreachable(format!(
                    "no answer within {:?}",
                    self.timeout
                )))
            }
        }
    }

    /// The current worker, started if needed, once any wedged one has ended.
    fn worker(&self, deadline: Instant) -> Result<(Sender<Job>, Arc<Ended>), Failure> {
        loop {
            let mut state = self.lock();
            if let Some(wedged) = state.wedged.clone() {
                drop(state);
                if !wedged.wait_until(deadline) {
                    return Err(Failure::Unreachable(
                        "the TPM has not answered an earlier command yet".into(),
                    ));
                }
                // Forget it, unless another worker was written off meanwhile.
                self.lock()
                    .wedged
                    .take_if(|current| Arc::ptr_eq(current, &wedged));
                continue;
            }
            let worker = match &mut state.worker {
                Some(worker) => worker,
                none @ None => none.insert(Worker::spawn(self.tcti.clone())?),
            };
            return Ok((worker.jobs.clone(), worker.thread.ended().clone()));
        }
    }

    /// The worker behind `ended` missed a deadline: stop sending it jobs (it ends once the
    /// queue is drained) and wait for it to end before starting another.
    fn write_off(&self, ended: &Arc<Ended>) {
        let mut state = self.lock();
        if state.forget(ended) {
            state.wedged = Some(ended.clone());
        }
    }

    /// The worker behind `ended` died (a panic in the TSS bindings): forget it.
    fn lost(&self, ended: &Arc<Ended>) -> Failure {
        self.lock().forget(ended);
        Failure::Unreachable("the TPM worker thread stopped unexpectedly".into())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Forgets the current worker if it is the one behind `ended` (not one started since);
    /// whether it was.
    fn forget(&mut self, ended: &Arc<Ended>) -> bool {
        self.worker
            .take_if(|worker| Arc::ptr_eq(worker.thread.ended(), ended))
            .is_some()
    }
}

impl Worker {
    fn spawn(tcti: Tcti) -> Result<Worker, Failure> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = tasks::spawn_thread("tpm", move || serve(tcti, queue)).map_err(|error| {
            Failure::Unreachable(format!("couldn't start the TPM worker thread: {error}"))
        })?;
        Ok(Worker { jobs, thread })
    }
}

impl Drop for Tpm {
    /// Stops the worker (its queue closes) and joins it; a worker blocked in the TPM is left
    /// to end alone.
    fn drop(&mut self) {
        if let Some(Worker { jobs, thread }) = self.lock().worker.take() {
            drop(jobs);
            if let Err(error) = thread.join_within(STOP_DEADLINE) {
                tracing::warn!(%error, "the TPM worker did not stop");
            }
        }
    }
}

fn serve(tcti: Tcti, queue: Receiver<Job>) {
    let mut connection = Connection {
        tcti,
        context: None,
    };
    while let Ok(job) = queue.recv() {
        job(&mut connection);
    }
    // Dropping the context flushes whatever it still tracks and closes the TCTI.
}

/// The worker's end of the line: the ESAPI context, opened lazily.
pub(super) struct Connection {
    tcti: Tcti,
    context: Option<Context>,
}

impl Connection {
    fn run<T>(&mut self, op: &dyn Fn(&mut Context) -> Result<T, Failure>) -> Result<T, Failure> {
        let reused = self.context.is_some();
        match self.attempt(op) {
            Err(Failure::Unreachable(_)) if reused => self.attempt(op),
            result => result,
        }
    }

    fn attempt<T>(
        &mut self,
        op: &dyn Fn(&mut Context) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let context = match &mut self.context {
            Some(context) => context,
            context @ None => context.insert(Context::new(&self.tcti).map_err(|error| {
                let failure = Failure::command("connect", error);
                Failure::Unreachable(format!("{} (TCTI {})", failure.reason(), self.tcti))
            })?),
        };
        let result = op(context);
        if matches!(result, Err(Failure::Unreachable(_))) {
            self.context = None;
        }
        result
    }
}
