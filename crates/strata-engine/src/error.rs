//! [`Error`]: the engine's public error, with a coarse [`ErrorKind`] that says whether a
//! retry can help.

use snafu::Snafu;
use strata_request::RegionId;
use strata_storage::{ObjectStoreError, StorageError};
use strata_wal::WalError;
use strata_worker::WorkerError;

pub use strata_worker::ErrorKind;

/// Errors of the engine.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// A request failed in a region worker.
    #[snafu(display("{source}"), context(false))]
    Worker {
        /// The worker's error.
        source: WorkerError,
    },
    /// The configuration is invalid.
    #[snafu(display("invalid configuration: {reason}"))]
    Config {
        /// What is wrong, naming the key.
        reason: String,
    },
    /// The object store could not be set up.
    #[snafu(display("object store: {source}"))]
    ObjectStore {
        /// Why.
        source: ObjectStoreError,
    },
    /// The data directory could not be locked: another read-write engine holds it, or
    /// the lock file could not be written.
    #[snafu(display("{source}"))]
    Lock {
        /// Why.
        source: crate::lock::LockError,
    },
    /// The WAL could not be opened.
    #[snafu(display("cannot open the WAL: {source}"))]
    OpenWal {
        /// Why.
        source: WalError,
    },
    /// A scan failed.
    #[snafu(display("scan of region {region_id}: {source}"))]
    Scan {
        /// The region.
        region_id: RegionId,
        /// Why.
        source: StorageError,
    },
}

impl Error {
    /// The coarse class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Worker { source } => source.kind(),
            Error::Config { .. } => ErrorKind::InvalidRequest,
            Error::ObjectStore { .. } => ErrorKind::InvalidRequest,
            Error::Lock { source } => match source {
                crate::lock::LockError::InUse { .. } => ErrorKind::Locked,
                crate::lock::LockError::Io { .. } => ErrorKind::Storage,
            },
            Error::OpenWal { source } => match source {
                WalError::Corruption { .. } => ErrorKind::Corruption,
                WalError::Config { .. } => ErrorKind::InvalidRequest,
                _ => ErrorKind::Wal,
            },
            Error::Scan { source, .. } => match source {
                StorageError::CorruptSst { .. } => ErrorKind::Corruption,
                StorageError::ObjectStore { .. } | StorageError::Parquet { .. } => {
                    ErrorKind::Storage
                }
                StorageError::BadProjection { .. } => ErrorKind::InvalidRequest,
                _ => ErrorKind::Internal,
            },
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }
}

/// Results of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
