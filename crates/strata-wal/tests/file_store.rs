//! Behaviour specific to `FileLogStore`: reclamation, limits, metrics, recovery reports.

// Test code: a failed unwrap is a failed test, and printing the seed is the point.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

use bytes::Bytes;
use futures::TryStreamExt;
use strata_wal::{Entry, FileLogStore, FileLogStoreConfig, LogStore, SyncPolicy, WalError};

fn entry(region: u64, id: u64, len: usize) -> Entry {
    Entry {
        region_id: region,
        entry_id: id,
        data: Bytes::from(vec![id as u8; len]),
    }
}

fn small_segments() -> FileLogStoreConfig {
    {
        let mut cfg = FileLogStoreConfig::default();
        cfg.segment_size = 4 << 10;
        cfg.sync = SyncPolicy::Never;
        cfg
    }
}

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count()
}

#[tokio::test]
async fn segments_rotate_and_are_deleted_once_every_region_obsoletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileLogStore::open(dir.path(), small_segments(), None).unwrap();
    for id in 1..=100 {
        store
            .append_batch(vec![entry(1, id, 500), entry(2, id, 10)])
            .await
            .unwrap();
    }
    let before = segment_files(dir.path());
    assert!(before > 10, "rotated into {before} segments");
    assert_eq!(store.segment_count(), before);

    store.obsolete(1, 100).await.unwrap();
    assert_eq!(
        segment_files(dir.path()),
        before,
        "region 2 still needs every segment"
    );
    store.obsolete(2, 50).await.unwrap();
    let after = segment_files(dir.path());
    assert!(
        after < before / 2 + 2,
        "about half reclaimed: {before} -> {after}"
    );
    store.drop_region(2).await.unwrap();
    assert_eq!(
        segment_files(dir.path()),
        1,
        "only the active segment is left"
    );
    drop(store);

    let store = FileLogStore::open(dir.path(), small_segments(), None).unwrap();
    let left: Vec<Vec<Entry>> = store.read(1, 0).unwrap().try_collect().await.unwrap();
    assert!(left.is_empty());
}

#[tokio::test]
async fn an_append_above_the_record_limit_is_refused_and_leaves_the_log_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FileLogStoreConfig::default();
    config.max_record_size = 1024;
    let store = FileLogStore::open(dir.path(), config, None).unwrap();
    let err = store
        .append_batch(vec![entry(1, 1, 2000)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, WalError::RecordTooLarge { max: 1024, .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
    store.append_batch(vec![entry(1, 1, 100)]).await.unwrap();
}

#[tokio::test]
async fn metrics_count_bytes_entries_syncs_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let store = std::sync::Arc::new(
        FileLogStore::open(dir.path(), FileLogStoreConfig::default(), Some(&registry)).unwrap(),
    );
    let appenders: Vec<_> = (1..=8u64)
        .map(|region| {
            let store = store.clone();
            tokio::spawn(async move {
                for id in 1..=10 {
                    store
                        .append_batch(vec![entry(region, id, 64)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for a in appenders {
        a.await.unwrap();
    }
    let families = registry.gather();
    let value = |name: &str| -> f64 {
        let f = families.iter().find(|f| f.name() == name).unwrap();
        let m = &f.get_metric()[0];
        if name.ends_with("_total") {
            m.get_counter().get_value()
        } else {
            m.get_histogram().get_sample_count() as f64
        }
    };
    assert_eq!(value("strata_wal_entries_total"), 80.0);
    assert!(value("strata_wal_bytes_total") > 80.0 * 64.0);
    let syncs = value("strata_wal_syncs_total");
    assert!(
        (1.0..=80.0).contains(&syncs),
        "one sync per group at most: {syncs}"
    );
    assert_eq!(value("strata_wal_append_seconds"), 80.0);
    assert_eq!(
        value("strata_wal_group_size"),
        syncs,
        "one sync per group under `always`"
    );
    assert!(
        FileLogStore::open(
            tempfile::tempdir().unwrap().path(),
            FileLogStoreConfig::default(),
            Some(&registry)
        )
        .is_err(),
        "registering twice on one registry is an error"
    );
}

#[tokio::test]
async fn a_clean_log_reports_what_it_read_and_no_truncation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileLogStore::open(dir.path(), FileLogStoreConfig::default(), None).unwrap();
        assert_eq!(store.recovery_report().records, 0);
        for id in 1..=5 {
            store
                .append_batch(vec![entry(1, id, 8), entry(2, id, 8)])
                .await
                .unwrap();
        }
    }
    let store = FileLogStore::open(dir.path(), FileLogStoreConfig::default(), None).unwrap();
    let report = store.recovery_report();
    assert_eq!(
        (report.segments, report.records, report.entries),
        (1, 5, 10)
    );
    assert!(report.truncated.is_none());
}

#[tokio::test]
async fn unexpected_files_are_ignored_and_leftover_temporaries_removed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("00000000000000000009.wal.tmp"), b"partial").unwrap();
    let store = FileLogStore::open(dir.path(), FileLogStoreConfig::default(), None).unwrap();
    store.append_batch(vec![entry(1, 1, 8)]).await.unwrap();
    assert!(!dir.path().join("00000000000000000009.wal.tmp").exists());
    assert!(dir.path().join("notes.txt").exists());
}

/// Concurrent appenders with payloads on both sides of the direct-write threshold share
/// groups (small records staged, large ones written from their payload) and every entry
/// reads back unchanged — before and after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_small_and_large_entries_in_shared_groups_read_back_unchanged() {
    const TASKS: u64 = 6;
    const PER_TASK: u64 = 40;
    const SIZES: [usize; 6] = [1, 700, 16 << 10, (16 << 10) - 1, 100 << 10, 3];
    let dir = tempfile::tempdir().unwrap();
    let mut config = FileLogStoreConfig::default();
    config.sync = SyncPolicy::Always;
    config.segment_size = 1 << 20;
    let expected = |task: u64, id: u64| {
        let len = SIZES[((task + id) % SIZES.len() as u64) as usize];
        Bytes::from(vec![(task * 31 + id) as u8; len])
    };
    let store = std::sync::Arc::new(FileLogStore::open(dir.path(), config.clone(), None).unwrap());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for id in 1..=PER_TASK {
                    let data = expected(task, id);
                    let entry = Entry {
                        region_id: task,
                        entry_id: id,
                        data,
                    };
                    store.append_batch(vec![entry]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let check = |store: std::sync::Arc<FileLogStore>| async move {
        for task in 0..TASKS {
            let read: Vec<Vec<Entry>> = store.read(task, 0).unwrap().try_collect().await.unwrap();
            let read: Vec<Entry> = read.into_iter().flatten().collect();
            assert_eq!(read.len(), PER_TASK as usize, "region {task}");
            for (i, e) in read.iter().enumerate() {
                let id = i as u64 + 1;
                assert_eq!(e.entry_id, id);
                assert_eq!(e.data, expected(task, id), "region {task} entry {id}");
            }
        }
    };
    check(store.clone()).await;
    store.stop().await.unwrap();
    drop(store);
    let reopened = std::sync::Arc::new(FileLogStore::open(dir.path(), config, None).unwrap());
    assert!(reopened.recovery_report().truncated.is_none());
    check(reopened).await;
}
