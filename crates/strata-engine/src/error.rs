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
    use std::sync::Arc;

    use strata_compaction::CompactionError;
    use strata_flush::FlushError;
    use strata_storage::{CommitError, ManifestError};

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

    #[test]
    fn a_lock_file_the_engine_may_not_touch_is_no_retryable_error() {
        let io = |kind: std::io::ErrorKind| LockError::Io {
            operation: "open the lock file",
            path: "/data/LOCK".into(),
            source: std::io::Error::from(kind),
        };
        let denied = io(std::io::ErrorKind::PermissionDenied);
        assert_eq!(denied.kind(), ErrorKind::InvalidRequest, "{denied}");
        // A file system without locks.
        let unsupported = io(std::io::ErrorKind::Unsupported);
        assert_eq!(unsupported.kind(), ErrorKind::Unsupported, "{unsupported}");
        let full = io(std::io::ErrorKind::StorageFull);
        assert_eq!(full.kind(), ErrorKind::Storage, "{full}");
    }

    /// A lower error the walk carries to the facade: what it says and the kind it gives
    /// itself.
    struct Sample {
        /// Its type and message.
        name: String,
        /// Its own kind.
        kind: ErrorKind,
    }

    impl Sample {
        fn new(ty: &str, error: &impl fmt::Display, kind: ErrorKind) -> Self {
            Self {
                name: format!("{ty} \"{error}\" ({kind:?})"),
                kind,
            }
        }
    }

    /// Carries samples along every way a lower error reaches [`Error`], checking at every
    /// level — each crate's own wrappers, the facade, and the facade inside
    /// `UnflushedAtStop` — that the kind and the retryability are the sample's own.
    #[derive(Default)]
    struct Walk {
        /// Which `Inner` variants were reached.
        reached: [bool; 8],
    }

    const REGION: RegionId = RegionId::new(1, 2);

    impl Walk {
        /// A wrapper one level down classifies as the sample does.
        fn level(sample: &Sample, path: &str, kind: ErrorKind) {
            assert_eq!(kind, sample.kind, "{}: the kind via {path}", sample.name);
        }

        fn facade(&mut self, sample: &Sample, path: &str, facade: Error) {
            self.check(sample, path, &facade);
            let stopping = Error::from(Inner::UnflushedAtStop {
                region_id: REGION,
                source: Box::new(facade),
            });
            self.check(
                sample,
                &format!("{path} → Inner::UnflushedAtStop"),
                &stopping,
            );
        }

        fn check(&mut self, sample: &Sample, path: &str, facade: &Error) {
            // No wildcard: a new way into the facade does not compile until it is here
            // (and then the walk's end wants it reached).
            self.reached[match &*facade.0 {
                Inner::Worker { .. } => 0,
                Inner::Config { .. } => 1,
                Inner::ObjectStore { .. } => 2,
                Inner::Lock { .. } => 3,
                Inner::OpenWal { .. } => 4,
                Inner::UnflushedAtStop { .. } => 5,
                Inner::Scan { .. } => 6,
                Inner::ListRegions { .. } => 7,
            }] = true;
            assert_eq!(
                facade.kind(),
                sample.kind,
                "{}: the facade's kind via {path}",
                sample.name
            );
            assert_eq!(
                facade.is_retryable(),
                sample.kind.is_retryable(),
                "{}: the facade's retryability via {path}",
                sample.name
            );
        }

        fn worker(&mut self, sample: &Sample, path: &str, error: WorkerError) {
            Self::level(sample, path, error.kind());
            assert_eq!(
                error.is_retryable(),
                sample.kind.is_retryable(),
                "{}: WorkerError::is_retryable via {path}",
                sample.name
            );
            self.facade(sample, &format!("{path} → Error"), Error::from(error));
        }

        fn flush(&mut self, sample: &Sample, path: &str, error: FlushError) {
            Self::level(sample, path, error.kind());
            let path = format!("{path} → WorkerError::Flush");
            self.worker(sample, &path, WorkerError::from(error));
        }

        fn compaction(&mut self, sample: &Sample, path: &str, error: CompactionError) {
            Self::level(sample, path, error.kind());
            let path = format!("{path} → WorkerError::Compaction");
            self.worker(sample, &path, WorkerError::from(error));
        }

        fn commit(&mut self, sample: &Sample, path: &str, error: CommitError) {
            Self::level(sample, path, error.kind());
            self.worker(
                sample,
                &format!("{path} → WorkerError::Commit"),
                WorkerError::from(error.clone()),
            );
            self.flush(
                sample,
                &format!("{path} → FlushError::Commit"),
                FlushError::Commit {
                    region_id: REGION,
                    source: error.clone(),
                },
            );
            self.compaction(
                sample,
                &format!("{path} → CompactionError::Commit"),
                CompactionError::Commit {
                    region_id: REGION,
                    source: error,
                },
            );
        }

        fn manifest(&mut self, sample: &Sample, path: &str, error: Arc<ManifestError>) {
            Self::level(sample, path, error.kind());
            self.worker(
                sample,
                &format!("{path} → WorkerError::Manifest"),
                WorkerError::Manifest {
                    region_id: REGION,
                    source: error.clone(),
                },
            );
            self.commit(
                sample,
                &format!("{path} → CommitError::Manifest"),
                CommitError::Manifest {
                    region_id: REGION,
                    source: error.clone(),
                },
            );
            // The committer wraps only a fenced manifest error in `Fenced`.
            if error.is_fenced() {
                self.commit(
                    sample,
                    &format!("{path} → CommitError::Fenced"),
                    CommitError::Fenced {
                        region_id: REGION,
                        source: error,
                    },
                );
            }
        }

        /// `make` makes the same sample again (storage errors are not `Clone`).
        fn storage(&mut self, sample: &Sample, path: &str, make: &dyn Fn() -> StorageError) {
            Self::level(sample, path, make().kind());
            self.worker(
                sample,
                &format!("{path} → WorkerError::Storage"),
                WorkerError::Storage {
                    region_id: REGION,
                    source: Arc::new(make()),
                },
            );
            self.flush(
                sample,
                &format!("{path} → FlushError::WriteSst"),
                FlushError::WriteSst {
                    region_id: REGION,
                    source: Arc::new(make()),
                },
            );
            self.compaction(
                sample,
                &format!("{path} → CompactionError::Sst"),
                CompactionError::Sst {
                    region_id: REGION,
                    source: Arc::new(make()),
                },
            );
            let scan = Inner::Scan {
                region_id: REGION,
                source: make(),
            };
            self.facade(sample, &format!("{path} → Inner::Scan"), scan.into());
            let list = Inner::ListRegions { source: make() };
            self.facade(sample, &format!("{path} → Inner::ListRegions"), list.into());
        }

        fn wal(&mut self, sample: &Sample, path: &str, error: WalError) {
            Self::level(sample, path, error.kind());
            assert_eq!(
                error.is_retryable(),
                sample.kind.is_retryable(),
                "{}: WalError::is_retryable",
                sample.name
            );
            self.worker(
                sample,
                &format!("{path} → WorkerError::Wal"),
                WorkerError::Wal {
                    source: Arc::new(error.clone()),
                },
            );
            let open = Inner::OpenWal { source: error };
            self.facade(sample, &format!("{path} → Inner::OpenWal"), open.into());
        }
    }

    #[test]
    fn every_lower_error_keeps_its_kind_and_retryability_through_the_facade() {
        let mut walk = Walk::default();
        for error in WalError::every_variant() {
            let sample = Sample::new("WalError", &error, error.kind());
            walk.wal(&sample, "WalError", error);
        }
        let storage = StorageError::every_variant;
        for i in 0..storage().len() {
            let make = || storage().swap_remove(i);
            let sample = Sample::new("StorageError", &make(), make().kind());
            walk.storage(&sample, "StorageError", &make);
        }
        for error in ManifestError::every_variant() {
            let sample = Sample::new("ManifestError", &error, error.kind());
            walk.manifest(&sample, "ManifestError", Arc::new(error));
        }
        for error in CommitError::every_variant() {
            let sample = Sample::new("CommitError", &error, error.kind());
            walk.commit(&sample, "CommitError", error);
        }
        for error in FlushError::every_variant() {
            let sample = Sample::new("FlushError", &error, error.kind());
            walk.flush(&sample, "FlushError", error);
        }
        for error in CompactionError::every_variant() {
            let sample = Sample::new("CompactionError", &error, error.kind());
            walk.compaction(&sample, "CompactionError", error);
        }
        for error in WorkerError::every_variant() {
            let sample = Sample::new("WorkerError", &error, error.kind());
            walk.worker(&sample, "WorkerError", error);
        }
        for error in ObjectStoreError::every_variant() {
            let sample = Sample::new("ObjectStoreError", &error, error.kind());
            let facade = Inner::ObjectStore { source: error }.into();
            walk.facade(&sample, "ObjectStoreError → Inner::ObjectStore", facade);
        }
        for error in LockError::every_variant() {
            let sample = Sample::new("LockError", &error, error.kind());
            let facade = Inner::Lock { source: error }.into();
            walk.facade(&sample, "LockError → Inner::Lock", facade);
        }
        // Every way a lower error enters the facade was taken (`Config` wraps none).
        assert_eq!(
            walk.reached,
            [true, false, true, true, true, true, true, true],
            "Inner variants reached: Worker, Config, ObjectStore, Lock, OpenWal, UnflushedAtStop, Scan, ListRegions"
        );
    }
}
