//! The worker loop's own rules, tested on `strata-worker` alone: a memory log store that
//! records (and can hold) appends, a memory object store with fault injection, a manual
//! clock, a listener that records events and can hold flush jobs, a write-buffer manager
//! whose stall and reject decisions can be forced, and a flush pool that reports when a
//! job has finished. Runtimes are single-threaded, so requests sent by tasks spawned
//! before the worker runs arrive in one batch.

#![allow(clippy::unwrap_used, missing_docs)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use async_trait::async_trait;
use strata_buffer::testing::ForcedWriteBuffer;
use strata_buffer::{ReleaseNotifier, WriteBufferManager, WriteBufferManagerImpl};
use strata_request::{
    AlterKind, AlterRequest, CloseRequest, ColumnDataType, ColumnSchema, CreateRequest, DdlRequest,
    FlushRequest, RegionId, RegionMetadataBuilder, TruncateRequest, WriteRequest,
};
use strata_scheduler::{
    Job, LocalScheduler, ManualClock, Scheduler, SchedulerError, SchedulerRef, StopFuture,
};
use strata_storage::testing::{FaultLayer, FaultPlan};
use strata_wal::{AppendResponse, Entry, EntryStream, LogStore, MemoryLogStore, WalError};
use strata_worker::{
    ErrorKind, EventListener, Result, WorkerConfig, WorkerError, WorkerGroup, WorkerGroupParts,
};
use tokio::sync::{Notify, Semaphore};

/// A bound on every wait, so a broken rule fails the test instead of hanging it.
const WATCHDOG: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WATCHDOG, future)
        .await
        .unwrap_or_else(|_| panic!("watchdog: {what} did not happen within {WATCHDOG:?}"))
}

/// Lets every ready task run (the runtime has one thread).
async fn settle() {
    for _ in 0..32 {
        tokio::task::yield_now().await;
    }
}

/// What the world saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A worker took this many requests off its channel.
    Recv(usize),
    Stall,
    FlushBegin(RegionId),
    FlushJobDone,
    FlushSuccess(RegionId),
    FlushFailed(RegionId),
    /// A WAL append of entries of these regions (raw ids) completed.
    Append(Vec<u64>),
    /// A WAL append is held (see [`Gate`]).
    AppendHeld,
}

#[derive(Debug, Default)]
struct Events {
    seen: Mutex<Vec<Event>>,
    changed: Notify,
}

impl Events {
    fn push(&self, event: Event) {
        self.seen.lock().unwrap().push(event);
        self.changed.notify_waiters();
    }

    fn all(&self) -> Vec<Event> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, event: &Event) -> usize {
        self.all().iter().filter(|e| *e == event).count()
    }

    /// Waits until `event` has been seen `n` times.
    async fn wait_for(&self, event: Event, n: usize) {
        within(&format!("{event:?} x{n}"), async {
            loop {
                let changed = self.changed.notified();
                if self.count(&event) >= n {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }

    /// Index of the first `event` at or after `from`.
    fn position(&self, event: &Event, from: usize) -> Option<usize> {
        self.all()
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, e)| *e == event)
            .map(|(i, _)| i)
    }
}

/// Holds work while `hold` is on; `release_all` lets everything through.
#[derive(Debug)]
struct Gate {
    holding: AtomicBool,
    permits: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            holding: AtomicBool::new(false),
            permits: Semaphore::new(0),
        }
    }
}

impl Gate {
    fn hold(&self) {
        self.holding.store(true, Ordering::SeqCst);
    }

    fn release_all(&self) {
        self.holding.store(false, Ordering::SeqCst);
        self.permits.add_permits(1 << 20);
    }

    async fn pass(&self) {
        if self.holding.load(Ordering::SeqCst) {
            self.permits.acquire().await.unwrap().forget();
        }
    }
}

#[derive(Debug)]
struct Listener {
    events: Arc<Events>,
    flushes: Arc<Gate>,
}

#[async_trait]
impl EventListener for Listener {
    fn on_recv_requests(&self, requests: usize) {
        self.events.push(Event::Recv(requests));
    }
    fn on_write_stall(&self) {
        self.events.push(Event::Stall);
    }
    async fn on_flush_begin(&self, region_id: RegionId) {
        self.events.push(Event::FlushBegin(region_id));
        self.flushes.pass().await;
    }
    fn on_flush_success(&self, region_id: RegionId) {
        self.events.push(Event::FlushSuccess(region_id));
    }
    fn on_flush_failed(&self, region_id: RegionId) {
        self.events.push(Event::FlushFailed(region_id));
    }
}

