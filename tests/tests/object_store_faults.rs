//! Object-store faults: with 5–30 % of reads, writes, lists, deletes and stats failing
//! (seeded) under OpenDAL's retry layer, no acknowledged write is lost, every flush answers
//! its caller (success or a typed error), and once the faults stop every region flushes.
//! `SEED` replays; `STRATA_STRESS` multiplies the rounds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use opendal::layers::RetryLayer;
use strata_engine::{
    CreateRequest, Engine, EngineBuilder, EngineConfig, ErrorKind, ObjectStoreConfig, RegionId,
    RegionMetadata, WriteRequest,
};
use strata_storage::testing::{FaultLayer, FaultPlan};

const REGIONS: u32 = 3;

fn metadata(region: RegionId) -> RegionMetadata {
    strata_tests::host_ts_v(region)
}

fn rows(region: RegionId, start: i64, end: i64) -> RecordBatch {
    RecordBatch::try_new(
        metadata(region).arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                (start..end).map(|n| format!("h{}", n % 5)),
            )) as ArrayRef,
            Arc::new(TimestampMillisecondArray::from_iter_values(start..end)),
            Arc::new(Int64Array::from_iter_values(start..end)),
        ],
    )
    .unwrap()
}

/// The store under test: local files, or the loopback S3 server when `s3_root` is given.
fn base_store(dir: &std::path::Path, s3_root: Option<&str>) -> ObjectStoreConfig {
    match s3_root {
        None => ObjectStoreConfig::Fs {
            root: dir.to_path_buf(),
        },
        Some(root) => ObjectStoreConfig::S3(
            strata_storage::S3Config::new(std::env::var("STRATA_S3_BUCKET").unwrap())
                .root(root)
                .endpoint(std::env::var("STRATA_S3_ENDPOINT").unwrap())
                .region("us-east-1")
                .credentials("test", strata_storage::Secret::new("test")),
        ),
    }
}

