//! [`scan`]: a region snapshot's rows, merged and deduplicated, as Arrow record batches.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use arrow_array::RecordBatch;
use futures::{Stream, StreamExt};
use opendal::Operator;
use snafu::ResultExt;

use super::merge::{MergeOptions, drop_deletes, merge};
use crate::batch::{BatchStream, SortedBatch, output_schema};
use crate::error::{ArrowSnafu, StorageError};
use crate::memtable::TimeSeriesMemtable;
use crate::object_store::region_data_dir;
use crate::request::{ScanOrder, ScanRequest};
use crate::sst::{
    FileHandle, SharedOpen, SstReadOptions, concat, one_slice_within, read_sst_shared, time_slices,
    verify_sst,
};
use crate::time_range::TimeRange;
use crate::version::VersionControlData;

/// A stream of scan results.
pub type RecordBatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, StorageError>> + Send>>;

/// Scans `snapshot`: prunes memtables and files by time range, merges them by (primary
/// key, timestamp, sequence descending), keeps the newest row of each key and timestamp,
/// and drops deleted keys — or, in an append-mode region, keeps every row as written.
/// Rows come out in (primary key, timestamp) order.
///
/// A scan that reads one SST and nothing else skips deduplication (a flush or compaction
/// output holds each key and timestamp once) and only drops its delete markers.
pub async fn scan(
    store: &Operator,
    snapshot: &VersionControlData,
    request: ScanRequest,
) -> Result<RecordBatchStream, StorageError> {
    let version = &snapshot.version;
    let metadata = version.metadata.clone();
    let region_id = metadata.region_id();
    let request = request.resolve_columns(&metadata)?;
    let projection = request
        .projection
        .clone()
        .unwrap_or_else(|| (0..metadata.columns().len()).collect());
    let schema = output_schema(&metadata, &projection, false);
    let merged = match request.order {
        ScanOrder::Key => {
            // The stream holds the handles of the files it reads, so none is deleted (by
            // a truncate, a compaction or a drop) before the scan is done with it.
            let (merged, held) = merge_parts(
                store,
                snapshot,
                parts(snapshot, &request),
                &request,
                &projection,
                None,
            )
            .await?;
            hold(merged, held)
        }
        ScanOrder::TimeGroups => scan_time_groups(store, snapshot, request, projection),
    };
    Ok(Box::pin(merged.map(move |batch| {
        batch?.to_record_batch(&schema).context(ArrowSnafu {
            region_id,
            operation: "build scan output",
        })
    })))
}

/// `stream`, holding `held` (the handles of the files it reads) until it is dropped.
fn hold(stream: BatchStream, held: Vec<FileHandle>) -> BatchStream {
    Box::pin(stream.map(move |batch| {
        let _held = &held;
        batch
    }))
}

