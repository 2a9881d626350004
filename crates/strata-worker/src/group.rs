//! [`WorkerGroup`]: starts the workers and background pools, routes requests, stops
//! everything in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opendal::Operator;
use prometheus::Registry;
use strata_buffer::{ReleaseNotifier, WriteBufferManagerImpl, WriteBufferManagerRef};
use strata_compaction::{
    CompactionContext, CompactionListener, CompactionMetrics, CompactionScheduler, CompactionStats,
};
use strata_flush::{FlushContext, FlushListener, FlushMetrics, FlushScheduler};
use strata_request::{
    AffectedRows, CompactRequest, DdlRequest, RegionId, WriteRequest, reply_channel,
};
use strata_scheduler::{ClockRef, LocalScheduler, SchedulerRef};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::config::WorkerConfig;
use crate::error::{Result, WorkerError};
use crate::listener::EventListener;
use crate::metrics::WorkerMetrics;
use crate::region::RegionMap;
use crate::request::{SenderDdlRequest, SenderWriteRequest, StatsTx, WorkerRequest};
use crate::worker::{RegionWorkerLoop, Shared};
use strata_wal::LogStoreRef;

/// Everything a worker group is built from.
pub struct WorkerGroupParts {
    /// Settings.
    pub config: WorkerConfig,
    /// Where SSTs and manifests live.
    pub store: Operator,
    /// The WAL.
    pub log_store: LogStoreRef,
    /// Time.
    pub clock: ClockRef,
    /// Where metrics are registered (a private registry if `None`).
    pub registry: Option<Registry>,
    /// Test hooks.
    pub listener: Arc<dyn EventListener>,
    /// A write-buffer manager to use instead of the default one built from the config
    /// (tests use it to force flushes and stalls); it carries its release notifier.
    pub write_buffer: Option<WriteBufferManagerRef>,
    /// The pool flush jobs run on, instead of one sized 2 × `max_background_flushes`
    /// (their SST writes are bounded by `max_background_flushes` either way).
    pub flush_pool: Option<SchedulerRef>,
    /// The pool file deletions run on, instead of one sized `max_background_purges`.
    pub purge_pool: Option<SchedulerRef>,
    /// The pool compaction jobs run on, instead of one sized `max_background_compactions`.
    pub compaction_pool: Option<SchedulerRef>,
}

/// A worker's handle.
struct RegionWorker {
    sender: mpsc::Sender<WorkerRequest>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

/// The region workers of one engine. Each region is served by one worker for life,
/// chosen from its id.
pub struct WorkerGroup {
    workers: Vec<RegionWorker>,
    shared: Arc<Shared>,
    flush_pool: SchedulerRef,
    compaction_pool: SchedulerRef,
    running: AtomicBool,
}

impl std::fmt::Debug for WorkerGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerGroup")
            .field("workers", &self.workers.len())
            .field("regions", &self.shared.regions.len())
            .finish_non_exhaustive()
    }
}

/// Lets the worker listener hold flush jobs (tests).
#[derive(Debug)]
struct FlushHook(Arc<dyn EventListener>);

#[async_trait::async_trait]
impl FlushListener for FlushHook {
    async fn on_flush_begin(&self, region_id: RegionId) {
        self.0.on_flush_begin(region_id).await;
    }
}

/// Lets the worker listener hold compaction jobs (tests).
#[derive(Debug)]
struct CompactionHook(Arc<dyn EventListener>);

#[async_trait::async_trait]
impl CompactionListener for CompactionHook {
    async fn on_compaction_begin(&self, region_id: RegionId) {
        self.0.on_compaction_begin(region_id).await;
    }

    async fn on_compaction_written(&self, region_id: RegionId) {
        self.0.on_compaction_written(region_id).await;
    }
}

fn start_error(reason: impl std::fmt::Display) -> WorkerError {
    WorkerError::Start {
        reason: reason.to_string(),
    }
}

