//! Damaged logs: every outcome of opening one is either a reported tail truncation with the
//! surviving prefix intact, or a typed corruption error — never a panic, never a silently
//! skipped record, and `strict` never cuts anything off.

// Test code: a failed unwrap is a failed test, and printing the seed is the point.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::TryStreamExt;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use strata_wal::{
    Entry, FileLogStore, FileLogStoreConfig, LogStore, RecoveryMode, SyncPolicy, WalError,
};

const HEADER_LEN: usize = 24;
const REGIONS: [u64; 2] = [11, 22];

/// A small pristine log: its bytes, its groups' `(start, end)` offsets (each group is one
/// append's record and the commit record that ends it), and the entries each group holds.
struct Pristine {
    bytes: Vec<u8>,
    groups: Vec<(usize, usize)>,
    batches: Vec<Vec<Entry>>,
}

/// Type byte of a commit record's payload.
const COMMIT: u8 = 4;

fn batch(i: u64) -> Vec<Entry> {
    REGIONS
        .iter()
        .map(|&region| Entry {
            region_id: region,
            entry_id: i + 1,
            data: Bytes::from(vec![
                (i as u8).wrapping_mul(31) ^ region as u8;
                (i as usize * 7) % 40 + 1
            ]),
        })
        .collect()
}

async fn pristine() -> Pristine {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FileLogStoreConfig::default();
    config.sync = SyncPolicy::Never;
    let store = FileLogStore::open(dir.path(), config, None).unwrap();
    let batches: Vec<Vec<Entry>> = (0..24).map(batch).collect();
    for b in &batches {
        store.append_batch(b.clone()).await.unwrap();
    }
    store.stop().await.unwrap();
    drop(store);
    let bytes = std::fs::read(segment(dir.path())).unwrap();
    let mut groups = Vec::new();
    let mut group_start = HEADER_LEN;
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = bytes[at + 8];
        at += 8 + len;
        if kind == COMMIT {
            groups.push((group_start, at));
            group_start = at;
        }
    }
    assert_eq!(
        group_start,
        bytes.len(),
        "the log ends with a commit record"
    );
    assert_eq!(
        groups.len(),
        batches.len(),
        "one group per sequential append"
    );
    Pristine {
        bytes,
        groups,
        batches,
    }
}

fn segment(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.wal", 1))
}

/// What opening a damaged copy gave.
enum Outcome {
    /// Opened; the entries read per region, and where the tail was cut (if it was).
    Opened {
        entries: Vec<Entry>,
        truncated_at: Option<u64>,
    },
    Corruption(String),
}

async fn open(dir: &Path, bytes: &[u8], mode: RecoveryMode) -> Outcome {
    std::fs::write(segment(dir), bytes).unwrap();
    let mut config = FileLogStoreConfig::default();
    config.recovery = mode;
    config.sync = SyncPolicy::Never;
    let store = match FileLogStore::open(dir, config, None) {
        Ok(store) => store,
        Err(WalError::Corruption { reason, offset, .. }) => {
            return Outcome::Corruption(format!("{reason} at {offset}"));
        }
        Err(other) => panic!("expected a corruption error, got {other}"),
    };
    let truncated_at = store.recovery_report().truncated.as_ref().map(|t| t.offset);
    let mut entries = Vec::new();
    for region in REGIONS {
        let chunks: Vec<Vec<Entry>> = store.read(region, 0).unwrap().try_collect().await.unwrap();
        entries.extend(chunks.into_iter().flatten());
    }
    Outcome::Opened {
        entries,
        truncated_at,
    }
}

impl Pristine {
    /// The entries of the first `n` groups, ordered by region as `open` reads them.
    fn first_groups(&self, n: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        for region in REGIONS {
            for b in &self.batches[..n] {
                out.extend(b.iter().filter(|e| e.region_id == region).cloned());
            }
        }
        out
    }

