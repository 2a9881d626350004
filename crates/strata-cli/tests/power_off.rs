//! `strata ingest` as a process on the power-off file system: runs that finish and then
//! lose power, and runs cut by a power loss midway (after a seeded number of file-system
//! operations). After every power-off the series' progress file is whole and never goes
//! back, every row it counts is there and no row beyond what a run wrote, no region that
//! held acknowledged rows goes missing, and the next run continues. Needs FUSE: fails, never skips, without.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use strata_powerfs::PowerFs;

fn seed() -> u64 {
    std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1e57)
}

/// 40 power-offs in CI; under stress 10× (each cycle runs two to four whole debug-build
/// processes: more would not fit the test runner's per-test limits).
fn cycles() -> u64 {
    let stress: u64 = std::env::var("STRATA_STRESS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    40 * stress.clamp(1, 10)
}

/// Rows the series holds (scans); panics if a scan fails.
fn rows(mount: &Path, config: &Path) -> u64 {
    count(mount, config)
}

/// `hosts × next_epoch` of the progress file, 0 if there is none yet; panics if the file
/// is there but not whole.
fn progress_rows(mount: &Path) -> u64 {
    match std::fs::read_to_string(mount.join("d/ingest-progress.json")) {
        Ok(text) => {
            let progress: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the progress file is damaged: {e}: {text:?}"));
            HOSTS * progress["next_epoch"].as_u64().unwrap()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("cannot read the progress file: {e}"),
    }
}

/// A temporary directory with the small-budget config and the power-off file system
/// mounted at `mnt` below it (kept alive by the returned directory).
fn mounted() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    PowerFs,
) {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path());
    let mount = root.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let fs = PowerFs::mount(&mount).unwrap_or_else(|e| {
        panic!("cannot mount the power-off file system (this suite needs FUSE): {e}")
    });
    (root, config, mount, fs)
}

#[test]
fn ingest_runs_lose_power_finished_or_midway_and_the_series_always_goes_on() {
    let seed = seed();
    eprintln!("ingest power-off test: SEED={seed}");
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let (_root, config, mount, mut fs) = mounted();
    let (mut finished, mut cut) = (0, 0);
    // The highest row count any run could have reached: a cut run leaves acknowledged rows
    // beyond what the progress file counts (the next run rewrites from the progress on).
    let mut most = 0;
    for cycle in 0..cycles() {
        let context = format!("cycle {cycle} (SEED={seed})");
        let done_before;
        if rng.random_bool(0.5) {
            // A run that finishes, then the power fails.
            most = most.max(progress_rows(&mount) + HOSTS * 20);
            let output = ingest(&mount, &config, 20);
            assert!(
                output.status.success(),
                "{context}: ingest failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            done_before = progress_rows(&mount);
            finished += 1;
        } else {
            // A run the power cuts midway, after a seeded number of file-system operations.
            done_before = progress_rows(&mount);
            most = most.max(done_before + HOSTS * 5_000);
            let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
                .args(ingest_args(&config, 5_000))
                .current_dir(&mount)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let target = fs.ops() + rng.random_range(1..3_000);
            while !fs.wait_for_ops(target, Duration::from_millis(100)) {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "{context}: ingest ended before the power-off: {status}: {}",
                        std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default()
                    );
                }
            }
            child.kill().unwrap();
            child.wait().unwrap();
            cut += 1;
        }
        if rng.random_bool(0.5) {
            fs.power_off(Some(&mut rng)).unwrap();
        } else {
            fs.power_off(None::<&mut Pcg64Mcg>).unwrap();
        }
        // The progress file is whole, and every row it counts is there.
        let promised = progress_rows(&mount);
        assert!(
            promised >= done_before,
            "{context}: the progress file went back from {done_before} to {promised} rows"
        );
        if promised > 0 {
            let found = rows(&mount, &config);
            assert!(
                found >= promised && found <= most,
                "{context}: {found} rows after the power-off; the progress file counts {promised}, no run wrote past {most}"
            );
        }
    }
    // A last run finishes: at least the series' rows are there, and nothing invented.
    most = most.max(progress_rows(&mount) + HOSTS * 20);
    let output = ingest(&mount, &config, 20);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found = rows(&mount, &config);
    assert!(
        found >= progress_rows(&mount) && found <= most,
        "{found} rows"
    );
    fs.unmount().unwrap();
    eprintln!(
        "ingest power-off test: {finished} finished runs and {cut} runs cut midway lost power; the series always went on"
    );
}

/// A disk that starts failing every write midway (as a full one does): `strata ingest`
/// exits with an error that names the first failed write and how many rows were
/// acknowledged before it — also when its final flush fails too — and once the disk
/// works again the next run finds every acknowledged row.
#[test]
fn an_ingest_whose_disk_fails_reports_the_first_error_and_the_acknowledged_rows() {
    let (_root, config, mount, mut fs) = mounted();
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(ingest_args(&config, 5_000))
        .current_dir(&mount)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it write for a while, then every changing operation fails with EIO.
    let limit = fs.ops() + 1_500;
    fs.freeze_after(Some(limit));
    assert!(
        fs.wait_for_ops(limit + 1, Duration::from_secs(120)),
        "the ingest never reached {limit} operations"
    );
    fs.fail_frozen();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("rows were acknowledged before it"))
        .unwrap_or_else(|| panic!("no failed write with its acknowledged rows: {stderr}"));
    assert!(line.contains("write to region"), "{line}");
    assert!(
        line.contains("then flush region"),
        "the flush failed too: {line}"
    );
    let acknowledged: u64 = line
        .split(" rows were acknowledged")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"));
    assert!(acknowledged > 0, "{line}");
    // The disk works again (the power-off resets the failure); everything acknowledged
    // before the failure reached the WAL's synced bytes or an SST.
    fs.power_off(None::<&mut Pcg64Mcg>).unwrap();
    let found = rows(&mount, &config);
    assert!(
        found >= acknowledged,
        "{found} rows readable, {acknowledged} were acknowledged"
    );
    fs.unmount().unwrap();
}