/// [`ScanOrder::TimeGroups`]: each group of overlapping parts merged on its own, oldest
/// group first. A group's files are opened when the scan reaches it; with
/// `prefetch_batches` > 0 on a multi-thread runtime, one more piece than the runtime has
/// threads is opened, merged and decoded at once, each on its own task, ahead of the
/// caller — a piece being a group, or a slice of the row groups of a group's one large
/// file (decoded whole ahead).
fn scan_time_groups(
    store: &Operator,
    snapshot: &VersionControlData,
    request: ScanRequest,
    projection: Vec<usize>,
) -> BatchStream {
    let groups: Vec<(Vec<Part>, Option<TimeRange>)> = overlapping_groups(parts(snapshot, &request))
        .into_iter()
        .flat_map(|group| split_by_slices(group, request.time_range))
        .collect();
    let parallel = request.prefetch_batches > 0 && on_multi_thread_runtime();
    // One more piece than threads: each thread keeps decoding while the caller drains a
    // piece that is already done.
    let ahead = if parallel { runtime_workers() + 1 } else { 1 };
    // In parallel, a group of one large SST is read as pieces of its row groups (key
    // ranges of the file, in order), each decoded whole ahead on its own task. A piece is
    // about the same decoding work whatever the projection: values of its columns plus
    // the key, timestamp, sequence and op type.
    let piece_rows = (PIECE_VALUES / (projection.len() as u64 + 4)).max(1);
    let mut pieces: Vec<Piece> = Vec::with_capacity(groups.len());
    for (group, range) in groups {
        // (A file alone in one range of a split group is read in that range only: whole.)
        let rows = match group.as_slice() {
            [Part::File(handle)] if parallel && range.is_none() => handle.meta().num_rows,
            _ => 0,
        };
        let n = rows.div_ceil(piece_rows).clamp(1, MAX_PIECES);
        // A piece of one file — whole or a slice — decodes up to a piece's worth of rows
        // ahead (all of it unless the file needs more than `MAX_PIECES` pieces) while
        // earlier pieces are read, not just a few batches.
        let depth = if rows > 0 {
            let ahead_rows = (rows / n).min(piece_rows) as usize;
            (ahead_rows / request.batch_rows.max(1) + 2).max(request.prefetch_batches)
        } else {
            request.prefetch_batches
        };
        let n = n as usize;
        let opened = SharedOpen::default();
        for i in 0..n {
            pieces.push(Piece {
                group: group.clone(),
                range,
                slice: (n > 1).then(|| FileSlice {
                    of: (i, n),
                    opened: opened.clone(),
                }),
                depth,
            });
        }
    }
    let (store, snapshot) = (store.clone(), snapshot.clone());
    let open = move |piece: Piece| -> BatchStream {
        let (store, snapshot, projection) = (store.clone(), snapshot.clone(), projection.clone());
        let mut request = request.clone();
        request.time_range = narrowed(request.time_range, piece.range);
        if parallel && piece.group.len() == 1 {
            // The piece's own task decodes its one file.
            request.prefetch_batches = 0;
        }
        let Piece {
            group,
            slice,
            depth,
            ..
        } = piece;
        let rows: BatchStream = Box::pin(
            futures::stream::once(async move {
                let opened =
                    merge_parts(&store, &snapshot, group, &request, &projection, slice).await;
                match opened {
                    Ok((merged, held)) => hold(merged, held),
                    Err(error) => Box::pin(futures::stream::once(std::future::ready(Err(error)))),
                }
            })
            .flatten(),
        );
        if parallel {
            prefetch(rows, depth)
        } else {
            rows
        }
    };
    let state = GroupsAhead {
        waiting: pieces.into_iter(),
        running: VecDeque::new(),
        ahead,
        open,
    };
    let rows = futures::stream::unfold(state, |mut state| async move {
        state.next().await.map(|item| (item, state))
    });
    // A failed group ends the scan: no later group's rows after an error.
    Box::pin(rows.scan(false, |failed, item| {
        if *failed {
            return std::future::ready(None);
        }
        *failed = item.is_err();
        std::future::ready(Some(item))
    }))
}

/// Values (rows × (projected columns + 4)) of a large SST per piece of a parallel
/// time-group scan: 100,000 rows of a scan of every TSBS cpu column, 550,000 of a count.
const PIECE_VALUES: u64 = 2_200_000;
/// Most pieces one SST is read in.
const MAX_PIECES: u64 = 16;

/// What one task of a time-group scan reads: a group (only its rows in `range`, if set),
/// or a slice of the row groups of a group's one file; `depth` batches ahead.
struct Piece {
    group: Vec<Part>,
    range: Option<TimeRange>,
    slice: Option<FileSlice>,
    depth: usize,
}

/// The `of.0`-th of `of.1` slices of the row groups of a group's one file, and what
/// opening the file read (shared by its slices: read once).
#[derive(Clone)]
pub(crate) struct FileSlice {
    of: (usize, usize),
    opened: SharedOpen,
}

/// Pieces of a time-group scan, at most `ahead` of them opened (and, when `open` spawns
/// them, running) at once, read in order.
struct GroupsAhead<F> {
    waiting: std::vec::IntoIter<Piece>,
    running: VecDeque<BatchStream>,
    ahead: usize,
    open: F,
}

