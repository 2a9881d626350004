//! [`FlushScheduler`]: one per worker; at most one running flush per region, later requests
//! merged into one follow-up.

use std::collections::HashMap;
use std::sync::Arc;

use strata_request::RegionId;
use strata_scheduler::SchedulerRef;
use strata_storage::{Committer, VersionControl};
use tokio::sync::mpsc;

use crate::error::FlushError;
use crate::job::{FlushContext, FlushNotify};
use crate::reason::FlushReason;
use crate::task::RegionFlushTask;

/// A region with a flush queued or running.
struct FlushStatus {
    version_control: Arc<VersionControl>,
    committer: Arc<dyn Committer>,
    /// One follow-up flush covering whatever was written meanwhile (the reason it was
    /// first asked for).
    follow_up: Option<FlushReason>,
}

/// What [`FlushScheduler::schedule_flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushScheduled {
    /// The region's memtables are empty: nothing runs, the flush is done.
    NothingToFlush,
    /// A job started.
    Started,
    /// A job of the region runs: the request is its follow-up.
    Queued,
}

/// What follows a region's successful flush ([`FlushScheduler::on_flush_success`]).
#[derive(Debug)]
pub enum AfterFlush {
    /// The region has no flush any more: its follow-up, if one was asked for, found
    /// nothing to flush (and is done too).
    Ended,
    /// The follow-up flush started: the region still flushes.
    FollowUpStarted,
    /// The follow-up could not be scheduled (the pool is stopping): it failed with this,
    /// and the region has no flush any more.
    FollowUpFailed(FlushError),
}

/// Schedules flushes for the regions of one worker: a lifecycle — started, queued
/// (a follow-up), ended — and nothing else. Who waits for a flush, and what is fenced
/// behind it, is the worker's business.
///
/// Invariants: a region has a status exactly while a flush job of it is queued or running
/// (also after the region is dropped, closed or truncated, until that job reports); at
/// most one flush job per region runs at a time; requests while one runs merge into one
/// follow-up.
pub struct FlushScheduler {
    regions: HashMap<RegionId, FlushStatus>,
    pool: SchedulerRef,
    context: Arc<FlushContext>,
    notify: mpsc::UnboundedSender<FlushNotify>,
}

impl FlushScheduler {
    /// A scheduler running jobs on `pool` and reporting outcomes on `notify`.
    pub fn new(
        pool: SchedulerRef,
        context: Arc<FlushContext>,
        notify: mpsc::UnboundedSender<FlushNotify>,
    ) -> Self {
        Self {
            regions: HashMap::new(),
            pool,
            context,
            notify,
        }
    }

    /// Whether a flush of `region_id` is queued or running.
    pub fn is_flush_requested(&self, region_id: RegionId) -> bool {
        self.regions.contains_key(&region_id)
    }

    /// Whether a follow-up flush of `region_id` is queued behind the running one.
    pub fn has_follow_up(&self, region_id: RegionId) -> bool {
        self.regions
            .get(&region_id)
            .is_some_and(|s| s.follow_up.is_some())
    }

    /// Regions with a flush queued or running.
    pub fn flushing_regions(&self) -> usize {
        self.regions.len()
    }

    /// Requests a flush of the region for `reason`. Nothing to flush: no job runs. A flush
    /// already running: the request becomes (or merges into) its one follow-up. Otherwise
    /// the mutable memtable is frozen, the version snapshotted, and a job scheduled; a
    /// failure to schedule leaves no status behind.
    pub fn schedule_flush(
        &mut self,
        version_control: &Arc<VersionControl>,
        committer: &Arc<dyn Committer>,
        region_id: RegionId,
        reason: FlushReason,
    ) -> Result<FlushScheduled, FlushError> {
        if version_control.current().version().memtables().is_empty() {
            return Ok(FlushScheduled::NothingToFlush);
        }
        if let Some(m) = &self.context.metrics {
            m.request(reason);
        }
        if let Some(status) = self.regions.get_mut(&region_id) {
            status.follow_up.get_or_insert(reason);
            return Ok(FlushScheduled::Queued);
        }
        self.start(
            version_control,
            committer,
            RegionFlushTask::new(region_id, reason),
        )?;
        self.regions.insert(
            region_id,
            FlushStatus {
                version_control: version_control.clone(),
                committer: committer.clone(),
                follow_up: None,
            },
        );
        Ok(FlushScheduled::Started)
    }

    /// Freezes, snapshots and schedules `task`.
    fn start(
        &self,
        version_control: &Arc<VersionControl>,
        committer: &Arc<dyn Committer>,
        task: RegionFlushTask,
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
        self.pool
            .schedule(job)
            .map_err(|source| FlushError::Schedule { region_id, source })
    }

    /// A flush of `region_id` succeeded (and was applied): its follow-up starts if one is
    /// queued and rows came meanwhile; otherwise the region's flush has ended.
    pub fn on_flush_success(&mut self, region_id: RegionId) -> AfterFlush {
        let Some(mut status) = self.regions.remove(&region_id) else {
            return AfterFlush::Ended;
        };
        let Some(reason) = status.follow_up.take() else {
            return AfterFlush::Ended;
        };
        if status
            .version_control
            .current()
            .version()
            .memtables()
            .is_empty()
        {
            return AfterFlush::Ended;
        }
        let task = RegionFlushTask::new(region_id, reason);
        match self.start(&status.version_control, &status.committer, task) {
            Ok(()) => {
                self.regions.insert(region_id, status);
                AfterFlush::FollowUpStarted
            }
            Err(error) => AfterFlush::FollowUpFailed(error),
        }
    }

    /// A flush of `region_id` failed: the region's flush has ended, its follow-up with it
    /// (the frozen memtables stay in the version for the next flush).
    pub fn on_flush_failed(&mut self, region_id: RegionId) {
        if let Some(m) = &self.context.metrics {
            m.failure();
        }
        self.regions.remove(&region_id);
    }

    /// The region was dropped, closed or truncated: its follow-up will not run. A running
    /// flush keeps its status until it reports, so a new request cannot start a second
    /// flush of the region meanwhile.
    pub fn cancel_follow_up(&mut self, region_id: RegionId) {
        if let Some(status) = self.regions.get_mut(&region_id) {
            status.follow_up = None;
        }
    }
}

#[cfg(test)]
mod tests;
