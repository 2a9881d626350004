use std::sync::Mutex;

use async_trait::async_trait;
use opendal::Operator;
use strata_request::{ColumnDataType, ColumnSchema, RegionMetadataBuilder, RegionOptions};
use strata_scheduler::{Job, Scheduler, SchedulerError, StopFuture};
use strata_storage::{
    CommitError, CommitPurpose, Committer, ManifestConfig, ManifestManager, RegionEdit,
    RegionMetaAction, RegionMetaActionList,
};

use super::*;
use crate::picker::PickerOptions;

/// Keeps jobs without running them.
#[derive(Default)]
struct HeldPool(Mutex<Vec<Job>>);

impl std::fmt::Debug for HeldPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldPool")
    }
}

impl Scheduler for HeldPool {
    fn schedule(&self, job: Job) -> Result<(), SchedulerError> {
        self.0.lock().unwrap().push(job);
        Ok(())
    }

    fn stop(&self, _await_termination: bool) -> StopFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

#[derive(Debug)]
struct NeverCommits;

#[async_trait]
impl Committer for NeverCommits {
    async fn commit(
        &self,
        _purpose: CommitPurpose,
        _actions: RegionMetaActionList,
    ) -> Result<u64, CommitError> {
        Err(CommitError::Stale {
            region_id: REGION,
            reason: "test".into(),
        })
    }
}

const REGION: RegionId = RegionId::new(5, 5);

/// A version with `level0` one-row level-0 files in one window.
async fn version(level0: usize) -> Arc<Version> {
    let metadata = RegionMetadataBuilder::new(REGION)
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .build()
        .unwrap();
    let store = Operator::new(opendal::services::Memory::default()).unwrap();
    let mut manifest = ManifestManager::create(
        store,
        metadata,
        RegionOptions::default(),
        ManifestConfig::default(),
    )
    .await
    .unwrap();
    let files = (0..level0)
        .map(|i| {
            let mut file = strata_storage::testing::file_meta(REGION);
            file.level = 0;
            file.time_range = (0, 10);
            file.num_rows = 1;
            file.num_row_groups = 1;
            file.file_size = 100;
            file.max_sequence = i as u64;
            file.checksum = 0;
            file.num_deletes = None;
            file.time_slice = None;
            file
        })
        .collect();
    manifest
        .update(RegionMetaActionList::one(RegionMetaAction::Edit({
            let mut edit = RegionEdit::default();
            edit.files_to_add = files;
            edit
        })))
        .await
        .unwrap();
    Arc::new(Version::from_manifest(manifest.manifest(), None).unwrap())
}

fn scheduler() -> (
    CompactionScheduler,
    Arc<HeldPool>,
    mpsc::UnboundedReceiver<CompactionNotify>,
) {
    let pool = Arc::new(HeldPool::default());
    let store = Operator::new(opendal::services::Memory::default()).unwrap();
    let context = Arc::new(CompactionContext::new(
        store,
        strata_storage::SstWriteOptions::default(),
        PickerOptions::default(),
    ));
    let (tx, rx) = mpsc::unbounded_channel();
    (
        CompactionScheduler::new(pool.clone(), context, tx),
        pool,
        rx,
    )
}

#[tokio::test]
async fn nothing_to_pick_starts_no_job() {
    let (mut scheduler, pool, _rx) = scheduler();
    let scheduled = scheduler.schedule(
        REGION,
        version(3).await,
        Arc::new(NeverCommits),
        PickMode::Automatic,
        0,
    );
    assert_eq!(scheduled, Scheduled::NothingToDo);
    assert!(!scheduler.is_running(REGION));
    assert!(pool.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn requests_during_a_job_coalesce_into_one_follow_up_of_the_strongest_mode() {
    let (mut scheduler, pool, _rx) = scheduler();
    let v = version(4).await;
    let started = scheduler.schedule(
        REGION,
        v.clone(),
        Arc::new(NeverCommits),
        PickMode::Automatic,
        0,
    );
    assert_eq!(started, Scheduled::Started);
    for mode in [PickMode::Manual, PickMode::Automatic] {
        let queued = scheduler.schedule(REGION, v.clone(), Arc::new(NeverCommits), mode, 0);
        assert_eq!(queued, Scheduled::Queued);
    }
    assert_eq!(pool.0.lock().unwrap().len(), 1, "one job per region");
    // A result of another execution is ignored; the running one's ends the status.
    assert!(scheduler.on_finished(REGION, 999).is_none());
    assert!(scheduler.is_running(REGION));
    let ended = scheduler.on_finished(REGION, 1).unwrap();
    assert_eq!(ended.follow_up, Some(PickMode::Manual));
    assert!(!scheduler.is_running(REGION));
}

#[tokio::test]
async fn a_ddl_cancels_the_running_job_which_still_reports_its_end() {
    let (mut scheduler, pool, mut rx) = scheduler();
    assert!(
        !scheduler.cancel(REGION, "truncate"),
        "nothing runs: the DDL goes on"
    );
    scheduler.schedule(
        REGION,
        version(4).await,
        Arc::new(NeverCommits),
        PickMode::Automatic,
        0,
    );
    assert!(scheduler.cancel(REGION, "drop"));
    // The job sees the cancellation (here before it reads anything) and reports it.
    let job = pool.0.lock().unwrap().pop().unwrap();
    job.await;
    let notify = rx.recv().await.unwrap();
    assert!(
        matches!(
            notify.result,
            Err(crate::CompactionError::Cancelled { by: "drop", .. })
        ),
        "{:?}",
        notify.result
    );
    let ended = scheduler
        .on_finished(notify.region_id, notify.execution_id)
        .unwrap();
    assert_eq!(ended.follow_up, None);
    assert!(!scheduler.is_running(REGION));
}