    /// Number of groups wholly before `offset`.
    fn groups_before(&self, offset: usize) -> usize {
        self.groups
            .iter()
            .take_while(|(_, end)| *end <= offset)
            .count()
    }

    /// Checks the rules for a copy whose first damaged byte is `first_damaged`:
    /// a corruption error is always acceptable; a cut is only made by `TolerateTail`, lies
    /// on a group boundary before the damage, and keeps exactly the groups before it; an
    /// open without a cut read every group back unchanged.
    fn check(&self, outcome: &Outcome, mode: RecoveryMode, first_damaged: usize, what: &str) {
        let Outcome::Opened {
            entries,
            truncated_at,
        } = outcome
        else {
            return;
        };
        match truncated_at {
            Some(cut) => {
                let cut = *cut as usize;
                assert_eq!(
                    mode,
                    RecoveryMode::TolerateTail,
                    "{what}: strict cut the log"
                );
                assert!(
                    cut <= first_damaged,
                    "{what}: cut at {cut} keeps damaged byte {first_damaged}"
                );
                let on_boundary = cut == HEADER_LEN || self.groups.iter().any(|g| g.1 == cut);
                assert!(on_boundary, "{what}: cut at {cut} is not a group boundary");
                let kept = self.groups_before(cut);
                assert_eq!(
                    entries,
                    &self.first_groups(kept),
                    "{what}: surviving prefix intact"
                );
            }
            None => assert_eq!(
                entries,
                &self.first_groups(self.groups.len()),
                "{what}: opened without a report but lost or changed records"
            ),
        }
    }
}

/// Opens `damaged` (first damaged byte at `first_damaged`) in both recovery modes and
/// checks that the damage was noticed and the rules held.
async fn assert_detected(
    p: &Pristine,
    dir: &Path,
    damaged: &[u8],
    first_damaged: usize,
    what: &str,
) {
    for mode in [RecoveryMode::TolerateTail, RecoveryMode::Strict] {
        let outcome = open(dir, damaged, mode).await;
        let what = format!("{what}, {mode:?}");
        if let Outcome::Opened {
            truncated_at: None, ..
        } = outcome
        {
            panic!("{what}: the damage went unnoticed");
        }
        p.check(&outcome, mode, first_damaged, &what);
    }
}

#[tokio::test]
async fn truncation_at_every_offset_keeps_exactly_the_whole_groups() {
    let p = pristine().await;
    let dir = tempfile::tempdir().unwrap();
    for len in 0..=p.bytes.len() {
        let cut = &p.bytes[..len];
        let at_boundary = len == HEADER_LEN || p.groups.iter().any(|g| g.1 == len);
        for mode in [RecoveryMode::TolerateTail, RecoveryMode::Strict] {
            let outcome = open(dir.path(), cut, mode).await;
            let what = format!("truncated to {len} bytes, {mode:?}");
            match (&outcome, len < HEADER_LEN, at_boundary, mode) {
                (Outcome::Corruption(_), true, _, _) => {}
                (
                    Outcome::Opened {
                        entries,
                        truncated_at: None,
                    },
                    false,
                    true,
                    _,
                ) => {
                    assert_eq!(entries, &p.first_groups(p.groups_before(len)), "{what}");
                }
                (
                    Outcome::Opened {
                        entries,
                        truncated_at: Some(at),
                    },
                    false,
                    false,
                    RecoveryMode::TolerateTail,
                ) => {
                    let kept = p.groups_before(len);
                    let boundary = p.groups.get(kept).map_or(len, |g| g.0);
                    assert_eq!(
                        *at as usize, boundary,
                        "{what}: cut at the end of the last whole group"
                    );
                    assert_eq!(entries, &p.first_groups(kept), "{what}");
                }
                (Outcome::Corruption(reason), false, false, RecoveryMode::Strict) => {
                    assert!(reason.contains("torn tail"), "{what}: {reason}");
                }
                _ => panic!("{what}: unexpected outcome"),
            }
        }
    }
}

