//! Strata's background machinery: the job pool and the clock.
//!
//! - [`Scheduler`] / [`LocalScheduler`]: runs boxed [`Job`]s on a fixed number of tokio
//!   tasks. Running jobs are never interrupted; [`Scheduler::stop`] either drains the queue
//!   or drops queued jobs (whose `Drop` answers their waiters); scheduling after stop is a
//!   typed [`SchedulerError`].
//! - [`Clock`] / [`SystemClock`] / [`ManualClock`]: every piece of the engine that reads the
//!   time or sleeps gets a clock at construction, so tests drive periodic work with
//!   [`ManualClock::advance`] instead of sleeping.
//!
//! # Layering
//!
//! Depends on `strata-base` only (the clock it re-exports); it **must never depend on** any
//! other Strata crate. Flush, compaction and worker code build on it.

mod scheduler;

pub use scheduler::{Job, LocalScheduler, Scheduler, SchedulerError, SchedulerRef, StopFuture};
pub use strata_base::{Clock, ClockRef, ManualClock, Sleep, SystemClock};
