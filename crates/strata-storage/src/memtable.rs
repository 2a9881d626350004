//! [`TimeSeriesMemtable`]: the in-memory write buffer of one region.
//!
//! Rows are grouped per series (primary key). A write keeps the batch's timestamp and field
//! arrays as one immutable *chunk* and appends an 8-byte `(chunk, row)` reference to each
//! row's series; tags are kept once per series, as its encoded key. Reading sorts each
//! series' references by (timestamp, sequence descending) and gathers the values with
//! Arrow's `interleave`. So a write costs one key encoding and one hash lookup per row, and
//! memory is the batch's own Arrow buffers plus 8 bytes per row plus each new key.
//!
//! Memory is charged to the write buffer through an [`AllocTracker`] after every write,
//! moved to "being freed" by [`freeze`](TimeSeriesMemtable::freeze), and released when the
//! memtable is dropped (the last scan or flush holding it lets go).

mod iter;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::ScalarBuffer;
use snafu::ensure;
use strata_buffer::{AllocTracker, WriteBufferManagerRef};
use strata_request::{OpType, RegionMetadata};

use crate::error::{FrozenSnafu, SchemaMismatchSnafu, StorageError};
use crate::key::KeyCodec;
use crate::request::ScanRequest;
use crate::time_range::TimeRange;
use crate::time_range::timestamp_values;
pub use iter::MemtableIter;

/// Identifies a memtable within its region; allocated in increasing order.
pub type MemtableId = u32;

/// Where a row's values are: `(chunk, row within the chunk)`.
pub(crate) type RowRef = (u32, u32);

/// A series' encoded key (shared by the iterators of one snapshot) and its rows.
pub(crate) type SeriesRows = (Arc<[u8]>, Vec<RowRef>);

/// Per-row bookkeeping: the [`RowRef`].
const ROW_REF_BYTES: usize = 8;
/// Bookkeeping of one series besides its key: hash-map slot and vector header.
const SERIES_OVERHEAD_BYTES: usize = 64;

/// What a memtable holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemtableStats {
    /// Bytes charged to the write buffer.
    pub estimated_bytes: usize,
    /// Smallest and largest timestamp; `None` when empty.
    pub time_range: Option<TimeRange>,
    /// Rows written (duplicates included).
    pub num_rows: usize,
    /// Distinct primary keys.
    pub series_count: usize,
    /// Largest sequence written; 0 when empty.
    pub max_sequence: u64,
}

/// A region's mutable (or frozen) memtable.
pub struct TimeSeriesMemtable {
    id: MemtableId,
    codec: Arc<KeyCodec>,
    write_buffer: Option<WriteBufferManagerRef>,
    tracker: AllocTracker,
    frozen: AtomicBool,
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for TimeSeriesMemtable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeSeriesMemtable")
            .field("id", &self.id)
            .field("frozen", &self.frozen.load(Ordering::Acquire))
            .field("stats", &self.stats())
            .finish()
    }
}

/// The values of one write, minus the tags (which live in the series keys).
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) first_sequence: u64,
    pub(crate) op_type: OpType,
    pub(crate) timestamps: ScalarBuffer<i64>,
    /// The non-tag columns, in region order (see [`value_slots`]).
    pub(crate) values: Vec<ArrayRef>,
}

/// For each region column, its position among a chunk's `values`; `None` for tags.
pub(crate) fn value_slots(metadata: &RegionMetadata) -> Vec<Option<usize>> {
    let mut next = 0;
    metadata
        .columns()
        .iter()
        .map(|c| {
            (!c.is_tag()).then(|| {
                next += 1;
                next - 1
            })
        })
        .collect()
}

#[derive(Debug, Default)]
struct Inner {
    chunks: Vec<Arc<Chunk>>,
    /// Encoded key → `(chunk, row)` references, in write order.
    series: HashMap<Box<[u8]>, Vec<RowRef>>,
    stats: MemtableStats,
}

impl TimeSeriesMemtable {
    /// An empty memtable for `codec`'s schema, charging `write_buffer` if given.
    pub fn new(
        id: MemtableId,
        codec: Arc<KeyCodec>,
        write_buffer: Option<WriteBufferManagerRef>,
    ) -> Self {
        Self {
            id,
            tracker: AllocTracker::new(write_buffer.clone()),
            codec,
            write_buffer,
            frozen: AtomicBool::new(false),
            inner: RwLock::new(Inner::default()),
        }
    }

    /// This memtable's id.
    pub fn id(&self) -> MemtableId {
        self.id
    }

    /// The schema of the rows it holds.
    pub fn metadata(&self) -> &Arc<RegionMetadata> {
        self.codec.metadata()
    }

    /// The key codec its rows' keys come from.
    pub fn codec(&self) -> &Arc<KeyCodec> {
        &self.codec
    }

