//! Compaction end to end: manual and automatic merges keep every scan's answer, windows
//! end as one file each, TTL drops expired files and rows, DDLs cancel a running job and
//! still run, a failed job leaves its inputs alone, and outputs of a crash before the
//! commit are swept at the next open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_engine::{
    Clock, CreateRequest, Engine, ErrorKind, RegionId, RegionOptions, ScanRequest, WriteRequest,
};

use crate::common::*;

const HOUR: i64 = 3_600_000;

/// Automatic compaction off: these tests decide when compactions run.
fn manual_config(env: &TestEnv) -> strata_engine::EngineConfig {
    let mut config = env.config();
    config.compaction.enabled = false;
    config
}

/// An engine with automatic compaction off whose deletions wait in `pool` until the test
/// runs them.
async fn engine_with_queued_purges(env: &TestEnv) -> (Engine, Arc<QueuedPool>) {
    let pool = Arc::new(QueuedPool::default());
    let engine = env
        .builder(manual_config(env))
        .purge_pool(pool.clone() as strata_engine::SchedulerRef)
        .build()
        .await
        .unwrap();
    (engine, pool)
}

/// Deletes host `i` at `ts`.
async fn delete(engine: &Engine, region: RegionId, hosts: std::ops::Range<usize>, ts: i64) {
    engine
        .write(WriteRequest::delete(region, rows(hosts, ts, 0.0)))
        .await
        .unwrap();
}

/// Six flushes over two one-hour windows with overwrites and deletes; returns what a scan
/// must return.
async fn layered_region(engine: &Engine, region: RegionId) -> BTreeMap<(String, i64), f64> {
    create_with_window(engine, region).await;
    for round in 0..6 {
        let base = (round % 2) * HOUR;
        put(engine, region, 0..40, base + 1_000, round as f64).await;
        put(
            engine,
            region,
            (round as usize)..(round as usize + 10),
            base + 2_000,
            100.0,
        )
        .await;
        if round == 3 {
            // Hosts 0..4 at 2,000 were written by rounds 0 and 2 and are not written again.
            delete(engine, region, 0..4, 2_000).await;
        }
        engine.flush(region).await.unwrap();
    }
    scan(engine, region).await
}

async fn create_with_window(engine: &Engine, region: RegionId) {
    engine
        .create(
            CreateRequest::new(metadata(region))
                .options(RegionOptions::default().compaction_window(Duration::from_secs(3_600))),
        )
        .await
        .unwrap();
}

