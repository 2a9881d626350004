use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use opendal::Operator;
use strata_request::{
    ColumnDataType, ColumnSchema, OpType, RegionId, RegionMetadataBuilder, RegionOptions, Reply,
    Unanswered, reply_channel,
};
use strata_scheduler::{LocalScheduler, Scheduler};
use strata_storage::testing::{FaultLayer, FaultPlan};
use strata_storage::{
    CommitError, CommitPurpose, Committer, ManifestConfig, ManifestError, ManifestManager,
    RegionMetaActionList, RegionState, ScanRequest, SstWriteOptions, Version, VersionControl,
    region_data_dir, scan,
};
use tokio::sync::{Semaphore, mpsc};

use super::*;
use crate::job::FlushNotify;
use crate::reason::FlushReason;

/// The caller-side error of these tests.
#[derive(Debug, Clone)]
enum TestError {
    Flush(FlushError),
    Unanswered,
}

impl From<FlushError> for TestError {
    fn from(e: FlushError) -> Self {
        TestError::Flush(e)
    }
}

impl From<Unanswered> for TestError {
    fn from(_: Unanswered) -> Self {
        TestError::Unanswered
    }
}

/// A fenced DDL or write: answered on failure, or handed back.
/// The flag says whether it outlives a failed flush (like a close or drop would).
struct Pending(strata_request::OutputTx<usize, TestError>, bool);

impl PendingRequest for Pending {
    fn fail(self, error: FlushError) {
        self.0.send(Err(error.into()));
    }

    fn outlives_failed_flush(&self) -> bool {
        self.1
    }
}

const OK: u8 = 0;
const FAIL: u8 = 1;
const FAIL_MAYBE_PERSISTED: u8 = 2;

/// Commits to a real manifest; can hold commits at a gate or fail them.
struct TestCommitter {
    manifest: tokio::sync::Mutex<ManifestManager>,
    gate: Semaphore,
    mode: AtomicU8,
}

#[async_trait::async_trait]
impl Committer for TestCommitter {
    async fn commit(
        &self,
        purpose: CommitPurpose,
        actions: RegionMetaActionList,
    ) -> Result<u64, CommitError> {
        let _permit = self.gate.acquire().await;
        let mut manifest = self.manifest.lock().await;
        let region_id = manifest.manifest().metadata().region_id();
        match self.mode.load(Ordering::SeqCst) {
            OK => {}
            FAIL => {
                return Err(CommitError::Refused {
                    region_id,
                    state: RegionState::ReadOnly,
                    purpose: format!("{purpose:?} (injected)"),
                });
            }
            _ => {
                return Err(CommitError::Manifest {
                    region_id,
                    source: Arc::new(ManifestError::ObjectStore {
                        operation: "write",
                        path: "injected".into(),
                        source: Box::new(opendal::Error::new(
                            opendal::ErrorKind::Unexpected,
                            "injected",
                        )),
                    }),
                });
            }
        }
        manifest
            .update(actions)
            .await
            .map_err(|source| CommitError::Manifest {
                region_id,
                source: Arc::new(source),
            })
    }
}

type Scheduler_ = FlushScheduler<TestError, Pending, Pending>;

struct Env {
    region: RegionId,
    store: Operator,
    vc: Arc<VersionControl>,
    committer: Arc<TestCommitter>,
    dyn_committer: Arc<dyn Committer>,
    scheduler: Scheduler_,
    notify: mpsc::UnboundedReceiver<FlushNotify<TestError>>,
    pool: Arc<LocalScheduler>,
    faults: Arc<FaultPlan>,
    sequence: u64,
    entry: u64,
}

impl Env {
    async fn new(gate_open: bool) -> Env {
        Self::with_registry(gate_open, None).await
    }

