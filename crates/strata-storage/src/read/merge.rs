//! k-way merge of sorted sources, with deduplication.
//!
//! Every source yields [`SortedBatch`]es in (primary key, timestamp, sequence descending)
//! order. The merge picks the smallest current row among the sources and, with `dedup`,
//! keeps only the first row of each (key, timestamp) — the newest, since sequences sort
//! descending — dropping it too if it is a delete and `filter_deleted` is set. Scans filter
//! deletes; flushes keep them, so a tombstone in a new file still hides older files' rows.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef};
use arrow_buffer::ScalarBuffer;
use arrow_row::Rows;
use futures::StreamExt;
use snafu::ResultExt;
use strata_request::{OpType, RegionOptions};

use super::gather::{gather, runs_of};
use crate::batch::{BatchStream, KeysBuilder, SortedBatch};
use crate::error::{ArrowSnafu, StorageError};
use crate::key::KeyCodec;

/// How to merge.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MergeOptions {
    /// Keep only the newest row of each (key, timestamp).
    pub dedup: bool,
    /// With `dedup`, also drop keys whose newest row is a delete.
    pub filter_deleted: bool,
    /// Most rows per output batch.
    pub batch_rows: usize,
}

impl MergeOptions {
    /// Options with each setting given.
    pub fn new(dedup: bool, filter_deleted: bool, batch_rows: usize) -> Self {
        Self {
            dedup,
            filter_deleted,
            batch_rows,
        }
    }

    /// Deduplicate and drop deletes: what a scan returns.
    pub fn scan() -> Self {
        Self {
            dedup: true,
            filter_deleted: true,
            batch_rows: 4096,
        }
    }

    /// Deduplicate but keep deletes: what a flush writes.
    pub fn flush() -> Self {
        Self {
            dedup: true,
            filter_deleted: false,
            batch_rows: 8192,
        }
    }

    /// What a scan of a region with `options` returns: [`scan`](Self::scan), or in an
    /// append-mode region every row as written, duplicates included.
    pub fn scan_of(options: &RegionOptions) -> Self {
        Self::scan().keeping_duplicates_if(options.append_mode)
    }

    /// What a flush of a region with `options` writes: [`flush`](Self::flush), or in an
    /// append-mode region every row as written.
    pub fn flush_of(options: &RegionOptions) -> Self {
        Self::flush().keeping_duplicates_if(options.append_mode)
    }

    fn keeping_duplicates_if(self, append_mode: bool) -> Self {
        if append_mode {
            Self {
                dedup: false,
                filter_deleted: false,
                ..self
            }
        } else {
            self
        }
    }
}

/// Merges `sources` (all with the same projection) into one sorted stream.
///
/// One source needs no merging: its batches pass through whole, or filtered when
/// deduplication drops rows.
pub fn merge(
    codec: Arc<KeyCodec>,
    sources: Vec<BatchStream>,
    options: MergeOptions,
) -> BatchStream {
    merge_remembering(codec, sources, options, KeyIds::MAX)
}

/// [`merge`], remembering at most `keys` keys at once for cheap key equality (tests use
/// tiny limits to exercise forgetting).
pub(crate) fn merge_remembering(
    codec: Arc<KeyCodec>,
    mut sources: Vec<BatchStream>,
    options: MergeOptions,
    keys: usize,
) -> BatchStream {
    if sources.len() == 1
        && let Some(source) = sources.pop()
    {
        return if options.dedup {
            dedup_single(codec, source, options)
        } else {
            source
        };
    }
    let merger = Merger {
        codec,
        options: MergeOptions {
            batch_rows: options.batch_rows.max(1),
            ..options
        },
        sources: sources
            .into_iter()
            .map(|stream| Source {
                stream,
                current: None,
                row: 0,
                held_slot: None,
            })
            .collect(),
        last: None,
        heap: BinaryHeap::new(),
        started: false,
        pending: None,
        key_ids: KeyIds::remembering(keys),
    };
    Box::pin(futures::stream::unfold(merger, |mut merger| async move {
        match merger.next_batch().await {
            Ok(Some(batch)) => Some((Ok(batch), merger)),
            Ok(None) => None,
            // Stop after reporting the error: a half-merged stream cannot continue safely.
            Err(e) => {
                merger.sources.clear();
                merger.heap.clear();
                Some((Err(e), merger))
            }
        }
    }))
}

