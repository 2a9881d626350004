//! SST file lifetime: a scan holds the files it reads, so a truncate or a drop that
//! removes them while the scan is paused mid-stream never makes it fail; the files are
//! deleted (on the purge pool) once the scan lets go. The purge pool here runs its jobs
//! only when the test says so, so "not deleted yet" is checked after every queued
//! deletion has had its chance to run.

use std::sync::Arc;

use futures::StreamExt;
use strata_engine::{RegionId, ScanRequest, SchedulerRef};

use crate::common::*;

/// An engine on the queued purge pool with a region of three flushed files (150 rows),
/// and a scan of it paused after its first batch of 10 rows.
async fn paused_scan(
    env: &TestEnv,
    region: RegionId,
) -> (
    strata_engine::Engine,
    Arc<QueuedPool>,
    strata_engine::RecordBatchStream,
) {
    let pool = Arc::new(QueuedPool::default());
    let engine = env
        .builder(env.config())
        .purge_pool(pool.clone() as SchedulerRef)
        .build()
        .await
        .unwrap();
    create(&engine, region).await;
    for ts in [1_000, 2_000, 3_000] {
        put(&engine, region, 0..50, ts, 1.0).await;
        engine.flush(region).await.unwrap();
    }
    assert_eq!(sst_files(env, region).len(), 3);
    let mut stream = engine
        .scan(region, ScanRequest::new().batch_rows(10))
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.num_rows(), 10);
    (engine, pool, stream)
}

/// Reads the rest of a stream, failing on any error.
async fn rest(mut stream: strata_engine::RecordBatchStream) -> usize {
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch
            .expect("a paused scan reads on after its files were removed")
            .num_rows();
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_paused_during_a_truncate_and_its_purge_reads_every_row_then_the_files_go() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 0);
    let (engine, pool, stream) = paused_scan(&env, region).await;

    engine.truncate(region).await.unwrap();
    pool.run_all().await;
    assert_eq!(
        sst_files(&env, region).len(),
        3,
        "the scan still holds the files"
    );
    assert!(
        scan(&engine, region).await.is_empty(),
        "new scans see the truncate"
    );

    assert_eq!(
        rest(stream).await,
        140,
        "the paused scan reads the other 140 rows"
    );
    // Its handles are gone: the purger queues one deletion per file.
    pool.wait_for_jobs(3).await;
    assert_eq!(pool.run_all().await, 3);
    assert!(sst_files(&env, region).is_empty());
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_paused_during_a_drop_reads_every_row_and_the_region_is_purged_after_it() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 1);
    let (engine, pool, stream) = paused_scan(&env, region).await;

    engine.drop_region(region).await.unwrap();
    pool.run_all().await;
    assert_eq!(
        sst_files(&env, region).len(),
        3,
        "the purge waits for the scan"
    );

    assert_eq!(rest(stream).await, 140);
    pool.wait_for_jobs(1).await;
    pool.run_all().await;
    assert!(sst_files(&env, region).is_empty());
    assert_eq!(
        count(&env.listener.later_drops),
        1,
        "the drop's purge finished"
    );
    engine.stop().await.unwrap();
}

/// A dropped region's files linger like removed files do (followers in other engines may
/// still read them), and a create of the same id cuts the lingering short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_regions_files_linger_for_followers_and_a_recreate_cuts_that_short() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.removed_file_lingering = std::time::Duration::from_secs(60);
    let pool = Arc::new(QueuedPool::default());
    let engine = env
        .builder(config)
        .purge_pool(pool.clone() as SchedulerRef)
        .build()
        .await
        .unwrap();
    let region = RegionId::new(8, 1);
    create(&engine, region).await;
    put(&engine, region, 0..3, 1, 1.0).await;
    engine.flush(region).await.unwrap();
    assert_eq!(sst_files(&env, region).len(), 1);
    engine.drop_region(region).await.unwrap();
    for _ in 0..1_000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        pool.run_all().await,
        0,
        "no purge before the lingering time"
    );
    assert_eq!(
        sst_files(&env, region).len(),
        1,
        "the file stays for followers"
    );
    // The purge's lingering sleep may start only now (a loaded machine): advance until
    // its job is queued.
    within("the lingering to pass", async {
        while pool.queued() < 1 {
            env.clock.advance(std::time::Duration::from_secs(60));
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(pool.run_all().await, 1);
    assert!(sst_files(&env, region).is_empty());
    // Dropped again, then created at once: the create does not wait out the lingering.
    create(&engine, region).await;
    put(&engine, region, 0..3, 1, 1.0).await;
    engine.flush(region).await.unwrap();
    engine.drop_region(region).await.unwrap();
    let recreate = tokio::spawn({
        let engine = Arc::new(engine);
        let again = engine.clone();
        async move {
            create(&again, region).await;
            again
        }
    });
    pool.wait_for_jobs(1).await;
    assert_eq!(pool.run_all().await, 1, "the purge went at once");
    let engine = within("a create right after the drop", recreate)
        .await
        .unwrap();
    assert!(
        scan(&engine, region).await.is_empty(),
        "a new, empty region"
    );
    engine.stop().await.unwrap();
}
