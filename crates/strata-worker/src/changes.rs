//! Changes of an open region in the background: alter, truncate, drop, role changes,
//! writability and follower syncs do their I/O — waiting for the manifest lock, the
//! manifest write or read, the drop marker, the WAL namespace — on a task of their own,
//! like opens, so the worker keeps serving its other regions. The task reports a
//! [`Change`]; the worker applies it to the region's in-memory state and answers.
//!
//! While a change runs, the region's writes and DDLs wait in its gate, in order, and no
//! flush or compaction starts for it (a flush that froze rows a truncate is
//! removing would bring them back); they are handled once the change is applied. One
//! change of a region runs at a time.

use std::future::Future;
use std::sync::Arc;

use strata_flush::FlushError;
use strata_request::{RegionId, RegionMetadata, RegionOptions};
use tokio::task::JoinHandle;

use crate::error::{Result, WorkerError};
use crate::gate::Waiting;
use crate::handle_write::WriteOrigin;
use crate::in_flight::InFlight;
use crate::region::{Region, RegionState};
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

/// What a change's task did, for the worker to apply.
pub(crate) enum Change {
    /// The truncation point is in the manifest (and the WAL obsoleted up to it).
    Truncated { entry_id: u64, sequence: u64 },
    /// The new schema and options are in the manifest.
    Altered {
        metadata: RegionMetadata,
        options: RegionOptions,
        schema_change: bool,
    },
    /// The drop marker is written (the drop is final) and the WAL namespace dropped.
    Dropped,
    /// The region's state became `target` under the manifest lock (a downgrade, a
    /// follower, read-only or writable again).
    StateSet {
        target: RegionState,
        not_leader: bool,
    },
    /// A follower took the region over: a new leader epoch is committed and the version
    /// installed.
    Upgraded,
    /// A follower's version caught up with the manifest (`changed`: a new one installed).
    Synced { changed: bool },
}

/// A region with a change in flight (what waits for it is in the region's gate).
pub(crate) struct Changing {
    /// The change's caller.
    sender: ReplyTx,
    task: JoinHandle<()>,
    /// "alter", "truncate", …, for logs.
    kind: &'static str,
}

/// What a change's task reports.
pub(crate) struct ChangeResult {
    region_id: RegionId,
    result: Result<Change>,
}

/// The regions of a worker with a change in flight.
pub(crate) type ChangingRegions = InFlight<Changing, ChangeResult>;

impl ChangingRegions {
    /// Stops every change (the engine stops): tasks aborted, callers answered
    /// `WorkerStopped` — a change may or may not have reached the manifest, as in a crash.
    /// (What waited for them is answered with the worker's gates.)
    pub(crate) fn abort_all(&mut self) {
        for changing in self.drain() {
            changing.task.abort();
            changing.sender.send(Err(WorkerError::WorkerStopped));
        }
    }
}

impl RegionWorkerLoop {
    /// Runs `work`, the I/O of a `kind` change of `region_id`, on a task; the region's
    /// requests wait until the worker has applied its outcome.
    pub(crate) fn start_change(
        &mut self,
        region_id: RegionId,
        kind: &'static str,
        sender: ReplyTx,
        work: impl Future<Output = Result<Change>> + Send + 'static,
    ) {
        debug_assert!(!self.changing.contains(region_id), "one change at a time");
        let shared = self.shared.clone();
        let tx = self.changing.tx.clone();
        let task = tokio::spawn(async move {
            shared.listener.on_change_begin(region_id, kind).await;
            let result = work.await;
            // The worker is gone when this fails (stopped).
            let _ = tx.send(ChangeResult { region_id, result });
        });
        self.changing
            .insert(region_id, Changing { sender, task, kind });
    }

    /// A change's task ended: its outcome is applied and its caller answered, then what
    /// waited for it is handled (writes first, then DDLs, as within a batch).
    pub(crate) async fn handle_change_result(&mut self, result: ChangeResult) {
        let ChangeResult { region_id, result } = result;
        let Some(changing) = self.changing.remove(region_id) else {
            return;
        };
        let answer = match (result, self.regions.get(&region_id).cloned()) {
            (Ok(change), Some(region)) => self.apply_change(&region, change),
            // Nothing removes a region while it changes (its DDLs wait here).
            (Ok(_), None) => Err(WorkerError::RegionNotFound { region_id }),
            (Err(error), _) => Err(error),
        };
        match &answer {
            Ok(_) => tracing::info!(%region_id, kind = changing.kind, "region changed"),
            Err(error) => {
                tracing::warn!(%region_id, kind = changing.kind, %error, "region change failed");
                self.after_failed_commit(region_id, error.kind(), &error);
            }
        }
        changing.sender.send(answer);
        self.shared.listener.on_change_end(region_id, changing.kind);
        let Waiting { writes, ddls } = self
            .gates
            .take(region_id, |gate| std::mem::take(&mut gate.background));
        if !writes.is_empty() {
            self.handle_write_requests(writes, WriteOrigin::Incoming)
                .await;
        }
        for ddl in ddls {
            self.handle_ddl(ddl).await;
        }
    }

    /// Applies a change's outcome to the worker's state; the caller's answer.
    fn apply_change(&mut self, region: &Arc<Region>, change: Change) -> Result<usize> {
        let region_id = region.region_id();
        match change {
            Change::Truncated { entry_id, sequence } => {
                // The old files are deleted on the purge pool once no scan holds them.
                region.version_control.truncate(entry_id, sequence);
                self.on_region_gone_for_flush(region_id, FlushError::RegionTruncated { region_id });
                self.notify_group();
                self.update_file_gauges();
            }
            Change::Altered {
                metadata,
                options,
                schema_change,
            } => {
                if schema_change {
                    region
                        .version_control
                        .alter_schema(metadata, options)
                        .map_err(|source| WorkerError::Storage {
                            region_id,
                            source: Arc::new(source),
                        })?;
                } else {
                    region.version_control.set_options(options);
                }
            }
            Change::Dropped => self.finish_drop(region),
            Change::StateSet { target, not_leader } => {
                if not_leader {
                    self.fail_stalled_not_leader(region_id, target);
                } else if target == RegionState::ReadOnly {
                    self.stalled.fail_region(
                        region_id,
                        &WorkerError::RegionState {
                            region_id,
                            state: target,
                            operation: "write",
                        },
                    );
                    self.update_gauges();
                }
            }
            Change::Upgraded => self.update_file_gauges(),
            Change::Synced { changed } => {
                if changed {
                    self.update_file_gauges();
                }
            }
        }
        Ok(0)
    }
}