/// [`merge`] of sources known to hold each (key, timestamp) at most once among them — one
/// SST of a region that deduplicates (flushes and compactions write each key and timestamp
/// once): nothing to compare, so its batches pass through, with delete markers dropped
/// when `filter_deleted` is set. More than one source is merged as usual.
pub(crate) fn drop_deletes(
    codec: Arc<KeyCodec>,
    sources: Vec<BatchStream>,
    options: MergeOptions,
) -> BatchStream {
    let [source] = match <[BatchStream; 1]>::try_from(sources) {
        Ok(one) => one,
        Err(sources) => return merge(codec, sources, options),
    };
    if !options.filter_deleted {
        return source;
    }
    let delete = OpType::Delete as u8;
    Box::pin(source.filter_map(move |item| {
        let result = item.and_then(|batch| {
            if !batch.op_types.contains(&delete) {
                return Ok(Some(batch));
            }
            let keep: Vec<bool> = batch.op_types.iter().map(|&op| op != delete).collect();
            if keep.iter().any(|&k| k) {
                filter_batch(&codec, &batch, &keep).map(Some)
            } else {
                Ok(None)
            }
        });
        std::future::ready(result.transpose())
    }))
}

/// Deduplicates one sorted source batch by batch: a row is dropped when its (key,
/// timestamp) equals the previous row's (which is newer), and with `filter_deleted` when it
/// is a delete. Batches with nothing to drop pass through unchanged.
fn dedup_single(codec: Arc<KeyCodec>, source: BatchStream, options: MergeOptions) -> BatchStream {
    let mut last: Option<(SortedBatch, usize)> = None;
    Box::pin(source.filter_map(move |item| {
        let result = item.and_then(|batch| {
            let mut keep = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                let duplicate = match &last {
                    Some((lb, lr)) if row == 0 => {
                        lb.timestamp(*lr) == batch.timestamp(0) && lb.key(*lr) == batch.key(0)
                    }
                    _ if row > 0 => {
                        batch.timestamp(row - 1) == batch.timestamp(row)
                            && batch.key(row - 1) == batch.key(row)
                    }
                    _ => false,
                };
                let deleted = options.filter_deleted && batch.op_type(row) == OpType::Delete;
                keep.push(!duplicate && !deleted);
            }
            if !batch.is_empty() {
                last = Some((batch.clone(), batch.num_rows() - 1));
            }
            if keep.iter().all(|&k| k) {
                Ok(Some(batch))
            } else if keep.iter().any(|&k| k) {
                filter_batch(&codec, &batch, &keep).map(Some)
            } else {
                Ok(None)
            }
        });
        std::future::ready(result.transpose())
    }))
}

/// The rows of `batch` where `keep` is true.
fn filter_batch(
    codec: &KeyCodec,
    batch: &SortedBatch,
    keep: &[bool],
) -> Result<SortedBatch, StorageError> {
    let region_id = codec.metadata().region_id();
    let rows: Vec<usize> = keep
        .iter()
        .enumerate()
        .filter(|(_, k)| **k)
        .map(|(i, _)| i)
        .collect();
    let mut keys = KeysBuilder::new(codec, rows.len());
    for &r in &rows {
        keys.push(batch.key(r).data());
    }
    let (keys, key_index) = keys.finish();
    let mask = arrow_array::BooleanArray::from(keep.to_vec());
    let columns = batch
        .columns
        .iter()
        .map(|c| arrow_select::filter::filter(c.as_ref(), &mask))
        .collect::<Result<Vec<_>, _>>()
        .context(ArrowSnafu {
            region_id,
            operation: "drop duplicate rows",
        })?;
    Ok(SortedBatch {
        keys,
        key_index,
        timestamps: rows.iter().map(|&r| batch.timestamps[r]).collect(),
        sequences: rows.iter().map(|&r| batch.sequences[r]).collect(),
        op_types: rows.iter().map(|&r| batch.op_types[r]).collect(),
        columns,
    })
}

struct Source {
    stream: BatchStream,
    current: Option<Arc<Fed>>,
    row: usize,
    /// Position of `current` in the output's held batches, once a row of it is picked.
    held_slot: Option<usize>,
}

/// A source batch in the merge, with a merge-wide id for each of its distinct keys.
struct Fed {
    batch: SortedBatch,
    /// The [`KeyIds`] id of each of `batch.keys`, in order.
    ids: Vec<u64>,
}

impl Fed {
    /// The merge-wide id of row `row`'s key.
    fn id(&self, row: usize) -> u64 {
        let position = self.batch.key_id(row).map_or(row, |id| id as usize);
        self.ids[position]
    }

    /// The order of row `ar`'s key here and row `br`'s in `b`: equal ids are equal keys
    /// (no byte comparison), other ids are compared by their bytes.
    fn key_cmp(&self, ar: usize, b: &Fed, br: usize) -> Ordering {
        if self.id(ar) == b.id(br) {
            Ordering::Equal
        } else {
            self.batch.key(ar).cmp(&b.batch.key(br))
        }
    }
}

