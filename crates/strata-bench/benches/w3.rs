//! W3 overload and reopen.
//!
//! - **Overload**: TSBS cpu-only through 2 writers into a 64 MiB budget while every SST
//!   write to the object store is slowed (an OpenDAL layer adds 150 ms to each chunk and
//!   close), so ingest outruns flushing. Reports per-second throughput (min, p1, mean),
//!   stalls, write latency p50 / p99 / p99.9, rejected writes, and peak memtables and RSS
//!   against the reject limit.
//! - **Reopen**: about 1 GiB of WAL (plain entries, no flush), then a new engine opens the
//!   regions: time to open, WAL replay rows/s.
//!
//! Prints a Markdown section for `docs/benchmarks.md`.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    // Measures wall time: that is the point of a benchmark or a measuring example.
    clippy::disallowed_methods
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use strata_engine::{
    Engine, EngineBuilder, EngineConfig, ErrorKind, ObjectStoreConfig, RegionId, SyncPolicy,
    WalCompression, WriteRequest,
};
use strata_storage::testing::{FaultLayer, FaultPlan};
use strata_workload::{CpuWorkload, WorkloadBatch};

const HOSTS: usize = 4_000;
const REGIONS: usize = 4;
const WRITERS: usize = 2;

fn scratch(name: &str) -> PathBuf {
    strata_bench::scratch("w3", name).unwrap()
}

fn batches(epochs: u64, start_epoch: u64) -> Vec<Vec<WorkloadBatch>> {
    let workload = CpuWorkload::new(HOSTS, epochs)
        .with_regions(REGIONS)
        .with_start_epoch(start_epoch);
    let mut shares: Vec<Vec<WorkloadBatch>> = vec![Vec::new(); WRITERS];
    for (i, b) in workload.batches().unwrap().enumerate() {
        shares[i % WRITERS].push(b);
    }
    shares
}

