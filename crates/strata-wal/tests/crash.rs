//! Process-kill crash test: acknowledged entries survive SIGKILL, intact and without gaps.
//!
//! The one test below plays two roles. As the **parent** it runs `cycles` rounds on one
//! directory (so crashes pile up on partially recovered state): it starts its own binary
//! again as the **child**, which opens the log with `sync = always`, appends from several
//! tasks and records every acknowledged entry (and obsolete mark) in a side file before
//! printing it; the parent kills the child with SIGKILL after a seeded number of
//! acknowledgements (sometimes zero, which lands during open and recovery), then reopens the
//! log and checks it against the side file. The kill moment is paced by the child's output,
//! so the parent never sleeps.

// Test code: a failed unwrap is a failed test, and printing the seed is the point.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use futures::TryStreamExt;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use strata_wal::{Entry, FileLogStore, FileLogStoreConfig, LogStore};

const CHILD_ENV: &str = "STRATA_WAL_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_entries_survive_sigkill";
const REGIONS: u64 = 4;
/// The child obsoletes after every this many entries of a region...
const OBSOLETE_EVERY: u64 = 40;
/// ...keeping this many of the newest.
const OBSOLETE_LAG: u64 = 20;

fn config() -> FileLogStoreConfig {
    let mut config = FileLogStoreConfig::default();
    // Small segments so rotation, reclamation and the reuse of reclaimed files happen
    // under the kills too.
    config.segment_size = 32 << 10;
    config.recycle_segments = 2;
    config
}

/// Inodes of the files in `dir` whose name ends with `suffix`.
fn inodes(dir: &Path, suffix: &str) -> BTreeSet<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .filter_map(|e| e.metadata().ok().map(|m| m.ino()))
                .collect()
        })
        .unwrap_or_default()
}

/// The bytes of `region`'s entry `id`: checkable without a copy.
fn payload(region: u64, id: u64) -> Bytes {
    let len = ((region * 7919 + id * 104_729) % 3_000) as usize + 1;
    Bytes::from(
        (0..len)
            .map(|i| (region as u8) ^ (id as u8).wrapping_mul(3) ^ (i as u8))
            .collect::<Vec<u8>>(),
    )
}

#[test]
fn acknowledged_entries_survive_sigkill() {
    match std::env::var(CHILD_ENV) {
        Ok(dir) => run_child(Path::new(&dir)),
        Err(_) => run_parent(),
    }
}

fn run_parent() {
    let seed = common::seed("wal crash");
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("wal");
    let side = dir.path().join("acked.log");
    let cycles = 50 * common::stress_factor();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut total_acked = 0;
    // Kept files seen between cycles, and how many cycles found one in use again.
    let mut kept_seen = BTreeSet::new();
    let mut reuse_seen = 0;
    for cycle in 0..cycles {
        let kill_after = if rng.random_range(0..10) == 0 {
            0
        } else {
            rng.random_range(1..200)
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &log_dir)
            .env("STRATA_WAL_CRASH_SIDE_FILE", &side)
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
            "cycle {cycle} (SEED={seed}): child ended on its own after {seen} acks: {status}; stderr: {}",
            std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default()
        );
        total_acked += seen;
        if inodes(&log_dir, ".wal")
            .iter()
            .any(|i| kept_seen.contains(i))
        {
            reuse_seen += 1;
        }
        runtime.block_on(check(&log_dir, &side, cycle, seed));
        kept_seen.extend(inodes(&log_dir, ".wal.free"));
    }
    eprintln!(
        "{cycles} kill cycles, {total_acked} acknowledgements seen, all recovered; \
         {reuse_seen} cycles ran in reused segment files"
    );
    assert!(
        reuse_seen > 0,
        "SEED={seed}: no kill landed with a reused segment file"
    );
}

