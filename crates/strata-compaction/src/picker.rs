//! The picker: which files to merge, which to drop as expired — a pure function of the
//! region's files, its options and the time, tested without I/O.
//!
//! Time-window compaction (mito2's TWCS, with its known bugs designed out):
//! - Each file belongs to the window of its newest row ([`window_start`]); the window
//!   width is the one recorded in the manifest, never re-inferred.
//! - The *active* window is the window of the file with the highest sequence (not "the
//!   newest window with level-0 files", which made every window look inactive and merged
//!   in full whenever level 0 was briefly empty).
//! - A window is merged when it has `trigger_file_num` level-0 files, or — once it is no
//!   longer active — when it has two level-0 files and nothing compacted yet.
//! - **Rewrite budget**: a merge takes the window's level-0 files (oldest first) and only
//!   as many compacted (level-1) files, smallest first, as add up to at most the level-0
//!   rows it merges. Compacted rows are rewritten only when as many new rows come with
//!   them, so a window is not rewritten again and again for a few late rows.
//! - **Size tiers**: a window that keeps receiving data piles up compacted files; when
//!   `trigger_file_num` of them have similar sizes (within 2×), they are merged, so their
//!   number stays logarithmic in the window's rows.
//! - **Consolidation**: a manual compaction, or an automatic one once the region is idle,
//!   merges every window that is not yet one run (one file, or files at the size cap), so
//!   an idle region ends with one run per window.
//! - Files wholly older than the TTL cutoff are dropped without a rewrite; merges read
//!   only live rows, so expired rows vanish from rewritten windows.
//! - Delete markers are dropped from a merge's output only when no file outside its
//!   inputs overlaps the inputs' time range (inclusive bounds), and never in append mode.
//! - At most `max_inputs` files per output group; outputs are split at
//!   `max_output_file_size` (estimated from the inputs' bytes per row).

use std::collections::BTreeMap;

use strata_storage::{FileMeta, Version, window_start, window_width};

/// A merge rewrites compacted rows up to this many times the level-0 rows it merges.
const REWRITE_BUDGET_RATIO: u64 = 1;

/// Compacted files within this factor of each other's rows form a size tier.
const TIER_RATIO: u64 = 2;

/// The picker's settings (from the engine configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickerOptions {
    /// Level-0 files in one window that trigger its merge (at least 2).
    pub trigger_file_num: usize,
    /// Outputs are split at about this many bytes.
    pub max_output_file_size: u64,
    /// Most input files of one merge (at least 2).
    pub max_inputs: usize,
}

impl Default for PickerOptions {
    fn default() -> Self {
        Self {
            trigger_file_num: 4,
            max_output_file_size: 512 << 20,
            max_inputs: 32,
        }
    }
}

/// What asked for the compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PickMode {
    /// After a flush or on the periodic tick: only windows past their trigger.
    Automatic,
    /// The region has been idle (no flush) for a while: consolidate every window.
    Idle,
    /// Asked for by the embedder or `strata compact`: consolidate every window and
    /// rewrite files that hold expired rows.
    Manual,
}

impl PickMode {
    /// Lower-case name (metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            PickMode::Automatic => "automatic",
            PickMode::Idle => "idle",
            PickMode::Manual => "manual",
        }
    }

    /// Every mode.
    pub const ALL: [PickMode; 3] = [PickMode::Automatic, PickMode::Idle, PickMode::Manual];

    fn consolidates(self) -> bool {
        matches!(self, PickMode::Idle | PickMode::Manual)
    }
}

/// The inputs of one picked merge and how to merge them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeGroup {
    /// Start of the window (region timestamp unit) the inputs belong to.
    pub window_start: i64,
    /// The files to merge.
    pub inputs: Vec<FileMeta>,
    /// Whether delete markers may be dropped from the output.
    pub drop_deletes: bool,
    /// Rows per output file (from `max_output_file_size` and the inputs' bytes per row).
    pub max_rows_per_file: u64,
}

