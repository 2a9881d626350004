//! Region lifecycle: create, open, close, drop, alter, truncate, read-only.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use strata_engine::{
    AlterKind, AlterRequest, ColumnDataType, ColumnSchema, CreateRequest, ErrorKind, RegionId,
    ScanRequest, Value, WriteRequest,
};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_idempotent_and_refuses_a_different_schema() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    create(&engine, region).await;
    let other = strata_engine::RegionMetadataBuilder::new(region)
        .column(ColumnSchema::tag("dc"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .build()
        .unwrap();
    let error = engine.create(CreateRequest::new(other)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_regions_names_every_region_in_the_store_open_or_closed_but_not_dropped() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    assert_eq!(engine.list_regions().await.unwrap(), Vec::<RegionId>::new());
    let (a, b, c) = (
        RegionId::new(7, 2),
        RegionId::new(7, 1),
        RegionId::new(3, 9),
    );
    for region in [a, b, c] {
        create(&engine, region).await;
    }
    engine.close(b).await.unwrap();
    engine.drop_region(c).await.unwrap();
    assert_eq!(engine.regions(), vec![a], "open here");
    assert_eq!(
        engine.list_regions().await.unwrap(),
        vec![b, a],
        "in the store"
    );
    // Neither a leftover directory without a manifest nor a region whose drop started
    // (its marker written, the crash before the purge) is listed.
    let leftover = env
        .dir
        .path()
        .join(strata_storage::region_data_dir(RegionId::new(5, 1)));
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("orphan.parquet"), b"x").unwrap();
    let d = RegionId::new(7, 3);
    create(&engine, d).await;
    engine.close(d).await.unwrap();
    // (The marker's path does not depend on the store.)
    let store = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    let marker = strata_storage::RegionFiles::new(store, d).drop_marker();
    std::fs::write(env.dir.path().join(marker), b"").unwrap();
    assert_eq!(engine.list_regions().await.unwrap(), vec![b, a]);
    engine.stop().await.unwrap();
    // A new engine has nothing open yet; the store still lists both.
    let engine = env.engine().await;
    assert_eq!(engine.regions(), Vec::<RegionId>::new());
    assert_eq!(engine.list_regions().await.unwrap(), vec![b, a]);
    for region in engine.list_regions().await.unwrap() {
        engine.open(region).await.unwrap();
    }
    assert_eq!(engine.regions(), vec![b, a]);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_without_a_tag_is_refused_at_create_and_the_engine_goes_on() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(8, 1);
    let tagless = strata_engine::RegionMetadataBuilder::new(region)
        .column(strata_engine::ColumnSchema::timestamp(
            "ts",
            strata_engine::ColumnDataType::TimestampMillisecond,
        ))
        .column(strata_engine::ColumnSchema::field(
            "v",
            strata_engine::ColumnDataType::Float64,
        ))
        .build()
        .unwrap();
    let error = engine
        .create(CreateRequest::new(tagless))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    assert!(error.to_string().contains("no tag column"), "{error}");
    assert_eq!(engine.list_regions().await.unwrap(), Vec::<RegionId>::new());
    // The worker is fine: a region with a tag takes a write.
    let other = RegionId::new(8, 2);
    create(&engine, other).await;
    put(&engine, other, 0..3, 1_000, 1.0).await;
    engine.flush(other).await.unwrap();
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_region_that_was_never_created_is_not_found() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let error = engine.open(RegionId::new(9, 9)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RegionNotFound);
    let error = engine
        .write(WriteRequest::put(RegionId::new(9, 9), rows(0..1, 1, 1.0)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RegionNotFound);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_then_open_replays_the_wal_and_closing_twice_is_ok() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..7, 1000, 1.0).await;
    engine.close(region).await.unwrap();
    engine.close(region).await.unwrap();
    assert!(engine.region_stats(region).is_err());
    engine.open(region).await.unwrap();
    assert_eq!(scan(&engine, region).await.len(), 7);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_answers_the_regions_stalled_writes() {
    let env = TestEnv::new();
    let engine = Arc::new(env.engine().await);
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    env.buffer
        .force_stall
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let writer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .write(WriteRequest::put(region, rows(0..1, 1, 1.0)))
                .await
        })
    };
    env.listener
        .wait_for("the write stalls", 1, |l| count(&l.stalls))
        .await;
    engine.close(region).await.unwrap();
    let error = within("stalled write answered", writer)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RegionState, "{error}");
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_removes_the_region_and_its_files_and_open_then_reports_not_found() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..5, 1000, 1.0).await;
    engine.flush(region).await.unwrap();
    let dir = env.dir.path().join(strata_storage::region_dir(region));
    assert!(dir.exists());
    assert!(!dir.join(".dropping").exists(), "no marker before the drop");
    engine.drop_region(region).await.unwrap();
    env.listener
        .wait_for("files removed", 1, |l| count(&l.later_drops))
        .await;
    assert!(!dir.exists(), "region directory removed");
    assert_eq!(
        engine.open(region).await.unwrap_err().kind(),
        ErrorKind::RegionNotFound
    );
    assert_eq!(
        engine.drop_region(region).await.unwrap_err().kind(),
        ErrorKind::RegionNotFound
    );
    // The id can be used again, and nothing of the old region comes back.
    create(&engine, region).await;
    assert!(scan(&engine, region).await.is_empty());
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_finds_a_drop_marker_reports_not_found_and_finishes_the_cleanup() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 0);
    {
        let engine = env.engine().await;
        create(&engine, region).await;
        put(&engine, region, 0..5, 1000, 1.0).await;
        engine.flush(region).await.unwrap();
        engine.stop().await.unwrap();
    }
    // A crash right after the drop marker was written.
    let dir = env.dir.path().join(strata_storage::region_dir(region));
    std::fs::write(dir.join(".dropping"), b"").unwrap();
    let engine = env.engine().await;
    assert_eq!(
        engine.open(region).await.unwrap_err().kind(),
        ErrorKind::RegionNotFound
    );
    assert!(!dir.exists(), "the interrupted drop was finished");
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_rows_never_come_back_from_the_wal_or_sst_files() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 0);
    {
        let engine = env.engine().await;
        create(&engine, region).await;
        put(&engine, region, 0..5, 1000, 1.0).await;
        engine.flush(region).await.unwrap();
        put(&engine, region, 5..8, 1000, 1.0).await;
        engine.truncate(region).await.unwrap();
        assert!(scan(&engine, region).await.is_empty());
        assert_eq!(engine.region_stats(region).unwrap().num_files, 0);
        put(&engine, region, 100..102, 2000, 1.0).await;
        engine.stop().await.unwrap();
    }
    let engine = env.engine().await;
    engine.open(region).await.unwrap();
    let rows = scan(&engine, region).await;
    assert_eq!(
        rows.keys().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        ["host100", "host101"],
        "only the rows written after the truncate"
    );
    engine.stop().await.unwrap();
}

