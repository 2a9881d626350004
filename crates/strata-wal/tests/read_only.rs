//! Read-only opens: they change no byte of the log directory whatever it holds, refuse
//! every write, and — beside a live writer in another process that appends, rotates,
//! reclaims and reuses segments — always open and always see a prefix of the log that
//! only grows.

// Test code: a failed unwrap is a failed test, and printing the seed is the point.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use futures::TryStreamExt;
use strata_wal::{
    Entry, FileLogStore, FileLogStoreConfig, LogStore, RecoveryMode, SyncPolicy, WalError,
};

const CHILD_ENV: &str = "STRATA_WAL_READ_ONLY_CHILD_DIR";
const TEST_NAME: &str =
    "a_reader_beside_a_live_writer_process_always_opens_and_sees_a_growing_prefix";
const REGIONS: u64 = 3;

fn config(recovery: RecoveryMode) -> FileLogStoreConfig {
    {
        let mut cfg = FileLogStoreConfig::default();
        cfg.segment_size = 16 << 10;
        cfg.recycle_segments = 2;
        cfg.sync = SyncPolicy::Never;
        cfg.recovery = recovery;
        cfg
    }
}

/// The bytes of `region`'s entry `id`.
fn payload(region: u64, id: u64) -> Bytes {
    let len = ((region * 7919 + id * 104_729) % 900) as usize + 1;
    Bytes::from(
        (0..len)
            .map(|i| (region as u8) ^ (id as u8).wrapping_mul(5) ^ (i as u8))
            .collect::<Vec<u8>>(),
    )
}

fn batch(id: u64) -> Vec<Entry> {
    (1..=REGIONS)
        .map(|region| Entry {
            region_id: region,
            entry_id: id,
            data: payload(region, id),
        })
        .collect()
}

/// Every file in `dir` (recursively): name, size, inode, modification time and content.
fn fingerprint(dir: &Path) -> BTreeMap<String, (u64, u64, i64, i64, Vec<u8>)> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let content = if meta.is_file() {
            std::fs::read(entry.path()).unwrap()
        } else {
            Vec::new()
        };
        files.insert(
            name,
            (
                meta.len(),
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
                content,
            ),
        );
    }
    files
}

/// A directory copied from a running log whose segments were reclaimed and reused: kept
/// `.wal.free` files, an active segment in a reused file (older bytes past its end), a torn
/// group at the end and a leftover temporary file. Returns the directory and the entries
/// (per region) of every committed group, and the last segment's path.
async fn crashed_log(root: &Path) -> (std::path::PathBuf, u64) {
    let live = root.join("live");
    let store = FileLogStore::open(&live, config(RecoveryMode::TolerateTail), None).unwrap();
    let mut last = 0;
    for id in 1..=300 {
        store.append_batch(batch(id)).await.unwrap();
        if id % 20 == 0 {
            for region in 1..=REGIONS {
                store.obsolete(region, id - 10).await.unwrap();
            }
        }
        last = id;
    }
    // Copy while the store is open: the active segment keeps its reused file's older bytes.
    let copy = root.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(&live).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".wal") {
            segments.push(name);
        }
    }
    store.stop().await.unwrap();
    segments.sort();
    let active = copy.join(segments.last().unwrap());
    let free = std::fs::read_dir(&copy)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal.free")
        })
        .count();
    assert!(free > 0, "the log kept reclaimed files for reuse");
    // A torn group after the last one: a partial record header.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap();
    file.write_all(&[7, 0, 0]).unwrap();
    std::fs::write(
        copy.join("00000000000000009999.wal.tmp"),
        b"half a rotation",
    )
    .unwrap();
    (copy, last)
}

/// Reads every region's live entries.
async fn read_all(store: &FileLogStore) -> Result<BTreeMap<u64, Vec<Entry>>, WalError> {
    let mut out = BTreeMap::new();
    for region in 1..=REGIONS {
        let chunks: Vec<Vec<Entry>> = store.read(region, 0)?.try_collect().await?;
        out.insert(region, chunks.into_iter().flatten().collect());
    }
    Ok(out)
}