    async fn with_registry(gate_open: bool, registry: Option<&prometheus::Registry>) -> Env {
        let region = RegionId::new(8, 0);
        let metadata = RegionMetadataBuilder::new(region)
            .column(ColumnSchema::tag("host"))
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .column(ColumnSchema::field("v", ColumnDataType::Int64))
            .build()
            .unwrap();
        let faults = Arc::new(FaultPlan::default());
        let store = Operator::new(opendal::services::Memory::default())
            .unwrap()
            .layer(FaultLayer::new(faults.clone()));
        let manifest = ManifestManager::create(
            store.clone(),
            metadata,
            RegionOptions::default(),
            ManifestConfig::default(),
        )
        .await
        .unwrap();
        let vc = Arc::new(VersionControl::new(
            Version::from_manifest(manifest.manifest(), None).unwrap(),
        ));
        let committer = Arc::new(TestCommitter {
            manifest: tokio::sync::Mutex::new(manifest),
            gate: Semaphore::new(if gate_open { Semaphore::MAX_PERMITS } else { 0 }),
            mode: AtomicU8::new(OK),
        });
        let pool = Arc::new(LocalScheduler::new("flush", 2).unwrap());
        let mut context = FlushContext::new(store.clone(), SstWriteOptions::default(), 2);
        if let Some(registry) = registry {
            context =
                context.with_metrics(crate::metrics::FlushMetrics::register(registry).unwrap());
        }
        let context = Arc::new(context);
        let (tx, rx) = mpsc::unbounded_channel();
        Env {
            region,
            store,
            vc,
            dyn_committer: committer.clone(),
            committer,
            scheduler: FlushScheduler::new(pool.clone(), context, tx),
            notify: rx,
            pool,
            faults,
            sequence: 0,
            entry: 0,
        }
    }

    /// Writes `n` rows for host `host` with timestamps from `start`.
    fn write(&mut self, host: &str, start: i64, n: i64) {
        let version = self.vc.current().version().clone();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values((0..n).map(|_| host))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                start..start + n,
            )),
            Arc::new(Int64Array::from_iter_values(start..start + n)),
        ];
        let batch =
            RecordBatch::try_new(version.metadata().arrow_schema().clone(), columns).unwrap();
        version
            .memtables()
            .mutable()
            .write(&batch, OpType::Put, self.sequence + 1)
            .unwrap();
        self.sequence += n as u64;
        self.entry += 1;
        self.vc.set_sequence_and_entry_id(self.sequence, self.entry);
    }

    fn request(&mut self, reason: FlushReason) -> Result<Reply<usize, TestError>, FlushError> {
        let (tx, rx) = reply_channel();
        let mut task = RegionFlushTask::new(self.region, reason);
        task.push_waiter(Some(tx));
        self.scheduler
            .schedule_flush(&self.vc, &self.dyn_committer, task)
            .map(|()| rx)
    }

    fn pending(&mut self) -> (Pending, Reply<usize, TestError>) {
        let (tx, rx) = reply_channel();
        (Pending(tx, false), rx)
    }

    /// Does what the worker does with the next outcome; returns what was released.
    async fn handle_next(&mut self) -> Option<Released<Pending, Pending>> {
        match self.notify.recv().await.unwrap() {
            FlushNotify::Finished(f) => {
                self.vc.apply_edit(&f.edit, &f.memtables_to_remove);
                f.task.on_success();
                self.scheduler.on_flush_success(f.region_id)
            }
            FlushNotify::Failed { region_id, error } => {
                let returned = self.scheduler.on_flush_failed(region_id, error);
                (!returned.is_empty()).then_some(Released {
                    ddls: returned,
                    writes: Vec::new(),
                })
            }
        }
    }

    async fn scan_count(&self) -> usize {
        let stream = scan(&self.store, &self.vc.current(), ScanRequest::default())
            .await
            .unwrap();
        futures::TryStreamExt::try_collect::<Vec<_>>(stream)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum()
    }

    async fn data_files(&self) -> usize {
        self.store
            .list(&format!("{}/", region_data_dir(self.region)))
            .await
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e.path().ends_with(".parquet"))
                    .count()
            })
            .unwrap_or(0)
    }
}

fn is_ok(result: Result<usize, TestError>) -> bool {
    matches!(result, Ok(0))
}

#[tokio::test]
async fn flushing_nothing_answers_at_once_and_runs_no_job() {
    let mut env = Env::new(true).await;
    let reply = env.request(FlushReason::Manual).unwrap();
    assert!(is_ok(reply.await));
    assert!(!env.scheduler.is_flush_requested(env.region));
    assert!(env.notify.try_recv().is_err(), "no job ran");
}

#[tokio::test]
async fn a_flush_writes_files_commits_the_edit_and_releases_the_region() {
    let mut env = Env::new(true).await;
    env.write("a", 0, 10);
    let reply = env.request(FlushReason::Manual).unwrap();
    assert!(env.scheduler.is_flush_requested(env.region));
    let released = env.handle_next().await.unwrap();
    assert!(released.ddls.is_empty() && released.writes.is_empty());
    assert!(is_ok(reply.await));
    assert!(!env.scheduler.is_flush_requested(env.region));
    let version = env.vc.current().version().clone();
    assert!(version.memtables().is_empty());
    assert_eq!(version.all_files().count(), 1);
    assert_eq!(
        (version.flushed_entry_id(), version.flushed_sequence()),
        (1, 10)
    );
    assert_eq!(
        env.committer.manifest.lock().await.manifest().files().len(),
        1
    );
    assert_eq!(env.scan_count().await, 10);
}

