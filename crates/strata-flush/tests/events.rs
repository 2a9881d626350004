//! Random sequences of schedule / finish / fail / drop / close / truncate events over
//! several regions: at most one flush per region is ever queued or running, every waiter
//! (flush callers, fenced DDLs and writes) is answered exactly once, and no region keeps a
//! status once it is idle.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use futures::FutureExt;
use opendal::Operator;
use proptest::prelude::*;
use strata_flush::{
    FlushContext, FlushError, FlushNotify, FlushReason, FlushScheduler, PendingRequest,
    RegionFlushTask,
};
use strata_request::{
    ColumnDataType, ColumnSchema, OpType, OutputTx, RegionId, RegionMetadataBuilder, Reply,
    Unanswered, reply_channel,
};
use strata_scheduler::{Job, Scheduler, SchedulerError, StopFuture};
use strata_storage::{
    Committer, ManifestConfig, ManifestManager, RegionCommitter, RegionState, SstWriteOptions,
    Version, VersionControl,
};
use tokio::sync::mpsc;

#[derive(Debug)]
struct TestError;

impl From<FlushError> for TestError {
    fn from(_: FlushError) -> Self {
        TestError
    }
}

impl From<Unanswered> for TestError {
    fn from(_: Unanswered) -> Self {
        TestError
    }
}

struct Pending(OutputTx<usize, TestError>);

impl PendingRequest for Pending {
    fn fail(self, error: FlushError) {
        self.0.send(Err(error.into()));
    }
}

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
    FenceDdl(usize),
    FenceWrite(usize),
    Run { fail: bool },
    Drop(usize),
    Close(usize),
    Truncate(usize),
}

fn event() -> impl Strategy<Value = Event> {
    let region = 0usize..3;
    prop_oneof![
        4 => region.clone().prop_map(Event::Write),
        4 => region.clone().prop_map(Event::Schedule),
        1 => region.clone().prop_map(Event::FenceDdl),
        1 => region.clone().prop_map(Event::FenceWrite),
        3 => Just(Event::Run { fail: false }),
        1 => Just(Event::Run { fail: true }),
        1 => region.clone().prop_map(Event::Drop),
        1 => region.clone().prop_map(Event::Close),
        1 => region.prop_map(Event::Truncate),
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

type Sched = FlushScheduler<TestError, Pending, Pending>;

/// Tags jobs the scheduler just queued with `region` and checks the one-flush rule.
fn collect_jobs(pool: &ManualPool, queue: &mut VecDeque<(usize, Job)>, region: usize) {
    for job in pool.jobs.lock().unwrap().drain(..) {
        queue.push_back((region, job));
    }
    let per_region = queue.iter().filter(|(r, _)| *r == region).count();
    assert!(
        per_region <= 1,
        "region {region} has {per_region} flushes queued or running"
    );
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
            let (tx, mut rx) = mpsc::unbounded_channel::<FlushNotify<TestError>>();
            let mut scheduler: Sched = FlushScheduler::new(pool.clone(), context, tx);
            let mut queue: VecDeque<(usize, Job)> = VecDeque::new();
            let mut replies: Vec<Reply<usize, TestError>> = Vec::new();

            for event in events {
                match event {
                    Event::Write(r) => write(&mut regions[r]),
                    Event::Schedule(r) => {
                        let (reply_tx, reply) = reply_channel();
                        let mut task = RegionFlushTask::new(regions[r].id, FlushReason::Manual);
                        task.push_waiter(Some(reply_tx));
                        let _ = scheduler.schedule_flush(&regions[r].vc, &regions[r].dyn_committer, task);
                        replies.push(reply);
                        collect_jobs(&pool, &mut queue, r);
                    }
                    Event::FenceDdl(r) | Event::FenceWrite(r) => {
                        let (reply_tx, reply) = reply_channel();
                        let fenced = if matches!(event, Event::FenceDdl(_)) {
                            scheduler.add_ddl_request_to_pending(regions[r].id, Pending(reply_tx))
                        } else {
                            scheduler.add_write_request_to_pending(regions[r].id, Pending(reply_tx))
                        };
                        // Not fenced: the worker would run it now; here it just succeeds.
                        if let Err(Pending(tx)) = fenced {
                            tx.send(Ok(0));
                        }
                        replies.push(reply);
                    }
                    Event::Run { fail } => {
                        let Some((r, job)) = queue.pop_front() else { continue };
                        let state = if fail { RegionState::ReadOnly } else { RegionState::Writable };
                        regions[r].committer.set_state(state).await;
                        job.await;
                        regions[r].committer.set_state(RegionState::Writable).await;
                        // The worker's handling of the outcome.
                        match rx.try_recv().unwrap() {
                            FlushNotify::Finished(f) => {
                                let region = regions.iter().position(|x| x.id == f.region_id).unwrap();
                                regions[region].vc.apply_edit(&f.edit, &f.memtables_to_remove);
                                f.task.on_success();
                                if let Some(released) = scheduler.on_flush_success(f.region_id) {
                                    for p in released.ddls.into_iter().chain(released.writes) {
                                        p.0.send(Ok(0));
                                    }
                                }
                                collect_jobs(&pool, &mut queue, region);
                            }
                            FlushNotify::Failed { region_id, error } => { scheduler.on_flush_failed(region_id, error); }
                        }
                    }
                    Event::Drop(r) => scheduler.on_region_dropped(regions[r].id),
                    Event::Close(r) => scheduler.on_region_closed(regions[r].id),
                    Event::Truncate(r) => scheduler.on_region_truncated(regions[r].id),
                }
                // Idle regions (nothing queued or running) keep no status.
                for (i, region) in regions.iter().enumerate() {
                    if !queue.iter().any(|(r, _)| *r == i) {
                        assert!(!scheduler.is_flush_requested(region.id), "idle region {i} kept a status");
                    }
                }
            }
            // Shut down: queued jobs dropped, scheduler dropped. Every waiter has an answer.
            queue.clear();
            drop(scheduler);
            for reply in replies {
                assert!(reply.now_or_never().is_some(), "a waiter was left unanswered");
            }
        });
    }
}
