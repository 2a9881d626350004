//! [`FlushScheduler`]: one per worker; at most one running flush per region, everything else
//! merged or fenced behind it.

use std::collections::HashMap;
use std::sync::Arc;

use strata_request::RegionId;
use strata_scheduler::SchedulerRef;
use strata_storage::{Committer, VersionControl};
use tokio::sync::mpsc;

use crate::error::FlushError;
use crate::job::{FlushContext, FlushNotify};
use crate::task::RegionFlushTask;

/// Work fenced behind a region's flush (DDLs that need empty memtables, writes that must
/// wait for them). The scheduler hands it back on success and fails it otherwise.
pub trait PendingRequest: Send + 'static {
    /// Answers the request with `error`.
    fn fail(self, error: FlushError);

    /// Whether the request is handed back, instead of failed, when the flush it waits for
    /// fails. Lifecycle DDLs (close, drop, truncate) say yes: they wait only so that no
    /// flush runs beside them, and must still happen when it fails.
    fn outlives_failed_flush(&self) -> bool {
        false
    }
}

/// A region with a flush requested or running.
struct FlushStatus<E: From<FlushError> + Send + 'static, D, W> {
    version_control: Arc<VersionControl>,
    committer: Arc<dyn Committer>,
    /// One follow-up flush covering whatever was written meanwhile.
    pending_task: Option<RegionFlushTask<E>>,
    pending_ddls: Vec<D>,
    pending_writes: Vec<W>,
}

impl<E: From<FlushError> + Send + 'static, D: PendingRequest, W: PendingRequest>
    FlushStatus<E, D, W>
{
    fn fail_all(self, error: FlushError) {
        if let Some(task) = self.pending_task {
            task.on_failure(error.clone());
        }
        for ddl in self.pending_ddls {
            ddl.fail(error.clone());
        }
        for write in self.pending_writes {
            write.fail(error.clone());
        }
    }
}

/// Work handed back after a region's flush succeeded with nothing left to flush.
pub struct Released<D, W> {
    /// Pending DDLs, to run first (they need the empty memtables).
    pub ddls: Vec<D>,
    /// Pending writes, to run after the DDLs.
    pub writes: Vec<W>,
}

/// Schedules flushes for the regions of one worker.
///
/// Invariants: a region has a status exactly while a flush job of it is queued or running
/// (also after the region is dropped, closed or truncated, until that job reports);
/// at most one flush job per region runs at a time; every waiter, pending DDL and pending
/// write is answered exactly once (on success, failure, region drop/close/truncate, or when
/// the scheduler is dropped).
pub struct FlushScheduler<
    E: From<FlushError> + Send + 'static,
    D: PendingRequest,
    W: PendingRequest,
> {
    regions: HashMap<RegionId, FlushStatus<E, D, W>>,
    pool: SchedulerRef,
    context: Arc<FlushContext>,
    notify: mpsc::UnboundedSender<FlushNotify<E>>,
}

