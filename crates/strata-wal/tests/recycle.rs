//! Reclaimed segment files kept and reused (`recycle_segments`): reuse happens, reads see
//! only the new segment's records, a crash inside a reused file loses nothing committed and
//! resurrects nothing older, and strict recovery never reuses.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use futures::TryStreamExt;
use strata_wal::{
    Entry, FileLogStore, FileLogStoreConfig, LogStore, RecoveryMode, SyncPolicy, WalError,
};

fn entry(region: u64, id: u64) -> Entry {
    Entry {
        region_id: region,
        entry_id: id,
        data: Bytes::from(vec![(id as u8).wrapping_mul(7) ^ region as u8; 500]),
    }
}

fn config(recovery: RecoveryMode) -> FileLogStoreConfig {
    {
        let mut cfg = FileLogStoreConfig::default();
        cfg.segment_size = 4 << 10;
        cfg.sync = SyncPolicy::Always;
        cfg.recycle_segments = 2;
        cfg.recovery = recovery;
        cfg
    }
}

/// Inodes of the files in `dir` whose name ends with `suffix`.
fn inodes(dir: &Path, suffix: &str) -> BTreeSet<u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .map(|e| e.metadata().unwrap().ino())
        .collect()
}

async fn ids(store: &FileLogStore, region: u64) -> Vec<u64> {
    let chunks: Vec<Vec<Entry>> = store.read(region, 0).unwrap().try_collect().await.unwrap();
    chunks
        .into_iter()
        .flatten()
        .map(|e| {
            assert_eq!(e, entry(region, e.entry_id), "entry read back unchanged");
            e.entry_id
        })
        .collect()
}

async fn append(store: &FileLogStore, region: u64, ids: std::ops::RangeInclusive<u64>) {
    for id in ids {
        store.append_batch(vec![entry(region, id)]).await.unwrap();
    }
}

/// Fills several segments, obsoletes them all, and returns the kept files' inodes.
async fn fill_and_reclaim(store: &FileLogStore, dir: &Path) -> BTreeSet<u64> {
    append(store, 1, 1..=100).await;
    assert!(store.segment_count() > 5);
    store.obsolete(1, 100).await.unwrap();
    let kept = inodes(dir, ".wal.free");
    assert_eq!(
        kept.len(),
        2,
        "recycle_segments files kept, the rest deleted"
    );
    kept
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test]
async fn reclaimed_segments_are_reused_and_read_back_only_as_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::TolerateTail), None).unwrap();
    let kept = fill_and_reclaim(&store, dir.path()).await;

    append(&store, 1, 101..=120).await;
    let segments = inodes(dir.path(), ".wal");
    assert!(
        kept.is_subset(&segments),
        "both kept files became segments again: {kept:?} in {segments:?}"
    );
    assert!(inodes(dir.path(), ".wal.free").is_empty());
    assert_eq!(ids(&store, 1).await, (101..=120).collect::<Vec<_>>());

    // A clean close cuts the reused file's older bytes off: even strict reopens cleanly.
    store.stop().await.unwrap();
    drop(store);
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::Strict), None).unwrap();
    assert_eq!(store.recovery_report().truncated, None);
    assert_eq!(ids(&store, 1).await, (101..=120).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_crash_in_a_reused_segment_keeps_every_committed_group_and_nothing_older() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::TolerateTail), None).unwrap();
    let kept = fill_and_reclaim(&store, dir.path()).await;
    // Append until the log moves into a kept file, then two more: the older segment's
    // bytes (with its once-valid records and commits) remain past the new end.
    let mut last = 100;
    while !inodes(dir.path(), ".wal").iter().any(|i| kept.contains(i)) {
        last += 1;
        append(&store, 1, last..=last).await;
    }
    append(&store, 1, last + 1..=last + 2).await;
    last += 2;
    let expected: Vec<u64> = (101..=last).collect();

    // The directory as a crash would leave it: copied while the store is open.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());

    let strict = tempfile::tempdir().unwrap();
    copy_dir(crashed.path(), strict.path());
    let refused = FileLogStore::open(strict.path(), config(RecoveryMode::Strict), None);
    assert!(
        matches!(&refused, Err(WalError::Corruption { reason, .. }) if reason.contains("torn tail")),
        "strict cannot tell older bytes from a torn write: {:?}",
        refused.err()
    );

    let damaged = tempfile::tempdir().unwrap();
    copy_dir(crashed.path(), damaged.path());
    let segment = std::fs::read_dir(damaged.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[24 + 8 + 100] ^= 0x10; // inside the first record of the reused file
    std::fs::write(&segment, bytes).unwrap();
    let opened = FileLogStore::open(damaged.path(), config(RecoveryMode::TolerateTail), None);
    assert!(
        matches!(&opened, Err(WalError::Corruption { reason, .. }) if reason.contains("committed group follows")),
        "damage before committed groups is corruption, not a tail: {:?}",
        opened.err()
    );

    let recovered =
        FileLogStore::open(crashed.path(), config(RecoveryMode::TolerateTail), None).unwrap();
    let cut = recovered.recovery_report().truncated.clone().unwrap();
    assert!(
        cut.dropped_bytes > 0,
        "the older bytes are cut off: {cut:?}"
    );
    assert_eq!(ids(&recovered, 1).await, expected);
    append(&recovered, 1, last + 1..=last + 1).await;
    recovered.stop().await.unwrap();
    drop(recovered);
    let reopened =
        FileLogStore::open(crashed.path(), config(RecoveryMode::TolerateTail), None).unwrap();
    assert_eq!(reopened.recovery_report().truncated, None);
    assert_eq!(
        ids(&reopened, 1).await,
        (101..=last + 1).collect::<Vec<_>>()
    );
    store.stop().await.unwrap();
}

