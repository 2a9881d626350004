//! The `strata` binary end to end: ingest, continue, scan, config, Ctrl-C.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

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
    // Time-group order (the default) and key order print the same rows.
    let lines = |order: &str| {
        let csv = stdout(&strata(
            dir.path(),
            &[
                "scan",
                "--region",
                "1024.1",
                "--columns",
                "hostname,ts",
                "--order",
                order,
            ],
        ));
        let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let by_key = lines("key");
    assert_eq!(by_key.len(), 601, "a header and 10 hosts × 60 epochs");
    assert_eq!(lines("time"), by_key);
    let json = stdout(&strata(
        dir.path(),
        &[
            "scan",
            "--region",
            "1024.1",
            "--columns",
            "hostname,usage_user",
            "--limit",
            "2",
            "--format",
            "json",
        ],
    ));
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["hostname"], "host_1", "{json}");
    assert!(first["usage_user"].is_i64(), "numbers stay numbers: {json}");
    assert_eq!(json.lines().count(), 2);
}

#[test]
fn ingest_compacts_as_it_goes_and_compact_leaves_one_file_per_window_with_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["ingest", "--hosts", "20", "--epochs", "10"];
    // Six short runs: six flushes of each region, in one time window.
    for _ in 0..6 {
        stdout(&strata(dir.path(), &args));
    }
    let rows = count(dir.path(), "1024.0");
    assert!(rows > 0);
    let files = |dir: &std::path::Path| -> Vec<String> {
        stdout(&strata(dir, &["inspect", "sst", "--region", "1024.0"]))
            .lines()
            .filter(|l| l.len() > 40 && l.as_bytes()[2].is_ascii_hexdigit() && l.contains('-'))
            .map(str::to_string)
            .collect()
    };
    let before = files(dir.path());
    assert!(
        before
            .iter()
            .any(|l| l.split_whitespace().nth(1) == Some("1")),
        "the fourth flush triggered an automatic compaction: {before:?}"
    );
    assert!(before.len() < 6, "{before:?}");

    let said = stdout(&strata(dir.path(), &["compact", "--region", "1024.0"]));
    // What the compaction did, from the engine: every file into one, no row lost.
    let did = format!("{} files -> 1 file, {rows} -> {rows} rows", before.len());
    assert!(said.contains(&did), "{said}");
    let window = said
        .lines()
        .find(|l| l.trim_start().starts_with("1451606400000"))
        .unwrap_or_else(|| panic!("no line for the window: {said}"));
    let columns: Vec<&str> = window.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "1451606400000",
            &before.len().to_string(),
            "->",
            "1",
            &rows.to_string(),
            "->",
            &rows.to_string()
        ],
        "{said}"
    );
    assert!(said.contains("compaction window 1h"), "{said}");
    let after = files(dir.path());
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].split_whitespace().nth(1), Some("1"), "level 1");
    assert_eq!(count(dir.path(), "1024.0"), rows, "the same rows");
    let check = strata(
        dir.path(),
        &["inspect", "sst", "--region", "1024.0", "--check"],
    );
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let unknown = strata(dir.path(), &["compact", "--region", "9.9"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));
}

#[test]
fn alter_ttl_hides_expired_rows_from_scans_and_none_shows_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "ingest",
        "--hosts",
        "8",
        "--epochs",
        "5",
        "--batch-rows",
        "10",
    ];
    stdout(&strata(dir.path(), &args));
    assert_eq!(count(dir.path(), "1024.0"), 10);
    // The TSBS series starts in 2016: a 30-day TTL expires every row of it.
    let said = stdout(&strata(
        dir.path(),
        &["alter", "--region", "1024.0", "--ttl", "30d"],
    ));
    assert_eq!(said.trim(), "region 1024.0: ttl 30days (was none)");
    assert_eq!(count(dir.path(), "1024.0"), 0);
    assert_eq!(
        count(dir.path(), "1024.1"),
        10,
        "other regions keep their rows"
    );
    let manifest = stdout(&strata(
        dir.path(),
        &["inspect", "manifest", "--region", "1024.0"],
    ));
    assert!(manifest.contains("options: ttl 30days"), "{manifest}");
    // Nothing was deleted: without a TTL the rows are back.
    stdout(&strata(
        dir.path(),
        &["alter", "--region", "1024.0", "--ttl", "none"],
    ));
    assert_eq!(count(dir.path(), "1024.0"), 10);
    let bad = strata(dir.path(), &["alter", "--region", "1024.0", "--ttl", "0s"]);
    assert_eq!(bad.status.code(), Some(2), "a zero TTL is a usage error");
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