#[tokio::test]
async fn requests_during_a_flush_merge_into_one_follow_up_and_fence_ddls_and_writes() {
    let mut env = Env::new(false).await;
    env.write("a", 0, 5);
    let first = env.request(FlushReason::Manual).unwrap();
    env.write("b", 0, 5);
    let second = env.request(FlushReason::EngineFull).unwrap();
    let third = env.request(FlushReason::Manual).unwrap();
    let (ddl, ddl_reply) = env.pending();
    let (write, write_reply) = env.pending();
    assert!(
        env.scheduler
            .add_ddl_request_to_pending(env.region, ddl)
            .is_ok()
    );
    assert!(
        env.scheduler
            .add_write_request_to_pending(env.region, write)
            .is_ok()
    );
    assert!(env.scheduler.has_pending_ddls(env.region));

    env.committer.gate.add_permits(10);
    assert!(
        env.handle_next().await.is_none(),
        "the follow-up runs; the fence stays"
    );
    assert!(is_ok(first.await));
    assert!(env.scheduler.is_flush_requested(env.region));
    let released = env
        .handle_next()
        .await
        .expect("fence released after the follow-up");
    assert!(
        is_ok(second.await) && is_ok(third.await),
        "merged waiters answered together"
    );
    assert_eq!((released.ddls.len(), released.writes.len()), (1, 1));
    drop(released);
    assert!(
        matches!(ddl_reply.await, Err(TestError::Unanswered)),
        "handed back, not failed"
    );
    assert!(matches!(write_reply.await, Err(TestError::Unanswered)));
    assert_eq!(env.vc.current().version().all_files().count(), 2);
    assert_eq!(env.scan_count().await, 10);
}

#[tokio::test]
async fn a_follow_up_with_nothing_left_to_flush_releases_the_fenced_work() {
    let mut env = Env::new(false).await;
    env.write("a", 0, 5);
    let first = env.request(FlushReason::Manual).unwrap();
    let follow_up = env.request(FlushReason::Alter).unwrap();
    let (ddl, _ddl_reply) = env.pending();
    assert!(
        env.scheduler
            .add_ddl_request_to_pending(env.region, ddl)
            .is_ok()
    );
    env.committer.gate.add_permits(10);
    let released = env
        .handle_next()
        .await
        .expect("nothing left: released at once");
    assert_eq!(released.ddls.len(), 1);
    assert!(is_ok(first.await) && is_ok(follow_up.await));
    assert!(!env.scheduler.is_flush_requested(env.region));
}

#[tokio::test]
async fn a_failed_flush_fails_everything_pending_keeps_the_memtables_and_deletes_its_files() {
    let mut env = Env::new(false).await;
    env.write("a", 0, 7);
    let first = env.request(FlushReason::Manual).unwrap();
    env.write("a", 100, 3);
    let follow_up = env.request(FlushReason::Manual).unwrap();
    let (write, write_reply) = env.pending();
    assert!(
        env.scheduler
            .add_write_request_to_pending(env.region, write)
            .is_ok()
    );
    env.committer.mode.store(FAIL, Ordering::SeqCst);
    env.committer.gate.add_permits(100);
    assert!(env.handle_next().await.is_none());
    assert!(matches!(
        first.await,
        Err(TestError::Flush(FlushError::Commit { .. }))
    ));
    assert!(matches!(
        follow_up.await,
        Err(TestError::Flush(FlushError::FlushFailed { .. }))
    ));
    assert!(matches!(
        write_reply.await,
        Err(TestError::Flush(FlushError::FlushFailed { .. }))
    ));
    assert!(!env.scheduler.is_flush_requested(env.region));
    let version = env.vc.current().version().clone();
    assert_eq!(
        version.memtables().immutables().len(),
        1,
        "kept for the next flush"
    );
    assert_eq!(
        env.data_files().await,
        0,
        "an edit that certainly failed leaves no files"
    );

    env.committer.mode.store(OK, Ordering::SeqCst);
    let retry = env.request(FlushReason::Manual).unwrap();
    env.handle_next().await.unwrap();
    assert!(is_ok(retry.await));
    assert!(env.vc.current().version().memtables().is_empty());
    assert_eq!(
        env.scan_count().await,
        10,
        "every row readable exactly once"
    );
}

