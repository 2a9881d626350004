//! Overload liveness: 8 regions on a small budget, one of which can never flush (its SST
//! writes always fail). The other regions keep writing; memory never passes the reject
//! limit plus one request; every request is answered (success or a typed error) once the
//! pressure clears; a watchdog fails the test instead of hanging CI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_engine::{
    CreateRequest, EngineBuilder, EngineConfig, ErrorKind, ObjectStoreConfig, RegionId,
    RegionMetadata, WriteRequest,
};
use strata_storage::testing::{FaultLayer, FaultPlan};

const REGIONS: u32 = 8;
const FAILING: u32 = 0;
const WRITES: i64 = 40;
const ROWS: i64 = 500;

fn metadata(region: RegionId) -> RegionMetadata {
    strata_tests::host_ts_v(region)
}

fn rows(region: RegionId, start: i64) -> RecordBatch {
    RecordBatch::try_new(
        metadata(region).arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                (start..start + ROWS).map(|n| format!("host-{n}")),
            )) as ArrayRef,
            Arc::new(TimestampMillisecondArray::from_iter_values(
                start..start + ROWS,
            )),
            Arc::new(Int64Array::from_iter_values(start..start + ROWS)),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_regions_keep_writing_while_one_region_cannot_flush() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    let failing = RegionId::new(31, FAILING);
    plan.fail_writes_containing(&format!("{}/", strata_storage::region_data_dir(failing)));
    let store = ObjectStoreConfig::Fs {
        root: dir.path().to_path_buf(),
    }
    .build()
    .unwrap()
    .layer(FaultLayer::new(plan.clone()));
    let budget = 4u64 << 20;
    let mut config = EngineConfig::default();
    config.data_home = dir.path().to_path_buf();
    config.num_workers = 2;
    config.global_write_buffer_size = bytesize::ByteSize(budget);
    // A region that cannot flush is held to its own limit instead of filling the budget
    // for everyone.
    config.default_region_write_buffer_size = bytesize::ByteSize(budget / 8);
    let reject = config.reject_size().as_u64() as usize;
    let engine = Arc::new(
        EngineBuilder::new(config)
            .object_store(store)
            .build()
            .await
            .unwrap(),
    );
    for r in 0..REGIONS {
        let region = RegionId::new(31, r);
        engine
            .create(CreateRequest::new(metadata(region)))
            .await
            .unwrap();
    }
    let request_size = WriteRequest::put(failing, rows(failing, 0)).estimated_size();
    let peak = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for r in 0..REGIONS {
        let (engine, peak) = (engine.clone(), peak.clone());
        writers.push(tokio::spawn(async move {
            let region = RegionId::new(31, r);
            let (mut ok, mut rejected) = (0, 0);
            for i in 0..WRITES {
                match engine
                    .write(WriteRequest::put(region, rows(region, i * ROWS)))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WriteRejected, "{region}: {e}");
                        rejected += 1;
                    }
                }
                peak.fetch_max(engine.memory_usage(), Ordering::Relaxed);
            }
            (r, ok, rejected)
        }));
    }
    // The failing region's writer may be parked (stalled) until pressure clears; the
    // others must finish on their own.
    let (healthy, sick): (Vec<_>, Vec<_>) = writers
        .into_iter()
        .enumerate()
        .partition(|(r, _)| *r as u32 != FAILING);
    for (_, writer) in healthy {
        let (r, ok, rejected) = tokio::time::timeout(Duration::from_secs(60), writer)
            .await
            .expect("watchdog: a healthy region's writer hung")
            .unwrap();
        assert_eq!(ok, WRITES, "region {r} was held back ({rejected} rejected)");
    }
    // Pressure clears: the failing region's files can be written again.
    plan.clear();
    engine.flush(failing).await.unwrap();
    for (_, writer) in sick {
        let (_, ok, rejected) = tokio::time::timeout(Duration::from_secs(60), writer)
            .await
            .expect("watchdog: the failing region's writer hung")
            .unwrap();
        eprintln!(
            "overload: failing region {ok} writes ok, {rejected} rejected, {} injected faults",
            plan.injected()
        );
        // Each of its writes was answered (the writer finished): held back while it was
        // over its own limit, then written once its flush could land, or rejected at twice
        // the limit. Exactly the acknowledged ones are there, each with its distinct keys.
        assert!(ok > 0, "the failing region took no write at all");
        let present = strata_tests::count_rows(&engine, failing).await;
        assert_eq!(
            present,
            ok as usize * ROWS as usize,
            "the failing region holds {present} rows for {ok} acknowledged writes of {ROWS} ({rejected} rejected)"
        );
        assert!(plan.injected() > 0, "its flushes did fail");
    }
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "overload: peak memtables {peak} bytes, reject limit {reject} + one request {request_size}"
    );
    assert!(
        peak <= reject + request_size,
        "memtables reached {peak} bytes"
    );
    engine.stop().await.unwrap();
}

/// A slow object store (every SST chunk written 20 ms late) under a 1 MiB budget: ingest
/// outruns the flushes, so writes stall and some are rejected, but every write is
/// answered, memory stays under the reject limit plus one request, and every acknowledged
/// row is readable afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_slow_flushes_writes_stall_then_recover_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::default());
    plan.delay_containing("/data/", Duration::from_millis(20));
    let store = ObjectStoreConfig::Fs {
        root: dir.path().to_path_buf(),
    }
    .build()
    .unwrap()
    .layer(FaultLayer::new(plan.clone()));
    let registry = prometheus::Registry::new();
    let mut config = EngineConfig::default();
    config.data_home = dir.path().to_path_buf();
    config.num_workers = 2;
    config.global_write_buffer_size = bytesize::ByteSize::mib(1);
    let reject = config.reject_size().as_u64() as usize;
    let engine = Arc::new(
        EngineBuilder::new(config)
            .object_store(store)
            .registry(registry.clone())
            .build()
            .await
            .unwrap(),
    );
    let regions: Vec<RegionId> = (0..4).map(|r| RegionId::new(32, r)).collect();
    for &region in &regions {
        engine
            .create(CreateRequest::new(metadata(region)))
            .await
            .unwrap();
    }
    let request_size = WriteRequest::put(regions[0], rows(regions[0], 0)).estimated_size();
    let peak = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for &region in &regions {
        let (engine, peak) = (engine.clone(), peak.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..WRITES {
                match engine
                    .write(WriteRequest::put(region, rows(region, i * ROWS)))
                    .await
                {
                    Ok(_) => acked.push(i),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::WriteRejected, "{region}: {e}"),
                }
                peak.fetch_max(engine.memory_usage(), Ordering::Relaxed);
            }
            (region, acked)
        }));
    }
    let mut acked_total = 0;
    let mut acked_by_region = Vec::new();
    for writer in writers {
        let (region, acked) = tokio::time::timeout(Duration::from_secs(120), writer)
            .await
            .expect("watchdog: a writer hung")
            .unwrap();
        acked_total += acked.len();
        acked_by_region.push((region, acked));
    }
    let stalls: f64 = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "strata_write_stall_total")
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_counter().get_value())
        .sum();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "slow flushes: {acked_total} of {} writes acknowledged, {stalls} stalled, peak memtables {peak} of reject {reject}",
        WRITES * 4
    );
    assert!(
        peak <= reject + request_size,
        "memtables reached {peak} bytes"
    );
    assert!(acked_total > 0);
    plan.clear();
    for (region, acked) in acked_by_region {
        let rows = strata_tests::count_rows(&engine, region).await;
        assert_eq!(rows as i64, acked.len() as i64 * ROWS, "{region}");
    }
    engine.stop().await.unwrap();
}
