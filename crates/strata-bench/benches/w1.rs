//! W1: TSBS cpu-only ingest — Strata next to its peers and the physical limits, one run.
//!
//! 4,000 hosts × 2,500 epochs = 10 M rows, batches of 3,000 rows, 4 regions, 2 concurrent
//! writers. Peers get the same data as key/value pairs (key = 8-byte series id + 8-byte
//! timestamp, value = the 10 fields as 80 bytes), the same batch size and writer count:
//! fjall (in process; sync = `PersistMode::SyncAll` per batch) and RocksDB through Debian's
//! `db_bench` (`fillrandom`, `--sync=1/0`). Limits: the raw Parquet encode of the same
//! batches (one `ArrowWriter`, one thread) and raw `fdatasync` with the WAL's group size.
//! Prints a Markdown section for `docs/benchmarks.md`.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    // Measures wall time: that is the point of a benchmark or a measuring example.
    clippy::disallowed_methods
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use strata_engine::{EngineBuilder, EngineConfig, RegionId, SyncPolicy, WriteRequest};
use strata_workload::{CpuWorkload, WorkloadBatch};

const HOSTS: usize = 4_000;
const EPOCHS: u64 = 2_500;
const REGIONS: usize = 4;
const WRITERS: usize = 2;
const BATCH_ROWS: usize = 3_000;

fn scratch(name: &str) -> PathBuf {
    strata_bench::scratch("w1", name).unwrap()
}

/// Key/value pairs of one batch: 16-byte key (series id, timestamp), 80-byte value.
type Pairs = Vec<([u8; 16], [u8; 80])>;

fn to_pairs(batch: &RecordBatch) -> Pairs {
    let host = batch.column_by_name("hostname").unwrap().as_string::<i32>();
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    let fields: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name().starts_with("usage_"))
        .map(|(i, _)| batch.column(i).as_primitive::<Int64Type>().clone())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let series: u64 = host
                .value(row)
                .trim_start_matches("host_")
                .parse()
                .unwrap_or(0);
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&series.to_be_bytes());
            key[8..].copy_from_slice(&ts.value(row).to_be_bytes());
            let mut value = [0u8; 80];
            for (i, field) in fields.iter().take(10).enumerate() {
                value[i * 8..i * 8 + 8].copy_from_slice(&field.value(row).to_le_bytes());
            }
            (key, value)
        })
        .collect()
}

fn strata(sync: SyncPolicy, shares: &[Vec<WorkloadBatch>], rows: u64) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = scratch("strata");
        let mut config = EngineConfig::default();
        config.data_home = dir.clone();
        config.wal.sync = sync;
        let engine = Arc::new(EngineBuilder::new(config).build().await.unwrap());
        let workload = CpuWorkload::new(HOSTS, EPOCHS).with_regions(REGIONS);
        strata_bench::create_cpu_regions(&engine, &workload, REGIONS)
            .await
            .unwrap();
        let started = Instant::now();
        let tasks: Vec<_> = shares
            .iter()
            .cloned()
            .map(|share| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    for b in share {
                        let id = RegionId::new(1, b.region as u32);
                        engine.write(WriteRequest::put(id, b.batch)).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let rate = rows as f64 / started.elapsed().as_secs_f64();
        engine.stop().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        rate
    })
}

fn fjall_run(sync: bool, pairs: &[Vec<Pairs>], rows: u64) -> f64 {
    let dir = scratch("fjall");
    let db = fjall::Database::builder(&dir).open().unwrap();
    let keyspace = db
        .keyspace("cpu", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for share in pairs {
            let (db, keyspace) = (&db, &keyspace);
            scope.spawn(move || {
                for batch in share {
                    let mut write = db
                        .batch()
                        .durability(sync.then_some(fjall::PersistMode::SyncAll));
                    for (key, value) in batch {
                        write.insert(keyspace, key.to_vec(), value.to_vec());
                    }
                    write.commit().unwrap();
                }
            });
        }
    });
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    drop(keyspace);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

