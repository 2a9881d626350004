//! [`RegionWorkerLoop`]: the task that owns a set of regions. All mutation of a region's
//! state happens here; background jobs only report back.
//!
//! Each iteration waits on three sources — the request channel, the shared "memory
//! released" notification, and the periodic timer from the injected clock — then takes up
//! to `worker_request_batch_size` requests and handles them in a fixed order: background
//! results first, then every write of the batch, then the DDLs. The `handle_*` files hold
//! one request kind each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opendal::Operator;
use rand::{RngExt, SeedableRng};
use strata_buffer::WriteBufferManagerRef;
use strata_flush::{FlushNotify, FlushScheduler};
use strata_request::{DdlRequest, RegionId};
use strata_scheduler::{ClockRef, SchedulerRef};
use tokio::sync::{mpsc, watch};

use crate::config::WorkerConfig;
use crate::error::WorkerError;
use crate::gate::{CompactCaller, Gates};
use crate::handle_close::FlushBeforeClose;
use crate::handle_compaction::CompactionState;
use crate::handle_write::{RegionPressure, WriteOrigin};
use crate::listener::EventListener;
use crate::metrics::WorkerMetrics;
use crate::purges::Purges;
use crate::region::{Region, RegionMap, RegionState};
use crate::request::{ReplyTx, SenderDdlRequest, SenderWriteRequest, WorkerRequest};
use crate::stalled::StalledRequests;
use strata_wal::LogStoreRef;

/// How long automatic flushes leave a region alone after its flush failed.
pub(crate) const FLUSH_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// What every worker of a group shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: WorkerConfig,
    pub(crate) store: Operator,
    pub(crate) log_store: LogStoreRef,
    pub(crate) clock: ClockRef,
    pub(crate) write_buffer: WriteBufferManagerRef,
    /// The flush jobs' context, also used by replays that flush midway.
    pub(crate) flush_context: Arc<strata_flush::FlushContext>,
    /// Engine-wide pacing of writes between the slowdown threshold and the budget.
    pub(crate) delay: crate::delay::WriteDelay,
    pub(crate) listener: Arc<dyn EventListener>,
    pub(crate) metrics: WorkerMetrics,
    pub(crate) compaction_metrics: strata_compaction::CompactionMetrics,
    pub(crate) regions: RegionMap,
    pub(crate) purge_pool: SchedulerRef,
    /// Running purges of dropped regions' files, which a create or open of the same id
    /// waits for.
    pub(crate) purges: Purges,
    /// Background opens and creates doing their work at once, across the group.
    pub(crate) open_permits: Arc<tokio::sync::Semaphore>,
}

/// The flush side of a worker: its scheduler and the channel its jobs report on.
pub(crate) struct FlushState {
    pub(crate) scheduler: FlushScheduler,
    pub(crate) results: mpsc::UnboundedReceiver<FlushNotify>,
}

/// One worker's loop and state.
pub(crate) struct RegionWorkerLoop {
    pub(crate) name: String,
    pub(crate) shared: Arc<Shared>,
    /// This worker's regions (also in the shared map).
    pub(crate) regions: HashMap<RegionId, Arc<Region>>,
    pub(crate) flush: FlushState,
    pub(crate) compaction: CompactionState,
    pub(crate) stalled: StalledRequests,
    /// Writes paced by the slowdown, waiting for their time.
    pub(crate) delayed: crate::delay::DelayedRequests,
    /// Regions being opened or created in the background, and what waits for them.
    pub(crate) opening: crate::handle_open::OpeningRegions,
    /// Regions with a change (alter, truncate, drop, role…) in flight.
    pub(crate) changing: crate::changes::ChangingRegions,
    /// Every request that waits on one of this worker's regions, and why.
    pub(crate) gates: Gates,
    receiver: mpsc::Receiver<WorkerRequest>,
    released: watch::Receiver<u64>,
    /// When the periodic flush and compaction check runs next (clock milliseconds).
    pub(crate) next_periodic_check: i64,
}

/// Requests taken in one iteration, by kind.
#[derive(Default)]
struct Batch {
    writes: Vec<SenderWriteRequest>,
    ddls: Vec<SenderDdlRequest>,
    stop: bool,
}

