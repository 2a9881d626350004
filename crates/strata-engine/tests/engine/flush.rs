//! Flush triggers: manual, engine full, periodic, multi-worker; flush + reopen ids.

use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_engine::{RegionId, ScanRequest};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_flush_moves_memtable_rows_into_one_file() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..10, 1000, 1.0).await;
    engine.flush(region).await.unwrap();
    let stats = engine.region_stats(region).unwrap();
    assert_eq!(stats.memtable_bytes, 0);
    assert_eq!(stats.immutable_memtables, 0);
    assert_eq!(stats.num_files, 1);
    assert_eq!(stats.file_rows, 10);
    assert_eq!(scan(&engine, region).await.len(), 10);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_an_empty_region_succeeds_without_files() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    engine.flush(region).await.unwrap();
    assert_eq!(engine.region_stats(region).unwrap().num_files, 0);
    assert_eq!(
        count(&env.listener.flush_begun),
        0,
        "no job runs for nothing"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_full_flushes_on_the_next_write() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..10, 1000, 1.0).await;
    // Held, so the engine is no longer full when it lands (a finished flush checks again,
    // and would flush the second write's rows too).
    env.listener.hold_flushes();
    env.buffer.force_flush.store(true, Ordering::SeqCst);
    put(&engine, region, 0..10, 2000, 1.0).await;
    env.listener
        .wait_for("the engine-full flush to start", 1, |l| {
            count(&l.flush_begun)
        })
        .await;
    env.buffer.force_flush.store(false, Ordering::SeqCst);
    env.listener.release_flushes();
    env.listener
        .wait_for("engine-full flush", 1, |l| count(&l.flush_success))
        .await;
    let stats = engine.region_stats(region).unwrap();
    assert_eq!(stats.num_files, 1);
    assert_eq!(
        stats.file_rows, 10,
        "the flush took the rows before the write"
    );
    assert_eq!(scan(&engine, region).await.len(), 20);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_idle_past_auto_flush_interval_is_flushed_by_the_periodic_check() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.auto_flush_interval = Duration::from_secs(600);
    let engine = env.engine_with(config).await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..5, 1000, 1.0).await;
    // Past the random initial delay (≤ 180 s) and the interval.
    env.clock.advance(Duration::from_secs(599));
    env.clock.advance(Duration::from_secs(200));
    env.listener
        .wait_for("periodic flush", 1, |l| count(&l.flush_success))
        .await;
    assert_eq!(engine.region_stats(region).unwrap().num_files, 1);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_flushes_its_regions_when_another_worker_flushes() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    // Table 1: region 0 → worker 1, region 1 → worker 0 (two workers).
    let (busy, idle) = (RegionId::new(1, 0), RegionId::new(1, 1));
    create(&engine, busy).await;
    create(&engine, idle).await;
    put(&engine, busy, 0..10, 1000, 1.0).await;
    put(&engine, idle, 0..10, 1000, 1.0).await;
    env.buffer.force_flush.store(true, Ordering::SeqCst);
    put(&engine, busy, 0..10, 2000, 1.0).await;
    // Worker 0 never received a request: it flushes because worker 1's flush notified it.
    env.listener
        .wait_until("the idle region flushed", || {
            engine.region_stats(idle).unwrap().num_files == 1
        })
        .await;
    env.buffer.force_flush.store(false, Ordering::SeqCst);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_then_reopen_keeps_exact_entry_ids_and_sequences() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 0);
    {
        let engine = env.engine().await;
        create(&engine, region).await;
        put(&engine, region, 0..3, 1000, 1.0).await;
        engine.flush(region).await.unwrap();
        let s = engine.region_stats(region).unwrap();
        assert_eq!((s.last_entry_id, s.flushed_entry_id), (1, 1));
        assert_eq!((s.committed_sequence, s.flushed_sequence), (3, 3));
        engine.stop().await.unwrap();
    }
    let engine = env.engine().await;
    engine.open(region).await.unwrap();
    let s = engine.region_stats(region).unwrap();
    assert_eq!((s.last_entry_id, s.committed_sequence), (1, 3));
    put(&engine, region, 3..5, 1000, 1.0).await;
    let s = engine.region_stats(region).unwrap();
    assert_eq!((s.last_entry_id, s.committed_sequence), (2, 5));
    assert_eq!(scan(&engine, region).await.len(), 5);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_replays_unflushed_rows_with_their_sequences_and_newest_wins() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 0);
    {
        let engine = env.engine().await;
        create(&engine, region).await;
        put(&engine, region, 0..4, 1000, 1.0).await;
        engine.flush(region).await.unwrap();
        put(&engine, region, 0..2, 1000, 50.0).await; // overwrites host0, host1
        put(&engine, region, 4..6, 1000, 1.0).await;
        engine.stop().await.unwrap();
    }
    let engine = env.engine().await;
    engine.open(region).await.unwrap();
    let s = engine.region_stats(region).unwrap();
    assert_eq!((s.flushed_entry_id, s.last_entry_id), (1, 3));
    assert_eq!(s.committed_sequence, 8);
    let rows = scan(&engine, region).await;
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[&("host0".to_string(), 1000)], 50.0);
    assert_eq!(rows[&("host3".to_string(), 1000)], 4.0);
    let limited = engine
        .scan_to_vec(region, ScanRequest::new().max_sequence(4))
        .await
        .unwrap();
    assert_eq!(limited.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
    engine.stop().await.unwrap();
}