#[tokio::test]
async fn a_commit_that_may_have_persisted_keeps_its_files() {
    let mut env = Env::new(true).await;
    env.write("a", 0, 4);
    env.committer
        .mode
        .store(FAIL_MAYBE_PERSISTED, Ordering::SeqCst);
    let reply = env.request(FlushReason::Manual).unwrap();
    env.handle_next().await;
    assert!(reply.await.is_err());
    assert_eq!(
        env.data_files().await,
        1,
        "the manifest may name it: not deleted"
    );
    env.committer.mode.store(OK, Ordering::SeqCst);
    let retry = env.request(FlushReason::Manual).unwrap();
    env.handle_next().await.unwrap();
    assert!(is_ok(retry.await));
    assert_eq!(env.scan_count().await, 4, "readable exactly once");
}

#[tokio::test]
async fn drop_close_and_truncate_fail_everything_pending_with_their_own_error() {
    for event in ["drop", "close", "truncate"] {
        let mut env = Env::new(false).await;
        env.write("a", 0, 3);
        let first = env.request(FlushReason::Manual).unwrap();
        env.write("a", 10, 3);
        let follow_up = env.request(FlushReason::Manual).unwrap();
        let (ddl, ddl_reply) = env.pending();
        assert!(
            env.scheduler
                .add_ddl_request_to_pending(env.region, ddl)
                .is_ok()
        );
        match event {
            "drop" => env.scheduler.on_region_dropped(env.region),
            "close" => env.scheduler.on_region_closed(env.region),
            _ => env.scheduler.on_region_truncated(env.region),
        }
        assert!(
            env.scheduler.is_flush_requested(env.region),
            "the running job keeps the region busy"
        );
        let check = |r: Result<usize, TestError>| match (event, r) {
            ("drop", Err(TestError::Flush(FlushError::RegionDropped { .. })))
            | ("close", Err(TestError::Flush(FlushError::RegionClosed { .. })))
            | ("truncate", Err(TestError::Flush(FlushError::RegionTruncated { .. }))) => {}
            (event, other) => panic!("{event}: {other:?}"),
        };
        check(follow_up.await);
        check(ddl_reply.await);
        // The running flush still finishes and reports; then the region is idle.
        env.committer.gate.add_permits(10);
        let released = env.handle_next().await.expect("bare status cleared");
        assert!(released.ddls.is_empty() && released.writes.is_empty());
        assert!(is_ok(first.await));
        assert!(!env.scheduler.is_flush_requested(env.region));
    }
}

#[tokio::test]
async fn dropping_the_scheduler_answers_every_waiter() {
    let mut env = Env::new(false).await;
    env.write("a", 0, 3);
    let _first = env.request(FlushReason::Manual).unwrap();
    env.write("a", 10, 3);
    let follow_up = env.request(FlushReason::Manual).unwrap();
    let (write, write_reply) = env.pending();
    assert!(
        env.scheduler
            .add_write_request_to_pending(env.region, write)
            .is_ok()
    );
    drop(env.scheduler);
    assert!(matches!(
        follow_up.await,
        Err(TestError::Flush(FlushError::RegionClosed { .. }))
    ));
    assert!(matches!(
        write_reply.await,
        Err(TestError::Flush(FlushError::RegionClosed { .. }))
    ));
}

#[tokio::test]
async fn a_flush_that_cannot_be_scheduled_answers_its_waiter_and_leaves_no_status() {
    let mut env = Env::new(true).await;
    env.pool.stop(true).await.unwrap();
    env.write("a", 0, 3);
    let (tx, rx) = reply_channel::<usize, TestError>();
    let mut task = RegionFlushTask::new(env.region, FlushReason::Manual);
    task.push_waiter(Some(tx));
    let err = env
        .scheduler
        .schedule_flush(&env.vc, &env.dyn_committer, task)
        .unwrap_err();
    assert!(matches!(err, FlushError::Schedule { .. }), "{err}");
    assert!(matches!(
        rx.await,
        Err(TestError::Flush(FlushError::Dropped { .. }))
    ));
    assert!(!env.scheduler.is_flush_requested(env.region));
}

#[tokio::test]
async fn failing_sst_writes_fail_the_flush_and_the_next_flush_succeeds_exactly_once() {
    let mut env = Env::new(true).await;
    env.write("a", 0, 6);
    env.write("b", 0, 6);
    env.faults.fail_writes_containing("/data/");
    let reply = env.request(FlushReason::Manual).unwrap();
    env.handle_next().await;
    assert!(matches!(
        reply.await,
        Err(TestError::Flush(FlushError::WriteSst { .. }))
    ));
    assert!(env.faults.injected() > 0);
    assert_eq!(
        env.vc.current().version().memtables().immutables().len(),
        1,
        "memtables kept"
    );
    assert_eq!(env.data_files().await, 0);

    env.faults.clear();
    let retry = env.request(FlushReason::Manual).unwrap();
    env.handle_next().await.unwrap();
    assert!(is_ok(retry.await));
    assert_eq!(env.scan_count().await, 12);
    assert_eq!(
        env.committer.manifest.lock().await.manifest().files().len(),
        1
    );
}