#[tokio::test]
async fn a_read_only_open_changes_no_byte_of_a_torn_reused_or_damaged_log() {
    let root = tempfile::tempdir().unwrap();
    let (dir, last) = crashed_log(root.path()).await;
    let before = fingerprint(&dir);

    // A torn tail (and a reused file's older bytes): read up to the last committed group,
    // reported, not cut.
    for mode in [RecoveryMode::TolerateTail, RecoveryMode::Salvage] {
        let store = FileLogStore::open_read_only(&dir, config(mode)).unwrap();
        assert!(store.is_read_only());
        let tail = store.recovery_report().truncated.clone().unwrap();
        assert!(!tail.cut, "{mode:?}: a read-only open never cuts");
        assert!(store.recovery_report().lost.is_empty(), "{mode:?}");
        let entries = read_all(&store).await.unwrap();
        for (region, entries) in &entries {
            let ids: Vec<u64> = entries.iter().map(|e| e.entry_id).collect();
            assert_eq!(ids.last(), Some(&last), "{mode:?}: region {region} whole");
            assert!(
                ids.windows(2).all(|w| w[1] == w[0] + 1),
                "{mode:?}: no gaps"
            );
            for e in entries {
                assert_eq!(e.data, payload(*region, e.entry_id));
            }
        }
        for error in [
            store.append_batch(batch(last + 1)).await.unwrap_err(),
            store.obsolete(1, last).await.unwrap_err(),
            store.drop_region(1).await.unwrap_err(),
        ] {
            assert!(matches!(error, WalError::ReadOnly { .. }), "{error}");
        }
        store.stop().await.unwrap();
        drop(store);
        assert!(
            fingerprint(&dir) == before,
            "{mode:?}: the directory changed"
        );
    }
    let error = FileLogStore::open_read_only(&dir, config(RecoveryMode::Strict)).unwrap_err();
    assert!(error.to_string().contains("torn tail"), "{error}");
    assert!(fingerprint(&dir) == before, "strict: the directory changed");

    // Damage in a segment that is not the last: an error (or, salvaging, a report), and
    // still no byte changed.
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    let damaged = &segments[0];
    let mut bytes = std::fs::read(damaged).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(damaged, &bytes).unwrap();
    let before = fingerprint(&dir);
    for mode in [RecoveryMode::TolerateTail, RecoveryMode::Strict] {
        let error = FileLogStore::open_read_only(&dir, config(mode)).unwrap_err();
        assert!(
            matches!(error, WalError::Corruption { .. }),
            "{mode:?}: {error}"
        );
    }
    let store = FileLogStore::open_read_only(&dir, config(RecoveryMode::Salvage)).unwrap();
    let lost = &store.recovery_report().lost;
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        lost[0].start <= at as u64 && at as u64 <= lost[0].end,
        "{lost:?}"
    );
    assert_eq!(&lost[0].path, damaged);
    drop(store);
    assert!(
        fingerprint(&dir) == before,
        "damaged: the directory changed"
    );
}

#[tokio::test]
async fn a_read_only_reader_sees_reclaimed_when_the_writer_reused_a_segment_under_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("wal");
    let writer = FileLogStore::open(&dir, config(RecoveryMode::TolerateTail), None).unwrap();
    for id in 1..=60 {
        writer.append_batch(batch(id)).await.unwrap();
    }
    let reader = FileLogStore::open_read_only(&dir, config(RecoveryMode::TolerateTail)).unwrap();
    assert!(reader.recovery_report().segments > 2);
    assert_eq!(read_all(&reader).await.unwrap()[&1].len(), 60);
    // The writer obsoletes everything, reclaims the old segments and writes on into them.
    for region in 1..=REGIONS {
        writer.obsolete(region, 60).await.unwrap();
    }
    for id in 61..=200 {
        writer.append_batch(batch(id)).await.unwrap();
    }
    let error = read_all(&reader).await.unwrap_err();
    assert!(matches!(error, WalError::Reclaimed { .. }), "{error}");
    assert!(error.is_retryable());
    // Opened again, the reader sees the current log.
    let again = FileLogStore::open_read_only(&dir, config(RecoveryMode::TolerateTail)).unwrap();
    let entries = read_all(&again).await.unwrap();
    assert_eq!(entries[&1].first().map(|e| e.entry_id), Some(61));
    assert_eq!(entries[&1].last().map(|e| e.entry_id), Some(200));
    writer.stop().await.unwrap();
}