impl<F: Fn(Piece) -> BatchStream> GroupsAhead<F> {
    async fn next(&mut self) -> Option<Result<SortedBatch, StorageError>> {
        loop {
            while self.running.len() < self.ahead
                && let Some(piece) = self.waiting.next()
            {
                self.running.push_back((self.open)(piece));
            }
            let oldest = self.running.front_mut()?;
            match oldest.next().await {
                Some(item) => return Some(item),
                None => {
                    self.running.pop_front();
                }
            }
        }
    }
}

/// A source of a scan: a memtable or an SST.
#[derive(Clone)]
pub(crate) enum Part {
    Memtable(Arc<TimeSeriesMemtable>),
    File(FileHandle),
}

impl Part {
    /// The timestamps its rows span; `None` for an empty memtable.
    pub(crate) fn time_range(&self) -> Option<TimeRange> {
        match self {
            Part::Memtable(memtable) => memtable.stats().time_range,
            Part::File(handle) => Some(handle.meta().time_range()),
        }
    }
}

/// The memtables and files of `snapshot` whose rows may lie in `request`'s time range.
pub(crate) fn parts(snapshot: &VersionControlData, request: &ScanRequest) -> Vec<Part> {
    let version = &snapshot.version;
    version
        .memtables
        .all()
        .map(|m| Part::Memtable(m.clone()))
        .chain(version.all_file_handles().map(|h| Part::File(h.clone())))
        .filter(|part| match (request.time_range, part.time_range()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(wanted), Some(have)) => wanted.overlaps(&have),
        })
        .collect()
}

/// `parts` in groups whose time ranges overlap, directly or through other members; the
/// groups' spans are disjoint. Parts without a time range (empty memtables) are left out.
pub(crate) fn overlapping_groups(parts: Vec<Part>) -> Vec<Vec<Part>> {
    let mut ranged: Vec<_> = parts
        .into_iter()
        .filter_map(|part| part.time_range().map(|range| (range, part)))
        .collect();
    ranged.sort_by_key(|(range, _)| range.start);
    let mut groups: Vec<Vec<Part>> = Vec::new();
    let mut end = i64::MIN;
    for (range, part) in ranged {
        match groups.last_mut() {
            Some(group) if range.start <= end => {
                group.push(part);
                end = end.max(range.end);
            }
            _ => {
                groups.push(vec![part]);
                end = range.end;
            }
        }
    }
    groups
}

/// `group` (parts whose time ranges overlap) as time groups of their own: a group of
/// several SSTs that are all in time slices is cut at the boundaries of its widest slices
/// — each piece the parts overlapping one slice-aligned range, to be read only in that
/// range (disjoint ranges share no key and timestamp, so each merges on its own, oldest
/// first) — so a merge reads one slice of each file at a time instead of every slice of
/// every file at once (memory and sources: files, not files × slices). Any other group
/// stays whole (`None`): a memtable or a file of one slice would be read in full by every
/// range. Ranges outside `wanted` (the scan's time range) are left out.
pub(crate) fn split_by_slices(
    group: Vec<Part>,
    wanted: Option<TimeRange>,
) -> Vec<(Vec<Part>, Option<TimeRange>)> {
    let widths: Option<Vec<i64>> = group
        .iter()
        .map(|part| match part {
            Part::File(handle) => handle.meta().time_slice,
            Part::Memtable(_) => None,
        })
        .collect();
    let (Some(width), [_, _, ..]) = (widths.and_then(|w| w.into_iter().max()), group.as_slice())
    else {
        return vec![(group, None)];
    };
    let spans: Vec<TimeRange> = group.iter().filter_map(Part::time_range).collect();
    let (Some(start), Some(end)) = (
        spans.iter().map(|r| r.start).min(),
        spans.iter().map(|r| r.end).max(),
    ) else {
        return vec![(group, None)];
    };
    time_slices(TimeRange { start, end }, Some(width))
        .into_iter()
        .filter(|range| wanted.is_none_or(|wanted| wanted.overlaps(range)))
        .filter_map(|range| {
            let members: Vec<Part> = group
                .iter()
                .filter(|part| part.time_range().is_some_and(|r| r.overlaps(&range)))
                .cloned()
                .collect();
            (!members.is_empty()).then_some((members, Some(range)))
        })
        .collect()
}

