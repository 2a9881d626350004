//! Random sequences of schedule / finish / fail / cancelled-follow-up events over several
//! regions: at most one flush per region is ever queued or running, every job reports
//! exactly once (also when dropped unrun), a follow-up runs only when one was asked for,
//! not cancelled, and rows remain, and no region keeps a status once it is idle.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use opendal::Operator;
use proptest::prelude::*;
use strata_flush::{
    AfterFlush, FlushContext, FlushError, FlushNotify, FlushReason, FlushScheduled, FlushScheduler,
};
use strata_request::{ColumnDataType, ColumnSchema, OpType, RegionId, RegionMetadataBuilder};
use strata_scheduler::{Job, Scheduler, SchedulerError, StopFuture};
use strata_storage::{
    Committer, ManifestConfig, ManifestManager, RegionCommitter, RegionState, SstWriteOptions,
    Version, VersionControl,
};
use tokio::sync::mpsc;

/// Holds jobs until the test runs them.
#[derive(Default)]
struct ManualPool {
    jobs: Mutex<Vec<Job>>,
}

impl std::fmt::Debug for ManualPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualPool")
            .field("jobs", &self.jobs.lock().unwrap().len())
            .finish()
    }
}

impl Scheduler for ManualPool {
    fn schedule(&self, job: Job) -> Result<(), SchedulerError> {
        self.jobs.lock().unwrap().push(job);
        Ok(())
    }

    fn stop(&self, _: bool) -> StopFuture<'_> {
        self.jobs.lock().unwrap().clear();
        Box::pin(async { Ok(()) })
    }
}

#[derive(Debug, Clone)]
enum Event {
    Write(usize),
    Schedule(usize),
    Run {
        fail: bool,
    },
    /// The region was dropped, closed or truncated: its follow-up is cancelled.
    Cancel(usize),
}

fn event() -> impl Strategy<Value = Event> {
    let region = 0usize..3;
    prop_oneof![
        4 => region.clone().prop_map(Event::Write),
        4 => region.clone().prop_map(Event::Schedule),
        3 => Just(Event::Run { fail: false }),
        1 => Just(Event::Run { fail: true }),
        2 => region.prop_map(Event::Cancel),
    ]
}

struct Region {
    id: RegionId,
    vc: Arc<VersionControl>,
    /// Makes the committer refuse (like a region that left a flushable state).
    committer: Arc<RegionCommitter>,
    dyn_committer: Arc<dyn Committer>,
    next_ts: i64,
    sequence: u64,
}

async fn regions(store: &Operator) -> Vec<Region> {
    let mut out = Vec::new();
    for n in 0..3u32 {
        let id = RegionId::new(9, n);
        let metadata = RegionMetadataBuilder::new(id)
            .column(ColumnSchema::tag("host"))
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .build()
            .unwrap();
        let manifest = ManifestManager::create(
            store.clone(),
            metadata,
            Default::default(),
            ManifestConfig::default(),
        )
        .await
        .unwrap();
        let vc = Arc::new(VersionControl::new(
            Version::from_manifest(manifest.manifest(), None).unwrap(),
        ));
        // A failed commit: the region left the writable state, as a read-only switch does.
        let committer = Arc::new(RegionCommitter::new(manifest, RegionState::Writable));
        out.push(Region {
            id,
            vc,
            dyn_committer: committer.clone(),
            committer,
            next_ts: 0,
            sequence: 0,
        });
    }
    out
}

fn write(region: &mut Region) {
    let version = region.vc.current().version().clone();
    let batch = RecordBatch::try_new(
        version.metadata().arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from(vec!["h"])) as ArrayRef,
            Arc::new(TimestampMillisecondArray::from(vec![region.next_ts])),
        ],
    )
    .unwrap();
    region.next_ts += 1;
    region.sequence += 1;
    version
        .memtables()
        .mutable()
        .write(&batch, OpType::Put, region.sequence)
        .unwrap();
    region
        .vc
        .set_sequence_and_entry_id(region.sequence, region.sequence);
}

