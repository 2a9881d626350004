//! One conformance suite for the `LogStore` protocol, run against every implementation.
//! Durable stores also run the scenarios that close and reopen the log.

// Test code: a failed unwrap is a failed test, and printing the seed is the point.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

use bytes::Bytes;
use futures::TryStreamExt;
use strata_wal::{
    Entry, FileLogStore, FileLogStoreConfig, LogStore, MemoryLogStore, NoopLogStore, SyncPolicy,
    WalError,
};

/// Opens (or reopens) the store under test.
trait Harness {
    type Store: LogStore;
    fn open(&mut self) -> Self::Store;
    fn durable(&self) -> bool;
}

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

fn entry(region: u64, id: u64) -> Entry {
    Entry {
        region_id: region,
        entry_id: id,
        data: Bytes::from(format!("r{region}-e{id}")),
    }
}

async fn ids(store: &impl LogStore, region: u64, start: u64) -> Vec<u64> {
    let chunks: Vec<Vec<Entry>> = store
        .read(region, start)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let entries: Vec<Entry> = chunks.into_iter().flatten().collect();
    for e in &entries {
        assert_eq!(e, &entry(region, e.entry_id), "entry content intact");
    }
    entries.into_iter().map(|e| e.entry_id).collect()
}

async fn multi_region_batches_report_last_ids_and_read_back(h: &mut impl Harness) {
    let store = h.open();
    let r = store
        .append_batch(vec![entry(1, 1), entry(2, 10), entry(1, 2), entry(3, 5)])
        .await
        .unwrap();
    assert_eq!(r.last_entry_ids.len(), 3);
    assert_eq!(r.last_entry_ids[&1], 2);
    assert_eq!(r.last_entry_ids[&2], 10);
    assert_eq!(r.last_entry_ids[&3], 5);
    store
        .append_batch(vec![entry(1, 4), entry(2, 11)])
        .await
        .unwrap();
    assert_eq!(ids(&store, 1, 0).await, [1, 2, 4]);
    assert_eq!(ids(&store, 2, 0).await, [10, 11]);
    assert_eq!(ids(&store, 3, 0).await, [5]);
    assert_eq!(ids(&store, 4, 0).await, Vec::<u64>::new());
    assert_eq!(store.last_entry_id(1), Some(4));
    assert_eq!(store.last_entry_id(4), None);
    assert!(
        store
            .append_batch(vec![])
            .await
            .unwrap()
            .last_entry_ids
            .is_empty()
    );
}

async fn read_from_an_id_returns_the_suffix_in_order(h: &mut impl Harness) {
    let store = h.open();
    for id in 1..=20 {
        store
            .append_batch(vec![entry(7, id), entry(8, id)])
            .await
            .unwrap();
    }
    assert_eq!(ids(&store, 7, 15).await, (15..=20).collect::<Vec<_>>());
    assert_eq!(ids(&store, 7, 21).await, Vec::<u64>::new());
    assert_eq!(ids(&store, 8, 1).await.len(), 20);
}

async fn a_read_does_not_see_appends_made_after_it_began(h: &mut impl Harness) {
    let store = h.open();
    store
        .append_batch(vec![entry(1, 1), entry(1, 2)])
        .await
        .unwrap();
    let stream = store.read(1, 0).unwrap();
    store.append_batch(vec![entry(1, 3)]).await.unwrap();
    let seen: Vec<u64> = stream
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .map(|e| e.entry_id)
        .collect();
    assert_eq!(seen, [1, 2]);
}

async fn obsolete_hides_entries_and_is_monotonic(h: &mut impl Harness) {
    let store = h.open();
    for id in 1..=10 {
        store
            .append_batch(vec![entry(1, id), entry(2, id)])
            .await
            .unwrap();
    }
    store.obsolete(1, 6).await.unwrap();
    assert_eq!(ids(&store, 1, 0).await, [7, 8, 9, 10]);
    assert_eq!(ids(&store, 2, 0).await.len(), 10, "other regions untouched");
    store.obsolete(1, 3).await.unwrap();
    assert_eq!(
        ids(&store, 1, 0).await,
        [7, 8, 9, 10],
        "a lower mark changes nothing"
    );
    assert_eq!(store.last_entry_id(1), Some(10));
    store.obsolete(9, 9).await.unwrap(); // unknown region: no error
    store.append_batch(vec![entry(1, 11)]).await.unwrap();
    assert_eq!(ids(&store, 1, 8).await, [8, 9, 10, 11]);
}

async fn drop_removes_the_namespace_and_allows_fresh_ids(h: &mut impl Harness) {
    let store = h.open();
    store
        .append_batch(vec![entry(1, 5), entry(2, 5)])
        .await
        .unwrap();
    store.drop_region(1).await.unwrap();
    assert_eq!(ids(&store, 1, 0).await, Vec::<u64>::new());
    assert_eq!(store.last_entry_id(1), None);
    store.append_batch(vec![entry(1, 1)]).await.unwrap();
    assert_eq!(ids(&store, 1, 0).await, [1]);
    assert_eq!(ids(&store, 2, 0).await, [5]);
}

