//! One shape for every long-lived part of the agent.
//!
//! **Tasks** (the session driver, the queue refill, the router's consumers, the D-Bus signal
//! forwarder, the command engine, the connection loop, the notifier) are spawned through one
//! place, [`Spawner::spawn`]: each gets a name, a child cancellation token and one tracing
//! span, and ends with `Ok(())` or a [`TaskError`] that says which task ended and why. A
//! spawner can place its tasks on another runtime ([`Spawner::on`]: the network thread of
//! `runtime.rs`), and hand out child spawners whose tasks stop together ([`Spawner::child`]).
//!
//! **Threads** (the store's writer, the TPM worker, the network thread) stay threads, but
//! start and stop the same way: [`spawn_thread`] gives a [`Worker`] handle; its owner asks it
//! to stop (each in its own way: a message, a closed channel), then joins it with a deadline
//! ([`Worker::join_within`]).

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why a task or a thread ended when it should not have, or did not end in time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskError {
    #[error("task {name} failed: {reason}")]
    Failed { name: &'static str, reason: String },
    #[error("task {name} panicked (a bug)")]
    Panicked { name: &'static str },
    #[error("task {name} did not stop within {deadline:?}")]
    TooSlow {
        name: &'static str,
        deadline: Duration,
    },
}

/// Spawns named tasks under a cancellation token, on the current runtime or another one.
#[derive(Clone, Debug)]
pub struct Spawner {
    cancel: CancellationToken,
    runtime: Option<Handle>,
}

impl Spawner {
    /// Tasks stop when `cancel` fires.
    pub fn new(cancel: CancellationToken) -> Spawner {
        Spawner {
            cancel,
            runtime: None,
        }
    }

    /// The same spawner, placing its tasks on `runtime`.
    pub fn on(&self, runtime: Handle) -> Spawner {
        Spawner {
            cancel: self.cancel.clone(),
            runtime: Some(runtime),
        }
    }

    /// A spawner whose tasks stop when [`Spawner::cancel`] is called on it, or with this one.
    pub fn child(&self) -> Spawner {
        Spawner {
            cancel: self.cancel.child_token(),
            runtime: self.runtime.clone(),
        }
    }

    /// Stops every task of this spawner (and of its children).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The one place tasks are spawned: `body` runs with its own child token, in a span
    /// named after the task; its error becomes a [`TaskError`] naming it.
    pub fn spawn<F, Fut, E>(&self, name: &'static str, body: F) -> Task
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let cancel = self.cancel.child_token();
        let running = body(cancel.clone()).instrument(tracing::info_span!("task", name));
        let wrapped = async move {
            running.await.map_err(|error| TaskError::Failed {
                name,
                reason: error.to_string(),
            })
        };
        let join = match &self.runtime {
            Some(runtime) => runtime.spawn(wrapped.in_current_span()),
            None => tokio::spawn(wrapped.in_current_span()),
        };
        Task { name, cancel, join }
    }
}

/// A running task: its name, its token, and its end.
#[derive(Debug)]
pub struct Task {
    name: &'static str,
    cancel: CancellationToken,
    join: JoinHandle<Result<(), TaskError>>,
}

impl Task {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Asks the task to stop (its token fires).
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for the task to end by itself.
    pub async fn ended(&mut self) -> Result<(), TaskError> {
        let name = self.name;
        match (&mut self.join).await {
            Ok(result) => result,
            Err(_) => Err(TaskError::Panicked { name }),
        }
    }

    /// Asks the task to stop and waits for it at most `deadline`; a task still running
    /// then is aborted.
    pub async fn stop_within(mut self, deadline: Duration) -> Result<(), TaskError> {
        self.stop();
        match tokio::time::timeout(deadline, self.ended()).await {
            Ok(result) => result,
            Err(_) => {
                self.join.abort();
                Err(TaskError::TooSlow {
                    name: self.name,
                    deadline,
                })
            }
        }
    }
}

/// Waits until the first of `tasks` ends; returns its index and how it ended.
pub async fn first_ended(tasks: &mut [Task]) -> (usize, Result<(), TaskError>) {
    if tasks.is_empty() {
        return std::future::pending().await;
    }
    let ends = tasks.iter_mut().map(|task| Box::pin(task.ended()));
    let (result, index, _) = futures_util::future::select_all(ends).await;
    (index, result)
}

/// Stops `tasks`, all at once, each within `deadline`; the first error, if any.
pub async fn stop_all(tasks: Vec<Task>, deadline: Duration) -> Result<(), TaskError> {
    for task in &tasks {
        task.stop();
    }
    let ends = tasks.into_iter().map(|task| task.stop_within(deadline));
    let results = futures_util::future::join_all(ends).await;
    results.into_iter().collect()
}

/// A thread of the agent: started by [`spawn_thread`], asked to stop by its owner, joined
/// with a deadline.
#[derive(Debug)]
pub struct Worker {
    name: &'static str,
    thread: std::thread::JoinHandle<()>,
    ended: Arc<Ended>,
}

/// Set when a thread ends, by returning or unwinding; others can wait for it with a deadline.
#[derive(Debug, Default)]
pub struct Ended {
    done: Mutex<bool>,
    signal: Condvar,
}

impl Ended {
    /// Whether the thread ended before `deadline`.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .signal
                .wait_timeout(done, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn set(&self) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.signal.notify_all();
    }
}

/// Sets [`Ended`] when dropped: at the end of the thread's body, also when it unwinds.
struct EndGuard(Arc<Ended>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Stack reserved for a thread of [`spawn_thread`] (Rust's default is 2 MiB). Only the pages a
/// thread uses are resident; this bounds the address space, not the memory.
pub const THREAD_STACK: usize = 1024 * 1024;

/// Starts `body` on a thread named `name`. The [`Worker`] learns when it ends, also by a panic.
pub fn spawn_thread(
    name: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<Worker> {
    spawn_thread_with_stack(name, THREAD_STACK, body)
}

/// [`spawn_thread`] with a stack of `stack` bytes, for threads whose deepest call is known.
pub fn spawn_thread_with_stack(
    name: &'static str,
    stack: usize,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<Worker> {
    let ended = Arc::new(Ended::default());
    let guard = EndGuard(ended.clone());
    let thread = std::thread::Builder::new()
        .name(name.into())
        .stack_size(stack)
        .spawn(move || {
            let _ended = guard;
            body();
        })?;
    Ok(Worker {
        name,
        thread,
        ended,
    })
}

impl Worker {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The thread's end, for those who wait for it without owning it.
    pub fn ended(&self) -> &Arc<Ended> {
        &self.ended
    }

    /// Waits for the thread (its owner has asked it to stop) at most `deadline`. A thread
    /// still running then is left to end alone (a thread cannot be killed): the error says so.
    pub fn join_within(self, deadline: Duration) -> Result<(), TaskError> {
        if !self.ended.wait_until(Instant::now() + deadline) {
            return Err(TaskError::TooSlow {
                name: self.name,
                deadline,
            });
        }
        match self.thread.join() {
            Ok(()) => Ok(()),
            Err(_) => Err(TaskError::Panicked { name: self.name }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_task_names_itself_and_the_others_stop_with_their_token() {
        let spawner = Spawner::new(CancellationToken::new());
        let failing = spawner.spawn("failing", |_| async { Err::<(), _>("no luck") });
        let waiting = spawner.spawn("waiting", |cancel| async move {
            cancel.cancelled().await;
            Ok::<(), String>(())
        });
        let mut tasks = vec![waiting, failing];
        let (index, result) = first_ended(&mut tasks).await;
        assert_eq!(index, 1);
        assert_eq!(
            result,
            Err(TaskError::Failed {
                name: "failing",
                reason: "no luck".into()
            })
        );
        tasks.remove(1);
        assert_eq!(stop_all(tasks, Duration::from_secs(5)).await, Ok(()));
    }

    #[tokio::test]
    async fn a_child_spawner_stops_its_tasks_and_not_its_parents() {
        let parent = Spawner::new(CancellationToken::new());
        let child = parent.child();
        let forever = |cancel: CancellationToken| async move {
            cancel.cancelled().await;
            Ok::<(), String>(())
        };
        let mut of_parent = parent.spawn("parent", forever);
        let mut of_child = child.spawn("child", forever);
        child.cancel();
        assert_eq!(of_child.ended().await, Ok(()));
        assert!(!of_parent.is_finished());
        parent.cancel();
        assert_eq!(of_parent.ended().await, Ok(()));
    }

    #[tokio::test]
    async fn a_task_that_ignores_its_token_is_aborted_at_the_deadline() {
        let spawner = Spawner::new(CancellationToken::new());
        let stubborn = spawner.spawn("stubborn", |_| async {
            std::future::pending::<()>().await;
            Ok::<(), String>(())
        });
        assert_eq!(
            stubborn.stop_within(Duration::from_millis(10)).await,
            Err(TaskError::TooSlow {
                name: "stubborn",
                deadline: Duration::from_millis(10)
            })
        );
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_as_such() {
        let spawner = Spawner::new(CancellationToken::new());
        let mut task = spawner.spawn("buggy", |_| async {
            if true {
                panic!("a bug");
            }
            Ok::<(), String>(())
        });
        assert_eq!(
            task.ended().await,
            Err(TaskError::Panicked { name: "buggy" })
        );
    }

    use std::sync::mpsc;

    #[test]
    fn a_thread_is_joined_once_it_ends_or_reported_when_it_does_not() {
        let (stop, stopped) = mpsc::channel::<()>();
        let worker = spawn_thread("test-worker", move || {
            let _ = stopped.recv();
        })
        .unwrap();
        drop(stop);
        assert_eq!(worker.join_within(Duration::from_secs(5)), Ok(()));

        let (_keep, blocked) = mpsc::channel::<()>();
        let worker = spawn_thread("test-stuck", move || {
            let _ = blocked.recv_timeout(Duration::from_secs(2));
        })
        .unwrap();
        assert_eq!(
            worker.join_within(Duration::from_millis(10)),
            Err(TaskError::TooSlow {
                name: "test-stuck",
                deadline: Duration::from_millis(10)
            })
        );
    }

    #[test]
    fn a_panicking_thread_is_reported_as_such() {
        let worker = spawn_thread("test-panics", || panic!("a bug")).unwrap();
        assert_eq!(
            worker.join_within(Duration::from_secs(5)),
            Err(TaskError::Panicked {
                name: "test-panics"
            })
        );
    }
}
