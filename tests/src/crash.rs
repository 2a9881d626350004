//! The crash suites' shared harness: a child that writes rows with unique keys to an engine
//! and logs each write to a side file before (`try`) and after (`ack`) it; and a checker
//! that reopens the engine and holds every region to that file — every acknowledged row
//! there with its value, no row that was never written. The SIGKILL suite (`crash`) and the
//! power-off suite (`power_off`) run it on a local directory and on the power-off file
//! system.

// Test harness: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_engine::{
    CreateRequest, Engine, EngineBuilder, EngineConfig, ErrorKind, RegionId, RegionMetadata,
    ScanRequest, SyncPolicy, WriteRequest,
};

/// Regions the writer writes.
pub const REGIONS: u32 = 2;
/// Rows per write.
pub const ROWS_PER_WRITE: i64 = 25;

/// Region `r` of the test table.
pub fn region(r: u32) -> RegionId {
    RegionId::new(11, r)
}

/// The schema of every test region.
pub fn metadata(region: RegionId) -> RegionMetadata {
    crate::host_ts_v(region)
}

/// The value stored for key `n` of `region`.
pub fn value(region: u32, n: i64) -> i64 {
    n * 31 + i64::from(region)
}

/// Rows `start..end` of `region` (keys are timestamps; hosts cycle).
pub fn rows(region: RegionId, start: i64, end: i64) -> RecordBatch {
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

/// The engine settings of both roles: file WAL `always`, a 1 MiB budget so flushes are
/// frequent, checkpoints every 5 versions, 64 KiB segments (so segments rotate and reclaimed
/// files are kept and reused within a few dozen writes).
pub fn config(dir: &Path) -> EngineConfig {
    config_with(dir, SyncPolicy::Always)
}

/// [`config`] with another WAL sync policy.
pub fn config_with(dir: &Path, sync: SyncPolicy) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.data_home = dir.to_path_buf();
    config.num_workers = 2;
    config.max_background_flushes = 1;
    config.global_write_buffer_size = bytesize::ByteSize::mib(1);
    config.manifest_checkpoint_distance = 5;
    // Removed files go at once: a file on disk the manifest does not name after a
    // reopen's sweep is then a leak, whatever the kill interrupted.
    config.removed_file_lingering = std::time::Duration::ZERO;
    // Compactions after every other flush, so kills land in them often.
    config.compaction.trigger_file_num = 2;
    config.wal.segment_size = bytesize::ByteSize::kib(64);
    config.wal.sync = sync;
    config
}

/// The side file: per region, the highest key tried, and every acknowledged key range.
#[derive(Default)]
pub struct Side {
    /// Per region, the highest key tried.
    pub tried: BTreeMap<u32, i64>,
    /// Per region, every acknowledged key range.
    pub acked: BTreeMap<u32, Vec<(i64, i64)>>,
}

/// Reads the side file (a missing file is empty; a line cut by a kill does not count).
pub fn read_side(path: &Path) -> Side {
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

/// Opens every region, creating those that do not exist.
pub async fn open_all(engine: &Engine) {
    for r in 0..REGIONS {
        match engine.open(region(r)).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::RegionNotFound => engine
                .create(CreateRequest::new(metadata(region(r))))
                .await
                .unwrap(),
            Err(e) => panic!("open region {}: {e}", region(r)),
        }
    }
}

/// What a check holds the recovered rows to, beyond "nothing that was never written".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every acknowledged row is there (`sync = always`, any crash; or a process kill
    /// under any policy).
    EveryAcknowledged,
    /// Each region holds exactly keys `0..k` for some `k` — a prefix of what was written,
    /// without holes (a power loss under `never` or an interval loses a suffix). For a
    /// directory written by one writer run.
    Prefix,
}

