//! Reading an SST back as [`SortedBatch`]es.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_buffer::{BooleanBuffer, ScalarBuffer};
use arrow_schema::DataType;
use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use opendal::Operator;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter, RowSelection,
};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;
use snafu::ResultExt;
use strata_request::{ColumnSchema, RegionMetadata};

use super::opendal_io::OpendalReader;
use super::slices::{check_format, file_slice_width, row_groups_by_slice};
use crate::batch::{BatchStream, OP_TYPE_COLUMN, SEQUENCE_COLUMN, SortedBatch};
use crate::error::{CorruptSstSnafu, ObjectStoreSnafu, StorageError};
use crate::key::KeyCodec;
use crate::plain::plain;
use crate::time_range::{TimeRange, timestamp_values};

/// What to read from an SST.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SstReadOptions {
    /// Region column indices to return, ascending; `None` returns every column.
    pub projection: Option<Vec<usize>>,
    /// Only rows whose timestamp lies in this range; row groups outside it are skipped
    /// using their statistics.
    pub time_range: Option<TimeRange>,
    /// Most rows per batch.
    pub batch_rows: usize,
    /// `Some((i, n))`: only the `i`-th of `n` contiguous, nearly equal slices of the
    /// file's row groups (before time pruning), so `n` readers can decode one file in
    /// parallel, each a run of its row groups in file order (a key range of a file of one
    /// time slice; whole slices, or parts of one, of a file in slices). A slice can be
    /// empty (more slices than row groups); `i` must be below `n`. `None`: every row group.
    pub row_group_slice: Option<(usize, usize)>,
    /// Read only the projected columns and the timestamps: the batches' keys, sequences
    /// and op types are left empty (their accessors panic). For a file whose rows pass
    /// through a scan as they are — not merged with another source, no delete markers to
    /// drop — so the sequence and op-type columns are not decoded and no key is encoded.
    pub rows_only: bool,
}

impl Default for SstReadOptions {
    fn default() -> Self {
        Self {
            projection: None,
            time_range: None,
            batch_rows: 4096,
            row_group_slice: None,
            rows_only: false,
        }
    }
}

/// Opens the SST at `path` and streams its rows in file order as [`SortedBatch`]es in
/// `codec`'s schema: sorted by key, or — in a file written in [time
/// slices](super::slice_width) — sorted by key within each slice, slices oldest first (use
/// [`read_sst_slices`] for sources sorted by key). A missing, truncated or corrupted file
/// is a typed error naming it.
pub async fn read_sst(
    store: &Operator,
    path: &str,
    codec: Arc<KeyCodec>,
    options: SstReadOptions,
) -> Result<BatchStream, StorageError> {
    Ok(concat(
        read_sst_shared(store, path, codec, options, None).await?,
    ))
}

/// Opens the SST at `path` and streams the rows of each of its time slices with rows in
/// the requested range on its own, oldest slice first, each sorted by key — the sources a
/// merge needs (a file of one slice: one stream; none if no row group is in range).
pub async fn read_sst_slices(
    store: &Operator,
    path: &str,
    codec: Arc<KeyCodec>,
    options: SstReadOptions,
) -> Result<Vec<BatchStream>, StorageError> {
    read_sst_shared(store, path, codec, options, None).await
}

/// An SST opened once and read many times — its size and Parquet footer (with the page
/// index if the first read has a time range) are read at the first read and shared by the
/// later ones, as a compaction reading a file one time slice after another needs.
#[derive(Clone)]
pub struct OpenedSst {
    store: Operator,
    path: String,
    codec: Arc<KeyCodec>,
    shared: SharedOpen,
}

impl OpenedSst {
    /// The SST at `path`, rows in `codec`'s schema; nothing is read yet.
    pub fn new(store: &Operator, path: &str, codec: Arc<KeyCodec>) -> Self {
        Self {
            store: store.clone(),
            path: path.to_string(),
            codec,
            shared: SharedOpen::default(),
        }
    }

