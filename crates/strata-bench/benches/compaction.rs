//! Compaction: throughput against the raw Parquet read + write of the same rows, row write
//! amplification of a backfill workload, and a scan after 300 small flushes against the
//! same rows ingested in one run — all in one run. Prints a Markdown section for
//! `docs/benchmarks.md`.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    // Measures wall time: that is the point of a benchmark.
    clippy::disallowed_methods
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use strata_engine::{
    CompactionConfig, CreateRequest, Engine, EngineBuilder, EngineConfig, RegionId, RegionOptions,
    ScanOrder, ScanRequest, SyncPolicy, WriteRequest,
};
use strata_workload::CpuWorkload;

const REGION: RegionId = RegionId::new(1, 0);
const HOUR: i64 = 3_600_000;

fn config(dir: &Path, compaction: bool) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.data_home = dir.to_path_buf();
    config.compaction = {
        let mut cfg = CompactionConfig::default();
        cfg.enabled = compaction;
        cfg
    };
    config.removed_file_lingering = Duration::ZERO;
    // The WAL is not what is measured here.
    config.wal.sync = SyncPolicy::Never;
    config
}

async fn engine(dir: &Path, compaction: bool, registry: prometheus::Registry) -> Engine {
    EngineBuilder::new(config(dir, compaction))
        .registry(registry)
        .build()
        .await
        .unwrap()
}

async fn create(engine: &Engine, workload: &CpuWorkload, window: Option<Duration>) {
    let mut options = RegionOptions::default();
    options.compaction_window = window;
    engine
        .create(CreateRequest::new(workload.region_metadata(REGION)).options(options))
        .await
        .unwrap();
}

/// Writes epochs `start..start + epochs` of `hosts` hosts (one region).
async fn write_epochs(engine: &Engine, hosts: usize, start: u64, epochs: u64) -> u64 {
    let workload = CpuWorkload::new(hosts, epochs)
        .with_start_epoch(start)
        .with_regions(1)
        .with_batch_rows(10_000);
    let mut rows = 0;
    for batch in workload.batches().unwrap() {
        rows += batch.batch.num_rows() as u64;
        engine
            .write(WriteRequest::put(REGION, batch.batch))
            .await
            .unwrap();
    }
    rows
}

fn counter(registry: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            label.is_none_or(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == k && l.value() == v)
            })
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

/// Rows a count scan of the region in `order` returns, and how long it took (best of
/// three).
async fn timed_count(engine: &Engine, order: ScanOrder) -> (u64, Duration) {
    let mut best = Duration::MAX;
    let mut rows = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let stream = engine
            .scan(
                REGION,
                ScanRequest::new()
                    .column_indices(Vec::new())
                    .batch_rows(8192)
                    .order(order),
            )
            .await
            .unwrap();
        let batches: Vec<_> = stream.try_collect().await.unwrap();
        rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        best = best.min(started.elapsed());
    }
    (rows, best)
}

