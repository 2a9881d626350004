use proptest::prelude::*;
use strata_request::RegionId;
use strata_storage::FileId;

use super::*;

const HOUR: i64 = 3_600_000;

fn file(level: u8, range: (i64, i64), rows: u64, sequence: u64) -> FileMeta {
    {
        let mut file = strata_storage::testing::file_meta(RegionId::new(1, 1));
        file.level = level;
        file.time_range = range;
        file.num_rows = rows;
        file.num_row_groups = 1;
        file.file_size = rows * 10;
        file.max_sequence = sequence;
        file.checksum = 0;
        file.num_deletes = None;
        file.time_slice = None;
        file
    }
}

fn input<'a>(files: &'a [FileMeta], mode: PickMode, options: &'a PickerOptions) -> PickInput<'a> {
    PickInput {
        files,
        window_secs: 3_600,
        window: HOUR,
        ttl_cutoff: None,
        append_mode: false,
        mode,
        options,
    }
}

/// Applies `pick` as a compaction would: inputs and expired files go, each group becomes
/// one level-1 file with the inputs' rows (no duplicates in this model). Returns the
/// rows written.
fn apply(files: &mut Vec<FileMeta>, pick: &CompactionPick) -> u64 {
    let removed: Vec<FileId> = pick.removed_files().map(|f| f.file_id).collect();
    files.retain(|f| !removed.contains(&f.file_id));
    let mut written = 0;
    for group in &pick.groups {
        let rows = group.inputs.iter().map(|f| f.num_rows).sum();
        let start = group.inputs.iter().map(|f| f.time_range.0).min().unwrap();
        let end = group.inputs.iter().map(|f| f.time_range.1).max().unwrap();
        let sequence = group.inputs.iter().map(|f| f.max_sequence).max().unwrap();
        files.push(file(1, (start, end), rows, sequence));
        written += rows;
    }
    written
}

#[test]
fn a_window_with_fewer_level0_files_than_the_trigger_is_left_alone_until_it_has_them() {
    let options = PickerOptions::default();
    let mut files: Vec<FileMeta> = (0..3).map(|s| file(0, (0, HOUR - 1), 100, s)).collect();
    assert!(pick_files(&input(&files, PickMode::Automatic, &options)).is_empty());
    files.push(file(0, (0, HOUR - 1), 100, 3));
    let pick = pick_files(&input(&files, PickMode::Automatic, &options));
    assert_eq!(pick.groups.len(), 1);
    assert_eq!(pick.groups[0].inputs.len(), 4);
    assert!(
        pick.groups[0].drop_deletes,
        "no other file overlaps the inputs"
    );
}

#[test]
fn the_active_window_is_the_one_holding_the_highest_sequence() {
    let options = PickerOptions::default();
    // Window 0 has newer data (late writes) than window 5: window 0 is active, so its two
    // level-0 files wait; window 5 is inactive and merges its two.
    let files = vec![
        file(0, (0, 10), 100, 90),
        file(0, (0, 10), 100, 91),
        file(0, (5 * HOUR, 5 * HOUR + 10), 100, 10),
        file(0, (5 * HOUR, 5 * HOUR + 10), 100, 11),
    ];
    let pick = pick_files(&input(&files, PickMode::Automatic, &options));
    assert_eq!(pick.groups.len(), 1);
    assert_eq!(pick.groups[0].window_start, 5 * HOUR);
}

#[test]
fn compacted_files_are_rewritten_only_within_the_budget() {
    let options = PickerOptions::default();
    let big = file(1, (0, HOUR - 1), 1_000_000, 1);
    let mut files = vec![big.clone()];
    files.extend((0..4).map(|s| file(0, (0, HOUR - 1), 100, 10 + s)));
    let pick = pick_files(&input(&files, PickMode::Automatic, &options));
    assert_eq!(pick.groups.len(), 1);
    assert!(
        !pick.groups[0].inputs.contains(&big),
        "a big compacted file is not rewritten for 400 new rows"
    );
    // A manual compaction consolidates regardless.
    let pick = pick_files(&input(&files, PickMode::Manual, &options));
    assert!(pick.groups[0].inputs.contains(&big));
}

