//! Strata's compaction: merging a region's SST files by time window, expiring data past
//! its TTL, and committing the result as one fenced manifest edit.
//!
//! - [`pick`] / [`pick_files`]: the picker, a pure function from a region's files, options
//!   and the time to a [`CompactionPick`] (windows to merge, expired files to drop). The
//!   rules — time windows, the active window, the rewrite budget, size tiers, delete
//!   markers — are in the `picker` module's docs.
//! - [`CompactionTask`]: one compaction as a job on the compaction pool — reads the inputs
//!   through the read path's merge/dedup (streaming) one time slice after another, writes
//!   level-1 outputs in time slices with the flush's SST writer, commits through the region's [`strata_storage::Committer`] (only while the region is
//!   writable and every input is still live, checked under the manifest lock), reports a
//!   [`CompactionNotify`].
//! - [`CompactionScheduler`]: one per worker — one job per region, coalesced follow-ups,
//!   DDLs fenced behind a cancelled job, stale results ignored (execution ids).
//! - [`CompactionMetrics`]: `strata_compaction_*` on the embedder's registry.
//!
//! A failed or cancelled compaction never removes an input; its outputs are deleted, and
//! outputs left by a crash before the commit are swept when the region next opens.
//!
//! # Layering
//!
//! Depends on `strata-base`, `strata-request`, `strata-scheduler` and `strata-storage`; it
//! **must never depend on** the WAL, the flush pipeline, the workers or the engine.

mod error;
mod job;
mod metrics;
mod picker;
mod scheduler;
mod slicing;
mod stats;

pub use error::CompactionError;
pub use job::{
    COMPACTED_LEVEL, Cancel, CompactionContext, CompactionFinished, CompactionInputs,
    CompactionListener, CompactionNotify, CompactionTask,
};
pub use metrics::CompactionMetrics;
pub use picker::{
    CompactionPick, MergeGroup, PickInput, PickMode, PickerOptions, pick, pick_files,
};
pub use scheduler::{CompactionScheduler, Ended, Scheduled};
pub use stats::{CompactionStats, FileSetStats, WindowStats};
