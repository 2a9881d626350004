use std::sync::atomic::AtomicBool;

use proptest::prelude::*;
use tokio::sync::{Semaphore, oneshot};

use super::*;

/// Sets its flag when dropped: stands in for a job's waiters.
struct DropSignal(Arc<AtomicBool>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A job that reports it started, then waits for `gate` before finishing.
fn gated_job(gate: Arc<Semaphore>, finished: Arc<AtomicUsize>) -> (Job, oneshot::Receiver<()>) {
    let (started_tx, started_rx) = oneshot::channel();
    let job = Box::pin(async move {
        let _ = started_tx.send(());
        let _permit = gate.acquire().await;
        finished.fetch_add(1, Ordering::SeqCst);
    });
    (job, started_rx)
}

/// A job that must never run; its drop is observable.
fn droppable_job(ran: Arc<AtomicBool>, dropped: Arc<AtomicBool>) -> Job {
    let signal = DropSignal(dropped);
    Box::pin(async move {
        let _signal = signal;
        ran.store(true, Ordering::SeqCst);
    })
}

#[tokio::test]
async fn runs_every_scheduled_job() {
    let scheduler = LocalScheduler::new("test", 3).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let count = count.clone();
        scheduler
            .schedule(Box::pin(async move {
                count.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
    }
    scheduler.stop(true).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn stop_with_await_termination_runs_the_queued_jobs() {
    let scheduler = LocalScheduler::new("test", 1).unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (first, started) = gated_job(gate.clone(), finished.clone());
    scheduler.schedule(first).unwrap();
    started.await.unwrap();
    for _ in 0..3 {
        let (job, _) = gated_job(gate.clone(), finished.clone());
        scheduler.schedule(job).unwrap();
    }
    assert_eq!(scheduler.queued_jobs(), 3);
    gate.add_permits(4);
    scheduler.stop(true).await.unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn stop_without_await_finishes_running_jobs_and_drops_queued_ones() {
    let scheduler = Arc::new(LocalScheduler::new("test", 1).unwrap());
    let gate = Arc::new(Semaphore::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (running, started) = gated_job(gate.clone(), finished.clone());
    scheduler.schedule(running).unwrap();
    started.await.unwrap();

    let ran = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    scheduler
        .schedule(droppable_job(ran.clone(), dropped.clone()))
        .unwrap();

    let stopping = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.stop(false).await }
    });
    // The running job is not interrupted: stop waits for it.
    tokio::task::yield_now().await;
    assert!(!stopping.is_finished());
    gate.add_permits(1);
    stopping.await.unwrap().unwrap();

    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the running job completed"
    );
    assert!(!ran.load(Ordering::SeqCst), "the queued job never ran");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the queued job was dropped by stop()"
    );
}

#[tokio::test]
async fn scheduling_after_stop_is_a_typed_error_and_drops_the_job() {
    let scheduler = LocalScheduler::new("flush", 2).unwrap();
    scheduler.stop(true).await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let err = scheduler
        .schedule(droppable_job(ran.clone(), dropped.clone()))
        .unwrap_err();
    assert_eq!(
        err,
        SchedulerError::Stopped {
            name: "flush".into()
        }
    );
    assert!(dropped.load(Ordering::SeqCst));
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(
        scheduler.stop(true).await.unwrap_err(),
        SchedulerError::AlreadyStopped {
            name: "flush".into()
        }
    );
    assert!(!scheduler.is_running());
}

#[tokio::test]
async fn a_panicking_job_does_not_shrink_the_pool() {
    let scheduler = LocalScheduler::new("test", 1).unwrap();
    scheduler
        .schedule(Box::pin(async { panic!("job failure under test") }))
        .unwrap();
    let (tx, rx) = oneshot::channel();
    scheduler
        .schedule(Box::pin(async move {
            let _ = tx.send(());
        }))
        .unwrap();
    rx.await.unwrap();
    scheduler.stop(true).await.unwrap();
}

#[tokio::test]
async fn dropping_the_scheduler_drops_queued_jobs() {
    let scheduler = LocalScheduler::new("test", 1).unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (running, started) = gated_job(gate.clone(), Arc::new(AtomicUsize::new(0)));
    scheduler.schedule(running).unwrap();
    started.await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    scheduler
        .schedule(droppable_job(ran.clone(), dropped.clone()))
        .unwrap();
    drop(scheduler);
    assert!(dropped.load(Ordering::SeqCst));
    assert!(!ran.load(Ordering::SeqCst));
    gate.add_permits(1);
}

#[test]
fn creating_outside_a_runtime_is_a_typed_error() {
    let err = LocalScheduler::new("purge", 1).unwrap_err();
    assert_eq!(
        err,
        SchedulerError::NoRuntime {
            name: "purge".into()
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// However many jobs and whatever the limit, no more than `concurrency` jobs ever run at
    /// once, the limit is reached when there is enough work, and every job runs.
    #[test]
    fn never_more_than_concurrency_jobs_run_at_once(concurrency in 1usize..6, jobs in 0usize..40) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let (max_seen, done) = runtime.block_on(async move {
            let scheduler = LocalScheduler::new("prop", concurrency).unwrap();
            let in_flight = Arc::new(AtomicUsize::new(0));
            let max_seen = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            // Hold every job until all are queued, so the pool is saturated.
            let gate = Arc::new(Semaphore::new(0));
            for _ in 0..jobs {
                let (in_flight, max_seen, done, gate) =
                    (in_flight.clone(), max_seen.clone(), done.clone(), gate.clone());
                scheduler.schedule(Box::pin(async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    let _permit = gate.acquire().await;
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                })).unwrap();
            }
            // Wait until the pool is saturated before opening the gate: every job it runs
            // has entered its body (a job counted running may not have been polled yet,
            // and would then enter only after others left: flaky under load).
            while scheduler.running_jobs() < jobs.min(concurrency)
                || in_flight.load(Ordering::SeqCst) < jobs.min(concurrency)
            {
                tokio::task::yield_now().await;
            }
            gate.add_permits(jobs);
            scheduler.stop(true).await.unwrap();
            (max_seen.load(Ordering::SeqCst), done.load(Ordering::SeqCst))
        });
        prop_assert!(max_seen <= concurrency, "max {max_seen} > limit {concurrency}");
        prop_assert_eq!(max_seen, jobs.min(concurrency));
        prop_assert_eq!(done, jobs);
    }
}