#[tokio::test]
async fn strict_recovery_neither_keeps_nor_reuses_nor_deletes_kept_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::Strict), None).unwrap();
    append(&store, 1, 1..=100).await;
    store.obsolete(1, 100).await.unwrap();
    assert!(inodes(dir.path(), ".wal.free").is_empty());
    assert_eq!(
        inodes(dir.path(), ".wal").len(),
        1,
        "only the active segment"
    );
    store.stop().await.unwrap();
    drop(store);

    // Files kept by a tolerant open are left alone by a strict one (as `strata inspect
    // wal` opens the log): not reused, not deleted.
    let dir = tempfile::tempdir().unwrap();
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::TolerateTail), None).unwrap();
    let kept = fill_and_reclaim(&store, dir.path()).await;
    store.stop().await.unwrap();
    drop(store);
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::Strict), None).unwrap();
    append(&store, 1, 201..=260).await;
    store.obsolete(1, 260).await.unwrap();
    assert_eq!(inodes(dir.path(), ".wal.free"), kept);
    assert!(inodes(dir.path(), ".wal").is_disjoint(&kept));
}

#[tokio::test]
async fn a_new_log_numbers_its_segments_above_every_kept_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::TolerateTail), None).unwrap();
    fill_and_reclaim(&store, dir.path()).await;
    store.stop().await.unwrap();
    drop(store);
    let kept: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wal.free"))
        .collect();
    let highest: u64 = kept
        .iter()
        .map(|n| n.trim_end_matches(".wal.free").parse::<u64>().unwrap())
        .max()
        .unwrap();
    // Only the kept files survive (say the segments were deleted by hand).
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "wal") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::TolerateTail), None).unwrap();
    assert!(
        dir.path().join(format!("{:020}.wal", highest + 1)).exists(),
        "the new log starts above kept file {highest}"
    );
    assert!(ids(&store, 1).await.is_empty(), "nothing older reads back");
    append(&store, 1, 1..=3).await;
    assert_eq!(ids(&store, 1).await, vec![1, 2, 3]);
}