async fn engine(dir: &std::path::Path, plan: &Arc<FaultPlan>, s3_root: Option<&str>) -> Engine {
    let store = base_store(dir, s3_root)
        .build()
        .unwrap()
        .layer(FaultLayer::new(plan.clone()))
        .layer(
            RetryLayer::new()
                .with_max_times(1)
                .with_min_delay(Duration::from_millis(1))
                .with_max_delay(Duration::from_millis(5)),
        );
    let mut config = EngineConfig::default();
    config.data_home = dir.to_path_buf();
    config.num_workers = 2;
    config.global_write_buffer_size = bytesize::ByteSize::mib(1);
    EngineBuilder::new(config)
        .object_store(store)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_injected_object_store_faults_no_acknowledged_write_is_lost() {
    run(12 * strata_tests::stress(), None).await;
}

/// The loopback S3 server `cargo xtask ci` starts: `(endpoint, bucket)`. Where the run
/// requires S3 (`STRATA_S3_REQUIRED`, set by `cargo xtask ci`) a missing server fails the
/// test with the reason; elsewhere (a plain `cargo test`) the test is skipped, saying so.
fn s3_server(test: &str) -> Option<(String, String)> {
    match (
        std::env::var("STRATA_S3_ENDPOINT"),
        std::env::var("STRATA_S3_BUCKET"),
    ) {
        (Ok(endpoint), Ok(bucket)) => Some((endpoint, bucket)),
        _ if std::env::var_os("STRATA_S3_REQUIRED").is_some() => panic!(
            "{test}: S3 is required in this run but no server is configured: {}",
            std::env::var("STRATA_S3_UNAVAILABLE").unwrap_or_else(|_| "no reason given".into())
        ),
        _ => {
            eprintln!(
                "skipping {test}: STRATA_S3_ENDPOINT/STRATA_S3_BUCKET are not set (`cargo xtask ci` starts a local moto server, sets them, and requires them)"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_faults_on_a_loopback_s3_server_lose_nothing() {
    if s3_server("the S3 fault test").is_none() {
        return;
    }
    let root = format!("faults-{}-{}", std::process::id(), strata_tests::seed(0));
    run(6 * strata_tests::stress(), Some(&root)).await;
}

async fn run(rounds: u64, s3_root: Option<&str>) {
    let seed = strata_tests::seed(0xfa17_5eed);
    eprintln!(
        "object-store faults ({}): SEED={seed}",
        if s3_root.is_some() { "S3" } else { "files" }
    );
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let engine = engine(dir.path(), &plan, s3_root).await;
    let regions: Vec<RegionId> = (0..REGIONS).map(|r| RegionId::new(21, r)).collect();
    for &region in &regions {
        engine
            .create(CreateRequest::new(metadata(region)))
            .await
            .unwrap();
    }
    let mut acked = vec![0i64; regions.len()];
    let (mut flush_ok, mut flush_failed) = (0, 0);
    let (mut compact_ok, mut compact_failed) = (0, 0);
    // The seeded faults may spare every compaction of the planned rounds (seen: 0 of 18
    // with 23 faults over S3): then more rounds run, up to four times as many, until one
    // compaction met a fault.
    let mut round = 0;
    while round < rounds || (compact_failed == 0 && round < 4 * rounds) {
        // 5 % to 30 % of every kind of operation under the region directories fail.
        let ratio = 0.05 + 0.05 * (round % 6) as f64;
        plan.fail_at_ratio(seed ^ round, ratio, "regions/");
        for (i, &region) in regions.iter().enumerate() {
            for _ in 0..5 {
                let start = acked[i];
                engine
                    .write(WriteRequest::put(region, rows(region, start, start + 200)))
                    .await
                    .expect("writes do not touch the object store");
                acked[i] = start + 200;
            }
            match engine.flush(region).await {
                Ok(()) => flush_ok += 1,
                Err(error) => {
                    assert!(
                        matches!(error.kind(), ErrorKind::Storage | ErrorKind::RegionState),
                        "round {round} (SEED={seed}): {error}"
                    );
                    assert!(error.is_retryable(), "{error}");
                    flush_failed += 1;
                }
            }
            // Compactions (manual here, automatic after flushes) under the same faults:
            // a failure leaves the inputs alone.
            match engine.compact(region).await {
                Ok(_) => compact_ok += 1,
                Err(error) => {
                    assert!(
                        matches!(error.kind(), ErrorKind::Storage | ErrorKind::RegionState),
                        "round {round} (SEED={seed}): compaction: {error}"
                    );
                    assert!(error.is_retryable(), "{error}");
                    compact_failed += 1;
                }
            }
        }
        round += 1;
    }
    eprintln!(
        "object-store faults: {round} rounds, {flush_ok} flushes ok, {flush_failed} failed, {compact_ok} compactions ok, {compact_failed} failed under faults, {} faults injected",
        plan.injected()
    );
    assert!(plan.injected() > 0);
    assert!(compact_failed > 0, "some compactions met a fault");
    // Faults stop: every region flushes, and nothing acknowledged is missing.
    plan.clear();
    for &region in &regions {
        // A flush started under faults (engine full) may still be running and fail; a
        // manual flush merged into it fails with it. Retrying is what a caller does.
        let mut attempts = 0;
        while let Err(error) = engine.flush(region).await {
            attempts += 1;
            assert!(error.is_retryable() && attempts < 3, "{region}: {error}");
        }
        let stats = engine.region_stats(region).unwrap();
        assert_eq!(stats.memtable_bytes, 0, "{region} flushed everything");
    }
    for (i, &region) in regions.iter().enumerate() {
        let rows = strata_tests::count_rows(&engine, region).await;
        assert_eq!(rows as i64, acked[i], "{region}");
        // Without faults the retry succeeds and changes no answer.
        engine.compact(region).await.unwrap();
        let rows = strata_tests::count_rows(&engine, region).await;
        assert_eq!(rows as i64, acked[i], "{region} after compaction");
    }
    engine.stop().await.unwrap();
    // And after a restart (manifest, files and WAL as the faults left them).
    let engine2 = self::engine(dir.path(), &plan, s3_root).await;
    for (i, &region) in regions.iter().enumerate() {
        engine2.open(region).await.unwrap();
        let rows = strata_tests::count_rows(&engine2, region).await;
        assert_eq!(rows as i64, acked[i], "{region} after restart");
    }
    engine2.stop().await.unwrap();
}