/// `wanted` narrowed to `range` (`wanted` itself for no range).
pub(crate) fn narrowed(wanted: Option<TimeRange>, range: Option<TimeRange>) -> Option<TimeRange> {
    match (wanted, range) {
        (Some(wanted), Some(range)) => Some(wanted.intersection(&range)),
        (None, range) => range,
        (wanted, None) => wanted,
    }
}

/// `parts` opened with `projection` and merged as a scan of `snapshot`'s region does
/// (deduplicated, deletes dropped; every row in append mode) — one SST alone without
/// comparing rows ([`drop_deletes`]). Returns the stream and the handles of the files it
/// reads, which the caller holds for as long as it reads them.
pub(crate) async fn merge_parts(
    store: &Operator,
    snapshot: &VersionControlData,
    parts: Vec<Part>,
    request: &ScanRequest,
    projection: &[usize],
    slice: Option<FileSlice>,
) -> Result<(BatchStream, Vec<FileHandle>), StorageError> {
    let version = &snapshot.version;
    let options = MergeOptions {
        batch_rows: request.batch_rows,
        ..MergeOptions::scan_of(&version.options)
    };
    // One file alone passes through unmerged; with no delete markers to drop, only its
    // projected columns and timestamps are read. A file in time slices is sorted by key
    // within each slice only: it passes through (its slices one after another) in
    // time-group order, where each slice is a time group of its own, or when one slice
    // holds every row in range.
    let time_order = request.order == ScanOrder::TimeGroups;
    let (single_file, rows_only) = match parts.as_slice() {
        [Part::File(handle)] => {
            let file = handle.meta();
            let in_order = time_order
                || file.time_slice.is_none_or(|width| {
                    one_slice_within(file.time_range(), request.time_range, width)
                });
            (
                in_order,
                in_order && (!options.filter_deleted || file.num_deletes == Some(0)),
            )
        }
        _ => (false, false),
    };
    let (sources, held) = open_parts(
        store,
        snapshot,
        parts,
        request,
        projection,
        slice,
        ReadAs {
            one_stream: single_file,
            rows_only,
        },
    )
    .await?;
    let merged = if single_file {
        drop_deletes(version.codec.clone(), sources, options)
    } else {
        merge(version.codec.clone(), sources, options)
    };
    Ok((merged, held))
}

/// How [`open_parts`] reads files.
#[derive(Debug, Clone, Copy)]
struct ReadAs {
    /// A file's time slices one after another in one stream (a file passing through
    /// unmerged), not one sorted source per slice.
    one_stream: bool,
    /// [`SstReadOptions::rows_only`].
    rows_only: bool,
}

