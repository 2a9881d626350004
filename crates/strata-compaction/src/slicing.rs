//! The time-slice width of a compaction's outputs, and the slice-by-slice merge that
//! writes them.
//!
//! An output window is merged one time slice after another: each pass reads only the
//! inputs' row groups in that slice (their statistics say which) and merges them by key,
//! so the output comes slice by slice as the SST writer wants it. Inputs written in slices
//! of a power-of-two width no wider than the output's lie in one output slice each and are
//! read once; an input of one slice (sorted by key throughout: every page has rows of
//! every slice) is decoded in full by every pass it overlaps, so the output stays one slice
//! when that would more than double the rows decoded.

use std::sync::Arc;

use futures::StreamExt;
use strata_storage::{
    BatchStream, FileMeta, KeyCodec, MergeOptions, OpenedSst, SstReadOptions, StorageError,
    TimeRange, merge, slice_width, time_slices,
};

/// Rows per batch while merging.
const BATCH_ROWS: usize = 8192;

/// The slice width of the output of `inputs` in `range`: the one [`slice_width`] picks for
/// their rows in range with `row_group_size` as the target, widened to the widest input's;
/// `None` (one slice, sorted by key, merged in one pass) when that is one slice or would
/// decode the rows of one-slice inputs more than twice.
pub(crate) fn output_slice_width(
    inputs: &[FileMeta],
    range: TimeRange,
    row_group_size: usize,
) -> Option<i64> {
    let overlapping: Vec<&FileMeta> = inputs
        .iter()
        .filter(|file| file.time_range().overlaps(&range))
        .collect();
    let rows: u64 = overlapping
        .iter()
        .map(|file| rows_within(file, range))
        .sum();
    let width = overlapping
        .iter()
        .filter_map(|file| file.time_slice)
        .fold(slice_width(range, rows, row_group_size as u64)?, i64::max);
    if time_slices(range, Some(width)).len() < 2 {
        return None;
    }
    let rereads: u64 = overlapping
        .iter()
        .filter(|file| file.time_slice.is_none())
        .map(|file| {
            let passes = time_slices(file.time_range().intersection(&range), Some(width)).len();
            let passes = passes as u64;
            rows_within(file, range).saturating_mul(passes.saturating_sub(1))
        })
        .sum();
    (rereads <= rows).then_some(width)
}

/// The rows of `file` in `range`, if its rows are spread evenly over its time span.
fn rows_within(file: &FileMeta, range: TimeRange) -> u64 {
    let span = file.time_range();
    let inside = span.intersection(&range);
    if inside.is_empty() {
        return 0;
    }
    let len = |r: TimeRange| (i128::from(r.end) - i128::from(r.start) + 1) as f64;
    (file.num_rows as f64 * (len(inside) / len(span))).ceil() as u64
}

/// The rows of `inputs` in `range`, merged as `options` says, slice by slice of `width`
/// (oldest first, each sorted by key; sorted by key throughout for `None`). Each pass reads
/// only its slice of the inputs; every input's footer is read once.
pub(crate) fn merged_slices(
    inputs: Vec<OpenedSst>,
    codec: Arc<KeyCodec>,
    range: TimeRange,
    width: Option<i64>,
    options: MergeOptions,
) -> BatchStream {
    let passes = futures::stream::iter(time_slices(range, width)).then(move |slice| {
        let (inputs, codec) = (inputs.clone(), codec.clone());
        async move {
            let mut sources: Vec<BatchStream> = Vec::with_capacity(inputs.len());
            for input in &inputs {
                sources.extend(
                    input
                        .read_slices({
                            let mut options = SstReadOptions::default();
                            options.projection = None;
                            options.time_range = Some(slice);
                            options.batch_rows = BATCH_ROWS;
                            options.row_group_slice = None;
                            options.rows_only = false;
                            options
                        })
                        .await?,
                );
            }
            Ok::<_, StorageError>(merge(codec, sources, options))
        }
    });
    Box::pin(
        passes
            .map(|pass| match pass {
                Ok(rows) => rows,
                Err(error) => Box::pin(futures::stream::once(std::future::ready(Err(error)))),
            })
            .flatten(),
    )
}

#[cfg(test)]
mod tests {
    use strata_request::RegionId;

    use super::*;

    fn file(start: i64, end: i64, rows: u64, time_slice: Option<i64>) -> FileMeta {
        {
            let mut file = strata_storage::testing::file_meta(RegionId::new(1, 1));
            file.level = 0;
            file.time_range = (start, end);
            file.num_rows = rows;
            file.num_row_groups = 1;
            file.file_size = 1;
            file.max_sequence = 1;
            file.checksum = 0;
            file.num_deletes = Some(0);
            file.time_slice = time_slice;
            file
        }
    }

    fn range(start: i64, end: i64) -> TimeRange {
        TimeRange { start, end }
    }

    #[test]
    fn sliced_inputs_give_a_sliced_output_at_least_as_wide_as_each() {
        // 4,000 rows over 0..4000, 100 a row group: the rule alone says 128.
        let inputs = [
            file(0, 1_999, 2_000, Some(128)),
            file(2_000, 3_999, 2_000, Some(512)),
        ];
        assert_eq!(output_slice_width(&inputs, range(0, 3_999), 100), Some(512));
        let narrow = [file(0, 3_999, 4_000, Some(64))];
        assert_eq!(output_slice_width(&narrow, range(0, 3_999), 100), Some(128));
    }

    #[test]
    fn a_large_one_slice_input_keeps_the_output_one_slice() {
        // Read in every one of ~31 passes: far more than twice its rows.
        let inputs = [
            file(0, 3_999, 4_000, None),
            file(0, 3_999, 4_000, Some(128)),
        ];
        assert_eq!(output_slice_width(&inputs, range(0, 3_999), 100), None);
        // A small one overlapping two passes is read twice: fine.
        let inputs = [file(0, 3_999, 8_000, Some(64)), file(120, 130, 20, None)];
        assert_eq!(output_slice_width(&inputs, range(0, 3_999), 100), Some(64));
    }

    #[test]
    fn few_rows_or_a_width_covering_the_window_are_one_slice() {
        assert_eq!(
            output_slice_width(&[file(0, 999, 150, Some(64))], range(0, 999), 100),
            None
        );
        assert_eq!(
            output_slice_width(&[file(0, 999, 9_000, Some(1 << 12))], range(0, 999), 100),
            None
        );
    }

    #[test]
    fn rows_within_a_range_are_its_share_of_the_span() {
        let f = file(0, 99, 1_000, None);
        assert_eq!(rows_within(&f, range(0, 49)), 500);
        assert_eq!(rows_within(&f, range(-100, 200)), 1_000);
        assert_eq!(rows_within(&f, range(100, 200)), 0);
    }
}