/// Ids for the keys a merge has seen: the same key gets the same id while it is
/// remembered, so heads of many sources at one key (the common case: every source holds
/// the same series) compare as equal without comparing key bytes. Equal ids always mean
/// equal keys; keys with different ids may still be equal (after the table is cleared at
/// its limit of keys), which a byte comparison then finds.
struct KeyIds {
    ids: HashMap<Box<[u8]>, u64, ahash::RandomState>,
    next: u64,
    /// Keys remembered before the table starts over (bounds its memory).
    limit: usize,
}

impl KeyIds {
    /// The default limit of keys remembered.
    const MAX: usize = 1 << 18;

    fn remembering(limit: usize) -> Self {
        Self {
            ids: HashMap::default(),
            next: 0,
            limit: limit.max(1),
        }
    }

    /// The ids of `keys`, in order.
    fn of(&mut self, keys: &Rows) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::with_capacity(keys.num_rows());
        let mut previous: Option<&[u8]> = None;
        for key in keys.iter() {
            let data = key.data();
            // One key per row: neighbours often repeat it.
            if let (Some(prev), Some(&id)) = (previous, out.last())
                && prev == data
            {
                out.push(id);
                continue;
            }
            let id = match self.ids.get(data) {
                Some(&id) => id,
                None => {
                    if self.ids.len() >= self.limit {
                        self.ids.clear();
                    }
                    let id = self.next;
                    self.next += 1;
                    self.ids.insert(data.into(), id);
                    id
                }
            };
            out.push(id);
            previous = Some(data);
        }
        out
    }
}

/// A source's current row in the merge order, with the source's index: the heap holds
/// one per source that has rows left. It shares the source's batch (no copy of the key).
struct Head {
    fed: Arc<Fed>,
    row: usize,
    ts: i64,
    sequence: Reverse<u64>,
    source: usize,
}

