//! The flush job: SSTs for a snapshot's frozen memtables (one per compaction time window
//! each touches), then one manifest edit.

use std::sync::Arc;

use async_trait::async_trait;
use opendal::Operator;
use strata_base::{ClockRef, SystemClock};
use strata_request::RegionId;
use strata_scheduler::Job;
use strata_storage::{
    CommitPurpose, Committer, FileMeta, MemtableId, MergeOptions, RegionEdit, RegionFiles,
    RegionMetaAction, RegionMetaActionList, SstWriteOptions, Version, VersionControlData,
    flush_memtable_windowed, infer_window_secs, window_width,
};
use tokio::sync::{Semaphore, mpsc};

use crate::error::FlushError;
use crate::metrics::FlushMetrics;
use crate::reason::FlushReason;
use crate::task::RegionFlushTask;

/// What a flush job reports back to the worker — exactly once per job, also when the job
/// is dropped before it ran (a stopping pool): then `Failed` with [`FlushError::Dropped`].
#[derive(Debug)]
pub enum FlushNotify {
    /// The files are written and the edit persisted. The worker applies `edit`, removes the
    /// flushed memtables, obsoletes the WAL up to `flushed_entry_id`, then answers the
    /// flush's callers.
    Finished(FlushFinished),
    /// The flush failed. The frozen memtables stay in the version for the next flush.
    Failed {
        /// The region.
        region_id: RegionId,
        /// Why.
        error: FlushError,
    },
}

/// A successful flush.
#[derive(Debug)]
pub struct FlushFinished {
    /// The region.
    pub region_id: RegionId,
    /// The persisted edit.
    pub edit: RegionEdit,
    /// Memtables whose rows are now in files.
    pub memtables_to_remove: Vec<MemtableId>,
    /// WAL entries up to this are in files.
    pub flushed_entry_id: u64,
}

/// Sends a job's one report; a job dropped before it reported says `Dropped`.
struct Report {
    region_id: RegionId,
    notify: Option<mpsc::UnboundedSender<FlushNotify>>,
}

impl Report {
    fn send(mut self, report: FlushNotify) {
        if let Some(notify) = self.notify.take() {
            // The worker is gone when this fails (stopped): nobody waits any more.
            let _ = notify.send(report);
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(notify) = self.notify.take() {
            let region_id = self.region_id;
            let _ = notify.send(FlushNotify::Failed {
                region_id,
                error: FlushError::Dropped { region_id },
            });
        }
    }
}

/// Shared by every flush job of an engine.
#[derive(Debug, Clone)]
pub struct FlushContext {
    /// Where SST files go.
    pub store: Operator,
    /// How they are written.
    pub sst_options: SstWriteOptions,
    /// Bounds concurrent SST writes across all flush jobs: a job holds one permit from
    /// its start until its files are written (not through its commit).
    pub write_limit: Arc<Semaphore>,
    /// Metrics, if registered.
    pub metrics: Option<FlushMetrics>,
    /// Told when each flush job starts.
    pub listener: Option<Arc<dyn FlushListener>>,
    /// Where jobs read time (stage durations).
    pub clock: ClockRef,
}

/// Told when a flush job starts, and may hold it there (tests that need a flush in
/// progress). The worker group always installs one that forwards to the engine's
/// `EventListener::on_flush_begin` (a no-op unless the embedder gave a listener).
#[async_trait]
pub trait FlushListener: Send + Sync + std::fmt::Debug + 'static {
    /// Called when the job for `region_id` starts writing (it holds its write permit);
    /// the job waits until it returns.
    async fn on_flush_begin(&self, region_id: RegionId);
}