#[test]
fn delete_markers_are_kept_when_a_file_outside_the_inputs_overlaps_them() {
    let options = PickerOptions::default();
    let mut files: Vec<FileMeta> = (0..4).map(|s| file(0, (10, 20), 100, 10 + s)).collect();
    // A file of the next window (by its newest row) reaching back into this one.
    files.push(file(0, (15, HOUR + 5), 100, 1));
    let pick = pick_files(&input(&files, PickMode::Automatic, &options));
    let group = pick.groups.iter().find(|g| g.window_start == 0).unwrap();
    assert!(!group.drop_deletes);
    let append = PickInput {
        append_mode: true,
        ..input(&files[..4], PickMode::Automatic, &options)
    };
    assert!(!pick_files(&append).groups[0].drop_deletes);
}

#[test]
fn wholly_expired_files_are_dropped_without_being_read() {
    let options = PickerOptions::default();
    let old = file(0, (0, 10), 100, 1);
    let straddling = file(0, (HOUR - 5, HOUR + 5), 100, 2);
    let files = vec![old.clone(), straddling.clone()];
    let pick = pick_files(&PickInput {
        ttl_cutoff: Some(HOUR),
        ..input(&files, PickMode::Automatic, &options)
    });
    assert_eq!(pick.expired, vec![old]);
    assert!(pick.groups.is_empty());
    // A manual compaction also rewrites the straddling file to drop its expired rows.
    let pick = pick_files(&PickInput {
        ttl_cutoff: Some(HOUR),
        ..input(&files, PickMode::Manual, &options)
    });
    assert_eq!(pick.groups.len(), 1);
    assert_eq!(pick.groups[0].inputs, vec![straddling]);
    assert_eq!(pick.ttl_cutoff, Some(HOUR));
}

#[test]
fn outputs_are_sized_from_the_inputs_bytes_per_row() {
    let options = PickerOptions {
        max_output_file_size: 1_000,
        ..PickerOptions::default()
    };
    let files: Vec<FileMeta> = (0..4).map(|s| file(0, (0, 10), 100, s)).collect();
    let pick = pick_files(&input(&files, PickMode::Automatic, &options));
    // 10 bytes per row: 100 rows per 1,000-byte file.
    assert_eq!(pick.groups[0].max_rows_per_file, 100);
    // Files at the cap count as one run: nothing to consolidate.
    let at_cap: Vec<FileMeta> = (0..3).map(|s| file(1, (0, 10), 100, s)).collect();
    assert!(pick_files(&input(&at_cap, PickMode::Idle, &options)).is_empty());
}

#[test]
fn at_most_max_inputs_files_are_merged_at_once_oldest_first() {
    let options = PickerOptions::default();
    let files: Vec<FileMeta> = (0..40).map(|s| file(0, (0, 10), 100, s)).collect();
    let pick = pick_files(&input(&files, PickMode::Automatic, &options));
    let inputs = &pick.groups[0].inputs;
    assert_eq!(inputs.len(), 32);
    assert!(inputs.iter().all(|f| f.max_sequence < 32));
}

/// The backfill workload as the picker sees it: every flush carries rows of the current
/// window and of the three before it (late data), ten flushes per window, forty windows;
/// compaction runs after each flush, then once more when the region goes idle.
/// Row write amplification = rows written by flushes and compactions ÷ rows ingested.
fn backfill_write_amplification(options: &PickerOptions) -> (f64, f64, usize) {
    let mut files = Vec::new();
    let (mut ingested, mut written) = (0u64, 0u64);
    let mut sequence = 0;
    for flush in 0..400i64 {
        let current = flush / 10;
        for (back, rows) in [(0, 7_000u64), (1, 1_500), (2, 1_000), (3, 500)] {
            let window = current - back;
            if window < 0 {
                continue;
            }
            sequence += 1;
            files.push(file(
                0,
                (window * HOUR, window * HOUR + HOUR - 1),
                rows,
                sequence,
            ));
            ingested += rows;
            written += rows;
        }
        let pick = pick_files(&input(&files, PickMode::Automatic, options));
        written += apply(&mut files, &pick);
    }
    let automatic = written as f64 / ingested as f64;
    let files_before_idle = files.len();
    loop {
        let pick = pick_files(&input(&files, PickMode::Idle, options));
        if pick.is_empty() {
            break;
        }
        written += apply(&mut files, &pick);
    }
    (
        automatic,
        written as f64 / ingested as f64,
        files_before_idle,
    )
}

