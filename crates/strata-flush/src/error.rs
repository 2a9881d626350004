//! [`FlushError`]: why a flush (or the work fenced behind it) did not happen.

use std::sync::Arc;

use snafu::Snafu;
use strata_base::ErrorKind;
use strata_request::RegionId;
use strata_scheduler::SchedulerError;
use strata_storage::{CommitError, StorageError};

/// Errors of the flush pipeline. Cloneable: one failure answers many waiters.
#[derive(Debug, Snafu, Clone)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum FlushError {
    /// Writing SST files failed.
    #[snafu(display("region {region_id}: flush failed writing SST files: {source}"))]
    WriteSst {
        /// The region.
        region_id: RegionId,
        /// The storage error.
        source: Arc<StorageError>,
    },
    /// The manifest edit was not persisted: the region's committer refused it (the region
    /// left the state in which a flush may commit), another engine fenced this one out
    /// (the region follows here now; the flush's files are deleted, its rows stay in this
    /// engine's WAL), or the manifest write failed.
    #[snafu(display("region {region_id}: flush not committed: {source}"))]
    Commit {
        /// The region.
        region_id: RegionId,
        /// The committer's error.
        source: CommitError,
    },
    /// An earlier flush of the region failed; fenced work fails with it.
    #[snafu(display("region {region_id}: flush failed: {cause}"))]
    FlushFailed {
        /// The region.
        region_id: RegionId,
        /// The flush's error.
        cause: Box<FlushError>,
    },
    /// The region was dropped while the work waited.
    #[snafu(display("region {region_id} was dropped"))]
    RegionDropped {
        /// The region.
        region_id: RegionId,
    },
    /// The region was closed while the work waited.
    #[snafu(display("region {region_id} was closed"))]
    RegionClosed {
        /// The region.
        region_id: RegionId,
    },
    /// The region was truncated while the work waited.
    #[snafu(display("region {region_id} was truncated"))]
    RegionTruncated {
        /// The region.
        region_id: RegionId,
    },
    /// The flush job could not be scheduled (the pool is stopping).
    #[snafu(display("region {region_id}: cannot schedule the flush: {source}"))]
    Schedule {
        /// The region.
        region_id: RegionId,
        /// The scheduler's error.
        source: SchedulerError,
    },
    /// The flush task was dropped before it ran (the engine is stopping).
    #[snafu(display("region {region_id}: the flush was dropped before it ran (engine stopping)"))]
    Dropped {
        /// The region.
        region_id: RegionId,
    },
}

impl FlushError {
    /// The coarse class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FlushError::WriteSst { source, .. } => source.kind(),
            FlushError::Commit { source, .. } => source.kind(),
            FlushError::FlushFailed { cause, .. } => match cause.kind() {
                // Fenced work failed because its flush did; the flush is retried, so is
                // the work.
                ErrorKind::Corruption | ErrorKind::Internal => ErrorKind::RegionState,
                kind => kind,
            },
            FlushError::Dropped { .. } | FlushError::Schedule { .. } => ErrorKind::Stopped,
            FlushError::RegionDropped { .. }
            | FlushError::RegionClosed { .. }
            | FlushError::RegionTruncated { .. } => ErrorKind::RegionState,
        }
    }

    /// The region the error is about.
    pub fn region_id(&self) -> RegionId {
        match self {
            FlushError::WriteSst { region_id, .. }
            | FlushError::Commit { region_id, .. }
            | FlushError::FlushFailed { region_id, .. }
            | FlushError::RegionDropped { region_id }
            | FlushError::RegionClosed { region_id }
            | FlushError::RegionTruncated { region_id }
            | FlushError::Schedule { region_id, .. }
            | FlushError::Dropped { region_id } => *region_id,
        }
    }
}