    /// [`read_sst_slices`] of this file.
    pub async fn read_slices(
        &self,
        options: SstReadOptions,
    ) -> Result<Vec<BatchStream>, StorageError> {
        read_sst_shared(
            &self.store,
            &self.path,
            self.codec.clone(),
            options,
            Some(&self.shared),
        )
        .await
    }
}

impl std::fmt::Debug for OpenedSst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSst")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `streams` one after another.
pub(crate) fn concat(mut streams: Vec<BatchStream>) -> BatchStream {
    if streams.len() == 1 {
        return streams.remove(0);
    }
    Box::pin(futures::stream::iter(streams).flatten())
}

/// What opening an SST reads before decoding (its size and Parquet metadata), read once
/// and shared by the readers of slices of one file.
#[derive(Clone, Default)]
pub(crate) struct SharedOpen(Arc<tokio::sync::OnceCell<(u64, ArrowReaderMetadata)>>);

/// [`read_sst_slices`], with the file's size and metadata from `shared` when another reader
/// of the same file (and the same time range, or none) already read them.
pub(crate) async fn read_sst_shared(
    store: &Operator,
    path: &str,
    codec: Arc<KeyCodec>,
    options: SstReadOptions,
    shared: Option<&SharedOpen>,
) -> Result<Vec<BatchStream>, StorageError> {
    let metadata = codec.metadata().clone();
    let reader = store.reader(path).await.context(ObjectStoreSnafu {
        operation: "open SST",
        path,
    })?;
    let load = || {
        load_metadata(
            store,
            reader.clone(),
            path,
            &metadata,
            options.time_range.is_some(),
        )
    };
    let (size, reader_metadata) = match shared {
        Some(shared) => shared.0.get_or_try_init(load).await?.clone(),
        None => load().await?,
    };
    let layout = Layout::new(
        &metadata,
        reader_metadata.schema(),
        options.projection.as_deref(),
        options.rows_only,
        path,
    )?;
    let file = reader_metadata.metadata();
    let mut row_groups = select_row_groups(file, layout.file_ts, options.time_range);
    if let Some((i, n)) = options.row_group_slice {
        let all = file.num_row_groups();
        let n = n.max(1);
        let slice = (i * all / n)..((i + 1) * all / n).min(all);
        row_groups.retain(|g| slice.contains(g));
    }
    let slices = match file_slice_width(file, path)? {
        Some(width) => row_groups_by_slice(file, row_groups, layout.file_ts, width, path)?,
        None if row_groups.is_empty() => Vec::new(),
        None => vec![row_groups],
    };
    let layout = Arc::new(layout);
    let input = OpendalReader { reader, size };
    slices
        .into_iter()
        .map(|row_groups| {
            let read = SliceRead {
                input: input.clone(),
                metadata: reader_metadata.clone(),
                layout: layout.clone(),
                codec: codec.clone(),
                path,
            };
            read.stream(row_groups, &options)
        })
        .collect()
}

/// What decoding some row groups of an opened SST needs.
struct SliceRead<'a> {
    input: OpendalReader,
    metadata: ArrowReaderMetadata,
    layout: Arc<Layout>,
    codec: Arc<KeyCodec>,
    path: &'a str,
}

