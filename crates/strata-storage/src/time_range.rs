//! [`TimeRange`]: an inclusive range of timestamps, and [`timestamp_values`] — the ground
//! floor every reader and writer of the crate measures time with.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, TimeUnit};

/// An inclusive time range in the region's timestamp unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First timestamp included.
    pub start: i64,
    /// Last timestamp included.
    pub end: i64,
}

impl TimeRange {
    /// Whether `ts` lies in the range.
    pub fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts <= self.end
    }

    /// Whether the two ranges share a timestamp (an empty range shares none).
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start <= other.end && other.start <= self.end
    }

    /// Whether no timestamp lies in the range (`start > end`).
    pub fn is_empty(&self) -> bool {
        self.start > self.end
    }

    /// The timestamps in both ranges (empty if they share none).
    pub fn intersection(&self, other: &TimeRange) -> TimeRange {
        TimeRange {
            start: self.start.max(other.start),
            end: self.end.min(other.end),
        }
    }
}

/// The values of a timestamp array as `i64`s in its own unit.
pub(crate) fn timestamp_values(array: &ArrayRef) -> Option<ScalarBuffer<i64>> {
    Some(match array.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive_opt::<TimestampMillisecondType>()?
            .values()
            .clone(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive_opt::<TimestampMicrosecondType>()?
            .values()
            .clone(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive_opt::<TimestampNanosecondType>()?
            .values()
            .clone(),
        _ => return None,
    })
}
