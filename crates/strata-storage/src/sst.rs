//! SST files: sorted, deduplicated rows of one region as plain Parquet on an object store.
//!
//! A file holds every region column under its own name (tags as strings, the timestamp,
//! fields) plus `__sequence` (UInt64) and `__op_type` (UInt8, 1 = put, 0 = delete), sorted
//! by (tags, timestamp, sequence descending) — within each [time slice](slice_width) of a file
//! written in slices — zstd-compressed except the tags and
//! `__op_type` (sorted dictionary runs already; see [`writer_properties`]); the region schema
//! is stored as JSON under the key-value metadata key [`REGION_METADATA_KEY`]. Standard tools
//! (pyarrow, DuckDB, DataFusion) read it as a table. A file that passes through a scan
//! unmerged can be read [rows only](SstReadOptions::rows_only).

mod handle;
mod opendal_io;
mod reader;
mod slices;
mod verify;
mod writer;

use serde::{Deserialize, Serialize};
use strata_request::RegionId;

use crate::time_range::TimeRange;
pub use handle::{FileHandle, FilePurger, FilePurgerRef, FileTracker};
pub use reader::{OpenedSst, SstReadOptions, read_sst, read_sst_slices};
pub(crate) use reader::{SharedOpen, concat, read_sst_shared};
pub(crate) use slices::one_slice_within;
pub use slices::{TIME_SLICE_KEY, slice_width, time_slices};
pub use verify::verify_sst;
pub use writer::{SstWriteOptions, write_sst, write_ssts, writer_properties};

/// Key-value metadata key holding the region schema (JSON).
pub const REGION_METADATA_KEY: &str = "strata.region_metadata";

/// Identifies an SST file; random, so files from different writers never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileId(uuid::Uuid);

impl FileId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_hyphenated())
    }
}

impl std::str::FromStr for FileId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(FileId)
    }
}

/// What the manifest records about an SST file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileMeta {
    /// The region it belongs to.
    pub region_id: RegionId,
    /// The file's id; its name is `{file_id}.parquet`.
    pub file_id: FileId,
    /// LSM level: 0 for flushed files.
    pub level: u8,
    /// Smallest and largest timestamp in the file (inclusive).
    pub time_range: (i64, i64),
    /// Rows in the file.
    pub num_rows: u64,
    /// Parquet row groups.
    pub num_row_groups: u64,
    /// File size in bytes.
    pub file_size: u64,
    /// Largest sequence in the file.
    pub max_sequence: u64,
    /// crc32c of the whole file, computed while it was written (Parquet pages carry no
    /// checksums of their own); checked by [`verify_sst`].
    pub checksum: u32,
    /// Delete markers among the rows; `None` for files written before it was recorded
    /// (a count then reads the file). With it, a count of a file no other source overlaps
    /// needs no read at all ([`count`](crate::count)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_deletes: Option<u64>,
    /// The width of the file's time slices ([`slice_width`]): its rows are sorted by key
    /// within each aligned interval of this width, oldest interval first. `None` for a file
    /// of one slice, sorted by key throughout (and for every file written before slices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_slice: Option<i64>,
}

#[cfg(test)]
mod tests;

/// Deletes `files` from the region directory `dir`, one by one: SSTs no manifest names
/// (`what` says which, for the log). Best effort: a file that cannot be deleted is
/// garbage, never read — logged, and swept by the region's next read-write open.
pub(crate) async fn delete_ssts(
    store: &opendal::Operator,
    dir: &str,
    files: &[FileMeta],
    what: &str,
) {
    for file in files {
        let path = file.path(dir);
        if let Err(error) = store.delete(&path).await {
            tracing::warn!(path, %error, "cannot delete {what}");
        }
    }
}

impl FileMeta {
    /// The file's path under the region directory `dir`.
    pub fn path(&self, dir: &str) -> String {
        format!("{}/{}.parquet", dir.trim_end_matches('/'), self.file_id)
    }

    /// The file's time range.
    pub fn time_range(&self) -> TimeRange {
        TimeRange {
            start: self.time_range.0,
            end: self.time_range.1,
        }
    }
}
