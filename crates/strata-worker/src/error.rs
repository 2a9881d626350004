//! [`WorkerError`]: why a request to a region worker failed, and [`ErrorKind`], the coarse
//! class a caller acts on.

use std::sync::Arc;

use snafu::Snafu;
use strata_flush::FlushError;
use strata_request::{RegionId, Unanswered, WriteError};
use strata_storage::{ManifestError, StorageError};
use strata_wal::WalError;

use crate::region::RegionState;

/// The coarse class of an error: what the caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request itself is wrong (schema mismatch, bad DDL, bad config); fix it.
    InvalidRequest,
    /// The region is not open on this engine.
    RegionNotFound,
    /// The region is open but not in a state that allows the request (read-only, being
    /// altered, dropped or truncated, or a flush it waited for failed).
    RegionState,
    /// Memory is over the reject limit; retry once flushes catch up.
    WriteRejected,
    /// Storage I/O failed: the object store (SST or manifest I/O) or local files.
    Storage,
    /// The write-ahead log failed.
    Wal,
    /// Data read back from disk or object store is damaged.
    Corruption,
    /// The engine is stopping or stopped.
    Stopped,
    /// The feature is not supported by this engine.
    Unsupported,
    /// The engine was opened read-only; open a read-write engine (the directory's one
    /// writer) to change data.
    ReadOnly,
    /// The data directory is held by another read-write engine (the error names its pid);
    /// stop that one first, or open read-only.
    Locked,
    /// A bug: an invariant did not hold.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same request later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RegionState | ErrorKind::WriteRejected | ErrorKind::Storage | ErrorKind::Wal
        )
    }
}

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
    /// Region data (memtables, SSTs) failed.
    #[snafu(display("region {region_id}: {source}"))]
    Storage {
        /// The region.
        region_id: RegionId,
        /// The storage error.
        source: Arc<StorageError>,
    },
    /// An object-store call made by the worker failed.
    #[snafu(display("object store: {operation} {path}: {source}"))]
    ObjectStore {
        /// What was being done.
        operation: &'static str,
        /// The path.
        path: String,
        /// OpenDAL's error.
        source: Arc<opendal::Error>,
    },
    /// A flush (or work fenced behind one) failed.
    #[snafu(display("{source}"))]
    Flush {
        /// The flush error.
        source: FlushError,
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
    /// The coarse class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WorkerError::RegionNotFound { .. } => ErrorKind::RegionNotFound,
            WorkerError::RegionState { .. } | WorkerError::RegionClosed { .. } => {
                ErrorKind::RegionState
            }
            WorkerError::InvalidWrite { .. }
            | WorkerError::InvalidRequest { .. }
            | WorkerError::StaleEntry { .. } => ErrorKind::InvalidRequest,
            WorkerError::RejectWrite { .. } => ErrorKind::WriteRejected,
            WorkerError::Wal { source } => match source.as_ref() {
                WalError::Corruption { .. } => ErrorKind::Corruption,
                WalError::Stopped => ErrorKind::Stopped,
                // The same request will never fit: a retry cannot help.
                WalError::RecordTooLarge { .. } => ErrorKind::InvalidRequest,
                WalError::ReadOnly { .. } => ErrorKind::ReadOnly,
                _ => ErrorKind::Wal,
            },
            WorkerError::CorruptWalEntry { .. } => ErrorKind::Corruption,
            WorkerError::Manifest { source, .. } => match source.as_ref() {
                ManifestError::Corrupted { .. } => ErrorKind::Corruption,
                ManifestError::AlreadyExists { .. } => ErrorKind::InvalidRequest,
                _ => ErrorKind::Storage,
            },
            WorkerError::Storage { source, .. } => storage_kind(source),
            WorkerError::ObjectStore { .. } => ErrorKind::Storage,
            WorkerError::Flush { source } => flush_kind(source),
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
}

fn storage_kind(error: &StorageError) -> ErrorKind {
    match error {
        StorageError::CorruptSst { .. } => ErrorKind::Corruption,
        StorageError::ObjectStore { .. } | StorageError::Parquet { .. } => ErrorKind::Storage,
        _ => ErrorKind::Internal,
    }
}

fn flush_kind(error: &FlushError) -> ErrorKind {
    match error {
        FlushError::WriteSst { source, .. } => storage_kind(source),
        FlushError::Commit { .. } => ErrorKind::Storage,
        FlushError::FlushFailed { cause, .. } => match flush_kind(cause) {
            // Fenced work failed because its flush did; the flush is retried, so is the work.
            ErrorKind::Corruption | ErrorKind::Internal => ErrorKind::RegionState,
            kind => kind,
        },
        FlushError::Dropped { .. } | FlushError::Schedule { .. } => ErrorKind::Stopped,
        _ => ErrorKind::RegionState,
    }
}

impl From<FlushError> for WorkerError {
    fn from(source: FlushError) -> Self {
        WorkerError::Flush { source }
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
