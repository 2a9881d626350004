//! Time slices: how an SST lays out its rows so that a short time range decodes only a
//! small part of it.
//!
//! An SST sorted by (key, timestamp) alone has rows of every series at every time, so a
//! scan of 1 % of its time span still finds rows in range on every page and decodes them
//! all. A file written with a *slice width* `w` instead holds its rows slice by slice,
//! oldest first — a slice being its rows whose timestamps fall in one aligned interval
//! `[k·w, (k+1)·w)` — sorted by (key, timestamp, sequence descending) within each slice,
//! and every row group lies in one slice. A time-range scan then reads only the row groups
//! of the slices the range touches (row-group statistics say which); a merge reads the
//! slices of a file as separate sorted sources (they never share a key and timestamp).
//!
//! Widths are powers of two in the region's timestamp unit, so slices of files with
//! different widths nest: a compaction that writes its output with a width at least that of
//! each input reads every input row group in exactly one slice pass. The width is stored in
//! the file's key-value metadata under [`TIME_SLICE_KEY`] and in its manifest entry
//! ([`FileMeta::time_slice`](super::FileMeta::time_slice)); files without it (written
//! before slices existed, or small enough for one slice) are one slice sorted by key.

use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use snafu::ensure;

use crate::error::{NewerFormatSnafu, StorageError};
use crate::format::{SST_FORMAT, SST_FORMAT_KEY};
use crate::time_range::TimeRange;
use crate::window::window_start;

/// Key-value metadata key holding a file's time-slice width (decimal, in the region's
/// timestamp unit); absent for a file that is one slice.
pub const TIME_SLICE_KEY: &str = "strata.time_slice";

/// Most slices a width is chosen for: wider slices beyond this, so a file of billions of
/// rows over a short span does not become millions of tiny row groups.
const MAX_SLICES: u128 = 1024;

/// The slice width for a file of `rows` rows spanning `span`: the power of two (in the
/// span's unit) nearest to the width at which a slice holds `target_rows` rows if rows are
/// spread evenly over the span, no narrower than `1/1024` of the span. `None` — one slice —
/// when the file holds fewer than two slices' worth of rows or the width covers the span.
pub fn slice_width(span: TimeRange, rows: u64, target_rows: u64) -> Option<i64> {
    let target = u128::from(target_rows.max(1));
    let rows = u128::from(rows);
    if rows < 2 * target {
        return None;
    }
    let len = u128::try_from(i128::from(span.end) - i128::from(span.start) + 1).ok()?;
    let ideal = (len * target / rows).max(1);
    let up = ideal.next_power_of_two();
    // Nearest on a log scale: `up` unless it is more than √2 times the ideal.
    let nearest = if up > 1 && up * up > 2 * ideal * ideal {
        up / 2
    } else {
        up
    };
    let width = nearest.max(len.div_ceil(MAX_SLICES).next_power_of_two());
    if width >= len {
        return None;
    }
    i64::try_from(width).ok()
}

/// `range` cut at the boundaries of slices of `width` (the slices it touches, clipped to
/// it), oldest first; `range` itself for `None`.
pub fn time_slices(range: TimeRange, width: Option<i64>) -> Vec<TimeRange> {
    let Some(width) = width.filter(|&w| w > 0) else {
        return vec![range];
    };
    let mut slices = Vec::new();
    let mut start = slice_start(range.start, width);
    while start <= range.end {
        let end = start.saturating_add(width - 1);
        slices.push(TimeRange {
            start: start.max(range.start),
            end: end.min(range.end),
        });
        if end >= range.end {
            break;
        }
        start = end + 1;
    }
    slices
}

/// The start of the slice of width `width` holding `ts` (its id within a file).
pub(crate) fn slice_start(ts: i64, width: i64) -> i64 {
    window_start(ts, width)
}

/// Whether `range` (clipped to `file`, the file's own time range) touches at most one
/// slice of width `width` — a file of slices read only for `range` is then sorted by key.
pub(crate) fn one_slice_within(file: TimeRange, range: Option<TimeRange>, width: i64) -> bool {
    let wanted = range.map_or(file, |range| file.intersection(&range));
    wanted.is_empty() || slice_start(wanted.start, width) == slice_start(wanted.end, width)
}

/// Refuses a file whose footer says it is in a format newer than [`SST_FORMAT`] (its
/// layout is unknown); a file without the key is format 1 or an unmarked format 2.
pub(crate) fn check_format(file: &ParquetMetaData, path: &str) -> Result<(), StorageError> {
    let format = footer_value(file, SST_FORMAT_KEY).map_or(Ok(1), |value| {
        value.parse::<u32>().map_err(|_| StorageError::CorruptSst {
            path: path.to_string(),
            reason: format!("format {value:?} is not a number"),
        })
    })?;
    ensure!(
        format <= SST_FORMAT,
        NewerFormatSnafu {
            path,
            found: format,
            newest: SST_FORMAT,
        }
    );
    Ok(())
}