/// What the picker chose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactionPick {
    /// Window width in seconds (as recorded, or as this compaction records it).
    pub window_secs: u64,
    /// Window width in the region's timestamp unit.
    pub window: i64,
    /// Files wholly older than the TTL cutoff: removed by the edit, not read.
    pub expired: Vec<FileMeta>,
    /// Merges to run.
    pub groups: Vec<MergeGroup>,
    /// Rows older than this have expired (region unit); merges drop them.
    pub ttl_cutoff: Option<i64>,
}

impl CompactionPick {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.expired.is_empty() && self.groups.is_empty()
    }

    /// Every file the edit removes: expired files and merge inputs.
    pub fn removed_files(&self) -> impl Iterator<Item = &FileMeta> {
        self.expired
            .iter()
            .chain(self.groups.iter().flat_map(|g| g.inputs.iter()))
    }
}

/// Everything [`pick_files`] decides from.
#[derive(Debug, Clone)]
pub struct PickInput<'a> {
    /// The region's live files.
    pub files: &'a [FileMeta],
    /// Window width in seconds.
    pub window_secs: u64,
    /// Window width in the region's timestamp unit.
    pub window: i64,
    /// Rows older than this have expired (region unit).
    pub ttl_cutoff: Option<i64>,
    /// Append-mode regions keep delete markers (they have none) and duplicates.
    pub append_mode: bool,
    /// Why the compaction runs.
    pub mode: PickMode,
    /// Settings.
    pub options: &'a PickerOptions,
}

/// Picks for `version` at `now_millis` (engine clock). The window width is the version's
/// recorded one, else the region option, else the smallest standard width covering the
/// files' span (the compaction's edit then records it).
pub fn pick(
    version: &Version,
    now_millis: i64,
    mode: PickMode,
    options: &PickerOptions,
) -> CompactionPick {
    let files: Vec<FileMeta> = version.all_files().cloned().collect();
    let window_secs = version
        .compaction_window_secs()
        .or_else(|| {
            version
                .options()
                .compaction_window
                .map(|w| w.as_secs().max(1))
        })
        .unwrap_or_else(|| {
            let start = files.iter().map(|f| f.time_range.0).min().unwrap_or(0);
            let end = files.iter().map(|f| f.time_range.1).max().unwrap_or(0);
            strata_storage::infer_window_secs(version.metadata(), end.saturating_sub(start))
        });
    pick_files(&PickInput {
        files: &files,
        window_secs,
        window: window_width(version.metadata(), window_secs),
        ttl_cutoff: version.ttl_cutoff(now_millis),
        append_mode: version.options().append_mode,
        mode,
        options,
    })
}