impl SliceRead<'_> {
    /// The rows of `row_groups` (in order) as `options` asks.
    fn stream(
        self,
        row_groups: Vec<usize>,
        options: &SstReadOptions,
    ) -> Result<BatchStream, StorageError> {
        let SliceRead {
            input,
            metadata,
            layout,
            codec,
            path,
        } = self;
        let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(input, metadata);
        let mask = ProjectionMask::roots(builder.parquet_schema(), layout.file_columns.clone());
        // A time range that cuts into the kept row groups goes down to pages (those whose
        // timestamps miss it are not read) and rows (the timestamps are decoded first and
        // the other columns only for rows in range).
        let cut = options.time_range.filter(|range| {
            !row_groups_within(builder.metadata(), &row_groups, layout.file_ts, *range)
        });
        if let Some(range) = cut {
            if let Some(pages) =
                page_selection(builder.metadata(), &row_groups, layout.file_ts, range)
            {
                builder = builder.with_row_selection(pages);
            }
            let ts_only = ProjectionMask::roots(builder.parquet_schema(), [layout.file_ts]);
            let in_range = ArrowPredicateFn::new(ts_only, move |batch: RecordBatch| {
                let ts = timestamp_values(batch.column(0)).ok_or_else(|| {
                    arrow_schema::ArrowError::InvalidArgumentError(
                        "timestamp column has the wrong type".to_string(),
                    )
                })?;
                // Packed 64 rows at a time, no nulls.
                Ok(BooleanArray::new(
                    BooleanBuffer::collect_bool(ts.len(), |i| range.contains(ts[i])),
                    None,
                ))
            });
            builder = builder.with_row_filter(RowFilter::new(vec![Box::new(in_range)]));
        }
        let stream = builder
            .with_row_groups(row_groups)
            .with_projection(mask)
            .with_batch_size(options.batch_rows.max(1))
            .build()
            .map_err(read_error(path))?;
        let path = path.to_string();
        Ok(Box::pin(AssertUnwindSafe(stream).catch_unwind().map(
            move |item| {
                let batch = item
                    .map_err(|panic| decoder_panic(&path, panic.as_ref()))?
                    .map_err(read_error(&path))?;
                layout.convert(&codec, batch, &path)
            },
        )))
    }
}

/// The size and Parquet metadata of the SST at `path` (read through `reader`) of a region
/// with `metadata` (with the page index if `ranged`: it prunes pages by time), string tags
/// as dictionaries.
async fn load_metadata(
    store: &Operator,
    reader: opendal::Reader,
    path: &str,
    metadata: &RegionMetadata,
    ranged: bool,
) -> Result<(u64, ArrowReaderMetadata), StorageError> {
    let size = store
        .stat(path)
        .await
        .context(ObjectStoreSnafu {
            operation: "stat SST",
            path,
        })?
        .content_length();
    let mut input = OpendalReader { reader, size };
    let policy = if ranged {
        PageIndexPolicy::Optional
    } else {
        PageIndexPolicy::Skip
    };
    // The Parquet decoder is not panic-free on damaged input (seen: an out-of-bounds index
    // in its byte-stream-split decoder), so a panic while opening or decoding is contained
    // and reported as corruption of this file.
    let plain = AssertUnwindSafe(ArrowReaderMetadata::load_async(
        &mut input,
        ArrowReaderOptions::new().with_page_index_policy(policy),
    ))
    .catch_unwind()
    .await
    .map_err(|panic| decoder_panic(path, panic.as_ref()))?
    .map_err(read_error(path))?;
    check_format(plain.metadata(), path)?;
    // String tags are read as dictionaries: keys are built from each run's first row and
    // the strings are materialized only when a tag is projected.
    let dictionary_schema = dictionary_tags(plain.schema(), metadata);
    let reader_metadata = ArrowReaderMetadata::try_new(
        plain.metadata().clone(),
        ArrowReaderOptions::new().with_schema(dictionary_schema),
    )
    .map_err(read_error(path))?;
    Ok((size, reader_metadata))
}

/// `file_schema` with the region's string tag columns as `Dictionary(Int32, Utf8)`.
fn dictionary_tags(
    file_schema: &arrow_schema::SchemaRef,
    metadata: &RegionMetadata,
) -> arrow_schema::SchemaRef {
    let fields: Vec<arrow_schema::FieldRef> = file_schema
        .fields()
        .iter()
        .map(|field| {
            let is_tag = metadata
                .column_by_name(field.name())
                .is_some_and(|(_, column)| column.is_tag());
            if is_tag && field.data_type() == &DataType::Utf8 {
                Arc::new(field.as_ref().clone().with_data_type(DataType::Dictionary(
                    Box::new(DataType::Int32),
                    Box::new(DataType::Utf8),
                )))
            } else {
                field.clone()
            }
        })
        .collect();
    Arc::new(arrow_schema::Schema::new_with_metadata(
        fields,
        file_schema.metadata().clone(),
    ))
}

