//! Truncate: every row up to now is gone, also after a reopen.

use strata_request::{DdlRequest, TruncateRequest};
use strata_storage::RegionMetaAction;

use crate::changes::Change;
use crate::region::RegionState;
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

impl RegionWorkerLoop {
    /// Truncates the region once no flush of it runs. In the background: persists the
    /// truncation point in the manifest (a truncate fenced out by another engine leaves
    /// the region a follower) (so a reopen replays nothing before it and names
    /// no old file) and obsoletes the WAL up to it; then the worker empties the version
    /// (the old files are removed on the purge pool once no scan holds them). Writes that
    /// arrive meanwhile land after the truncation.
    pub(crate) fn handle_truncate(&mut self, request: TruncateRequest, sender: ReplyTx) {
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
        let (entry_id, sequence) = {
            // Not kept: a snapshot held here would keep the old files alive past the reply.
            let data = region.version_control.current();
            (data.last_entry_id(), data.committed_sequence())
        };
        let log_store = self.shared.log_store.clone();
        self.start_change(region_id, "truncate", sender, async move {
            region
                .committer
                .change(
                    RegionState::Truncating,
                    RegionMetaAction::Truncate {
                        truncated_entry_id: entry_id,
                        truncated_sequence: sequence,
                    },
                )
                .await?;
            if let Err(error) = log_store.obsolete(region_id.as_u64(), entry_id).await {
                // The manifest's truncation point already keeps replay from resurrecting
                // rows.
                tracing::warn!(%region_id, %error, "cannot obsolete truncated WAL entries");
            }
            Ok(Change::Truncated { entry_id, sequence })
        });
    }
}
