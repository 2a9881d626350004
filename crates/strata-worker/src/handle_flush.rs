//! Flush requests and flush results.

use strata_flush::{AfterFlush, FlushError, FlushFinished, FlushNotify, FlushReason};
use strata_request::{DdlRequest, FlushRequest, RegionId};

use crate::error::WorkerError;
use crate::gate::{Waiting, answer_all};
use crate::handle_close::FlushBeforeClose;
use crate::handle_write::WriteOrigin;
use crate::region::RegionState;
use crate::request::{ReplyTx, SenderDdlRequest};
use crate::worker::RegionWorkerLoop;

impl RegionWorkerLoop {
    /// A manual flush: answered when the flush is applied (at once if there is nothing to
    /// flush; merged into a running flush's follow-up otherwise).
    pub(crate) fn handle_flush_request(&mut self, request: FlushRequest, sender: ReplyTx) {
        let region_id = request.region_id;
        let Some(region) = self.regions.get(&region_id).cloned() else {
            sender.send(Err(WorkerError::RegionNotFound { region_id }));
            return;
        };
        let state = region.state();
        // A downgrading leader still flushes: that is how it hands its rows over.
        if !matches!(state, RegionState::Writable | RegionState::Downgrading) {
            sender.send(Err(WorkerError::RegionState {
                region_id,
                state,
                operation: "flush",
            }));
            return;
        }
        self.schedule_flush(&region, FlushReason::Manual, Some(sender));
    }

    pub(crate) async fn handle_flush_result(&mut self, result: FlushNotify) {
        let region_id = match &result {
            FlushNotify::Finished(finished) => finished.region_id,
            FlushNotify::Failed { region_id, .. } => *region_id,
        };
        if !self.flush.scheduler.is_flush_requested(region_id) {
            // A job the pool refused (its caller already has the error) reports `Dropped`.
            tracing::debug!(%region_id, "ignoring the report of a flush that never ran");
            return;
        }
        match result {
            FlushNotify::Finished(finished) => self.handle_flush_finished(finished).await,
            FlushNotify::Failed { region_id, error } => {
                self.handle_flush_failed(region_id, error).await;
            }
        }
    }

    /// Order matters: wake everyone, apply the edit (dropping the flushed memtables),
    /// obsolete the WAL, answer the callers, then run what was fenced behind the flush,
    /// then stalled writes.
    async fn handle_flush_finished(&mut self, finished: FlushFinished) {
        self.notify_group();
        let region_id = finished.region_id;
        let Some(region) = self.regions.get(&region_id).cloned() else {
            // Close, drop and truncate wait for running flushes, so this is not expected;
            // answer the callers and clear the status all the same.
            let callers = self
                .gates
                .take(region_id, |gate| std::mem::take(&mut gate.flush_callers));
            answer_all(callers, &Err(FlushError::RegionClosed { region_id }.into()));
            let _ = self.flush.scheduler.on_flush_success(region_id);
            return;
        };
        // What the flush releases feeds the slowdown's drain rate.
        let released: usize = region
            .version_control
            .current()
            .version()
            .memtables()
            .immutables()
            .iter()
            .filter(|m| finished.memtables_to_remove.contains(&m.id()))
            .map(|m| m.stats().estimated_bytes)
            .sum();
        self.shared
            .delay
            .on_flushed(released as u64, self.shared.clock.now());
        region
            .version_control
            .apply_edit(&finished.edit, &finished.memtables_to_remove);
        region.set_last_flush_millis(self.shared.clock.now_millis());
        self.on_region_flushed_for_compaction(region_id);
        if let Err(error) = self
            .shared
            .log_store
            .obsolete(region_id.as_u64(), finished.flushed_entry_id)
            .await
        {
            // The rows are safe in SST files; the WAL space is reclaimed by a later flush.
            tracing::warn!(%region_id, %error, "cannot obsolete flushed WAL entries");
        }
        let callers = self
            .gates
            .take(region_id, |gate| std::mem::take(&mut gate.flush_callers));
        answer_all(callers, &Ok(0));
        match self.flush.scheduler.on_flush_success(region_id) {
            AfterFlush::FollowUpStarted => {
                // Its callers now wait for it; the fence stays.
                let gate = self.gates.of(region_id);
                gate.flush_callers = std::mem::take(&mut gate.follow_up_flush_callers);
            }
            AfterFlush::Ended => {
                // A follow-up, if asked for, had nothing to flush.
                let (follow_up, Waiting { writes, ddls }) = self.gates.take(region_id, |gate| {
                    (
                        std::mem::take(&mut gate.follow_up_flush_callers),
                        std::mem::take(&mut gate.behind_flush),
                    )
                });
                answer_all(follow_up, &Ok(0));
                for ddl in ddls {
                    self.handle_ddl(ddl).await;
                }
                if self.flush.scheduler.is_flush_requested(region_id) {
                    // A released DDL started another flush: the writes stay fenced.
                    self.gates.of(region_id).behind_flush.writes.extend(writes);
                } else {
                    self.handle_write_requests(writes, WriteOrigin::Retried)
                        .await;
                }
            }
            AfterFlush::FollowUpFailed(error) => self.fail_behind_flush(region_id, error.into()),
        }
        if let Some(region) = self.regions.get(&region_id).cloned() {
            self.maybe_compact(&region, strata_compaction::PickMode::Automatic);
        }
        self.maybe_flush_worker();
        self.handle_stalled_requests().await;
        self.update_file_gauges();
        self.shared.listener.on_flush_success(region_id);
    }