#[test]
fn inspect_dumps_and_check_finds_a_damaged_or_missing_sst() {
    let dir = tempfile::tempdir().unwrap();
    stdout(&strata(
        dir.path(),
        &["ingest", "--hosts", "20", "--epochs", "10"],
    ));
    let manifest = stdout(&strata(
        dir.path(),
        &["inspect", "manifest", "--region", "1024.0", "--check"],
    ));
    assert!(manifest.contains("change (schema version 0"), "{manifest}");
    assert!(
        manifest.contains("[epoch 0]: change") && manifest.contains("(leader epoch 0)"),
        "{manifest}"
    );
    assert!(
        manifest.contains("check: ok (1 files present"),
        "{manifest}"
    );
    let sst = stdout(&strata(
        dir.path(),
        &["inspect", "sst", "--region", "1024.0"],
    ));
    assert!(sst.contains("total: 1 files, 50 rows"), "{sst}");
    let wal = stdout(&strata(dir.path(), &["inspect", "wal"]));
    assert!(wal.contains("region 1024.0:"), "{wal}");

    // Damage the one SST file of region 1024.0: --check fails and names it.
    let data = dir
        .path()
        .join("strata-data/regions/1024/1024_0000000000/data");
    let file = std::fs::read_dir(&data)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let output = strata(
        dir.path(),
        &["inspect", "sst", "--region", "1024.0", "--check"],
    );
    assert_eq!(output.status.code(), Some(1));
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    assert!(String::from_utf8_lossy(&output.stdout).contains(&name));
    std::fs::remove_file(&file).unwrap();
    let output = strata(
        dir.path(),
        &["inspect", "manifest", "--region", "1024.0", "--check"],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "a missing file fails the check"
    );
}

/// The loopback S3 server `cargo xtask ci` starts: `(endpoint, bucket)`. Where the run
/// requires S3 (`STRATA_S3_REQUIRED`, set by `cargo xtask ci`) a missing server fails the
/// test with the reason; elsewhere (a plain `cargo test`) the test is skipped, saying so.
fn s3_server(test: &str) -> Option<(String, String)> {
    match (
        std::env::var("STRATA_S3_ENDPOINT"),
        std::env::var("STRATA_S3_BUCKET"),
    ) {
        (Ok(endpoint), Ok(bucket)) => Some((endpoint, bucket)),
        _ if std::env::var_os("STRATA_S3_REQUIRED").is_some() => panic!(
            "{test}: S3 is required in this run but no server is configured: {}",
            std::env::var("STRATA_S3_UNAVAILABLE").unwrap_or_else(|_| "no reason given".into())
        ),
        _ => {
            eprintln!(
                "skipping {test}: STRATA_S3_ENDPOINT/STRATA_S3_BUCKET are not set (`cargo xtask ci` starts a local moto server, sets them, and requires them)"
            );
            None
        }
    }
}

#[test]
fn ingest_and_scan_with_sst_files_on_s3() {
    let Some((endpoint, bucket)) = s3_server("the S3 CLI test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = format!("cli-{}", std::process::id());
    let s3 = [
        "--s3-bucket",
        bucket.as_str(),
        "--s3-endpoint",
        endpoint.as_str(),
        "--s3-region",
        "us-east-1",
        "--s3-root",
        root.as_str(),
    ];
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .args(s3)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let summary = stdout(&run(&["ingest", "--hosts", "8", "--epochs", "5"]));
    // The summary's "look at the data" command opens the same engine: S3 flags included.
    let look = summary
        .lines()
        .find(|l| l.starts_with("look at the data:"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        look.contains(&format!("--s3-bucket {bucket} --s3-endpoint {endpoint}"))
            && look.contains(&format!("--s3-root {root}")),
        "{look}"
    );
    assert!(
        !dir.path().join("strata-data/regions").exists(),
        "SST files and manifests went to S3, not the data directory"
    );
    let count = stdout(&run(&["scan", "--region", "1024.0", "--count"]));
    assert_eq!(count.trim(), "10");
    stdout(&run(&["inspect", "sst", "--region", "1024.0", "--check"]));
    // Another machine, sharing only the bucket: a follower scan needs no local data
    // directory or WAL, and creates none.
    let elsewhere = "elsewhere/strata-data";
    let count = stdout(&run(&[
        "scan",
        "--follower",
        "--data-dir",
        elsewhere,
        "--region",
        "1024.0",
        "--count",
    ]));
    assert_eq!(count.trim(), "10");
    assert!(!dir.path().join(elsewhere).exists());
}

/// `GET path` over plain HTTP/1.1: the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn ingest_serves_its_metrics_over_http_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "ingest",
            "--hosts",
            "100",
            "--epochs",
            "100000",
            "--regions",
            "2",
            "--batch-rows",
            "100",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    for line in stderr.lines().map_while(Result::ok) {
        if let Some(rest) = line.split("metrics at http://").nth(1) {
            addr = rest.strip_suffix("/metrics").map(str::to_string);
            break;
        }
    }
    let addr = addr.expect("the ingest prints where its metrics are");
    let scrape = || {
        let (head, body) = http_get(&addr, "/metrics");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_lowercase().contains("content-type: text/plain"),
            "{head}"
        );
        body
    };
    let rows_written = |body: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with("strata_write_rows_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let first = scrape();
    assert!(
        first.contains("# TYPE strata_wal_bytes_total counter"),
        "{first}"
    );
    // The counters move while the run goes on.
    let mut later = scrape();
    for _ in 0..10_000 {
        if rows_written(&later) > rows_written(&first) {
            break;
        }
        later = scrape();
    }
    assert!(
        rows_written(&later) > rows_written(&first),
        "no progress between scrapes"
    );
    let (head, _) = http_get(&addr, "/");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `strata scan … | head`: when the reader of its output goes away, the scan ends quietly
/// with status 0 — no panic, no "Broken pipe" error — as Unix tools do.
#[test]
fn a_scan_whose_reader_goes_away_ends_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    stdout(&strata(
        dir.path(),
        &["ingest", "--hosts", "100", "--epochs", "100"],
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["scan", "--region", "1024.0"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the header line's first bytes, then go away (far less than the output).
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"hostname"));
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(stderr.is_empty(), "{stderr}");
}
