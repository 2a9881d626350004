//! Bookkeeping of salvage recovery: the damaged ranges skipped, and which regions' entries
//! each may have held (the ids that jump across it).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::file::report::{LostEntries, LostRange};

/// A skipped range still collecting the first ids read after it.
struct Open {
    range: LostRange,
    /// Each region's last entry id when the range was skipped.
    before: HashMap<u64, u64>,
    /// Each region's first entry id read after it.
    after: HashMap<u64, u64>,
}

/// The ranges skipped so far, in log order.
#[derive(Default)]
pub(crate) struct Losses {
    open: Vec<Open>,
}

impl Losses {
    /// Records a skipped range `[start, end)` of `path`; `last_ids` are every region's last
    /// entry id read before it.
    pub(crate) fn lose(
        &mut self,
        path: &Path,
        start: u64,
        end: u64,
        reason: String,
        last_ids: HashMap<u64, u64>,
    ) {
        tracing::warn!(
            path = %path.display(),
            start,
            end,
            reason,
            "WAL salvage skipped a damaged range"
        );
        self.open.push(Open {
            range: LostRange {
                path: path.to_path_buf(),
                start,
                end,
                reason,
                regions: Vec::new(),
            },
            before: last_ids,
            after: HashMap::new(),
        });
    }

    /// Notes an entry read (after every range recorded so far).
    pub(crate) fn saw(&mut self, region_id: u64, entry_id: u64) {
        for open in &mut self.open {
            open.after.entry(region_id).or_insert(entry_id);
        }
    }

    /// Whether anything was skipped.
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The ranges, each with the regions whose ids jump across it.
    pub(crate) fn finish(self) -> Vec<LostRange> {
        self.open
            .into_iter()
            .map(|open| {
                let Open {
                    mut range,
                    before,
                    after,
                } = open;
                let regions: BTreeSet<u64> = before.keys().chain(after.keys()).copied().collect();
                range.regions = regions
                    .into_iter()
                    .map(|region_id| LostEntries {
                        region_id,
                        last_before: before.get(&region_id).copied(),
                        first_after: after.get(&region_id).copied(),
                    })
                    .filter(|e| match (e.last_before, e.first_after) {
                        (Some(before), Some(after)) => after > before.saturating_add(1),
                        (None, Some(after)) => after > 1,
                        _ => true,
                    })
                    .collect();
                range
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_whose_ids_jump_across_a_range_are_named_and_contiguous_ones_are_not() {
        let mut losses = Losses::default();
        losses.lose(
            Path::new("1.wal"),
            100,
            200,
            "checksum".into(),
            HashMap::from([(1, 10), (2, 5), (3, 7)]),
        );
        // Region 1 continues at 11 (nothing lost), region 2 jumps to 9, region 3 never
        // comes back, region 4 first appears at 3.
        for (region, id) in [(1, 11), (2, 9), (1, 12), (4, 3), (2, 10)] {
            losses.saw(region, id);
        }
        let ranges = losses.finish();
        assert_eq!(ranges.len(), 1);
        let named: Vec<(u64, String)> = ranges[0]
            .regions
            .iter()
            .map(|e| (e.region_id, e.to_string()))
            .collect();
        assert_eq!(
            named,
            vec![
                (2, "entries 6..=8".to_string()),
                (3, "entries after 7".to_string()),
                (4, "entries before 3".to_string()),
            ]
        );
    }
}
