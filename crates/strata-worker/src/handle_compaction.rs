//! Compaction requests, triggers and results.
//!
//! Automatic compactions start after each applied flush and on the periodic check (which
//! also consolidates a region idle for `compaction_idle_after`); manual ones come from
//! the `Compact` DDL and are answered once their edit is applied. Results are applied on
//! the worker like flush results: the edit goes into the version (the inputs are then
//! deleted once no scan holds them), waiters are answered, fenced DDLs run, then the
//! coalesced follow-up starts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use strata_compaction::{
    CompactionNotify, CompactionScheduler, CompactionStats, PickMode, Scheduled,
};
use strata_request::{CompactRequest, RegionId};
use tokio::sync::mpsc;

use crate::error::WorkerError;
use crate::gate::{CompactCaller, answer_compactions};
use crate::region::{Region, RegionState};

use crate::worker::RegionWorkerLoop;

/// How long automatic compactions leave a region alone after its compaction failed.
pub(crate) const COMPACTION_RETRY_BACKOFF: Duration = Duration::from_secs(5);

/// The compaction side of a worker.
pub(crate) struct CompactionState {
    pub(crate) scheduler: CompactionScheduler,
    pub(crate) results: mpsc::UnboundedReceiver<CompactionNotify>,
    /// Regions consolidated since their last flush (the idle consolidation runs once).
    pub(crate) consolidated: HashSet<RegionId>,
    /// When each region's last compaction failed, for the back-off.
    pub(crate) failed_millis: std::collections::HashMap<RegionId, i64>,
}

impl CompactionState {
    pub(crate) fn new(
        scheduler: CompactionScheduler,
        results: mpsc::UnboundedReceiver<CompactionNotify>,
    ) -> Self {
        Self {
            scheduler,
            results,
            consolidated: HashSet::new(),
            failed_millis: std::collections::HashMap::new(),
        }
    }
}

impl RegionWorkerLoop {
    /// `Compact` DDL: a manual compaction, answered when its edit is applied (at once when
    /// there is nothing to compact; after the running one when one runs) with what it did.
    pub(crate) fn handle_compact_request(
        &mut self,
        request: CompactRequest,
        caller: CompactCaller,
    ) {
        let CompactCaller { reply, stats } = caller;
        let Some((region, reply)) = self.region_in_state(
            request.region_id,
            &[RegionState::Writable],
            "compact",
            reply,
        ) else {
            return;
        };
        self.schedule_compaction(
            &region,
            PickMode::Manual,
            vec![CompactCaller { reply, stats }],
        );
    }

    /// Starts (or queues) a compaction of `region` in `mode`.
    pub(crate) fn schedule_compaction(
        &mut self,
        region: &Arc<Region>,
        mode: PickMode,
        waiters: Vec<CompactCaller>,
    ) {
        let region_id = region.region_id();
        let version = region.version_control.current().version().clone();
        let scheduled = self.compaction.scheduler.schedule(
            region_id,
            version,
            region.committer.clone(),
            mode,
            self.shared.clock.now_millis(),
        );
        match scheduled {
            Scheduled::Started => self.gates.of(region_id).compaction_callers.extend(waiters),
            Scheduled::Queued => self
                .gates
                .of(region_id)
                .follow_up_compaction_callers
                .extend(waiters),
            Scheduled::NothingToDo => {
                if mode == PickMode::Idle {
                    self.compaction.consolidated.insert(region_id);
                }
                answer_compactions(waiters, &Ok(CompactionStats::default()));
            }
            Scheduled::PoolStopped => {
                answer_compactions(waiters, &Err(WorkerError::WorkerStopped));
            }
        }
    }

    /// An automatic compaction of `region` after a flush or on the periodic check, unless
    /// automatic compaction is off, the region is not writable, or it is backing off.
    pub(crate) fn maybe_compact(&mut self, region: &Arc<Region>, mode: PickMode) {
        let region_id = region.region_id();
        if !self.shared.config.compaction_enabled
            || region.state() != RegionState::Writable
            || self.changing.contains(region_id)
        {
            return;
        }
        if let Some(&failed) = self.compaction.failed_millis.get(&region_id)
            && self.shared.clock.elapsed_since(failed) < COMPACTION_RETRY_BACKOFF
        {
            return;
        }
        self.schedule_compaction(region, mode, Vec::new());
    }

