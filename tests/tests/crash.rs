//! Engine crash test: every acknowledged row survives SIGKILL, no row that was never
//! written appears, and reopening always succeeds.
//!
//! The one test plays two roles. The **parent** runs `cycles` rounds on one directory (so
//! crashes pile up on recovered state): it starts its own binary again as the **child**,
//! which opens the engine (file WAL, `sync = always`, a 1 MiB budget so flushes are
//! frequent, some manual flushes too), writes rows with unique keys, and logs each batch to
//! a side file before (`try`) and after (`ack`) the write; the parent kills the child with
//! SIGKILL after a seeded number of acknowledgements — sometimes zero, which lands during
//! open and WAL replay — then reopens the engine and checks every region against the side
//! file. The kill moment is paced by the child's output; nobody sleeps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout,
    missing_docs
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_engine::{
    CreateRequest, Engine, EngineBuilder, EngineConfig, ErrorKind, RegionId, RegionMetadata,
    RegionOptions, ScanRequest, WriteRequest,
};

const CHILD_ENV: &str = "STRATA_ENGINE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_rows_survive_sigkill_and_reopen_always_succeeds";
const REGIONS: u32 = 2;
const ROWS_PER_WRITE: i64 = 25;

fn region(r: u32) -> RegionId {
    RegionId::new(11, r)
}

fn metadata(region: RegionId) -> RegionMetadata {
    strata_tests::host_ts_v(region)
}

/// The value stored for key `n` of `region`.
fn value(region: u32, n: i64) -> i64 {
    n * 31 + i64::from(region)
}

fn rows(region: RegionId, start: i64, end: i64) -> RecordBatch {
    let r = region.region_number();
    RecordBatch::try_new(
        metadata(region).arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                (start..end).map(|n| format!("h{}", n % 7)),
            )) as ArrayRef,
            Arc::new(TimestampMillisecondArray::from_iter_values(start..end)),
            Arc::new(Int64Array::from_iter_values(
                (start..end).map(|n| value(r, n)),
            )),
        ],
    )
    .unwrap()
}

fn config(dir: &Path) -> EngineConfig {
    let mut config = EngineConfig {
        data_home: dir.to_path_buf(),
        num_workers: 2,
        max_background_flushes: 1,
        global_write_buffer_size: bytesize::ByteSize::mib(1),
        manifest_checkpoint_distance: 5,
        ..EngineConfig::default()
    };
    config.wal.segment_size = bytesize::ByteSize::kib(256);
    config
}

fn seed() -> u64 {
    strata_tests::seed(0xc0ff_ee00_1234)
}

fn stress() -> u64 {
    strata_tests::stress()
}

#[test]
fn acknowledged_rows_survive_sigkill_and_reopen_always_succeeds() {
    match std::env::var(CHILD_ENV) {
        Ok(dir) => run_child(Path::new(&dir)),
        Err(_) => run_parent(),
    }
}

/// The side file: per region, the highest key tried, and every acknowledged key range.
#[derive(Default)]
struct Side {
    tried: BTreeMap<u32, i64>,
    acked: BTreeMap<u32, Vec<(i64, i64)>>,
}

fn read_side(path: &Path) -> Side {
    let mut side = Side::default();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        // A line cut by the kill has missing fields; it was not acknowledged.
        let parts: Vec<&str> = line.split(' ').collect();
        let [kind, region, start, end, "."] = parts[..] else {
            continue;
        };
        let (Ok(region), Ok(start), Ok(end)) = (
            region.parse::<u32>(),
            start.parse::<i64>(),
            end.parse::<i64>(),
        ) else {
            continue;
        };
        let tried = side.tried.entry(region).or_insert(0);
        *tried = (*tried).max(end);
        if kind == "ack" {
            side.acked.entry(region).or_default().push((start, end));
        }
    }
    side
}