/// The picker proper: see the module docs for the rules.
pub fn pick_files(input: &PickInput<'_>) -> CompactionPick {
    let options = input.options;
    let trigger = options.trigger_file_num.max(2);
    let max_inputs = options.max_inputs.max(2);
    let window = input.window.max(1);
    let expired_before = |f: &FileMeta| input.ttl_cutoff.is_some_and(|cut| f.time_range.1 < cut);
    let (expired, live): (Vec<&FileMeta>, Vec<&FileMeta>) =
        input.files.iter().partition(|f| expired_before(f));

    let active = live
        .iter()
        .max_by_key(|f| (f.max_sequence, f.time_range.1))
        .map(|f| window_start(f.time_range.1, window));
    let mut windows: BTreeMap<i64, Vec<&FileMeta>> = BTreeMap::new();
    for file in &live {
        windows
            .entry(window_start(file.time_range.1, window))
            .or_default()
            .push(file);
    }

    let mut groups = Vec::new();
    for (&start, files) in &windows {
        let mut level0: Vec<&FileMeta> = files.iter().copied().filter(|f| f.level == 0).collect();
        let mut level1: Vec<&FileMeta> = files.iter().copied().filter(|f| f.level > 0).collect();
        level0.sort_by_key(|f| (f.max_sequence, f.file_id));
        level1.sort_by_key(|f| (f.num_rows, f.file_id));
        let rows = |fs: &[&FileMeta]| fs.iter().map(|f| f.num_rows).sum::<u64>();
        let holds_expired = |f: &FileMeta| input.ttl_cutoff.is_some_and(|cut| f.time_range.0 < cut);

        let inputs: Vec<&FileMeta> = if input.mode.consolidates() {
            let one_run = level0.is_empty()
                && (level1.len() <= 1
                    || level1.iter().map(|f| f.file_size).sum::<u64>()
                        >= options
                            .max_output_file_size
                            .saturating_mul(level1.len() as u64 - 1));
            let rewrite_expired =
                input.mode == PickMode::Manual && files.iter().any(|f| holds_expired(f));
            if one_run && !rewrite_expired {
                continue;
            }
            let mut all: Vec<&FileMeta> = level0.iter().chain(level1.iter()).copied().collect();
            all.truncate(max_inputs);
            all
        } else {
            let inactive = active != Some(start);
            let triggered =
                level0.len() >= trigger || (inactive && level1.is_empty() && level0.len() >= 2);
            if !triggered {
                // Compacted files pile up in a window that keeps receiving data: merge
                // `trigger_file_num` of similar size (size tiers), so their number stays
                // logarithmic in the window's rows.
                match similar_sized(&level1, trigger, max_inputs) {
                    Some(tier) => tier,
                    None => continue,
                }
            } else {
                let mut chosen: Vec<&FileMeta> = level0.iter().copied().take(max_inputs).collect();
                let budget = rows(&chosen).saturating_mul(REWRITE_BUDGET_RATIO);
                let mut spent = 0u64;
                for file in &level1 {
                    if chosen.len() >= max_inputs || spent + file.num_rows > budget {
                        break;
                    }
                    spent += file.num_rows;
                    chosen.push(file);
                }
                chosen
            }
        };
        if inputs.len() < 2 && !(input.mode == PickMode::Manual && inputs.len() == 1) {
            continue;
        }
        groups.push(MergeGroup {
            window_start: start,
            drop_deletes: !input.append_mode && no_outside_overlap(&inputs, &live, &expired),
            max_rows_per_file: rows_per_file(&inputs, options.max_output_file_size),
            inputs: inputs.into_iter().cloned().collect(),
        });
    }
    CompactionPick {
        window_secs: input.window_secs,
        window,
        expired: expired.into_iter().cloned().collect(),
        groups,
        ttl_cutoff: input.ttl_cutoff,
    }
}

/// The smallest `trigger` (up to `max_inputs`) files of `level1` (sorted by rows) whose
/// rows lie within a factor of [`TIER_RATIO`] of each other, if there are that many.
fn similar_sized<'a>(
    level1: &[&'a FileMeta],
    trigger: usize,
    max_inputs: usize,
) -> Option<Vec<&'a FileMeta>> {
    for (i, first) in level1.iter().enumerate() {
        let tier: Vec<&FileMeta> = level1[i..]
            .iter()
            .copied()
            .take_while(|f| f.num_rows <= first.num_rows.max(1).saturating_mul(TIER_RATIO))
            .take(max_inputs)
            .collect();
        if tier.len() >= trigger {
            return Some(tier);
        }
    }
    None
}

/// Whether no file other than `inputs` overlaps their combined time range.
fn no_outside_overlap(inputs: &[&FileMeta], live: &[&FileMeta], expired: &[&FileMeta]) -> bool {
    let start = inputs
        .iter()
        .map(|f| f.time_range.0)
        .min()
        .unwrap_or(i64::MAX);
    let end = inputs
        .iter()
        .map(|f| f.time_range.1)
        .max()
        .unwrap_or(i64::MIN);
    live.iter()
        .chain(expired.iter())
        .filter(|f| !inputs.iter().any(|i| i.file_id == f.file_id))
        .all(|f| f.time_range.1 < start || f.time_range.0 > end)
}

/// Rows per output file so that a file is about `max_bytes`.
fn rows_per_file(inputs: &[&FileMeta], max_bytes: u64) -> u64 {
    let rows: u64 = inputs.iter().map(|f| f.num_rows).sum();
    let bytes: u64 = inputs.iter().map(|f| f.file_size).sum();
    if rows == 0 || bytes == 0 {
        return u64::MAX;
    }
    let per_row = (bytes as f64 / rows as f64).max(1e-3);
    ((max_bytes as f64 / per_row) as u64).max(1)
}

#[cfg(test)]
mod tests;
