//! [`RecoveryReport`]: what opening a log found — segments and records read, a torn tail
//! cut off (or, read-only, left in place), damaged ranges skipped by salvage recovery, and
//! what each region has live.

use std::fmt;
use std::path::PathBuf;

/// What opening the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments: usize,
    /// Valid records read.
    pub records: u64,
    /// Entries in those records.
    pub entries: u64,
    /// Segment files reclaimed at open because every entry in them was obsolete.
    pub reclaimed_segments: usize,
    /// The torn tail after the last committed group of the last segment, if any: cut off by
    /// a read-write open, left in place (and not read) by a read-only one.
    pub truncated: Option<TruncatedTail>,
    /// Damaged ranges skipped under [`RecoveryMode::Salvage`](crate::RecoveryMode::Salvage),
    /// in log order. Always empty under the other modes (they fail instead).
    pub lost: Vec<LostRange>,
    /// Every region the log holds entries or marks for, ascending.
    pub regions: Vec<RegionLog>,
}

impl RecoveryReport {
    /// Whether the log was read whole: no torn tail, nothing skipped. A clean log opens
    /// under [`RecoveryMode::Strict`](crate::RecoveryMode::Strict).
    pub fn is_clean(&self) -> bool {
        self.truncated.is_none() && self.lost.is_empty()
    }
}

/// A torn tail: bytes after the last committed group of the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TruncatedTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where the log's valid bytes end (a read-write open cut the file here).
    pub offset: u64,
    /// How many bytes follow `offset`.
    pub dropped_bytes: u64,
    /// Why the bytes did not form a committed group.
    pub reason: String,
    /// Whether the file was cut (read-write opens); a read-only open leaves the bytes —
    /// usually the group a live writer is writing right now.
    pub cut: bool,
}

/// A damaged range that salvage recovery skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LostRange {
    /// The segment file.
    pub path: PathBuf,
    /// First damaged byte.
    pub start: u64,
    /// Where reading resumed (the next record or commit record that verified), or the
    /// segment's end.
    pub end: u64,
    /// What was wrong at `start`.
    pub reason: String,
    /// The regions whose entry ids jump across the range, so it may have held their
    /// entries; a region with entries before the range and none after is listed too (it
    /// may have held its later entries). Obsolete and drop marks the range held cannot be
    /// known.
    pub regions: Vec<LostEntries>,
}

/// The entries of one region a [`LostRange`] may have held: ids strictly between
/// `last_before` and `first_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LostEntries {
    /// The region (packed id).
    pub region_id: u64,
    /// The region's last entry id read before the range, if any.
    pub last_before: Option<u64>,
    /// Its first entry id read after the range, if any.
    pub first_after: Option<u64>,
}

impl fmt::Display for LostEntries {
    /// `entries 11..=19`, `entries after 10`, or `entries before 20`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.last_before, self.first_after) {
            (Some(before), Some(after)) => {
                write!(f, "entries {}..={}", before + 1, after.saturating_sub(1))
            }
            (Some(before), None) => write!(f, "entries after {before}"),
            (None, Some(after)) => write!(f, "entries before {after}"),
            (None, None) => f.write_str("unknown entries"),
        }
    }
}

/// What the log holds for one region after recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionLog {
    /// The region (packed id).
    pub region_id: u64,
    /// Its highest entry id in the log, if it has entries.
    pub last_entry_id: Option<u64>,
    /// Its entries up to this id are obsolete (already in SST files), if marked.
    pub obsolete_entry_id: Option<u64>,
    /// Records holding its live entries (above the obsolete mark).
    pub live_records: usize,
}
