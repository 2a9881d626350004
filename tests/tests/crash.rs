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

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use strata_engine::Clock;

use strata_engine::SyncPolicy;
use strata_tests::crash::{check, run_writer};

const CHILD_ENV: &str = "STRATA_ENGINE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_rows_survive_sigkill_and_reopen_always_succeeds";

fn seed() -> u64 {
    strata_tests::seed(0xc0ff_ee00_1234)
}

fn stress() -> u64 {
    strata_tests::stress()
}

#[test]
fn acknowledged_rows_survive_sigkill_and_reopen_always_succeeds() {
    match std::env::var(CHILD_ENV) {
        Ok(dir) => {
            let side = std::env::var("STRATA_ENGINE_CRASH_SIDE").unwrap();
            let seed = std::env::var("STRATA_ENGINE_CRASH_SEED")
                .unwrap()
                .parse()
                .unwrap();
            run_writer(Path::new(&dir), Path::new(&side), seed, SyncPolicy::Always);
        }
        Err(_) => run_parent(),
    }
}

fn run_parent() {
    let seed = seed();
    eprintln!("engine crash test: SEED={seed}");
    let mut rng = strata_tests::rng(seed);
    let mut next = move |n: u64| strata_tests::below(&mut rng, n);
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
    let (mut swept, mut max_files) = (0, 0);
    let (mut child_time, mut check_time) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for cycle in 0..cycles {
        // Crashes pile up on one directory for every cycle: compaction (after every other
        // flush here) keeps its file count bounded however many cycles run.
        let data = dir.path().join("data");
        let side = dir.path().join("side.log");
        let kill_after = if next(8) == 0 { 0 } else { 1 + next(40) };
        let started = strata_engine::SystemClock.now();
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
        child_time += strata_engine::SystemClock.elapsed(started);
        let started = strata_engine::SystemClock.now();
        let files_before = sst_files(&data);
        runtime.block_on(check(&data, &side, &format!("cycle {cycle} (SEED={seed})")));
        let files_after = sst_files(&data);
        swept += files_before.saturating_sub(files_after);
        max_files = max_files.max(files_after);
        // The children are killed after a few writes, often before their compactions
        // commit: every 10 cycles a compaction runs to the end, as a long-lived engine's
        // would, so the file count stays bounded however slow the machine is.
        if cycle % 10 == 9 {
            runtime.block_on(strata_tests::crash::compact_all(&data));
        }
        check_time += strata_engine::SystemClock.elapsed(started);
    }
    eprintln!(
        "engine crash test: {cycles} SIGKILL cycles ({during_open} during open/replay), {total_acked} acknowledged writes, all rows recovered; {swept} SST files swept at reopens (written by a flush or compaction killed before its commit, or removed and killed before the deletion); at most {max_files} SST files after a reopen; {:.1}s in children, {:.1}s checking",
        child_time.as_secs_f64(),
        check_time.as_secs_f64()
    );
    assert!(
        max_files <= 64,
        "compaction keeps the file count bounded: {max_files} files"
    );
}

/// SST files of every region under `data`.
fn sst_files(data: &Path) -> usize {
    (0..strata_tests::crash::REGIONS)
        .map(|r| {
            strata_tests::crash::sst_names(&data.join(strata_storage::region_data_dir(
                strata_tests::crash::region(r),
            )))
            .len()
        })
        .sum()
}