/// Reopens the engine on `data` and checks every region against the side file: every
/// acknowledged row there with its value, no row that was never tried; a region may be
/// missing only if nothing was ever tried in it. Panics naming `context` otherwise.
pub async fn check(data: &Path, side: &Path, context: &str) {
    check_with(data, side, context, Expect::EveryAcknowledged).await;
}

/// [`check`] with another expectation. Returns the rows found.
pub async fn check_with(data: &Path, side: &Path, context: &str, expect: Expect) -> usize {
    let what = |msg: String| format!("{context}: {msg}");
    let engine = EngineBuilder::new(config(data))
        .build()
        .await
        .unwrap_or_else(|e| panic!("{}", what(format!("reopen failed: {e}"))));
    let side = read_side(side);
    let mut found = 0;
    for r in 0..REGIONS {
        let id = region(r);
        let opened = engine.open(id).await;
        if opened.is_ok() {
            // The open swept every SST its manifest does not name (outputs of a flush or
            // compaction killed before its commit): none is left.
            let named: BTreeSet<String> = engine
                .region_files(id)
                .unwrap()
                .iter()
                .map(|f| format!("{}.parquet", f.file_id))
                .collect();
            let on_disk = sst_names(&data.join(strata_storage::region_data_dir(id)));
            let orphans: Vec<&String> = on_disk.difference(&named).collect();
            assert!(
                orphans.is_empty(),
                "{}",
                what(format!(
                    "{id}: files no manifest names after the open: {orphans:?}"
                ))
            );
            let missing: Vec<&String> = named.difference(&on_disk).collect();
            assert!(
                missing.is_empty(),
                "{}",
                what(format!(
                    "{id}: files the manifest names are gone: {missing:?}"
                ))
            );
        }
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
        let mut present = BTreeSet::new();
        for batch in engine
            .scan_to_vec(id, ScanRequest::default())
            .await
            .unwrap()
        {
            let ts = batch
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<TimestampMillisecondType>();
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
        found += present.len();
        match expect {
            Expect::EveryAcknowledged => {
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
            Expect::Prefix => {
                let k = present.len() as i64;
                assert!(
                    present.last().is_none_or(|&last| last == k - 1),
                    "{}",
                    what(format!(
                        "{id}: the {k} rows left are not keys 0..{k}: a hole in what survived"
                    ))
                );
            }
        }
    }
    engine.stop().await.unwrap();
    found
}

/// Opens the engine on `data`, compacts every region that exists, and stops it: what a
/// long-lived engine's compactions do between the crash test's short-lived children.
pub async fn compact_all(data: &Path) {
    let engine = EngineBuilder::new(config(data)).build().await.unwrap();
    for r in 0..REGIONS {
        if engine.open(region(r)).await.is_ok() {
            engine.compact(region(r)).await.unwrap();
        }
    }
    engine.stop().await.unwrap();
}

/// Names of the `.parquet` files in `dir` (none if it does not exist).
pub fn sst_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".parquet"))
                .collect()
        })
        .unwrap_or_default()
}

/// The writer child: opens the engine on `data` (WAL synced per `sync`), then writes forever — keys continue
/// from the side file, a region chosen by `seed` each time, a manual flush every 13
/// writes — logging `try` before and `ack` after each write in the side file, and
/// printing `ack {region} {end}` on stdout after each acknowledgement.
pub fn run_writer(data: &Path, side_path: &Path, seed: u64, sync: SyncPolicy) {
    let mut rng = crate::rng(seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = EngineBuilder::new(config_with(data, sync))
            .build()
            .await
            .unwrap();
        open_all(&engine).await;
        let side = read_side(side_path);
        let mut next: BTreeMap<u32, i64> = (0..REGIONS)
            .map(|r| (r, side.tried.get(&r).copied().unwrap_or(0)))
            .collect();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(side_path)
            .unwrap();
        let stdout = std::io::stdout();
        let mut writes = 0u64;
        loop {
            let r = crate::below(&mut rng, u64::from(REGIONS)) as u32;
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
