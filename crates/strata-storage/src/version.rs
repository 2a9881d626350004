//! [`VersionControl`]: a region's current [`Version`] — schema, memtables, SST files and
//! progress ids — as an immutable snapshot swapped atomically.
//!
//! Readers (scans, flush jobs) clone the `Arc<Version>` and keep reading it however the
//! region changes afterwards. Every mutation builds a new `Version` and swaps it under the
//! write lock; in the engine they all happen on the region's worker.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use snafu::ensure;
use strata_buffer::WriteBufferManagerRef;
use strata_request::{RegionMetadata, RegionOptions};

use crate::error::{MemtablesNotEmptySnafu, StorageError};
use crate::key::KeyCodec;
use crate::manifest::{RegionEdit, RegionManifest};
use crate::memtable::{MemtableId, TimeSeriesMemtable};
use crate::sst::{FileHandle, FileId, FileMeta, FileTracker};

/// Number of LSM levels: 0 for flushed files, 1 for compacted ones.
pub const MAX_LEVEL: usize = 2;

/// The mutable memtable and the frozen ones waiting to be flushed (oldest first).
#[derive(Debug, Clone)]
pub struct MemtableVersion {
    /// Takes new writes.
    pub(crate) mutable: Arc<TimeSeriesMemtable>,
    /// Frozen, oldest first; a failed flush leaves them here for the next one.
    pub(crate) immutables: Vec<Arc<TimeSeriesMemtable>>,
}

/// Read access; only this crate changes a `MemtableVersion`.
impl MemtableVersion {
    /// Takes new writes.
    pub fn mutable(&self) -> &Arc<TimeSeriesMemtable> {
        &self.mutable
    }

    /// Frozen, oldest first; a failed flush leaves them here for the next one.
    pub fn immutables(&self) -> &Vec<Arc<TimeSeriesMemtable>> {
        &self.immutables
    }
}

impl MemtableVersion {
    /// Whether no memtable holds a row.
    pub fn is_empty(&self) -> bool {
        self.mutable.is_empty() && self.immutables.iter().all(|m| m.is_empty())
    }

    /// Estimated bytes of the mutable memtable.
    pub fn mutable_usage(&self) -> usize {
        self.mutable.stats().estimated_bytes
    }

    /// Estimated bytes of all memtables.
    pub fn total_usage(&self) -> usize {
        self.mutable_usage()
            + self
                .immutables
                .iter()
                .map(|m| m.stats().estimated_bytes)
                .sum::<usize>()
    }

    /// Every memtable, immutables first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<TimeSeriesMemtable>> {
        self.immutables.iter().chain(std::iter::once(&self.mutable))
    }
}

/// One immutable snapshot of a region.
#[derive(Debug, Clone)]
pub struct Version {
    /// The schema.
    pub(crate) metadata: Arc<RegionMetadata>,
    /// Key codec of the schema.
    pub(crate) codec: Arc<KeyCodec>,
    /// Region options.
    pub(crate) options: RegionOptions,
    /// Memtables.
    pub(crate) memtables: MemtableVersion,
    /// SST files by level.
    pub(crate) files: [BTreeMap<FileId, FileHandle>; MAX_LEVEL],
    /// Counts this region's file handles and deletes removed files (shared by every
    /// version of the region).
    pub(crate) tracker: Arc<FileTracker>,
    /// Every WAL entry up to this is in SST files.
    pub(crate) flushed_entry_id: u64,
    /// Every row up to this sequence is in SST files.
    pub(crate) flushed_sequence: u64,
    /// WAL entries up to this were truncated and must not be replayed.
    pub(crate) truncated_entry_id: Option<u64>,
    /// The compaction time window in seconds, once recorded in the manifest.
    pub(crate) compaction_window_secs: Option<u64>,
}

/// Read access; only this crate changes a `Version`.
impl Version {
    /// The schema.
    pub fn metadata(&self) -> &Arc<RegionMetadata> {
        &self.metadata
    }

