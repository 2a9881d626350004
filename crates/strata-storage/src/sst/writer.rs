//! Writing sorted batches to a Parquet SST through OpenDAL.

use std::sync::Arc;

use futures::StreamExt;
use opendal::Operator;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use snafu::{ResultExt, ensure};
use strata_request::{ColumnDataType, OpType, RegionMetadata};

use super::opendal_io::OpendalWriter;
use super::slices::slice_start;
use super::{FileId, FileMeta, REGION_METADATA_KEY, TIME_SLICE_KEY, delete_ssts};
use crate::batch::{BatchStream, OP_TYPE_COLUMN, SEQUENCE_COLUMN, SortedBatch, output_schema};
use crate::error::{ArrowSnafu, CorruptSstSnafu, ObjectStoreSnafu, ParquetSnafu, StorageError};
use crate::format::{SST_FORMAT, SST_FORMAT_KEY};

/// How SST files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SstWriteOptions {
    /// Rows per Parquet row group (the unit of time pruning and of writer memory); in a
    /// file of time slices, the rows a slice aims at, and a row group holds up to twice it.
    pub row_group_size: usize,
    /// Bytes buffered before a write (a part upload on object stores).
    pub write_buffer_size: usize,
    /// LSM level recorded in the file's [`FileMeta`].
    pub level: u8,
    /// Write the rows in time slices of this width ([`slice_width`](super::slice_width)):
    /// the source then brings them slice by slice, oldest first, sorted by key within each
    /// slice, and every slice starts a row group. `None`: one slice, sorted by key. Set per
    /// file by flushes and compactions, not configured.
    pub time_slice: Option<i64>,
}

impl SstWriteOptions {
    /// These options for a file of LSM level `level`.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level;
        self
    }

    /// These options for a file in time slices of `width` (`None`: one slice).
    pub fn time_slice(mut self, width: Option<i64>) -> Self {
        self.time_slice = width;
        self
    }
}

impl Default for SstWriteOptions {
    fn default() -> Self {
        Self {
            row_group_size: 102_400,
            write_buffer_size: 8 << 20,
            level: 0,
            time_slice: None,
        }
    }
}

/// Writes `source` — sorted, deduplicated batches carrying every region column in region
/// order (sorted within each time slice if `options.time_slice` says so) — to `{dir}/{file_id}.parquet` on `store`, streaming (memory is about one row
/// group). Returns the file's metadata, or `None` and no file if `source` has no rows.
///
/// If writing fails, the partial object is deleted (best effort) before the error returns.
pub async fn write_sst(
    store: &Operator,
    dir: &str,
    metadata: &Arc<RegionMetadata>,
    source: BatchStream,
    options: &SstWriteOptions,
) -> Result<Option<FileMeta>, StorageError> {
    let mut files = write_ssts(store, dir, metadata, source, options, u64::MAX).await?;
    Ok(files.pop())
}

/// Like [`write_sst`], but starts a new file after every `max_rows_per_file` rows (at
/// least one): the files follow each other in sort order. Returns them in that order;
/// empty if `source` has no rows. If writing fails, every file this call wrote is deleted
/// (best effort) before the error returns.
pub async fn write_ssts(
    store: &Operator,
    dir: &str,
    metadata: &Arc<RegionMetadata>,
    mut source: BatchStream,
    options: &SstWriteOptions,
    max_rows_per_file: u64,
) -> Result<Vec<FileMeta>, StorageError> {
    let mut files = Vec::new();
    let mut carry = None;
    loop {
        let first = match carry.take() {
            Some(batch) => batch,
            None => match next_non_empty(&mut source).await {
                Ok(Some(batch)) => batch,
                Ok(None) => return Ok(files),
                Err(error) => {
                    delete_ssts(store, dir, &files, "an SST of a failed write").await;
                    return Err(error);
                }
            },
        };
        match write_one(
            store,
            dir,
            metadata,
            first,
            &mut source,
            options,
            max_rows_per_file,
        )
        .await
        {
            Ok((file, Next::Carry(rest))) => {
                files.push(file);
                carry = Some(rest);
            }
            Ok((file, Next::More)) => files.push(file),
            Ok((file, Next::Done)) => {
                files.push(file);
                return Ok(files);
            }
            Err(error) => {
                delete_ssts(store, dir, &files, "an SST of a failed write").await;
                return Err(error);
            }
        }
    }
}

/// Where the source stands after a file is written.
enum Next {
    /// The rows of the last batch that did not fit.
    Carry(SortedBatch),
    /// The file is full at a batch boundary; the source may have more.
    More,
    /// The source is exhausted (it must not be polled again).
    Done,
}