async fn create_regions(engine: &Engine) {
    let workload = CpuWorkload::new(HOSTS, 1).with_regions(REGIONS);
    strata_bench::create_cpu_regions(engine, &workload, REGIONS)
        .await
        .unwrap();
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn overload() {
    let dir = scratch("overload");
    let plan = Arc::new(FaultPlan::default());
    plan.delay_containing("/data/", Duration::from_millis(150));
    let store = ObjectStoreConfig::Fs { root: dir.clone() }
        .build()
        .unwrap()
        .layer(FaultLayer::new(plan.clone()));
    let budget = ByteSize::mib(64);
    let mut config = EngineConfig::default();
    config.data_home = dir.clone();
    config.global_write_buffer_size = budget;
    config.wal.sync = SyncPolicy::Never;
    let reject = config.reject_size();
    let registry = prometheus::Registry::new();
    let engine = Arc::new(
        EngineBuilder::new(config)
            .object_store(store)
            .registry(registry.clone())
            .build()
            .await
            .unwrap(),
    );
    create_regions(&engine).await;
    let shares = batches(1_500, 0);
    let total: u64 = shares
        .iter()
        .flatten()
        .map(|b| b.batch.num_rows() as u64)
        .sum();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = strata_bench::status_kib("VmRSS:");
    let acked = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (acked, done, peak, engine) =
            (acked.clone(), done.clone(), peak.clone(), engine.clone());
        tokio::spawn(async move {
            let mut per_second = Vec::new();
            let mut memory = Vec::new();
            let mut last = 0;
            let mut second_peak = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut ticks = 0;
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let usage = engine.memory_usage();
                peak.fetch_max(usage, Ordering::Relaxed);
                second_peak = second_peak.max(usage);
                ticks += 1;
                if ticks % 10 == 0 {
                    let now = acked.load(Ordering::Relaxed);
                    per_second.push((now - last) as f64);
                    memory.push(second_peak as f64 / f64::from(1 << 20));
                    last = now;
                    second_peak = 0;
                }
            }
            (per_second, memory)
        })
    };
    let started = Instant::now();
    let writers: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let (engine, acked, rejected) = (engine.clone(), acked.clone(), rejected.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for b in share {
                    let id = RegionId::new(1, b.region as u32);
                    let rows = b.batch.num_rows() as u64;
                    let t = Instant::now();
                    match engine.write(WriteRequest::put(id, b.batch)).await {
                        Ok(_) => {
                            acked.fetch_add(rows, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == ErrorKind::WriteRejected => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for w in writers {
        latencies.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (mut per_second, memory) = sampler.await.unwrap();
    let rss_growth = strata_bench::status_kib("VmHWM:").saturating_sub(rss_before) * 1024;
    let stalls: f64 = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "strata_write_stall_total")
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_counter().get_value())
        .sum();
    engine.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    latencies.sort_by(f64::total_cmp);
    // Whole seconds only: the last partial second is not a throughput sample.
    let mean = per_second.iter().sum::<f64>() / per_second.len().max(1) as f64;
    let series: Vec<u64> = per_second.iter().map(|r| *r as u64).collect();
    per_second.sort_by(f64::total_cmp);
    let acked = acked.load(Ordering::Relaxed);
    println!("### W3: overload (slow object store)\n");
    println!(
        "TSBS cpu-only, {total} rows offered by {WRITERS} writers in batches of 3,000; budget {budget}, reject limit {reject}; WAL `never` (so the disk's sync rate is not the limit); every SST chunk write and close delayed 150 ms by an OpenDAL layer, so ingest outruns flushing.\n"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| run time | {:.1} s |", elapsed.as_secs_f64());
    println!(
        "| rows acknowledged | {acked} ({:.0} rows/s) |",
        acked as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| rows/s per whole second: min / p1 / mean | {:.0} / {:.0} / {:.0} (min is {:.0} % of mean) |",
        per_second.first().copied().unwrap_or(0.0),
        percentile(&per_second, 0.01),
        mean,
        100.0 * per_second.first().copied().unwrap_or(0.0) / mean.max(1.0)
    );
    println!("| stalled requests | {stalls:.0} |");
    println!("| rejected writes | {} |", rejected.load(Ordering::Relaxed));
    println!(
        "| write latency p50 / p99 / p99.9 / max | {:.1} / {:.1} / {:.1} / {:.1} ms |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies.last().copied().unwrap_or(0.0)
    );
    println!(
        "| peak memtables | {} ({:.2}× the reject limit) |",
        ByteSize(peak.load(Ordering::Relaxed) as u64),
        peak.load(Ordering::Relaxed) as f64 / reject.as_u64() as f64
    );
    println!(
        "| peak RSS growth during the run | {} ({:.2}× the reject limit) |",
        ByteSize(rss_growth),
        rss_growth as f64 / reject.as_u64() as f64
    );
    println!("\nAcknowledged rows in each second, in order: {series:?}\n");
    let memory_mib: Vec<u64> = memory.iter().map(|m| m.round() as u64).collect();
    println!("Memtable memory, peak MiB in each second: {memory_mib:?}\n");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/w3-overload.svg");
    match draw_chart(
        &chart,
        &series,
        &memory,
        budget.as_u64() as f64 / f64::from(1 << 20),
    ) {
        Ok(()) => println!("![W3: rows/s and memtable memory per second](w3-overload.svg)\n"),
        Err(e) => println!("(chart not drawn: {e})\n"),
    }
}

async fn reopen() {
    let dir = scratch("reopen");
    let config = || {
        let mut config = EngineConfig::default();
        config.data_home = dir.clone();
        config.global_write_buffer_size = ByteSize::gib(4);
        config.global_write_buffer_reject_size = Some(ByteSize::gib(8));
        config.auto_flush_interval = Duration::from_secs(24 * 3600);
        config.wal.sync = SyncPolicy::Never;
        config.wal.compression = WalCompression::None;
        config
    };
    // About 1 GiB of WAL: plain entries are ~190 B per TSBS row.
    let target = 1u64 << 30;
    let engine = EngineBuilder::new(config()).build().await.unwrap();
    create_regions(&engine).await;
    // Region B: written while the others reopen (isolation). Same worker: one worker.
    let b_workload = CpuWorkload::new(200, 1_000_000).with_regions(1);
    let b_region = RegionId::new(2, 0);
    engine
        .create(strata_engine::CreateRequest::new(
            b_workload.region_metadata(b_region),
        ))
        .await
        .unwrap();
    let mut rows = 0u64;
    let mut epoch = 0;
    while crate_dir_size(&config().wal_dir()) < target {
        for share in batches(100, epoch) {
            for b in share {
                rows += b.batch.num_rows() as u64;
                let id = RegionId::new(1, b.region as u32);
                engine.write(WriteRequest::put(id, b.batch)).await.unwrap();
            }
        }
        epoch += 100;
    }
    let wal_bytes = crate_dir_size(&config().wal_dir());
    engine.stop().await.unwrap();
    drop(engine);

    let started = Instant::now();
    let engine = Arc::new(EngineBuilder::new(config()).build().await.unwrap());
    let wal_opened = started.elapsed();
    // B opens first (nothing to replay) and is written throughout the others' replay.
    engine.open(b_region).await.unwrap();
    let stop_b = Arc::new(AtomicBool::new(false));
    let b_writer = tokio::spawn({
        let (engine, stop_b) = (engine.clone(), stop_b.clone());
        async move {
            let mut latencies = Vec::new();
            for b in b_workload.batches().unwrap() {
                if stop_b.load(Ordering::Acquire) {
                    break;
                }
                let sent = Instant::now();
                engine
                    .write(WriteRequest::put(b_region, b.batch))
                    .await
                    .unwrap();
                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                tokio::task::yield_now().await;
            }
            latencies
        }
    });
    let replay_started = started.elapsed();
    futures::future::try_join_all((0..REGIONS).map(|r| engine.open(RegionId::new(1, r as u32))))
        .await
        .unwrap();
    let opened = started.elapsed();
    stop_b.store(true, Ordering::Release);
    let mut b_latencies = b_writer.await.unwrap();
    b_latencies.sort_by(f64::total_cmp);
    let replayed: u64 = (0..REGIONS)
        .map(|r| {
            engine
                .region_stats(RegionId::new(1, r as u32))
                .unwrap()
                .committed_sequence
        })
        .sum();
    assert_eq!(replayed, rows, "every row replayed");
    engine.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    println!("### Reopen: WAL replay\n");
    println!(
        "{rows} TSBS rows written with plain WAL entries and no flush ({} of WAL over {REGIONS} regions), then a new engine opens them.\n",
        ByteSize(wal_bytes)
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| opening the WAL (scan + index) | {:.2} s |",
        wal_opened.as_secs_f64()
    );
    let replay = opened - replay_started;
    println!(
        "| opening the {REGIONS} regions at once (replay, off the worker) | {:.2} s |",
        replay.as_secs_f64()
    );
    println!(
        "| replay rate | {:.0} rows/s, {:.0} MiB/s of WAL |",
        rows as f64 / replay.as_secs_f64(),
        wal_bytes as f64 / (1 << 20) as f64 / replay.as_secs_f64()
    );
    println!("| total time to open | {:.2} s |", opened.as_secs_f64());
    let n = b_latencies.len();
    let (p50, p99, max) = if n == 0 {
        (f64::NAN, f64::NAN, f64::NAN)
    } else {
        (
            percentile(&b_latencies, 0.5),
            percentile(&b_latencies, 0.99),
            b_latencies[n - 1],
        )
    };
    println!(
        "| isolation: writes to region B (same worker) during the replay | {n} writes of 200 rows; p50 {p50:.1} ms, **p99 {p99:.1} ms** (goal ≤ 50 ms), max {max:.1} ms |"
    );
}

fn crate_dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("## W3 overload and reopen (`strata-bench`, bench `w3`)\n");
    runtime.block_on(overload());
    runtime.block_on(reopen());
}

/// Two stacked line charts: acknowledged rows per second, and peak memtable MiB per second
/// against the budget.
fn draw_chart(
    path: &Path,
    rows: &[u64],
    memory_mib: &[f64],
    budget_mib: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(300);
    let seconds = rows.len().max(1) as u32;
    let max_rows = rows.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "W3 overload: acknowledged rows per second",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..seconds, 0f64..max_rows * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("rows/s")
        .draw()?;
    chart.draw_series(LineSeries::new(
        rows.iter().enumerate().map(|(i, r)| (i as u32, *r as f64)),
        &BLUE,
    ))?;
    let max_mib = memory_mib.iter().copied().fold(budget_mib, f64::max);
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "memtable memory (peak per second) vs budget",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..seconds, 0f64..max_mib * 1.2)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("MiB")
        .draw()?;
    chart.draw_series(LineSeries::new(
        memory_mib.iter().enumerate().map(|(i, m)| (i as u32, *m)),
        &RED,
    ))?;
    chart.draw_series(LineSeries::new(
        (0..seconds).map(|i| (i, budget_mib)),
        &BLACK,
    ))?;
    root.present()?;
    Ok(())
}