    /// Key codec of the schema.
    pub fn codec(&self) -> &Arc<KeyCodec> {
        &self.codec
    }

    /// Region options.
    pub fn options(&self) -> &RegionOptions {
        &self.options
    }

    /// Memtables.
    pub fn memtables(&self) -> &MemtableVersion {
        &self.memtables
    }

    /// SST files by level.
    pub fn files(&self) -> &[BTreeMap<FileId, FileHandle>; MAX_LEVEL] {
        &self.files
    }

    /// Every WAL entry up to this is in SST files.
    pub fn flushed_entry_id(&self) -> u64 {
        self.flushed_entry_id
    }

    /// Every row up to this sequence is in SST files.
    pub fn flushed_sequence(&self) -> u64 {
        self.flushed_sequence
    }

    /// WAL entries up to this were truncated and must not be replayed.
    pub fn truncated_entry_id(&self) -> Option<u64> {
        self.truncated_entry_id
    }

    /// The compaction time window in seconds, once recorded in the manifest.
    pub fn compaction_window_secs(&self) -> Option<u64> {
        self.compaction_window_secs
    }
}

impl Version {
    /// With a TTL in the region options, the oldest timestamp (in the region's timestamp
    /// unit) that is still alive at `now_millis`: rows before it have expired. `None`
    /// without a TTL.
    pub fn ttl_cutoff(&self, now_millis: i64) -> Option<i64> {
        let ttl = self.options.ttl?;
        let ttl_millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.metadata
            .time_index_column()
            .data_type
            .timestamp_from_millis(now_millis.saturating_sub(ttl_millis))
    }

    /// A version with empty memtables built from `manifest`, charging `write_buffer`.
    pub fn from_manifest(
        manifest: &RegionManifest,
        write_buffer: Option<WriteBufferManagerRef>,
    ) -> Result<Self, StorageError> {
        let metadata = Arc::new(manifest.metadata.clone());
        let codec = Arc::new(KeyCodec::new(metadata.clone())?);
        let tracker = FileTracker::new();
        let mut files: [BTreeMap<FileId, FileHandle>; MAX_LEVEL] = Default::default();
        for file in manifest.files.values() {
            files[usize::from(file.level).min(MAX_LEVEL - 1)]
                .insert(file.file_id, FileHandle::new(file.clone(), &tracker));
        }
        Ok(Self {
            memtables: MemtableVersion {
                mutable: Arc::new(TimeSeriesMemtable::new(0, codec.clone(), write_buffer)),
                immutables: Vec::new(),
            },
            metadata,
            codec,
            options: manifest.options.clone(),
            files,
            tracker,
            flushed_entry_id: manifest.flushed_entry_id,
            flushed_sequence: manifest.flushed_sequence,
            truncated_entry_id: manifest.truncated_entry_id,
            compaction_window_secs: manifest.compaction_window_secs,
        })
    }

    /// Every SST file, all levels.
    pub fn all_files(&self) -> impl Iterator<Item = &FileMeta> {
        self.all_file_handles().map(FileHandle::meta)
    }

    /// Handles of every SST file, all levels: a reader that holds them keeps the files
    /// from being deleted.
    pub fn all_file_handles(&self) -> impl Iterator<Item = &FileHandle> {
        self.files.iter().flat_map(|level| level.values())
    }

    /// The region's file tracker: [`FileTracker::released`] waits until no reader holds
    /// any of its files.
    pub fn file_tracker(&self) -> &Arc<FileTracker> {
        &self.tracker
    }

    /// This version with a fresh empty mutable memtable, no immutables and no files.
    fn emptied(&self) -> Version {
        let mutable = Arc::new(
            self.memtables
                .mutable
                .fork(self.next_memtable_id(), self.codec.clone()),
        );
        Version {
            memtables: MemtableVersion {
                mutable,
                immutables: Vec::new(),
            },
            files: Default::default(),
            ..self.clone()
        }
    }

