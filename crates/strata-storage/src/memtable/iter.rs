//! [`MemtableIter`]: a memtable's rows as [`SortedBatch`]es.

use std::cmp::Reverse;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, UInt32Array};
use arrow_buffer::ScalarBuffer;
use snafu::{ResultExt, ensure};

use super::{Chunk, RowRef, SeriesRows, TimeRange, value_slots};
use crate::batch::SortedBatch;
use crate::error::{ArrowSnafu, BadProjectionSnafu, StorageError};
use crate::key::KeyCodec;
use crate::request::ScanRequest;

/// Sorted rows of a memtable snapshot: by primary key, then timestamp, then sequence
/// descending. Duplicates are kept (the merge deduplicates across sources).
pub struct MemtableIter {
    codec: Arc<KeyCodec>,
    chunks: Vec<Arc<Chunk>>,
    /// Series in key order, each with its selected rows sorted.
    series: Vec<SeriesRows>,
    /// Where each projected column comes from.
    sources: Vec<ColumnSource>,
    batch_rows: usize,
    /// Next series and next row within it.
    cursor: (usize, usize),
}

/// Where a projected column's values come from.
#[derive(Debug, Clone, Copy)]
enum ColumnSource {
    /// A chunk value column (timestamp or field), by slot.
    Value(usize),
    /// A tag, by position in the primary key (decoded from the series keys).
    Tag(usize),
}

