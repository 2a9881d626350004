//! The `LogStore` conformance suite (`strata_wal::conformance`), run against every
//! implementation, one test per scenario. Durable stores also run the scenario that
//! closes and reopens the log.

// Test code: a failed unwrap is a failed test, and printing the seed is the point.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

use strata_wal::conformance::{Harness, entry, ids};
use strata_wal::{
    FileLogStore, FileLogStoreConfig, LogStore, MemoryLogStore, NoopLogStore, SyncPolicy, WalError,
};

struct MemoryHarness;

impl Harness for MemoryHarness {
    type Store = MemoryLogStore;
    fn open(&mut self) -> MemoryLogStore {
        MemoryLogStore::new()
    }
    fn durable(&self) -> bool {
        false
    }
}

struct FileHarness {
    dir: tempfile::TempDir,
    config: FileLogStoreConfig,
}

impl FileHarness {
    fn new(config: FileLogStoreConfig) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            config,
        }
    }
}

impl Harness for FileHarness {
    type Store = FileLogStore;
    fn open(&mut self) -> FileLogStore {
        FileLogStore::open(self.dir.path(), self.config.clone(), None).unwrap()
    }
    fn durable(&self) -> bool {
        true
    }
}

macro_rules! conformance {
    ($module:ident, $harness:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn multi_region_batches_report_last_ids_and_read_back() {
                strata_wal::conformance::multi_region_batches_report_last_ids_and_read_back(
                    &mut $harness,
                )
                .await;
            }
            #[tokio::test]
            async fn read_from_an_id_returns_the_suffix_in_order() {
                strata_wal::conformance::read_from_an_id_returns_the_suffix_in_order(&mut $harness)
                    .await;
            }
            #[tokio::test]
            async fn a_read_does_not_see_appends_made_after_it_began() {
                strata_wal::conformance::a_read_does_not_see_appends_made_after_it_began(
                    &mut $harness,
                )
                .await;
            }
            #[tokio::test]
            async fn obsolete_hides_entries_and_is_monotonic() {
                strata_wal::conformance::obsolete_hides_entries_and_is_monotonic(&mut $harness)
                    .await;
            }
            #[tokio::test]
            async fn drop_removes_the_namespace_and_allows_fresh_ids() {
                strata_wal::conformance::drop_removes_the_namespace_and_allows_fresh_ids(
                    &mut $harness,
                )
                .await;
            }
            #[tokio::test]
            async fn ids_that_do_not_increase_fail_the_whole_batch() {
                strata_wal::conformance::ids_that_do_not_increase_fail_the_whole_batch(
                    &mut $harness,
                )
                .await;
            }
            #[tokio::test]
            async fn every_call_fails_after_stop() {
                strata_wal::conformance::every_call_fails_after_stop(&mut $harness).await;
            }
            #[tokio::test]
            async fn everything_survives_a_reopen() {
                let mut harness = $harness;
                if harness.durable() {
                    strata_wal::conformance::everything_survives_a_reopen(&mut harness).await;
                }
            }
        }
    };
}

conformance!(memory, MemoryHarness);

/// `check` runs the whole suite in one call (what an embedder's test does).
#[tokio::test]
async fn check_runs_every_scenario_against_the_file_store() {
    strata_wal::conformance::check(|| FileHarness::new(FileLogStoreConfig::default())).await;
}
conformance!(
    file_sync_always,
    FileHarness::new(FileLogStoreConfig::default())
);
conformance!(
    file_sync_never_tiny_segments,
    FileHarness::new({
        let mut cfg = FileLogStoreConfig::default();
        cfg.sync = SyncPolicy::Never;
        cfg.segment_size = 64;
        cfg
    })
);
conformance!(
    file_sync_interval,
    FileHarness::new({
        let mut cfg = FileLogStoreConfig::default();
        cfg.sync = SyncPolicy::Interval(std::time::Duration::from_millis(5));
        cfg
    })
);

/// The no-op store keeps the write half of the protocol only: appends succeed and report
/// their ids, reads are empty, stop is final.
#[tokio::test]
async fn noop_store_accepts_appends_and_reads_nothing() {
    let store = NoopLogStore::new();
    let r = store
        .append_batch(vec![entry(1, 3), entry(1, 4), entry(2, 1)])
        .await
        .unwrap();
    assert_eq!(r.last_entry_ids[&1], 4);
    assert_eq!(r.last_entry_ids[&2], 1);
    assert_eq!(ids(&store, 1, 0).await, Vec::<u64>::new());
    assert_eq!(store.last_entry_id(1), None);
    store.obsolete(1, 4).await.unwrap();
    store.drop_region(1).await.unwrap();
    store.stop().await.unwrap();
    assert!(matches!(
        store.append_batch(vec![entry(1, 5)]).await,
        Err(WalError::Stopped)
    ));
}