impl Head {
    fn of(source: &Source, index: usize) -> Option<Head> {
        let fed = source.current.as_ref()?;
        (source.row < fed.batch.num_rows()).then(|| Head {
            fed: fed.clone(),
            row: source.row,
            ts: fed.batch.timestamp(source.row),
            sequence: Reverse(fed.batch.sequence(source.row)),
            source: index,
        })
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.fed
            .key_cmp(self.row, &other.fed, other.row)
            .then_with(|| {
                (self.ts, self.sequence, self.source).cmp(&(other.ts, other.sequence, other.source))
            })
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

struct Merger {
    codec: Arc<KeyCodec>,
    options: MergeOptions,
    sources: Vec<Source>,
    /// The last row taken (emitted or skipped), for deduplication of the next run's
    /// first row (set once per run).
    last: Option<(Arc<Fed>, usize)>,
    /// The head of every source with rows left, smallest on top: a run costs one pop and
    /// one push (O(log sources)), not a scan of every source.
    heap: BinaryHeap<Reverse<Head>>,
    /// Whether every source's first batch was fetched.
    started: bool,
    /// A long run found while filling a batch, output after it.
    pending: Option<SortedBatch>,
    /// Ids of the keys seen, for cheap equality of keys across sources.
    key_ids: KeyIds,
}

/// Runs of at least this many rows (or `batch_rows`, if smaller) that are output whole
/// leave the merge as slices of their source batch instead of being copied.
const LONG_RUN: usize = 256;

impl Merger {
    /// Gives source `index` its next non-empty batch (row 0), or none when it is done.
    async fn advance(&mut self, index: usize) -> Result<(), StorageError> {
        let Self {
            sources, key_ids, ..
        } = self;
        let source = &mut sources[index];
        source.current = None;
        source.row = 0;
        source.held_slot = None;
        loop {
            match source.stream.next().await {
                Some(Ok(batch)) if batch.is_empty() => {}
                Some(Ok(batch)) => {
                    let ids = key_ids.of(&batch.keys);
                    source.current = Some(Arc::new(Fed { batch, ids }));
                    return Ok(());
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }

    /// Puts source `index`'s current row on the heap, if it has one.
    fn push_head(&mut self, index: usize) {
        if let Some(head) = Head::of(&self.sources[index], index) {
            self.heap.push(Reverse(head));
        }
    }

    async fn next_batch(&mut self) -> Result<Option<SortedBatch>, StorageError> {
        if let Some(run) = self.pending.take() {
            return Ok(Some(run));
        }
        if !self.started {
            self.started = true;
            for index in 0..self.sources.len() {
                self.advance(index).await?;
                self.push_head(index);
            }
        }
        let mut held: Vec<Arc<Fed>> = Vec::new();
        let mut picked: Vec<(usize, usize)> = Vec::with_capacity(self.options.batch_rows);
        for s in &mut self.sources {
            s.held_slot = None;
        }
        let long_run = LONG_RUN.min(self.options.batch_rows);
        while picked.len() < self.options.batch_rows {
            let Some(Reverse(head)) = self.heap.pop() else {
                break;
            };
            let i = head.source;
            // Rows of source `i` that sort before every other source's head form a run:
            // one comparison each against the next head on the heap.
            let bound = self.heap.peek().map(|Reverse(next)| next);
            let source = &mut self.sources[i];
            let Some(fed) = &source.current else {
                continue;
            };
            let batch = &fed.batch;
            let first = source.row;
            let picked_before = picked.len();
            // Whether every row of the run is output (nothing deduplicated or deleted).
            let mut whole = true;
            // How the key of the last compared row (by key id) compares with the bound's:
            // rows of one key compare alike, so each key is compared once, not each row.
            let mut key_order: Option<(u64, Ordering)> = None;
            while picked.len() < self.options.batch_rows && source.row < batch.num_rows() {
                let row = source.row;
                // The first row is the smallest (or ties with another head, say after a
                // replay of stale entries): always taken, so the merge moves on.
                if row > first
                    && let Some(next) = bound
                {
                    let id = fed.id(row);
                    let keys = match key_order {
                        Some((known, order)) if known == id => order,
                        _ => {
                            let order = fed.key_cmp(row, &next.fed, next.row);
                            key_order = Some((id, order));
                            order
                        }
                    };
                    let order = keys.then_with(|| {
                        (batch.timestamp(row), Reverse(batch.sequence(row)))
                            .cmp(&(next.ts, next.sequence))
                    });
                    if order != Ordering::Less {
                        break;
                    }
                }
                source.row += 1;
                if self.options.dedup {
                    // Within the run the previous row is the batch's; before it, the last
                    // row the merge took.
                    let duplicate = if row > first {
                        batch.timestamp(row - 1) == batch.timestamp(row)
                            && fed.key_cmp(row - 1, fed, row) == Ordering::Equal
                    } else {
                        self.last.as_ref().is_some_and(|(lf, lr)| {
                            lf.batch.timestamp(*lr) == batch.timestamp(row)
                                && lf.key_cmp(*lr, fed, row) == Ordering::Equal
                        })
                    };
                    if duplicate
                        || (self.options.filter_deleted && batch.op_type(row) == OpType::Delete)
                    {
                        whole = false;
                        continue;
                    }
                }
                let slot = match source.held_slot {
                    Some(slot) => slot,
                    None => {
                        held.push(fed.clone());
                        source.held_slot = Some(held.len() - 1);
                        held.len() - 1
                    }
                };
                picked.push((slot, row));
            }
            let taken = source.row - first;
            if taken > 0 && self.options.dedup {
                self.last = Some((fed.clone(), source.row - 1));
            }
            // A long run that is output whole goes out as a slice of its batch (no copy).
            let run = (whole && taken >= long_run).then(|| batch.slice(first, taken));
            if source.row >= batch.num_rows() {
                self.advance(i).await?;
            }
            self.push_head(i);
            if let Some(run) = run {
                picked.truncate(picked_before);
                if picked.is_empty() {
                    return Ok(Some(run));
                }
                self.pending = Some(run);
                break;
            }
        }
        if picked.is_empty() {
            return Ok(None);
        }
        self.assemble(&held, &picked).map(Some)
    }

    /// Builds the output batch from `picked` rows of `held` batches.
    fn assemble(
        &self,
        held: &[Arc<Fed>],
        picked: &[(usize, usize)],
    ) -> Result<SortedBatch, StorageError> {
        let region_id = self.codec.metadata().region_id();
        let batches: Vec<&SortedBatch> = held.iter().map(|fed| &fed.batch).collect();
        // Rows with the key id of the previous row share its key: no byte comparison.
        let mut keys = KeysBuilder::new(&self.codec, picked.len());
        let mut previous: Option<u64> = None;
        for &(b, r) in picked {
            let id = held[b].id(r);
            if previous == Some(id) {
                keys.repeat_last();
            } else {
                keys.push(batches[b].key(r).data());
                previous = Some(id);
            }
        }
        let (keys, key_index) = keys.finish();
        let timestamps: ScalarBuffer<i64> = picked
            .iter()
            .map(|&(b, r)| batches[b].timestamp(r))
            .collect();
        let sequences: ScalarBuffer<u64> = picked
            .iter()
            .map(|&(b, r)| batches[b].sequence(r))
            .collect();
        let op_types: ScalarBuffer<u8> = picked
            .iter()
            .map(|&(b, r)| batches[b].op_types[r])
            .collect();
        let width = batches.first().map_or(0, |b| b.columns.len());
        let runs = runs_of(picked);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(width);
        for c in 0..width {
            let values: Vec<&dyn Array> = batches.iter().map(|b| b.columns[c].as_ref()).collect();
            columns.push(gather(&values, picked, &runs).context(ArrowSnafu {
                region_id,
                operation: "merge rows",
            })?);
        }
        Ok(SortedBatch {
            keys,
            key_index,
            timestamps,
            sequences,
            op_types,
            columns,
        })
    }
}

#[cfg(test)]
mod tests;