impl<E: From<FlushError> + Send + 'static, D: PendingRequest, W: PendingRequest>
    FlushScheduler<E, D, W>
{
    /// A scheduler running jobs on `pool` and reporting outcomes on `notify`.
    pub fn new(
        pool: SchedulerRef,
        context: Arc<FlushContext>,
        notify: mpsc::UnboundedSender<FlushNotify<E>>,
    ) -> Self {
        Self {
            regions: HashMap::new(),
            pool,
            context,
            notify,
        }
    }

    /// Whether a flush of `region_id` is requested or running.
    pub fn is_flush_requested(&self, region_id: RegionId) -> bool {
        self.regions.contains_key(&region_id)
    }

    /// Whether DDLs wait behind `region_id`'s flush.
    pub fn has_pending_ddls(&self, region_id: RegionId) -> bool {
        self.regions
            .get(&region_id)
            .is_some_and(|s| !s.pending_ddls.is_empty())
    }

    /// Regions with a flush requested or running.
    pub fn flushing_regions(&self) -> usize {
        self.regions.len()
    }

    /// Requests a flush of the region. Nothing to flush: the waiters succeed at once and no
    /// job runs. A flush already running: `task` merges into the one follow-up. Otherwise the
    /// mutable memtable is frozen, the version snapshotted, and a job scheduled. A failure to
    /// schedule answers the waiters and leaves no status behind.
    pub fn schedule_flush(
        &mut self,
        version_control: &Arc<VersionControl>,
        committer: &Arc<dyn Committer>,
        task: RegionFlushTask<E>,
    ) -> Result<(), FlushError> {
        let region_id = task.region_id();
        if version_control.current().version().memtables().is_empty() {
            task.on_success();
            return Ok(());
        }
        if let Some(m) = &self.context.metrics {
            m.request(task.reason());
        }
        if let Some(status) = self.regions.get_mut(&region_id) {
            match &mut status.pending_task {
                Some(pending) => pending.merge(task),
                None => status.pending_task = Some(task),
            }
            return Ok(());
        }
        self.start(version_control, committer, task)?;
        self.regions.insert(
            region_id,
            FlushStatus {
                version_control: version_control.clone(),
                committer: committer.clone(),
                pending_task: None,
                pending_ddls: Vec::new(),
                pending_writes: Vec::new(),
            },
        );
        Ok(())
    }

    /// Freezes, snapshots and schedules `task`.
    fn start(
        &self,
        version_control: &Arc<VersionControl>,
        committer: &Arc<dyn Committer>,
        task: RegionFlushTask<E>,
    ) -> Result<(), FlushError> {
        let region_id = task.region_id();
        version_control.freeze_mutable();
        let snapshot = version_control.current();
        let job = task.into_job(
            self.context.clone(),
            snapshot,
            committer.clone(),
            self.notify.clone(),
        );
        // On failure the job (and the task inside it) is dropped: its waiters get `Dropped`.
        self.pool
            .schedule(job)
            .map_err(|source| FlushError::Schedule { region_id, source })
    }

    /// A flush of `region_id` succeeded (and was applied). With a follow-up pending and rows
    /// to flush, runs it and keeps the fence; otherwise clears the status and hands back the
    /// fenced DDLs and writes.
    pub fn on_flush_success(&mut self, region_id: RegionId) -> Option<Released<D, W>> {
        let mut status = self.regions.remove(&region_id)?;
        let Some(task) = status.pending_task.take() else {
            return Some(Released {
                ddls: status.pending_ddls,
                writes: status.pending_writes,
            });
        };
        if status
            .version_control
            .current()
            .version()
            .memtables()
            .is_empty()
        {
            task.on_success();
            return Some(Released {
                ddls: status.pending_ddls,
                writes: status.pending_writes,
            });
        }
        match self.start(&status.version_control, &status.committer, task) {
            Ok(()) => {
                self.regions.insert(region_id, status);
                None
            }
            Err(error) => {
                status.fail_all(error);
                None
            }
        }
    }

    /// A flush of `region_id` failed: the pending follow-up, DDLs and writes fail with it,
    /// except DDLs that [outlive a failed flush](PendingRequest::outlives_failed_flush),
    /// which are returned for the caller to run now. The frozen memtables stay in the
    /// version for the next flush.
    pub fn on_flush_failed(&mut self, region_id: RegionId, error: FlushError) -> Vec<D> {
        if let Some(m) = &self.context.metrics {
            m.failure();
        }
        let Some(mut status) = self.regions.remove(&region_id) else {
            return Vec::new();
        };
        let (survivors, failed): (Vec<D>, Vec<D>) = std::mem::take(&mut status.pending_ddls)
            .into_iter()
            .partition(PendingRequest::outlives_failed_flush);
        status.pending_ddls = failed;
        status.fail_all(FlushError::FlushFailed {
            region_id,
            cause: Box::new(error),
        });
        survivors
    }

    /// The region was dropped: everything pending fails with `RegionDropped`. A running
    /// flush finishes on its own and must still be reported (success or failure).
    pub fn on_region_dropped(&mut self, region_id: RegionId) {
        self.remove_region(region_id, FlushError::RegionDropped { region_id });
    }

    /// The region was closed: everything pending fails with `RegionClosed`.
    pub fn on_region_closed(&mut self, region_id: RegionId) {
        self.remove_region(region_id, FlushError::RegionClosed { region_id });
    }

    /// The region was truncated: everything pending fails with `RegionTruncated`.
    pub fn on_region_truncated(&mut self, region_id: RegionId) {
        self.remove_region(region_id, FlushError::RegionTruncated { region_id });
    }

    /// Fails everything pending. The running job keeps its (now bare) status until it
    /// reports, so a new request cannot start a second flush of the region meanwhile.
    fn remove_region(&mut self, region_id: RegionId, error: FlushError) {
        let Some(status) = self.regions.get_mut(&region_id) else {
            return;
        };
        let pending = FlushStatus {
            version_control: status.version_control.clone(),
            committer: status.committer.clone(),
            pending_task: status.pending_task.take(),
            pending_ddls: std::mem::take(&mut status.pending_ddls),
            pending_writes: std::mem::take(&mut status.pending_writes),
        };
        pending.fail_all(error);
    }

    /// Fences `ddl` behind the region's flush; gives it back if no flush is requested.
    pub fn add_ddl_request_to_pending(&mut self, region_id: RegionId, ddl: D) -> Result<(), D> {
        match self.regions.get_mut(&region_id) {
            Some(status) => {
                status.pending_ddls.push(ddl);
                Ok(())
            }
            None => Err(ddl),
        }
    }

    /// Fences `write` behind the region's flush; gives it back if no flush is requested.
    pub fn add_write_request_to_pending(&mut self, region_id: RegionId, write: W) -> Result<(), W> {
        match self.regions.get_mut(&region_id) {
            Some(status) => {
                status.pending_writes.push(write);
                Ok(())
            }
            None => Err(write),
        }
    }
}

impl<E: From<FlushError> + Send + 'static, D: PendingRequest, W: PendingRequest> Drop
    for FlushScheduler<E, D, W>
{
    fn drop(&mut self) {
        for (region_id, status) in self.regions.drain() {
            status.fail_all(FlushError::RegionClosed { region_id });
        }
    }
}

#[cfg(test)]
mod tests;
