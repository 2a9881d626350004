//! Helpers shared by the process suites: running the `strata` binary on a data directory
//! `d` under a small-budget config.

#![allow(dead_code)] // each suite uses a subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

pub(crate) const HOSTS: u64 = 100;
pub(crate) const EPOCHS: u64 = 1500;
pub(crate) const REGIONS: u64 = 2;

pub(crate) fn strata(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Small budget and segments, frequent checkpoints: the writer keeps changing files.
pub(crate) fn config(dir: &Path) -> PathBuf {
    let path = dir.join("strata.toml");
    std::fs::write(
        &path,
        "global_write_buffer_size = \"2MiB\"\n\
         manifest_checkpoint_distance = 3\n\
         [wal]\n\
         segment_size = \"256KiB\"\n",
    )
    .unwrap();
    path
}

pub(crate) fn ingest_args(config: &Path, epochs: u64) -> Vec<String> {
    [
        "ingest",
        "--data-dir",
        "d",
        "--config",
        &config.display().to_string(),
        "--hosts",
        &HOSTS.to_string(),
        "--epochs",
        &epochs.to_string(),
        "--regions",
        &REGIONS.to_string(),
        "--batch-rows",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts an ingest; returns it once it has opened its regions (its "opened" line).
pub(crate) fn start_ingest(
    dir: &Path,
    config: &Path,
    epochs: u64,
) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(ingest_args(config, epochs))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        match rx.recv() {
            Ok(line) if line.contains("opened in") => return (child, rx),
            Ok(_) => {}
            Err(_) => {
                let status = child.wait().unwrap();
                panic!("the ingest ended before it opened its regions: {status}");
            }
        }
    }
}

/// Rows the series in `d` holds: hosts × the next epoch its progress file names.
pub(crate) fn series_rows(dir: &Path) -> u64 {
    let progress = std::fs::read_to_string(dir.join("d/ingest-progress.json")).unwrap();
    let progress: serde_json::Value = serde_json::from_str(&progress).unwrap();
    HOSTS * progress["next_epoch"].as_u64().unwrap()
}

/// `strata scan --count` of region `1024.{region}`.
pub(crate) fn scan_count(dir: &Path, config: &Path, region: u64) -> Output {
    strata(
        dir,
        &[
            "scan",
            "--data-dir",
            "d",
            "--config",
            &config.display().to_string(),
            "--region",
            &format!("1024.{region}"),
            "--count",
        ],
    )
}

/// Rows of every region, by read-only scans.
pub(crate) fn count(dir: &Path, config: &Path) -> u64 {
    (0..REGIONS)
        .map(|r| {
            let output = scan_count(dir, config, r);
            assert!(
                output.status.success(),
                "scan failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout)
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

/// Runs `strata ingest` for `epochs` more epochs of the series.
pub(crate) fn ingest(dir: &Path, config: &Path, epochs: u64) -> Output {
    let args = ingest_args(config, epochs);
    strata(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Every file under `dir`: relative name → (size, modification time in ns, content).
pub(crate) fn fingerprint(dir: &Path) -> std::collections::BTreeMap<String, (u64, i128, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let name = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string();
            let content = if meta.is_dir() {
                pending.push(entry.path());
                Vec::new()
            } else {
                std::fs::read(entry.path()).unwrap()
            };
            let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
            files.insert(name, (meta.len(), mtime, content));
        }
    }
    files
}