/// The memory log store, recording appends and able to hold them.
#[derive(Debug)]
struct RecordingLog {
    inner: MemoryLogStore,
    events: Arc<Events>,
    appends: Arc<Gate>,
}

#[async_trait]
impl LogStore for RecordingLog {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError> {
        let regions: Vec<u64> = entries.iter().map(|e| e.region_id).collect();
        if self.appends.holding.load(Ordering::SeqCst) {
            self.events.push(Event::AppendHeld);
        }
        self.appends.pass().await;
        let response = self.inner.append_batch(entries).await;
        self.events.push(Event::Append(regions));
        response
    }
    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError> {
        self.inner.read(region_id, start_entry_id)
    }
    async fn obsolete(&self, region_id: u64, entry_id: u64) -> Result<(), WalError> {
        self.inner.obsolete(region_id, entry_id).await
    }
    async fn drop_region(&self, region_id: u64) -> Result<(), WalError> {
        self.inner.drop_region(region_id).await
    }
    fn last_entry_id(&self, region_id: u64) -> Option<u64> {
        self.inner.last_entry_id(region_id)
    }
    async fn stop(&self) -> Result<(), WalError> {
        self.inner.stop().await
    }
}

/// The flush pool, reporting each job's end.
#[derive(Debug)]
struct ReportingPool {
    inner: LocalScheduler,
    events: Arc<Events>,
}

impl Scheduler for ReportingPool {
    fn schedule(&self, job: Job) -> std::result::Result<(), SchedulerError> {
        let events = self.events.clone();
        self.inner.schedule(Box::pin(async move {
            job.await;
            events.push(Event::FlushJobDone);
        }))
    }
    fn stop(&self, await_termination: bool) -> StopFuture<'_> {
        self.inner.stop(await_termination)
    }
}

/// One worker (so every region shares it) over the recording parts.
struct World {
    group: Arc<WorkerGroup>,
    events: Arc<Events>,
    flushes: Arc<Gate>,
    appends: Arc<Gate>,
    buffer: Arc<ForcedWriteBuffer>,
    faults: Arc<FaultPlan>,
}

impl World {
    fn new(tune: impl FnOnce(&mut WorkerConfig)) -> Self {
        let events = Arc::new(Events::default());
        let (flushes, appends) = (Arc::new(Gate::default()), Arc::new(Gate::default()));
        let faults = Arc::new(FaultPlan::default());
        let store = opendal::Operator::new(opendal::services::Memory::default())
            .unwrap()
            .layer(FaultLayer::new(faults.clone()));
        let buffer = Arc::new(ForcedWriteBuffer::new(
            WriteBufferManagerImpl::new(64 << 20, 128 << 20, ReleaseNotifier::new()).unwrap(),
        ));
        let mut config = WorkerConfig::default();
        config.num_workers = 1;
        tune(&mut config);
        let group = WorkerGroup::start(WorkerGroupParts {
            config,
            store,
            log_store: Arc::new(RecordingLog {
                inner: MemoryLogStore::new(),
                events: events.clone(),
                appends: appends.clone(),
            }),
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            registry: None,
            listener: Arc::new(Listener {
                events: events.clone(),
                flushes: flushes.clone(),
            }),
            write_buffer: Some(buffer.clone()),
            flush_pool: Some(Arc::new(ReportingPool {
                inner: LocalScheduler::new("test-flush", 1).unwrap(),
                events: events.clone(),
            }) as SchedulerRef),
            purge_pool: None,
            compaction_pool: None,
        })
        .unwrap();
        Self {
            group: Arc::new(group),
            events,
            flushes,
            appends,
            buffer,
            faults,
        }
    }

    async fn create(&self, region_id: RegionId) {
        let metadata = RegionMetadataBuilder::new(region_id)
            .column(ColumnSchema::tag("host"))
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .column(ColumnSchema::field("v", ColumnDataType::Float64))
            .build()
            .unwrap();
        self.group
            .ddl(DdlRequest::Create(CreateRequest::new(metadata)))
            .await
            .unwrap();
    }

    /// Writes `n` rows to `region_id` from a spawned task (so it queues without waiting).
    fn spawn_write(&self, region_id: RegionId, n: usize) -> tokio::task::JoinHandle<Result<usize>> {
        let group = self.group.clone();
        let ts = (self.events.all().len() as i64) * 1_000;
        tokio::spawn(async move { group.write(WriteRequest::put(region_id, rows(n, ts))).await })
    }

