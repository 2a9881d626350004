//! [`CompactionError`]: why a compaction did not apply.

use std::sync::Arc;

use snafu::Snafu;
use strata_base::ErrorKind;
use strata_request::RegionId;
use strata_storage::{CommitError, StorageError};

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
    /// The edit was not persisted: the region's committer refused it (the region left
    /// the writable state, or an input is no longer live — the outputs were deleted),
    /// another engine fenced this one out (the region follows here now), or the manifest
    /// write failed.
    #[snafu(display("region {region_id}: compaction not committed: {source}"))]
    Commit {
        /// The region.
        region_id: RegionId,
        /// The committer's error.
        source: CommitError,
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
    /// cancelled because the region changed is a region-state error; a commit's failure
    /// is the committer's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CompactionError::Sst { source, .. } => source.kind(),
            CompactionError::Commit { source, .. } => source.kind(),
            CompactionError::Cancelled { .. } => ErrorKind::RegionState,
            CompactionError::Dropped { .. } => ErrorKind::Stopped,
        }
    }

    /// One value of every variant, for tests that walk every error (strata-engine's
    /// checks that its public error keeps each one's kind and retryability). Adding a
    /// variant fails to compile here until it is numbered, and then this panics until it
    /// has a sample.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn every_variant() -> Vec<Self> {
        let region_id = RegionId::new(1, 2);
        let samples = vec![
            CompactionError::Sst {
                region_id,
                source: Arc::new(StorageError::ObjectStore {
                    operation: "read SST",
                    path: "a.parquet".into(),
                    source: Box::new(
                        opendal::Error::new(opendal::ErrorKind::Unexpected, "reset")
                            .set_temporary(),
                    ),
                }),
            },
            CompactionError::Sst {
                region_id,
                source: Arc::new(StorageError::CorruptSst {
                    path: "a.parquet".into(),
                    reason: "bad footer".into(),
                }),
            },
            CompactionError::Commit {
                region_id,
                source: CommitError::Stale {
                    region_id,
                    reason: "an input is gone".into(),
                },
            },
            CompactionError::Cancelled {
                region_id,
                by: "truncate",
            },
            CompactionError::Dropped { region_id },
        ];
        // No wildcard: a new variant must be numbered (and sampled) before this compiles.
        let variant = |error: &CompactionError| match error {
            CompactionError::Sst { .. } => 0,
            CompactionError::Commit { .. } => 1,
            CompactionError::Cancelled { .. } => 2,
            CompactionError::Dropped { .. } => 3,
        };
        let mut sampled = [false; 4];
        samples.iter().for_each(|e| sampled[variant(e)] = true);
        assert!(!sampled.contains(&false), "unsampled variants: {sampled:?}");
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_sample() {
        // Panics naming the unsampled variant's number.
        assert!(CompactionError::every_variant().len() >= 4);
    }

    #[test]
    fn io_failures_are_retryable_and_a_changed_region_is_a_state_error() {
        let region_id = RegionId::new(1, 1);
        let stale = CompactionError::Commit {
            region_id,
            source: CommitError::Stale {
                region_id,
                reason: "input gone".into(),
            },
        };
        assert_eq!(stale.kind(), ErrorKind::RegionState);
        assert_eq!(
            CompactionError::Cancelled {
                region_id,
                by: "truncate"
            }
            .kind(),
            ErrorKind::RegionState
        );
        assert_eq!(
            CompactionError::Dropped { region_id }.kind(),
            ErrorKind::Stopped
        );
    }
}
