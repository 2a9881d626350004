//! [`SortedBatch`]: the read path's unit of data — rows of one region sorted by
//! (primary key, timestamp, sequence descending), with their keys, sequences and op types.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, UInt8Array, UInt64Array};
use arrow_buffer::ScalarBuffer;
use arrow_row::{Row, Rows};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use strata_request::{OpType, RegionMetadata};

use crate::error::StorageError;
use crate::key::KeyCodec;

/// A stream of sorted batches: what memtables, SSTs and merges yield.
pub type BatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<SortedBatch, StorageError>> + Send>>;

/// Name of the sequence column in files and in scans that ask for it.
pub const SEQUENCE_COLUMN: &str = "__sequence";
/// Name of the op-type column in files and in scans that ask for it.
pub const OP_TYPE_COLUMN: &str = "__op_type";

/// Sorted rows with everything the merge needs to order and deduplicate them.
///
/// `columns` are the projected user columns (in region order); `keys`, `timestamps`,
/// `sequences` and `op_types` are present whatever the projection — except in batches of
/// an SST read [rows only](crate::SstReadOptions::rows_only) (rows that pass through a
/// scan unmerged), which have their timestamps and columns only: `key`, `sequence` and
/// `op_type` panic on them, and [`to_record_batch`](Self::to_record_batch) with the
/// internal columns fails.
#[derive(Debug, Clone)]
pub struct SortedBatch {
    /// Distinct keys (with `key_index`) or one key per row (without).
    pub(crate) keys: Arc<Rows>,
    /// Row → position in `keys`, when rows share keys (rows of a key are contiguous, so
    /// each key is stored once instead of once per row).
    pub(crate) key_index: Option<Arc<[u32]>>,
    pub(crate) timestamps: ScalarBuffer<i64>,
    pub(crate) sequences: ScalarBuffer<u64>,
    pub(crate) op_types: ScalarBuffer<u8>,
    pub(crate) columns: Vec<ArrayRef>,
}

impl SortedBatch {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// The primary key of row `i`.
    pub fn key(&self, i: usize) -> Row<'_> {
        match &self.key_index {
            Some(index) => self.keys.row(index[i] as usize),
            None => self.keys.row(i),
        }
    }

    /// Which of the batch's distinct keys row `i` has, when the batch stores each key
    /// once: rows with the same id have the same key (rows without ids may too).
    pub(crate) fn key_id(&self, i: usize) -> Option<u32> {
        self.key_index.as_ref().map(|index| index[i])
    }

    /// The timestamp of row `i` (in the region's unit).
    pub fn timestamp(&self, i: usize) -> i64 {
        self.timestamps[i]
    }

    /// The sequence of row `i`.
    pub fn sequence(&self, i: usize) -> u64 {
        self.sequences[i]
    }

    /// The op type of row `i`.
    pub fn op_type(&self, i: usize) -> OpType {
        OpType::from_u8(self.op_types[i]).unwrap_or(OpType::Put)
    }

    /// The projected user columns.
    pub fn columns(&self) -> &[ArrayRef] {
        &self.columns
    }

    /// Rows `offset..offset + len` (zero-copy for the values; the keys are shared).
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn slice(&self, offset: usize, len: usize) -> SortedBatch {
        let key_index: Arc<[u32]> = match &self.key_index {
            Some(index) => index[offset..offset + len].into(),
            None => (offset..offset + len).map(|i| i as u32).collect(),
        };
        SortedBatch {
            keys: self.keys.clone(),
            key_index: Some(key_index),
            timestamps: self.timestamps.slice(offset, len),
            sequences: self.sequences.slice(offset, len),
            op_types: self.op_types.slice(offset, len),
            columns: self.columns.iter().map(|c| c.slice(offset, len)).collect(),
        }
    }

    /// The rows as a [`RecordBatch`] of `schema` (built by [`output_schema`]): the projected
    /// columns, then `__sequence` and `__op_type` if the schema has them.
    pub fn to_record_batch(
        &self,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut columns = self.columns.clone();
        if schema.fields().len() > columns.len() {
            columns.push(Arc::new(UInt64Array::new(self.sequences.clone(), None)));
            columns.push(Arc::new(UInt8Array::new(self.op_types.clone(), None)));
        }
        // An explicit row count keeps zero-column projections (counting scans) valid.
        let options = RecordBatchOptions::new().with_row_count(Some(self.num_rows()));
        RecordBatch::try_new_with_options(schema.clone(), columns, &options)
    }
}

/// Collects the keys of sorted rows, storing a key only when it differs from the previous
/// row's.
pub(crate) struct KeysBuilder<'a> {
    codec: &'a KeyCodec,
    keys: Rows,
    index: Vec<u32>,
}

impl<'a> KeysBuilder<'a> {
    /// A builder for about `rows` rows.
    pub(crate) fn new(codec: &'a KeyCodec, rows: usize) -> Self {
        Self {
            codec,
            keys: codec.empty_rows(0, 0),
            index: Vec::with_capacity(rows),
        }
    }

    /// Appends the key of the next row (bytes from `codec`, possibly another instance of
    /// the same schema: the bytes are re-parsed with this builder's codec).
    pub(crate) fn push(&mut self, key: &[u8]) {
        let distinct = self.keys.num_rows();
        if distinct > 0 && self.keys.row(distinct - 1).data() == key {
            self.index.push((distinct - 1) as u32);
        } else {
            self.keys.push(self.codec.parse(key));
            self.index.push(distinct as u32);
        }
    }

    /// Appends a row with the same key as the previous row's (the caller knows they are
    /// equal). The first row's key must be [`push`](Self::push)ed.
    pub(crate) fn repeat_last(&mut self) {
        let last = self.keys.num_rows().saturating_sub(1);
        self.index.push(last as u32);
    }

    /// The distinct keys and the per-row index.
    pub(crate) fn finish(self) -> (Arc<Rows>, Option<Arc<[u32]>>) {
        (Arc::new(self.keys), Some(self.index.into()))
    }
}

/// The schema of projected rows: the chosen region columns in region order, plus
/// `__sequence` (UInt64) and `__op_type` (UInt8) when `internal` is set.
pub fn output_schema(metadata: &RegionMetadata, projection: &[usize], internal: bool) -> SchemaRef {
    let region = metadata.arrow_schema();
    let mut fields: Vec<Field> = projection
        .iter()
        .map(|&i| region.field(i).clone())
        .collect();
    if internal {
        fields.push(Field::new(SEQUENCE_COLUMN, DataType::UInt64, false));
        fields.push(Field::new(OP_TYPE_COLUMN, DataType::UInt8, false));
    }
    Arc::new(Schema::new(fields))
}