fn add_column(region: RegionId, schema_version: u64) -> AlterRequest {
    AlterRequest::new(
        region,
        schema_version,
        AlterKind::AddColumns {
            columns: vec![
                ColumnSchema::field("mem", ColumnDataType::Int64).with_default(Value::Int64(42)),
            ],
        },
    )
}

fn mem_values(batches: &[arrow_array::RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("mem")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_with_rows_in_memory_flushes_first_and_old_files_read_with_the_default() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..3, 1000, 1.0).await;
    engine.alter(add_column(region, 0)).await.unwrap();
    let stats = engine.region_stats(region).unwrap();
    assert_eq!((stats.schema_version, stats.num_files), (1, 1));
    // Writes in the old shape (without `mem`) still work and get the default.
    put(&engine, region, 3..4, 1000, 1.0).await;
    let batches = engine
        .scan_to_vec(region, ScanRequest::default())
        .await
        .unwrap();
    assert_eq!(mem_values(&batches), [42, 42, 42, 42]);
    // Retrying the same alter is harmless.
    engine.alter(add_column(region, 0)).await.unwrap();
    assert_eq!(engine.region_stats(region).unwrap().schema_version, 1);
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_during_a_flush_waits_and_fences_writes_until_it_is_applied() {
    let env = TestEnv::new();
    let engine = Arc::new(env.engine().await);
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    put(&engine, region, 0..3, 1000, 1.0).await;
    env.listener.hold_flushes();
    let flush = tokio::spawn({
        let engine = engine.clone();
        async move { engine.flush(region).await }
    });
    env.listener
        .wait_for("flush running", 1, |l| count(&l.flush_begun))
        .await;
    let alter = tokio::spawn({
        let engine = engine.clone();
        async move { engine.alter(add_column(region, 0)).await }
    });
    let second_flush = tokio::spawn({
        let engine = engine.clone();
        async move { engine.flush(region).await }
    });
    let write = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .write(WriteRequest::put(region, rows(3..4, 1000, 1.0)))
                .await
        }
    });
    env.listener.release_flushes();
    within("flush", flush).await.unwrap().unwrap();
    within("alter", alter).await.unwrap().unwrap();
    within("merged flush", second_flush).await.unwrap().unwrap();
    assert_eq!(within("fenced write", write).await.unwrap().unwrap(), 1);
    let batches = engine
        .scan_to_vec(region, ScanRequest::default())
        .await
        .unwrap();
    assert_eq!(
        mem_values(&batches),
        [42, 42, 42, 42],
        "the fenced write used the new schema"
    );
    engine.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_region_refuses_writes_and_flushes_until_made_writable() {
    let env = TestEnv::new();
    let engine = env.engine().await;
    let region = RegionId::new(1, 0);
    create(&engine, region).await;
    engine.set_writable(region, false).await.unwrap();
    let error = engine
        .write(WriteRequest::put(region, rows(0..1, 1, 1.0)))
        .await
        .unwrap_err();
    // A read-only region follows: retry on its leader.
    assert_eq!(error.kind(), ErrorKind::NotLeader, "{error}");
    assert_eq!(
        engine.flush(region).await.unwrap_err().kind(),
        ErrorKind::RegionState
    );
    engine.set_writable(region, true).await.unwrap();
    put(&engine, region, 0..1, 1, 1.0).await;
    engine.stop().await.unwrap();
}

