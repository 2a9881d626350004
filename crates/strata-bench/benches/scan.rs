//! Scan: Strata's merge/dedup scans against DuckDB (one thread, deduplicating by key the
//! same way, on the very same Parquet files) and the raw parquet-rs reader, on two
//! layouts it builds itself — one region in 6 overlapping flushes (main-job-like) and one
//! region in 300 small flushes — all in one run. Prints a Markdown section for
//! `docs/benchmarks.md`. DuckDB comes from `STRATA_BENCH_PYTHON` (a python with the
//! `duckdb` package, set by `cargo xtask bench`); without it DuckDB is reported missing.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    // Measures wall time: that is the point of a benchmark.
    clippy::disallowed_methods
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_engine::{
    CompactionConfig, CreateRequest, Engine, EngineBuilder, EngineConfig, RegionId, RegionOptions,
    RowCount, ScanOrder, ScanRequest, SyncPolicy, TimeRange, WriteRequest,
};
use strata_workload::CpuWorkload;

const REGION: RegionId = RegionId::new(1, 0);
const HOSTS: usize = 1_000;

async fn build(dir: &Path, flushes: u64, epochs_per_flush: u64) -> Engine {
    let mut config = EngineConfig::default();
    config.data_home = dir.to_path_buf();
    config.compaction = {
        let mut cfg = CompactionConfig::default();
        cfg.enabled = false;
        cfg
    };
    config.wal.sync = SyncPolicy::Never;
    let engine = EngineBuilder::new(config).build().await.unwrap();
    let workload = CpuWorkload::new(HOSTS, 1);
    engine
        .create(
            // One window: the layout is the flushes' files, nothing else.
            CreateRequest::new(workload.region_metadata(REGION)).options(
                RegionOptions::default().compaction_window(Duration::from_secs(7 * 86_400)),
            ),
        )
        .await
        .unwrap();
    for f in 0..flushes {
        let part = CpuWorkload::new(HOSTS, epochs_per_flush)
            .with_start_epoch(f * epochs_per_flush)
            .with_regions(1)
            .with_batch_rows(10_000);
        for batch in part.batches().unwrap() {
            engine
                .write(WriteRequest::put(REGION, batch.batch))
                .await
                .unwrap();
        }
        engine.flush(REGION).await.unwrap();
    }
    engine
}

/// Rows of a scan and the best time of three.
async fn timed(engine: &Engine, request: &ScanRequest) -> (u64, Duration) {
    let mut best = Duration::MAX;
    let mut rows = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let mut stream = engine.scan(REGION, request.clone()).await.unwrap();
        let mut n = 0u64;
        while let Some(batch) = stream.next().await {
            n += batch.unwrap().num_rows() as u64;
        }
        best = best.min(started.elapsed());
        rows = n;
    }
    (rows, best)
}

/// [`Engine::count`]'s answer, how it got it, and the best time of three.
async fn timed_count(engine: &Engine, request: &ScanRequest) -> (RowCount, Duration) {
    let mut best = Duration::MAX;
    let mut counted = RowCount::default();
    for _ in 0..3 {
        let started = Instant::now();
        counted = engine.count(REGION, request.clone()).await.unwrap();
        best = best.min(started.elapsed());
    }
    (counted, best)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let data = dir.join(strata_storage::region_data_dir(REGION));
    let mut files: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    files
}

/// The raw parquet-rs read of every column of `files` (one thread), best of three.
fn raw_read(files: &[PathBuf]) -> (u64, Duration) {
    let mut best = Duration::MAX;
    let mut rows = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let mut n = 0u64;
        for file in files {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(file).unwrap(),
            )
            .unwrap()
            .with_batch_size(4096)
            .build()
            .unwrap();
            for batch in reader {
                n += batch.unwrap().num_rows() as u64;
            }
        }
        best = best.min(started.elapsed());
        rows = n;
    }
    (rows, best)
}

