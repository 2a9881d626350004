//! [`WorkerError`]: why a request to a region worker failed, and [`ErrorKind`], the coarse
//! class a caller acts on.

use std::sync::Arc;

use snafu::Snafu;
use strata_compaction::CompactionError;
use strata_flush::FlushError;
use strata_request::{RegionId, Unanswered, WriteError};
use strata_storage::{CommitError, ManifestError, StorageError};
use strata_wal::WalError;

use crate::region::RegionState;

pub use strata_base::ErrorKind;

/// Errors of the region workers. Cloneable: one failure (a WAL append, a flush) answers
/// every request that depended on it.
#[derive(Debug, Snafu, Clone)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum WorkerError {
    /// The region is not open.
    #[snafu(display("region {region_id} not found"))]
    RegionNotFound {
        /// The region.
        region_id: RegionId,
    },
    /// The region's state does not allow the request.
    #[snafu(display("region {region_id} is {state}, cannot {operation}"))]
    RegionState {
        /// The region.
        region_id: RegionId,
        /// Its state.
        state: RegionState,
        /// What was asked.
        operation: &'static str,
    },
    /// This engine does not lead the region: it follows it, is handing it over, or its
    /// lease lapsed. Retry on the leader (or here after `renew_lease`).
    #[snafu(display(
        "region {region_id}: this engine is not its leader ({why}); retry on the leader"
    ))]
    NotLeader {
        /// The region.
        region_id: RegionId,
        /// Why not (its role, or the lapsed lease).
        why: String,
    },
    /// An upgrade found the manifest short of the old leader's last entry id: the old
    /// leader has not flushed everything it acknowledged (downgrade it first).
    #[snafu(display(
        "region {region_id}: the manifest covers WAL entries up to {flushed_entry_id}, not yet the old leader's {last_entry_id}; downgrade the old leader (it flushes) and retry"
    ))]
    NotCaughtUp {
        /// The region.
        region_id: RegionId,
        /// What the manifest covers.
        flushed_entry_id: u64,
        /// What the caller asked for.
        last_entry_id: u64,
    },
    /// A sync found the manifest older than asked.
    #[snafu(display("region {region_id}: the manifest is at version {version}, not yet {wanted}"))]
    ManifestBehind {
        /// The region.
        region_id: RegionId,
        /// The newest version found.
        version: u64,
        /// The version asked for.
        wanted: u64,
    },
    /// A write failed validation against the region schema.
    #[snafu(display("invalid write: {source}"))]
    InvalidWrite {
        /// Why.
        source: WriteError,
    },
    /// A request was malformed.
    #[snafu(display("region {region_id}: invalid request: {reason}"))]
    InvalidRequest {
        /// The region.
        region_id: RegionId,
        /// Why.
        reason: String,
    },
    /// Memory is over the reject limit.
    #[snafu(display(
        "region {region_id}: write rejected, memtables use {usage} bytes plus {stalled} stalled, reject limit {limit} bytes"
    ))]
    RejectWrite {
        /// The region.
        region_id: RegionId,
        /// Memtable bytes.
        usage: usize,
        /// Bytes of stalled writes.
        stalled: usize,
        /// The reject limit.
        limit: usize,
    },
    /// The WAL failed; nothing of the batch was applied.
    #[snafu(display("WAL: {source}"))]
    Wal {
        /// The WAL's error.
        source: Arc<WalError>,
    },
    /// A WAL entry could not be decoded.
    #[snafu(display("region {region_id}: WAL entry {entry_id} is damaged: {reason}"))]
    CorruptWalEntry {
        /// The region.
        region_id: RegionId,
        /// The entry.
        entry_id: u64,
        /// What is wrong.
        reason: String,
    },
    /// Replay found an entry that should already be in SST files.
    #[snafu(display(
        "region {region_id}: WAL entry {entry_id} is at or below the flushed entry id {flushed_entry_id} (set allow_stale_entries to replay it anyway)"
    ))]
    StaleEntry {
        /// The region.
        region_id: RegionId,
        /// The entry.
        entry_id: u64,
        /// The region's flushed entry id.
        flushed_entry_id: u64,
    },
    /// The manifest failed.
    #[snafu(display("region {region_id}: manifest: {source}"))]
    Manifest {
        /// The region.
        region_id: RegionId,
        /// The manifest's error.
        source: Arc<ManifestError>,
    },
    /// A change of the region (alter, truncate, upgrade) was not committed: its committer
    /// refused it, another engine fenced this one out (the region follows here now), or
    /// the manifest write failed.
    #[snafu(display("{source}"))]
    Commit {
        /// The committer's error.
        source: CommitError,
    },
    /// Region data (memtables, SSTs) failed.
    #[snafu(display("region {region_id}: {source}"))]
    Storage {
        /// The region.
        region_id: RegionId,
        /// The storage error.
        source: Arc<StorageError>,
    },
    /// A flush (or work fenced behind one) failed.
    #[snafu(display("{source}"))]
    Flush {
        /// The flush error.
        source: FlushError,
    },
    /// A compaction failed, was cancelled, or its result was discarded.
    #[snafu(display("{source}"))]
    Compaction {
        /// The compaction error.
        source: CompactionError,
    },
    /// The region was closed while the request waited.
    #[snafu(display("region {region_id} was closed while the request waited"))]
    RegionClosed {
        /// The region.
        region_id: RegionId,
    },
    /// The workers are stopped.
    #[snafu(display("the engine is stopped"))]
    WorkerStopped,
    /// The feature is not supported.
    #[snafu(display("unsupported: {what}"))]
    Unsupported {
        /// What.
        what: String,
    },
    /// The engine is read-only.
    #[snafu(display("the engine is open read-only: cannot {operation}"))]
    ReadOnly {
        /// What was asked (`write`, `create a region`, ...).
        operation: &'static str,
    },
    /// The engine could not start.
    #[snafu(display("cannot start the workers: {reason}"))]
    Start {
        /// Why.
        reason: String,
    },
}