#[test]
fn the_backfill_workload_stays_within_the_write_amplification_goal() {
    let (automatic, consolidated, files) = backfill_write_amplification(&PickerOptions::default());
    println!(
        "backfill row write amplification (picker model): {automatic:.2} while ingesting \
         ({files} files in 40 windows), {consolidated:.2} after the idle consolidation"
    );
    assert!(automatic <= 2.5, "{automatic:.2}");
    assert!(files <= 40 * 8, "{files} files");
    assert!(consolidated <= 3.5, "{consolidated:.2}");
}

#[test]
fn many_small_flushes_into_one_window_leave_a_logarithmic_number_of_files() {
    let options = PickerOptions::default();
    let mut files = Vec::new();
    let (mut ingested, mut written) = (0u64, 0u64);
    for sequence in 0..300 {
        files.push(file(0, (0, HOUR - 1), 10_000, sequence));
        ingested += 10_000;
        written += 10_000;
        let pick = pick_files(&input(&files, PickMode::Automatic, &options));
        written += apply(&mut files, &pick);
    }
    let amplification = written as f64 / ingested as f64;
    println!(
        "300 flushes into one window: {} files, write amplification {amplification:.2}",
        files.len()
    );
    assert!(files.len() <= 16, "{} files", files.len());
}

fn arbitrary_files() -> impl Strategy<Value = Vec<FileMeta>> {
    proptest::collection::vec((0u8..2, 0i64..6, 0i64..HOUR, 1u64..1_000, 0u64..100), 0..48)
        .prop_map(|specs| {
            specs
                .into_iter()
                .map(|(level, window, offset, rows, sequence)| {
                    let start = window * HOUR + offset / 2;
                    file(level, (start, window * HOUR + offset), rows, sequence)
                })
                .collect()
        })
}

fn arbitrary_mode() -> impl Strategy<Value = PickMode> {
    prop_oneof![
        Just(PickMode::Automatic),
        Just(PickMode::Idle),
        Just(PickMode::Manual)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every pick names live files only, each at most once, keeps each group in one
    /// window and within `max_inputs`, and never merges an expired file.
    #[test]
    fn picks_are_well_formed(
        files in arbitrary_files(),
        mode in arbitrary_mode(),
        cutoff in proptest::option::of(0i64..6 * HOUR),
        max_inputs in 2usize..40,
    ) {
        let options = PickerOptions { max_inputs, ..PickerOptions::default() };
        let pick = pick_files(&PickInput { ttl_cutoff: cutoff, ..input(&files, mode, &options) });
        let mut seen = std::collections::HashSet::new();
        for removed in pick.removed_files() {
            prop_assert!(files.contains(removed));
            prop_assert!(seen.insert(removed.file_id), "file picked twice");
        }
        for expired in &pick.expired {
            prop_assert!(cutoff.is_some_and(|c| expired.time_range.1 < c));
        }
        for group in &pick.groups {
            prop_assert!(group.inputs.len() <= max_inputs);
            prop_assert!(!group.inputs.is_empty());
            for f in &group.inputs {
                prop_assert_eq!(window_start(f.time_range.1, HOUR), group.window_start);
                prop_assert!(cutoff.is_none_or(|c| f.time_range.1 >= c));
            }
        }
    }

    /// Consolidating again and again converges: at most one run per window, within a
    /// bounded number of rounds.
    #[test]
    fn idle_consolidation_converges_to_one_file_per_window(files in arbitrary_files()) {
        let options = PickerOptions::default();
        let mut files = files;
        let mut rounds = 0;
        loop {
            let pick = pick_files(&input(&files, PickMode::Idle, &options));
            if pick.is_empty() {
                break;
            }
            apply(&mut files, &pick);
            rounds += 1;
            prop_assert!(rounds <= 4, "no convergence after {} rounds", rounds);
        }
        let mut windows = std::collections::HashMap::new();
        for f in &files {
            *windows.entry(window_start(f.time_range.1, HOUR)).or_insert(0) += 1;
        }
        prop_assert!(windows.values().all(|&n| n == 1), "{:?}", windows);
    }
}