async fn ids_that_do_not_increase_fail_the_whole_batch(h: &mut impl Harness) {
    let store = h.open();
    store
        .append_batch(vec![entry(1, 5), entry(2, 5)])
        .await
        .unwrap();
    for bad in [
        vec![entry(2, 6), entry(1, 5)],
        vec![entry(2, 6), entry(1, 4)],
        vec![entry(2, 6), entry(1, 7), entry(1, 7)],
        vec![entry(2, 6), entry(1, 8), entry(1, 7)],
    ] {
        let err = store.append_batch(bad).await.unwrap_err();
        assert!(
            matches!(err, WalError::OutOfOrder { region_id: 1, .. }),
            "{err}"
        );
    }
    assert_eq!(
        ids(&store, 2, 0).await,
        [5],
        "nothing of a failed batch is kept"
    );
    assert_eq!(store.last_entry_id(1), Some(5));
    store.append_batch(vec![entry(1, 9)]).await.unwrap();
}

async fn every_call_fails_after_stop(h: &mut impl Harness) {
    let store = h.open();
    store.append_batch(vec![entry(1, 1)]).await.unwrap();
    store.stop().await.unwrap();
    assert!(matches!(
        store.append_batch(vec![entry(1, 2)]).await,
        Err(WalError::Stopped)
    ));
    assert!(matches!(store.read(1, 0), Err(WalError::Stopped)));
    assert!(matches!(store.obsolete(1, 1).await, Err(WalError::Stopped)));
    assert!(matches!(store.drop_region(1).await, Err(WalError::Stopped)));
    assert!(matches!(store.stop().await, Err(WalError::Stopped)));
}

async fn everything_survives_a_reopen(h: &mut impl Harness) {
    {
        let store = h.open();
        for id in 1..=10 {
            store
                .append_batch(vec![entry(1, id), entry(2, id), entry(3, id)])
                .await
                .unwrap();
        }
        store.obsolete(1, 4).await.unwrap();
        store.drop_region(2).await.unwrap();
        store.stop().await.unwrap();
    }
    let store = h.open();
    assert_eq!(
        ids(&store, 1, 0).await,
        [5, 6, 7, 8, 9, 10],
        "obsolete mark persisted"
    );
    assert_eq!(ids(&store, 2, 0).await, Vec::<u64>::new(), "drop persisted");
    assert_eq!(ids(&store, 3, 0).await.len(), 10);
    assert_eq!(store.last_entry_id(3), Some(10));
    assert_eq!(store.last_entry_id(2), None);
    // Ordering is enforced against recovered ids.
    assert!(store.append_batch(vec![entry(3, 10)]).await.is_err());
    store
        .append_batch(vec![entry(3, 11), entry(2, 1)])
        .await
        .unwrap();
    drop(store);
    let store = h.open();
    assert_eq!(
        ids(&store, 2, 0).await,
        [1],
        "re-created region has only its new entries"
    );
    assert_eq!(ids(&store, 3, 9).await, [9, 10, 11]);
}

macro_rules! conformance {
    ($module:ident, $harness:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn multi_region_batches_report_last_ids_and_read_back() {
                super::multi_region_batches_report_last_ids_and_read_back(&mut $harness).await;
            }
            #[tokio::test]
            async fn read_from_an_id_returns_the_suffix_in_order() {
                super::read_from_an_id_returns_the_suffix_in_order(&mut $harness).await;
            }
            #[tokio::test]
            async fn a_read_does_not_see_appends_made_after_it_began() {
                super::a_read_does_not_see_appends_made_after_it_began(&mut $harness).await;
            }
            #[tokio::test]
            async fn obsolete_hides_entries_and_is_monotonic() {
                super::obsolete_hides_entries_and_is_monotonic(&mut $harness).await;
            }
            #[tokio::test]
            async fn drop_removes_the_namespace_and_allows_fresh_ids() {
                super::drop_removes_the_namespace_and_allows_fresh_ids(&mut $harness).await;
            }
            #[tokio::test]
            async fn ids_that_do_not_increase_fail_the_whole_batch() {
                super::ids_that_do_not_increase_fail_the_whole_batch(&mut $harness).await;
            }
            #[tokio::test]
            async fn every_call_fails_after_stop() {
                super::every_call_fails_after_stop(&mut $harness).await;
            }
            #[tokio::test]
            async fn everything_survives_a_reopen() {
                let mut harness = $harness;
                if harness.durable() {
                    super::everything_survives_a_reopen(&mut harness).await;
                }
            }
        }
    };
}

conformance!(memory, MemoryHarness);
conformance!(
    file_sync_always,
    FileHarness::new(FileLogStoreConfig::default())
);
conformance!(
    file_sync_never_tiny_segments,
    FileHarness::new(FileLogStoreConfig {
        sync: SyncPolicy::Never,
        segment_size: 64,
        ..FileLogStoreConfig::default()
    })
);
conformance!(
    file_sync_interval,
    FileHarness::new(FileLogStoreConfig {
        sync: SyncPolicy::Interval(std::time::Duration::from_millis(5)),
        ..FileLogStoreConfig::default()
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
