//! [`Error`]: the engine's public error — opaque: its message, its source chain, and a
//! coarse [`ErrorKind`] that says whether a retry can help. Each lower crate's error
//! classifies itself (`kind()` beside its definition); this one only asks its source.

use std::fmt;

use snafu::Snafu;
use strata_request::RegionId;
use strata_storage::{ObjectStoreError, StorageError};
use strata_wal::WalError;
use strata_worker::WorkerError;

pub use strata_base::ErrorKind;

use crate::lock::LockError;

/// An error of the engine: [`kind`](Self::kind) says what a caller can do about it, the
/// message says what happened, and [`source`](std::error::Error::source) leads to the
/// lower layer's error for whoever wants the details.
pub struct Error(Box<Inner>);

/// What went wrong, privately: callers act on the kind, not on these variants.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub(crate) enum Inner {
    /// A request failed in a region worker.
    #[snafu(display("{source}"), context(false))]
    Worker { source: WorkerError },
    /// The configuration is invalid.
    #[snafu(display("invalid configuration: {reason}"))]
    Config { reason: String },
    /// The object store could not be set up.
    #[snafu(display("object store: {source}"))]
    ObjectStore { source: ObjectStoreError },
    /// The data directory could not be locked.
    #[snafu(display("{source}"))]
    Lock { source: LockError },
    /// The WAL could not be opened.
    #[snafu(display("cannot open the WAL: {source}"))]
    OpenWal { source: WalError },
    /// Without a WAL, stop could not flush a region's rows (they exist only in memory):
    /// the engine did not stop.
    #[snafu(display(
        "not stopping: region {region_id} holds rows that exist only in memory (no WAL) and its flush failed: {source}; make it flushable (writable, the store reachable) and stop again, or exit the process to drop them"
    ))]
    UnflushedAtStop {
        region_id: RegionId,
        source: Box<Error>,
    },
    /// A scan failed.
    #[snafu(display("scan of region {region_id}: {source}"))]
    Scan {
        region_id: RegionId,
        source: StorageError,
    },
    /// Listing the store's regions failed.
    #[snafu(display("cannot list the regions: {source}"))]
    ListRegions { source: StorageError },
}

impl Inner {
    fn kind(&self) -> ErrorKind {
        match self {
            Inner::Worker { source } => source.kind(),
            Inner::Config { .. } => ErrorKind::InvalidRequest,
            Inner::ObjectStore { source } => source.kind(),
            Inner::Lock { source } => source.kind(),
            Inner::OpenWal { source } => source.kind(),
            Inner::Scan { source, .. } => source.kind(),
            Inner::ListRegions { source } => source.kind(),
            Inner::UnflushedAtStop { source, .. } => source.kind(),
        }
    }
}

impl Error {
    /// The coarse class of the error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind()
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }
}

impl From<Inner> for Error {
    fn from(inner: Inner) -> Self {
        Self(Box::new(inner))
    }
}

impl From<WorkerError> for Error {
    fn from(source: WorkerError) -> Self {
        Inner::Worker { source }.into()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind())
            .field("message", &self.to_string())
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

/// Results of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The batches of a scan ([`Engine::scan`](crate::Engine::scan)), in (primary key,
/// timestamp) order; an error (a file that cannot be read, naming it) ends the stream.
pub type RecordBatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<arrow_array::RecordBatch>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_comes_from_the_source_and_the_chain_leads_to_it() {
        let region_id = RegionId::new(1, 2);
        let error = Error::from(WorkerError::RegionNotFound { region_id });
        assert_eq!(error.kind(), ErrorKind::RegionNotFound);
        assert!(!error.is_retryable());
        assert_eq!(error.to_string(), "region 1.2 not found");
        let source = std::error::Error::source(&error).unwrap();
        assert!(source.downcast_ref::<WorkerError>().is_some());

        let wal = Error::from(Inner::OpenWal {
            source: WalError::Stopped,
        });
        assert_eq!(wal.kind(), ErrorKind::Stopped);
        assert_eq!(wal.to_string(), "cannot open the WAL: WAL is stopped");

        // One classification of a storage error, wherever it surfaces.
        let bad = || StorageError::BadProjection {
            region_id,
            index: 9,
            columns: 3,
        };
        let scan = Error::from(Inner::Scan {
            region_id,
            source: bad(),
        });
        assert_eq!(scan.kind(), bad().kind());
        assert_eq!(scan.kind(), ErrorKind::InvalidRequest);
        assert!(format!("{scan:?}").contains("InvalidRequest"));
    }
}