#[tokio::test]
async fn a_tolerated_cut_is_durable_and_reopening_is_clean() {
    let p = pristine().await;
    let dir = tempfile::tempdir().unwrap();
    let len = p.groups[10].0 + 5;
    let Outcome::Opened {
        truncated_at: Some(_),
        entries,
    } = open(dir.path(), &p.bytes[..len], RecoveryMode::TolerateTail).await
    else {
        panic!("expected a cut");
    };
    let mut config = FileLogStoreConfig::default();
    config.recovery = RecoveryMode::Strict;
    let store = FileLogStore::open(dir.path(), config, None).unwrap();
    assert!(
        store.recovery_report().truncated.is_none(),
        "strict reopen finds a clean log"
    );
    assert_eq!(entries, p.first_groups(10));
    // The log continues after the cut.
    store.append_batch(batch(10)).await.unwrap();
}

#[tokio::test]
async fn a_thousand_seeded_bit_flips_are_each_detected() {
    let seed = common::seed("wal bit flips");
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let p = pristine().await;
    let dir = tempfile::tempdir().unwrap();
    let flips = 1_000 * common::stress_factor();
    for i in 0..flips {
        let at = rng.random_range(0..p.bytes.len());
        let bit = rng.random_range(0..8);
        let mut damaged = p.bytes.clone();
        damaged[at] ^= 1 << bit;
        let what = format!("flip {i}: byte {at} bit {bit} (SEED={seed})");
        assert_detected(&p, dir.path(), &damaged, at, &what).await;
    }
}

#[tokio::test]
async fn bad_length_fields_never_panic_or_allocate_wildly() {
    let p = pristine().await;
    let dir = tempfile::tempdir().unwrap();
    for (index, &(start, end)) in p.groups.iter().enumerate() {
        // The group's entries record, and its commit record (25 bytes at the end).
        for (record, at) in [("entries", start), ("commit", end - 25)] {
            for bad in [0u32, u32::MAX, (p.bytes.len() * 2) as u32, 1] {
                let mut damaged = p.bytes.clone();
                damaged[at..at + 4].copy_from_slice(&bad.to_le_bytes());
                let what = format!("group {index}'s {record} record length {bad}");
                assert_detected(&p, dir.path(), &damaged, at, &what).await;
            }
        }
    }
}

#[tokio::test]
async fn a_zeroed_page_is_a_cut_tail_or_an_error() {
    let p = pristine().await;
    let dir = tempfile::tempdir().unwrap();
    for page_start in (0..p.bytes.len()).step_by(512) {
        let mut damaged = p.bytes.clone();
        let end = (page_start + 4096).min(damaged.len());
        damaged[page_start..end].fill(0);
        let what = format!("zeroed {page_start}..{end}");
        assert_detected(&p, dir.path(), &damaged, page_start, &what).await;
    }
}

/// What a salvaging open of a damaged copy gave: the entries read, the lost ranges, and
/// where a torn tail was cut.
struct Salvaged {
    entries: Vec<Entry>,
    lost: Vec<strata_wal::LostRange>,
    truncated_at: Option<u64>,
}

async fn salvage(dir: &Path, bytes: &[u8]) -> Salvaged {
    std::fs::write(segment(dir), bytes).unwrap();
    // Drop the new segment a previous salvaging open started.
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path != segment(dir) {
            std::fs::remove_file(path).unwrap();
        }
    }
    let mut config = FileLogStoreConfig::default();
    config.recovery = RecoveryMode::Salvage;
    config.sync = SyncPolicy::Never;
    let store = FileLogStore::open(dir, config, None)
        .unwrap_or_else(|e| panic!("salvage never refuses to open: {e}"));
    let report = store.recovery_report().clone();
    let mut entries = Vec::new();
    for region in REGIONS {
        let chunks: Vec<Vec<Entry>> = store.read(region, 0).unwrap().try_collect().await.unwrap();
        entries.extend(chunks.into_iter().flatten());
    }
    Salvaged {
        entries,
        lost: report.lost,
        truncated_at: report.truncated.map(|t| t.offset),
    }
}

