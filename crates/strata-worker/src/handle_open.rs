//! Open: manifest, then WAL replay from the flushed entry id.

use strata_request::OpenRequest;

use crate::error::WorkerError;
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

impl RegionWorkerLoop {
    /// Opens the region (writable, or read-only in a read-only group). Already open: `Ok`.
    /// A region whose drop began (its marker exists) is reported not found and — unless
    /// the group is read-only — its files are removed.
    pub(crate) async fn handle_open(&mut self, request: OpenRequest, sender: ReplyTx) {
        let region_id = request.region_id;
        if self.regions.contains_key(&region_id) {
            sender.send(Ok(0));
            return;
        }
        // A drop's background purge of this id must finish first, or it would delete the
        // files of the region created or opened now.
        self.shared.purges.wait(region_id).await;
        let shared = self.shared.clone();
        let opened = async {
            if shared.is_dropping(region_id).await? {
                if shared.config.read_only {
                    return Err(WorkerError::RegionNotFound { region_id });
                }
                if let Err(error) = shared.purge_region_files(region_id).await {
                    tracing::warn!(%region_id, %error, "cannot finish removing a dropped region");
                }
                return Err(WorkerError::RegionNotFound { region_id });
            }
            shared
                .open_region(region_id, request.skip_wal_replay, request.role)
                .await?
                .ok_or(WorkerError::RegionNotFound { region_id })
        }
        .await;
        match opened {
            Ok(region) => {
                tracing::info!(%region_id, "region opened");
                self.insert_region(region);
                sender.send(Ok(0));
                // A replay can fill memtables past the flush threshold (a WAL bigger than
                // the budget after crashes, or a smaller budget than the last run's):
                // start flushing now, not only when the next write finds memory full.
                self.maybe_flush_worker();
            }
            Err(error) => sender.send(Err(error)),
        }
    }
}
