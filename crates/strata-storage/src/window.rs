//! Compaction time windows: fixed-width slices of a region's time axis.
//!
//! A file belongs to the window of its newest row; flushes write one file per window they
//! touch, and compaction merges the files of one window. Widths are whole seconds, turned
//! into the region's timestamp unit by [`window_width`].

use strata_request::RegionMetadata;

/// The widths [`infer_window_secs`] chooses from: 1 h, 2 h, 12 h, 1 d, 1 w.
pub const INFERRED_WINDOWS_SECS: [u64; 5] = [3_600, 7_200, 43_200, 86_400, 604_800];

/// `secs` seconds in the region's timestamp unit (at least 1).
pub fn window_width(metadata: &RegionMetadata, secs: u64) -> i64 {
    let millis = i64::try_from(secs.max(1))
        .unwrap_or(i64::MAX / 1_000)
        .saturating_mul(1_000);
    metadata
        .time_index_column()
        .data_type
        .timestamp_from_millis(millis)
        .unwrap_or(millis)
        .max(1)
}

/// The start of the window holding `ts` (windows are aligned to 0; negative timestamps
/// round down too).
pub fn window_start(ts: i64, width: i64) -> i64 {
    ts.div_euclid(width.max(1)).saturating_mul(width.max(1))
}

/// The smallest of [`INFERRED_WINDOWS_SECS`] at least as wide as `span` (a time span in
/// the region's unit), or the widest.
pub fn infer_window_secs(metadata: &RegionMetadata, span: i64) -> u64 {
    INFERRED_WINDOWS_SECS
        .into_iter()
        .find(|&secs| window_width(metadata, secs) >= span)
        .unwrap_or(INFERRED_WINDOWS_SECS[INFERRED_WINDOWS_SECS.len() - 1])
}

#[cfg(test)]
mod tests {
    use strata_request::{ColumnDataType, ColumnSchema, RegionId, RegionMetadataBuilder};

    use super::*;

    fn metadata(unit: ColumnDataType) -> RegionMetadata {
        RegionMetadataBuilder::new(RegionId::new(1, 1))
            .column(ColumnSchema::timestamp("ts", unit))
            .build()
            .unwrap()
    }

    #[test]
    fn widths_follow_the_timestamp_unit() {
        assert_eq!(
            window_width(&metadata(ColumnDataType::TimestampMillisecond), 3_600),
            3_600_000
        );
        assert_eq!(
            window_width(&metadata(ColumnDataType::TimestampNanosecond), 2),
            2_000_000_000
        );
        assert_eq!(
            window_width(&metadata(ColumnDataType::TimestampMillisecond), 0),
            1_000
        );
    }

    #[test]
    fn window_starts_round_down_also_before_the_epoch() {
        assert_eq!(window_start(0, 10), 0);
        assert_eq!(window_start(9, 10), 0);
        assert_eq!(window_start(10, 10), 10);
        assert_eq!(window_start(-1, 10), -10);
        assert_eq!(window_start(-10, 10), -10);
    }

    #[test]
    fn the_inferred_window_is_the_smallest_covering_the_span() {
        let m = metadata(ColumnDataType::TimestampMillisecond);
        assert_eq!(infer_window_secs(&m, 0), 3_600);
        assert_eq!(infer_window_secs(&m, 3_600_000), 3_600);
        assert_eq!(infer_window_secs(&m, 3_600_001), 7_200);
        assert_eq!(infer_window_secs(&m, 86_400_000), 86_400);
        assert_eq!(infer_window_secs(&m, i64::MAX), 604_800);
    }
}
