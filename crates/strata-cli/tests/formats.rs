//! Golden fixtures: the data directory of every on-disk format era Strata has written
//! (`tests/fixtures/formats/<era>`, each written by the build of its era — see
//! `cargo xtask golden`), read with today's build. A change that breaks reading old data
//! fails here, not on a user's disk.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::strata;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/formats");

/// The eras Strata has written so far; a fixture that goes missing fails the suite.
const ERAS: &[&str] = &[
    "1-bare-deltas",
    "2-pre-slice",
    "3-sliced-unmarked",
    "4-format-gate",
];

/// A fresh copy of era `era`'s data directory (a read-write open changes it; the checked-in
/// fixture must not change) and its config.
fn copy_of(era: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let fixture = Path::new(FIXTURES).join(era);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture.join("data"), &dir.path().join("data"));
    let config = dir.path().join("strata.toml");
    fs::copy(fixture.join("strata.toml"), &config).unwrap();
    let data = dir.path().join("data");
    (dir, data, config)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `(region, expected rows)` of era `era`: what its own build's scan printed.
fn expected(era: &str) -> Vec<(String, Vec<Value>)> {
    let dir = Path::new(FIXTURES).join(era).join("expected");
    let mut regions: Vec<(String, Vec<Value>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let region = path.file_stem().unwrap().to_string_lossy().into_owned();
            (region, json_lines(&fs::read(&path).unwrap()))
        })
        .collect();
    regions.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!regions.is_empty(), "{era}: no expected rows");
    regions
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// Today's `strata scan` of `region` with `extra` arguments.
fn run_scan(data: &Path, config: &Path, region: &str, extra: &[&str]) -> std::process::Output {
    let (config, data) = (config.display().to_string(), data.display().to_string());
    let mut args = vec![
        "scan",
        "--config",
        &config,
        "--data-dir",
        &data,
        "--region",
        region,
    ];
    args.extend(extra);
    strata(Path::new(&data).parent().unwrap(), &args)
}