impl WorkerError {
    /// The coarse class of the error: its own, or its source's, which classifies itself.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WorkerError::RegionNotFound { .. } => ErrorKind::RegionNotFound,
            WorkerError::RegionState { .. }
            | WorkerError::RegionClosed { .. }
            | WorkerError::NotCaughtUp { .. }
            | WorkerError::ManifestBehind { .. } => ErrorKind::RegionState,
            WorkerError::NotLeader { .. } => ErrorKind::NotLeader,
            WorkerError::InvalidWrite { .. }
            | WorkerError::InvalidRequest { .. }
            | WorkerError::StaleEntry { .. } => ErrorKind::InvalidRequest,
            WorkerError::RejectWrite { .. } => ErrorKind::WriteRejected,
            WorkerError::Wal { source } => source.kind(),
            WorkerError::CorruptWalEntry { .. } => ErrorKind::Corruption,
            WorkerError::Manifest { source, .. } => source.kind(),
            WorkerError::Commit { source } => source.kind(),
            WorkerError::Storage { source, .. } => source.kind(),
            WorkerError::Flush { source } => source.kind(),
            WorkerError::Compaction { source } => source.kind(),
            WorkerError::WorkerStopped => ErrorKind::Stopped,
            WorkerError::Unsupported { .. } => ErrorKind::Unsupported,
            WorkerError::ReadOnly { .. } => ErrorKind::ReadOnly,
            WorkerError::Start { .. } => ErrorKind::Internal,
        }
    }

    /// Whether retrying the same request later can succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// One value of every variant — those that wrap another crate's error with one or
    /// two of its values (strata-engine's walk wraps every sample of every crate) — for
    /// tests that walk every error (strata-engine's checks that its public error keeps
    /// each one's kind and retryability). Adding a variant fails to compile here until it
    /// is numbered, and then this panics until it has a sample.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn every_variant() -> Vec<Self> {
        let region_id = RegionId::new(1, 2);
        let samples = vec![
            WorkerError::RegionNotFound { region_id },
            WorkerError::RegionState {
                region_id,
                state: RegionState::ReadOnly,
                operation: "write",
            },
            WorkerError::NotLeader {
                region_id,
                why: "follower".into(),
            },
            WorkerError::NotCaughtUp {
                region_id,
                flushed_entry_id: 1,
                last_entry_id: 2,
            },
            WorkerError::ManifestBehind {
                region_id,
                version: 1,
                wanted: 2,
            },
            WorkerError::InvalidWrite {
                source: WriteError::EmptyBatch {
                    region_id,
                    op_type: strata_request::OpType::Put,
                },
            },
            WorkerError::InvalidRequest {
                region_id,
                reason: "bad".into(),
            },
            WorkerError::RejectWrite {
                region_id,
                usage: 10,
                stalled: 0,
                limit: 10,
            },
            WorkerError::Wal {
                source: Arc::new(WalError::Poisoned {
                    reason: "sync failed".into(),
                }),
            },
            WorkerError::Wal {
                source: Arc::new(WalError::Stopped),
            },
            WorkerError::CorruptWalEntry {
                region_id,
                entry_id: 1,
                reason: "bad".into(),
            },
            WorkerError::StaleEntry {
                region_id,
                entry_id: 1,
                flushed_entry_id: 2,
            },
            WorkerError::Manifest {
                region_id,
                source: Arc::new(ManifestError::Fenced {
                    region_id,
                    version: 3,
                }),
            },
            WorkerError::Commit {
                source: CommitError::Stale {
                    region_id,
                    reason: "an input is gone".into(),
                },
            },
            WorkerError::Storage {
                region_id,
                source: Arc::new(StorageError::MemtablesNotEmpty { region_id }),
            },
            WorkerError::Flush {
                source: FlushError::RegionDropped { region_id },
            },
            WorkerError::Compaction {
                source: CompactionError::Dropped { region_id },
            },
            WorkerError::RegionClosed { region_id },
            WorkerError::WorkerStopped,
            WorkerError::Unsupported { what: "x".into() },
            WorkerError::ReadOnly { operation: "write" },
            WorkerError::Start { reason: "x".into() },
        ];
        // No wildcard: a new variant must be numbered (and sampled) before this compiles.
        let variant = |error: &WorkerError| match error {
            WorkerError::RegionNotFound { .. } => 0,
            WorkerError::RegionState { .. } => 1,
            WorkerError::NotLeader { .. } => 2,
            WorkerError::NotCaughtUp { .. } => 3,
            WorkerError::ManifestBehind { .. } => 4,
            WorkerError::InvalidWrite { .. } => 5,
            WorkerError::InvalidRequest { .. } => 6,
            WorkerError::RejectWrite { .. } => 7,
            WorkerError::Wal { .. } => 8,
            WorkerError::CorruptWalEntry { .. } => 9,
            WorkerError::StaleEntry { .. } => 10,
            WorkerError::Manifest { .. } => 11,
            WorkerError::Commit { .. } => 12,
            WorkerError::Storage { .. } => 13,
            WorkerError::Flush { .. } => 14,
            WorkerError::Compaction { .. } => 15,
            WorkerError::RegionClosed { .. } => 16,
            WorkerError::WorkerStopped => 17,
            WorkerError::Unsupported { .. } => 18,
            WorkerError::ReadOnly { .. } => 19,
            WorkerError::Start { .. } => 20,
        };
        let mut sampled = [false; 21];
        samples.iter().for_each(|e| sampled[variant(e)] = true);
        assert!(!sampled.contains(&false), "unsampled variants: {sampled:?}");
        samples
    }
}

