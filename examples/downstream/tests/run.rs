//! The downstream example does what it says, through `strata-engine` alone.

#![allow(clippy::unwrap_used, missing_docs)]

use strata_engine::ErrorKind;
use strata_example_downstream::{Report, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_project_builds_swaps_writes_scans_and_matches_error_kinds() {
    let dir = std::env::temp_dir().join(format!("strata-downstream-test-{}", std::process::id()));
    let report = run(&dir).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        report,
        Report {
            rows: 3,
            appends: 1,
            flushes: 1,
            missing_region: ErrorKind::RegionNotFound,
            second_engine: ErrorKind::Locked,
        }
    );
}

/// Fresh `CountingLog`s for the conformance suite (a memory log: nothing survives a
/// reopen, so the suite skips its reopen scenario).
struct CountingHarness;

impl strata_engine::log_store_conformance::Harness for CountingHarness {
    type Store = strata_example_downstream::CountingLog;
    fn open(&mut self) -> Self::Store {
        strata_example_downstream::CountingLog::default()
    }
    fn durable(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn the_custom_log_store_passes_strata_log_store_conformance_suite() {
    strata_engine::log_store_conformance::check(|| CountingHarness).await;
}