fn run_parent() {
    let seed = seed();
    eprintln!("engine crash test: SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let dir = tempfile::tempdir().unwrap();
    let cycles = std::env::var("STRATA_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(if stress() > 1 { 250 * stress() } else { 200 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut total_acked, mut during_open) = (0, 0);
    let (mut child_time, mut check_time) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for cycle in 0..cycles {
        // Crashes pile up on one directory for 50 cycles, then a fresh one starts: with no
        // compaction yet, every flush adds a file, and scans of hundreds of small files
        // would make later cycles slow.
        let data = dir.path().join(format!("data-{}", cycle / 50));
        let side = dir.path().join(format!("side-{}.log", cycle / 50));
        let kill_after = if next(8) == 0 { 0 } else { 1 + next(40) };
        let started = std::time::Instant::now();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &data)
            .env("STRATA_ENGINE_CRASH_SIDE", &side)
            .env("STRATA_ENGINE_CRASH_SEED", (seed ^ cycle).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < kill_after {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("ack ") => seen += 1,
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success() && seen == kill_after,
            "cycle {cycle} (SEED={seed}): the child ended on its own after {seen} acks: {status}; stderr: {}",
            std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default()
        );
        if kill_after == 0 {
            during_open += 1;
        }
        total_acked += seen;
        child_time += started.elapsed();
        let started = std::time::Instant::now();
        runtime.block_on(check(&data, &side, cycle, seed));
        check_time += started.elapsed();
    }
    eprintln!(
        "engine crash test: {cycles} SIGKILL cycles ({during_open} during open/replay), {total_acked} acknowledged writes, all rows recovered; {:.1}s in children, {:.1}s checking",
        child_time.as_secs_f64(),
        check_time.as_secs_f64()
    );
}

async fn open_all(engine: &Engine) {
    for r in 0..REGIONS {
        match engine.open(region(r)).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::RegionNotFound => engine
                .create(CreateRequest {
                    metadata: metadata(region(r)),
                    options: RegionOptions::default(),
                })
                .await
                .unwrap(),
            Err(e) => panic!("open region {}: {e}", region(r)),
        }
    }
}

async fn check(data: &Path, side: &Path, cycle: u64, seed: u64) {
    let what = |msg: String| format!("cycle {cycle} (SEED={seed}): {msg}");
    let engine = EngineBuilder::new(config(data))
        .build()
        .await
        .unwrap_or_else(|e| panic!("{}", what(format!("reopen failed: {e}"))));
    let side = read_side(side);
    for r in 0..REGIONS {
        let id = region(r);
        let opened = engine.open(id).await;
        if let Err(e) = &opened {
            // Only a region that was never created (killed before its create landed) may
            // be missing.
            assert!(
                e.kind() == ErrorKind::RegionNotFound && !side.tried.contains_key(&r),
                "{}",
                what(format!("open {id}: {e}"))
            );
            continue;
        }
        let tried = side.tried.get(&r).copied().unwrap_or(0);
        let mut present = std::collections::BTreeSet::new();
        for batch in engine
            .scan_to_vec(id, ScanRequest::default())
            .await
            .unwrap()
        {
            let ts = batch
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<arrow_array::types::TimestampMillisecondType>();
            let v = batch
                .column_by_name("v")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                let n = ts.value(i);
                assert!(
                    n < tried,
                    "{}",
                    what(format!("{id}: row {n} was never written"))
                );
                assert_eq!(
                    v.value(i),
                    value(r, n),
                    "{}",
                    what(format!("{id}: row {n} damaged"))
                );
                present.insert(n);
            }
        }
        for &(start, end) in side.acked.get(&r).into_iter().flatten() {
            assert!(
                (start..end).all(|n| present.contains(&n)),
                "{}",
                what(format!(
                    "{id}: acknowledged rows {start}..{end} are not all there"
                ))
            );
        }
    }
    engine.stop().await.unwrap();
}

fn run_child(data: &Path) {
    let side_path = std::env::var("STRATA_ENGINE_CRASH_SIDE").unwrap();
    let mut rng: u64 = std::env::var("STRATA_ENGINE_CRASH_SEED")
        .unwrap()
        .parse::<u64>()
        .unwrap()
        | 1;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = EngineBuilder::new(config(data)).build().await.unwrap();
        open_all(&engine).await;
        let side = read_side(Path::new(&side_path));
        let mut next: BTreeMap<u32, i64> = (0..REGIONS)
            .map(|r| (r, side.tried.get(&r).copied().unwrap_or(0)))
            .collect();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&side_path)
            .unwrap();
        let stdout = std::io::stdout();
        let mut writes = 0u64;
        loop {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let r = (rng % u64::from(REGIONS)) as u32;
            let start = next[&r];
            let end = start + ROWS_PER_WRITE;
            writeln!(log, "try {r} {start} {end} .").unwrap();
            engine
                .write(WriteRequest::put(region(r), rows(region(r), start, end)))
                .await
                .unwrap();
            writeln!(log, "ack {r} {start} {end} .").unwrap();
            writeln!(stdout.lock(), "ack {r} {end}").unwrap();
            next.insert(r, end);
            writes += 1;
            if writes.is_multiple_of(13) {
                engine.flush(region(r)).await.unwrap();
            }
        }
    });
}
