//! Test environment: an engine on a temp directory with a manual clock, a listener that
//! counts events and can hold flushes, a write-buffer manager whose flush and stall
//! decisions the test can force, and a fault-injecting object store.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType};
use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_buffer::testing::ForcedWriteBuffer;
use strata_buffer::{ReleaseNotifier, WriteBufferManagerImpl};
use strata_engine::{
    ColumnDataType, ColumnSchema, CreateRequest, Engine, EngineBuilder, EngineConfig,
    EventListener, Job, ManualClock, ObjectStoreConfig, RegionId, RegionMetadata,
    RegionMetadataBuilder, ScanRequest, Scheduler, SchedulerError, StopFuture, WriteRequest,
};
use strata_storage::testing::{FaultLayer, FaultPlan};
use tokio::sync::{Notify, Semaphore};

/// The watchdog for every wait: a hung engine fails the test instead of hanging CI.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test if it takes longer than the watchdog.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WATCHDOG, future).await {
        Ok(value) => value,
        Err(_) => panic!("watchdog: {what} did not finish within {WATCHDOG:?}"),
    }
}

/// Counts worker events; can hold flush jobs at their start.
#[derive(Debug)]
pub struct TestListener {
    pub flush_success: AtomicUsize,
    pub flush_failed: AtomicUsize,
    pub stalls: AtomicUsize,
    pub delays: AtomicUsize,
    /// The longest delay the slowdown gave a write so far, in microseconds.
    pub longest_delay_micros: AtomicUsize,
    pub later_drops: AtomicUsize,
    pub flush_begun: AtomicUsize,
    pub compactions_applied: AtomicUsize,
    pub compactions_failed: AtomicUsize,
    pub compactions_written: AtomicUsize,
    pub compactions_cancelled: AtomicUsize,
    pub opens_begun: AtomicUsize,
    pub changes_begun: AtomicUsize,
    pub changes_ended: AtomicUsize,
    /// Requests the workers took off their channels.
    pub requests_received: AtomicUsize,
    events: Notify,
    hold_flushes: AtomicBool,
    gate: Semaphore,
    hold_compactions: AtomicBool,
    compaction_gate: Semaphore,
    hold_opens: AtomicBool,
    open_gate: Semaphore,
    hold_changes: AtomicBool,
    change_gate: Semaphore,
}

impl Default for TestListener {
    fn default() -> Self {
        Self {
            flush_success: AtomicUsize::new(0),
            flush_failed: AtomicUsize::new(0),
            stalls: AtomicUsize::new(0),
            delays: AtomicUsize::new(0),
            longest_delay_micros: AtomicUsize::new(0),
            later_drops: AtomicUsize::new(0),
            flush_begun: AtomicUsize::new(0),
            compactions_applied: AtomicUsize::new(0),
            compactions_failed: AtomicUsize::new(0),
            compactions_written: AtomicUsize::new(0),
            compactions_cancelled: AtomicUsize::new(0),
            opens_begun: AtomicUsize::new(0),
            changes_begun: AtomicUsize::new(0),
            changes_ended: AtomicUsize::new(0),
            requests_received: AtomicUsize::new(0),
            events: Notify::new(),
            hold_flushes: AtomicBool::new(false),
            gate: Semaphore::new(0),
            hold_compactions: AtomicBool::new(false),
            compaction_gate: Semaphore::new(0),
            hold_opens: AtomicBool::new(false),
            open_gate: Semaphore::new(0),
            hold_changes: AtomicBool::new(false),
            change_gate: Semaphore::new(0),
        }
    }
}

/// The listener as installed in the engine.
#[derive(Debug)]
pub struct Installed(pub Arc<TestListener>);

impl TestListener {
    /// Flush jobs wait at their start until [`release_flushes`](Self::release_flushes).
    pub fn hold_flushes(&self) {
        self.hold_flushes.store(true, Ordering::SeqCst);
    }

    /// Lets one held flush job run.
    pub fn release_one_flush(&self) {
        self.gate.add_permits(1);
    }

    /// Lets held flush jobs (and later ones) run.
    pub fn release_flushes(&self) {
        self.hold_flushes.store(false, Ordering::SeqCst);
        self.gate.add_permits(1 << 20);
    }

    /// Compaction jobs wait after writing their outputs, before committing, until
    /// [`release_compactions`](Self::release_compactions).
    pub fn hold_compactions(&self) {
        self.hold_compactions.store(true, Ordering::SeqCst);
    }

