//! Flush jobs end to end (freeze → job on the flush pool → SST through OpenDAL → manifest
//! edit → notify) for 1 and 2 concurrent flushes, next to the raw Parquet `ArrowWriter` on
//! the same sorted batches in the same run. TSBS cpu-only, integer fields, 1 M rows per
//! region. Prints a Markdown section for `docs/benchmarks.md`.

// Measures wall time: that is the point of a benchmark or a measuring example.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    missing_docs,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use futures::TryStreamExt;
use opendal::Operator;
use parquet::arrow::ArrowWriter;
use strata_flush::{FlushContext, FlushNotify, FlushReason, FlushScheduler};
use strata_request::{OpType, RegionId};
use strata_scheduler::LocalScheduler;
use strata_storage::{
    BatchStream, Committer, ManifestConfig, ManifestManager, MergeOptions, RegionCommitter,
    RegionState, ScanRequest, SstWriteOptions, Version, VersionControl, merge, output_schema,
    writer_properties,
};
use strata_workload::CpuWorkload;

const HOSTS: usize = 4_000;
const EPOCHS: u64 = 250;

/// A region full of one TSBS data set, ready to flush.
async fn region(store: &Operator, number: u32) -> (Arc<VersionControl>, Arc<dyn Committer>, usize) {
    let workload = CpuWorkload::new(HOSTS, EPOCHS).with_seed(u64::from(number));
    let id = RegionId::new(1, number);
    let manifest = ManifestManager::create(
        store.clone(),
        workload.region_metadata(id),
        Default::default(),
        ManifestConfig::default(),
    )
    .await
    .unwrap();
    let vc = Arc::new(VersionControl::new(
        Version::from_manifest(manifest.manifest(), None).unwrap(),
    ));
    let mutable = vc.current().version().memtables().mutable().clone();
    let mut sequence = 1;
    for batch in workload.batches().unwrap() {
        mutable.write(&batch.batch, OpType::Put, sequence).unwrap();
        sequence += batch.batch.num_rows() as u64;
    }
    vc.set_sequence_and_entry_id(sequence - 1, 1);
    let bytes = mutable.stats().estimated_bytes;
    let committer = RegionCommitter::new(manifest, RegionState::Writable);
    (vc, Arc::new(committer), bytes)
}

/// Flushes `regions` concurrently on a pool of `threads`; returns the wall time.
async fn flush(regions: usize, threads: usize) -> (Duration, usize) {
    let store = Operator::new(opendal::services::Memory::default()).unwrap();
    let mut prepared = Vec::new();
    for n in 0..regions {
        prepared.push(region(&store, n as u32).await);
    }
    let input_bytes = prepared.iter().map(|p| p.2).sum();
    let pool = Arc::new(LocalScheduler::new("flush", threads).unwrap());
    let context = Arc::new(FlushContext::new(
        store,
        SstWriteOptions::default(),
        threads,
    ));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut scheduler = FlushScheduler::new(pool.clone(), context, tx);
    let started = Instant::now();
    for (vc, committer, _) in &prepared {
        let region_id = vc.current().version().metadata().region_id();
        scheduler
            .schedule_flush(vc, committer, region_id, FlushReason::Manual)
            .unwrap();
    }
    for _ in 0..regions {
        match rx.recv().await.unwrap() {
            FlushNotify::Finished(_) => {}
            FlushNotify::Failed { error, .. } => panic!("flush failed: {error}"),
        }
    }
    let elapsed = started.elapsed();
    use strata_scheduler::Scheduler as _;
    pool.stop(true).await.unwrap();
    (elapsed, input_bytes)
}

/// The raw writer on the same sorted, deduplicated batches of one region.
async fn raw() -> Duration {
    let store = Operator::new(opendal::services::Memory::default()).unwrap();
    let (vc, _, _) = region(&store, 0).await;
    let version = vc.current().version().clone();
    let memtable = version.memtables().mutable().clone();
    let all: Vec<usize> = (0..version.metadata().columns().len()).collect();
    let schema = output_schema(version.metadata(), &all, true);
    let source: BatchStream = Box::pin(futures::stream::iter(
        memtable.iter(ScanRequest::new().batch_rows(8192)).unwrap(),
    ));
    let merged: Vec<_> = merge(version.codec().clone(), vec![source], MergeOptions::flush())
        .try_collect()
        .await
        .unwrap();
    let sorted: Vec<RecordBatch> = merged
        .iter()
        .map(|b| b.to_record_batch(&schema).unwrap())
        .collect();
    let props = writer_properties(version.metadata(), &SstWriteOptions::default()).unwrap();
    let started = Instant::now();
    let mut out = Vec::with_capacity(16 << 20);
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    for batch in &sorted {
        writer.write(batch).unwrap();
    }
    writer.close().unwrap();
    started.elapsed()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rows = (HOSTS as u64 * EPOCHS) as f64;
    let best = |f: &dyn Fn() -> Duration| (0..3).map(|_| f()).min().unwrap();
    let raw_time = best(&|| runtime.block_on(raw()));
    let raw_rate = rows / raw_time.as_secs_f64() / 1e6;
    println!("## Flush jobs (`strata-flush`, bench `flush_jobs`)\n");
    println!(
        "Whole flush jobs (freeze, job on the flush pool, SST through OpenDAL into memory, manifest edit, notify) on TSBS cpu-only integer data, {HOSTS} hosts × {EPOCHS} epochs = 1 M rows per region; best of 3. The raw baseline is one `ArrowWriter` on the same sorted batches with the same writer properties, one thread, same run.\n"
    );
    println!("| concurrent flushes | rows/s (M) | input MB/s | per flush thread vs raw writer |");
    println!("|---|---|---|---|");
    println!("| raw ArrowWriter | {raw_rate:.2} | — | 1.00× |");
    for n in [1usize, 2] {
        let (elapsed, bytes) = (0..3)
            .map(|_| runtime.block_on(flush(n, n)))
            .min_by_key(|r| r.0)
            .unwrap();
        let rate = rows * n as f64 / elapsed.as_secs_f64() / 1e6;
        println!(
            "| {n} | {rate:.2} | {:.0} | {:.2}× |",
            bytes as f64 / elapsed.as_secs_f64() / 1e6,
            rate / n as f64 / raw_rate
        );
    }
    println!(
        "\nMachine: 2 cores, so two flushes also compete with the benchmark's own runtime threads."
    );
}