#[tokio::test]
async fn a_failing_manifest_write_keeps_the_memtables_and_the_retry_reads_exactly_once() {
    let mut env = Env::new(true).await;
    env.write("a", 0, 9);
    env.faults.fail_writes_containing("/manifest/");
    let reply = env.request(FlushReason::Manual).unwrap();
    env.handle_next().await;
    assert!(matches!(
        reply.await,
        Err(TestError::Flush(FlushError::Commit { .. }))
    ));
    assert_eq!(env.vc.current().version().memtables().immutables().len(), 1);
    assert_eq!(
        env.data_files().await,
        1,
        "a failed object-store write may have landed: file kept"
    );

    env.faults.clear();
    let retry = env.request(FlushReason::Manual).unwrap();
    env.handle_next().await.unwrap();
    assert!(is_ok(retry.await));
    assert_eq!(
        env.scan_count().await,
        9,
        "the orphaned file is not in the manifest"
    );
    let reopened = ManifestManager::open(env.store.clone(), env.region, ManifestConfig::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reopened.manifest().files().len(), 1);
}

#[tokio::test]
async fn metrics_count_requests_by_reason_failures_bytes_and_inflight() {
    let registry = prometheus::Registry::new();
    let mut env = Env::with_registry(true, Some(&registry)).await;
    env.write("a", 0, 5);
    let ok = env.request(FlushReason::Periodic).unwrap();
    env.handle_next().await;
    assert!(is_ok(ok.await));
    env.write("a", 10, 5);
    env.committer.mode.store(FAIL, Ordering::SeqCst);
    let failed = env.request(FlushReason::Manual).unwrap();
    env.handle_next().await;
    assert!(failed.await.is_err());

    let families = registry.gather();
    let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name} missing from {names:?}"))
    };
    let by_reason = |reason: &str| {
        family("strata_flush_requests_total")
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == reason))
            .unwrap()
            .get_counter()
            .get_value()
    };
    assert_eq!(by_reason("periodic"), 1.0);
    assert_eq!(by_reason("manual"), 1.0);
    assert_eq!(by_reason("alter"), 0.0);
    assert_eq!(
        family("strata_flush_failures_total").get_metric()[0]
            .get_counter()
            .get_value(),
        1.0
    );
    assert!(
        family("strata_flush_bytes_total").get_metric()[0]
            .get_counter()
            .get_value()
            > 0.0
    );
    assert_eq!(
        family("strata_flush_inflight").get_metric()[0]
            .get_gauge()
            .get_value(),
        0.0
    );
    let stages: Vec<String> = family("strata_flush_elapsed_seconds")
        .get_metric()
        .iter()
        .flat_map(|m| m.get_label().iter().map(|l| l.value().to_string()))
        .collect();
    assert!(
        stages.contains(&"total".to_string())
            && stages.contains(&"write_sst".to_string())
            && stages.contains(&"commit".to_string()),
        "{stages:?}"
    );
}

#[tokio::test]
async fn a_failed_flush_hands_back_the_ddls_that_outlive_it_and_fails_the_rest() {
    let mut env = Env::new(false).await;
    env.write("a", 0, 5);
    let flush = env.request(FlushReason::Manual).unwrap();
    let (tx, close_reply) = reply_channel();
    assert!(
        env.scheduler
            .add_ddl_request_to_pending(env.region, Pending(tx, true))
            .is_ok()
    );
    let (alter, alter_reply) = env.pending();
    assert!(
        env.scheduler
            .add_ddl_request_to_pending(env.region, alter)
            .is_ok()
    );
    env.committer.mode.store(FAIL, Ordering::SeqCst);
    env.committer.gate.add_permits(100);
    let released = env
        .handle_next()
        .await
        .expect("the close-like DDL comes back");
    assert!(flush.await.is_err());
    assert!(matches!(
        alter_reply.await,
        Err(TestError::Flush(FlushError::FlushFailed { .. }))
    ));
    assert_eq!(released.ddls.len(), 1);
    for ddl in released.ddls {
        ddl.0.send(Ok(7));
    }
    assert!(
        matches!(close_reply.await, Ok(7)),
        "answered by its own run, not failed"
    );
    assert!(!env.scheduler.is_flush_requested(env.region));
}
