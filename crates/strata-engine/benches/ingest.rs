//! End-to-end ingest through the engine: TSBS cpu-only rows from `strata-workload`
//! (4,000 hosts, 4 regions, batches of 3,000 rows, 2 concurrent writers) with the file WAL
//! at `sync = always` and `never`, a 128 MiB write budget, local files. Reports rows/s,
//! write latency, stalls, peak memtable bytes and peak RSS growth against the budget.
//! Prints a Markdown section for `docs/benchmarks.md`.

// Measures wall time: that is the point of a benchmark or a measuring example.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    missing_docs,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use strata_engine::{
    CreateRequest, Engine, EngineBuilder, EngineConfig, RegionId, SyncPolicy, WriteRequest,
};
use strata_workload::CpuWorkload;

const HOSTS: usize = 4_000;
const EPOCHS: u64 = 300;
const REGIONS: usize = 4;
const WRITERS: usize = 2;
const BUDGET_MIB: u64 = 128;

struct Outcome {
    rows: u64,
    ingest: Duration,
    flush: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    stalls: u64,
    peak_memtable: usize,
    rss_growth: u64,
    rss_peak: u64,
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn counter(registry: &prometheus::Registry, name: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| {
            f.get_metric()
                .iter()
                .map(|m| m.get_counter().get_value() as u64)
        })
        .sum()
}

async fn run(sync: SyncPolicy, batches: &[Vec<strata_workload::WorkloadBatch>]) -> Outcome {
    let scratch =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-scratch/ingest");
    let _ = std::fs::remove_dir_all(&scratch);
    let mut config = EngineConfig::default();
    config.data_home = scratch.clone();
    config.global_write_buffer_size = ByteSize::mib(BUDGET_MIB);
    config.wal.sync = sync;
    let registry = prometheus::Registry::new();
    let engine: Arc<Engine> = Arc::new(
        EngineBuilder::new(config)
            .registry(registry.clone())
            .build()
            .await
            .unwrap(),
    );
    let workload = CpuWorkload::new(HOSTS, EPOCHS).with_regions(REGIONS);
    for r in 0..REGIONS {
        let id = RegionId::new(1, r as u32);
        engine
            .create(CreateRequest::new(workload.region_metadata(id)))
            .await
            .unwrap();
    }
    // Reset the peak-RSS mark (Linux: writing 5 to clear_refs resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status_kib("VmRSS:");
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (engine, done, peak) = (engine.clone(), done.clone(), peak.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                peak.fetch_max(engine.memory_usage(), Ordering::Relaxed);
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for share in batches.iter().cloned() {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share.len());
            for b in share {
                let t = Instant::now();
                let id = RegionId::new(1, b.region as u32);
                engine.write(WriteRequest::put(id, b.batch)).await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let ingest = started.elapsed();
    let flush_started = Instant::now();
    for r in 0..REGIONS {
        engine.flush(RegionId::new(1, r as u32)).await.unwrap();
    }
    let flush = flush_started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let rss_growth = status_kib("VmHWM:").saturating_sub(rss_before) * 1024;
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let outcome = Outcome {
        rows: workload.total_rows(),
        ingest,
        flush,
        p50: pick(0.5),
        p99: pick(0.99),
        max: *latencies.last().unwrap(),
        stalls: counter(&registry, "strata_write_stall_total"),
        peak_memtable: peak.load(Ordering::Relaxed),
        rss_growth,
        rss_peak: status_kib("VmHWM:") * 1024,
    };
    engine.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let workload = CpuWorkload::new(HOSTS, EPOCHS).with_regions(REGIONS);
    let mut shares: Vec<Vec<_>> = vec![Vec::new(); WRITERS];
    for (i, b) in workload.batches().unwrap().enumerate() {
        shares[i % WRITERS].push(b);
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("## Engine ingest (`strata-engine`, bench `ingest`)\n");
    println!(
        "TSBS cpu-only from `strata-workload`: {HOSTS} hosts × {EPOCHS} epochs = {} rows, integer fields, {REGIONS} regions, batches of 3,000 rows, {WRITERS} concurrent writers, file WAL, local files, write budget {BUDGET_MIB} MiB (reject {} MiB). Rows/s counts acknowledged writes; the final flush of all regions is timed separately. Peak RSS growth is VmHWM during the run minus RSS before it (the pre-generated batches are excluded; the second run reuses heap the allocator kept from the first, so its growth is small); peak RSS is the whole process, batches included.\n",
        workload.total_rows(),
        BUDGET_MIB * 2
    );
    println!(
        "| WAL sync | rows/s | write p50 | write p99 | longest write | stalls | final flush | peak memtables | peak RSS growth | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut rates = Vec::new();
    for sync in [SyncPolicy::Always, SyncPolicy::Never] {
        let o = runtime.block_on(run(sync, &shares));
        let rate = o.rows as f64 / o.ingest.as_secs_f64();
        rates.push(rate);
        println!(
            "| {sync} | {:.0} | {:.2} ms | {:.2} ms | {:.1} ms | {} | {:.2} s | {:.1} MiB | {:.1} MiB ({:.2}× budget) | {:.0} MiB |",
            rate,
            o.p50.as_secs_f64() * 1e3,
            o.p99.as_secs_f64() * 1e3,
            o.max.as_secs_f64() * 1e3,
            o.stalls,
            o.flush.as_secs_f64(),
            mib(o.peak_memtable as u64),
            mib(o.rss_growth),
            o.rss_growth as f64 / (BUDGET_MIB << 20) as f64,
            mib(o.rss_peak),
        );
    }
    println!(
        "\nRatio `always` / `never` (same run): {:.2}×.",
        rates[0] / rates[1]
    );
}