/// Found by the engine model test: the drop's background purge ran after a create of the
/// same id and deleted the new region's manifest. Create and open now wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_recreated_right_after_a_drop_survives_the_drops_purge_and_a_restart() {
    let env = TestEnv::new();
    let region = RegionId::new(1, 0);
    {
        let engine = env.engine().await;
        create(&engine, region).await;
        put(&engine, region, 0..5, 1000, 1.0).await;
        engine.flush(region).await.unwrap();
        engine.drop_region(region).await.unwrap();
        create(&engine, region).await;
        put(&engine, region, 10..12, 1000, 1.0).await;
        engine.flush(region).await.unwrap();
        env.listener
            .wait_for("the purge ran", 1, |l| count(&l.later_drops))
            .await;
        engine.stop().await.unwrap();
    }
    let engine = env.engine().await;
    engine.open(region).await.unwrap();
    let rows = scan(&engine, region).await;
    assert_eq!(
        rows.keys().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        ["host10", "host11"]
    );
    engine.stop().await.unwrap();
}

/// A pool that counts the jobs given to it.
#[derive(Debug)]
struct CountingPool {
    inner: strata_engine::LocalScheduler,
    jobs: std::sync::atomic::AtomicUsize,
}

impl strata_engine::Scheduler for CountingPool {
    fn schedule(&self, job: strata_engine::Job) -> Result<(), strata_engine::SchedulerError> {
        self.jobs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.schedule(job)
    }

    fn stop(&self, await_termination: bool) -> strata_engine::StopFuture<'_> {
        self.inner.stop(await_termination)
    }
}

#[tokio::test]
async fn flush_jobs_and_purges_run_on_the_pools_the_builder_was_given() {
    let env = TestEnv::new();
    let pool = |name: &str| {
        std::sync::Arc::new(CountingPool {
            inner: strata_engine::LocalScheduler::new(name, 1).unwrap(),
            jobs: std::sync::atomic::AtomicUsize::new(0),
        })
    };
    let (flushes, purges) = (pool("test-flush"), pool("test-purge"));
    let engine = strata_engine::EngineBuilder::new(env.config())
        .flush_pool(flushes.clone())
        .purge_pool(purges.clone())
        .build()
        .await
        .unwrap();
    let region = RegionId::new(1024, 0);
    create(&engine, region).await;
    put(&engine, region, 0..10, 1, 1.0).await;
    engine.flush(region).await.unwrap();
    engine.drop_region(region).await.unwrap();
    engine.stop().await.unwrap();
    let count = |p: &CountingPool| p.jobs.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(count(&flushes), 1, "the flush ran on the given pool");
    assert_eq!(count(&purges), 1, "the drop's purge ran on the given pool");
}
