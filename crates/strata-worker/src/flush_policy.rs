//! When a worker flushes what: manual and automatic flush requests (a change of the region
//! holds them back), the engine-full picks (overdue regions, then the biggest), memtables
//! a failed flush stranded, the periodic flush, and the back-off after a failed flush.

use std::sync::Arc;

use strata_flush::{FlushReason, FlushScheduled};
use strata_storage::Committer;

use crate::error::WorkerError;
use crate::region::{Region, RegionState};
use crate::request::ReplyTx;
use crate::worker::{FLUSH_RETRY_BACKOFF, RegionWorkerLoop};

impl RegionWorkerLoop {
    /// Requests a flush of `region` (merged into a running one if any).
    pub(crate) fn schedule_flush(
        &mut self,
        region: &Arc<Region>,
        reason: FlushReason,
        waiter: Option<ReplyTx>,
    ) {
        let region_id = region.region_id();
        if self.changing.contains(region_id) {
            // Nothing starts beside a change (a flush freezing rows a truncate removes
            // would bring them back); flush requests wait for it as DDLs, and automatic
            // flushes come again with the next write or check.
            if let Some(waiter) = waiter {
                waiter.send(Err(WorkerError::RegionState {
                    region_id,
                    state: region.state(),
                    operation: "flush (a change of the region is in progress)",
                }));
            }
            return;
        }
        let committer: Arc<dyn Committer> = region.committer.clone();
        let scheduled = self.flush.scheduler.schedule_flush(
            &region.version_control,
            &committer,
            region_id,
            reason,
        );
        match scheduled {
            Ok(FlushScheduled::NothingToFlush) => {
                if let Some(waiter) = waiter {
                    waiter.send(Ok(0));
                }
            }
            Ok(FlushScheduled::Started) => self.gates.of(region_id).flush_callers.extend(waiter),
            Ok(FlushScheduled::Queued) => self
                .gates
                .of(region_id)
                .follow_up_flush_callers
                .extend(waiter),
            Err(error) => {
                tracing::warn!(%region_id, %error, "cannot schedule a flush");
                if let Some(waiter) = waiter {
                    waiter.send(Err(error.into()));
                }
            }
        }
    }

    /// Mutable memory is over the flush threshold: flush this worker's regions that are
    /// overdue, then the biggest ones until usage would drop below half the budget. Over
    /// the budget with little mutable memory (the rest is being flushed), only frozen
    /// memtables that no flush is writing — left by a failed flush — are flushed again: the
    /// flushes in flight free the rest, and starting more would flush small regions for
    /// nothing while one long flush runs.
    pub(crate) fn maybe_flush_worker(&mut self) {
        if self.shared.write_buffer.should_flush_engine() {
            self.flush_biggest_regions();
        } else if self.shared.write_buffer.should_stall() {
            self.flush_stranded_memtables();
        }
    }

    /// Flushes again the regions whose frozen memtables no flush is writing, unless they
    /// are backing off after that failure.
    fn flush_stranded_memtables(&mut self) {
        let stranded: Vec<Arc<Region>> = self
            .regions
            .values()
            .filter(|region| self.may_flush_automatically(region) && has_frozen(region))
            .cloned()
            .collect();
        for region in stranded {
            self.schedule_flush(&region, FlushReason::EngineFull, None);
        }
    }

    /// Whether an automatic flush (engine full, periodic) may start for the region, its
    /// backoff after a failed flush aside: it is writable, and neither a flush nor a change
    /// of it is in flight.
    fn flushable(&self, region: &Region) -> bool {
        let region_id = region.region_id();
        region.state() == RegionState::Writable
            && !self.flush.scheduler.is_flush_requested(region_id)
            && !self.changing.contains(region_id)
    }

    /// [`flushable`](Self::flushable) and not backing off.
    fn may_flush_automatically(&self, region: &Region) -> bool {
        self.flushable(region) && !self.backing_off(region)
    }