impl std::fmt::Debug for MemtableIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemtableIter")
            .field("series", &self.series.len())
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl MemtableIter {
    pub(crate) fn new(
        codec: Arc<KeyCodec>,
        chunks: Vec<Arc<Chunk>>,
        series: Vec<SeriesRows>,
        options: ScanRequest,
    ) -> Result<Self, StorageError> {
        let metadata = codec.metadata();
        let columns = metadata.columns().len();
        let projection = options.projection.unwrap_or_else(|| (0..columns).collect());
        for &index in &projection {
            ensure!(
                index < columns,
                BadProjectionSnafu {
                    region_id: metadata.region_id(),
                    index,
                    columns,
                }
            );
        }
        let slots = value_slots(metadata);
        let sources = projection
            .iter()
            .map(|&index| match slots[index] {
                Some(slot) => ColumnSource::Value(slot),
                None => ColumnSource::Tag(
                    metadata
                        .primary_key()
                        .iter()
                        .position(|&k| k == index)
                        .unwrap_or_default(),
                ),
            })
            .collect();
        let ts = |&(c, r): &RowRef| chunks[c as usize].timestamps[r as usize];
        let seq = |&(c, r): &RowRef| chunks[c as usize].first_sequence + u64::from(r);
        let mut selected: Vec<SeriesRows> = series
            .into_iter()
            .filter_map(|(key, mut refs)| {
                refs.retain(|r| {
                    options.time_range.is_none_or(|range| range.contains(ts(r)))
                        && options.max_sequence.is_none_or(|max| seq(r) <= max)
                });
                // Time-series data mostly arrives in time order: check before sorting.
                let order = |r: &RowRef| (ts(r), Reverse(seq(r)));
                if !refs.windows(2).all(|w| order(&w[0]) <= order(&w[1])) {
                    refs.sort_unstable_by_key(order);
                }
                (!refs.is_empty()).then_some((key, refs))
            })
            .collect();
        selected.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            codec,
            chunks,
            series: selected,
            sources,
            batch_rows: options.batch_rows.max(1),
            cursor: (0, 0),
        })
    }

    /// The rows of each of `ranges` (ascending, disjoint) as an iterator of its own, from
    /// the start (the cursor is ignored).
    pub(crate) fn split(self, ranges: &[TimeRange]) -> Vec<MemtableIter> {
        let chunks = &self.chunks;
        let ts = |&(c, r): &RowRef| chunks[c as usize].timestamps[r as usize];
        ranges
            .iter()
            .map(|range| {
                let series = self
                    .series
                    .iter()
                    .filter_map(|(key, refs)| {
                        // Rows are sorted by timestamp within a series.
                        let first = refs.partition_point(|r| ts(r) < range.start);
                        let end = refs.partition_point(|r| ts(r) <= range.end);
                        (first < end).then(|| (key.clone(), refs[first..end].to_vec()))
                    })
                    .collect();
                MemtableIter {
                    codec: self.codec.clone(),
                    chunks: self.chunks.clone(),
                    series,
                    sources: self.sources.clone(),
                    batch_rows: self.batch_rows,
                    cursor: (0, 0),
                }
            })
            .collect()
    }

    /// Builds the next batch from the rows at the cursor.
    fn next_batch(&mut self) -> Result<Option<SortedBatch>, StorageError> {
        let metadata = self.codec.metadata().clone();
        let region_id = metadata.region_id();
        // (series position in this batch, chunk, row) for each output row.
        let mut picked: Vec<(u32, u32, u32)> = Vec::with_capacity(self.batch_rows);
        let mut keys_in_batch: Vec<&[u8]> = Vec::new();
        let (mut s, mut r) = self.cursor;
        while picked.len() < self.batch_rows && s < self.series.len() {
            let (key, refs) = &self.series[s];
            let take = (self.batch_rows - picked.len()).min(refs.len() - r);
            let position = keys_in_batch.len() as u32;
            keys_in_batch.push(key);
            picked.extend(refs[r..r + take].iter().map(|&(c, row)| (position, c, row)));
            r += take;
            if r == refs.len() {
                s += 1;
                r = 0;
            }
        }
        self.cursor = (s, r);
        if picked.is_empty() {
            return Ok(None);
        }

        // Each series' key once, and a per-row index into them.
        let key_bytes = keys_in_batch.iter().map(|k| k.len()).sum();
        let mut keys = self.codec.empty_rows(keys_in_batch.len(), key_bytes);
        for key in &keys_in_batch {
            keys.push(self.codec.parse(key));
        }
        let key_index: Arc<[u32]> = picked.iter().map(|p| p.0).collect();
        let chunk = |p: &(u32, u32, u32)| &self.chunks[p.1 as usize];
        let timestamps: ScalarBuffer<i64> = picked
            .iter()
            .map(|p| chunk(p).timestamps[p.2 as usize])
            .collect();
        let sequences: ScalarBuffer<u64> = picked
            .iter()
            .map(|p| chunk(p).first_sequence + u64::from(p.2))
            .collect();
        let op_types: ScalarBuffer<u8> = picked.iter().map(|p| chunk(p).op_type.as_u8()).collect();

        // Tags come from the keys: decode each series once, then repeat per row.
        let wants_tags = self
            .sources
            .iter()
            .any(|s| matches!(s, ColumnSource::Tag(_)));
        let tag_values = if wants_tags {
            self.codec.decode(keys_in_batch.iter().copied())?
        } else {
            Vec::new()
        };
        let series_of_row = UInt32Array::from_iter_values(picked.iter().map(|p| p.0));
        let rows: Vec<(usize, usize)> = picked
            .iter()
            .map(|p| (p.1 as usize, p.2 as usize))
            .collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            columns.push(match *source {
                ColumnSource::Value(slot) => {
                    let values: Vec<&dyn Array> = self
                        .chunks
                        .iter()
                        .map(|c| c.values[slot].as_ref())
                        .collect();
                    arrow_select::interleave::interleave(&values, &rows).context(ArrowSnafu {
                        region_id,
                        operation: "gather memtable rows",
                    })?
                }
                ColumnSource::Tag(position) => {
                    arrow_select::take::take(tag_values[position].as_ref(), &series_of_row, None)
                        .context(ArrowSnafu {
                            region_id,
                            operation: "repeat tag values",
                        })?
                }
            });
        }
        Ok(Some(SortedBatch {
            keys: Arc::new(keys),
            key_index: Some(key_index),
            timestamps,
            sequences,
            op_types,
            columns,
        }))
    }
}

impl Iterator for MemtableIter {
    type Item = Result<SortedBatch, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}
