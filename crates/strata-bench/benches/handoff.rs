//! Hand-off under load: two engines (their own data homes and WALs) share one store — a
//! local directory, and the loopback S3 server when `STRATA_S3_ENDPOINT` /
//! `STRATA_S3_BUCKET` name one (`cargo xtask bench` starts it). Two writers keep writing
//! TSBS cpu batches (4,000 hosts, W1's batches) to one region on whichever engine leads it,
//! retrying `NotLeader` on the other. Whenever the leader's memtable reaches 64 MiB the
//! region is handed over: `downgrade` (refuse writes, flush, commit) on the leader,
//! `upgrade(last_entry_id)` on the other, `set_role(Follower)` on the old one. The write
//! unavailability window of a hand-off runs from the start of the downgrade to the first
//! write acknowledged by the new leader. 20 hand-offs per store; p50 and max.
//!
//! Prints a Markdown section for `docs/benchmarks.md`.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    // Measures wall time: that is the point of a benchmark.
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use strata_engine::{
    Engine, EngineBuilder, EngineConfig, ErrorKind, ObjectStoreConfig, RegionRole, S3Config,
    Secret, WriteRequest,
};
use strata_workload::CpuWorkload;

const HOSTS: usize = 4_000;
const WRITERS: usize = 2;
const HANDOFFS: usize = 20;
const MEMTABLE: usize = 64 << 20;

