//! [`CompactionError`]: why a compaction did not apply.

use std::sync::Arc;

use snafu::Snafu;
use strata_base::ErrorKind;
use strata_request::RegionId;
use strata_storage::StorageError;

/// Errors of a compaction. Cloneable: one failure answers every waiter. A failed
/// compaction never removes its inputs: the region's data is what it was before.
#[derive(Debug, Snafu, Clone)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum CompactionError {
    /// Reading the inputs or writing the outputs failed.
    #[snafu(display("region {region_id}: compaction failed reading or writing SSTs: {source}"))]
    Sst {
        /// The region.
        region_id: RegionId,
        /// The storage error.
        source: Arc<StorageError>,
    },
    /// The manifest edit could not be persisted.
    #[snafu(display(
        "region {region_id}: compaction failed persisting the manifest edit: {reason}"
    ))]
    Commit {
        /// The region.
        region_id: RegionId,
        /// What went wrong.
        reason: String,
    },
    /// Another engine committed the manifest version this compaction wanted (the region
    /// has a new leader): the outputs were deleted.
    #[snafu(display("region {region_id}: compaction commit fenced out: {reason}"))]
    Fenced {
        /// The region.
        region_id: RegionId,
        /// The manifest's error.
        reason: String,
    },
    /// The region changed under the compaction (its inputs are no longer all live, or it
    /// left the writable state): the result was discarded and its outputs deleted.
    #[snafu(display("region {region_id}: compaction result discarded: {reason}"))]
    Stale {
        /// The region.
        region_id: RegionId,
        /// Why.
        reason: String,
    },
    /// A DDL (close, drop, truncate, alter) cancelled the compaction.
    #[snafu(display("region {region_id}: compaction cancelled by a {by}"))]
    Cancelled {
        /// The region.
        region_id: RegionId,
        /// The DDL that cancelled it.
        by: &'static str,
    },
    /// The engine is stopping: the job was dropped before it finished.
    #[snafu(display("region {region_id}: compaction dropped (engine stopping)"))]
    Dropped {
        /// The region.
        region_id: RegionId,
    },
}

impl CompactionError {
    /// The coarse kind: I/O failures are retryable storage errors; a result discarded or
    /// cancelled because the region changed is a region-state error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CompactionError::Sst { source, .. } => source.kind(),
            CompactionError::Commit { .. } => ErrorKind::Storage,
            CompactionError::Fenced { .. } => ErrorKind::Fenced,
            CompactionError::Stale { .. } | CompactionError::Cancelled { .. } => {
                ErrorKind::RegionState
            }
            CompactionError::Dropped { .. } => ErrorKind::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_failures_are_retryable_and_a_changed_region_is_a_state_error() {
        let region_id = RegionId::new(1, 1);
        let commit = CompactionError::Commit {
            region_id,
            reason: "timeout".into(),
        };
        assert!(commit.kind().is_retryable());
        let stale = CompactionError::Stale {
            region_id,
            reason: "input gone".into(),
        };
        assert_eq!(stale.kind(), ErrorKind::RegionState);
        assert_eq!(
            CompactionError::Dropped { region_id }.kind(),
            ErrorKind::Stopped
        );
    }
}