impl WorkerGroup {
    /// Starts the pools and `config.num_workers` workers. Needs a tokio runtime.
    pub fn start(parts: WorkerGroupParts) -> Result<Self> {
        let config = parts.config;
        let open_permits = config.max_background_opens.max(1);
        let registry = parts.registry.unwrap_or_default();
        let write_buffer = match parts.write_buffer {
            Some(custom) => custom,
            None => {
                let notifier = ReleaseNotifier::new();
                let manager = WriteBufferManagerImpl::new(
                    config.global_write_buffer_size,
                    config.global_write_buffer_reject_size,
                    notifier.clone(),
                )
                .map_err(start_error)?
                .with_metrics(&registry)
                .map_err(start_error)?;
                Arc::new(manager) as WriteBufferManagerRef
            }
        };
        let flush_pool: SchedulerRef = match parts.flush_pool {
            Some(pool) => pool,
            None => Arc::new(
                // Twice the writers: a job committing (manifest I/O) lets the next one
                // write; `FlushContext::write_limit` bounds the writes themselves.
                LocalScheduler::new("strata-flush", 2 * config.max_background_flushes.max(1))
                    .map_err(start_error)?,
            ),
        };
        let purge_pool: SchedulerRef = match parts.purge_pool {
            Some(pool) => pool,
            None => Arc::new(
                LocalScheduler::new("strata-purge", config.max_background_purges.max(1))
                    .map_err(start_error)?,
            ),
        };
        let compaction_pool: SchedulerRef = match parts.compaction_pool {
            Some(pool) => pool,
            None => Arc::new(
                LocalScheduler::new(
                    "strata-compaction",
                    config.max_background_compactions.max(1),
                )
                .map_err(start_error)?,
            ),
        };
        let compaction_metrics = CompactionMetrics::register(&registry).map_err(start_error)?;
        let compaction_context = Arc::new(
            CompactionContext::new(
                parts.store.clone(),
                config.sst.clone(),
                config.compaction_picker.clone(),
            )
            .with_metrics(compaction_metrics.clone())
            .with_listener(Arc::new(CompactionHook(parts.listener.clone())))
            .with_clock(parts.clock.clone()),
        );
        let flush_context = Arc::new(
            FlushContext::new(
                parts.store.clone(),
                config.sst.clone(),
                config.max_background_flushes.max(1),
            )
            .with_metrics(FlushMetrics::register(&registry).map_err(start_error)?)
            .with_listener(Arc::new(FlushHook(parts.listener.clone())))
            .with_clock(parts.clock.clone()),
        );
        let num_workers = config.num_workers.max(1);
        let channel_size = config.worker_channel_size.max(1);
        let delay = crate::delay::WriteDelay::new(config.delayed_write_rate);
        let shared = Arc::new(Shared {
            metrics: WorkerMetrics::register(&registry).map_err(start_error)?,
            compaction_metrics,
            config,
            store: parts.store,
            log_store: parts.log_store,
            clock: parts.clock,
            write_buffer,
            flush_context: flush_context.clone(),
            delay,
            listener: parts.listener,
            regions: RegionMap::default(),
            purge_pool,
            purges: crate::purges::Purges::default(),
            open_permits: Arc::new(tokio::sync::Semaphore::new(open_permits)),
        });
        let workers = (0..num_workers)
            .map(|id| {
                let (sender, receiver) = mpsc::channel(channel_size);
                let (results_tx, results_rx) = mpsc::unbounded_channel();
                let scheduler =
                    FlushScheduler::new(flush_pool.clone(), flush_context.clone(), results_tx);
                let (compaction_tx, compaction_rx) = mpsc::unbounded_channel();
                let compaction = crate::handle_compaction::CompactionState::new(
                    CompactionScheduler::new(
                        compaction_pool.clone(),
                        compaction_context.clone(),
                        compaction_tx,
                    ),
                    compaction_rx,
                );
                let worker = RegionWorkerLoop::new(
                    id,
                    shared.clone(),
                    scheduler,
                    results_rx,
                    compaction,
                    receiver,
                );
                RegionWorker {
                    sender,
                    handle: Mutex::new(Some(tokio::spawn(worker.run()))),
                }
            })
            .collect();
        Ok(Self {
            workers,
            shared,
            flush_pool,
            compaction_pool,
            running: AtomicBool::new(true),
        })
    }

    /// The worker serving `region_id`: fixed for the region's life.
    fn worker(&self, region_id: RegionId) -> &RegionWorker {
        let n = self.workers.len() as u64;
        let index =
            (u64::from(region_id.table_id()) % n + u64::from(region_id.region_number()) % n) % n;
        // `index < n == workers.len()`.
        &self.workers[usize::try_from(index).unwrap_or(0)]
    }