/// Files per window (by newest row) and their levels.
fn windows(engine: &Engine, region: RegionId) -> BTreeMap<i64, Vec<u8>> {
    let mut out: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    for file in engine.region_files(region).unwrap() {
        out.entry(file.time_range.1.div_euclid(HOUR))
            .or_default()
            .push(file.level);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_compaction_leaves_one_file_per_window_and_every_scan_unchanged() {
    let env = TestEnv::new();
    let (engine, pool) = engine_with_queued_purges(&env).await;
    let region = RegionId::new(1, 0);
    let expected = layered_region(&engine, region).await;
    assert_eq!(
        windows(&engine, region)
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        7,
        "the flush with the delete (window 0) also had rows in window 1"
    );
    assert!(
        !expected.contains_key(&("host0".to_string(), 2_000)),
        "deleted"
    );
    assert!(expected.contains_key(&("host4".to_string(), 2_000)));

    let inputs = engine.region_files(region).unwrap();
    let stats = engine.compact(region).await.unwrap();
    assert_eq!(
        windows(&engine, region),
        BTreeMap::from([(0, vec![1]), (1, vec![1])]),
        "one level-1 file per window"
    );
    assert_eq!(scan(&engine, region).await, expected);
    // What it says it did is what happened: every input removed, one output per window,
    // window by window summing to the totals.
    let outputs = engine.region_files(region).unwrap();
    assert_eq!(stats.files_removed, 7);
    assert_eq!(stats.files_added, 2);
    assert_eq!(
        stats.rows_read,
        inputs.iter().map(|f| f.num_rows).sum::<u64>()
    );
    assert_eq!(
        stats.rows_written,
        outputs.iter().map(|f| f.num_rows).sum::<u64>()
    );
    assert_eq!(
        stats.bytes_written,
        outputs.iter().map(|f| f.file_size).sum::<u64>()
    );
    let per_window: Vec<(i64, u64, u64)> = stats
        .windows
        .iter()
        .map(|w| (w.window_start, w.before.files, w.after.files))
        .collect();
    let mut inputs_per_window = BTreeMap::new();
    for file in &inputs {
        *inputs_per_window
            .entry(file.time_range.1.div_euclid(HOUR) * HOUR)
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_window,
        inputs_per_window
            .iter()
            .map(|(&start, &files)| (start, files, 1))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        stats.windows.iter().map(|w| w.after.rows).sum::<u64>(),
        stats.rows_written
    );
    // A time-range scan of one window is unchanged too.
    let one_window = engine
        .scan_to_vec(
            region,
            ScanRequest::new().time_range(strata_storage::TimeRange {
                start: HOUR,
                end: 2 * HOUR - 1,
            }),
        )
        .await
        .unwrap();
    let rows: usize = one_window.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, expected.keys().filter(|(_, ts)| *ts >= HOUR).count());
    // The inputs are deleted on the purge pool; the outputs stay.
    pool.wait_for_jobs(7).await;
    pool.run_all().await;
    assert_eq!(sst_files(&env, region).len(), 2);

    // Nothing left to do: the next compaction is a no-op, and the state survives a reopen.
    let stats = engine.compact(region).await.unwrap();
    assert_eq!(
        stats,
        strata_engine::CompactionStats::default(),
        "did nothing"
    );
    assert_eq!(engine.region_files(region).unwrap().len(), 2);
    engine.close(region).await.unwrap();
    engine.open(region).await.unwrap();
    assert_eq!(scan(&engine, region).await, expected);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_reaching_the_trigger_are_compacted_automatically() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 1);
    create_with_window(&engine, region).await;
    for round in 0..4 {
        put(&engine, region, 0..20, 1_000 + round, round as f64).await;
        engine.flush(region).await.unwrap();
    }
    env.listener
        .wait_for("automatic compaction", 1, |l| count(&l.compactions_applied))
        .await;
    let files = engine.region_files(region).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].level, 1);
    assert_eq!(files[0].num_rows, 80);
    assert_eq!(scan(&engine, region).await.len(), 80);
    // The metrics say the same.
    let metric = |name: &str, label: (&str, &str)| -> f64 {
        env.registry
            .lock()
            .unwrap()
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == label.0 && l.value() == label.1)
            })
            .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
            .sum()
    };
    assert_eq!(
        metric("strata_compaction_started_total", ("mode", "automatic")),
        1.0
    );
    assert_eq!(
        metric("strata_compaction_rows_total", ("direction", "read")),
        80.0
    );
    assert_eq!(
        metric("strata_compaction_rows_total", ("direction", "written")),
        80.0
    );
    assert_eq!(metric("strata_compaction_files", ("level", "1")), 1.0);
    assert_eq!(metric("strata_compaction_files", ("level", "0")), 0.0);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_flush_records_the_inferred_window_and_a_reopen_keeps_it() {
    let env = TestEnv::new();
    let engine = env.engine_with(manual_config(&env)).await;
    let region = RegionId::new(1, 2);
    create(&engine, region).await;
    // Three hours of data in the first flush: the smallest standard window covering it
    // is twelve hours.
    put(&engine, region, 0..2, 0, 1.0).await;
    put(&engine, region, 0..2, 3 * HOUR, 1.0).await;
    engine.flush(region).await.unwrap();
    assert_eq!(
        engine.compaction_window(region).unwrap(),
        Some(Duration::from_secs(43_200))
    );
    // Later data spanning weeks does not change it, across a reopen either.
    put(&engine, region, 0..2, 30 * 24 * HOUR, 1.0).await;
    engine.flush(region).await.unwrap();
    engine.close(region).await.unwrap();
    engine.open(region).await.unwrap();
    assert_eq!(
        engine.compaction_window(region).unwrap(),
        Some(Duration::from_secs(43_200))
    );
    // Each flush wrote one file per window it touched.
    assert_eq!(engine.region_files(region).unwrap().len(), 2);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_spanning_windows_writes_one_file_per_window() {
    let env = TestEnv::new();
    let engine = env.engine_with(manual_config(&env)).await;
    let region = RegionId::new(1, 3);
    create_with_window(&engine, region).await;
    for hour in 0..3 {
        put(&engine, region, 0..5, hour * HOUR + 10, hour as f64).await;
    }
    engine.flush(region).await.unwrap();
    assert_eq!(
        windows(&engine, region),
        BTreeMap::from([(0, vec![0]), (1, vec![0]), (2, vec![0])])
    );
    assert_eq!(scan(&engine, region).await.len(), 15);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_drops_expired_files_whole_and_expired_rows_when_it_rewrites() {
    let env = TestEnv::new();
    let engine = env.engine_with(manual_config(&env)).await;
    let region = RegionId::new(1, 4);
    engine
        .create(
            CreateRequest::new(metadata(region)).options(
                RegionOptions::default()
                    .ttl(Duration::from_secs(3 * 3_600))
                    .compaction_window(Duration::from_secs(3_600)),
            ),
        )
        .await
        .unwrap();
    let now = env.clock.now_millis();
    let hour_start = now - now.rem_euclid(HOUR);
    // One file wholly in an old window, one straddling the cutoff-to-be, one recent.
    put(&engine, region, 0..10, hour_start - 2 * HOUR, 1.0).await;
    engine.flush(region).await.unwrap();
    put(&engine, region, 0..10, hour_start - HOUR + 5, 2.0).await;
    put(&engine, region, 0..10, hour_start - HOUR / 2, 3.0).await;
    engine.flush(region).await.unwrap();
    put(&engine, region, 0..10, hour_start, 4.0).await;
    engine.flush(region).await.unwrap();
    assert_eq!(engine.region_files(region).unwrap().len(), 3);

    // Two hours later: the first file has expired whole; the second holds one expired
    // timestamp and one live one.
    env.clock.advance(Duration::from_millis(
        u64::try_from(hour_start + 2 * HOUR - now + 10).unwrap(),
    ));
    let cutoff = env.clock.now_millis() - 3 * HOUR;
    assert!(hour_start - HOUR + 5 < cutoff && cutoff <= hour_start - HOUR / 2);
    let visible = scan(&engine, region).await;
    assert_eq!(visible.len(), 20);

    engine.compact(region).await.unwrap();
    let files = engine.region_files(region).unwrap();
    assert_eq!(files.len(), 2, "the expired file is gone: {files:?}");
    let rows: u64 = files.iter().map(|f| f.num_rows).sum();
    assert_eq!(rows, 20, "the rewritten file lost its expired rows");
    assert_eq!(scan(&engine, region).await, visible);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_during_a_compaction_cancels_it_runs_and_leaves_no_output_behind() {
    let env = TestEnv::new();
    let (engine, pool) = engine_with_queued_purges(&env).await;
    let region = RegionId::new(1, 5);
    layered_region(&engine, region).await;
    env.listener.hold_compactions();
    let compact = {
        let engine = std::sync::Arc::new(engine);
        let task = tokio::spawn({
            let engine = engine.clone();
            async move { engine.compact(region).await }
        });
        env.listener
            .wait_for("outputs written", 1, |l| count(&l.compactions_written))
            .await;
        let truncate = tokio::spawn({
            let engine = engine.clone();
            async move { engine.truncate(region).await }
        });
        // The truncate cancels the job and waits for it, which waits at the hold.
        env.listener
            .wait_for("compaction cancelled", 1, |l| {
                count(&l.compactions_cancelled)
            })
            .await;
        assert!(!truncate.is_finished());
        env.listener.release_compactions();
        truncate.await.unwrap().unwrap();
        let error = task.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RegionState, "{error}");
        assert!(
            error.to_string().contains("cancelled by a truncate"),
            "{error}"
        );
        engine
    };
    assert!(scan(&compact, region).await.is_empty());
    // The cancelled job deleted its outputs itself; the truncated inputs go on the pool.
    assert_eq!(sst_files(&env, region).len(), 7);
    pool.wait_for_jobs(7).await;
    pool.run_all().await;
    assert!(sst_files(&env, region).is_empty());
    compact.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_compaction_keeps_its_inputs_and_a_later_one_succeeds() {
    let env = TestEnv::new();
    let engine = env.engine_with(manual_config(&env)).await;
    let region = RegionId::new(1, 6);
    let expected = layered_region(&engine, region).await;
    let before: Vec<_> = engine.region_files(region).unwrap();
    env.faults
        .fail_writes_containing(&format!("{}/", strata_storage::region_data_dir(region)));
    let error = engine.compact(region).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Storage, "{error}");
    assert!(error.is_retryable());
    assert_eq!(engine.region_files(region).unwrap(), before);
    assert_eq!(
        sst_files(&env, region).len(),
        before.len(),
        "no partial output left"
    );
    assert_eq!(scan(&engine, region).await, expected);

    env.faults.clear();
    engine.compact(region).await.unwrap();
    assert_eq!(engine.region_files(region).unwrap().len(), 2);
    assert_eq!(scan(&engine, region).await, expected);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_the_manifest_does_not_name_are_swept_when_the_region_opens() {
    let env = TestEnv::new();
    let engine = env.engine_with(manual_config(&env)).await;
    let region = RegionId::new(1, 7);
    let expected = layered_region(&engine, region).await;
    // What a compaction that crashed between writing its output and committing leaves.
    let existing = sst_files(&env, region);
    let orphan =
        existing[0].with_file_name(format!("{}.parquet", strata_storage::FileId::random()));
    std::fs::copy(&existing[0], &orphan).unwrap();
    engine.close(region).await.unwrap();
    engine.open(region).await.unwrap();
    assert!(!orphan.exists(), "the orphan was swept");
    assert_eq!(sst_files(&env, region).len(), existing.len());
    assert_eq!(scan(&engine, region).await, expected);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_paused_across_a_compaction_and_its_purge_reads_every_row() {
    let env = TestEnv::new();
    let (engine, pool) = engine_with_queued_purges(&env).await;
    let region = RegionId::new(1, 8);
    let expected = layered_region(&engine, region).await;
    let mut stream = engine
        .scan(region, ScanRequest::new().batch_rows(5))
        .await
        .unwrap();
    let mut rows = stream.next().await.unwrap().unwrap().num_rows();
    engine.compact(region).await.unwrap();
    // The inputs cannot be deleted while the scan holds them.
    assert_eq!(pool.run_all().await, 0);
    assert_eq!(sst_files(&env, region).len(), 7 + 2);
    while let Some(batch) = stream.next().await {
        rows += batch
            .expect("a paused scan reads on across a compaction")
            .num_rows();
    }
    assert_eq!(rows, expected.len());
    drop(stream);
    // Its handles are gone: one deletion per input.
    pool.wait_for_jobs(7).await;
    pool.run_all().await;
    assert_eq!(sst_files(&env, region).len(), 2);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_compaction_asked_during_another_runs_after_it() {
    let env = TestEnv::new();
    let engine = std::sync::Arc::new(env.engine_with(manual_config(&env)).await);
    let region = RegionId::new(1, 9);
    layered_region(&engine, region).await;
    env.listener.hold_compactions();
    let first = tokio::spawn({
        let engine = engine.clone();
        async move { engine.compact(region).await }
    });
    env.listener
        .wait_for("first written", 1, |l| count(&l.compactions_written))
        .await;
    // More data arrives, and a second manual compaction is asked for meanwhile.
    put(&engine, region, 0..3, 10, 9.0).await;
    engine.flush(region).await.unwrap();
    let second = tokio::spawn({
        let engine = engine.clone();
        async move { engine.compact(region).await }
    });
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    assert!(!second.is_finished(), "queued behind the running one");
    env.listener.release_compactions();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(count(&env.listener.compactions_applied), 2);
    assert_eq!(
        windows(&engine, region),
        BTreeMap::from([(0, vec![1]), (1, vec![1])]),
        "the follow-up merged the new flush too"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_inputs_linger_on_storage_for_readers_in_other_processes() {
    let env = TestEnv::new();
    let pool = Arc::new(QueuedPool::default());
    let mut config = manual_config(&env);
    config.removed_file_lingering = Duration::from_secs(60);
    let engine = env
        .builder(config)
        .purge_pool(pool.clone() as strata_engine::SchedulerRef)
        .build()
        .await
        .unwrap();
    let region = RegionId::new(1, 10);
    layered_region(&engine, region).await;
    engine.compact(region).await.unwrap();
    env.clock.advance(Duration::from_secs(59));
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.run_all().await, 0, "still lingering");
    assert_eq!(sst_files(&env, region).len(), 7 + 2);
    env.clock.advance(Duration::from_secs(1));
    pool.wait_for_jobs(7).await;
    pool.run_all().await;
    assert_eq!(sst_files(&env, region).len(), 2);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_region_is_consolidated_to_one_file_per_window_by_the_periodic_check() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 11);
    create_with_window(&engine, region).await;
    // Each flush writes a file in window 0 and one in window 1: fewer level-0 files per
    // window than the trigger, so only the idle consolidation merges them all.
    for round in 0..3 {
        put(&engine, region, 0..10, 1_000 + round, round as f64).await;
        put(&engine, region, 0..10, HOUR + round, round as f64).await;
        engine.flush(region).await.unwrap();
    }
    let expected = scan(&engine, region).await;
    assert!(engine.region_files(region).unwrap().len() > 2);
    // Ten minutes without a flush (and the workers' first periodic check) later:
    env.clock.advance(Duration::from_secs(15 * 60));
    env.listener
        .wait_until("idle consolidation", || {
            windows(&engine, region) == BTreeMap::from([(0, vec![1]), (1, vec![1])])
        })
        .await;
    assert_eq!(scan(&engine, region).await, expected);
    // Consolidated once: later checks leave it alone.
    let applied = count(&env.listener.compactions_applied);
    env.clock.advance(Duration::from_secs(15 * 60));
    put(&engine, region, 0..1, 2 * HOUR, 1.0).await;
    assert_eq!(count(&env.listener.compactions_applied), applied);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_racing_flushes_compactions_purges_and_a_drop_never_fail_on_a_file() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let env = TestEnv::new();
    let engine = Arc::new(env.engine().await);
    let region = RegionId::new(1, 12);
    create_with_window(&engine, region).await;
    let stop = Arc::new(AtomicBool::new(false));
    let scanners: Vec<_> = (0..2)
        .map(|_| {
            let (engine, stop) = (engine.clone(), stop.clone());
            tokio::spawn(async move {
                let mut scans = 0;
                while !stop.load(Ordering::SeqCst) {
                    // A scan of an empty region never waits: give the writer its turn.
                    tokio::task::yield_now().await;
                    let request = ScanRequest::new().batch_rows(7);
                    match engine.scan(region, request).await {
                        Ok(mut stream) => {
                            while let Some(batch) = stream.next().await {
                                batch.expect("a scan never fails on a removed file");
                                tokio::task::yield_now().await;
                            }
                            scans += 1;
                        }
                        Err(e) => assert_eq!(e.kind(), ErrorKind::RegionNotFound, "{e}"),
                    }
                }
                scans
            })
        })
        .collect();
    for round in 0..24 {
        put(
            &engine,
            region,
            0..30,
            (round % 3) * HOUR + round,
            round as f64,
        )
        .await;
        engine.flush(region).await.unwrap();
        if round % 5 == 4 {
            engine.compact(region).await.unwrap();
        }
    }
    assert!(count(&env.listener.compactions_applied) > 0);
    engine.drop_region(region).await.unwrap();
    stop.store(true, Ordering::SeqCst);
    for scanner in scanners {
        assert!(scanner.await.unwrap() > 0, "every scanner completed scans");
    }
    env.listener
        .wait_for("the drop's purge", 1, |l| count(&l.later_drops))
        .await;
    assert!(sst_files(&env, region).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_flushes_and_their_compaction_are_written_in_time_slices_and_scans_are_unchanged() {
    let env = TestEnv::new();
    let mut config = manual_config(&env);
    // 8 rows a slice: each flush below (200 rows) is many slices.
    config.sst.row_group_size = 8;
    let engine = env.builder(config).build().await.unwrap();
    let region = RegionId::new(1, 0);
    create_with_window(&engine, region).await;
    // Four flushes over the same minutes of the first hour, overwriting each other.
    for round in 0..4 {
        for minute in 0..20 {
            put(
                &engine,
                region,
                0..10,
                minute * 60_000 + round % 2,
                round as f64,
            )
            .await;
        }
        engine.flush(region).await.unwrap();
    }
    let flushed = engine.region_files(region).unwrap();
    assert_eq!(flushed.len(), 4);
    let widths: Vec<Option<i64>> = flushed.iter().map(|f| f.time_slice).collect();
    assert!(widths.iter().all(Option::is_some), "{widths:?}");
    let expected = scan(&engine, region).await;
    assert_eq!(expected.len(), 10 * 20 * 2);

    engine.compact(region).await.unwrap();
    let compacted = engine.region_files(region).unwrap();
    assert_eq!(compacted.len(), 1);
    let output = compacted[0].time_slice.expect("the output is in slices");
    assert!(
        widths.iter().flatten().all(|&w| w <= output),
        "no input slice straddles an output slice: {widths:?} vs {output}"
    );
    assert_eq!(scan(&engine, region).await, expected);
    // Both scan orders and a range cutting through slices return the same rows.
    let mut by_time = BTreeMap::new();
    for batch in engine
        .scan_to_vec(
            region,
            ScanRequest::new().order(strata_engine::ScanOrder::TimeGroups),
        )
        .await
        .unwrap()
    {
        let hosts = arrow_array::cast::AsArray::as_string::<i32>(batch.column(0));
        let ts = arrow_array::cast::AsArray::as_primitive::<
            arrow_array::types::TimestampMillisecondType,
        >(batch.column(1));
        for i in 0..batch.num_rows() {
            by_time.insert((hosts.value(i).to_string(), ts.value(i)), ());
        }
    }
    assert_eq!(by_time.len(), expected.len());
    assert!(expected.keys().all(|key| by_time.contains_key(key)));
    let range = strata_storage::TimeRange {
        start: 150_000,
        end: 500_000,
    };
    let in_range = engine
        .scan_to_vec(region, ScanRequest::new().time_range(range))
        .await
        .unwrap();
    let rows: usize = in_range.iter().map(|b| b.num_rows()).sum();
    assert_eq!(
        rows,
        expected
            .keys()
            .filter(|(_, ts)| range.contains(*ts))
            .count()
    );
    engine.stop().await.unwrap();
}