impl FlushContext {
    /// A context allowing `max_concurrent_writes` SST writes at once.
    pub fn new(
        store: Operator,
        sst_options: SstWriteOptions,
        max_concurrent_writes: usize,
    ) -> Self {
        Self {
            store,
            sst_options,
            write_limit: Arc::new(Semaphore::new(max_concurrent_writes.max(1))),
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

    /// With a listener told when each job starts.
    pub fn with_listener(mut self, listener: Arc<dyn FlushListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// With metrics.
    pub fn with_metrics(mut self, metrics: FlushMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

impl RegionFlushTask {
    /// The job flushing `snapshot`, which the caller took right after freezing the mutable
    /// memtable on the region's worker — so the snapshot's frozen memtables hold exactly the
    /// rows up to its `last_entry_id` and `committed_sequence`. It reports on `notify`.
    pub fn into_job(
        self,
        context: Arc<FlushContext>,
        snapshot: VersionControlData,
        committer: Arc<dyn Committer>,
        notify: mpsc::UnboundedSender<FlushNotify>,
    ) -> Job {
        let region_id = self.region_id();
        let report = Report {
            region_id,
            notify: Some(notify),
        };
        Box::pin(async move {
            // The write permit first: jobs waiting for one have not begun.
            let permit = context.write_limit.clone().acquire_owned().await;
            if let Some(listener) = &context.listener {
                listener.on_flush_begin(region_id).await;
            }
            let inflight = context.metrics.as_ref().map(|m| m.inflight_guard());
            let started = context.clock.now();
            let result = match permit {
                Ok(permit) => {
                    write_and_commit(
                        &context,
                        region_id,
                        self.reason(),
                        &snapshot,
                        committer.as_ref(),
                        permit,
                    )
                    .await
                }
                // A closed semaphore means the engine is stopping: fail like a dropped job.
                Err(_) => Err(FlushError::Dropped { region_id }),
            };
            drop(inflight);
            if let Some(m) = &context.metrics {
                m.observe_stage("total", context.clock.elapsed(started));
            }
            match result {
                Ok((edit, memtables_to_remove)) => {
                    report.send(FlushNotify::Finished(FlushFinished {
                        region_id,
                        flushed_entry_id: snapshot.last_entry_id(),
                        edit,
                        memtables_to_remove,
                    }));
                }
                Err(error) => {
                    tracing::warn!(%region_id, %error, "flush failed");
                    report.send(FlushNotify::Failed { region_id, error });
                }
            }
        })
    }
}

/// Flushes `snapshot`'s frozen memtables on the caller's task: their SSTs (one per
/// compaction window each touches), then one edit through `committer`. Returns the
/// persisted edit and the memtables it covers, which the caller applies
/// ([`VersionControl::apply_edit`](strata_storage::VersionControl::apply_edit)). The flush
/// jobs run this; so does a region open whose WAL replay passes the flush threshold. On
/// failure the files it wrote are deleted unless the edit may have been persisted.
pub async fn flush_snapshot(
    context: &FlushContext,
    region_id: RegionId,
    reason: FlushReason,
    snapshot: &VersionControlData,
    committer: &dyn Committer,
) -> Result<(RegionEdit, Vec<MemtableId>), FlushError> {
    // A closed semaphore means the engine is stopping: fail like a dropped job.
    let Ok(permit) = context.write_limit.clone().acquire_owned().await else {
        return Err(FlushError::Dropped { region_id });
    };
    write_and_commit(context, region_id, reason, snapshot, committer, permit).await
}

/// The SSTs, written under `permit` (one of [`FlushContext::write_limit`]), which is let go
/// before the commit: a commit waiting on the manifest store (a round trip on S3, a
/// directory sync on a busy disk) does not hold back the next flush's writes.
async fn write_and_commit(
    context: &FlushContext,
    region_id: RegionId,
    reason: FlushReason,
    snapshot: &VersionControlData,
    committer: &dyn Committer,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(RegionEdit, Vec<MemtableId>), FlushError> {
    let started = context.clock.now();
    let region_files = RegionFiles::new(context.store.clone(), region_id);
    let mut files: Vec<FileMeta> = Vec::new();
    let mut flushed = Vec::new();
    let window_secs = compaction_window_secs(snapshot.version());
    let window = window_width(snapshot.version().metadata(), window_secs);
    for memtable in snapshot.version().memtables().immutables() {
        flushed.push(memtable.id());
        if memtable.is_empty() {
            continue;
        }
        let merge = MergeOptions::flush_of(snapshot.version().options());
        match flush_memtable_windowed(
            &context.store,
            memtable,
            &context.sst_options,
            merge,
            window,
        )
        .await
        {
            Ok(written) => files.extend(written),
            Err(source) => {
                region_files.delete_uncommitted(&files).await;
                return Err(FlushError::WriteSst {
                    region_id,
                    source: Arc::new(source),
                });
            }
        }
    }
    drop(permit);
    if let Some(m) = &context.metrics {
        m.observe_stage("write_sst", context.clock.elapsed(started));
        m.add_bytes(files.iter().map(|f| f.file_size).sum());
    }
    let mut edit = RegionEdit::default();
    edit.files_to_add = files.clone();
    edit.files_to_remove = Vec::new();
    edit.flushed_entry_id = Some(snapshot.last_entry_id());
    edit.flushed_sequence = Some(snapshot.committed_sequence());
    edit.committed_sequence = None;
    edit.compaction_window_secs = Some(window_secs);
    let committing = context.clock.now();
    let committed = committer
        .commit(
            CommitPurpose::Flush(reason.as_str()),
            RegionMetaActionList::one(RegionMetaAction::Edit(edit.clone())),
        )
        .await;
    if let Some(m) = &context.metrics {
        m.observe_stage("commit", context.clock.elapsed(committing));
    }
    match committed {
        Ok(_) => Ok((edit, flushed)),
        Err(source) => {
            region_files
                .discard_after_failed_commit(&files, &source)
                .await;
            Err(FlushError::Commit { region_id, source })
        }
    }
}

/// The region's compaction window: recorded in the manifest, else from the region options,
/// else inferred from the time span of the memtables being flushed (and then recorded by
/// this flush's edit).
fn compaction_window_secs(version: &Version) -> u64 {
    if let Some(secs) = version.compaction_window_secs() {
        return secs;
    }
    if let Some(window) = version.options().compaction_window {
        return window.as_secs().max(1);
    }
    let span = version
        .memtables()
        .immutables()
        .iter()
        .filter_map(|m| m.stats().time_range)
        .fold(None, |acc: Option<(i64, i64)>, r| {
            Some(acc.map_or((r.start, r.end), |(s, e)| (s.min(r.start), e.max(r.end))))
        })
        .map_or(0, |(start, end)| end.saturating_sub(start));
    infer_window_secs(version.metadata(), span)
}