    fn next_memtable_id(&self) -> MemtableId {
        self.memtables.all().map(|m| m.id()).max().unwrap_or(0) + 1
    }
}

/// What readers snapshot: the version plus the region's progress counters.
#[derive(Debug, Clone)]
pub struct VersionControlData {
    /// The current version.
    pub(crate) version: Arc<Version>,
    /// Last sequence whose rows are all visible in memtables or files.
    pub(crate) committed_sequence: u64,
    /// Last WAL entry written or replayed.
    pub(crate) last_entry_id: u64,
    /// The region was dropped.
    pub(crate) is_dropped: bool,
}

/// Read access; only this crate changes a `VersionControlData`.
impl VersionControlData {
    /// The current version.
    pub fn version(&self) -> &Arc<Version> {
        &self.version
    }

    /// Last sequence whose rows are all visible in memtables or files.
    pub fn committed_sequence(&self) -> u64 {
        self.committed_sequence
    }

    /// Last WAL entry written or replayed.
    pub fn last_entry_id(&self) -> u64 {
        self.last_entry_id
    }

    /// The region was dropped.
    pub fn is_dropped(&self) -> bool {
        self.is_dropped
    }
}

/// The current version of one region.
#[derive(Debug)]
pub struct VersionControl {
    data: RwLock<VersionControlData>,
}

impl VersionControl {
    /// Starts at `version`; counters begin at its flushed ids.
    pub fn new(version: Version) -> Self {
        let data = VersionControlData {
            committed_sequence: version.flushed_sequence,
            last_entry_id: version.flushed_entry_id,
            version: Arc::new(version),
            is_dropped: false,
        };
        Self {
            data: RwLock::new(data),
        }
    }

    /// A snapshot of the current version and counters.
    pub fn current(&self) -> VersionControlData {
        self.read().clone()
    }

    /// Publishes the sequence and entry id of rows now visible in the memtables.
    pub fn set_sequence_and_entry_id(&self, committed_sequence: u64, last_entry_id: u64) {
        let mut data = self.write();
        data.committed_sequence = data.committed_sequence.max(committed_sequence);
        data.last_entry_id = data.last_entry_id.max(last_entry_id);
        Self::check(&data);
    }

    /// Freezes a non-empty mutable memtable into the immutables and starts a fresh one;
    /// does nothing when the mutable memtable is empty.
    pub fn freeze_mutable(&self) {
        let mut data = self.write();
        let version = &data.version;
        if version.memtables.mutable.is_empty() {
            return;
        }
        let old = version.memtables.mutable.clone();
        old.freeze();
        let mutable = Arc::new(old.fork(version.next_memtable_id(), version.codec.clone()));
        let mut immutables = version.memtables.immutables.clone();
        immutables.push(old);
        let next = Version {
            memtables: MemtableVersion {
                mutable,
                immutables,
            },
            ..Version::clone(version)
        };
        data.version = Arc::new(next);
    }

    /// Applies a persisted edit: adds and removes files, raises the flushed ids, and drops
    /// the flushed immutable memtables.
    pub fn apply_edit(&self, edit: &RegionEdit, memtables_to_remove: &[MemtableId]) {
        let mut data = self.write();
        let mut next = Version::clone(&data.version);
        for file in &edit.files_to_add {
            next.files[usize::from(file.level).min(MAX_LEVEL - 1)]
                .insert(file.file_id, FileHandle::new(file.clone(), &next.tracker));
        }
        for id in &edit.files_to_remove {
            for level in &mut next.files {
                if let Some(removed) = level.remove(id) {
                    // Deleted once the versions and scans that still hold it let go.
                    removed.mark_removed();
                }
            }
        }
        if let Some(id) = edit.flushed_entry_id {
            next.flushed_entry_id = next.flushed_entry_id.max(id);
        }
        if let Some(seq) = edit.flushed_sequence {
            next.flushed_sequence = next.flushed_sequence.max(seq);
        }
        if next.compaction_window_secs.is_none() {
            next.compaction_window_secs = edit.compaction_window_secs;
        }
        next.memtables
            .immutables
            .retain(|m| !memtables_to_remove.contains(&m.id()));
        if let Some(seq) = edit.committed_sequence {
            data.committed_sequence = data.committed_sequence.max(seq);
        }
        data.version = Arc::new(next);
        Self::check(&data);
    }

