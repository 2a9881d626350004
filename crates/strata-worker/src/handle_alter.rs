//! Alter: options at once; schema changes after a flush, with writes fenced meanwhile.

use strata_flush::FlushReason;
use strata_request::{AlterKind, AlterRequest, DdlRequest, RegionMetadata};
use strata_storage::RegionMetaAction;

use crate::changes::Change;
use crate::error::WorkerError;
use crate::region::RegionState;
use crate::request::{ReplyTx, SenderDdlRequest};
use crate::worker::RegionWorkerLoop;

impl RegionWorkerLoop {
    /// Applies an alter. Schema changes need empty memtables: with rows in memory the region
    /// is flushed first and the alter waits behind the flush (new writes wait behind the
    /// alter). The new schema is persisted in the manifest, in the background, before the
    /// worker uses it; writes that arrive meanwhile wait and are checked against it.
    pub(crate) fn handle_alter(&mut self, request: AlterRequest, sender: ReplyTx) {
        let region_id = request.region_id;
        let Some((region, sender)) =
            self.region_in_state(region_id, &[RegionState::Writable], "alter", sender)
        else {
            return;
        };
        let version = region.version_control.current().version().clone();
        let metadata = match new_metadata(version.metadata(), &request) {
            Ok(Some(metadata)) => metadata,
            Ok(None) => {
                // Already applied (a retried alter): nothing to do.
                sender.send(Ok(0));
                return;
            }
            Err(error) => {
                sender.send(Err(error));
                return;
            }
        };
        let options = match &request.kind {
            AlterKind::SetOptions { changes } => version.options().with_changes(changes),
            _ => version.options().clone(),
        };
        let schema_change = request.kind.changes_schema();
        if schema_change
            && (self.flush.scheduler.is_flush_requested(region_id)
                || !version.memtables().is_empty())
        {
            if !self.flush.scheduler.is_flush_requested(region_id) {
                self.schedule_flush(&region, FlushReason::Alter, None);
            }
            let ddl = SenderDdlRequest::new(DdlRequest::Alter(request), sender);
            if self.flush.scheduler.is_flush_requested(region_id) {
                self.gates.of(region_id).behind_flush.ddls.push(ddl);
            } else {
                // The flush could not be scheduled (engine stopping).
                ddl.sender.send(Err(WorkerError::WorkerStopped));
            }
            return;
        }
        self.start_change(region_id, "alter", sender, async move {
            let change = RegionMetaAction::Change {
                metadata: metadata.clone(),
                options: options.clone(),
            };
            region
                .committer
                .change(RegionState::Altering, change)
                .await?;
            Ok(Change::Altered {
                metadata,
                options,
                schema_change,
            })
        });
    }
}

/// The schema after `request`, `None` if it is already in place, or why it cannot apply.
fn new_metadata(
    current: &RegionMetadata,
    request: &AlterRequest,
) -> Result<Option<RegionMetadata>, WorkerError> {
    let region_id = request.region_id;
    let invalid = |reason: String| WorkerError::InvalidRequest { region_id, reason };
    match &request.kind {
        AlterKind::SetOptions { .. } => Ok(Some(current.clone())),
        AlterKind::AddColumns { columns } => {
            let applied = request.schema_version + 1 == current.schema_version()
                && columns.iter().all(|c| {
                    current
                        .columns()
                        .iter()
                        .any(|have| have.name == c.name && have.data_type == c.data_type)
                });
            if applied {
                return Ok(None);
            }
            current
                .add_columns(request.schema_version, columns)
                .map(Some)
                .map_err(|e| invalid(e.to_string()))
        }
        AlterKind::DropColumns { names } => {
            let applied = request.schema_version + 1 == current.schema_version()
                && names
                    .iter()
                    .all(|n| current.columns().iter().all(|have| &have.name != n));
            if applied {
                return Ok(None);
            }
            current
                .drop_columns(request.schema_version, names)
                .map(Some)
                .map_err(|e| invalid(e.to_string()))
        }
    }
}
