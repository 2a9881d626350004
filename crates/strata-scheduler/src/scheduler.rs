//! [`Scheduler`] and [`LocalScheduler`]: a pool of tokio tasks that runs boxed jobs with
//! bounded concurrency and stops gracefully.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use snafu::{OptionExt, Snafu};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A unit of background work. Its `Drop` must answer any waiters it owns, because a job
/// queued when the scheduler stops without draining is dropped unrun.
pub type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A boxed future returned by [`Scheduler::stop`].
pub type StopFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SchedulerError>> + Send + 'a>>;

/// Errors from scheduling or stopping.
#[derive(Debug, Snafu, Clone, PartialEq, Eq)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum SchedulerError {
    /// The scheduler was stopped; the job was not queued (and was dropped).
    #[snafu(display("scheduler {name} is stopped; job not scheduled"))]
    Stopped {
        /// Scheduler name.
        name: String,
    },
    /// `stop` was called on a scheduler that is already stopping or stopped.
    #[snafu(display("scheduler {name} is already stopped"))]
    AlreadyStopped {
        /// Scheduler name.
        name: String,
    },
    /// The scheduler was created outside a tokio runtime.
    #[snafu(display("scheduler {name} must be created inside a tokio runtime"))]
    NoRuntime {
        /// Scheduler name.
        name: String,
    },
}

/// Runs background jobs.
pub trait Scheduler: Send + Sync + fmt::Debug {
    /// Queues `job`. Fails (dropping the job) once the scheduler is stopping or stopped.
    fn schedule(&self, job: Job) -> Result<(), SchedulerError>;

    /// Stops the scheduler and waits for running jobs to finish (they are never
    /// interrupted). With `await_termination` queued jobs run first; without it they are
    /// dropped unrun, so their `Drop` answers their waiters.
    fn stop(&self, await_termination: bool) -> StopFuture<'_>;
}

/// Shared handle to a scheduler.
pub type SchedulerRef = Arc<dyn Scheduler>;

const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const STOPPED: u8 = 2;

/// A fixed pool of `concurrency` tokio tasks pulling jobs from one unbounded queue.
///
/// The queue is unbounded on purpose: admission control is the write buffer's job, and a
/// flush job must never be refused for lack of space. At most `concurrency` jobs run at
/// once because each worker task awaits one job at a time. A job that panics is logged and
/// its worker task carries on, so the pool never shrinks.
pub struct LocalScheduler {
    name: String,
    sender: Mutex<Option<async_channel::Sender<Job>>>,
    receiver: async_channel::Receiver<Job>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    state: Arc<AtomicU8>,
    cancel: CancellationToken,
    running: Arc<AtomicUsize>,
}

impl fmt::Debug for LocalScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalScheduler")
            .field("name", &self.name)
            .field("state", &self.state.load(Ordering::Acquire))
            .field("queued", &self.receiver.len())
            .field("running", &self.running.load(Ordering::Acquire))
            .finish()
    }
}

impl LocalScheduler {
    /// Starts `concurrency` (at least 1) worker tasks on the current tokio runtime.
    pub fn new(name: impl Into<String>, concurrency: usize) -> Result<Self, SchedulerError> {
        let name = name.into();
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .context(NoRuntimeSnafu { name: name.clone() })?;
        let (sender, receiver) = async_channel::unbounded::<Job>();
        let state = Arc::new(AtomicU8::new(RUNNING));
        let cancel = CancellationToken::new();
        let running = Arc::new(AtomicUsize::new(0));
        let handles = (0..concurrency.max(1))
            .map(|index| {
                let worker = PoolWorker {
                    name: format!("{name}-{index}"),
                    receiver: receiver.clone(),
                    state: state.clone(),
                    cancel: cancel.clone(),
                    running: running.clone(),
                };
                runtime.spawn(worker.run())
            })
            .collect();
        Ok(Self {
            name,
            sender: Mutex::new(Some(sender)),
            receiver,
            handles: Mutex::new(handles),
            state,
            cancel,
            running,
        })
    }

    /// Jobs waiting in the queue.
    pub fn queued_jobs(&self) -> usize {
        self.receiver.len()
    }

    /// Jobs running right now.
    pub fn running_jobs(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Whether the scheduler still accepts jobs.
    pub fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// Moves from running to `next`; fails if already stopping.
    fn begin_stop(&self, next: u8) -> Result<(), SchedulerError> {
        self.state
            .compare_exchange(RUNNING, next, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| SchedulerError::AlreadyStopped {
                name: self.name.clone(),
            })?;
        // Closing the sender makes workers' `recv` fail once the queue is empty.
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.cancel.cancel();
        Ok(())
    }
}

impl Scheduler for LocalScheduler {
    fn schedule(&self, job: Job) -> Result<(), SchedulerError> {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        match sender.as_ref() {
            Some(sender) if self.is_running() => {
                sender.try_send(job).map_err(|_| SchedulerError::Stopped {
                    name: self.name.clone(),
                })
            }
            _ => StoppedSnafu {
                name: self.name.clone(),
            }
            .fail(),
        }
    }

    fn stop(&self, await_termination: bool) -> StopFuture<'_> {
        Box::pin(async move {
            self.begin_stop(if await_termination { DRAINING } else { STOPPED })?;
            let handles =
                std::mem::take(&mut *self.handles.lock().unwrap_or_else(PoisonError::into_inner));
            for handle in handles {
                if let Err(e) = handle.await {
                    tracing::error!(scheduler = %self.name, error = %e, "scheduler worker task failed");
                }
            }
            // Workers are gone; drop whatever is still queued so waiters are answered now.
            while let Ok(job) = self.receiver.try_recv() {
                drop(job);
            }
            self.state.store(STOPPED, Ordering::Release);
            Ok(())
        })
    }
}

impl Drop for LocalScheduler {
    fn drop(&mut self) {
        if self.begin_stop(STOPPED).is_ok() {
            tracing::warn!(scheduler = %self.name, "scheduler dropped without stop(); queued jobs are dropped");
        }
        while let Ok(job) = self.receiver.try_recv() {
            drop(job);
        }
    }
}

/// One of the pool's tasks.
struct PoolWorker {
    name: String,
    receiver: async_channel::Receiver<Job>,
    state: Arc<AtomicU8>,
    cancel: CancellationToken,
    running: Arc<AtomicUsize>,
}

impl PoolWorker {
    async fn run(self) {
        loop {
            let job = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                job = self.receiver.recv() => match job {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            self.run_job(job).await;
        }
        if self.state.load(Ordering::Acquire) == DRAINING {
            while let Ok(job) = self.receiver.try_recv() {
                self.run_job(job).await;
            }
        }
    }

    async fn run_job(&self, job: Job) {
        self.running.fetch_add(1, Ordering::AcqRel);
        if AssertUnwindSafe(job).catch_unwind().await.is_err() {
            tracing::error!(worker = %self.name, "background job panicked; the worker continues");
        }
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