/// What a Parquet error while reading the SST at `path` means: the store failing under it
/// (an OpenDAL error inside: its own kind, retryable where a retry can help), or else data
/// the decoder cannot make sense of — the file's damage, which no retry mends.
fn read_error(path: &str) -> impl Fn(parquet::errors::ParquetError) -> StorageError + '_ {
    move |error| match &error {
        parquet::errors::ParquetError::External(inner) if inner.is::<opendal::Error>() => {
            StorageError::Parquet {
                path: path.to_string(),
                source: Box::new(error),
            }
        }
        _ => StorageError::CorruptSst {
            path: path.to_string(),
            reason: format!("Parquet cannot decode it: {error}"),
        },
    }
}

/// A decoder panic, as the corruption it signals.
fn decoder_panic(path: &str, panic: &(dyn std::any::Any + Send)) -> StorageError {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    StorageError::CorruptSst {
        path: path.to_string(),
        reason: format!("the Parquet decoder failed on damaged data: {message}"),
    }
}

/// Where the needed columns are in the file, and how they map to the output.
struct Layout {
    /// File column indices to read, ascending (the Parquet projection).
    file_columns: Vec<usize>,
    /// File index of the timestamp column.
    file_ts: usize,
    /// Position (in the projected record batch) of the timestamp.
    ts: usize,
    /// What a merge needs; `None` when reading rows only.
    merge: Option<MergeColumns>,
    /// For each projected region column, where its values come from.
    outputs: Vec<Output>,
}

/// Positions (in the projected record batch) of the tags, sequence and op type.
struct MergeColumns {
    tags: Vec<usize>,
    sequence: usize,
    op_type: usize,
}

/// The source of one output column.
enum Output {
    /// This position in the projected record batch.
    File(usize),
    /// A field column added after the file was written: filled like a write that leaves it
    /// out (its default, else nulls).
    Missing(ColumnSchema),
}