impl Batch {
    fn push(&mut self, request: WorkerRequest, shared: &Shared) {
        match request {
            WorkerRequest::Write(write, sent) => {
                shared.metrics.waited(shared.clock.elapsed(sent));
                self.writes.push(write);
            }
            WorkerRequest::Ddl(ddl, sent) => {
                shared.metrics.waited(shared.clock.elapsed(sent));
                self.ddls.push(ddl);
            }
            WorkerRequest::Stop => self.stop = true,
        }
    }

    fn len(&self) -> usize {
        self.writes.len() + self.ddls.len()
    }
}

impl RegionWorkerLoop {
    pub(crate) fn new(
        id: usize,
        shared: Arc<Shared>,
        scheduler: FlushScheduler,
        results: mpsc::UnboundedReceiver<FlushNotify>,
        compaction: CompactionState,
        receiver: mpsc::Receiver<WorkerRequest>,
    ) -> Self {
        let max_delay = u64::try_from(shared.config.max_initial_check_delay.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(shared.config.seed ^ id as u64);
        let delay = i64::try_from(rng.random_range(0..max_delay)).unwrap_or(0);
        let next_periodic_check = shared.clock.now_millis().saturating_add(delay);
        let released = shared.write_buffer.notifier().subscribe();
        Self {
            name: id.to_string(),
            shared,
            regions: HashMap::new(),
            flush: FlushState { scheduler, results },
            compaction,
            stalled: StalledRequests::default(),
            delayed: crate::delay::DelayedRequests::default(),
            opening: crate::handle_open::OpeningRegions::default(),
            changing: crate::changes::ChangingRegions::default(),
            gates: Gates::default(),
            receiver,
            released,
            next_periodic_check,
        }
    }

    /// Runs until a `Stop` request arrives or every sender is gone.
    pub(crate) async fn run(mut self) {
        tracing::debug!(worker = self.name, "region worker started");
        loop {
            let mut batch = Batch::default();
            let wait = {
                let now = self.shared.clock.now_millis();
                let next = self
                    .next_flush_retry()
                    .map_or(self.next_periodic_check, |retry| {
                        retry.min(self.next_periodic_check)
                    });
                let millis = next.saturating_sub(now).max(0);
                let periodic = self.shared.clock.now()
                    + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
                // Or until the first paced write is due: a deadline, so a clock that moves
                // on meanwhile cannot push the wake-up later.
                let deadline = self
                    .delayed
                    .next_release()
                    .map_or(periodic, |release| release.min(periodic));
                self.shared.clock.sleep_until(deadline)
            };
            tokio::select! {
                biased;
                Some(result) = self.flush.results.recv() => {
                    self.handle_flush_result(result).await;
                    continue;
                }
                Some(result) = self.compaction.results.recv() => {
                    self.handle_compaction_result(result).await;
                    continue;
                }
                Some(result) = self.opening.results.recv() => {
                    self.handle_open_result(result).await;
                    continue;
                }
                Some(result) = self.changing.results.recv() => {
                    self.handle_change_result(result).await;
                    continue;
                }
                request = self.receiver.recv() => match request {
                    Some(request) => batch.push(request, &self.shared),
                    None => break,
                },
                Ok(()) = self.released.changed() => {
                    // Another worker's flush (or a reader) released memory: this worker may
                    // hold big idle memtables, and its stalled writes may proceed.
                    self.released.borrow_and_update();
                    self.maybe_flush_worker();
                    self.handle_stalled_requests().await;
                    continue;
                }
                () = wait => {
                    self.maybe_flush_worker();
                    self.handle_periodical_tasks();
                    self.release_delayed().await;
                    continue;
                }
            }
            if self.released.has_changed().unwrap_or(false) {
                self.released.borrow_and_update();
                self.handle_stalled_requests().await;
            }
            while !batch.stop && batch.len() < self.shared.config.worker_request_batch_size {
                match self.receiver.try_recv() {
                    Ok(request) => batch.push(request, &self.shared),
                    Err(_) => break,
                }
            }
            self.shared.listener.on_recv_requests(batch.len());
            while let Ok(result) = self.flush.results.try_recv() {
                self.handle_flush_result(result).await;
            }
            while let Ok(result) = self.compaction.results.try_recv() {
                self.handle_compaction_result(result).await;
            }
            // Paced writes that are due go first (a worker busy with requests may not get
            // to its timer), then the new ones (behind any still waiting).
            self.release_delayed().await;
            self.handle_write_requests(std::mem::take(&mut batch.writes), WriteOrigin::Incoming)
                .await;
            for ddl in std::mem::take(&mut batch.ddls) {
                self.handle_ddl(ddl).await;
            }
            if batch.stop {
                break;
            }
            self.handle_periodical_tasks();
        }
        self.clean().await;
    }

    /// Answers everything still pending and forgets the regions. Memtables are not
    /// flushed: the WAL holds their rows.
    async fn clean(&mut self) {
        // Background results that arrived before the stop are still applied (the WAL
        // can then be obsoleted); the flush pool was stopped first, so no more will come.
        while let Ok(result) = self.flush.results.try_recv() {
            self.handle_flush_result(result).await;
        }
        while let Ok(result) = self.compaction.results.try_recv() {
            self.handle_compaction_result(result).await;
        }
        self.compaction.scheduler.clear();
        self.receiver.close();
        while let Ok(request) = self.receiver.try_recv() {
            match request {
                WorkerRequest::Write(write, _) => write.fail(WorkerError::WorkerStopped),
                WorkerRequest::Ddl(ddl, _) => ddl.sender.send(Err(WorkerError::WorkerStopped)),
                WorkerRequest::Stop => {}
            }
        }
        for write in self.stalled.take_all() {
            write.fail(WorkerError::WorkerStopped);
        }
        for write in self.delayed.take_all() {
            write.fail(WorkerError::WorkerStopped);
        }
        // Opens still running are abandoned (an open commits nothing half-way: its
        // midway flushes are whole manifest versions); everyone waiting is answered.
        self.opening.abort_all();
        self.changing.abort_all();
        // Everything still waiting on a region is answered.
        for (region_id, gate) in self.gates.drain() {
            gate.stop(region_id);
        }
        for (region_id, region) in self.regions.drain() {
            region.committer.mark_closed();
            self.shared.regions.remove(region_id);
        }
        self.update_gauges();
        tracing::debug!(worker = self.name, "region worker stopped");
    }

    pub(crate) async fn handle_ddl(&mut self, ddl: SenderDdlRequest) {
        let region_id = ddl.request.region_id();
        // A region with a change in flight: its DDLs wait for it; so do those of a region
        // being opened (but more opens, which coalesce).
        if self.changing.contains(region_id)
            || (!matches!(ddl.request, DdlRequest::Open(_)) && self.opening.contains(region_id))
        {
            self.gates.of(region_id).background.ddls.push(ddl);
            return;
        }
        let SenderDdlRequest {
            request,
            sender,
            compacted,
        } = ddl;
        match request {
            DdlRequest::Create(request) => self.handle_create(request, sender),
            DdlRequest::Open(request) => self.handle_open(request, sender),
            DdlRequest::Close(request) => {
                self.handle_close(request, sender, FlushBeforeClose::NotWaited)
                    .await;
            }
            DdlRequest::Drop(request) => self.handle_drop(request, sender),
            DdlRequest::Alter(request) => self.handle_alter(request, sender),
            DdlRequest::Flush(request) => self.handle_flush_request(request, sender),
            DdlRequest::Truncate(request) => self.handle_truncate(request, sender),
            DdlRequest::SetWritable(request) => self.handle_set_writable(request, sender),
            DdlRequest::Compact(request) => self.handle_compact_request(
                request,
                CompactCaller {
                    reply: sender,
                    stats: compacted,
                },
            ),
            DdlRequest::SetRole(request) => self.handle_set_role(request, sender),
            DdlRequest::Sync(request) => self.handle_sync(request, sender),
        }
    }

    /// The region, if it is open and in one of the `allowed` states; otherwise the caller
    /// is answered (`RegionNotFound`, or `RegionState` naming `operation`) and `None`
    /// comes back.
    pub(crate) fn region_in_state(
        &self,
        region_id: RegionId,
        allowed: &[RegionState],
        operation: &'static str,
        sender: ReplyTx,
    ) -> Option<(Arc<Region>, ReplyTx)> {
        let Some(region) = self.regions.get(&region_id).cloned() else {
            sender.send(Err(WorkerError::RegionNotFound { region_id }));
            return None;
        };
        let state = region.state();
        if !allowed.contains(&state) {
            sender.send(Err(WorkerError::RegionState {
                region_id,
                state,
                operation,
            }));
            return None;
        }
        Some((region, sender))
    }

    /// Fences a lifecycle DDL behind the region's running flush, or behind its running
    /// compaction (which it cancels); gives it back when neither runs.
    pub(crate) fn fence_behind_flush(
        &mut self,
        region_id: RegionId,
        request: DdlRequest,
        sender: ReplyTx,
    ) -> Option<(DdlRequest, ReplyTx)> {
        let fenced = SenderDdlRequest::new(request, sender);
        if self.flush.scheduler.is_flush_requested(region_id) {
            self.gates.of(region_id).behind_flush.ddls.push(fenced);
            return None;
        }
        if self
            .compaction
            .scheduler
            .cancel(region_id, fenced.request.kind())
        {
            self.gates.of(region_id).behind_compaction.push(fenced);
            self.shared.listener.on_compaction_cancel(region_id);
            return None;
        }
        Some((fenced.request, fenced.sender))
    }

    /// Retries every stalled write; retried writes are not stalled again.
    pub(crate) async fn handle_stalled_requests(&mut self) {
        if self.stalled.is_empty() {
            return;
        }
        // Writes of a region still over its own write-buffer limit keep waiting.
        let mut retry = Vec::new();
        for request in self.stalled.take_all() {
            let region_id = request.request.region_id;
            match self.region_pressure(region_id) {
                RegionPressure::Stall => self.stalled.push(request),
                RegionPressure::Fine | RegionPressure::Reject { .. } => retry.push(request),
            }
        }
        self.update_gauges();
        self.handle_write_requests(retry, WriteOrigin::Retried)
            .await;
    }

    /// Hands the paced writes that are due to the write path (they may still stall, but
    /// are not paced again).
    pub(crate) async fn release_delayed(&mut self) {
        if self.delayed.is_empty() {
            return;
        }
        let due = self.delayed.take_due(self.shared.clock.now());
        if !due.is_empty() {
            self.handle_write_requests(due, WriteOrigin::Delayed).await;
        }
    }

    /// Wakes every worker: memory is being released.
    pub(crate) fn notify_group(&mut self) {
        self.shared.write_buffer.notifier().notify();
        self.released.borrow_and_update();
    }

    pub(crate) fn insert_region(&mut self, region: Arc<Region>) {
        self.shared.regions.insert(region.clone());
        self.regions.insert(region.region_id(), region);
        self.update_gauges();
        self.update_file_gauges();
    }

    pub(crate) fn remove_region(&mut self, region_id: RegionId) -> Option<Arc<Region>> {
        let region = self.regions.remove(&region_id);
        if region.is_some() {
            self.shared.regions.remove(region_id);
        }
        self.update_gauges();
        self.update_file_gauges();
        region
    }

    pub(crate) fn update_gauges(&self) {
        let metrics = &self.shared.metrics;
        metrics.set_stalling(&self.name, self.stalled.len());
        metrics.set_regions(&self.name, self.regions.len());
    }

    /// Sets the files-per-level gauge of this worker's regions. Called where files come
    /// and go (flush and compaction results, regions opened, closed, dropped, truncated),
    /// not from the write path.
    pub(crate) fn update_file_gauges(&self) {
        let mut per_level = [0usize; strata_storage::MAX_LEVEL];
        for region in self.regions.values() {
            let version = region.version_control.current().version().clone();
            for (level, files) in version.files().iter().enumerate() {
                per_level[level] += files.len();
            }
        }
        for (level, count) in per_level.into_iter().enumerate() {
            self.shared.compaction_metrics.set_files(
                &self.name,
                u8::try_from(level).unwrap_or(u8::MAX),
                count,
            );
        }
    }
}
