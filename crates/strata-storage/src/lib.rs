//! Strata's region data: what a region holds and how it is read.
//!
//! - [`TimeSeriesMemtable`]: the in-memory write buffer of a region, charged to the global
//!   write buffer; yields rows sorted by (primary key, timestamp, sequence descending).
//! - [`KeyCodec`]: comparable primary keys from tag columns.
//! - [`SortedBatch`]: the read path's unit of data; [`merge`] k-way merges sorted
//!   [`BatchStream`]s and deduplicates them (newest row per key and timestamp wins; deletes
//!   dropped for scans, kept for flushes).
//!
//! - SSTs: [`write_sst`] streams sorted batches into plain Parquet on an OpenDAL
//!   `Operator`; [`read_sst`] reads them back with projection and time pruning.
//!
//! - [`ObjectStoreConfig`]: `fs` (default), `memory` or `s3` as serde data building an
//!   OpenDAL operator; region paths ([`region_dir`]) come from ids only. The `fs` store
//!   makes every write and delete durable, directory entries included, before it returns
//!   ([`DurableFsLayer`]).
//!
//! - [`ManifestManager`]: the versioned manifest (JSON deltas, checkpoints,
//!   `_last_checkpoint` with a checksum written last).
//! - [`RegionCommitter`]: a region's manifest and [`RegionState`] behind one lock — the one
//!   way anything commits (flushes, compactions, alter, truncate, upgrades) or changes the
//!   state, and the one reaction to being fenced out (the region follows).
//!
//! - [`VersionControl`]: immutable [`Version`] snapshots swapped atomically; [`scan`] reads
//!   a snapshot (in key order, or time group by time group: [`ScanOrder`]);
//!   [`flush_memtable`] writes a memtable as an SST.
//!
//! With the `testing` feature, `testing::FaultLayer` injects object-store faults for other
//! crates' tests.
//!
//! # Layering
//!
//! Depends on `strata-base`, `strata-request` and `strata-buffer` (and `strata-workload`
//! in tests) only; it **must never depend on** the WAL, the flush pipeline, the workers or
//! the engine. Inside it, modules import downward only (the floors are listed in
//! `docs/architecture.md`): the ground floor (`error`, `time_range`, `plain`, `window`,
//! `request`, `object_store`), then keys and batches, memtables and SSTs, the manifest,
//! versions and reads, and on top flushes and the region layer (committer, files).

mod batch;
mod durable_fs;
mod error;
mod flush;
mod format;
mod key;
mod manifest;
mod memtable;
mod object_store;
mod plain;
mod read;
mod region;
mod request;
mod sst;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod time_range;
mod version;
mod window;

pub use batch::{BatchStream, OP_TYPE_COLUMN, SEQUENCE_COLUMN, SortedBatch, output_schema};
pub use durable_fs::DurableFsLayer;
pub use error::StorageError;
pub use flush::{flush_memtable, flush_memtable_windowed};
pub use format::{CHECKPOINT_FORMAT, DELTA_FORMAT, SST_FORMAT, SST_FORMAT_KEY};
pub use key::KeyCodec;
pub use manifest::{
    ManifestConfig, ManifestError, ManifestManager, RegionEdit, RegionManifest, RegionMetaAction,
    RegionMetaActionList,
};
pub use memtable::{MemtableId, MemtableIter, MemtableStats, TimeSeriesMemtable};
pub use object_store::{
    ObjectStoreConfig, ObjectStoreError, S3Config, Secret, list_regions, region_data_dir,
    region_dir, region_manifest_dir,
};
pub use read::{MergeOptions, RecordBatchStream, RowCount, count, merge, scan};
pub use region::{
    CommitError, CommitGuard, CommitPurpose, Committer, RegionCommitter, RegionFiles, RegionState,
};
pub use request::{ScanOrder, ScanRequest};
pub use sst::{
    FileHandle, FileId, FileMeta, FilePurger, FilePurgerRef, FileTracker, OpenedSst,
    REGION_METADATA_KEY, SstReadOptions, SstWriteOptions, TIME_SLICE_KEY, read_sst,
    read_sst_slices, slice_width, time_slices, verify_sst, write_sst, write_ssts,
    writer_properties,
};
pub use time_range::TimeRange;
pub use version::{MAX_LEVEL, MemtableVersion, Version, VersionControl, VersionControlData};
pub use window::{INFERRED_WINDOWS_SECS, infer_window_secs, window_start, window_width};