/// Memory already being flushed does not ask for more flushes: with the budget full of
/// a long flush's frozen memtables, a write to another region stalls until that flush
/// lands instead of flushing the small region for nothing (the saw W3 used to show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_full_of_memory_being_flushed_stalls_writes_without_flushing_more_regions() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.num_workers = 1;
    let engine = std::sync::Arc::new(env.engine_with(config).await);
    let (big, small) = (RegionId::new(1, 0), RegionId::new(1, 1));
    create(&engine, big).await;
    create(&engine, small).await;
    put(&engine, big, 0..100, 1000, 1.0).await;
    put(&engine, small, 0..2, 1000, 1.0).await;
    env.listener.hold_flushes();
    let long_flush = tokio::spawn({
        let engine = engine.clone();
        async move { engine.flush(big).await }
    });
    env.listener
        .wait_for("the long flush to start", 1, |l| count(&l.flush_begun))
        .await;
    // The budget is full, nearly all of it frozen (being flushed).
    env.buffer.force_stall.store(true, Ordering::SeqCst);
    let writer = spawn_write(&engine, small, rows(2..4, 1000, 2.0));
    env.listener
        .wait_for("the write stalls", 1, |l| count(&l.stalls))
        .await;
    assert_eq!(
        env.flush_requests("engine_full"),
        0,
        "no flush of the small region"
    );
    assert_eq!(
        engine.region_stats(small).unwrap().immutable_memtables,
        0,
        "nothing of the small region frozen"
    );
    env.buffer.force_stall.store(false, Ordering::SeqCst);
    env.listener.release_flushes();
    within("the long flush", long_flush).await.unwrap().unwrap();
    assert_eq!(
        within("the stalled write", writer).await.unwrap().unwrap(),
        2
    );
    assert_eq!(engine.region_stats(small).unwrap().num_files, 0);
    assert_eq!(scan(&engine, small).await.len(), 4);
    engine.stop().await.unwrap();
}

/// The other side of that rule: frozen memtables that no flush is writing (their flush
/// failed) are flushed again when writes stall — once the failed region's backoff ends,
/// on the engine clock, even with every writer waiting and nothing else to wake the
/// worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_memtables_of_a_failed_flush_are_flushed_again_when_writes_stall_after_the_backoff()
{
    let env = TestEnv::new();
    let mut config = env.config();
    config.num_workers = 1;
    let engine = std::sync::Arc::new(env.engine_with(config).await);
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..10, 1000, 1.0).await;
    env.faults.fail_writes_containing("/data/");
    engine.flush(region).await.unwrap_err();
    // The caller hears of the failure before the worker does.
    env.listener
        .wait_for("the worker to see the failure", 1, |l| {
            count(&l.flush_failed)
        })
        .await;
    assert_eq!(engine.region_stats(region).unwrap().immutable_memtables, 1);
    env.faults.clear();
    // The budget is full of the stranded memtable: writes stall.
    env.buffer.force_stall.store(true, Ordering::SeqCst);
    let writer = spawn_write(&engine, region, rows(10..12, 1000, 2.0));
    env.listener
        .wait_for("the write stalls", 1, |l| count(&l.stalls))
        .await;
    assert_eq!(env.flush_requests("engine_full"), 0, "backing off");
    env.clock.advance(Duration::from_millis(1_500));
    env.listener
        .wait_for("the stranded memtable flushed", 1, |l| {
            count(&l.flush_success)
        })
        .await;
    assert_eq!(env.flush_requests("engine_full"), 1);
    env.buffer.force_stall.store(false, Ordering::SeqCst);
    assert_eq!(
        within("the stalled write", writer).await.unwrap().unwrap(),
        2
    );
    let stats = engine.region_stats(region).unwrap();
    assert_eq!((stats.num_files, stats.file_rows), (1, 10));
    assert_eq!(scan(&engine, region).await.len(), 12);
    engine.stop().await.unwrap();
}