/// Today's `strata scan --format json` of `region`.
fn scan(data: &Path, config: &Path, region: &str) -> Vec<Value> {
    let out = run_scan(data, config, region, &["--format", "json"]);
    assert!(
        out.status.success(),
        "scan of {region} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}

/// Compares the rows as sets: each (key, timestamp) once in both. The order is not part
/// of the format (today's default scan order, time group by time group, is newer than the
/// first eras, whose scans came out in key order).
fn assert_rows(era: &str, region: &str, got: &[Value], expected: &[Value]) {
    let sorted = |rows: &[Value]| {
        let mut rows: Vec<String> = rows.iter().map(Value::to_string).collect();
        rows.sort();
        rows
    };
    let (got, expected) = (sorted(got), sorted(expected));
    if let Some(i) = (0..got.len().min(expected.len())).find(|&i| got[i] != expected[i]) {
        panic!(
            "{era}, region {region}: row {i} differs\n  today: {}\n  its build: {}",
            got[i], expected[i]
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "{era}, region {region}: row count"
    );
}

/// What the files of one era look like: `(delta format, checkpoint format, SST footer
/// format, whether some SST is in time slices)`; `None` for a file without the field.
fn era_formats(era: &str) -> (Option<u64>, Option<u64>, Option<String>, bool) {
    match era {
        "1-bare-deltas" => (None, None, None, false),
        "2-pre-slice" => (Some(2), None, None, false),
        "3-sliced-unmarked" => (Some(2), None, None, true),
        "4-format-gate" => (Some(3), Some(2), Some("2".into()), true),
        other => panic!("no formats listed for era {other}"),
    }
}

#[test]
fn each_fixture_holds_the_formats_its_era_names() {
    for era in ERAS {
        let (delta, checkpoint, sst, sliced) = era_formats(era);
        let data = Path::new(FIXTURES).join(era).join("data");
        for (region, _) in expected(era) {
            let dir = region_dir(&data, &region);
            let (mut deltas, mut checkpoints) = (Vec::new(), Vec::new());
            for path in files(&dir.join("manifest")) {
                let value: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
                let format = value.get("format").and_then(Value::as_u64);
                match path.extension().and_then(|e| e.to_str()) {
                    Some("json") => deltas.push((version(&path), format)),
                    Some("checkpoint") => checkpoints.push((version(&path), format)),
                    _ => {}
                }
            }
            let last_checkpoint = checkpoints.iter().map(|c| c.0).max();
            assert!(last_checkpoint.is_some(), "{era} {region}: no checkpoint");
            assert!(
                deltas.iter().any(|d| Some(d.0) > last_checkpoint),
                "{era} {region}: no delta after the checkpoint"
            );
            assert!(
                deltas.iter().all(|d| d.1 == delta),
                "{era} {region}: {deltas:?}"
            );
            assert!(
                checkpoints.iter().all(|c| c.1 == checkpoint),
                "{era} {region}: {checkpoints:?}"
            );
            let footers: Vec<(Option<String>, bool)> = files(&dir.join("data"))
                .iter()
                .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
                .map(|path| footer(path))
                .collect();
            assert!(!footers.is_empty(), "{era} {region}: no SST");
            assert!(
                footers.iter().all(|f| f.0 == sst),
                "{era} {region}: {footers:?}"
            );
            assert_eq!(
                footers.iter().any(|f| f.1),
                sliced,
                "{era} {region}: time slices {footers:?}"
            );
        }
    }
}

/// An SST footer's `strata.format` value and whether it records a time-slice width.
fn footer(path: &Path) -> (Option<String>, bool) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(fs::File::open(path).unwrap()).unwrap();
    let pairs = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let value = |key: &str| {
        pairs
            .iter()
            .find(|pair| pair.key == key)
            .and_then(|pair| pair.value.clone())
    };
    (
        value(strata_storage::SST_FORMAT_KEY),
        value("strata.time_slice").is_some(),
    )
}

fn files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect()
}

fn version(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// The directory of region `table.number` under a data directory.
fn region_dir(data: &Path, region: &str) -> PathBuf {
    let (table, number) = region.split_once('.').unwrap();
    data.join(format!(
        "regions/{table}/{table}_{:010}",
        number.parse::<u32>().unwrap()
    ))
}

#[test]
fn every_format_era_reads_with_todays_build_as_its_own_build_read_it() {
    for era in ERAS {
        let (_dir, data, config) = copy_of(era);
        for (region, rows) in expected(era) {
            assert!(rows.len() > 100, "{era}: a fixture of {} rows", rows.len());
            assert_rows(era, &region, &scan(&data, &config, &region), &rows);
            // In key order each series is one run, oldest first: a file whose layout is
            // misread (time slices taken for one sorted run) breaks that, even where the
            // rows as a set come out right.
            let out = run_scan(
                &data,
                &config,
                &region,
                &["--format", "json", "--order", "key"],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let keyed = json_lines(&out.stdout);
            assert_rows(era, &region, &keyed, &rows);
            assert_key_order(era, &region, &keyed);
        }
    }
}

/// Rows of one series (one `hostname`: in the TSBS data every other tag follows from it)
/// come as one run, timestamps ascending.
fn assert_key_order(era: &str, region: &str, rows: &[Value]) {
    let mut seen = std::collections::HashSet::new();
    let mut previous: Option<(&Value, &Value)> = None;
    for (i, row) in rows.iter().enumerate() {
        let (host, ts) = (&row["hostname"], &row["ts"]);
        match previous {
            Some((last_host, last_ts)) if last_host == host => assert!(
                ts.as_str() > last_ts.as_str(),
                "{era}, region {region}: row {i} of {host} goes back in time ({last_ts} then {ts})"
            ),
            _ => assert!(
                seen.insert(host.to_string()),
                "{era}, region {region}: row {i}: the rows of {host} are not one run"
            ),
        }
        previous = Some((host, ts));
    }
}

#[test]
fn a_read_write_open_upgrades_every_era_in_place_and_keeps_its_rows() {
    for era in ERAS {
        let (dir, data, config) = copy_of(era);
        let engine = [
            "--config".to_string(),
            config.display().to_string(),
            "--data-dir".to_string(),
            data.display().to_string(),
        ];
        for (region, rows) in expected(era) {
            // Three commits in today's format (the fixture's checkpoint distance is 3):
            // a compaction of everything, and two option changes.
            for command in [
                vec!["compact", "--region", &region],
                vec!["alter", "--region", &region, "--ttl", "3650d"],
                vec!["alter", "--region", &region, "--ttl", "none"],
            ] {
                let mut args: Vec<&str> = command.clone();
                args.extend(engine.iter().map(String::as_str));
                let out = strata(dir.path(), &args);
                assert!(
                    out.status.success(),
                    "{era}: strata {} failed: {}",
                    command.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert_rows(era, &region, &scan(&data, &config, &region), &rows);
            let formats = manifest_formats(&data, &region);
            assert!(
                formats.contains(&Some(u64::from(strata_storage::DELTA_FORMAT))),
                "{era}, region {region}: no delta in today's format: {formats:?}"
            );
        }
    }
}

/// The `format` field of every manifest file of `region` (`None`: a file without one).
fn manifest_formats(data: &Path, region: &str) -> Vec<Option<u64>> {
    files(&region_dir(data, region).join("manifest"))
        .into_iter()
        .filter(|path| {
            path.extension()
                .is_some_and(|e| e == "json" || e == "checkpoint")
        })
        .map(|path| {
            let value: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            value.get("format").and_then(Value::as_u64)
        })
        .collect()
}

#[test]
fn a_file_of_a_newer_format_is_refused_naming_the_file_and_both_versions() {
    let (_dir, data, config) = copy_of("4-format-gate");
    let (region, _) = expected("4-format-gate").remove(0);
    // The region's largest SST, its footer's format raised to one this build does not know.
    let sst = files(&region_dir(&data, &region).join("data"))
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
        .max_by_key(|path| fs::metadata(path).unwrap().len())
        .expect("the region has SST files");
    let mut bytes = fs::read(&sst).unwrap();
    let key = strata_storage::SST_FORMAT_KEY.as_bytes();
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    // Thrift compact: the value's field header and length (1) follow the key.
    let value = at + key.len() + 2;
    assert_eq!(&bytes[value - 1..=value], b"\x012");
    bytes[value] = b'9';
    fs::write(&sst, bytes).unwrap();

    let out = run_scan(&data, &config, &region, &[]);
    assert!(!out.status.success(), "a file of format 9 was read");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = sst.file_name().unwrap().to_string_lossy();
    assert!(
        stderr.contains(&*name)
            && stderr.contains("format 9")
            && stderr.contains("format 2 at most"),
        "{stderr}"
    );
}