/// Compaction throughput: 8 flushes of 250,000 rows each (2,000 hosts, all hosts in every
/// file, so the merge interleaves all eight), then one manual compaction; against reading
/// the same 8 files and writing their rows to one file with parquet-rs directly.
async fn throughput() -> String {
    let dir = strata_bench::scratch("compaction", "throughput").unwrap();
    let engine = engine(&dir, false, prometheus::Registry::new()).await;
    let hosts = 2_000;
    let workload = CpuWorkload::new(hosts, 1);
    create(&engine, &workload, Some(Duration::from_secs(86_400))).await;
    let mut rows = 0;
    for part in 0..8 {
        rows += write_epochs(&engine, hosts, part * 125, 125).await;
        engine.flush(REGION).await.unwrap();
    }
    let inputs = engine.region_files(REGION).unwrap();
    let input_bytes: u64 = inputs.iter().map(|f| f.file_size).sum();
    let data_dir = dir.join(strata_storage::region_data_dir(REGION));
    // Raw: read every input with parquet-rs and write all rows to one file, same writer
    // properties, no merge — the floor of what any compaction must do.
    let metadata = workload.region_metadata(REGION);
    let properties =
        strata_storage::writer_properties(&metadata, &strata_storage::SstWriteOptions::default())
            .unwrap();
    let raw_out = dir.join("raw.parquet");
    let started = Instant::now();
    let mut writer = None;
    for file in &inputs {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(data_dir.join(format!("{}.parquet", file.file_id))).unwrap(),
        )
        .unwrap()
        .with_batch_size(8192)
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let w = writer.get_or_insert_with(|| {
                parquet::arrow::ArrowWriter::try_new(
                    std::fs::File::create(&raw_out).unwrap(),
                    batch.schema(),
                    Some(properties.clone()),
                )
                .unwrap()
            });
            w.write(&batch).unwrap();
        }
    }
    writer.unwrap().close().unwrap();
    let raw = started.elapsed();

    let started = Instant::now();
    engine.compact(REGION).await.unwrap();
    let strata = started.elapsed();
    let outputs = engine.region_files(REGION).unwrap();
    let output_bytes: u64 = outputs.iter().map(|f| f.file_size).sum();
    engine.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    format!(
        "### Throughput\n\n{rows} rows in 8 level-0 files ({:.1} MiB, every host in every file) merged into {} file(s) ({:.1} MiB), one compaction job.\n\n| | time | rows/s | ratio |\n|---|---|---|---|\n| raw parquet-rs read + write of the same rows (no merge) | {:.2} s | {:.0} | 1.00 |\n| Strata compaction (merge, dedup, write, commit) | {:.2} s | {:.0} | **{:.2}×** (goal ≥ 0.6×) |\n",
        input_bytes as f64 / (1 << 20) as f64,
        outputs.len(),
        output_bytes as f64 / (1 << 20) as f64,
        raw.as_secs_f64(),
        rate(raw),
        strata.as_secs_f64(),
        rate(strata),
        rate(strata) / rate(raw),
    )
}

/// Backfill: 20 one-hour windows; each window's rows arrive over 40 flushes — 250 of its
/// 360 epochs in its own hour (10 flushes), 60 an hour late, 30 two hours late, 20 three
/// hours late. Automatic compaction as configured by default.
async fn backfill() -> String {
    let dir = strata_bench::scratch("compaction", "backfill").unwrap();
    let registry = prometheus::Registry::new();
    let engine = engine(&dir, true, registry.clone()).await;
    let hosts = 100;
    let workload = CpuWorkload::new(hosts, 1);
    create(&engine, &workload, Some(Duration::from_secs(3_600))).await;
    let (hours, rounds) = (20u64, 10u64);
    let mut ingested = 0;
    let started = Instant::now();
    for hour in 0..hours + 3 {
        for round in 0..rounds {
            // (hours back, first epoch of this part within the hour, epochs per round)
            for (back, offset, per_round) in [(0, 0, 25), (1, 250, 6), (2, 310, 3), (3, 340, 2)] {
                let Some(h) = hour.checked_sub(back) else {
                    continue;
                };
                if h >= hours {
                    continue;
                }
                let start = h * 360 + offset + round * per_round;
                ingested += write_epochs(&engine, hosts, start, per_round).await;
            }
            engine.flush(REGION).await.unwrap();
        }
    }
    let ingest_time = started.elapsed();
    // Let running and queued compactions finish.
    engine.stop().await.unwrap();
    let written_auto = counter(
        &registry,
        "strata_compaction_rows_total",
        Some(("direction", "written")),
    );
    let compactions_auto = counter(&registry, "strata_compaction_started_total", None);
    let registry2 = prometheus::Registry::new();
    let engine = self::engine(&dir, true, registry2.clone()).await;
    engine.open(REGION).await.unwrap();
    let files_per_window = |engine: &Engine| {
        let mut windows: BTreeMap<i64, usize> = BTreeMap::new();
        for f in engine.region_files(REGION).unwrap() {
            *windows.entry(f.time_range.1.div_euclid(HOUR)).or_default() += 1;
        }
        windows
    };
    let auto_windows = files_per_window(&engine);
    engine.compact(REGION).await.unwrap();
    let written_manual = counter(
        &registry2,
        "strata_compaction_rows_total",
        Some(("direction", "written")),
    );
    let consolidated = files_per_window(&engine);
    let (count, _) = timed_count(&engine, ScanOrder::Key).await;
    assert_eq!(count, ingested, "every row is there once");
    engine.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let ingested_f = ingested as f64;
    let max = |w: &BTreeMap<i64, usize>| w.values().copied().max().unwrap_or(0);
    format!(
        "### Backfill write amplification\n\n{ingested} rows (100 hosts × 7,200 epochs of 10 s = 20 one-hour windows) in 230 flushes of rows from up to 4 windows each (70 % of a window's rows on time, 30 % one to three hours late), automatic compaction ({} jobs, ingest {:.1} s). Row write amplification = rows written by flushes and compactions ÷ rows ingested.\n\n| | rows written by compaction | write amplification | files (max per window) |\n|---|---|---|---|\n| while ingesting (automatic compaction) | {:.0} | **{:.2}×** (goal ≤ 2.5×; mito2: 4.64× before its fix, 2.17× after) | {} ({}) |\n| then one manual compaction (one file per window) | {:.0} more | {:.2}× | {} ({}) |\n",
        compactions_auto,
        ingest_time.as_secs_f64(),
        written_auto,
        (ingested_f + written_auto) / ingested_f,
        auto_windows.values().sum::<usize>(),
        max(&auto_windows),
        written_manual,
        (ingested_f + written_auto + written_manual) / ingested_f,
        consolidated.values().sum::<usize>(),
        max(&consolidated),
    )
}