    /// Installs a new schema; the memtables must be empty (flush first).
    pub fn alter_schema(
        &self,
        metadata: RegionMetadata,
        options: RegionOptions,
    ) -> Result<(), StorageError> {
        let mut data = self.write();
        let version = &data.version;
        ensure!(
            version.memtables.is_empty(),
            MemtablesNotEmptySnafu {
                region_id: metadata.region_id()
            }
        );
        let metadata = Arc::new(metadata);
        let codec = Arc::new(KeyCodec::new(metadata.clone())?);
        let mutable = Arc::new(
            version
                .memtables
                .mutable
                .fork(version.next_memtable_id(), codec.clone()),
        );
        let next = Version {
            metadata,
            codec,
            options,
            memtables: MemtableVersion {
                mutable,
                immutables: Vec::new(),
            },
            ..Version::clone(version)
        };
        data.version = Arc::new(next);
        Ok(())
    }

    /// Installs new region options (an options-only alter; memtables are kept).
    pub fn set_options(&self, options: RegionOptions) {
        let mut data = self.write();
        let next = Version {
            options,
            ..Version::clone(&data.version)
        };
        data.version = Arc::new(next);
    }

    /// Forgets every row and file: fresh memtables, no files (each deleted once no reader
    /// holds it), flushed ids set exactly.
    pub fn truncate(&self, truncated_entry_id: u64, truncated_sequence: u64) {
        let mut data = self.write();
        for file in data.version.all_file_handles() {
            file.mark_removed();
        }
        let next = Version {
            flushed_entry_id: truncated_entry_id,
            flushed_sequence: truncated_sequence,
            truncated_entry_id: Some(truncated_entry_id),
            ..data.version.emptied()
        };
        data.version = Arc::new(next);
        data.committed_sequence = data.committed_sequence.max(truncated_sequence);
        data.last_entry_id = data.last_entry_id.max(truncated_entry_id);
        Self::check(&data);
    }

    /// Replaces the version with one built from a newer manifest (a follower's sync, a
    /// leader taking over): memtables and files are the new version's; counters move to
    /// at least `committed_sequence` and `last_entry_id`. Files of the old version are
    /// not marked removed: readers let go of them, nothing deletes them here.
    pub fn install(&self, version: Version, committed_sequence: u64, last_entry_id: u64) {
        let mut data = self.write();
        data.committed_sequence = data
            .committed_sequence
            .max(committed_sequence)
            .max(version.flushed_sequence);
        data.last_entry_id = data
            .last_entry_id
            .max(last_entry_id)
            .max(version.flushed_entry_id);
        data.version = Arc::new(version);
        Self::check(&data);
    }

    /// Marks the region dropped and empties the version.
    pub fn mark_dropped(&self) {
        let mut data = self.write();
        data.version = Arc::new(data.version.emptied());
        data.is_dropped = true;
    }

    /// The reference's invariants: flushed progress never passes written progress.
    fn check(data: &VersionControlData) {
        debug_assert!(
            data.version.flushed_entry_id <= data.last_entry_id,
            "flushed entry id {} > last entry id {}",
            data.version.flushed_entry_id,
            data.last_entry_id
        );
        debug_assert!(
            data.version.flushed_sequence <= data.committed_sequence,
            "flushed sequence {} > committed sequence {}",
            data.version.flushed_sequence,
            data.committed_sequence
        );
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, VersionControlData> {
        self.data
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, VersionControlData> {
        self.data
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
