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

    /// One value of every variant — [`FlushFailed`](Self::FlushFailed) with causes it
    /// re-classifies and causes it passes on — for tests that walk every error
    /// (strata-engine's checks that its public error keeps each one's kind and
    /// retryability). Adding a variant fails to compile here until it is numbered, and
    /// then this panics until it has a sample.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn every_variant() -> Vec<Self> {
        let region_id = RegionId::new(1, 2);
        let write_sst = |source| FlushError::WriteSst {
            region_id,
            source: Arc::new(source),
        };
        let failed = |cause| FlushError::FlushFailed {
            region_id,
            cause: Box::new(cause),
        };
        let unreachable = || StorageError::ObjectStore {
            operation: "write SST",
            path: "a.parquet".into(),
            source: Box::new(
                opendal::Error::new(opendal::ErrorKind::Unexpected, "reset").set_temporary(),
            ),
        };
        let corrupt = || StorageError::CorruptSst {
            path: "a.parquet".into(),
            reason: "bad footer".into(),
        };
        let fenced = || FlushError::Commit {
            region_id,
            source: CommitError::Fenced {
                region_id,
                source: Arc::new(strata_storage::ManifestError::Fenced {
                    region_id,
                    version: 3,
                }),
            },
        };
        let samples = vec![
            write_sst(unreachable()),
            write_sst(corrupt()),
            FlushError::Commit {
                region_id,
                source: CommitError::Stale {
                    region_id,
                    reason: "an input is gone".into(),
                },
            },
            fenced(),
            // Re-classified: the flush is retried, so is the work behind it.
            failed(write_sst(corrupt())),
            // Passed on.
            failed(write_sst(unreachable())),
            failed(fenced()),
            failed(FlushError::Dropped { region_id }),
            FlushError::RegionDropped { region_id },
            FlushError::RegionClosed { region_id },
            FlushError::RegionTruncated { region_id },
            FlushError::Schedule {
                region_id,
                source: SchedulerError::Stopped {
                    name: "flush".into(),
                },
            },
            FlushError::Dropped { region_id },
        ];
        // No wildcard: a new variant must be numbered (and sampled) before this compiles.
        let variant = |error: &FlushError| match error {
            FlushError::WriteSst { .. } => 0,
            FlushError::Commit { .. } => 1,
            FlushError::FlushFailed { .. } => 2,
            FlushError::RegionDropped { .. } => 3,
            FlushError::RegionClosed { .. } => 4,
            FlushError::RegionTruncated { .. } => 5,
            FlushError::Schedule { .. } => 6,
            FlushError::Dropped { .. } => 7,
        };
        let mut sampled = [false; 8];
        samples.iter().for_each(|e| sampled[variant(e)] = true);
        assert!(!sampled.contains(&false), "unsampled variants: {sampled:?}");
        samples
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_sample() {
        // Panics naming the unsampled variant's number.
        assert!(FlushError::every_variant().len() >= 8);
    }

    #[test]
    fn work_behind_a_failed_flush_fails_as_retryable_as_the_flush_unless_it_was_damage() {
        let region_id = RegionId::new(1, 2);
        for cause in FlushError::every_variant() {
            let work = FlushError::FlushFailed {
                region_id,
                cause: Box::new(cause.clone()),
            };
            match cause.kind() {
                ErrorKind::Corruption | ErrorKind::Internal => {
                    assert_eq!(work.kind(), ErrorKind::RegionState, "{work}")
                }
                kind => assert_eq!(work.kind(), kind, "{work}"),
            }
        }
    }
}
