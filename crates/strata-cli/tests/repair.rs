//! `strata repair` on a directory whose WAL is damaged in the middle: reading and writing
//! refuse the directory and point at the repair; the dry run changes nothing; `--yes`
//! salvages every record but the damaged one, replays and flushes the regions, and leaves a
//! WAL that opens under strict recovery, after which the series goes on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::path::Path;

use common::*;

fn stdout_of(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn repair(dir: &Path, config: &Path, yes: bool) -> std::process::Output {
    let config = config.display().to_string();
    let mut args = vec!["repair", "--data-dir", "d", "--config", &config];
    if yes {
        args.push("--yes");
    }
    strata(dir, &args)
}

#[test]
fn strata_repair_salvages_a_wal_damaged_in_the_middle_and_leaves_one_that_opens_strict() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let config = config(dir);
    // An ingest killed midway leaves acknowledged rows in the WAL only.
    let (mut writer, _stderr) = start_ingest(dir, &config, 4 * EPOCHS);
    while count(dir, &config) < 30_000 {
        assert!(
            writer.try_wait().unwrap().is_none(),
            "the ingest ended early"
        );
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    let before = count(dir, &config);

    // Flip a byte in the middle of a segment that is not the last.
    let wal = dir.join("d/wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    assert!(
        segments.len() >= 2,
        "the run left too few segments: {segments:?}"
    );
    let damaged = &segments[0];
    let mut bytes = std::fs::read(damaged).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(damaged, &bytes).unwrap();

    // Readers and writers refuse it and point at the repair.
    let scan = scan_count(dir, &config, 0);
    assert!(!scan.status.success());
    let message = String::from_utf8_lossy(&scan.stderr);
    assert!(
        message.contains("WAL corruption") && message.contains("strata repair"),
        "{message}"
    );
    assert!(!ingest(dir, &config, 10).status.success());

    // The dry run reports and changes nothing.
    let unchanged = fingerprint(dir);
    let report = stdout_of(&repair(dir, &config, false));
    assert!(report.contains("lost:"), "{report}");
    let name = damaged.file_name().unwrap().to_string_lossy().into_owned();
    assert!(report.contains(&name), "{report}");
    assert!(report.contains("--yes"), "{report}");
    assert!(
        fingerprint(dir) == unchanged,
        "the dry run changed the directory"
    );

    let report = stdout_of(&repair(dir, &config, true));
    eprintln!("{report}");
    assert!(report.contains("replayed and flushed"), "{report}");
    assert!(report.contains("opens under strict recovery"), "{report}");

    // At most the one damaged record (one worker batch: ≤ 64 requests of 100 rows) is lost.
    let after = count(dir, &config);
    assert!(
        after <= before && before - after <= 64 * 100,
        "before {before} rows, after {after}"
    );
    // A strict open reads the repaired WAL.
    let strict = dir.join("strict.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&strict, format!("{text}recovery = \"strict\"\n")).unwrap();
    assert_eq!(count(dir, &strict), after);
    // And the series goes on.
    let more = ingest(dir, &config, 10);
    assert!(
        more.status.success(),
        "{}",
        String::from_utf8_lossy(&more.stderr)
    );
    let report = stdout_of(&repair(dir, &config, false));
    assert!(report.contains("nothing to repair"), "{report}");
}