#[test]
fn a_reader_beside_a_live_writer_process_always_opens_and_sees_a_growing_prefix() {
    match std::env::var(CHILD_ENV) {
        Ok(dir) => run_writer(Path::new(&dir)),
        Err(_) => run_readers(),
    }
}

/// The child: appends batches to every region, obsoletes behind itself so segments are
/// reclaimed and reused, and prints `ack <id>` after each append. Runs until killed.
fn run_writer(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = FileLogStore::open(dir, config(RecoveryMode::TolerateTail), None).unwrap();
        let mut stdout = std::io::stdout();
        let mut id = 0;
        loop {
            id += 1;
            store.append_batch(batch(id)).await.unwrap();
            if id % 16 == 0 {
                for region in 1..=REGIONS {
                    store.obsolete(region, id - 8).await.unwrap();
                }
            }
            writeln!(stdout, "ack {id}").unwrap();
        }
    });
}

fn run_readers() {
    let seed = common::seed("wal read-only beside a writer");
    let rounds = 150 * common::stress_factor();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("wal");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acks = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wait_for_acks = |n: usize| {
        let mut last = 0;
        for _ in 0..n {
            match acks.next() {
                Some(Ok(line)) => last = line.trim_start_matches("ack ").parse().unwrap_or(0),
                other => panic!("the writer stopped: {other:?}"),
            }
        }
        last
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut last_seen = BTreeMap::new();
    let (mut reclaimed, mut tails, mut segments_seen) = (0, 0, std::collections::BTreeSet::new());
    for round in 0..rounds {
        // The writer moves on between rounds (and during them).
        let acked_before = wait_for_acks(5);
        let store = FileLogStore::open_read_only(&dir, config(RecoveryMode::TolerateTail))
            .unwrap_or_else(|e| panic!("round {round} (SEED={seed}): read-only open failed: {e}"));
        tails += usize::from(store.recovery_report().truncated.is_some());
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            segments_seen.insert(entry.file_name().to_string_lossy().into_owned());
        }
        let entries = match runtime.block_on(read_all(&store)) {
            Ok(entries) => entries,
            Err(WalError::Reclaimed { .. }) => {
                reclaimed += 1;
                continue;
            }
            Err(e) => panic!("round {round} (SEED={seed}): read failed: {e}"),
        };
        for (region, entries) in entries {
            let ids: Vec<u64> = entries.iter().map(|e| e.entry_id).collect();
            assert!(
                ids.windows(2).all(|w| w[1] == w[0] + 1),
                "round {round}: region {region} has a gap: {ids:?}"
            );
            for e in &entries {
                assert_eq!(e.data, payload(region, e.entry_id), "round {round}");
            }
            let last = ids.last().copied().unwrap_or(0);
            assert!(
                last >= acked_before,
                "round {round}: region {region} ends at {last}, but {acked_before} was acknowledged before the open"
            );
            let previous = last_seen.insert(region, last).unwrap_or(0);
            assert!(
                last >= previous,
                "round {round}: region {region} went back from {previous} to {last}"
            );
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    eprintln!(
        "{rounds} read-only opens beside a live writer: every one opened; {tails} saw an unfinished group, \
         {reclaimed} reads found a segment reclaimed under them; {} segment file names seen",
        segments_seen.len()
    );
    assert!(
        segments_seen.len() > 10,
        "the writer rotated and reused segments during the reads"
    );
}
