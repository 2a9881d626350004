//! The `strata` binary end to end: ingest, continue, scan, config, Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn strata(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn count(dir: &Path, region: &str) -> u64 {
    stdout(&strata(dir, &["scan", "--region", region, "--count"]))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn ingest_then_rerun_continues_the_series_and_scan_sees_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "ingest",
        "--hosts",
        "40",
        "--epochs",
        "30",
        "--batch-rows",
        "100",
    ];
    let summary = stdout(&strata(dir.path(), &args));
    assert!(summary.contains("rows acknowledged   1200"), "{summary}");
    assert!(
        summary.contains("next run continues  at epoch 30"),
        "{summary}"
    );
    assert_eq!(count(dir.path(), "1024.0"), 300, "10 hosts × 30 epochs");
    let summary = stdout(&strata(dir.path(), &args));
    assert!(
        summary.contains("next run continues  at epoch 60"),
        "{summary}"
    );
    let total: u64 = (0..4)
        .map(|r| count(dir.path(), &format!("1024.{r}")))
        .sum();
    assert_eq!(
        total, 2400,
        "the second run added new epochs instead of overwriting"
    );
    let csv = stdout(&strata(
        dir.path(),
        &[
            "scan",
            "--region",
            "1024.1",
            "--columns",
            "hostname,ts",
            "--limit",
            "2",
        ],
    ));
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("hostname,ts\nhost_1,"), "{csv}");
}

#[test]
fn a_mismatched_rerun_and_a_missing_region_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    stdout(&strata(
        dir.path(),
        &["ingest", "--hosts", "8", "--epochs", "2"],
    ));
    let output = strata(dir.path(), &["ingest", "--hosts", "9", "--epochs", "2"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("strata: error: ") && stderr.contains("--hosts"),
        "{stderr}"
    );
    let output = strata(dir.path(), &["scan", "--region", "7.7", "--count"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not found"));
    let output = strata(dir.path(), &["scan", "--region", "nonsense"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "bad arguments are usage errors"
    );
}

#[test]
fn config_default_parses_and_check_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let default = stdout(&strata(dir.path(), &["config", "default"]));
    std::fs::write(dir.path().join("good.toml"), &default).unwrap();
    stdout(&strata(dir.path(), &["config", "check", "good.toml"]));
    std::fs::write(dir.path().join("bad.toml"), "num_workers = 0\n").unwrap();
    let output = strata(dir.path(), &["config", "check", "bad.toml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("num_workers"));
}

#[test]
fn ctrl_c_stops_cleanly_and_every_acknowledged_row_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "ingest",
            "--hosts",
            "100",
            "--epochs",
            "1000000",
            "--wal-sync",
            "never",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first stderr line says the regions are open and ingest starts.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("opened"), "{line}");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit {:?}", output.status);
    let summary = String::from_utf8(output.stdout).unwrap();
    assert!(summary.contains("(interrupted)"), "{summary}");
    let acked: u64 = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("rows acknowledged"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let total: u64 = (0..4)
        .map(|r| count(dir.path(), &format!("1024.{r}")))
        .sum();
    assert_eq!(total, acked, "every acknowledged row, nothing else");
}