/// DuckDB, one thread, the dedup count on `files`: `(rows, best of three)`.
fn duckdb(files: &[PathBuf]) -> Result<(u64, Duration), String> {
    let python = std::env::var("STRATA_BENCH_PYTHON").unwrap_or_default();
    if python.is_empty() {
        return Err("missing: no python with duckdb (cargo xtask bench installs it)".into());
    }
    let list = files
        .iter()
        .map(|f| format!("'{}'", f.display()))
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        "import duckdb, time\n\
         con = duckdb.connect()\n\
         con.execute('SET threads=1')\n\
         q = \"SELECT count(*) FROM (SELECT hostname, ts, arg_max(usage_user, __sequence) FROM read_parquet([{list}]) GROUP BY hostname, ts)\"\n\
         best = None\n\
         for _ in range(3):\n\
         \x20   t = time.perf_counter(); n = con.execute(q).fetchone()[0]; d = time.perf_counter() - t\n\
         \x20   best = d if best is None or d < best else best\n\
         print(n, best)\n"
    );
    let output = Command::new(&python)
        .args(["-c", &script])
        .output()
        .map_err(|e| format!("missing: cannot run {python}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "DuckDB failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.split_whitespace();
    let rows = parts
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or("no count")?;
    let secs: f64 = parts.next().and_then(|s| s.parse().ok()).ok_or("no time")?;
    Ok((rows, Duration::from_secs_f64(secs)))
}

fn count_request(prefetch_batches: usize, order: ScanOrder) -> ScanRequest {
    ScanRequest::new()
        .column_indices(Vec::new())
        .batch_rows(8192)
        .prefetch_batches(prefetch_batches)
        .order(order)
}

fn full_request(order: ScanOrder) -> ScanRequest {
    ScanRequest::new()
        .batch_rows(8192)
        .prefetch_batches(0)
        .order(order)
}

/// One table row: what, how long, how many rows, the ratio in bold, the goal.
fn row(what: &str, time: Duration, rows: u64, ratio: f64, of: &str, goal: &str) -> String {
    format!(
        "| {what} | {:.3} s | {rows} | **{ratio:.2}×** {of} | {goal} |\n",
        time.as_secs_f64()
    )
}

async fn layout(name: &str, flushes: u64, epochs_per_flush: u64) -> String {
    let dir = strata_bench::scratch("scan", name).unwrap();
    let engine = build(&dir, flushes, epochs_per_flush).await;
    let files = files(&dir);
    let secs = |d: Duration| d.as_secs_f64();
    let (counted, count_time) = timed_count(&engine, &count_request(0, ScanOrder::Key)).await;
    let (rows, key_one) = timed(&engine, &count_request(0, ScanOrder::Key)).await;
    assert_eq!(counted.rows, rows, "count and scan disagree");
    let (time_rows, time_one) = timed(&engine, &count_request(0, ScanOrder::TimeGroups)).await;
    assert_eq!(time_rows, rows, "the two orders disagree");
    let (_, key_two) = timed(&engine, &count_request(2, ScanOrder::Key)).await;
    let (_, time_two) = timed(&engine, &count_request(2, ScanOrder::TimeGroups)).await;
    let (_, key_full) = timed(&engine, &full_request(ScanOrder::Key)).await;
    let (_, time_full) = timed(&engine, &full_request(ScanOrder::TimeGroups)).await;
    let (_, time_full_two) = timed(
        &engine,
        &full_request(ScanOrder::TimeGroups).prefetch_batches(2),
    )
    .await;
    let (raw_rows, raw) = raw_read(&files);
    // 1 % of the time span, in the middle.
    let epochs = flushes * epochs_per_flush;
    let workload = CpuWorkload::new(HOSTS, epochs);
    let start = workload.timestamp_of_epoch(epochs / 2);
    let end = workload.timestamp_of_epoch(epochs / 2 + epochs.div_ceil(100)) - 1;
    let (range_rows, range) = timed(
        &engine,
        &full_request(ScanOrder::TimeGroups).time_range(TimeRange { start, end }),
    )
    .await;
    engine.stop().await.unwrap();
    let duck = duckdb(&files);
    let _ = std::fs::remove_dir_all(&dir);
    let mut out = format!(
        "### {name}: {rows} rows in {} files\n\n| scan | time | rows | ratio | goal |\n|---|---|---|---|---|\n",
        files.len()
    );
    let goal = if flushes > 100 {
        "≥ 0.5×"
    } else {
        "≥ 1.0×"
    };
    match &duck {
        Ok((duck_rows, duck_time)) => {
            let duck = secs(*duck_time);
            out.push_str(&format!(
                "| DuckDB, 1 thread, dedup count (`arg_max(…, __sequence)` group by key) | {duck:.3} s | {duck_rows} | 1.00 | |\n| Strata `count` (`strata scan --count`), 1 thread: {} files from the manifest, {} read | {:.5} s | {} | **{:.0}×** DuckDB | {goal} |\n",
                counted.files_from_metadata,
                counted.sources_read,
                secs(count_time),
                counted.rows,
                duck / secs(count_time),
            ));
            out.push_str(&row(
                "Strata merge/dedup count (a scan without columns), 1 thread, time-group order",
                time_one,
                rows,
                duck / secs(time_one),
                "DuckDB",
                goal,
            ));
            out.push_str(&row(
                "the same in key order (every file merged with every other)",
                key_one,
                rows,
                duck / secs(key_one),
                "DuckDB",
                "",
            ));
        }
        Err(reason) => out.push_str(&format!(
            "| DuckDB | {reason} | | | |\n| Strata dedup count, 1 thread, time-group order | {:.3} s | {rows} | | |\n| the same in key order | {:.3} s | {rows} | | |\n",
            secs(time_one),
            secs(key_one)
        )),
    }
    out.push_str(&row(
        "Strata dedup count, time-group order, 2 threads (groups opened and decoded ahead)",
        time_two,
        rows,
        secs(time_one) / secs(time_two),
        "1 thread",
        "≥ 1.6×",
    ));
    out.push_str(&row(
        "the same in key order (files decoded ahead)",
        key_two,
        rows,
        secs(key_one) / secs(key_two),
        "1 thread",
        "",
    ));
    out.push_str(&format!(
        "| raw parquet-rs read, all columns, 1 thread (no merge) | {:.3} s | {raw_rows} | 1.00 | |\n",
        secs(raw),
    ));
    out.push_str(&row(
        "Strata full scan to Arrow, all columns, 1 thread, time-group order",
        time_full,
        rows,
        secs(raw) / secs(time_full),
        "raw",
        "≥ 0.7×",
    ));
    out.push_str(&row(
        "the same, 2 threads (time groups and pieces of large files decoded ahead)",
        time_full_two,
        rows,
        secs(time_full) / secs(time_full_two),
        "1 thread",
        "≥ 1.6×",
    ));
    out.push_str(&row(
        "the same in key order, 1 thread",
        key_full,
        rows,
        secs(raw) / secs(key_full),
        "raw",
        "",
    ));
    out.push_str(&format!(
        "| Strata time-range scan of 1 % of the span, 1 thread | {:.4} s | {range_rows} | **{:.1}×** faster than the full scan | ≥ 20× |\n",
        secs(range),
        secs(time_full) / secs(range),
    ));
    out
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sections = runtime.block_on(async {
        vec![
            // Main-job-like: 6 flushes of consecutive time slices, every host in each.
            layout("6 flushes", 6, 500).await,
            layout("300 small flushes (no compaction)", 300, 5).await,
        ]
    });
    println!("## Scan\n");
    println!(
        "One region of TSBS cpu rows ({HOSTS} hosts, 10 fields), compaction off so the layouts stay as flushed (each flush a slice of time: the files do not overlap in time). Counts deduplicate by key (Strata: its merge; DuckDB: the query in the table). Best of three runs each; `1 thread` = every file decoded on the scanning task. Time-group order (`ScanOrder::TimeGroups`, `strata scan`'s default) merges only files whose time ranges overlap and outputs the groups oldest first (mito2's `SeqScan` partition ranges); key order merges every file with every other.\n"
    );
    for section in sections {
        println!("{section}");
    }
}
