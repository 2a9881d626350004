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
    /// Writing or decoding Parquet failed.
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
        "SST file {path} is in format {found}, newer than this build reads (format {newest} at most); read it with a newer Strata build"
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
            // Parquet errors wrap the object store's I/O errors on writes: transient.
            StorageError::Parquet { .. } | StorageError::ObjectStore { .. } => ErrorKind::Storage,
            StorageError::BadProjection { .. } => ErrorKind::InvalidRequest,
            StorageError::MemtablesNotEmpty { .. }
            | StorageError::Frozen { .. }
            | StorageError::Cancelled { .. } => ErrorKind::RegionState,
            StorageError::SchemaMismatch { .. } | StorageError::Arrow { .. } => ErrorKind::Internal,
        }
    }
}
