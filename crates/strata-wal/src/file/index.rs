//! The in-memory index of a file log: where each region's records are, per-region last and
//! obsolete ids, and which segments can be reclaimed.
//!
//! Recovery and the writer both build it through the same `apply_*` calls, so what a
//! reopened log knows is exactly what the running log knew about its retained records.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::file::report::RegionLog;

/// A segment file, open for reading. Readers hold an `Arc`, so a segment reclaimed while
/// being read stays readable through the open handle.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

/// One record that holds entries of a region.
#[derive(Debug, Clone)]
pub(crate) struct RecordLoc {
    pub(crate) segment: Arc<Segment>,
    /// Offset of the frame (length field) in the segment.
    pub(crate) offset: u64,
    /// Payload length.
    pub(crate) len: u32,
    /// Highest id of the region's entries in this record.
    pub(crate) last_id: u64,
}

#[derive(Debug, Default)]
struct RegionIndex {
    last_id: Option<u64>,
    obsolete_id: Option<u64>,
    records: VecDeque<RecordLoc>,
}

#[derive(Debug)]
struct SegmentInfo {
    segment: Arc<Segment>,
    /// Highest entry id of each region with entries in this segment.
    max_ids: HashMap<u64, u64>,
}

/// What a read needs: the records to visit and the lowest id to return.
#[derive(Debug)]
pub(crate) struct ReadPlan {
    pub(crate) records: Vec<RecordLoc>,
    pub(crate) min_id: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    regions: HashMap<u64, RegionIndex>,
    segments: BTreeMap<u64, SegmentInfo>,
}

impl Index {
    pub(crate) fn add_segment(&mut self, segment: Arc<Segment>) {
        self.segments.insert(
            segment.seq,
            SegmentInfo {
                segment,
                max_ids: HashMap::new(),
            },
        );
    }

    /// Regions with entries or marks in the log, ascending.
    pub(crate) fn regions(&self) -> Vec<u64> {
        let mut regions: Vec<u64> = self.regions.keys().copied().collect();
        regions.sort_unstable();
        regions
    }

    pub(crate) fn last_id(&self, region_id: u64) -> Option<u64> {
        self.regions.get(&region_id).and_then(|r| r.last_id)
    }

    /// Every region's last entry id.
    pub(crate) fn last_ids(&self) -> HashMap<u64, u64> {
        self.regions
            .iter()
            .filter_map(|(&region, index)| Some((region, index.last_id?)))
            .collect()
    }

    /// What the log holds for each region, ascending.
    pub(crate) fn summaries(&self) -> Vec<RegionLog> {
        let mut summaries: Vec<RegionLog> = self
            .regions
            .iter()
            .map(|(&region_id, index)| RegionLog {
                region_id,
                last_entry_id: index.last_id,
                obsolete_entry_id: index.obsolete_id,
                live_records: index.records.len(),
            })
            .collect();
        summaries.sort_by_key(|s| s.region_id);
        summaries
    }

    /// Records an entries record at `offset` of `segment` holding `ids` (region, entry id),
    /// which must already satisfy the ordering rule.
    pub(crate) fn apply_entries(
        &mut self,
        segment: &Arc<Segment>,
        offset: u64,
        len: u32,
        ids: &[(u64, u64)],
    ) {
        let mut per_region: HashMap<u64, u64> = HashMap::new();
        for &(region, id) in ids {
            let max = per_region.entry(region).or_insert(id);
            *max = (*max).max(id);
        }
        let mut info = self.segments.get_mut(&segment.seq);
        for (region, last_id) in per_region {
            let index = self.regions.entry(region).or_default();
            index.last_id = Some(index.last_id.map_or(last_id, |l| l.max(last_id)));
            index.records.push_back(RecordLoc {
                segment: segment.clone(),
                offset,
                len,
                last_id,
            });
            if let Some(info) = info.as_deref_mut() {
                let max = info.max_ids.entry(region).or_insert(last_id);
                *max = (*max).max(last_id);
            }
        }
    }

    /// Marks `region_id`'s entries ≤ `entry_id` obsolete (monotonic).
    pub(crate) fn apply_obsolete(&mut self, region_id: u64, entry_id: u64) {
        let Some(index) = self.regions.get_mut(&region_id) else {
            return;
        };
        let mark = index.obsolete_id.map_or(entry_id, |o| o.max(entry_id));
        index.obsolete_id = Some(mark);
        while index.records.front().is_some_and(|r| r.last_id <= mark) {
            index.records.pop_front();
        }
    }

    /// Forgets `region_id` entirely.
    pub(crate) fn apply_drop(&mut self, region_id: u64) {
        self.regions.remove(&region_id);
        for info in self.segments.values_mut() {
            info.max_ids.remove(&region_id);
        }
    }

    /// Which records to read for `region_id` from `start`.
    pub(crate) fn plan_read(&self, region_id: u64, start: u64) -> ReadPlan {
        let Some(index) = self.regions.get(&region_id) else {
            return ReadPlan {
                records: Vec::new(),
                min_id: start,
            };
        };
        let min_id = index
            .obsolete_id
            .map_or(start, |o| start.max(o.saturating_add(1)));
        let records = index
            .records
            .iter()
            .filter(|r| r.last_id >= min_id)
            .cloned()
            .collect();
        ReadPlan { records, min_id }
    }

    /// Removes and returns the oldest segments (never `active_seq`) whose every entry is
    /// obsolete. Only a prefix of the log is reclaimed, so a drop or obsolete marker is
    /// never deleted while older entries it applies to remain.
    pub(crate) fn take_reclaimable(&mut self, active_seq: u64) -> Vec<Arc<Segment>> {
        let mut reclaimed = Vec::new();
        while let Some((&seq, info)) = self.segments.first_key_value() {
            if seq >= active_seq {
                break;
            }
            let done = info.max_ids.iter().all(|(region, max)| {
                self.regions
                    .get(region)
                    .and_then(|r| r.obsolete_id)
                    .is_some_and(|o| o >= *max)
            });
            if !done {
                break;
            }
            if let Some((_, info)) = self.segments.pop_first() {
                reclaimed.push(info.segment);
            }
        }
        reclaimed
    }

    /// Number of segments tracked.
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }
}
