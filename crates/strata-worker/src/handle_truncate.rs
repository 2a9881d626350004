//! Truncate: every row up to now is gone, also after a reopen.

use std::sync::Arc;

use strata_request::{DdlRequest, TruncateRequest};
use strata_storage::{RegionMetaAction, RegionMetaActionList};

use crate::error::WorkerError;
use crate::region::RegionState;
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

impl RegionWorkerLoop {
    /// Truncates the region once no flush of it runs: persists the truncation point in the
    /// manifest (so a reopen replays nothing before it and names no old file), empties the
    /// version, obsoletes the WAL, and removes the old files in the background.
    pub(crate) async fn handle_truncate(&mut self, request: TruncateRequest, sender: ReplyTx) {
        let region_id = request.region_id;
        let Some((region, sender)) =
            self.region_in_state(region_id, &[RegionState::Writable], "truncate", sender)
        else {
            return;
        };
        let Some((_, sender)) =
            self.fence_behind_flush(region_id, DdlRequest::Truncate(request), sender)
        else {
            return;
        };
        let (truncated_entry_id, truncated_sequence) = {
            // Not kept: a snapshot held here would keep the old files alive past the reply.
            let data = region.version_control.current();
            (data.last_entry_id(), data.committed_sequence())
        };
        let persisted = {
            let mut manifest = region.manifest.lock().await;
            region.state.set(RegionState::Truncating);
            let result = manifest
                .update(RegionMetaActionList::one(RegionMetaAction::Truncate {
                    truncated_entry_id,
                    truncated_sequence,
                }))
                .await;
            region.state.set(RegionState::Writable);
            result
        };
        if let Err(source) = persisted {
            sender.send(Err(WorkerError::Manifest {
                region_id,
                source: Arc::new(source),
            }));
            return;
        }
        // The old files are deleted on the purge pool once no scan holds them.
        region
            .version_control
            .truncate(truncated_entry_id, truncated_sequence);
        self.flush.scheduler.on_region_truncated(region_id);
        self.notify_group();
        self.update_file_gauges();
        if let Err(error) = self
            .shared
            .log_store
            .obsolete(region_id.as_u64(), truncated_entry_id)
            .await
        {
            // The manifest's truncation point already keeps replay from resurrecting rows.
            tracing::warn!(%region_id, %error, "cannot obsolete truncated WAL entries");
        }
        tracing::info!(%region_id, truncated_entry_id, truncated_sequence, "region truncated");
        sender.send(Ok(0));
    }
}