    /// Lets held compaction jobs (and later ones) commit.
    pub fn release_compactions(&self) {
        self.hold_compactions.store(false, Ordering::SeqCst);
        self.compaction_gate.add_permits(1 << 20);
    }

    /// Background opens and creates wait at their start until
    /// [`release_opens`](Self::release_opens).
    pub fn hold_opens(&self) {
        self.open_gate.forget_permits(usize::MAX);
        self.hold_opens.store(true, Ordering::SeqCst);
    }

    /// Lets held opens (and later ones) run.
    pub fn release_opens(&self) {
        self.hold_opens.store(false, Ordering::SeqCst);
        self.open_gate.add_permits(1 << 20);
    }

    /// Background region changes (alter, truncate, drop, roles…) wait at their start
    /// until [`release_changes`](Self::release_changes).
    pub fn hold_changes(&self) {
        // Permits left by an earlier release must not let the next change through.
        self.change_gate.forget_permits(usize::MAX);
        self.hold_changes.store(true, Ordering::SeqCst);
    }

    /// Lets held changes (and later ones) run.
    pub fn release_changes(&self) {
        self.hold_changes.store(false, Ordering::SeqCst);
        self.change_gate.add_permits(1 << 20);
    }

    /// Waits until `counter(self) >= n`.
    pub async fn wait_for(&self, what: &str, n: usize, counter: impl Fn(&Self) -> usize) {
        within(what, async {
            loop {
                let notified = self.events.notified();
                if counter(self) >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    /// Waits until `condition` holds, re-checking after every listener event.
    pub async fn wait_until(&self, what: &str, condition: impl Fn() -> bool) {
        within(what, async {
            loop {
                let notified = self.events.notified();
                if condition() {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    fn bump(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.events.notify_waiters();
    }
}

/// Reads a counter.
pub fn count(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

#[strata_engine::async_trait]
impl EventListener for Installed {
    fn on_write_stall(&self) {
        self.0.bump(&self.0.stalls);
    }

    fn on_write_delay(&self, delay: std::time::Duration) {
        self.0.longest_delay_micros.fetch_max(
            usize::try_from(delay.as_micros()).unwrap_or(usize::MAX),
            Ordering::SeqCst,
        );
        self.0.bump(&self.0.delays);
    }

    async fn on_flush_begin(&self, _region_id: RegionId) {
        self.0.bump(&self.0.flush_begun);
        if self.0.hold_flushes.load(Ordering::SeqCst) {
            // Each release admits exactly one job: the permit is consumed,
            // not handed back for the next held job to take.
            if let Ok(permit) = self.0.gate.acquire().await {
                permit.forget();
            }
        }
    }

    fn on_flush_success(&self, _region_id: RegionId) {
        self.0.bump(&self.0.flush_success);
    }

    fn on_flush_failed(&self, _region_id: RegionId) {
        self.0.bump(&self.0.flush_failed);
    }

    async fn on_compaction_written(&self, _region_id: RegionId) {
        self.0.bump(&self.0.compactions_written);
        if self.0.hold_compactions.load(Ordering::SeqCst)
            && let Ok(permit) = self.0.compaction_gate.acquire().await
        {
            permit.forget();
        }
    }

    async fn on_open_begin(&self, _region_id: RegionId) {
        self.0.bump(&self.0.opens_begun);
        if self.0.hold_opens.load(Ordering::SeqCst)
            && let Ok(permit) = self.0.open_gate.acquire().await
        {
            permit.forget();
        }
    }

    fn on_recv_requests(&self, requests: usize) {
        self.0
            .requests_received
            .fetch_add(requests, Ordering::SeqCst);
        self.0.events.notify_waiters();
    }

    async fn on_change_begin(&self, _region_id: RegionId, _kind: &'static str) {
        self.0.bump(&self.0.changes_begun);
        if self.0.hold_changes.load(Ordering::SeqCst)
            && let Ok(permit) = self.0.change_gate.acquire().await
        {
            permit.forget();
        }
    }

    fn on_change_end(&self, _region_id: RegionId, _kind: &'static str) {
        self.0.bump(&self.0.changes_ended);
    }

    fn on_compaction_cancel(&self, _region_id: RegionId) {
        self.0.bump(&self.0.compactions_cancelled);
    }

    fn on_compaction_end(&self, _region_id: RegionId, applied: bool) {
        if applied {
            self.0.bump(&self.0.compactions_applied);
        } else {
            self.0.bump(&self.0.compactions_failed);
        }
    }

    fn on_later_drop_end(&self, _region_id: RegionId, removed: bool) {
        assert!(removed, "later drop failed");
        self.0.bump(&self.0.later_drops);
    }
}

/// One test's world; engines built from it share the directory, clock and listener.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub listener: Arc<TestListener>,
    pub buffer: Arc<ForcedWriteBuffer>,
    pub notifier: ReleaseNotifier,
    pub faults: Arc<FaultPlan>,
    /// The current engine's registry (each engine gets a fresh one: a registry holds
    /// one engine's metrics).
    pub registry: std::sync::Mutex<prometheus::Registry>,
}

impl TestEnv {
    pub fn new() -> Self {
        let notifier = ReleaseNotifier::new();
        let inner =
            WriteBufferManagerImpl::new(64 << 20, 128 << 20, notifier.clone()).expect("limits");
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            listener: Arc::new(TestListener::default()),
            buffer: Arc::new(ForcedWriteBuffer::new(inner)),
            notifier,
            faults: Arc::new(FaultPlan::default()),
            registry: std::sync::Mutex::new(prometheus::Registry::new()),
        }
    }

    /// Small settings: 2 workers, 64 MiB budget.
    pub fn config(&self) -> EngineConfig {
        let mut config = EngineConfig::default();
        config.data_home = self.dir.path().to_path_buf();
        config.num_workers = 2;
        config.max_background_flushes = 2;
        config.max_background_purges = 1;
        config.global_write_buffer_size = bytesize::ByteSize::mib(64);
        // Removed files go as soon as no scan holds them (tests of the lingering set
        // their own).
        config.removed_file_lingering = Duration::ZERO;
        config
    }

    pub async fn engine(&self) -> Engine {
        self.engine_with(self.config()).await
    }

    pub async fn engine_with(&self, config: EngineConfig) -> Engine {
        self.builder(config).build().await.expect("engine")
    }

    /// An engine with automatic compaction off: the files are the flushes' files.
    pub async fn engine_without_compaction(&self) -> Engine {
        let mut config = self.config();
        config.compaction.enabled = false;
        self.engine_with(config).await
    }

    /// The builder `engine_with` uses, for tests that swap one more part.
    pub fn builder(&self, config: EngineConfig) -> EngineBuilder {
        let store = ObjectStoreConfig::Fs {
            root: self.dir.path().to_path_buf(),
        }
        .build()
        .expect("store")
        .layer(FaultLayer::new(self.faults.clone()));
        let listener: Arc<dyn EventListener> = Arc::new(Installed(self.listener.clone()));
        EngineBuilder::new(config)
            .object_store(store)
            .clock(self.clock.clone())
            .listener(listener)
            .write_buffer_manager(self.buffer.clone())
            .registry({
                let registry = prometheus::Registry::new();
                *self.registry.lock().unwrap() = registry.clone();
                registry
            })
    }
}

impl TestEnv {
    /// Write requests stalled right now, across workers.
    pub fn stalling(&self) -> u64 {
        self.registry
            .lock()
            .unwrap()
            .gather()
            .iter()
            .filter(|f| f.name() == "strata_write_stalling")
            .flat_map(|f| f.get_metric().iter())
            .map(|m| m.get_gauge().get_value() as u64)
            .sum()
    }

    /// Flushes requested so far for `reason` (counted when scheduled, on the worker).
    pub fn flush_requests(&self, reason: &str) -> u64 {
        self.registry
            .lock()
            .unwrap()
            .gather()
            .iter()
            .filter(|f| f.name() == "strata_flush_requests_total")
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "reason" && l.value() == reason)
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }
}

/// `host` tag, `ts` timestamp, `cpu` f64 field.
pub fn metadata(region_id: RegionId) -> RegionMetadata {
    RegionMetadataBuilder::new(region_id)
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("cpu", ColumnDataType::Float64))
        .build()
        .expect("schema")
}

pub async fn create(engine: &Engine, region_id: RegionId) {
    engine
        .create(CreateRequest::new(metadata(region_id)))
        .await
        .expect("create");
}

/// Rows `host{i}` at `ts` with value `value + i`, for `i` in `hosts`.
pub fn rows(hosts: std::ops::Range<usize>, ts: i64, value: f64) -> RecordBatch {
    let schema = metadata(RegionId::new(0, 0)).arrow_schema().clone();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                hosts.clone().map(|i| format!("host{i}")),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                hosts.clone().map(|_| ts),
            )),
            Arc::new(Float64Array::from_iter_values(
                hosts.map(|i| value + i as f64),
            )),
        ],
    )
    .expect("batch")
}

pub async fn put(
    engine: &Engine,
    region_id: RegionId,
    hosts: std::ops::Range<usize>,
    ts: i64,
    value: f64,
) {
    let n = hosts.len();
    let written = engine
        .write(WriteRequest::put(region_id, rows(hosts, ts, value)))
        .await
        .expect("put");
    assert_eq!(written, n);
}

/// Writes `batch` to `region_id` on a task of its own (a write the test expects to wait).
pub fn spawn_write(
    engine: &Arc<Engine>,
    region_id: RegionId,
    batch: RecordBatch,
) -> tokio::task::JoinHandle<strata_engine::Result<usize>> {
    let engine = engine.clone();
    tokio::spawn(async move { engine.write(WriteRequest::put(region_id, batch)).await })
}

/// The region's rows as `(host, ts) -> cpu`.
pub async fn scan(engine: &Engine, region_id: RegionId) -> BTreeMap<(String, i64), f64> {
    let mut out = BTreeMap::new();
    for batch in engine
        .scan_to_vec(region_id, ScanRequest::default())
        .await
        .expect("scan")
    {
        let hosts = batch
            .column_by_name("host")
            .expect("host")
            .as_string::<i32>();
        let ts = batch
            .column_by_name("ts")
            .expect("ts")
            .as_primitive::<TimestampMillisecondType>();
        let cpu = batch
            .column_by_name("cpu")
            .expect("cpu")
            .as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            out.insert((hosts.value(i).to_string(), ts.value(i)), cpu.value(i));
        }
    }
    out
}

/// A purge pool that queues jobs until `run_all`.
#[derive(Default)]
pub struct QueuedPool {
    jobs: Mutex<Vec<Job>>,
    queued: Notify,
}

impl std::fmt::Debug for QueuedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedPool").finish_non_exhaustive()
    }
}

