use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use opendal::Operator;
use strata_request::{
    ColumnDataType, ColumnSchema, OpType, RegionId, RegionMetadataBuilder, RegionOptions,
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

struct Env {
    region: RegionId,
    store: Operator,
    vc: Arc<VersionControl>,
    committer: Arc<TestCommitter>,
    dyn_committer: Arc<dyn Committer>,
    scheduler: FlushScheduler,
    notify: mpsc::UnboundedReceiver<FlushNotify>,
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

    fn request(&mut self, reason: FlushReason) -> Result<FlushScheduled, FlushError> {
        self.scheduler
            .schedule_flush(&self.vc, &self.dyn_committer, self.region, reason)
    }

    /// Does what the worker does with the next report: the flush's outcome, and what
    /// follows it.
    async fn handle_next(&mut self) -> (Result<(), FlushError>, Option<AfterFlush>) {
        match self.notify.recv().await.unwrap() {
            FlushNotify::Finished(f) => {
                self.vc.apply_edit(&f.edit, &f.memtables_to_remove);
                (Ok(()), Some(self.scheduler.on_flush_success(f.region_id)))
            }
            FlushNotify::Failed { region_id, error } => {
                self.scheduler.on_flush_failed(region_id);
                (Err(error), None)
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

fn ended(after: Option<AfterFlush>) -> bool {
    matches!(after, Some(AfterFlush::Ended))
}

#[tokio::test]
async fn flushing_nothing_runs_no_job() {
    let mut env = Env::new(true).await;
    assert_eq!(
        env.request(FlushReason::Manual).unwrap(),
        FlushScheduled::NothingToFlush
    );
    assert!(!env.scheduler.is_flush_requested(env.region));
    assert!(env.notify.try_recv().is_err(), "no job ran");
}

#[tokio::test]
async fn a_flush_writes_files_commits_the_edit_and_ends() {
    let mut env = Env::new(true).await;
    env.write("a", 0, 10);
    assert_eq!(
        env.request(FlushReason::Manual).unwrap(),
        FlushScheduled::Started
    );
    assert!(env.scheduler.is_flush_requested(env.region));
    let (outcome, after) = env.handle_next().await;
    assert!(outcome.is_ok());
    assert!(ended(after));
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
async fn requests_during_a_flush_merge_into_one_follow_up_that_runs_after_it() {
    let mut env = Env::new(false).await;
    env.write("a", 0, 5);
    assert_eq!(
        env.request(FlushReason::Manual).unwrap(),
        FlushScheduled::Started
    );
    env.write("b", 0, 5);
    for reason in [FlushReason::EngineFull, FlushReason::Manual] {
        assert_eq!(env.request(reason).unwrap(), FlushScheduled::Queued);
    }
    assert!(env.scheduler.has_follow_up(env.region));
    env.committer.gate.add_permits(10);
    let (outcome, after) = env.handle_next().await;
    assert!(outcome.is_ok());
    assert!(
        matches!(after, Some(AfterFlush::FollowUpStarted)),
        "{after:?}"
    );
    assert!(env.scheduler.is_flush_requested(env.region));
    assert!(!env.scheduler.has_follow_up(env.region));
    let (outcome, after) = env.handle_next().await;
    assert!(outcome.is_ok());
    assert!(ended(after), "one follow-up for both requests");
    assert!(env.notify.try_recv().is_err(), "no third job");
    assert_eq!(env.vc.current().version().all_files().count(), 2);
    assert_eq!(env.scan_count().await, 10);
}

#[tokio::test]
async fn a_follow_up_with_nothing_left_to_flush_ends_the_flush() {
    let mut env = Env::new(false).await;
    env.write("a", 0, 5);
    env.request(FlushReason::Manual).unwrap();
    assert_eq!(
        env.request(FlushReason::Alter).unwrap(),
        FlushScheduled::Queued
    );
    env.committer.gate.add_permits(10);
    let (outcome, after) = env.handle_next().await;
    assert!(outcome.is_ok());
    assert!(ended(after), "nothing left: no follow-up job");
    assert!(!env.scheduler.is_flush_requested(env.region));
    assert!(env.notify.try_recv().is_err());
}

#[tokio::test]
async fn a_failed_flush_ends_with_its_follow_up_keeps_the_memtables_and_deletes_its_files() {
    let mut env = Env::new(false).await;
    env.write("a", 0, 7);
    env.request(FlushReason::Manual).unwrap();
    env.write("a", 100, 3);
    env.request(FlushReason::Manual).unwrap();
    env.committer.mode.store(FAIL, Ordering::SeqCst);
    env.committer.gate.add_permits(100);
    let (outcome, after) = env.handle_next().await;
    assert!(
        matches!(outcome, Err(FlushError::Commit { .. })),
        "{outcome:?}"
    );
    assert!(after.is_none());
    assert!(!env.scheduler.is_flush_requested(env.region));
    assert!(env.notify.try_recv().is_err(), "the follow-up did not run");
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
    env.request(FlushReason::Manual).unwrap();
    assert!(env.handle_next().await.0.is_ok());
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
    env.request(FlushReason::Manual).unwrap();
    assert!(env.handle_next().await.0.is_err());
    assert_eq!(
        env.data_files().await,
        1,
        "the manifest may name it: not deleted"
    );
    env.committer.mode.store(OK, Ordering::SeqCst);
    env.request(FlushReason::Manual).unwrap();
    assert!(env.handle_next().await.0.is_ok());
    assert_eq!(env.scan_count().await, 4, "readable exactly once");
}

#[tokio::test]
async fn a_cancelled_follow_up_does_not_run_and_the_running_flush_still_reports() {
    let mut env = Env::new(false).await;
    env.write("a", 0, 3);
    env.request(FlushReason::Manual).unwrap();
    env.write("a", 10, 3);
    env.request(FlushReason::Manual).unwrap();
    env.scheduler.cancel_follow_up(env.region);
    assert!(
        env.scheduler.is_flush_requested(env.region),
        "the running job keeps the region busy"
    );
    assert_eq!(
        env.request(FlushReason::Manual).unwrap(),
        FlushScheduled::Queued,
        "no second job beside the running one"
    );
    env.scheduler.cancel_follow_up(env.region);
    env.committer.gate.add_permits(10);
    let (outcome, after) = env.handle_next().await;
    assert!(outcome.is_ok());
    assert!(ended(after));
    assert!(!env.scheduler.is_flush_requested(env.region));
    assert!(env.notify.try_recv().is_err(), "the follow-up never ran");
    assert!(!env.vc.current().version().memtables().is_empty());
}

#[tokio::test]
async fn a_job_dropped_before_it_ran_reports_dropped() {
    let mut env = Env::new(true).await;
    env.write("a", 0, 3);
    let snapshot = {
        env.vc.freeze_mutable();
        env.vc.current()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job = RegionFlushTask::new(env.region, FlushReason::Manual).into_job(
        Arc::new(FlushContext::new(
            env.store.clone(),
            SstWriteOptions::default(),
            1,
        )),
        snapshot,
        env.dyn_committer.clone(),
        tx,
    );
    drop(job);
    match rx.try_recv().unwrap() {
        FlushNotify::Failed { region_id, error } => {
            assert_eq!(region_id, env.region);
            assert!(matches!(error, FlushError::Dropped { .. }), "{error}");
        }
        FlushNotify::Finished(_) => panic!("a dropped job finished"),
    }
    assert!(rx.try_recv().is_err(), "one report");
}

#[tokio::test]
async fn a_flush_that_cannot_be_scheduled_leaves_no_status() {
    let mut env = Env::new(true).await;
    env.pool.stop(true).await.unwrap();
    env.write("a", 0, 3);
    let err = env.request(FlushReason::Manual).unwrap_err();
    assert!(matches!(err, FlushError::Schedule { .. }), "{err}");
    assert!(!env.scheduler.is_flush_requested(env.region));
    match env.notify.recv().await.unwrap() {
        FlushNotify::Failed { error, .. } => {
            assert!(matches!(error, FlushError::Dropped { .. }), "{error}")
        }
        FlushNotify::Finished(_) => panic!("the refused job ran"),
    }
}

#[tokio::test]
async fn failing_sst_writes_fail_the_flush_and_the_next_flush_succeeds_exactly_once() {
    let mut env = Env::new(true).await;
    env.write("a", 0, 6);
    env.write("b", 0, 6);
    env.faults.fail_writes_containing("/data/");
    env.request(FlushReason::Manual).unwrap();
    let (outcome, _) = env.handle_next().await;
    assert!(
        matches!(outcome, Err(FlushError::WriteSst { .. })),
        "{outcome:?}"
    );
    assert!(env.faults.injected() > 0);
    assert_eq!(
        env.vc.current().version().memtables().immutables().len(),
        1,
        "memtables kept"
    );
    assert_eq!(env.data_files().await, 0);

    env.faults.clear();
    env.request(FlushReason::Manual).unwrap();
    assert!(env.handle_next().await.0.is_ok());
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
    env.request(FlushReason::Manual).unwrap();
    let (outcome, _) = env.handle_next().await;
    assert!(
        matches!(outcome, Err(FlushError::Commit { .. })),
        "{outcome:?}"
    );
    assert_eq!(env.vc.current().version().memtables().immutables().len(), 1);
    assert_eq!(
        env.data_files().await,
        1,
        "a failed object-store write may have landed: file kept"
    );

    env.faults.clear();
    env.request(FlushReason::Manual).unwrap();
    assert!(env.handle_next().await.0.is_ok());
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
    env.request(FlushReason::Periodic).unwrap();
    assert!(env.handle_next().await.0.is_ok());
    env.write("a", 10, 5);
    env.committer.mode.store(FAIL, Ordering::SeqCst);
    env.request(FlushReason::Manual).unwrap();
    assert!(env.handle_next().await.0.is_err());

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
