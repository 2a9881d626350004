//! The compaction job: merge the picked files through the read path's merge/dedup, write
//! the outputs with the flush's SST writer, commit one edit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use opendal::Operator;
use strata_base::{ClockRef, SystemClock};
use strata_request::RegionId;
use strata_scheduler::Job;
use strata_storage::{
    BatchStream, CommitPurpose, Committer, FileHandle, FileMeta, KeyCodec, MergeOptions, OpenedSst,
    RegionEdit, RegionFiles, RegionMetaAction, RegionMetaActionList, SstWriteOptions, StorageError,
    TimeRange, Version, window_start, write_ssts,
};
use tokio::sync::mpsc;

use crate::error::CompactionError;
use crate::metrics::CompactionMetrics;
use crate::picker::{CompactionPick, MergeGroup, PickMode, PickerOptions};
use crate::slicing::{merged_slices, output_slice_width};
use crate::stats::{CompactionStats, WindowStats};

/// The level compaction outputs are written at.
pub const COMPACTED_LEVEL: u8 = 1;

/// Most windows one merge writes separate outputs for (inputs written before flushes were
/// split by window can span several); beyond that, one output run.
const MAX_OUTPUT_WINDOWS: i64 = 256;

/// Rows per batch while merging.
const BATCH_ROWS: usize = 8192;

/// Test hook: told when a compaction job starts, and may hold it there.
#[async_trait]
pub trait CompactionListener: Send + Sync + std::fmt::Debug + 'static {
    /// Called when the job for `region_id` starts; the job waits until it returns.
    async fn on_compaction_begin(&self, region_id: RegionId);

    /// Called after the outputs are written, before the commit; the job waits until it
    /// returns.
    async fn on_compaction_written(&self, region_id: RegionId) {
        let _ = region_id;
    }
}

/// Shared by every compaction job of an engine.
#[derive(Debug, Clone)]
pub struct CompactionContext {
    /// Where SST files live.
    pub store: Operator,
    /// How outputs are written (the level is set to [`COMPACTED_LEVEL`]).
    pub sst_options: SstWriteOptions,
    /// What to pick.
    pub picker: PickerOptions,
    /// Metrics, if registered.
    pub metrics: Option<CompactionMetrics>,
    /// Test hook.
    pub listener: Option<Arc<dyn CompactionListener>>,
    /// Where jobs read time (durations).
    pub clock: ClockRef,
}