impl QueuedPool {
    pub async fn run_all(&self) -> usize {
        let jobs: Vec<Job> = std::mem::take(&mut *self.jobs.lock().unwrap());
        let n = jobs.len();
        for job in jobs {
            job.await;
        }
        n
    }

    /// Jobs queued now.
    pub fn queued(&self) -> usize {
        self.jobs.lock().unwrap().len()
    }

    /// Waits until `n` jobs are queued.
    pub async fn wait_for_jobs(&self, n: usize) {
        within("purge jobs", async {
            loop {
                let queued = self.queued.notified();
                if self.jobs.lock().unwrap().len() >= n {
                    return;
                }
                queued.await;
            }
        })
        .await;
    }
}

impl Scheduler for QueuedPool {
    fn schedule(&self, job: Job) -> Result<(), SchedulerError> {
        self.jobs.lock().unwrap().push(job);
        self.queued.notify_waiters();
        Ok(())
    }
    fn stop(&self, _await_termination: bool) -> StopFuture<'_> {
        Box::pin(async move {
            self.run_all().await;
            Ok(())
        })
    }
}

/// The region's SST files on disk.
pub fn sst_files(env: &TestEnv, region: RegionId) -> Vec<PathBuf> {
    let dir = env.dir.path().join(strata_storage::region_data_dir(region));
    match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Four writers of 40 writes of 500 new rows each into `region`, as fast as the engine
/// takes them: each returns the rows acknowledged and the most memtable memory it saw.
/// A write may only fail as rejected (retryable).
pub fn spawn_overload_writers(
    engine: &Arc<Engine>,
    region: RegionId,
) -> Vec<tokio::task::JoinHandle<(usize, usize)>> {
    (0..4)
        .map(|w| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let (mut acked, mut peak) = (0, 0);
                for i in 0..40 {
                    let hosts = (w * 100_000 + i * 500)..(w * 100_000 + i * 500 + 500);
                    match engine
                        .write(WriteRequest::put(region, rows(hosts, 1000, 1.0)))
                        .await
                    {
                        Ok(n) => acked += n,
                        Err(e) => {
                            assert_eq!(e.kind(), strata_engine::ErrorKind::WriteRejected, "{e}")
                        }
                    }
                    peak = peak.max(engine.memory_usage());
                }
                (acked, peak)
            })
        })
        .collect()
}
