//! [`CompactionScheduler`]: one per worker. At most one compaction per region; triggers
//! arriving meanwhile coalesce into one follow-up (a manual request queues behind an
//! automatic one); DDLs that must not race a compaction cancel it (and wait, in the
//! worker, for its end); results of an older execution are ignored.

use std::collections::HashMap;
use std::sync::Arc;

use strata_request::RegionId;
use strata_scheduler::SchedulerRef;
use strata_storage::{Committer, Version};
use tokio::sync::mpsc;

use crate::job::{Cancel, CompactionContext, CompactionInputs, CompactionNotify, CompactionTask};
use crate::picker::{PickMode, pick};

/// A region's running compaction.
struct Status {
    execution_id: u64,
    cancel: Arc<Cancel>,
    /// Triggers that arrived meanwhile, coalesced: the strongest mode.
    follow_up: Option<PickMode>,
}

/// What [`CompactionScheduler::schedule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduled {
    /// A job started.
    Started,
    /// A job of the region is running: the request is (or merged into) its follow-up.
    Queued,
    /// Nothing to compact: the request is done.
    NothingToDo,
    /// The pool refused the job (stopping).
    PoolStopped,
}

/// A job's end, as the worker handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The coalesced follow-up to schedule next, if any.
    pub follow_up: Option<PickMode>,
}

/// Schedules one worker's compactions on a shared pool (whose size is the engine's
/// `max_background_compactions`): a lifecycle — started, queued (one coalesced
/// follow-up), cancelled, ended — and nothing else. Who waits for a compaction, and the
/// DDLs that wait for a cancelled one to end, live in the worker.
pub struct CompactionScheduler {
    pool: SchedulerRef,
    context: Arc<CompactionContext>,
    notify: mpsc::UnboundedSender<CompactionNotify>,
    regions: HashMap<RegionId, Status>,
    next_execution_id: u64,
}

impl std::fmt::Debug for CompactionScheduler {
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

impl CompactionScheduler {
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

    /// Starts a compaction of `version` (picked at `now_millis`), or queues the request
    /// behind the running one.
    pub fn schedule(
        &mut self,
        region_id: RegionId,
        version: Arc<Version>,
        committer: Arc<dyn Committer>,
        mode: PickMode,
        now_millis: i64,
    ) -> Scheduled {
        if let Some(status) = self.regions.get_mut(&region_id) {
            let queued = status.follow_up.get_or_insert(mode);
            *queued = stronger(*queued, mode);
            return Scheduled::Queued;
        }
        let pick = pick(&version, now_millis, mode, &self.context.picker);
        if pick.is_empty() {
            return Scheduled::NothingToDo;
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
            return Scheduled::PoolStopped;
        }
        self.regions.insert(
            region_id,
            Status {
                execution_id,
                cancel,
                follow_up: None,
            },
        );
        Scheduled::Started
    }

    /// A job reported: its follow-up — or `None` for a result of an execution that is not
    /// the region's running one (ignored).
    pub fn on_finished(&mut self, region_id: RegionId, execution_id: u64) -> Option<Ended> {
        if self.regions.get(&region_id)?.execution_id != execution_id {
            return None;
        }
        let status = self.regions.remove(&region_id)?;
        Some(Ended {
            follow_up: status.follow_up,
        })
    }

    /// Cancels the region's running compaction (`by` names the DDL that must not race it);
    /// whether one runs — it still reports its end, which the DDL then waits for.
    pub fn cancel(&mut self, region_id: RegionId, by: &'static str) -> bool {
        match self.regions.get_mut(&region_id) {
            Some(status) => {
                status.cancel.cancel(by);
                true
            }
            None => false,
        }
    }

    /// Forgets every running job (the worker is stopping; their reports are not awaited).
    pub fn clear(&mut self) {
        self.regions.clear();
    }
}

#[cfg(test)]
mod tests;