    /// Inserts `batch` (already validated against the region schema) as `op_type` rows with
    /// sequences `first_sequence`, `first_sequence + 1`, ...
    pub fn write(
        &self,
        batch: &RecordBatch,
        op_type: OpType,
        first_sequence: u64,
    ) -> Result<(), StorageError> {
        let metadata = self.metadata();
        let region_id = metadata.region_id();
        ensure!(
            !self.frozen.load(Ordering::Acquire),
            FrozenSnafu {
                region_id,
                memtable_id: self.id
            }
        );
        ensure!(
            batch.schema().fields() == metadata.arrow_schema().fields(),
            SchemaMismatchSnafu {
                region_id,
                schema_version: metadata.schema_version()
            }
        );
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let tags: Vec<ArrayRef> = metadata
            .primary_key()
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let keys = self.codec.encode(&tags)?;
        // A schema without tags (no longer buildable; one an earlier build recorded) has
        // no keys to index rows by: refuse its writes rather than index past the keys.
        if keys.num_rows() != rows {
            return Err(StorageError::BadColumns {
                region_id,
                reason: "the region has no tag column, so its rows have no primary key".into(),
            });
        }
        let timestamps =
            timestamp_values(batch.column(metadata.time_index())).ok_or_else(|| {
                StorageError::SchemaMismatch {
                    region_id,
                    schema_version: metadata.schema_version(),
                }
            })?;
        let values: Vec<ArrayRef> = metadata
            .columns()
            .iter()
            .zip(batch.columns())
            .filter(|(c, _)| !c.is_tag())
            .map(|(_, a)| a.clone())
            .collect();
        let mut bytes: usize = values
            .iter()
            .map(|a| a.get_array_memory_size())
            .sum::<usize>()
            + rows * ROW_REF_BYTES;
        let (min_ts, max_ts) = timestamps
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));

        let mut inner = self.write_lock();
        let chunk = u32::try_from(inner.chunks.len()).unwrap_or(u32::MAX);
        inner.chunks.push(Arc::new(Chunk {
            first_sequence,
            op_type,
            timestamps,
            values,
        }));
        for row in 0..rows {
            let key = keys.row(row);
            let key = key.as_ref();
            let reference = (chunk, row as u32);
            match inner.series.get_mut(key) {
                Some(refs) => refs.push(reference),
                None => {
                    bytes += key.len() + SERIES_OVERHEAD_BYTES;
                    inner.series.insert(key.into(), vec![reference]);
                }
            }
        }
        let series_count = inner.series.len();
        let stats = &mut inner.stats;
        stats.num_rows += rows;
        stats.series_count = series_count;
        stats.max_sequence = stats.max_sequence.max(first_sequence + rows as u64 - 1);
        stats.time_range = Some(match stats.time_range {
            None => TimeRange {
                start: min_ts,
                end: max_ts,
            },
            Some(r) => TimeRange {
                start: r.start.min(min_ts),
                end: r.end.max(max_ts),
            },
        });
        stats.estimated_bytes += bytes;
        drop(inner);
        self.tracker.on_allocation(bytes);
        Ok(())
    }

    /// What the memtable holds.
    pub fn stats(&self) -> MemtableStats {
        self.read_lock().stats.clone()
    }

    /// Whether no row was written.
    pub fn is_empty(&self) -> bool {
        self.read_lock().stats.num_rows == 0
    }

    /// Refuses further writes and moves its memory to "being freed" in the write buffer.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Release);
        self.tracker.done_allocating();
    }

    /// Whether [`freeze`](Self::freeze) was called.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    /// A new empty memtable `id` for `codec`'s schema, charging the same write buffer.
    pub fn fork(&self, id: MemtableId, codec: Arc<KeyCodec>) -> TimeSeriesMemtable {
        TimeSeriesMemtable::new(id, codec, self.write_buffer.clone())
    }

    /// Sorted rows, as described by `options`: its projection, time range, sequence bound
    /// and batch size (a memtable has one order and no files: the rest does not apply).
    pub fn iter(&self, options: ScanRequest) -> Result<MemtableIter, StorageError> {
        // Copy the references under the lock (8 bytes a row); filter and sort outside it,
        // so a long scan or flush never holds up the writer.
        let (chunks, series) = {
            let inner = self.read_lock();
            let series: Vec<SeriesRows> = inner
                .series
                .iter()
                .map(|(k, v)| (Arc::from(&**k), v.clone()))
                .collect();
            (inner.chunks.clone(), series)
        };
        MemtableIter::new(self.codec.clone(), chunks, series, options)
    }

    /// One iterator per range of `ranges` (ascending, disjoint), each giving what
    /// [`iter`](Self::iter) with that range as its time range gives — from one copy of the
    /// row references and one sort, not one per range (a flush writing time slices).
    pub fn iter_ranges(
        &self,
        options: ScanRequest,
        ranges: &[TimeRange],
    ) -> Result<Vec<MemtableIter>, StorageError> {
        Ok(self.iter(options)?.split(ranges))
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Inner> {
        // Writers never leave `Inner` half-updated across a panic point that matters for
        // readers (stats are updated after the rows), so a poisoned lock is still usable.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