impl Pristine {
    /// Checks a salvage of a copy damaged in `first..=last`: nothing invented or changed;
    /// every group wholly before the damage kept; every group wholly after it kept too,
    /// unless nothing committed follows the damage (then it was a torn tail); the first
    /// damaged byte lies in a reported lost range or the cut tail.
    fn check_salvage(&self, salvaged: &Salvaged, first: usize, last: usize, what: &str) {
        let all = self.first_groups(self.groups.len());
        let mut rest = all.iter();
        for e in &salvaged.entries {
            assert!(
                rest.any(|o| o == e),
                "{what}: entry {}/{} invented, changed or out of order",
                e.region_id,
                e.entry_id
            );
        }
        let committed_after = self.groups.iter().any(|g| g.0 > last);
        let must_keep: Vec<usize> = (0..self.groups.len())
            .filter(|&i| {
                let (start, end) = self.groups[i];
                end <= first || (start > last && committed_after)
            })
            .collect();
        for i in must_keep {
            for e in &self.batches[i] {
                assert!(
                    salvaged.entries.contains(e),
                    "{what}: intact group {i} lost (entry {}/{})",
                    e.region_id,
                    e.entry_id
                );
            }
        }
        let first = first as u64;
        let covered = salvaged
            .lost
            .iter()
            .any(|r| r.start <= first && (first < r.end || r.start == r.end))
            || salvaged.truncated_at.is_some_and(|cut| cut <= first);
        assert!(
            covered,
            "{what}: damaged byte {first} neither in a lost range ({:?}) nor in the cut tail ({:?})",
            salvaged
                .lost
                .iter()
                .map(|r| (r.start, r.end))
                .collect::<Vec<_>>(),
            salvaged.truncated_at
        );
    }
}

#[tokio::test]
async fn salvage_keeps_every_intact_group_around_seeded_bit_flips_zeroed_pages_and_bad_lengths() {
    let seed = common::seed("wal salvage");
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let p = pristine().await;
    let dir = tempfile::tempdir().unwrap();
    let flips = 300 * common::stress_factor();
    for i in 0..flips {
        let at = rng.random_range(HEADER_LEN..p.bytes.len());
        let bit = rng.random_range(0..8);
        let mut damaged = p.bytes.clone();
        damaged[at] ^= 1 << bit;
        let salvaged = salvage(dir.path(), &damaged).await;
        p.check_salvage(
            &salvaged,
            at,
            at,
            &format!("flip {i}: byte {at} bit {bit} (SEED={seed})"),
        );
    }
    for page_start in (HEADER_LEN..p.bytes.len()).step_by(97) {
        let mut damaged = p.bytes.clone();
        let end = (page_start + 300).min(damaged.len());
        damaged[page_start..end].fill(0);
        // Zeroing a byte that was zero damages nothing: the first and last changed bytes.
        let changed: Vec<usize> = (page_start..end)
            .filter(|&i| damaged[i] != p.bytes[i])
            .collect();
        let (Some(&first), Some(&last)) = (changed.first(), changed.last()) else {
            continue;
        };
        let salvaged = salvage(dir.path(), &damaged).await;
        p.check_salvage(
            &salvaged,
            first,
            last,
            &format!("zeroed {page_start}..{end}"),
        );
    }
    for (index, &(start, end)) in p.groups.iter().enumerate() {
        for (record, at) in [("entries", start), ("commit", end - 25)] {
            for bad in [0u32, u32::MAX, (p.bytes.len() * 2) as u32, 1] {
                let mut damaged = p.bytes.clone();
                damaged[at..at + 4].copy_from_slice(&bad.to_le_bytes());
                let changed: Vec<usize> =
                    (at..at + 4).filter(|&i| damaged[i] != p.bytes[i]).collect();
                let salvaged = salvage(dir.path(), &damaged).await;
                let what = format!("group {index}'s {record} record length {bad}");
                p.check_salvage(&salvaged, changed[0], changed[changed.len() - 1], &what);
            }
        }
    }
}

