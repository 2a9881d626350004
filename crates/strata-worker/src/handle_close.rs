//! Close: the region leaves the worker; its memtables are dropped (the WAL keeps them).

use strata_flush::{FlushError, FlushReason};
use strata_request::{CloseRequest, DdlRequest};

use crate::error::WorkerError;
use crate::region::RegionState;
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

/// What happened to the flush a close waited for, if it waited for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushBeforeClose {
    /// The close arrived as a request (it may start its own flush).
    NotWaited,
    /// The close was fenced behind a flush of the region, and that flush failed.
    Failed,
}

impl RegionWorkerLoop {
    /// Closes the region once no flush of it runs. Closing a region that is not open is
    /// `Ok`. Stalled writes of the region are answered with `RegionClosed`. With
    /// `flush_on_close` (no WAL), the memtables are flushed first; if that flush fails the
    /// close fails and the region stays open.
    pub(crate) async fn handle_close(
        &mut self,
        request: CloseRequest,
        sender: ReplyTx,
        flush_before: FlushBeforeClose,
    ) {
        let region_id = request.region_id;
        if self.changing.contains(region_id) {
            // Reached here past `handle_ddl` (a close released by a failed flush).
            self.gates
                .of(region_id)
                .background
                .ddls
                .push(crate::request::SenderDdlRequest::new(
                    DdlRequest::Close(request),
                    sender,
                ));
            return;
        }
        if !self.regions.contains_key(&region_id) {
            sender.send(Ok(0));
            return;
        }
        if let Some(region) = self.regions.get(&region_id).cloned()
            && self.shared.config.flush_on_close
            && region.state() == RegionState::Writable
            && !region
                .version_control
                .current()
                .version()
                .memtables()
                .is_empty()
            && !self.flush.scheduler.is_flush_requested(region_id)
        {
            if flush_before == FlushBeforeClose::Failed {
                // Without a WAL, closing now would lose the rows: keep the region open.
                sender.send(Err(WorkerError::RegionState {
                    region_id,
                    state: RegionState::Writable,
                    operation: "close (its rows are not in a WAL and the flush before close failed; retry)",
                }));
                return;
            }
            self.schedule_flush(&region, FlushReason::Closing, None);
        }
        let Some((_, sender)) =
            self.fence_behind_flush(region_id, DdlRequest::Close(request), sender)
        else {
            return;
        };
        if let Some(region) = self.remove_region(region_id) {
            // Under the manifest lock: no flush commit can interleave (none runs anyway).
            region.committer.set_state(RegionState::Closed).await;
        }
        self.stalled
            .fail_region(region_id, &WorkerError::RegionClosed { region_id });
        self.on_region_gone_for_flush(region_id, FlushError::RegionClosed { region_id });
        self.forget_compaction(region_id);
        self.update_gauges();
        tracing::info!(%region_id, "region closed");
        sender.send(Ok(0));
    }
}
