//! One writer per data directory, between real processes: while a `strata ingest` child
//! writes a directory (small memory budget and WAL segments, so flushes, manifest
//! checkpoints, segment rotation, reclamation and reuse all happen), scans and inspections
//! run against it in a loop and a second ingest is refused — and none of it can damage the
//! directory. Then the same with the writer SIGKILLed midway: the next writer gets the
//! lock, recovers, and every row is there.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::path::Path;

use common::*;

/// What the loop of readers saw.
#[derive(Default)]
struct Seen {
    scans: usize,
    refused_writers: usize,
    last_count: u64,
}

/// One round of readers against a running writer `pid`: scans (the count never goes
/// down), `inspect wal` and `inspect manifest`, and a second ingest that must be refused
/// naming the writer.
fn readers_round(dir: &Path, config: &Path, pid: u32, seen: &mut Seen) {
    let rows = count(dir, config);
    assert!(
        rows >= seen.last_count,
        "a scan saw {rows} rows after one saw {}",
        seen.last_count
    );
    seen.last_count = rows;
    seen.scans += 1;
    let config_arg = config.display().to_string();
    for args in [
        vec!["inspect", "wal", "--data-dir", "d", "--config", &config_arg],
        vec![
            "inspect",
            "manifest",
            "--data-dir",
            "d",
            "--config",
            &config_arg,
            "--region",
            "1024.0",
        ],
    ] {
        let output = strata(dir, &args);
        assert!(
            output.status.success(),
            "{args:?} failed beside the writer: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let second = ingest(dir, config, 10);
    if second.status.success() {
        // The writer finished between the check and this run, which then continued the
        // series by 10 epochs.
        return;
    }
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use") && stderr.contains(&format!("pid {pid}")),
        "a second writer was not refused with the holder's pid: {stderr}"
    );
    seen.refused_writers += 1;
}

#[test]
fn scans_inspects_and_a_second_ingest_beside_an_ingest_never_damage_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let config = config(dir);
    let (mut writer, _stderr) = start_ingest(dir, &config, EPOCHS);
    let pid = writer.id();
    let mut seen = Seen::default();
    while writer.try_wait().unwrap().is_none() {
        readers_round(dir, &config, pid, &mut seen);
    }
    let output = writer.wait_with_output().unwrap();
    assert!(output.status.success(), "the ingest failed");
    let summary = String::from_utf8_lossy(&output.stdout);
    let total = HOSTS * EPOCHS;
    assert!(
        summary.contains(&format!("rows acknowledged   {total}")),
        "{summary}"
    );
    eprintln!(
        "beside one ingest: {} scans (last saw {} of {total} rows), {} second writers refused",
        seen.scans, seen.last_count, seen.refused_writers
    );
    assert!(
        seen.scans >= 3 && seen.refused_writers >= 2,
        "the readers ran too few rounds while the ingest ran to prove anything"
    );
    // The directory holds exactly the ingested rows and opens read-write again.
    assert_eq!(count(dir, &config), series_rows(dir));
    let again = ingest(dir, &config, 10);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(count(dir, &config), series_rows(dir));
}

#[test]
fn killed_writers_leave_no_lock_and_the_next_writer_recovers_every_row() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let config = config(dir);
    let mut seen = Seen::default();
    let mut kills = 0;
    // Kill writers at different points (right after opening, then later); each next one
    // takes the lock and recovers what the killed one left.
    for rounds_before_kill in [0, 1, 2, 0] {
        // Long runs, so each is still writing when it is killed.
        let (mut writer, stderr) = start_ingest(dir, &config, 4 * EPOCHS);
        let pid = writer.id();
        for _ in 0..rounds_before_kill {
            readers_round(dir, &config, pid, &mut seen);
        }
        if let Some(status) = writer.try_wait().unwrap() {
            // Finished before its kill: then it must have succeeded.
            let rest: Vec<String> = stderr.try_iter().collect();
            assert!(status.success(), "a writer failed: {status}: {rest:?}");
            continue;
        }
        writer.kill().unwrap(); // SIGKILL
        writer.wait().unwrap();
        kills += 1;
        // Nothing a scan saw is lost by the kill.
        let rows = count(dir, &config);
        assert!(
            rows >= seen.last_count,
            "after the kill: {rows} rows, a scan had seen {}",
            seen.last_count
        );
        seen.last_count = rows;
    }
    // A last writer runs to the end (a killed one records no progress, so the series goes
    // on from where the last finished run left it, rewriting rows a killed run wrote).
    let last = ingest(dir, &config, EPOCHS);
    assert!(
        last.status.success(),
        "the writer after the kills failed: {}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_eq!(count(dir, &config), series_rows(dir));
    eprintln!(
        "{kills} SIGKILLed writers: {} scans beside them, {} second writers refused, every row recovered",
        seen.scans, seen.refused_writers
    );
    assert!(
        kills >= 3,
        "too few writers were killed before they finished"
    );
}