    /// The flush's callers get its error; its follow-up's callers and the work fenced
    /// behind it fail with `FlushFailed`, except lifecycle DDLs, which run now. Stalled
    /// writes are retried (memory may still have been freed).
    async fn handle_flush_failed(&mut self, region_id: RegionId, error: FlushError) {
        tracing::warn!(%region_id, %error, "flush failed");
        if let Some(region) = self.regions.get(&region_id) {
            region.set_flush_failed_millis(self.shared.clock.now_millis());
        }
        self.after_failed_commit(region_id, error.kind(), &error);
        self.flush.scheduler.on_flush_failed(region_id);
        let (callers, follow_up, behind) = self.gates.take(region_id, |gate| {
            (
                std::mem::take(&mut gate.flush_callers),
                std::mem::take(&mut gate.follow_up_flush_callers),
                std::mem::take(&mut gate.behind_flush),
            )
        });
        answer_all(callers, &Err(error.clone().into()));
        let failed = WorkerError::from(FlushError::FlushFailed {
            region_id,
            cause: Box::new(error),
        });
        answer_all(follow_up, &Err(failed.clone()));
        for write in behind.writes {
            write.fail(failed.clone());
        }
        let (survivors, doomed): (Vec<_>, Vec<_>) = behind
            .ddls
            .into_iter()
            .partition(SenderDdlRequest::outlives_failed_flush);
        for ddl in doomed {
            ddl.sender.send(Err(failed.clone()));
        }
        self.shared.listener.on_flush_failed(region_id);
        for ddl in survivors {
            match ddl.request {
                // A close that waited for this flush must not drop rows the flush failed
                // to write.
                DdlRequest::Close(request) => {
                    self.handle_close(request, ddl.sender, FlushBeforeClose::Failed)
                        .await;
                }
                request => {
                    self.handle_ddl(SenderDdlRequest {
                        request,
                        sender: ddl.sender,
                        compacted: ddl.compacted,
                    })
                    .await;
                }
            }
        }
        self.maybe_flush_worker();
        self.handle_stalled_requests().await;
    }

    /// The region was dropped, closed or truncated (`error` says which): its follow-up
    /// flush will not run, and its callers and the work fenced behind the flush fail with
    /// `error`. A running flush still reports.
    pub(crate) fn on_region_gone_for_flush(&mut self, region_id: RegionId, error: FlushError) {
        self.flush.scheduler.cancel_follow_up(region_id);
        self.fail_behind_flush(region_id, error.into());
    }

    /// Fails the callers of the region's follow-up flush and the work fenced behind its
    /// flush with `error`.
    fn fail_behind_flush(&mut self, region_id: RegionId, error: WorkerError) {
        let (follow_up, behind) = self.gates.take(region_id, |gate| {
            (
                std::mem::take(&mut gate.follow_up_flush_callers),
                std::mem::take(&mut gate.behind_flush),
            )
        });
        answer_all(follow_up, &Err(error.clone()));
        behind.fail_all(&error);
    }
}