/// Writes one file starting with `first`, up to `max_rows` rows; returns its metadata and
/// where the source stands.
async fn write_one(
    store: &Operator,
    dir: &str,
    metadata: &Arc<RegionMetadata>,
    first: SortedBatch,
    source: &mut BatchStream,
    options: &SstWriteOptions,
    max_rows: u64,
) -> Result<(FileMeta, Next), StorageError> {
    let file_id = FileId::random();
    let path = format!("{}/{file_id}.parquet", dir.trim_end_matches('/'));
    let result = write_file(store, &path, metadata, first, source, options, max_rows).await;
    match result {
        Ok((written, next)) => {
            let stat = store.stat(&path).await.context(ObjectStoreSnafu {
                operation: "stat written SST",
                path: &path,
            })?;
            let file = FileMeta {
                region_id: metadata.region_id(),
                file_id,
                level: options.level,
                time_range: written.time_range,
                num_rows: written.rows,
                num_row_groups: written.row_groups,
                file_size: stat.content_length(),
                max_sequence: written.max_sequence,
                checksum: written.checksum,
                num_deletes: Some(written.deletes),
                time_slice: options.time_slice,
            };
            Ok((file, next))
        }
        Err(error) => {
            if let Err(cleanup) = store.delete(&path).await {
                tracing::warn!(path, %cleanup, "cannot delete a partially written SST");
            }
            Err(error)
        }
    }
}