/// RocksDB's own benchmark tool on the same key/value sizes, batch size and threads.
fn rocksdb(sync: bool, rows: u64) -> Result<f64, String> {
    let dir = scratch("rocksdb");
    let output = Command::new("db_bench")
        .args([
            "--benchmarks=fillrandom",
            &format!("--num={}", rows / WRITERS as u64),
            &format!("--threads={WRITERS}"),
            "--key_size=16",
            "--value_size=80",
            &format!("--batch_size={BATCH_ROWS}"),
            &format!("--sync={}", u8::from(sync)),
            "--compression_type=none",
            "--write_buffer_size=268435456",
            &format!("--db={}", dir.display()),
        ])
        .output()
        .map_err(|e| {
            format!("missing: `db_bench` not runnable ({e}); install Debian's rocksdb-tools")
        })?;
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("fillrandom"))
        .ok_or_else(|| {
            format!(
                "db_bench printed no result: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    // "fillrandom   :       1.234 micros/op 810372 ops/sec ..." (ops = keys).
    line.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "ops/sec;" || w[1] == "ops/sec")
        .and_then(|w| w[0].parse::<f64>().ok())
        .ok_or_else(|| format!("cannot parse db_bench output: {line}"))
}

fn raw_parquet(batches: &[WorkloadBatch], rows: u64) -> f64 {
    let schema = batches[0].batch.schema();
    let metadata = CpuWorkload::new(HOSTS, EPOCHS).region_metadata(RegionId::new(1, 0));
    let properties =
        strata_storage::writer_properties(&metadata, &strata_storage::SstWriteOptions::default())
            .unwrap();
    let started = Instant::now();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::io::sink(), schema, Some(properties)).unwrap();
    for b in batches {
        writer.write(&b.batch).unwrap();
    }
    writer.close().unwrap();
    rows as f64 / started.elapsed().as_secs_f64()
}

/// One writer, `group` bytes written then fdatasync'ed, `groups` times.
fn raw_fdatasync(group: usize, groups: usize) -> f64 {
    let dir = scratch("fdatasync");
    let mut file = std::fs::File::create(dir.join("raw")).unwrap();
    let payload = vec![0x5au8; group];
    let started = Instant::now();
    for _ in 0..groups {
        file.write_all(&payload).unwrap();
        file.sync_data().unwrap();
    }
    let per_second = groups as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    per_second
}

fn main() {
    let workload = CpuWorkload::new(HOSTS, EPOCHS)
        .with_regions(REGIONS)
        .with_batch_rows(BATCH_ROWS);
    let rows = workload.total_rows();
    let all: Vec<WorkloadBatch> = workload.batches().unwrap().collect();
    let mut shares: Vec<Vec<WorkloadBatch>> = vec![Vec::new(); WRITERS];
    for (i, b) in all.iter().enumerate() {
        shares[i % WRITERS].push(b.clone());
    }
    let pairs: Vec<Vec<Pairs>> = shares
        .iter()
        .map(|share| share.iter().map(|b| to_pairs(&b.batch)).collect())
        .collect();

    let results_head: Vec<(String, Result<f64, String>)> = vec![
        (
            "Strata, WAL `always`".into(),
            Ok(strata(SyncPolicy::Always, &shares, rows)),
        ),
        (
            "Strata, WAL `never`".into(),
            Ok(strata(SyncPolicy::Never, &shares, rows)),
        ),
        (
            "fjall, sync per batch".into(),
            Ok(fjall_run(true, &pairs, rows)),
        ),
        ("fjall, no sync".into(), Ok(fjall_run(false, &pairs, rows))),
        ("RocksDB db_bench, `--sync=1`".into(), rocksdb(true, rows)),
        ("RocksDB db_bench, `--sync=0`".into(), rocksdb(false, rows)),
        (
            "limit: raw Parquet encode (1 thread)".into(),
            Ok(raw_parquet(&all, rows)),
        ),
    ];
    let mut results = results_head;
    // The WAL's group for one write batch: 3,000 rows at ~39 B/row (zstd entries).
    let group = BATCH_ROWS * 39;
    let groups = raw_fdatasync(group, 400);
    results.push((
        format!(
            "limit: raw fdatasync of {} KiB groups, 1 writer (× 3,000 rows)",
            group / 1024
        ),
        Ok(groups * BATCH_ROWS as f64),
    ));

    println!("## W1: TSBS cpu-only ingest vs peers and limits (`strata-bench`, bench `w1`)\n");
    println!(
        "{HOSTS} hosts × {EPOCHS} epochs = {rows} rows, batches of {BATCH_ROWS} rows, {REGIONS} regions, {WRITERS} concurrent writers; peers get the same rows as 16-byte keys (series, timestamp) and 80-byte values (the 10 fields), same batch size and writers. Everything below is from one run; ratios are against Strata with WAL `always` in this run.\n"
    );
    println!("| system | rows/s | vs Strata `always` |");
    println!("|---|---|---|");
    let base = results[0].1.as_ref().copied().unwrap_or(f64::NAN);
    for (name, result) in &results {
        match result {
            Ok(rate) => println!("| {name} | {rate:.0} | {:.2}× |", rate / base),
            Err(reason) => println!("| {name} | {reason} | — |"),
        }
    }
    let ratio = |i: usize| results[i].1.as_ref().ok().map(|r| base / r);
    println!();
    if let Some(r) = ratio(4) {
        println!("Strata `always` / RocksDB `--sync=1`: **{r:.2}×** (goal ≥ 0.5×).");
    }
    if let Some(r) = ratio(2) {
        println!("Strata `always` / fjall sync: **{r:.2}×** (goal > 1×).");
    }
    println!("Strata `always`: **{base:.0} rows/s** (goal ≥ 500,000).");
}
