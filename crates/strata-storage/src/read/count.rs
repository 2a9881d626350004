//! [`count`]: how many rows a scan would return, from file metadata where it can, with
//! independent groups of sources counted in parallel.

use futures::{StreamExt, TryStreamExt};
use opendal::Operator;
use snafu::ResultExt;

use super::merge::MergeOptions;
use super::scan::{
    Part, merge_parts, narrowed, on_multi_thread_runtime, overlapping_groups, parts,
    runtime_workers, split_by_slices,
};
use crate::error::{CorruptSstSnafu, ObjectStoreSnafu, StorageError};
use crate::object_store::region_data_dir;
use crate::request::{ScanOrder, ScanRequest};
use crate::sst::FileMeta;
use crate::time_range::TimeRange;
use crate::version::VersionControlData;

/// What [`count`] found and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowCount {
    /// Rows a [`scan`](crate::scan) with the same request returns.
    pub rows: u64,
    /// Files counted from their manifest entry alone, without reading them.
    pub files_from_metadata: usize,
    /// Memtables and files read and merged.
    pub sources_read: usize,
}

/// Counts the rows a [`scan`](crate::scan) of `snapshot` with `request` returns (its
/// projection is ignored), without building them.
///
/// Sources whose time ranges overlap, directly or through others, form a group; no (key,
/// timestamp) is in two groups, so each group deduplicates on its own. A group of one SST
/// that lies wholly in the requested time range is counted from its manifest entry (rows
/// minus delete markers; every row in an append-mode region) when the entry records its
/// delete markers and `verify_checksums` is off. Other groups are read with only what
/// deduplication needs (keys, timestamps, sequences, op types) and merged (a group of
/// several files in time slices one slice-aligned range at a time); with
/// `prefetch_batches` > 0 on a multi-thread runtime, as many groups at once as the runtime
/// has threads, each on its own task.
pub async fn count(
    store: &Operator,
    snapshot: &VersionControlData,
    request: ScanRequest,
) -> Result<RowCount, StorageError> {
    let version = &snapshot.version;
    let options = MergeOptions::scan_of(&version.options);
    let mut result = RowCount::default();
    let mut to_read: Vec<(Vec<Part>, Option<TimeRange>)> = Vec::new();
    let mut from_metadata: Vec<FileMeta> = Vec::new();
    for group in overlapping_groups(parts(snapshot, &request)) {
        if let [Part::File(handle)] = group.as_slice()
            && let Some(rows) = rows_from_metadata(handle.meta(), &request, options)
        {
            result.rows += rows;
            result.files_from_metadata += 1;
            from_metadata.push(handle.meta().clone());
        } else {
            result.sources_read += group.len();
            to_read.extend(split_by_slices(group, request.time_range));
        }
    }
    confirm_files(
        store,
        &region_data_dir(version.metadata.region_id()),
        &from_metadata,
    )
    .await?;
    let parallel = request.prefetch_batches > 0 && on_multi_thread_runtime();
    let width = if parallel { runtime_workers() } else { 1 };
    let counts = to_read.into_iter().map(|(group, range)| {
        let counting = count_group(
            store.clone(),
            snapshot.clone(),
            group,
            ScanRequest {
                time_range: narrowed(request.time_range, range),
                ..request.clone()
            },
        );
        async move {
            if !parallel {
                return counting.await;
            }
            match tokio::spawn(counting).await {
                Ok(rows) => rows,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => Err(StorageError::Cancelled {
                    reason: "the runtime shut down during a count".to_string(),
                }),
            }
        }
    });
    let mut counts = futures::stream::iter(counts).buffer_unordered(width);
    while let Some(rows) = counts.try_next().await? {
        result.rows += rows;
    }
    Ok(result)
}

/// Files whose existence and size a count confirms at once (one stat each).
const CONCURRENT_STATS: usize = 16;

/// Confirms that each file counted from its manifest entry exists with the size the entry
/// records (one stat or HEAD each): a count must fail where a scan would, not return the
/// manifest's number for a file that is gone or cut short.
async fn confirm_files(
    store: &Operator,
    dir: &str,
    files: &[FileMeta],
) -> Result<(), StorageError> {
    let checks = files.iter().map(|file| async move {
        let path = file.path(dir);
        let stat = store.stat(&path).await.context(ObjectStoreSnafu {
            operation: "stat an SST counted from its manifest entry (`strata inspect manifest --check` checks every file)",
            path: &path,
        })?;
        if stat.content_length() != file.file_size {
            return CorruptSstSnafu {
                path,
                reason: format!(
                    "{} bytes, the manifest records {} (`strata inspect manifest --check` checks every file)",
                    stat.content_length(),
                    file.file_size
                ),
            }
            .fail();
        }
        Ok(())
    });
    let mut checks = futures::stream::iter(checks).buffer_unordered(CONCURRENT_STATS);
    while checks.try_next().await?.is_some() {}
    Ok(())
}

/// The rows a scan returns of `file` alone, if its manifest entry says so: the file lies
/// wholly in the requested range and the entry records its delete markers.
fn rows_from_metadata(
    file: &FileMeta,
    request: &ScanRequest,
    options: MergeOptions,
) -> Option<u64> {
    if request.verify_checksums {
        return None;
    }
    if let Some(wanted) = request.time_range {
        let have = file.time_range();
        if have.start < wanted.start || have.end > wanted.end {
            return None;
        }
    }
    if !options.dedup {
        return Some(file.num_rows);
    }
    let deletes = file.num_deletes?;
    Some(if options.filter_deleted {
        file.num_rows.saturating_sub(deletes)
    } else {
        file.num_rows
    })
}

/// Reads and merges one group with an empty projection, counting the rows.
async fn count_group(
    store: Operator,
    snapshot: VersionControlData,
    group: Vec<Part>,
    request: ScanRequest,
) -> Result<u64, StorageError> {
    // The order rows come in does not matter to a count: a group of one file in time
    // slices is read slice after slice, unmerged.
    let request = ScanRequest {
        order: ScanOrder::TimeGroups,
        ..request
    };
    let (mut merged, _held) = merge_parts(&store, &snapshot, group, &request, &[], None).await?;
    let mut rows = 0u64;
    while let Some(batch) = merged.next().await {
        rows += batch?.num_rows() as u64;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;
