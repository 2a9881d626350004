//! What a compaction did: [`CompactionStats`] in total and [`WindowStats`] per time window.

use strata_storage::{FileMeta, window_start};

/// What a finished compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionStats {
    /// Files removed (inputs and expired files).
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Files removed whole because they had expired.
    pub expired_files: u64,
    /// Rows read from the inputs.
    pub rows_read: u64,
    /// Rows written to the outputs.
    pub rows_written: u64,
    /// Bytes of the removed files.
    pub bytes_read: u64,
    /// Bytes of the outputs.
    pub bytes_written: u64,
    /// The same, window by window, oldest window first.
    pub windows: Vec<WindowStats>,
}

/// What one time window held of a compaction's files before and after it: the files it
/// removed and the files it wrote, each counted in the window of its newest row (the
/// window the picker files it under), so rows can move to a neighbouring window when an
/// input spanned both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowStats {
    /// Start of the window, in the region's timestamp unit.
    pub window_start: i64,
    /// The removed files of the window (inputs and expired files).
    pub before: FileSetStats,
    /// The written files of the window.
    pub after: FileSetStats,
}

/// Files, rows and bytes of a set of SST files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileSetStats {
    /// Files.
    pub files: u64,
    /// Rows in them.
    pub rows: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl FileSetStats {
    fn add(&mut self, file: &FileMeta) {
        self.files += 1;
        self.rows += file.num_rows;
        self.bytes += file.file_size;
    }
}

impl WindowStats {
    /// Per window of `width` (region unit), oldest first: `removed` before, `added` after.
    pub(crate) fn of(width: i64, removed: &[&FileMeta], added: &[FileMeta]) -> Vec<Self> {
        let width = width.max(1);
        let mut windows: std::collections::BTreeMap<i64, WindowStats> = Default::default();
        let files = removed
            .iter()
            .map(|file| (*file, true))
            .chain(added.iter().map(|file| (file, false)));
        for (file, before) in files {
            let start = window_start(file.time_range.1, width);
            let window = windows.entry(start).or_insert(WindowStats {
                window_start: start,
                ..WindowStats::default()
            });
            if before {
                window.before.add(file);
            } else {
                window.after.add(file);
            }
        }
        windows.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(first: i64, last: i64, rows: u64) -> FileMeta {
        let mut file = strata_storage::testing::file_meta(strata_request::RegionId::new(1, 1));
        file.time_range = (first, last);
        file.num_rows = rows;
        file.file_size = rows * 10;
        file
    }

    #[test]
    fn files_count_in_the_window_of_their_newest_row_oldest_window_first() {
        let inputs = [file(0, 99, 5), file(50, 150, 7), file(210, 290, 1)];
        let outputs = [file(0, 99, 4), file(100, 150, 6)];
        let removed: Vec<&FileMeta> = inputs.iter().collect();
        let windows = WindowStats::of(100, &removed, &outputs);
        type View = (i64, (u64, u64), (u64, u64));
        let view: Vec<View> = windows
            .iter()
            .map(|w| {
                (
                    w.window_start,
                    (w.before.files, w.before.rows),
                    (w.after.files, w.after.rows),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (0, (1, 5), (1, 4)),
                (100, (1, 7), (1, 6)),
                (200, (1, 1), (0, 0))
            ]
        );
        assert_eq!(windows[1].before.bytes, 70);
    }
}