struct Run {
    windows: Vec<Duration>,
    downgrades: Vec<Duration>,
    upgrades: Vec<Duration>,
    rows: u64,
    elapsed: Duration,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

async fn engine(name: &str, store: &ObjectStoreConfig) -> Engine {
    let mut config = EngineConfig::default();
    config.data_home = strata_bench::scratch("handoff", name).unwrap();
    // Flushes start at half the budget: the 64 MiB memtable is the hand-off's alone.
    config.global_write_buffer_size = ByteSize::mib(512);
    config.object_store = Some(store.clone());
    EngineBuilder::new(config).build().await.unwrap()
}

async fn run(store: ObjectStoreConfig) -> Run {
    let engines = Arc::new([engine("a", &store).await, engine("b", &store).await]);
    let region = strata_bench::cpu_region(0);
    let workload = CpuWorkload::new(HOSTS, 100_000).with_regions(1);
    strata_bench::create_cpu_regions(&engines[0], &workload, 1)
        .await
        .unwrap();
    engines[1]
        .open_as(region, RegionRole::Follower)
        .await
        .unwrap();
    let leader = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let rows = Arc::new(AtomicU64::new(0));
    // Nanoseconds after `origin` of the first acknowledgement by the current leader
    // since the last switch (0: none yet).
    let origin = Instant::now();
    let first_ack = Arc::new(AtomicU64::new(0));
    // One generator thread feeds the writers (as `strata ingest` does).
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let generator = {
        let (workload, done) = (workload.clone(), done.clone());
        std::thread::spawn(move || {
            for b in workload.batches().unwrap() {
                if done.load(Ordering::Acquire) || tx.blocking_send(b).is_err() {
                    return;
                }
            }
        })
    };
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (engines, leader, done, rows, first_ack, rx) = (
                engines.clone(),
                leader.clone(),
                done.clone(),
                rows.clone(),
                first_ack.clone(),
                rx.clone(),
            );
            tokio::spawn(async move {
                loop {
                    if done.load(Ordering::Acquire) {
                        return;
                    }
                    let Some(b) = rx.lock().await.recv().await else {
                        return;
                    };
                    let n = b.batch.num_rows() as u64;
                    loop {
                        let target = leader.load(Ordering::Acquire);
                        match engines[target]
                            .write(WriteRequest::put(region, b.batch.clone()))
                            .await
                        {
                            Ok(_) => {
                                let now = origin.elapsed().as_nanos() as u64;
                                let _ = first_ack.compare_exchange(
                                    0,
                                    now,
                                    Ordering::AcqRel,
                                    Ordering::Acquire,
                                );
                                rows.fetch_add(n, Ordering::Relaxed);
                                break;
                            }
                            Err(e) if e.kind() == ErrorKind::NotLeader => {
                                // The hand-off is under way: retry (on the new leader
                                // once it is switched).
                                tokio::time::sleep(Duration::from_micros(200)).await;
                            }
                            Err(e) => panic!("write: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let (mut windows, mut downgrades, mut upgrades) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..HANDOFFS {
        let from = leader.load(Ordering::Acquire);
        let to = 1 - from;
        while engines[from].region_stats(region).unwrap().memtable_bytes < MEMTABLE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t0 = Instant::now();
        let downgraded = engines[from].downgrade(region).await.unwrap();
        let t1 = Instant::now();
        engines[to]
            .upgrade(region, Some(downgraded.last_entry_id))
            .await
            .unwrap();
        let t2 = Instant::now();
        first_ack.store(0, Ordering::Release);
        leader.store(to, Ordering::Release);
        engines[from]
            .set_role(region, RegionRole::Follower)
            .await
            .unwrap();
        let acked = loop {
            let at = first_ack.load(Ordering::Acquire);
            if at != 0 {
                break origin + Duration::from_nanos(at);
            }
            tokio::time::sleep(Duration::from_micros(100)).await;
        };
        windows.push(acked.saturating_duration_since(t0));
        downgrades.push(t1 - t0);
        upgrades.push(t2 - t1);
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Release);
    for w in writers {
        w.await.unwrap();
    }
    drop(rx);
    generator.join().unwrap();
    for e in engines.iter() {
        e.stop().await.unwrap();
    }
    Run {
        windows,
        downgrades,
        upgrades,
        rows: rows.load(Ordering::Relaxed),
        elapsed,
    }
}

fn row(store: &str, run: &mut Run) -> String {
    run.windows.sort();
    run.downgrades.sort();
    run.upgrades.sort();
    format!(
        "| {store} | {} | **{}** | **{}** | {} / {} | {} / {} | {:.0} K |",
        run.windows.len(),
        ms(percentile(&run.windows, 0.5)),
        ms(*run.windows.last().unwrap()),
        ms(percentile(&run.downgrades, 0.5)),
        ms(*run.downgrades.last().unwrap()),
        ms(percentile(&run.upgrades, 0.5)),
        ms(*run.upgrades.last().unwrap()),
        run.rows as f64 / run.elapsed.as_secs_f64() / 1e3,
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shared = strata_bench::scratch("handoff", "shared").unwrap();
    let mut fs = runtime.block_on(run(ObjectStoreConfig::Fs {
        root: shared.clone(),
    }));
    let s3 = match (
        std::env::var("STRATA_S3_ENDPOINT"),
        std::env::var("STRATA_S3_BUCKET"),
    ) {
        (Ok(endpoint), Ok(bucket)) => Some(
            runtime.block_on(run(ObjectStoreConfig::S3(
                S3Config::new(bucket)
                    .root(format!("bench-handoff-{}", std::process::id()))
                    .endpoint(endpoint)
                    .region("us-east-1")
                    .credentials("test", Secret::new("test")),
            ))),
        ),
        _ => None,
    };
    if let Some(dir) = shared.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    println!("## Hand-off under load\n");
    println!(
        "Two engines share one store; {WRITERS} writers keep writing TSBS cpu batches ({HOSTS} hosts) to one region on its leader and retry `NotLeader` on the other engine. At a 64 MiB memtable the region is handed over (`downgrade` = refuse writes + flush + commit, then `upgrade(last_entry_id)` on the other engine). Window = from the start of the downgrade to the first write the new leader acknowledges. WAL `sync = always`. Goal: window ≤ 1 s on local fs.\n"
    );
    println!(
        "| store | hand-offs | window p50 | window max | downgrade p50 / max | upgrade p50 / max | rows/s overall |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!("{}", row("local fs", &mut fs));
    match s3 {
        Some(mut s3) => println!("{}", row("loopback S3 (moto)", &mut s3)),
        None => println!(
            "| loopback S3 (moto) | not measured: no server (`cargo xtask bench` starts one) | | | | | |"
        ),
    }
    let max = *fs.windows.last().unwrap();
    println!(
        "\nGoal (local fs, max window ≤ 1 s): {}.",
        if max <= Duration::from_secs(1) {
            format!("met ({})", ms(max))
        } else {
            format!(
                "missed ({}): the window is the downgrade's flush of the 64 MiB memtable plus the upgrade's manifest round trips",
                ms(max)
            )
        }
    );
}
