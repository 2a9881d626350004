//! [`CompactionScheduler`]: one per worker. At most one compaction per region; triggers
//! arriving meanwhile coalesce into one follow-up (a manual request queues behind an
//! automatic one); DDLs that must not race a compaction cancel it and wait for its end;
//! results of an older execution are ignored.

use std::collections::HashMap;
use std::sync::Arc;

use strata_request::RegionId;
use strata_scheduler::SchedulerRef;
use strata_storage::{Committer, Version};
use tokio::sync::mpsc;

use crate::job::{Cancel, CompactionContext, CompactionInputs, CompactionNotify, CompactionTask};
use crate::picker::{PickMode, pick};

/// A region's running compaction and what waits for it.
struct Status<W, D> {
    execution_id: u64,
    cancel: Arc<Cancel>,
    /// Answered when the running job's result is applied.
    waiters: Vec<W>,
    /// Triggers that arrived meanwhile, coalesced: the strongest mode and every waiter.
    follow_up: Option<(PickMode, Vec<W>)>,
    /// DDLs waiting for the job to end.
    ddls: Vec<D>,
}

/// What [`CompactionScheduler::schedule`] did.
#[derive(Debug)]
pub enum Scheduled<W> {
    /// A job started.
    Started,
    /// A job of the region is running: the request is its follow-up.
    Queued,
    /// Nothing to compact: answer these waiters now.
    NothingToDo(Vec<W>),
    /// The pool refused the job (stopping): answer these waiters with an error.
    PoolStopped(Vec<W>),
}

/// A job's end as the worker handles it.
#[derive(Debug)]
pub struct Ended<W, D> {
    /// The waiters of the ended job.
    pub waiters: Vec<W>,
    /// The coalesced follow-up to schedule next, if any.
    pub follow_up: Option<(PickMode, Vec<W>)>,
    /// DDLs that waited for the job: run them before the follow-up.
    pub ddls: Vec<D>,
}

/// Schedules one worker's compactions on a shared pool (whose size is the engine's
/// `max_background_compactions`).
pub struct CompactionScheduler<W, D> {
    pool: SchedulerRef,
    context: Arc<CompactionContext>,
    notify: mpsc::UnboundedSender<CompactionNotify>,
    regions: HashMap<RegionId, Status<W, D>>,
    next_execution_id: u64,
}

impl<W, D> std::fmt::Debug for CompactionScheduler<W, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactionScheduler")
            .field("running", &self.regions.len())
            .finish_non_exhaustive()
    }
}

fn stronger(a: PickMode, b: PickMode) -> PickMode {
    let rank = |m: PickMode| match m {
        PickMode::Automatic => 0,
        PickMode::Idle => 1,
        PickMode::Manual => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

impl<W, D> CompactionScheduler<W, D> {
    /// A scheduler running jobs on `pool`, reporting on `notify`.
    pub fn new(
        pool: SchedulerRef,
        context: Arc<CompactionContext>,
        notify: mpsc::UnboundedSender<CompactionNotify>,
    ) -> Self {
        Self {
            pool,
            context,
            notify,
            regions: HashMap::new(),
            next_execution_id: 1,
        }
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<CompactionContext> {
        &self.context
    }

    /// Whether a compaction of the region is running.
    pub fn is_running(&self, region_id: RegionId) -> bool {
        self.regions.contains_key(&region_id)
    }

    /// Starts a compaction of `version` (picked at `now_millis`) answering `waiters`, or
    /// queues the request (and its waiters) behind the running one.
    pub fn schedule(
        &mut self,
        region_id: RegionId,
        version: Arc<Version>,
        committer: Arc<dyn Committer>,
        mode: PickMode,
        waiters: Vec<W>,
        now_millis: i64,
    ) -> Scheduled<W> {
        if let Some(status) = self.regions.get_mut(&region_id) {
            let (queued_mode, queued) = status.follow_up.get_or_insert_with(|| (mode, Vec::new()));
            *queued_mode = stronger(*queued_mode, mode);
            queued.extend(waiters);
            return Scheduled::Queued;
        }
        let pick = pick(&version, now_millis, mode, &self.context.picker);
        if pick.is_empty() {
            return Scheduled::NothingToDo(waiters);
        }
        let inputs = CompactionInputs::of(&version, &pick);
        // The version (and the memtables it holds) is not kept past this point.
        drop(version);
        let execution_id = self.next_execution_id;
        self.next_execution_id += 1;
        let cancel = Arc::new(Cancel::default());
        let task = CompactionTask {
            region_id,
            execution_id,
            mode,
            inputs,
            pick,
            committer,
            cancel: cancel.clone(),
        };
        let job = task.into_job(self.context.clone(), self.notify.clone());
        if let Err(error) = self.pool.schedule(job) {
            tracing::warn!(%region_id, %error, "cannot schedule a compaction");
            return Scheduled::PoolStopped(waiters);
        }
        self.regions.insert(
            region_id,
            Status {
                execution_id,
                cancel,
                waiters,
                follow_up: None,
                ddls: Vec::new(),
            },
        );
        Scheduled::Started
    }

    /// A job reported: its waiters, follow-up and fenced DDLs — or `None` for a result of
    /// an execution that is not the region's running one (ignored).
    pub fn on_finished(&mut self, region_id: RegionId, execution_id: u64) -> Option<Ended<W, D>> {
        if self.regions.get(&region_id)?.execution_id != execution_id {
            return None;
        }
        let status = self.regions.remove(&region_id)?;
        Some(Ended {
            waiters: status.waiters,
            follow_up: status.follow_up,
            ddls: status.ddls,
        })
    }

    /// Fences `ddl` behind the region's running compaction, which is cancelled (`by` names
    /// the DDL); gives it back when none runs.
    pub fn cancel_and_fence(
        &mut self,
        region_id: RegionId,
        ddl: D,
        by: &'static str,
    ) -> Result<(), D> {
        match self.regions.get_mut(&region_id) {
            Some(status) => {
                status.cancel.cancel(by);
                status.ddls.push(ddl);
                Ok(())
            }
            None => Err(ddl),
        }
    }

    /// Every waiter and fenced DDL of every running job (the worker is stopping).
    pub fn drain(&mut self) -> Vec<Ended<W, D>> {
        self.regions
            .drain()
            .map(|(_, status)| Ended {
                waiters: status.waiters,
                follow_up: status.follow_up,
                ddls: status.ddls,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