/// The time-slice width a file's key-value metadata records; `None` for a file of one
/// slice.
pub(crate) fn file_slice_width(
    file: &ParquetMetaData,
    path: &str,
) -> Result<Option<i64>, StorageError> {
    let Some(value) = footer_value(file, TIME_SLICE_KEY) else {
        return Ok(None);
    };
    match value.parse::<i64>() {
        Ok(width) if width > 0 => Ok(Some(width)),
        _ => Err(StorageError::CorruptSst {
            path: path.to_string(),
            reason: format!("time-slice width {value:?} is not a positive integer"),
        }),
    }
}

/// The value of `key` in a file's key-value metadata.
fn footer_value<'a>(file: &'a ParquetMetaData, key: &str) -> Option<&'a str> {
    file.file_metadata()
        .key_value_metadata()
        .and_then(|pairs| pairs.iter().find(|pair| pair.key == key))
        .map(|pair| pair.value.as_deref().unwrap_or_default())
}

/// `row_groups` (ascending) of a file written in slices of `width`, grouped by the slice
/// their timestamps lie in (from the row groups' statistics), oldest slice first.
pub(crate) fn row_groups_by_slice(
    file: &ParquetMetaData,
    row_groups: Vec<usize>,
    ts_column: usize,
    width: i64,
    path: &str,
) -> Result<Vec<Vec<usize>>, StorageError> {
    let mut slices: Vec<(i64, Vec<usize>)> = Vec::new();
    for group in row_groups {
        let min = match file.row_group(group).column(ts_column).statistics() {
            Some(Statistics::Int64(stats)) => stats.min_opt().copied(),
            _ => None,
        };
        let Some(min) = min else {
            return Err(StorageError::CorruptSst {
                path: path.to_string(),
                reason: format!(
                    "row group {group} of a file in time slices has no timestamp statistics"
                ),
            });
        };
        let slice = slice_start(min, width);
        match slices.last_mut() {
            Some((last, groups)) if *last == slice => groups.push(group),
            Some((last, _)) if *last > slice => {
                return Err(StorageError::CorruptSst {
                    path: path.to_string(),
                    reason: format!(
                        "row group {group} lies in an earlier time slice than the one before it"
                    ),
                });
            }
            _ => slices.push((slice, vec![group])),
        }
    }
    Ok(slices.into_iter().map(|(_, groups)| groups).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: i64, end: i64) -> TimeRange {
        TimeRange { start, end }
    }

    #[test]
    fn a_file_of_fewer_than_two_slices_worth_of_rows_is_one_slice() {
        assert_eq!(slice_width(span(0, 999_999), 199_999, 100_000), None);
        assert!(slice_width(span(0, 999_999), 200_000, 100_000).is_some());
    }

    #[test]
    fn the_width_is_the_power_of_two_nearest_the_target_rows() {
        // 500 epochs of 10 s in ms, 1,000 series: 102,400 rows every 1,024,000 ms.
        assert_eq!(
            slice_width(span(0, 4_999_999), 500_000, 102_400),
            Some(1 << 20)
        );
        // Ideal 1,500: 2,048 is nearer than 1,024 on a log scale (ratios 1.37 and 1.46).
        assert_eq!(slice_width(span(0, 14_999), 1_000, 100), Some(2_048));
        // Ideal 1,400: 1,024 (1.37) is nearer than 2,048 (1.46).
        assert_eq!(slice_width(span(0, 13_999), 1_000, 100), Some(1_024));
    }

    #[test]
    fn widths_leave_at_most_about_a_thousand_slices() {
        // One timestamp a row: the ideal width is 1, but 2^20 rows over 2^20 units make
        // at most 1,024 slices of 1,024.
        assert_eq!(slice_width(span(0, (1 << 20) - 1), 1 << 20, 1), Some(1_024));
    }

    #[test]
    fn a_width_covering_the_span_or_beyond_the_timestamp_range_is_one_slice() {
        // Every row at one timestamp: no width splits it.
        assert_eq!(slice_width(span(7, 7), 1_000_000, 10), None);
        assert_eq!(slice_width(span(i64::MIN, i64::MAX), 2, 1), None);
    }

    #[test]
    fn time_slices_cut_a_range_at_aligned_boundaries() {
        assert_eq!(
            time_slices(span(150, 420), Some(100)),
            vec![
                span(150, 199),
                span(200, 299),
                span(300, 399),
                span(400, 420)
            ]
        );
        assert_eq!(
            time_slices(span(-5, 4), Some(10)),
            vec![span(-5, -1), span(0, 4)]
        );
        assert_eq!(time_slices(span(3, 9), None), vec![span(3, 9)]);
        // The last slice of the timestamp range does not overflow.
        assert_eq!(time_slices(span(i64::MAX - 5, i64::MAX), Some(4)).len(), 2);
    }

    #[test]
    fn one_slice_within_clips_the_range_to_the_file() {
        let file = span(0, 299);
        assert!(!one_slice_within(file, None, 100));
        assert!(one_slice_within(file, Some(span(100, 199)), 100));
        assert!(!one_slice_within(file, Some(span(150, 250)), 100));
        // Clipped to the file, -50..=99 is within the slice at 0.
        assert!(one_slice_within(file, Some(span(-50, 99)), 100));
        // No overlap at all: nothing to read, nothing out of order.
        assert!(one_slice_within(file, Some(span(400, 500)), 100));
    }
}
