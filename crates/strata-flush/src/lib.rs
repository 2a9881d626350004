//! Strata's flush pipeline: turning a region's frozen memtables into SST files.
//!
//! - [`FlushReason`]: why a flush runs (a stable label for metrics and logs).
//! - [`RegionFlushTask`]: one flush of one region;
//!   [`RegionFlushTask::into_job`] makes the job from a snapshot taken right after freezing.
//! - The job writes one level-0 SST per non-empty frozen memtable (through
//!   `strata-storage`, concurrency bounded by [`FlushContext::write_limit`]), then commits
//!   one manifest edit through the region's [`strata_storage::Committer`] (which decides
//!   whether a flush may still commit, and what a fence does), then reports a
//!   [`FlushNotify`].
//! - [`FlushScheduler`]: one per worker, a lifecycle only — at most one flush per region
//!   (started), later requests merged into one follow-up (queued), ended; who waits for a
//!   flush and what is fenced behind it live in the worker.
//! - [`FlushMetrics`]: `strata_flush_*` on the embedder's registry.
//!
//! This crate knows nothing of the worker loop and answers nobody: outcomes go out on a
//! channel of [`FlushNotify`] (exactly one per job), region state is consulted through the
//! committer.
//!
//! # Layering
//!
//! Depends on `strata-base`, `strata-request`, `strata-scheduler` and `strata-storage`
//! (and `strata-workload` in benchmarks); it **must never depend on** the WAL, compaction,
//! the workers or the engine.

mod error;
mod job;
mod metrics;
mod reason;
mod scheduler;
mod task;

pub use error::FlushError;
pub use job::{FlushContext, FlushFinished, FlushListener, FlushNotify, flush_snapshot};
pub use metrics::FlushMetrics;
pub use reason::FlushReason;
pub use scheduler::{AfterFlush, FlushScheduled, FlushScheduler};
pub use task::RegionFlushTask;