/// Reopens the log and checks it against the side file.
async fn check(log_dir: &Path, side: &Path, cycle: u64, seed: u64) {
    let what = |msg: String| format!("cycle {cycle} (SEED={seed}): {msg}");
    let store = FileLogStore::open(log_dir, config(), None)
        .unwrap_or_else(|e| panic!("{}", what(format!("reopen failed: {e}"))));
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut obsolete: BTreeMap<u64, u64> = BTreeMap::new();
    for line in std::fs::read_to_string(side).unwrap_or_default().lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        // A line cut by the kill has no trailing fields; ignore it (it was not printed).
        let [kind, region, id] = parts[..] else {
            continue;
        };
        let (Ok(region), Ok(id)) = (region.parse::<u64>(), id.parse::<u64>()) else {
            continue;
        };
        let map = if kind == "ack" {
            &mut acked
        } else {
            &mut obsolete
        };
        let v = map.entry(region).or_default();
        *v = (*v).max(id);
    }
    for region in 1..=REGIONS {
        let chunks: Vec<Vec<Entry>> = store.read(region, 0).unwrap().try_collect().await.unwrap();
        let ids: Vec<u64> = chunks
            .into_iter()
            .flatten()
            .map(|e| {
                assert_eq!(
                    e.data,
                    payload(region, e.entry_id),
                    "{}",
                    what(format!("region {region} entry {} damaged", e.entry_id))
                );
                e.entry_id
            })
            .collect();
        let last_acked = acked.get(&region).copied().unwrap_or(0);
        // The child obsoletes `id - 20` right after acknowledging every 40th id; that one
        // obsolete may be durable although the kill came before its line was written.
        let in_flight_mark =
            (last_acked / OBSOLETE_EVERY * OBSOLETE_EVERY).saturating_sub(OBSOLETE_LAG);
        let mark = obsolete
            .get(&region)
            .copied()
            .unwrap_or(0)
            .max(in_flight_mark);
        if last_acked > mark {
            assert!(
                ids.first().is_some_and(|&f| f <= mark + 1),
                "{}",
                what(format!(
                    "region {region}: acknowledged entry {} lost; have {:?}..",
                    mark + 1,
                    ids.first()
                ))
            );
            assert!(
                ids.last().is_some_and(|&l| l >= last_acked),
                "{}",
                what(format!(
                    "region {region}: acknowledged entry {last_acked} lost; last is {:?}",
                    ids.last()
                ))
            );
        }
        assert!(
            ids.windows(2).all(|w| w[1] == w[0] + 1),
            "{}",
            what(format!("region {region}: gap in {ids:?}"))
        );
        assert!(
            store.last_entry_id(region).unwrap_or(0) >= last_acked,
            "{}",
            what(format!(
                "region {region}: last id below acknowledged {last_acked}"
            ))
        );
    }
}

/// The child: appends forever from one task per region, logging acknowledgements.
fn run_child(log_dir: &Path) {
    let side_path = std::env::var("STRATA_WAL_CRASH_SIDE_FILE").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = std::sync::Arc::new(FileLogStore::open(log_dir, config(), None).unwrap());
        let side = std::sync::Arc::new(std::sync::Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&side_path)
                .unwrap(),
        ));
        let tasks: Vec<_> = (1..=REGIONS)
            .map(|region| {
                let (store, side) = (store.clone(), side.clone());
                tokio::spawn(async move {
                    let mut id = store.last_entry_id(region).unwrap_or(0) + 1;
                    loop {
                        let entry = Entry {
                            region_id: region,
                            entry_id: id,
                            data: payload(region, id),
                        };
                        store.append_batch(vec![entry]).await.unwrap();
                        record(&side, "ack", region, id);
                        if id % OBSOLETE_EVERY == 0 {
                            store.obsolete(region, id - OBSOLETE_LAG).await.unwrap();
                            record(&side, "obsolete", region, id - OBSOLETE_LAG);
                        }
                        id += 1;
                    }
                })
            })
            .collect();
        // The appenders run until the parent kills this process; a panic ends it early,
        // which the parent reports.
        futures::future::try_join_all(tasks).await.unwrap();
    });
}

/// One unbuffered write to the side file (SIGKILL keeps the page cache), then one line on
/// stdout for the parent's pacing.
fn record(side: &std::sync::Mutex<std::fs::File>, kind: &str, region: u64, id: u64) {
    let line = format!("{kind} {region} {id}\n");
    side.lock().unwrap().write_all(line.as_bytes()).unwrap();
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).unwrap();
    out.flush().unwrap();
}