    fn flush_biggest_regions(&mut self) {
        let mut candidates = Vec::new();
        for region in self.regions.values() {
            if !self.may_flush_automatically(region) {
                continue;
            }
            let version = region.version_control.current().version().clone();
            let usage = version.memtables().total_usage();
            if usage == 0 {
                continue;
            }
            let interval = version
                .options()
                .auto_flush_interval
                .unwrap_or(self.shared.config.auto_flush_interval);
            candidates.push((
                self.shared.clock.elapsed_since(region.last_flush_millis()) >= interval,
                usage,
                region.clone(),
            ));
        }
        // Overdue regions first, then biggest first.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        let mut usage = self.shared.write_buffer.memory_usage();
        let limit = self.shared.write_buffer.flush_limit();
        for (index, (overdue, size, region)) in candidates.into_iter().enumerate() {
            // The biggest region always goes: the trigger says memory is tight.
            if index > 0 && !overdue && usage < limit {
                break;
            }
            self.schedule_flush(&region, FlushReason::EngineFull, None);
            usage = usage.saturating_sub(size);
        }
    }

    /// Whether the region's last flush failed less than [`FLUSH_RETRY_BACKOFF`] ago, so
    /// automatic flushes (engine full, periodic) leave it alone for now: a region whose
    /// flushes keep failing must not keep a worker and the flush pool busy in a loop.
    /// Manual flushes are not held back.
    fn backing_off(&self, region: &Region) -> bool {
        region
            .flush_failed_millis()
            .is_some_and(|failed| self.shared.clock.elapsed_since(failed) < FLUSH_RETRY_BACKOFF)
    }

    /// When the worker must wake to flush stranded memtables again (see
    /// [`maybe_flush_worker`](Self::maybe_flush_worker)): at the end of their region's
    /// backoff — possibly already past — while writes stall on a full budget, as nothing
    /// else may wake it then (its writers all wait). Once that flush is scheduled the
    /// region no longer counts, so a past deadline wakes the worker once.
    pub(crate) fn next_flush_retry(&self) -> Option<i64> {
        if self.stalled.is_empty() || !self.shared.write_buffer.should_stall() {
            return None;
        }
        let backoff = i64::try_from(FLUSH_RETRY_BACKOFF.as_millis()).unwrap_or(i64::MAX);
        self.regions
            .values()
            .filter(|region| self.flushable(region) && has_frozen(region))
            .filter_map(|region| region.flush_failed_millis())
            .map(|failed| failed.saturating_add(backoff))
            .min()
    }

    /// Periodic flush: regions that have not flushed for their `auto_flush_interval`.
    pub(crate) fn handle_periodical_tasks(&mut self) {
        let now = self.shared.clock.now_millis();
        if now < self.next_periodic_check {
            return;
        }
        let interval = i64::try_from(self.shared.config.periodic_check_interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        self.next_periodic_check = now.saturating_add(interval);
        let due: Vec<Arc<Region>> = self
            .regions
            .values()
            .filter(|region| self.may_flush_automatically(region))
            .filter(|region| {
                let version = region.version_control.current().version().clone();
                let options = version.options();
                let interval = options
                    .auto_flush_interval
                    .unwrap_or(self.shared.config.auto_flush_interval);
                self.shared.clock.elapsed_since(region.last_flush_millis()) >= interval
            })
            .cloned()
            .collect();
        for region in due {
            if region
                .version_control
                .current()
                .version()
                .memtables()
                .is_empty()
            {
                // Nothing to flush: count it as flushed so it is not checked every minute.
                region.set_last_flush_millis(now);
                continue;
            }
            self.schedule_flush(&region, FlushReason::Periodic, None);
        }
        self.compact_periodically();
    }
}

/// Whether the region holds frozen memtables (being flushed, or left by a failed flush).
fn has_frozen(region: &Region) -> bool {
    !region
        .version_control
        .current()
        .version()
        .memtables()
        .immutables()
        .is_empty()
}
