use std::sync::Arc;

use strata_request::{RegionId, RegionOptions};

use super::*;
use crate::sst::{FileHandle, FileId, FileTracker};
use crate::time_range::TimeRange;

fn file(start: i64, end: i64, rows: u64, deletes: Option<u64>) -> FileMeta {
    FileMeta {
        region_id: RegionId::new(1, 0),
        file_id: FileId::random(),
        level: 0,
        time_range: (start, end),
        num_rows: rows,
        num_row_groups: 1,
        file_size: 100,
        max_sequence: rows,
        checksum: 0,
        num_deletes: deletes,
        time_slice: None,
    }
}

fn part(meta: FileMeta, tracker: &Arc<FileTracker>) -> Part {
    Part::File(FileHandle::new(meta, tracker))
}

/// The (start, end) of each group's members, in order.
fn spans(groups: &[Vec<Part>]) -> Vec<Vec<(i64, i64)>> {
    groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|p| {
                    let r = p.time_range().unwrap();
                    (r.start, r.end)
                })
                .collect()
        })
        .collect()
}

#[test]
fn files_that_overlap_through_a_third_share_a_group_and_disjoint_ones_do_not() {
    let tracker = FileTracker::new();
    let parts = vec![
        part(file(50, 60, 1, Some(0)), &tracker),
        part(file(0, 10, 1, Some(0)), &tracker),
        part(file(20, 30, 1, Some(0)), &tracker),
        // Overlaps [0, 10] and, through its end, [12, 15]: one group of three.
        part(file(5, 12, 1, Some(0)), &tracker),
        part(file(12, 15, 1, Some(0)), &tracker),
        // Touches [20, 30] at its end: an equal timestamp may be the same row.
        part(file(30, 40, 1, Some(0)), &tracker),
    ];
    assert_eq!(
        spans(&overlapping_groups(parts)),
        vec![
            vec![(0, 10), (5, 12), (12, 15)],
            vec![(20, 30), (30, 40)],
            vec![(50, 60)],
        ]
    );
}

#[test]
fn a_file_counts_from_metadata_only_if_wholly_in_range_with_known_deletes() {
    let scan = MergeOptions::scan_of(&RegionOptions::default());
    let all = ScanRequest::default();
    let known = file(10, 20, 100, Some(7));
    assert_eq!(rows_from_metadata(&known, &all, scan), Some(93));
    // A flush-style count keeps delete markers as rows.
    assert_eq!(
        rows_from_metadata(&known, &all, MergeOptions::flush()),
        Some(100)
    );
    // Files written before delete markers were recorded must be read.
    assert_eq!(
        rows_from_metadata(&file(10, 20, 100, None), &all, scan),
        None
    );
    let within = |start, end| ScanRequest {
        time_range: Some(TimeRange { start, end }),
        ..ScanRequest::default()
    };
    assert_eq!(rows_from_metadata(&known, &within(10, 20), scan), Some(93));
    assert_eq!(rows_from_metadata(&known, &within(11, 20), scan), None);
    assert_eq!(rows_from_metadata(&known, &within(10, 19), scan), None);
    // Verifying checksums means reading the file.
    let verify = ScanRequest {
        verify_checksums: true,
        ..ScanRequest::default()
    };
    assert_eq!(rows_from_metadata(&known, &verify, scan), None);
    // An append-mode region returns every row, delete markers included, known or not.
    let append = MergeOptions::scan_of(&RegionOptions::default().append_mode(true));
    assert_eq!(
        rows_from_metadata(&file(10, 20, 100, None), &all, append),
        Some(100)
    );
}