    /// The periodic check's part: every writable region gets an automatic pick (windows
    /// past their trigger, expired files), or — once idle since its last flush for
    /// `compaction_idle_after` — one consolidation; as the follow-up of a running one.
    pub(crate) fn compact_periodically(&mut self) {
        if !self.shared.config.compaction_enabled {
            return;
        }
        let idle_after = self.shared.config.compaction_idle_after;
        // A region compacting now gets the request as its follow-up (an idle one must not
        // be lost to a compaction that happened to run at the check).
        let regions: Vec<Arc<Region>> = self.regions.values().cloned().collect();
        for region in regions {
            let idle = self.shared.clock.elapsed_since(region.last_flush_millis()) >= idle_after
                && !self.compaction.consolidated.contains(&region.region_id());
            let mode = if idle {
                PickMode::Idle
            } else {
                PickMode::Automatic
            };
            self.maybe_compact(&region, mode);
        }
    }

    /// Applies a compaction result: the edit (when committed and still current), then the
    /// waiters, the fenced DDLs, and the follow-up.
    pub(crate) async fn handle_compaction_result(&mut self, notify: CompactionNotify) {
        let CompactionNotify {
            region_id,
            execution_id,
            result,
        } = notify;
        let Some(ended) = self
            .compaction
            .scheduler
            .on_finished(region_id, execution_id)
        else {
            tracing::warn!(%region_id, execution_id, "ignoring the result of an earlier compaction execution");
            return;
        };
        let region = self.regions.get(&region_id).cloned();
        let applied = match (&result, &region) {
            (Ok(finished), Some(region)) => {
                // The committer checked under the manifest lock that every input was live,
                // and edits reach the version in manifest order on this worker.
                region.version_control.apply_edit(&finished.edit, &[]);
                self.compaction.failed_millis.remove(&region_id);
                true
            }
            (Ok(_), None) => {
                // Close and drop wait for the compaction, so this is not expected; the
                // manifest has the edit and the next open reads it.
                tracing::warn!(%region_id, "a compaction committed for a region no longer open");
                false
            }
            (Err(_), _) => {
                self.compaction
                    .failed_millis
                    .insert(region_id, self.shared.clock.now_millis());
                false
            }
        };
        let idle_run = result.is_ok();
        let (callers, ddls, follow_up_callers) = self.gates.take(region_id, |gate| {
            (
                std::mem::take(&mut gate.compaction_callers),
                std::mem::take(&mut gate.behind_compaction),
                std::mem::take(&mut gate.follow_up_compaction_callers),
            )
        });
        match result {
            Ok(finished) => answer_compactions(callers, &Ok(finished.stats)),
            Err(error) => {
                self.after_failed_commit(region_id, error.kind(), &error);
                answer_compactions(callers, &Err(WorkerError::from(error)));
            }
        }
        if idle_run && region.is_some() {
            // A consolidation that ran to the end leaves nothing more to do until a flush;
            // an automatic one may have left windows, which the next check picks up.
            self.notice_consolidation(region_id);
        }
        self.update_file_gauges();
        self.shared.listener.on_compaction_end(region_id, applied);
        for ddl in ddls {
            self.handle_ddl(ddl).await;
        }
        if let Some(mode) = ended.follow_up {
            match self.regions.get(&region_id).cloned() {
                Some(region) if region.state() == RegionState::Writable => {
                    self.schedule_compaction(&region, mode, follow_up_callers);
                }
                Some(region) => answer_compactions(
                    follow_up_callers,
                    &Err(WorkerError::RegionState {
                        region_id,
                        state: region.state(),
                        operation: "compact",
                    }),
                ),
                None => answer_compactions(
                    follow_up_callers,
                    &Err(WorkerError::RegionNotFound { region_id }),
                ),
            }
        }
    }

    /// Records that `region_id` needs no idle consolidation when nothing is left to pick.
    fn notice_consolidation(&mut self, region_id: RegionId) {
        let Some(region) = self.regions.get(&region_id) else {
            return;
        };
        let version = region.version_control.current().version().clone();
        let pick = strata_compaction::pick(
            &version,
            self.shared.clock.now_millis(),
            PickMode::Idle,
            &self.shared.config.compaction_picker,
        );
        if pick.is_empty() {
            self.compaction.consolidated.insert(region_id);
        }
    }

    /// A flush of `region_id` was applied: it has new data to consolidate some day.
    pub(crate) fn on_region_flushed_for_compaction(&mut self, region_id: RegionId) {
        self.compaction.consolidated.remove(&region_id);
    }

    /// Forgets a region's compaction bookkeeping (closed or dropped).
    pub(crate) fn forget_compaction(&mut self, region_id: RegionId) {
        self.compaction.consolidated.remove(&region_id);
        self.compaction.failed_millis.remove(&region_id);
    }
}