    async fn submit(&self, region_id: RegionId, request: WorkerRequest) -> Result<()> {
        if !self.running.load(Ordering::Acquire) {
            return Err(WorkerError::WorkerStopped);
        }
        self.worker(region_id)
            .sender
            .send(request)
            .await
            .map_err(|_| WorkerError::WorkerStopped)
    }

    /// Writes rows; resolves once they are in the WAL and visible to scans.
    pub async fn write(&self, request: WriteRequest) -> Result<AffectedRows> {
        if self.shared.config.read_only {
            return Err(WorkerError::ReadOnly { operation: "write" });
        }
        let (sender, reply) = reply_channel();
        let region_id = request.region_id;
        let write = SenderWriteRequest::new(request, sender);
        self.submit(
            region_id,
            WorkerRequest::Write(write, self.shared.clock.now()),
        )
        .await?;
        reply.await
    }

    /// Runs a DDL on the region's worker. A read-only group runs only open and close.
    pub async fn ddl(&self, request: DdlRequest) -> Result<AffectedRows> {
        self.run_ddl(request, None).await
    }

    /// Compacts a region now ([`DdlRequest::Compact`]) and says what the compaction it
    /// waited for did: nothing (empty stats) when there was nothing to compact.
    pub async fn compact(&self, region_id: RegionId) -> Result<CompactionStats> {
        let (stats, compacted) = tokio::sync::oneshot::channel();
        let request = DdlRequest::Compact(CompactRequest::new(region_id));
        self.run_ddl(request, Some(stats)).await?;
        // The worker sends the stats before it answers the request.
        compacted.await.map_err(|_| WorkerError::WorkerStopped)
    }

    async fn run_ddl(
        &self,
        request: DdlRequest,
        compacted: Option<StatsTx>,
    ) -> Result<AffectedRows> {
        if self.shared.config.read_only {
            let operation = match &request {
                DdlRequest::Open(_) | DdlRequest::Close(_) | DdlRequest::Sync(_) => None,
                DdlRequest::SetRole(_) => Some("change a region's role"),
                DdlRequest::Create(_) => Some("create a region"),
                DdlRequest::Drop(_) => Some("drop a region"),
                DdlRequest::Alter(_) => Some("alter a region"),
                DdlRequest::Flush(_) => Some("flush a region"),
                DdlRequest::Compact(_) => Some("compact a region"),
                DdlRequest::Truncate(_) => Some("truncate a region"),
                DdlRequest::SetWritable(_) => Some("change whether a region is writable"),
            };
            if let Some(operation) = operation {
                return Err(WorkerError::ReadOnly { operation });
            }
        }
        let (sender, reply) = reply_channel();
        let region_id = request.region_id();
        let ddl = SenderDdlRequest {
            request,
            sender,
            compacted,
        };
        self.submit(region_id, WorkerRequest::Ddl(ddl, self.shared.clock.now()))
            .await?;
        reply.await
    }

    /// The open regions (readers look regions up here without a worker round trip).
    pub fn regions(&self) -> &RegionMap {
        &self.shared.regions
    }

    /// Whether the group never changes anything ([`WorkerConfig::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.shared.config.read_only
    }

    /// The object store the regions live on.
    pub fn store(&self) -> &Operator {
        &self.shared.store
    }

    /// Memtable bytes across all regions.
    pub fn memory_usage(&self) -> usize {
        self.shared.write_buffer.memory_usage()
    }

    /// Stops the group: running flush and compaction jobs finish and are applied,
    /// background deletions finish, then each worker answers everything still pending with `WorkerStopped`
    /// and exits. Memtables are not flushed (the WAL holds their rows). Idempotent.
    pub async fn stop(&self) -> Result<()> {
        if self.running.swap(false, Ordering::AcqRel) {
            if let Err(error) = self.flush_pool.stop(true).await {
                tracing::warn!(%error, "flush pool stop");
            }
            if let Err(error) = self.compaction_pool.stop(true).await {
                tracing::warn!(%error, "compaction pool stop");
            }
            if let Err(error) = self.shared.purge_pool.stop(true).await {
                tracing::warn!(%error, "purge pool stop");
            }
        }
        for worker in &self.workers {
            let handle = worker.handle.lock().await.take();
            if let Some(handle) = handle {
                let _ = worker.sender.send(WorkerRequest::Stop).await;
                handle.await.map_err(start_error)?;
            }
        }
        Ok(())
    }
}
