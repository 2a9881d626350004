//! [`StorageError`]: errors of the region data layer.

use snafu::Snafu;
use strata_base::ErrorKind;
use strata_request::RegionId;

/// Errors from memtables and the read path.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum StorageError {
    /// A batch does not have the region schema the memtable was built for.
    #[snafu(display(
        "region {region_id}: memtable write with a batch that does not match schema version {schema_version}"
    ))]
    SchemaMismatch {
        /// The region.
        region_id: RegionId,
        /// Schema version of the memtable.
        schema_version: u64,
    },
    /// The memtable was frozen and takes no more writes.
    #[snafu(display("region {region_id}: memtable {memtable_id} is frozen"))]
    Frozen {
        /// The region.
        region_id: RegionId,
        /// The memtable.
        memtable_id: u32,
    },
    /// A schema change needs empty memtables (flush first).
    #[snafu(display(
        "region {region_id}: the memtables must be empty to change the schema; flush first"
    ))]
    MemtablesNotEmpty {
        /// The region.
        region_id: RegionId,
    },
    /// A projection names a column index the schema does not have.
    #[snafu(display(
        "region {region_id}: projection index {index} is out of range ({columns} columns)"
    ))]
    BadProjection {
        /// The region.
        region_id: RegionId,
        /// The bad index.
        index: usize,
        /// Number of columns.
        columns: usize,
    },
    /// A scan's columns by name do not fit the region's schema (an unknown name, or
    /// names and indices both given).
    #[snafu(display("region {region_id}: bad scan columns: {reason}"))]
    BadColumns {
        /// The region.
        region_id: RegionId,
        /// What is wrong, naming the column.
        reason: String,
    },
    /// The object store failed.
    #[snafu(display("object store: {operation} {path}: {source}"))]
    ObjectStore {
        /// What was being done.
        operation: &'static str,
        /// The object's path.
        path: String,
        /// OpenDAL's error (its kind says whether a retry can help).
        #[snafu(source(from(opendal::Error, Box::new)))]
        source: Box<opendal::Error>,
    },
    /// Writing Parquet failed, or the store failed under a Parquet read or write (an OpenDAL
    /// error inside, classified as the store's). A file a reader cannot decode is
    /// [`CorruptSst`](Self::CorruptSst) instead.
    #[snafu(display("parquet file {path}: {source}"))]
    Parquet {
        /// The file.
        path: String,
        /// The Parquet library's complaint.
        #[snafu(source(from(parquet::errors::ParquetError, Box::new)))]
        source: Box<parquet::errors::ParquetError>,
    },
    /// A file's contents are not what Strata wrote.
    #[snafu(display("SST file {path} is corrupted or not a Strata SST: {reason}"))]
    CorruptSst {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An SST's footer says it is in a format newer than this build reads
    /// ([`SST_FORMAT`](crate::SST_FORMAT)).
    #[snafu(display(
        "SST file {path} is in format {found}, newer than this build reads (format {newest} at most): read it with a newer Strata build — or, if no newer build wrote it, the file is damaged"
    ))]
    NewerFormat {
        /// The file.
        path: String,
        /// Its format.
        found: u32,
        /// The newest format this build reads.
        newest: u32,
    },
    /// An Arrow kernel failed (a bug if it ever happens: inputs are validated).
    #[snafu(display("region {region_id}: {operation}: {source}"))]
    Arrow {
        /// The region.
        region_id: RegionId,
        /// What was being done.
        operation: &'static str,
        /// Arrow's complaint.
        source: arrow_schema::ArrowError,
    },
    /// The reader gave up on purpose (a compaction cancelled by a DDL).
    #[snafu(display("cancelled: {reason}"))]
    Cancelled {
        /// Who cancelled and why.
        reason: String,
    },
}