/// Opens `parts` as sorted sources with `projection` — each time slice of a file its own
/// source unless `read_as` says one stream — each file decoded ahead on its own task as
/// `request` says — with more than 32 sources, one batch ahead each, in batches of a
/// fraction of `request.batch_rows` (at least 256 rows), so a key-order merge of many files
/// or time slices holds about as many rows as 32 sources would, not a batch or more a
/// source.
/// Returns the sources and the handles of the files they read, which the caller holds for
/// as long as it reads them.
#[allow(clippy::too_many_arguments)]
async fn open_parts(
    store: &Operator,
    snapshot: &VersionControlData,
    parts: Vec<Part>,
    request: &ScanRequest,
    projection: &[usize],
    slice: Option<FileSlice>,
    read_as: ReadAs,
) -> Result<(Vec<BatchStream>, Vec<FileHandle>), StorageError> {
    let version = &snapshot.version;
    let max_sequence = request.max_sequence.unwrap_or(snapshot.committed_sequence);
    let data_dir = region_data_dir(version.metadata.region_id());
    let mut sources: Vec<BatchStream> = Vec::with_capacity(parts.len());
    let mut held: Vec<FileHandle> = Vec::new();
    // Many sources (small files, or time slices of files merged by key): smaller batches,
    // fewer of them ahead, so memory stays near 32 full batches in all.
    let many = sources_of(&parts, request.time_range, read_as.one_stream);
    let (source_rows, depth) = if many > 32 {
        (
            (request.batch_rows.saturating_mul(32) / many)
                .clamp(MIN_SOURCE_ROWS.min(request.batch_rows), request.batch_rows),
            request.prefetch_batches.min(1),
        )
    } else {
        (request.batch_rows, request.prefetch_batches)
    };
    for part in parts {
        match part {
            Part::Memtable(memtable) => {
                let rows = memtable.iter(ScanRequest {
                    projection: Some(projection.to_vec()),
                    time_range: request.time_range,
                    max_sequence: Some(max_sequence),
                    batch_rows: request.batch_rows,
                    ..ScanRequest::default()
                })?;
                sources.push(Box::pin(futures::stream::iter(rows)));
            }
            Part::File(handle) => {
                let file = handle.meta();
                let path = file.path(&data_dir);
                if request.verify_checksums {
                    verify_sst(store, &path, file).await?;
                }
                let options = SstReadOptions {
                    projection: Some(projection.to_vec()),
                    time_range: request.time_range,
                    batch_rows: source_rows,
                    row_group_slice: slice.as_ref().map(|s| s.of),
                    rows_only: read_as.rows_only,
                };
                let slices = read_sst_shared(
                    store,
                    &path,
                    version.codec.clone(),
                    options,
                    slice.as_ref().map(|s| &s.opened),
                )
                .await?;
                let promised = file.time_slice;
                held.push(handle);
                if !read_as.one_stream {
                    sources.extend(slices.into_iter().map(|slice| prefetch(slice, depth)));
                } else if slices.len() > 1 && request.order == ScanOrder::Key {
                    // Its manifest entry promised one slice in range (key order).
                    return Err(StorageError::CorruptSst {
                        path,
                        reason: format!(
                            "{} time slices have rows in range; the manifest entry says {}",
                            slices.len(),
                            promised.map_or("the file is one slice".to_string(), |width| {
                                format!("slices of width {width}")
                            })
                        ),
                    });
                } else {
                    sources.push(prefetch(concat(slices), depth));
                }
            }
        }
    }
    Ok((sources, held))
}

/// `source` decoded on its own task, up to `depth` batches ahead; `source` itself for 0,
/// outside a tokio runtime, or on a current-thread runtime (no other thread to decode on —
/// and a scan polled there by another executor's `block_on` would wait forever for a task
/// nobody runs). The task stops when the returned stream is dropped (its next send fails)
/// or after the source's first error.
fn prefetch(source: BatchStream, depth: usize) -> BatchStream {
    if depth == 0 || !on_multi_thread_runtime() {
        return source;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(depth);
    tokio::spawn(async move {
        let mut source = source;
        while let Some(item) = source.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Rows per batch of a source at the least, however many sources a merge has.
const MIN_SOURCE_ROWS: usize = 256;

/// The sorted sources `parts` make for a read of `range`: a memtable is one, a file one
/// (`one_stream`) or one per time slice with rows in range (from its manifest entry; at
/// most one more per file than the slices that hold rows).
fn sources_of(parts: &[Part], range: Option<TimeRange>, one_stream: bool) -> usize {
    parts
        .iter()
        .map(|part| match part {
            Part::Memtable(_) => 1,
            Part::File(_) if one_stream => 1,
            Part::File(handle) => {
                let file = handle.meta();
                let span = file.time_range();
                let wanted = range.map_or(span, |range| span.intersection(&range));
                if wanted.is_empty() {
                    0
                } else {
                    time_slices(wanted, file.time_slice).len()
                }
            }
        })
        .sum()
}

/// The worker threads of the caller's tokio runtime (at least 1; 1 outside a runtime).
pub(crate) fn runtime_workers() -> usize {
    tokio::runtime::Handle::try_current()
        .map_or(1, |runtime| runtime.metrics().num_workers().max(1))
}

/// Whether the caller runs on a multi-thread tokio runtime, where spawned tasks run on
/// other threads while it waits.
pub(crate) fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}
