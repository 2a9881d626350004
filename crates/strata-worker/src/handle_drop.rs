//! Drop: logical first (state, marker, WAL), files removed later in the background.

use std::sync::Arc;

use strata_request::{DdlRequest, DropRequest};

use crate::changes::Change;
use crate::error::WorkerError;
use crate::opener::storage_error;
use crate::region::{Region, RegionState};
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

impl RegionWorkerLoop {
    /// Drops the region once no flush of it runs. In the background: state → dropping and
    /// the `.dropping` marker written (so a crash after this point never brings the region
    /// back), then the WAL namespace dropped; then the worker lets the region go and
    /// replies; the files are removed by a background job.
    pub(crate) fn handle_drop(&mut self, request: DropRequest, sender: ReplyTx) {
        let region_id = request.region_id;
        let Some((region, sender)) = self.region_in_state(
            region_id,
            &[RegionState::Writable, RegionState::ReadOnly],
            "drop",
            sender,
        ) else {
            return;
        };
        let state = region.state();
        let Some((_, sender)) =
            self.fence_behind_flush(region_id, DdlRequest::Drop(request), sender)
        else {
            return;
        };
        let files = self.shared.region_files(region_id);
        let log_store = self.shared.log_store.clone();
        self.start_change(region_id, "drop", sender, async move {
            region.committer.set_state(RegionState::Dropping).await;
            if let Err(error) = files.mark_dropping().await {
                region.committer.set_state(state).await;
                return Err(storage_error(region_id)(error));
            }
            if let Err(error) = log_store.drop_region(region_id.as_u64()).await {
                // The marker already makes the drop final; a later create drops the
                // namespace.
                tracing::warn!(%region_id, %error, "cannot drop the region's WAL namespace");
            }
            Ok(Change::Dropped)
        });
    }

    /// The drop is final (its marker written): the region leaves the worker, and its
    /// files are removed in the background.
    pub(crate) fn finish_drop(&mut self, region: &Arc<Region>) {
        let region_id = region.region_id();
        self.remove_region(region_id);
        self.stalled
            .fail_region(region_id, &WorkerError::RegionNotFound { region_id });
        self.on_region_gone_for_flush(
            region_id,
            strata_flush::FlushError::RegionDropped { region_id },
        );
        self.forget_compaction(region_id);
        region.version_control.mark_dropped();
        self.update_gauges();

        let shared = self.shared.clone();
        let crate::purges::PurgeHandle { done, hurry } = self.shared.purges.start(region_id);
        let committer = region.committer.clone();
        let job = Box::pin(async move {
            // A checkpoint's background deletion of old manifest files ends first: it must
            // not delete a file of a region re-created under the same id (a create waits
            // for this job).
            committer.lock().await.wait_for_cleanup().await;
            let removed = match shared.purge_region_files(region_id).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%region_id, %error, "cannot remove a dropped region's files; the next open or create finishes it");
                    false
                }
            };
            shared.listener.on_later_drop_end(region_id, removed);
            // Also when nobody waits: the value stays for a later create or open.
            let _ = done.send(true);
        });
        // The files go once no scan holds any of them and `removed_file_lingering` has
        // passed (followers in other engines may still read them): at once if neither
        // applies, else after a wait off the pool, so a long scan occupies no purge slot
        // (and an engine stop does not wait for it; the marker then makes the next open
        // or create finish the removal). A create or open of the id cuts the lingering
        // short: the new region needs the old files gone.
        let tracker = region
            .version_control
            .current()
            .version()
            .file_tracker()
            .clone();
        let lingering = self.shared.config.removed_file_lingering;
        let clock = self.shared.clock.clone();
        let pool = self.shared.purge_pool.clone();
        let schedule = move |job| {
            if let Err(error) = pool.schedule(job) {
                tracing::warn!(%region_id, %error, "cannot schedule removal of a dropped region's files");
            }
        };
        if tracker.live() == 0 && lingering.is_zero() {
            schedule(job);
        } else {
            tokio::spawn(async move {
                tracker.released().await;
                if !lingering.is_zero() {
                    tokio::select! {
                        () = clock.sleep(lingering) => {}
                        () = hurry.notified() => {}
                    }
                }
                schedule(job);
            });
        }
    }
}