    fn spawn_ddl(&self, request: DdlRequest) -> tokio::task::JoinHandle<Result<usize>> {
        let group = self.group.clone();
        tokio::spawn(async move { group.ddl(request).await })
    }

    /// The region's schema now.
    fn metadata(&self, region_id: RegionId) -> Arc<strata_request::RegionMetadata> {
        let region = self.group.regions().get(region_id).unwrap();
        region.snapshot().version().metadata().clone()
    }

    /// Rows in the region's memtables.
    fn memtable_rows(&self, region_id: RegionId) -> usize {
        self.memtable_rows_if_open(region_id).unwrap()
    }

    /// Rows in the region's memtables, `None` if it is not open.
    fn memtable_rows_if_open(&self, region_id: RegionId) -> Option<usize> {
        let region = self.group.regions().get(region_id)?;
        let version = region.snapshot().version().clone();
        Some(version.memtables().all().map(|m| m.stats().num_rows).sum())
    }
}

fn rows(n: usize, ts: i64) -> RecordBatch {
    let schema = RegionMetadataBuilder::new(RegionId::new(0, 0))
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("v", ColumnDataType::Float64))
        .build()
        .unwrap()
        .arrow_schema()
        .clone();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("h{i}")),
            )),
            Arc::new(TimestampMillisecondArray::from(vec![ts; n])),
            Arc::new(Float64Array::from(vec![1.0; n])),
        ],
    )
    .unwrap()
}

const A: RegionId = RegionId::new(7, 1);
const B: RegionId = RegionId::new(7, 2);