#[tokio::test]
async fn salvage_skips_a_damaged_group_names_its_entries_and_keeps_every_later_group() {
    let p = pristine().await;
    let dir = tempfile::tempdir().unwrap();
    // Group 10 holds entry 11 of both regions; damage its payload.
    let (start, end) = p.groups[10];
    let mut damaged = p.bytes.clone();
    damaged[start + 12] ^= 0xff;
    // Strict and tolerant opens refuse: a committed group follows the damage.
    for mode in [RecoveryMode::TolerateTail, RecoveryMode::Strict] {
        assert!(matches!(
            open(dir.path(), &damaged, mode).await,
            Outcome::Corruption(reason) if reason.contains("committed group follows")
        ));
    }
    let salvaged = salvage(dir.path(), &damaged).await;
    let expected: Vec<Entry> = REGIONS
        .iter()
        .flat_map(|&region| {
            p.batches
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 10)
                .flat_map(move |(_, b)| b.iter().filter(move |e| e.region_id == region))
        })
        .cloned()
        .collect();
    assert_eq!(
        salvaged.entries, expected,
        "every group but the damaged one"
    );
    assert_eq!(salvaged.truncated_at, None);
    assert_eq!(salvaged.lost.len(), 1);
    let lost = &salvaged.lost[0];
    assert_eq!((lost.start, lost.end), (start as u64, (end - 25) as u64));
    assert!(lost.reason.contains("checksum"), "{}", lost.reason);
    let named: Vec<(u64, String)> = lost
        .regions
        .iter()
        .map(|e| (e.region_id, e.to_string()))
        .collect();
    assert_eq!(
        named,
        vec![
            (11, "entries 11..=11".into()),
            (22, "entries 11..=11".into())
        ]
    );
}

#[tokio::test]
async fn a_salvaging_open_appends_in_a_new_segment_and_the_log_opens_strict_once_its_entries_are_obsolete()
 {
    let p = pristine().await;
    let dir = tempfile::tempdir().unwrap();
    let mut damaged = p.bytes.clone();
    damaged[p.groups[5].0 + 12] ^= 0x01;
    std::fs::write(segment(dir.path()), &damaged).unwrap();
    let config = |recovery| {
        let mut cfg = FileLogStoreConfig::default();
        cfg.recovery = recovery;
        cfg.sync = SyncPolicy::Never;
        cfg
    };
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::Salvage), None).unwrap();
    assert_eq!(store.recovery_report().lost.len(), 1);
    assert_eq!(
        store.segment_count(),
        2,
        "a new segment after the damaged one"
    );
    store.append_batch(batch(24)).await.unwrap();
    store.stop().await.unwrap();
    drop(store);
    assert_eq!(
        std::fs::read(segment(dir.path())).unwrap(),
        damaged,
        "salvage changed no byte of the damaged segment"
    );
    // The damaged segment still holds live entries: a tolerant open still refuses it.
    assert!(FileLogStore::open(dir.path(), config(RecoveryMode::TolerateTail), None).is_err());
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::Salvage), None).unwrap();
    for region in REGIONS {
        store.obsolete(region, 25).await.unwrap();
    }
    store.stop().await.unwrap();
    drop(store);
    let store = FileLogStore::open(dir.path(), config(RecoveryMode::Strict), None).unwrap();
    assert!(store.recovery_report().is_clean());
    assert_eq!(
        store.segment_count(),
        1,
        "the damaged segments were reclaimed"
    );
    assert!(!dir.path().join(format!("{:020}.wal", 1)).exists());
}