impl CompactionContext {
    /// A context writing to `store`.
    pub fn new(store: Operator, sst_options: SstWriteOptions, picker: PickerOptions) -> Self {
        Self {
            store,
            sst_options: sst_options.level(COMPACTED_LEVEL),
            picker,
            metrics: None,
            listener: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reading time from `clock`.
    pub fn with_clock(mut self, clock: ClockRef) -> Self {
        self.clock = clock;
        self
    }

    /// With metrics.
    pub fn with_metrics(mut self, metrics: CompactionMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// With a test hook.
    pub fn with_listener(mut self, listener: Arc<dyn CompactionListener>) -> Self {
        self.listener = Some(listener);
        self
    }
}

/// A committed compaction, for the worker to apply.
#[derive(Debug)]
pub struct CompactionFinished {
    /// The persisted edit.
    pub edit: RegionEdit,
    /// What it did.
    pub stats: CompactionStats,
}

/// What a compaction job reports back to the worker.
#[derive(Debug)]
pub struct CompactionNotify {
    /// The region.
    pub region_id: RegionId,
    /// Which execution (results of an older one are ignored).
    pub execution_id: u64,
    /// The outcome.
    pub result: Result<CompactionFinished, CompactionError>,
}

/// One compaction to run.
pub struct CompactionTask {
    /// The region.
    pub region_id: RegionId,
    /// Its execution id (from the scheduler).
    pub execution_id: u64,
    /// Why it runs.
    pub mode: PickMode,
    /// What the job reads with: the schema, and the input files' handles, so none is
    /// deleted while the job reads it. (Not the whole version: that would keep flushed
    /// memtables, and their memory, alive for as long as the job runs.)
    pub inputs: CompactionInputs,
    /// What to do.
    pub pick: CompactionPick,
    /// Commits the edit.
    pub committer: Arc<dyn Committer>,
    /// Set by a DDL that cancels the job; checked between batches and before the commit.
    pub cancel: Arc<Cancel>,
}

/// The part of a region's version a compaction job needs.
#[derive(Debug, Clone)]
pub struct CompactionInputs {
    /// Key codec (and through it the schema) of the region.
    pub codec: Arc<KeyCodec>,
    /// Whether the region keeps duplicates (append mode).
    pub append_mode: bool,
    /// Handles of the files the job reads.
    pub handles: Vec<FileHandle>,
}

impl CompactionInputs {
    /// The inputs of `pick` taken from `version`.
    pub fn of(version: &Version, pick: &CompactionPick) -> Self {
        let wanted: std::collections::HashSet<_> = pick
            .groups
            .iter()
            .flat_map(|g| g.inputs.iter().map(|f| f.file_id))
            .collect();
        Self {
            codec: version.codec().clone(),
            append_mode: version.options().append_mode,
            handles: version
                .all_file_handles()
                .filter(|h| wanted.contains(&h.meta().file_id))
                .cloned()
                .collect(),
        }
    }
}

/// A cancellation flag with the name of the DDL that set it.
#[derive(Debug, Default)]
pub struct Cancel {
    set: AtomicBool,
    by: std::sync::OnceLock<&'static str>,
}

impl Cancel {
    /// Cancels, naming the DDL.
    pub fn cancel(&self, by: &'static str) {
        let _ = self.by.set(by);
        self.set.store(true, Ordering::Release);
    }

    /// The DDL that cancelled, if any.
    pub fn cancelled_by(&self) -> Option<&'static str> {
        if self.set.load(Ordering::Acquire) {
            Some(self.by.get().copied().unwrap_or("DDL"))
        } else {
            None
        }
    }
}

impl CompactionTask {
    /// The job: runs the pick, commits, reports on `notify`.
    pub fn into_job(
        self,
        context: Arc<CompactionContext>,
        notify: mpsc::UnboundedSender<CompactionNotify>,
    ) -> Job {
        Box::pin(async move {
            let region_id = self.region_id;
            let execution_id = self.execution_id;
            // Reported if the job is dropped unfinished (the pool is stopping).
            let mut report = Report {
                notify,
                region_id,
                execution_id,
                sent: false,
            };
            if let Some(listener) = &context.listener {
                listener.on_compaction_begin(region_id).await;
            }
            let inflight = context.metrics.as_ref().map(|m| m.start(self.mode));
            let started = context.clock.now();
            let result = run(&context, &self).await;
            drop(inflight);
            match &result {
                Ok(finished) => {
                    tracing::info!(%region_id, mode = self.mode.as_str(), ?finished.stats, "compaction committed");
                    if let Some(m) = &context.metrics {
                        m.finished(&finished.stats, context.clock.elapsed(started));
                    }
                }
                Err(error) => {
                    tracing::warn!(%region_id, %error, "compaction failed");
                    if let Some(m) = &context.metrics {
                        m.failure();
                    }
                }
            }
            report.send(result);
        })
    }
}

/// Sends the job's result exactly once; a job dropped unfinished reports `Dropped`.
struct Report {
    notify: mpsc::UnboundedSender<CompactionNotify>,
    region_id: RegionId,
    execution_id: u64,
    sent: bool,
}

impl Report {
    fn send(&mut self, result: Result<CompactionFinished, CompactionError>) {
        self.sent = true;
        let _ = self.notify.send(CompactionNotify {
            region_id: self.region_id,
            execution_id: self.execution_id,
            result,
        });
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if !self.sent {
            let region_id = self.region_id;
            self.send(Err(CompactionError::Dropped { region_id }));
        }
    }
}

async fn run(
    context: &CompactionContext,
    task: &CompactionTask,
) -> Result<CompactionFinished, CompactionError> {
    let region_id = task.region_id;
    let files = RegionFiles::new(context.store.clone(), region_id);
    let mut outputs: Vec<FileMeta> = Vec::new();
    let mut stats = CompactionStats {
        expired_files: task.pick.expired.len() as u64,
        ..CompactionStats::default()
    };
    for group in &task.pick.groups {
        if let Some(by) = task.cancel.cancelled_by() {
            files.delete_uncommitted(&outputs).await;
            return Err(CompactionError::Cancelled { region_id, by });
        }
        match merge_group(context, task, group, &mut stats).await {
            Ok(written) => outputs.extend(written),
            Err(error) => {
                files.delete_uncommitted(&outputs).await;
                return Err(error);
            }
        }
    }
    if let Some(listener) = &context.listener {
        listener.on_compaction_written(region_id).await;
    }
    if let Some(by) = task.cancel.cancelled_by() {
        files.delete_uncommitted(&outputs).await;
        return Err(CompactionError::Cancelled { region_id, by });
    }
    let removed: Vec<&FileMeta> = task.pick.removed_files().collect();
    stats.files_removed = removed.len() as u64;
    stats.bytes_read = removed.iter().map(|f| f.file_size).sum();
    stats.files_added = outputs.len() as u64;
    stats.rows_written = outputs.iter().map(|f| f.num_rows).sum();
    stats.bytes_written = outputs.iter().map(|f| f.file_size).sum();
    stats.windows = WindowStats::of(task.pick.window, &removed, &outputs);
    let mut edit = RegionEdit::default();
    edit.files_to_remove = removed.iter().map(|f| f.file_id).collect();
    edit.files_to_add = outputs;
    edit.compaction_window_secs = Some(task.pick.window_secs);
    let actions = RegionMetaActionList::one(RegionMetaAction::Edit(edit.clone()));
    match task
        .committer
        .commit(CommitPurpose::Compaction, actions)
        .await
    {
        Ok(_) => Ok(CompactionFinished { edit, stats }),
        Err(source) => {
            files
                .discard_after_failed_commit(&edit.files_to_add, &source)
                .await;
            Err(CompactionError::Commit { region_id, source })
        }
    }
}

/// Merges one group's inputs into outputs: one run per window the inputs' rows fall in,
/// expired rows left out, each run split at the group's row cap.
async fn merge_group(
    context: &CompactionContext,
    task: &CompactionTask,
    group: &MergeGroup,
    stats: &mut CompactionStats,
) -> Result<Vec<FileMeta>, CompactionError> {
    let region_id = task.region_id;
    let inputs = &task.inputs;
    let metadata = inputs.codec.metadata().clone();
    let files = RegionFiles::new(context.store.clone(), region_id);
    let dir = files.data_dir();
    let window = task.pick.window.max(1);
    let alive = task.pick.ttl_cutoff.unwrap_or(i64::MIN);
    let first = group
        .inputs
        .iter()
        .map(|f| f.time_range.0)
        .min()
        .unwrap_or(0)
        .max(alive);
    let last = group
        .inputs
        .iter()
        .map(|f| f.time_range.1)
        .max()
        .unwrap_or(0);
    if first > last {
        return Ok(Vec::new());
    }
    let (first_window, last_window) = (window_start(first, window), window_start(last, window));
    let ranges: Vec<TimeRange> = if (last_window - first_window) / window < MAX_OUTPUT_WINDOWS {
        (0..=(last_window - first_window) / window)
            .map(|k| {
                let start = first_window + k * window;
                TimeRange {
                    start: start.max(first),
                    end: start.saturating_add(window - 1).min(last),
                }
            })
            .collect()
    } else {
        vec![TimeRange {
            start: first,
            end: last,
        }]
    };
    let merge_options = MergeOptions::new(
        !inputs.append_mode,
        group.drop_deletes && !inputs.append_mode,
        BATCH_ROWS,
    );
    stats.rows_read += group.inputs.iter().map(|f| f.num_rows).sum::<u64>();
    let mut outputs = Vec::new();
    for range in ranges {
        let sst_error = |source: StorageError| CompactionError::Sst {
            region_id,
            source: Arc::new(source),
        };
        // Each output in time slices (see `slicing`): merged one slice after another.
        let width = output_slice_width(&group.inputs, range, context.sst_options.row_group_size);
        let opened: Vec<OpenedSst> = group
            .inputs
            .iter()
            .filter(|file| file.time_range().overlaps(&range))
            .map(|file| OpenedSst::new(&context.store, &file.path(&dir), inputs.codec.clone()))
            .collect();
        let rows = merged_slices(opened, inputs.codec.clone(), range, width, merge_options);
        let cancel = task.cancel.clone();
        let merged: BatchStream = Box::pin(rows.map(move |batch| match cancel.cancelled_by() {
            Some(by) => Err(StorageError::Cancelled {
                reason: format!("compaction cancelled by a {by}"),
            }),
            None => batch,
        }));
        let written = write_ssts(
            &context.store,
            &dir,
            &metadata,
            merged,
            &context.sst_options.clone().time_slice(width),
            group.max_rows_per_file,
        )
        .await;
        match written {
            Ok(written) => outputs.extend(written),
            Err(error) => {
                files.delete_uncommitted(&outputs).await;
                if let Some(by) = task.cancel.cancelled_by() {
                    return Err(CompactionError::Cancelled { region_id, by });
                }
                return Err(sst_error(error));
            }
        }
    }
    Ok(outputs)
}