#[tokio::test]
async fn a_batch_takes_at_most_batch_size_requests_and_runs_its_writes_before_its_ddls() {
    let world = World::new(|c| c.worker_request_batch_size = 4);
    world.create(A).await;

    // A truncate sent before a write, in one batch: the write runs first, so the
    // truncate removes its rows.
    let truncate = world.spawn_ddl(DdlRequest::Truncate(TruncateRequest::new(A)));
    let write = world.spawn_write(A, 3);
    assert_eq!(within("write", write).await.unwrap().unwrap(), 3);
    within("truncate", truncate).await.unwrap().unwrap();
    assert!(
        world.events.all().contains(&Event::Recv(2)),
        "both arrived in one batch: {:?}",
        world.events.all()
    );
    assert_eq!(
        world.memtable_rows(A),
        0,
        "the write ran before the truncate"
    );

    // Ten writes queued at once are taken in batches of at most four.
    let before = world.events.all().len();
    let writes: Vec<_> = (0..10).map(|_| world.spawn_write(A, 1)).collect();
    for write in writes {
        within("write", write).await.unwrap().unwrap();
    }
    let batches: Vec<usize> = world.events.all()[before..]
        .iter()
        .filter_map(|e| match e {
            Event::Recv(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(batches.iter().sum::<usize>(), 10, "{batches:?}");
    assert!(batches.iter().all(|&n| n <= 4), "{batches:?}");
    assert!(
        batches.iter().any(|&n| n > 1),
        "requests were batched: {batches:?}"
    );
    assert_eq!(world.memtable_rows(A), 10);
    world.group.stop().await.unwrap();
}

#[tokio::test]
async fn a_finished_flush_is_applied_before_the_writes_queued_behind_it() {
    let world = World::new(|_| {});
    world.create(A).await;
    world.create(B).await;
    world.spawn_write(B, 2).await.unwrap().unwrap();

    // A flush of B starts and is held; then the worker is kept busy in a WAL append of A.
    world.flushes.hold();
    let flush = world.spawn_ddl(DdlRequest::Flush(FlushRequest::new(B)));
    world.events.wait_for(Event::FlushBegin(B), 1).await;
    world.appends.hold();
    let busy = world.spawn_write(A, 1);
    world.events.wait_for(Event::AppendHeld, 1).await;

    // While the worker is busy: the flush job finishes and a write of B queues.
    world.flushes.release_all();
    world.events.wait_for(Event::FlushJobDone, 1).await;
    let queued = world.spawn_write(B, 1);
    settle().await;
    world.appends.release_all();
    within("busy write", busy).await.unwrap().unwrap();
    within("queued write", queued).await.unwrap().unwrap();
    within("flush", flush).await.unwrap().unwrap();

    let applied = world.events.position(&Event::FlushSuccess(B), 0).unwrap();
    let held = world.events.position(&Event::AppendHeld, 0).unwrap();
    let queued_append = world
        .events
        .position(&Event::Append(vec![B.as_u64()]), held)
        .unwrap();
    assert!(
        applied < queued_append,
        "the flush result went first: {:?}",
        world.events.all()
    );
    assert_eq!(
        world.memtable_rows(B),
        1,
        "only the write after the flush is in memory"
    );
    world.group.stop().await.unwrap();
}

#[tokio::test]
async fn stalled_writes_wait_for_released_memory_then_all_go_on() {
    let world = World::new(|_| {});
    world.create(A).await;
    world.buffer.force_stall.store(true, Ordering::SeqCst);
    let writes: Vec<_> = (0..3).map(|_| world.spawn_write(A, 2)).collect();
    world.events.wait_for(Event::Stall, 1).await;
    settle().await;
    assert!(
        writes.iter().all(|w| !w.is_finished()),
        "stalled writes wait"
    );
    assert_eq!(world.memtable_rows(A), 0);

    // Memory is released: every stalled write is retried and succeeds.
    world.buffer.force_stall.store(false, Ordering::SeqCst);
    world.buffer.notifier().notify();
    for write in writes {
        assert_eq!(within("stalled write", write).await.unwrap().unwrap(), 2);
    }
    assert_eq!(world.memtable_rows(A), 6);
    world.group.stop().await.unwrap();
}

#[tokio::test]
async fn over_the_reject_limit_the_new_writes_and_every_stalled_write_fail() {
    let world = World::new(|_| {});
    world.create(A).await;
    world.buffer.force_stall.store(true, Ordering::SeqCst);
    let stalled = world.spawn_write(A, 1);
    world.events.wait_for(Event::Stall, 1).await;
    world.buffer.force_reject.store(true, Ordering::SeqCst);
    let rejected = world.spawn_write(A, 1);
    for write in [rejected, stalled] {
        let error = within("rejected write", write).await.unwrap().unwrap_err();
        assert!(matches!(error, WorkerError::RejectWrite { .. }), "{error}");
        assert_eq!(error.kind(), ErrorKind::WriteRejected);
    }
    assert_eq!(world.memtable_rows(A), 0);
    world.group.stop().await.unwrap();
}

type Call = tokio::task::JoinHandle<Result<usize>>;

/// Region `A` of `world` holding two rows, and a flush of it held at its start.
async fn a_held_flush(world: &World) -> Call {
    world.create(A).await;
    world.spawn_write(A, 2).await.unwrap().unwrap();
    world.flushes.hold();
    let flush = world.spawn_ddl(DdlRequest::Flush(FlushRequest::new(A)));
    world.events.wait_for(Event::FlushBegin(A), 1).await;
    flush
}

/// A region of a `flush_on_close` group (no WAL) holding two rows, a flush of it held at
/// its start, and a close sent after it — fenced behind it.
async fn close_behind_a_held_flush() -> (World, Call, Call) {
    let world = World::new(|c| c.flush_on_close = true);
    let flush = a_held_flush(&world).await;
    let close = world.spawn_ddl(DdlRequest::Close(CloseRequest::new(A)));
    settle().await;
    assert!(!close.is_finished(), "the close is fenced behind the flush");
    (world, flush, close)
}

#[tokio::test]
async fn a_close_waits_for_the_running_flush_and_fails_when_that_flush_failed_without_a_wal() {
    let (world, flush, close) = close_behind_a_held_flush().await;

    // The flush fails: the close must not drop the rows it did not write.
    world.faults.fail_writes_containing(".parquet");
    world.flushes.release_all();
    assert!(within("flush", flush).await.unwrap().is_err());
    let error = within("close", close).await.unwrap().unwrap_err();
    assert!(
        matches!(error, WorkerError::RegionState { region_id, .. } if region_id == A),
        "{error}"
    );
    assert_eq!(world.events.count(&Event::FlushFailed(A)), 1);
    assert_eq!(
        world.memtable_rows(A),
        2,
        "the region stays open with its rows"
    );

    // Once the store works again, a close flushes first and succeeds.
    world.faults.clear();
    world
        .group
        .ddl(DdlRequest::Close(CloseRequest::new(A)))
        .await
        .unwrap();
    assert_eq!(world.events.count(&Event::FlushSuccess(A)), 1);
    assert!(world.group.regions().get(A).is_none(), "closed");
    world.group.stop().await.unwrap();
}

#[tokio::test]
async fn a_close_fenced_behind_a_successful_flush_runs_after_it() {
    let (world, flush, close) = close_behind_a_held_flush().await;
    world.flushes.release_all();
    within("flush", flush).await.unwrap().unwrap();
    within("close", close).await.unwrap().unwrap();
    assert_eq!(world.events.count(&Event::FlushSuccess(A)), 1);
    assert!(world.group.regions().get(A).is_none(), "closed");
    world.group.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_flush_fails_the_alter_and_writes_behind_it_and_still_runs_the_truncate() {
    let world = World::new(|_| {});
    let flush = a_held_flush(&world).await;
    let schema_version = world.metadata(A).schema_version();
    // A schema change needs empty memtables: it waits behind the flush, and so does the
    // write sent after it; the truncate waits only so that no flush runs beside it.
    let alter = world.spawn_ddl(DdlRequest::Alter(AlterRequest::new(
        A,
        schema_version,
        AlterKind::AddColumns {
            columns: vec![ColumnSchema::field("w", ColumnDataType::Float64)],
        },
    )));
    settle().await;
    let write = world.spawn_write(A, 1);
    let truncate = world.spawn_ddl(DdlRequest::Truncate(TruncateRequest::new(A)));
    settle().await;
    for (what, call) in [
        ("alter", &alter),
        ("write", &write),
        ("truncate", &truncate),
    ] {
        assert!(!call.is_finished(), "the {what} waits behind the flush");
    }

    world.faults.fail_writes_containing(".parquet");
    world.flushes.release_all();
    assert!(within("flush", flush).await.unwrap().is_err());
    for (what, call) in [("alter", alter), ("write", write)] {
        let error = within(what, call).await.unwrap().unwrap_err();
        assert!(
            matches!(&error, WorkerError::Flush { source } if source.to_string().contains("flush failed")),
            "{what}: {error}"
        );
    }
    within("truncate", truncate).await.unwrap().unwrap();
    assert_eq!(world.memtable_rows(A), 0, "the truncate ran");
    assert_eq!(world.metadata(A).columns().len(), 3, "the alter did not");
    world.group.stop().await.unwrap();
}

#[tokio::test]
async fn stop_answers_every_stalled_write_with_worker_stopped() {
    let world = World::new(|c| c.worker_channel_size = 64);
    world.create(A).await;
    world.buffer.force_stall.store(true, Ordering::SeqCst);
    let writes: Vec<_> = (0..8).map(|_| world.spawn_write(A, 1)).collect();
    world.events.wait_for(Event::Stall, 1).await;
    settle().await;
    assert!(writes.iter().all(|w| !w.is_finished()), "all eight stall");
    within("stop", world.group.stop()).await.unwrap();
    for write in writes {
        let error = within("a stalled write", write).await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Stopped, "{error}");
    }
    assert_eq!(
        world.memtable_rows_if_open(A),
        None,
        "regions are forgotten at stop"
    );
}

#[tokio::test]
async fn stop_lets_the_running_flush_finish_and_answers_everything_accepted_before_it() {
    let world = World::new(|c| c.worker_channel_size = 64);
    world.create(A).await;
    world.create(B).await;
    world.spawn_write(B, 1).await.unwrap().unwrap();

    // A held flush with a close fenced behind it, a write held in the WAL and writes
    // queued behind it.
    world.flushes.hold();
    let flush = world.spawn_ddl(DdlRequest::Flush(FlushRequest::new(B)));
    world.events.wait_for(Event::FlushBegin(B), 1).await;
    let close = world.spawn_ddl(DdlRequest::Close(CloseRequest::new(B)));
    world.appends.hold();
    let mut writes = vec![world.spawn_write(A, 1)];
    world.events.wait_for(Event::AppendHeld, 1).await;
    writes.extend((0..5).map(|_| world.spawn_write(A, 1)));
    settle().await;
    assert!(!flush.is_finished() && !close.is_finished());
    assert!(
        writes.iter().all(|w| !w.is_finished()),
        "all six writes are pending"
    );

    // Stop waits for the running flush, which is applied; then everything sent before
    // the stop is handled and answered.
    let stop = tokio::spawn({
        let group = world.group.clone();
        async move { group.stop().await }
    });
    settle().await;
    assert!(!stop.is_finished(), "stop waits for the running flush");
    world.flushes.release_all();
    world.appends.release_all();
    within("stop", stop).await.unwrap().unwrap();
    within("flush", flush).await.unwrap().unwrap();
    within("close", close).await.unwrap().unwrap();
    for write in writes {
        assert_eq!(within("a write", write).await.unwrap().unwrap(), 1);
    }
    assert_eq!(world.events.count(&Event::FlushSuccess(B)), 1);
    let late = world.spawn_write(A, 1).await.unwrap().unwrap_err();
    assert_eq!(late.kind(), ErrorKind::Stopped);
}