/// Tags jobs the scheduler just queued with `region`, checks the one-flush rule, and
/// returns how many were queued.
fn collect_jobs(pool: &ManualPool, queue: &mut VecDeque<(usize, Job)>, region: usize) -> usize {
    let mut queued = 0;
    for job in pool.jobs.lock().unwrap().drain(..) {
        queue.push_back((region, job));
        queued += 1;
    }
    let per_region = queue.iter().filter(|(r, _)| *r == region).count();
    assert!(
        per_region <= 1,
        "region {region} has {per_region} flushes queued or running"
    );
    queued
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64 * std::env::var("STRATA_STRESS").ok().and_then(|s| s.parse().ok()).unwrap_or(1u32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn flush_scheduling_keeps_its_invariants(events in proptest::collection::vec(event(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let store = Operator::new(opendal::services::Memory::default()).unwrap();
            let mut regions = regions(&store).await;
            let pool = Arc::new(ManualPool::default());
            let context = Arc::new(FlushContext::new(store.clone(), SstWriteOptions::default(), 2));
            let (tx, mut rx) = mpsc::unbounded_channel::<FlushNotify>();
            let mut scheduler = FlushScheduler::new(pool.clone(), context, tx);
            let mut queue: VecDeque<(usize, Job)> = VecDeque::new();
            // Per region: a follow-up asked for and not cancelled since its flush started.
            let mut follow_up = [false; 3];
            let mut reports = 0usize;
            let mut jobs = 0usize;

            for event in events {
                match event {
                    Event::Write(r) => write(&mut regions[r]),
                    Event::Schedule(r) => {
                        let busy = scheduler.is_flush_requested(regions[r].id);
                        let scheduled = scheduler
                            .schedule_flush(&regions[r].vc, &regions[r].dyn_committer, regions[r].id, FlushReason::Manual)
                            .unwrap();
                        let empty = regions[r].vc.current().version().memtables().is_empty();
                        let expected = match (empty, busy) {
                            (true, _) => FlushScheduled::NothingToFlush,
                            (false, true) => FlushScheduled::Queued,
                            (false, false) => FlushScheduled::Started,
                        };
                        assert_eq!(scheduled, expected);
                        if scheduled == FlushScheduled::Queued {
                            follow_up[r] = true;
                        }
                        jobs += collect_jobs(&pool, &mut queue, r);
                    }
                    Event::Run { fail } => {
                        let Some((r, job)) = queue.pop_front() else { continue };
                        let state = if fail { RegionState::ReadOnly } else { RegionState::Writable };
                        regions[r].committer.set_state(state).await;
                        job.await;
                        regions[r].committer.set_state(RegionState::Writable).await;
                        // The worker's handling of the report.
                        let report = rx.try_recv().unwrap();
                        reports += 1;
                        assert!(rx.try_recv().is_err(), "one report per job");
                        match report {
                            FlushNotify::Finished(f) => {
                                assert_eq!(f.region_id, regions[r].id);
                                regions[r].vc.apply_edit(&f.edit, &f.memtables_to_remove);
                                let rows_left = !regions[r].vc.current().version().memtables().is_empty();
                                let after = scheduler.on_flush_success(f.region_id);
                                let started = jobs + collect_jobs(&pool, &mut queue, r);
                                match after {
                                    AfterFlush::FollowUpStarted => {
                                        assert!(follow_up[r] && rows_left, "an unasked follow-up ran");
                                        assert_eq!(started, jobs + 1);
                                    }
                                    AfterFlush::Ended => {
                                        assert!(!(follow_up[r] && rows_left), "an asked follow-up did not run");
                                        assert_eq!(started, jobs);
                                    }
                                    AfterFlush::FollowUpFailed(error) => panic!("{error}"),
                                }
                                jobs = started;
                                follow_up[r] = false;
                            }
                            FlushNotify::Failed { region_id, .. } => {
                                assert!(fail);
                                scheduler.on_flush_failed(region_id);
                                follow_up[r] = false;
                            }
                        }
                    }
                    Event::Cancel(r) => {
                        scheduler.cancel_follow_up(regions[r].id);
                        follow_up[r] = false;
                    }
                }
                // Idle regions (nothing queued or running) keep no status.
                for (i, region) in regions.iter().enumerate() {
                    if !queue.iter().any(|(r, _)| *r == i) {
                        assert!(!scheduler.is_flush_requested(region.id), "idle region {i} kept a status");
                    }
                }
            }
            // Shut down: queued jobs dropped unrun still report (as `Dropped`).
            let unrun = queue.len();
            queue.clear();
            let mut dropped = 0;
            while let Ok(report) = rx.try_recv() {
                assert!(matches!(report, FlushNotify::Failed { error: FlushError::Dropped { .. }, .. }));
                dropped += 1;
            }
            assert_eq!(dropped, unrun);
            assert_eq!(reports + dropped, jobs, "every job reported exactly once");
        });
    }
}