impl From<CompactionError> for WorkerError {
    fn from(source: CompactionError) -> Self {
        WorkerError::Compaction { source }
    }
}

impl From<FlushError> for WorkerError {
    fn from(source: FlushError) -> Self {
        WorkerError::Flush { source }
    }
}

impl From<CommitError> for WorkerError {
    fn from(source: CommitError) -> Self {
        WorkerError::Commit { source }
    }
}

impl From<Unanswered> for WorkerError {
    fn from(_: Unanswered) -> Self {
        WorkerError::WorkerStopped
    }
}

/// Results of the workers.
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_sample() {
        // Panics naming the unsampled variant's number.
        assert!(WorkerError::every_variant().len() >= 22);
    }

    #[test]
    fn rejected_writes_and_wal_failures_are_retryable_invalid_requests_are_not() {
        let region_id = RegionId::new(1, 0);
        let rejected = WorkerError::RejectWrite {
            region_id,
            usage: 10,
            stalled: 0,
            limit: 10,
        };
        assert_eq!(rejected.kind(), ErrorKind::WriteRejected);
        assert!(rejected.is_retryable());
        let invalid = WorkerError::InvalidRequest {
            region_id,
            reason: "x".into(),
        };
        assert!(!invalid.is_retryable());
        assert_eq!(
            WorkerError::from(Unanswered).kind(),
            ErrorKind::Stopped,
            "a dropped request means the engine stopped"
        );
        assert_eq!(
            WorkerError::from(FlushError::RegionDropped { region_id }).kind(),
            ErrorKind::RegionState
        );
    }
}