impl StorageError {
    /// The coarse class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::CorruptSst { .. } => ErrorKind::Corruption,
            StorageError::NewerFormat { .. } => ErrorKind::NewerFormat,
            StorageError::ObjectStore { source, .. } => Self::object_store_kind(source),
            // The Parquet reader and writer do their I/O through OpenDAL: its errors come
            // back wrapped. Anything else is taken as transient too (see the docs).
            // Readers turn everything but the store's own failures into `CorruptSst`, so
            // what is left without an OpenDAL error inside is the writer refusing its own
            // input: a bug, which no retry mends.
            StorageError::Parquet { source, .. } => match &**source {
                parquet::errors::ParquetError::External(inner) => inner
                    .downcast_ref::<opendal::Error>()
                    .map_or(ErrorKind::Internal, Self::object_store_kind),
                _ => ErrorKind::Internal,
            },
            StorageError::BadProjection { .. } | StorageError::BadColumns { .. } => {
                ErrorKind::InvalidRequest
            }
            StorageError::MemtablesNotEmpty { .. }
            | StorageError::Frozen { .. }
            | StorageError::Cancelled { .. } => ErrorKind::RegionState,
            StorageError::SchemaMismatch { .. } | StorageError::Arrow { .. } => ErrorKind::Internal,
        }
    }

    /// The coarse class of an object-store (OpenDAL) error, wherever Strata meets one
    /// (SSTs, the manifest, the worker's deletes): a store that refuses access or is
    /// misconfigured ([`InvalidRequest`](ErrorKind::InvalidRequest)) or lacks the
    /// operation ([`Unsupported`](ErrorKind::Unsupported)) stays so however often the
    /// request is retried; anything else is [`Storage`](ErrorKind::Storage), retryable.
    ///
    /// That includes `NotFound`: a reader in another process can find a file the
    /// manifest it read names deleted (a compaction's inputs linger, then go), and a
    /// retry, reading the manifest again, succeeds. OpenDAL's own retry status is not
    /// used: the S3 store's retry layer marks a temporary error it gave up on
    /// persistent, though the store may answer a minute later.
    pub fn object_store_kind(error: &opendal::Error) -> ErrorKind {
        match error.kind() {
            opendal::ErrorKind::PermissionDenied | opendal::ErrorKind::ConfigInvalid => {
                ErrorKind::InvalidRequest
            }
            opendal::ErrorKind::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Storage,
        }
    }

    /// One OpenDAL error of every kind (a temporary and a persistent `Unexpected` one),
    /// for the samples of every error that wraps one.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn object_store_samples() -> Vec<opendal::Error> {
        use opendal::ErrorKind as Dal;
        let error = |kind| opendal::Error::new(kind, "from the store");
        let mut samples = vec![
            error(Dal::Unexpected).set_temporary(),
            error(Dal::Unexpected).set_persistent(),
        ];
        // `opendal::ErrorKind` is not exhaustive (no match can list it): every kind of
        // OpenDAL 0.59.
        samples.extend(
            [
                Dal::Unsupported,
                Dal::ConfigInvalid,
                Dal::NotFound,
                Dal::PermissionDenied,
                Dal::IsADirectory,
                Dal::NotADirectory,
                Dal::AlreadyExists,
                Dal::RateLimited,
                Dal::IsSameFile,
                Dal::ConditionNotMatch,
                Dal::RangeNotSatisfied,
                Dal::Conflict,
            ]
            .map(error),
        );
        samples
    }

    /// One value of every variant — one [`ObjectStore`](Self::ObjectStore) per OpenDAL
    /// error kind ([`object_store_samples`](Self::object_store_samples)), and
    /// [`Parquet`](Self::Parquet) with and without an OpenDAL error inside — for tests
    /// that walk every error (strata-engine's checks that its public error keeps each
    /// one's kind and retryability). Adding a variant fails to compile here until it is
    /// numbered, and then this panics until it has a sample.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn every_variant() -> Vec<Self> {
        use parquet::errors::ParquetError;
        let region_id = RegionId::new(1, 2);
        let mut samples: Vec<Self> = Self::object_store_samples()
            .into_iter()
            .map(|source| StorageError::ObjectStore {
                operation: "read SST",
                path: "a.parquet".into(),
                source: Box::new(source),
            })
            .collect();
        let parquet = |source| StorageError::Parquet {
            path: "a.parquet".into(),
            source: Box::new(source),
        };
        samples.extend([
            StorageError::SchemaMismatch {
                region_id,
                schema_version: 1,
            },
            StorageError::Frozen {
                region_id,
                memtable_id: 1,
            },
            StorageError::MemtablesNotEmpty { region_id },
            StorageError::BadProjection {
                region_id,
                index: 9,
                columns: 3,
            },
            StorageError::BadColumns {
                region_id,
                reason: "no column named \"x\"".into(),
            },
            parquet(ParquetError::General("bad page".into())),
            parquet(ParquetError::External(Box::new(
                opendal::Error::new(opendal::ErrorKind::Unexpected, "reset").set_temporary(),
            ))),
            parquet(ParquetError::External(Box::new(opendal::Error::new(
                opendal::ErrorKind::PermissionDenied,
                "denied",
            )))),
            StorageError::CorruptSst {
                path: "a.parquet".into(),
                reason: "bad footer".into(),
            },
            StorageError::NewerFormat {
                path: "a.parquet".into(),
                found: 9,
                newest: 2,
            },
            StorageError::Arrow {
                region_id,
                operation: "sort",
                source: arrow_schema::ArrowError::ComputeError("x".into()),
            },
            StorageError::Cancelled {
                reason: "truncate".into(),
            },
        ]);
        // No wildcard: a new variant must be numbered (and sampled) before this compiles.
        let variant = |error: &StorageError| match error {
            StorageError::SchemaMismatch { .. } => 0,
            StorageError::Frozen { .. } => 1,
            StorageError::MemtablesNotEmpty { .. } => 2,
            StorageError::BadProjection { .. } => 3,
            StorageError::ObjectStore { .. } => 4,
            StorageError::Parquet { .. } => 5,
            StorageError::CorruptSst { .. } => 6,
            StorageError::NewerFormat { .. } => 7,
            StorageError::Arrow { .. } => 8,
            StorageError::Cancelled { .. } => 9,
            StorageError::BadColumns { .. } => 10,
        };
        let mut sampled = [false; 11];
        samples.iter().for_each(|e| sampled[variant(e)] = true);
        assert!(!sampled.contains(&false), "unsampled variants: {sampled:?}");
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestError;

    /// An OpenDAL error of `kind` (permanent, as OpenDAL makes them by default).
    fn opendal(kind: opendal::ErrorKind) -> opendal::Error {
        opendal::Error::new(kind, "from the store")
    }

    #[test]
    fn every_variant_has_a_sample() {
        // Panics naming the unsampled variant's number.
        assert!(StorageError::every_variant().len() >= 11);
        assert!(ManifestError::every_variant().len() >= 6);
        assert!(crate::ObjectStoreError::every_variant().len() >= 4);
        assert!(crate::CommitError::every_variant().len() >= 4);
    }

    #[test]
    fn an_object_store_error_is_retryable_only_when_a_retry_can_help() {
        use opendal::ErrorKind as Dal;
        // Retrying cannot help a store that refuses us, is misconfigured or lacks the
        // operation: only a changed configuration (or store) does.
        let cases = [
            (Dal::PermissionDenied, ErrorKind::InvalidRequest),
            (Dal::ConfigInvalid, ErrorKind::InvalidRequest),
            (Dal::Unsupported, ErrorKind::Unsupported),
            (Dal::Unexpected, ErrorKind::Storage),
            (Dal::RateLimited, ErrorKind::Storage),
            (Dal::NotFound, ErrorKind::Storage),
        ];
        for (dal, kind) in cases {
            let sst = StorageError::ObjectStore {
                operation: "read SST",
                path: "a.parquet".into(),
                source: Box::new(opendal(dal)),
            };
            assert_eq!(sst.kind(), kind, "{sst}");
            let manifest = ManifestError::ObjectStore {
                operation: "read delta",
                path: "1.json".into(),
                source: Box::new(opendal(dal)),
            };
            assert_eq!(manifest.kind(), kind, "{manifest}");
            // The Parquet reader and writer do their I/O through OpenDAL.
            let parquet = StorageError::Parquet {
                path: "a.parquet".into(),
                source: Box::new(parquet::errors::ParquetError::External(Box::new(opendal(
                    dal,
                )))),
            };
            assert_eq!(parquet.kind(), kind, "{parquet}");
        }
    }
}
