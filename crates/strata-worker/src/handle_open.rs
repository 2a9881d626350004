//! Open and create in the background: the manifest read or write, the WAL replay (with
//! its midway flushes) and a drop's leftover purge run on a task of their own, so the
//! worker keeps serving its other regions; the result comes back to the worker like a
//! flush result. While a region opens, its writes and DDLs wait in its gate and are
//! handled when the open ends — answered with the open's error if it fails; opens of one
//! region coalesce. At most `max_background_opens` opens do their work at once.

use std::future::Future;
use std::sync::Arc;

use strata_request::{OpenRequest, RegionId};
use tokio::task::JoinHandle;

use crate::error::{Result, WorkerError};
use crate::gate::Waiting;
use crate::handle_write::WriteOrigin;
use crate::in_flight::InFlight;
use crate::region::Region;
use crate::request::ReplyTx;
use crate::worker::RegionWorkerLoop;

/// A region being opened (or created) in the background (what waits for it is in the
/// region's gate).
pub(crate) struct Opening {
    /// Callers of the open (and of opens that coalesced into it).
    waiters: Vec<ReplyTx>,
    task: JoinHandle<()>,
    /// "open" or "create", for logs.
    kind: &'static str,
}

/// What a background open reports.
pub(crate) struct OpenResult {
    region_id: RegionId,
    result: Result<Arc<Region>>,
}

/// The regions a worker is opening.
pub(crate) type OpeningRegions = InFlight<Opening, OpenResult>;

impl OpeningRegions {
    /// Stops every open (the engine stops): tasks aborted, callers answered (what waited
    /// for them is answered with the worker's gates).
    pub(crate) fn abort_all(&mut self) {
        for opening in self.drain() {
            opening.task.abort();
            for waiter in opening.waiters {
                waiter.send(Err(WorkerError::WorkerStopped));
            }
        }
    }
}

impl RegionWorkerLoop {
    /// Opens the region in the background (writable, or read-only in a read-only group;
    /// as a follower when asked). Already open: `Ok` at once; already opening: answered
    /// with that open. A region whose drop began (its marker exists) is reported not found
    /// and — unless the group is read-only — its files are removed.
    pub(crate) fn handle_open(&mut self, request: OpenRequest, sender: ReplyTx) {
        let region_id = request.region_id;
        if self.regions.contains_key(&region_id) {
            sender.send(Ok(0));
            return;
        }
        if let Some(opening) = self.opening.get_mut(region_id) {
            opening.waiters.push(sender);
            return;
        }
        let shared = self.shared.clone();
        self.start_opening(region_id, "open", sender, async move {
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
        });
    }

    /// Runs `work` (an open or create of `region_id`) on a task: after a permit of the
    /// group's open limit, and after any running purge of the id (a drop's background
    /// purge must never delete the files of the region opened now).
    pub(crate) fn start_opening(
        &mut self,
        region_id: RegionId,
        kind: &'static str,
        sender: ReplyTx,
        work: impl Future<Output = Result<Arc<Region>>> + Send + 'static,
    ) {
        let shared = self.shared.clone();
        let tx = self.opening.tx.clone();
        let task = tokio::spawn(async move {
            let permit = shared.open_permits.clone().acquire_owned().await;
            shared.listener.on_open_begin(region_id).await;
            shared.purges.wait(region_id).await;
            let result = match permit {
                Ok(_permit) => work.await,
                Err(_) => Err(WorkerError::WorkerStopped),
            };
            // The worker is gone when this fails (stopped): the region is dropped here.
            let _ = tx.send(OpenResult { region_id, result });
        });
        self.opening.insert(
            region_id,
            Opening {
                waiters: vec![sender],
                task,
                kind,
            },
        );
    }

    /// A background open ended: the region joins the worker (or the open failed), its
    /// callers are answered, then what waited for it is handled — or, if it failed,
    /// answered with its error.
    pub(crate) async fn handle_open_result(&mut self, result: OpenResult) {
        let OpenResult { region_id, result } = result;
        let Some(opening) = self.opening.remove(region_id) else {
            return;
        };
        let Waiting { writes, ddls } = self
            .gates
            .take(region_id, |gate| std::mem::take(&mut gate.background));
        match result {
            Ok(region) => {
                tracing::info!(%region_id, kind = opening.kind, "region opened");
                self.insert_region(region);
                for waiter in opening.waiters {
                    waiter.send(Ok(0));
                }
                // A replay can fill memtables past the flush threshold (a WAL bigger than
                // the budget after crashes, or a smaller budget than the last run's):
                // start flushing now, not only when the next write finds memory full.
                self.maybe_flush_worker();
                if !writes.is_empty() {
                    self.handle_write_requests(writes, WriteOrigin::Incoming)
                        .await;
                }
            }
            Err(error) => {
                tracing::warn!(%region_id, kind = opening.kind, %error, "region open failed");
                for waiter in opening.waiters {
                    waiter.send(Err(error.clone()));
                }
                for write in writes {
                    write.fail(error.clone());
                }
            }
        }
        // DDLs get their own answer from the state the open left (a close of a region
        // that failed to open is `Ok`, a flush of it `RegionNotFound`, a create tries).
        for ddl in ddls {
            self.handle_ddl(ddl).await;
        }
    }
}