async fn next_non_empty(source: &mut BatchStream) -> Result<Option<SortedBatch>, StorageError> {
    while let Some(batch) = source.next().await {
        let batch = batch?;
        if !batch.is_empty() {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}

/// What writing a file found out about it.
struct Written {
    rows: u64,
    row_groups: u64,
    time_range: (i64, i64),
    max_sequence: u64,
    checksum: u32,
    deletes: u64,
}

/// Writes the file.
async fn write_file(
    store: &Operator,
    path: &str,
    metadata: &Arc<RegionMetadata>,
    first: SortedBatch,
    source: &mut BatchStream,
    options: &SstWriteOptions,
    max_rows: u64,
) -> Result<(Written, Next), StorageError> {
    let checksum = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let region_id = metadata.region_id();
    let all: Vec<usize> = (0..metadata.columns().len()).collect();
    let schema = output_schema(metadata, &all, true);
    let writer = store
        .writer_with(path)
        .chunk(options.write_buffer_size)
        .await
        .context(ObjectStoreSnafu {
            operation: "open SST for writing",
            path,
        })?;
    let mut writer = AsyncArrowWriter::try_new(
        OpendalWriter::new(writer, checksum.clone()),
        schema.clone(),
        Some(writer_properties(metadata, options)?),
    )
    .context(ParquetSnafu { path })?;

    let mut rows = 0u64;
    let mut time_range = (i64::MAX, i64::MIN);
    let mut max_sequence = 0u64;
    let mut deletes = 0u64;
    // The slice the rows written last lie in.
    let mut slice: Option<i64> = None;
    let mut next = Some(first);
    let mut rest = None;
    let mut exhausted = false;
    while let Some(mut batch) = next {
        ensure!(
            batch.columns().len() == all.len(),
            CorruptSstSnafu {
                path,
                reason: format!(
                    "writer got batches with {} columns, the region has {}",
                    batch.columns().len(),
                    all.len()
                ),
            }
        );
        let room = usize::try_from(max_rows.max(1).saturating_sub(rows)).unwrap_or(usize::MAX);
        if batch.num_rows() > room {
            rest = Some(batch.slice(room, batch.num_rows() - room));
            batch = batch.slice(0, room);
        }
        for i in 0..batch.num_rows() {
            let ts = batch.timestamp(i);
            time_range = (time_range.0.min(ts), time_range.1.max(ts));
            max_sequence = max_sequence.max(batch.sequence(i));
        }
        deletes += batch
            .op_types
            .iter()
            .filter(|&&op| op == OpType::Delete as u8)
            .count() as u64;
        rows += batch.num_rows() as u64;
        for (part, starts_slice) in slice_parts(&batch, options.time_slice, &mut slice, path)? {
            if starts_slice {
                // A new slice starts a row group.
                writer.flush().await.context(ParquetSnafu { path })?;
            }
            let record = part.to_record_batch(&schema).context(ArrowSnafu {
                region_id,
                operation: "build SST batch",
            })?;
            writer.write(&record).await.context(ParquetSnafu { path })?;
        }
        next = if rest.is_some() || rows >= max_rows.max(1) {
            None
        } else {
            let batch = next_non_empty(source).await?;
            exhausted = batch.is_none();
            batch
        };
    }
    let file = writer.close().await.context(ParquetSnafu { path })?;
    let written = Written {
        rows,
        row_groups: file.num_row_groups() as u64,
        time_range,
        max_sequence,
        checksum: checksum.load(std::sync::atomic::Ordering::Relaxed),
        deletes,
    };
    let next = match rest {
        Some(rest) => Next::Carry(rest),
        None if exhausted => Next::Done,
        None => Next::More,
    };
    Ok((written, next))
}

/// `batch` cut where its rows enter a new time slice of `width` (one part for `None`),
/// each part with whether it starts a slice after rows of an earlier one (`slice` holds
/// the slice of the rows before it). Rows of an earlier slice after a later one are an
/// error: the file's slices would not be in time order.
fn slice_parts(
    batch: &SortedBatch,
    width: Option<i64>,
    slice: &mut Option<i64>,
    path: &str,
) -> Result<Vec<(SortedBatch, bool)>, StorageError> {
    let Some(width) = width else {
        return Ok(vec![(batch.clone(), false)]);
    };
    let mut parts = Vec::new();
    let mut start = 0;
    while start < batch.num_rows() {
        let this = slice_start(batch.timestamp(start), width);
        ensure!(
            slice.is_none_or(|before| before <= this),
            CorruptSstSnafu {
                path,
                reason: format!(
                    "writer got a row of the time slice at {this} after rows of the slice at {}",
                    slice.unwrap_or_default()
                ),
            }
        );
        let mut end = start + 1;
        while end < batch.num_rows() && slice_start(batch.timestamp(end), width) == this {
            end += 1;
        }
        parts.push((
            batch.slice(start, end - start),
            slice.is_some_and(|before| before != this),
        ));
        *slice = Some(this);
        start = end;
    }
    Ok(parts)
}

/// Most rows in one row group: `row_group_size`, or twice it in a file of time slices —
/// [`slice_width`](super::slice_width) aims at slices within √2 of `row_group_size` rows,
/// and a slice cut into a full row group and a sliver would double the column chunks
/// every read of it opens.
fn max_row_group_rows(options: &SstWriteOptions) -> usize {
    let rows = options.row_group_size.max(1);
    if options.time_slice.is_some() {
        rows.saturating_mul(2)
    } else {
        rows
    }
}

/// The Parquet writer properties of SSTs for `metadata`: zstd, except for the tag and
/// op-type columns; timestamps and sequences delta-encoded without dictionaries; float
/// fields without dictionaries (high cardinality makes dictionaries a ~3× slowdown) in
/// byte-stream-split encoding; the format ([`SST_FORMAT`]), the region schema and the
/// time-slice width, if any, in the key-value metadata. Public so
/// benchmarks compare like with like.
///
/// Tags and op types are dictionary-encoded and sorted, so their pages are already a few
/// runs each: zstd made the main job's files only 0.4 % smaller, while every column chunk
/// it compresses costs its reader a zstd context pair — two `cpuid`s, which trap to the
/// hypervisor on virtual machines (6 % of a 1 % time-range scan).
pub fn writer_properties(
    metadata: &RegionMetadata,
    options: &SstWriteOptions,
) -> Result<WriterProperties, StorageError> {
    let json = serde_json::to_string(metadata).map_err(|e| StorageError::CorruptSst {
        path: String::new(),
        reason: format!("cannot serialize region metadata: {e}"),
    })?;
    let mut key_values = vec![
        KeyValue::new(SST_FORMAT_KEY.to_string(), SST_FORMAT.to_string()),
        KeyValue::new(REGION_METADATA_KEY.to_string(), json),
    ];
    if let Some(width) = options.time_slice {
        key_values.push(KeyValue::new(TIME_SLICE_KEY.to_string(), width.to_string()));
    }
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(max_row_group_rows(options)))
        .set_key_value_metadata(Some(key_values));
    let no_dictionary =
        |builder: parquet::file::properties::WriterPropertiesBuilder, name: &str, encoding| {
            let column = ColumnPath::from(name);
            builder
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_encoding(column, encoding)
        };
    builder = no_dictionary(
        builder,
        &metadata.time_index_column().name,
        Encoding::DELTA_BINARY_PACKED,
    );
    builder = no_dictionary(builder, SEQUENCE_COLUMN, Encoding::DELTA_BINARY_PACKED);
    for column in metadata
        .tag_columns()
        .map(|tag| tag.name.as_str())
        .chain([OP_TYPE_COLUMN])
    {
        builder =
            builder.set_column_compression(ColumnPath::from(column), Compression::UNCOMPRESSED);
    }
    for field in metadata.field_columns() {
        if field.data_type == ColumnDataType::Float64 {
            builder = no_dictionary(builder, &field.name, Encoding::BYTE_STREAM_SPLIT);
        }
    }
    Ok(builder.build())
}
