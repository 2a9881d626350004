//! Writing a memtable to SSTs: one file per compaction window its rows fall in, each in
//! time slices when it holds more than two row groups' worth of rows.

use std::sync::Arc;

use futures::StreamExt;
use opendal::Operator;

use crate::batch::BatchStream;
use crate::error::StorageError;
use crate::memtable::TimeSeriesMemtable;
use crate::object_store::region_data_dir;
use crate::read::{MergeOptions, merge};
use crate::request::ScanRequest;
use crate::sst::{FileMeta, SstWriteOptions, delete_ssts, slice_width, time_slices, write_sst};
use crate::time_range::TimeRange;
use crate::window::window_start;

/// Writes `memtable`'s rows, merged as `merge` says ([`MergeOptions::flush_of`] the region's
/// options: deduplicated with tombstones kept, or every row in an append-mode region), as
/// one SST in its region's data directory — in [time slices](crate::slice_width) of the
/// width [`slice_width`] picks for the memtable's rows and span with `options`'
/// row-group size as the target. `None` if the memtable is empty.
pub async fn flush_memtable(
    store: &Operator,
    memtable: &Arc<TimeSeriesMemtable>,
    options: &SstWriteOptions,
    merge_options: MergeOptions,
) -> Result<Option<FileMeta>, StorageError> {
    let stats = memtable.stats();
    let Some(span) = stats.time_range else {
        return Ok(None);
    };
    let options = sliced(options, span, stats.num_rows);
    let metadata = memtable.metadata().clone();
    let rows = sorted_rows(memtable, span, options.time_slice, merge_options);
    write_sst(
        store,
        &region_data_dir(metadata.region_id()),
        &metadata,
        rows,
        &options,
    )
    .await
}

/// Most windows a flush splits one memtable into; a memtable spanning more (a backfill of
/// years into one-hour windows) is written as one file, which compaction splits later.
const MAX_FLUSH_WINDOWS: i64 = 256;

/// SSTs of one windowed flush written at once.
const CONCURRENT_WINDOW_WRITES: usize = 4;

/// Like [`flush_memtable`], but one SST per compaction time window of width `window` (in
/// the region's timestamp unit) that the memtable's rows fall in, so each file lies in one
/// window. Every file has the time-slice width chosen for the whole memtable. Returns the
/// files, oldest window first; empty if the memtable is empty.
pub async fn flush_memtable_windowed(
    store: &Operator,
    memtable: &Arc<TimeSeriesMemtable>,
    options: &SstWriteOptions,
    merge_options: MergeOptions,
    window: i64,
) -> Result<Vec<FileMeta>, StorageError> {
    let stats = memtable.stats();
    let Some(span) = stats.time_range else {
        return Ok(Vec::new());
    };
    let window = window.max(1);
    let first = window_start(span.start, window);
    let last = window_start(span.end, window);
    let windows = (last - first) / window + 1;
    if windows == 1 || windows > MAX_FLUSH_WINDOWS {
        return Ok(flush_memtable(store, memtable, options, merge_options)
            .await?
            .into_iter()
            .collect());
    }
    let options = sliced(options, span, stats.num_rows);
    let metadata = memtable.metadata().clone();
    let dir = region_data_dir(metadata.region_id());
    // Windows are written a few at once: on an object store each file costs round trips
    // of its own, so a flush across a window boundary would otherwise take twice as long.
    let written: Vec<Result<Option<FileMeta>, StorageError>> = futures::stream::iter(0..windows)
        .map(|k| {
            let start = first + k * window;
            let range = span.intersection(&TimeRange {
                start,
                end: start.saturating_add(window - 1),
            });
            let (metadata, dir, options) = (&metadata, &dir, &options);
            async move {
                let rows = sorted_rows(memtable, range, options.time_slice, merge_options);
                write_sst(store, dir, metadata, rows, options).await
            }
        })
        .buffered(CONCURRENT_WINDOW_WRITES)
        .collect()
        .await;
    let mut files = Vec::new();
    let mut failure = None;
    for result in written {
        match result {
            Ok(Some(file)) => files.push(file),
            Ok(None) => {}
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    if let Some(error) = failure {
        delete_ssts(store, &dir, &files, "an SST of a failed flush").await;
        return Err(error);
    }
    Ok(files)
}

/// `options` with the time-slice width for `rows` rows over `span`, a row group's rows a
/// slice.
fn sliced(options: &SstWriteOptions, span: TimeRange, rows: usize) -> SstWriteOptions {
    SstWriteOptions {
        time_slice: slice_width(span, rows as u64, options.row_group_size as u64),
        ..options.clone()
    }
}

/// The memtable's rows in `range`, merged as `merge_options` says: slice by slice of
/// `width`, oldest first, each sorted by key; sorted by key throughout for `None`.
fn sorted_rows(
    memtable: &Arc<TimeSeriesMemtable>,
    range: TimeRange,
    width: Option<i64>,
    merge_options: MergeOptions,
) -> BatchStream {
    let ranges = time_slices(range, width);
    let codec = memtable.codec().clone();
    let slices = match memtable.iter_ranges(
        ScanRequest {
            batch_rows: 8192,
            ..ScanRequest::default()
        },
        &ranges,
    ) {
        Ok(slices) => slices,
        Err(error) => return Box::pin(futures::stream::once(std::future::ready(Err(error)))),
    };
    Box::pin(
        futures::stream::iter(slices)
            .map(move |rows| {
                merge(
                    codec.clone(),
                    vec![Box::pin(futures::stream::iter(rows))],
                    merge_options,
                )
            })
            .flatten(),
    )
}
