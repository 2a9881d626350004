//! Create: idempotent for a region that exists with the same schema.

use strata_request::CreateRequest;

use crate::error::WorkerError;
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

impl RegionWorkerLoop {
    /// Creates the region (writing manifest version 0), or — when a region with this id
    /// already exists with the same schema, open here or only on storage — keeps it.
    pub(crate) fn handle_create(&mut self, request: CreateRequest, sender: ReplyTx) {
        let region_id = request.metadata.region_id();
        let different_schema = move || WorkerError::InvalidRequest {
            region_id,
            reason: "the region already exists with a different schema".into(),
        };
        // Tags form the primary key every row is indexed by; a region without one could
        // not hold a row (found by the test kit: its first write panicked the worker).
        if request.metadata.primary_key().is_empty() {
            sender.send(Err(WorkerError::InvalidRequest {
                region_id,
                reason: "the schema has no tag column: at least one tag is required (tags form the series' primary key)".into(),
            }));
            return;
        }
        if let Some(region) = self.regions.get(&region_id) {
            let same = region
                .version_control
                .current()
                .version()
                .metadata()
                .columns()
                == request.metadata.columns();
            sender.send(if same { Ok(0) } else { Err(different_schema()) });
            return;
        }
        let shared = self.shared.clone();
        self.start_opening(region_id, "create", sender, async move {
            if shared.is_dropping(region_id).await? {
                // A drop that did not finish: finish it, then create afresh.
                shared.purge_region_files(region_id).await?;
            }
            match shared
                .open_region(region_id, false, strata_request::RegionRole::Leader)
                .await?
            {
                Some(region) => {
                    let existing = region
                        .version_control
                        .current()
                        .version()
                        .metadata()
                        .clone();
                    if existing.columns() != request.metadata.columns() {
                        return Err(different_schema());
                    }
                    Ok(region)
                }
                None => {
                    shared
                        .create_region(request.metadata, request.options)
                        .await
                }
            }
        });
    }
}