impl Layout {
    fn new(
        metadata: &RegionMetadata,
        file_schema: &arrow_schema::SchemaRef,
        projection: Option<&[usize]>,
        rows_only: bool,
        path: &str,
    ) -> Result<Self, StorageError> {
        let find = |name: &str, expected: &arrow_schema::DataType| -> Result<usize, StorageError> {
            let (index, field) =
                file_schema
                    .column_with_name(name)
                    .ok_or_else(|| StorageError::CorruptSst {
                        path: path.to_string(),
                        reason: format!("column {name:?} is missing"),
                    })?;
            // String tags are read as dictionaries of their type (see `dictionary_tags`).
            let value_type = match field.data_type() {
                DataType::Dictionary(_, values) => values.as_ref(),
                other => other,
            };
            snafu::ensure!(
                value_type == expected,
                CorruptSstSnafu {
                    path,
                    reason: format!(
                        "column {name:?} has type {}, expected {expected}",
                        field.data_type()
                    ),
                }
            );
            Ok(index)
        };
        let columns = metadata.columns();
        let projection: Vec<usize> =
            projection.map_or_else(|| (0..columns.len()).collect(), <[usize]>::to_vec);
        for &index in &projection {
            snafu::ensure!(
                index < columns.len(),
                crate::error::BadProjectionSnafu {
                    region_id: metadata.region_id(),
                    index,
                    columns: columns.len(),
                }
            );
        }
        let region_column = |i: usize| find(&columns[i].name, &columns[i].data_type.arrow_type());
        let tag_files = metadata
            .primary_key()
            .iter()
            .map(|&i| region_column(i))
            .collect::<Result<Vec<_>, _>>()?;
        let file_ts = region_column(metadata.time_index())?;
        let file_sequence = find(SEQUENCE_COLUMN, &arrow_schema::DataType::UInt64)?;
        let file_op = find(OP_TYPE_COLUMN, &arrow_schema::DataType::UInt8)?;
        // A field column the file lacks was added by an alter after the file was written.
        let output_files = projection
            .iter()
            .map(|&i| {
                let column = &columns[i];
                if column.is_field() && file_schema.column_with_name(&column.name).is_none() {
                    Ok(None)
                } else {
                    region_column(i).map(Some)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;

        let merge_files: Vec<usize> = if rows_only {
            Vec::new()
        } else {
            tag_files
                .iter()
                .copied()
                .chain([file_sequence, file_op])
                .collect()
        };
        let mut file_columns: Vec<usize> = merge_files
            .iter()
            .copied()
            .chain(output_files.iter().flatten().copied())
            .chain([file_ts])
            .collect();
        file_columns.sort_unstable();
        file_columns.dedup();
        let position = |file_index: usize| {
            file_columns
                .iter()
                .position(|&f| f == file_index)
                .unwrap_or_default()
        };
        Ok(Self {
            ts: position(file_ts),
            merge: (!rows_only).then(|| MergeColumns {
                tags: tag_files.iter().map(|&f| position(f)).collect(),
                sequence: position(file_sequence),
                op_type: position(file_op),
            }),
            outputs: output_files
                .iter()
                .zip(&projection)
                .map(|(file, &i)| match file {
                    Some(f) => Output::File(position(*f)),
                    None => Output::Missing(columns[i].clone()),
                })
                .collect(),
            file_ts,
            file_columns,
        })
    }

    /// Turns one projected record batch into a sorted batch.
    fn convert(
        &self,
        codec: &KeyCodec,
        batch: RecordBatch,
        path: &str,
    ) -> Result<SortedBatch, StorageError> {
        let corrupt = |reason: &str| StorageError::CorruptSst {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let column = |i: usize| -> &ArrayRef { batch.column(i) };
        let ts = column(self.ts);
        if ts.null_count() > 0 {
            return Err(corrupt("the timestamp column has nulls"));
        }
        let timestamps =
            timestamp_values(ts).ok_or_else(|| corrupt("timestamp column has the wrong type"))?;
        let (keys, key_index, sequences, op_types) = match &self.merge {
            None => (
                codec.empty_rows(0, 0),
                None,
                ScalarBuffer::from(Vec::new()),
                ScalarBuffer::from(Vec::new()),
            ),
            Some(merge) => {
                if [merge.sequence, merge.op_type]
                    .iter()
                    .any(|&i| column(i).null_count() > 0)
                {
                    return Err(corrupt("sequence or op type has nulls"));
                }
                let tags: Vec<ArrayRef> = merge.tags.iter().map(|&i| column(i).clone()).collect();
                // Rows are sorted by key: each run of one key is encoded once. The tags
                // come from the file: a type the key encoding refuses (a damaged footer can
                // decode a string column as binary) is the file's damage.
                let (keys, key_index) = codec
                    .encode_sorted(&tags)
                    .map_err(|e| corrupt(&format!("cannot encode its primary keys: {e}")))?;
                let sequences = column(merge.sequence)
                    .as_primitive_opt::<UInt64Type>()
                    .ok_or_else(|| corrupt("__sequence is not UInt64"))?
                    .values()
                    .clone();
                let op_types = column(merge.op_type)
                    .as_primitive_opt::<UInt8Type>()
                    .ok_or_else(|| corrupt("__op_type is not UInt8"))?
                    .values()
                    .clone();
                if op_types.iter().any(|&op| op > 1) {
                    return Err(corrupt("__op_type holds a value other than 0 or 1"));
                }
                (keys, key_index, sequences, op_types)
            }
        };
        Ok(SortedBatch {
            keys: Arc::new(keys),
            key_index,
            timestamps,
            sequences,
            op_types,
            columns: self
                .outputs
                .iter()
                .map(|output| match output {
                    Output::File(i) => plain(column(*i)).map_err(|e| {
                        corrupt(&format!("cannot decode a dictionary-encoded column: {e}"))
                    }),
                    Output::Missing(schema) => {
                        schema.fill_array(batch.num_rows(), false).ok_or_else(|| {
                            corrupt(&format!(
                                "column {:?} is missing and is NOT NULL without a default",
                                schema.name
                            ))
                        })
                    }
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
pub(crate) fn select_row_groups_for_test(
    metadata: &parquet::file::metadata::ParquetMetaData,
    ts_column: usize,
    range: Option<TimeRange>,
) -> Vec<usize> {
    select_row_groups(metadata, ts_column, range)
}

/// Whether every row group in `row_groups` has timestamp statistics inside `range`.
fn row_groups_within(
    metadata: &parquet::file::metadata::ParquetMetaData,
    row_groups: &[usize],
    ts_column: usize,
    range: TimeRange,
) -> bool {
    row_groups.iter().all(
        |&i| match metadata.row_group(i).column(ts_column).statistics() {
            Some(Statistics::Int64(stats)) => match (stats.min_opt(), stats.max_opt()) {
                (Some(&min), Some(&max)) => range.contains(min) && range.contains(max),
                _ => false,
            },
            _ => false,
        },
    )
}

/// The rows of `row_groups` (numbered across them, in order) in pages whose timestamps
/// may lie in `range`, from the page index; `None` if the file has none loaded. A row
/// group without an index for the timestamp column is kept whole.
pub(super) fn page_selection(
    metadata: &parquet::file::metadata::ParquetMetaData,
    row_groups: &[usize],
    ts_column: usize,
    range: TimeRange,
) -> Option<RowSelection> {
    metadata.page_index()?;
    let mut keep: Vec<std::ops::Range<usize>> = Vec::new();
    let mut base = 0usize;
    for &group in row_groups {
        let rows = usize::try_from(metadata.row_group(group).num_rows()).unwrap_or(0);
        let index = metadata.page_index_for_row_group(group);
        match (index.column_index(ts_column), index.offset_index(ts_column)) {
            (Some(ColumnIndexMetaData::INT64(stats)), Some(offsets)) => {
                let pages = offsets.page_locations();
                for (page, location) in pages.iter().enumerate() {
                    let first = usize::try_from(location.first_row_index).unwrap_or(0);
                    let end = pages.get(page + 1).map_or(rows, |next| {
                        usize::try_from(next.first_row_index).unwrap_or(rows)
                    });
                    let overlaps = match (stats.min_value(page), stats.max_value(page)) {
                        (Some(&min), Some(&max)) => range.overlaps(&TimeRange {
                            start: min,
                            end: max,
                        }),
                        _ => true,
                    };
                    if overlaps && first < end {
                        keep.push(base + first..base + end.min(rows));
                    }
                }
            }
            _ => keep.push(base..base + rows),
        }
        base += rows;
    }
    Some(RowSelection::from_consecutive_ranges(
        keep.into_iter(),
        base,
    ))
}

/// Row groups whose timestamp statistics overlap `range` (all of them without a range or
/// without statistics).
fn select_row_groups(
    metadata: &parquet::file::metadata::ParquetMetaData,
    ts_column: usize,
    range: Option<TimeRange>,
) -> Vec<usize> {
    (0..metadata.num_row_groups())
        .filter(|&i| {
            let Some(range) = range else { return true };
            match metadata.row_group(i).column(ts_column).statistics() {
                Some(Statistics::Int64(stats)) => match (stats.min_opt(), stats.max_opt()) {
                    (Some(&min), Some(&max)) => range.overlaps(&TimeRange {
                        start: min,
                        end: max,
                    }),
                    _ => true,
                },
                _ => true,
            }
        })
        .collect()
}