/// 300 small flushes (1,000 hosts × 5 epochs each) of one region — the scenario of the
/// issue: without compaction, with compaction once it settles, and the same rows ingested
/// in one run (one flush).
async fn many_flushes() -> String {
    let hosts = 1_000;
    let workload = CpuWorkload::new(hosts, 1);
    let mut results = Vec::new();
    for (name, compaction, flushes) in [
        ("300 flushes, compaction off", false, 300u64),
        ("300 flushes, automatic compaction, then settled", true, 300),
        ("the same rows in one run (1 flush)", true, 1),
    ] {
        let dir = strata_bench::scratch("compaction", "many").unwrap();
        let engine = engine(&dir, compaction, prometheus::Registry::new()).await;
        create(&engine, &workload, None).await;
        let epochs_per_flush = 1_500 / flushes;
        for f in 0..flushes {
            write_epochs(&engine, hosts, f * epochs_per_flush, epochs_per_flush).await;
            engine.flush(REGION).await.unwrap();
        }
        if compaction && flushes > 1 {
            // Settled: what an idle region ends with (the idle consolidation).
            engine.compact(REGION).await.unwrap();
        }
        let files = engine.region_files(REGION).unwrap().len();
        let (rows, key) = timed_count(&engine, ScanOrder::Key).await;
        let (time_rows, groups) = timed_count(&engine, ScanOrder::TimeGroups).await;
        assert_eq!(rows, time_rows, "the two orders disagree");
        engine.stop().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        results.push((name, files, rows, key, groups));
    }
    let (key_base, groups_base) = (results[2].3.as_secs_f64(), results[2].4.as_secs_f64());
    let mut out = String::from(
        "### Scan after 300 small flushes\n\n1,500,000 rows (1,000 hosts × 1,500 epochs) of one region; a count scan (merge + dedup, no fields), best of three, in key order (every file merged with every other) and in time-group order (`strata scan`'s default: files that do not overlap in time are read one after the other; one file alone without delete markers passes through reading its timestamps only).\n\n| layout | files | rows | key order | × one run | time-group order | × one run |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, files, rows, key, groups) in &results {
        out.push_str(&format!(
            "| {name} | {files} | {rows} | {:.3} s | {:.2}× | {:.4} s | {:.2}× |\n",
            key.as_secs_f64(),
            key.as_secs_f64() / key_base,
            groups.as_secs_f64(),
            groups.as_secs_f64() / groups_base,
        ));
    }
    out.push_str("\nGoal: the settled layout ≤ 1.5× the one-run layout.\n");
    out
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `STRATA_BENCH_ONLY=throughput|backfill|many` runs one section (for profiling).
    let only = std::env::var("STRATA_BENCH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let sections = runtime.block_on(async {
        let mut sections = Vec::new();
        if wanted("throughput") {
            sections.push(throughput().await);
        }
        if wanted("backfill") {
            sections.push(backfill().await);
        }
        if wanted("many") {
            sections.push(many_flushes().await);
        }
        sections
    });
    println!("## Compaction\n");
    for section in sections {
        println!("{section}");
    }
}
