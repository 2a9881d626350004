//! [`FlushReason`]: why a region is flushed.

use std::fmt;

/// Why a flush was requested. [`as_str`](Self::as_str) is the stable label used in metrics
/// and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FlushReason {
    /// The global write buffer is full (or mutable memory reached half of it).
    EngineFull,
    /// A caller asked for it.
    Manual,
    /// The region has not flushed for `auto_flush_interval`.
    Periodic,
    /// An alter needs empty memtables.
    Alter,
    /// The region is handing over leadership.
    Downgrading,
    /// A region without WAL is closing and must not lose its memtables.
    Closing,
    /// The region reached its own write-buffer limit (`write_buffer_size`).
    RegionFull,
    /// The WAL replayed while opening the region passed the region's or the engine's
    /// flush threshold: flushed before the replay goes on, so an open stays in budget.
    Replay,
}

impl FlushReason {
    /// Every reason, for pre-registering metric labels.
    pub const ALL: [FlushReason; 8] = [
        FlushReason::EngineFull,
        FlushReason::Manual,
        FlushReason::Periodic,
        FlushReason::Alter,
        FlushReason::Downgrading,
        FlushReason::Closing,
        FlushReason::RegionFull,
        FlushReason::Replay,
    ];

    /// Stable lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::EngineFull => "engine_full",
            FlushReason::Manual => "manual",
            FlushReason::Periodic => "periodic",
            FlushReason::Alter => "alter",
            FlushReason::Downgrading => "downgrading",
            FlushReason::Closing => "closing",
            FlushReason::RegionFull => "region_full",
            FlushReason::Replay => "replay",
        }
    }
}

impl fmt::Display for FlushReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_and_distinct() {
        let labels: Vec<_> = FlushReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "engine_full",
                "manual",
                "periodic",
                "alter",
                "downgrading",
                "closing",
                "region_full",
                "replay"
            ]
        );
        assert_eq!(FlushReason::EngineFull.to_string(), "engine_full");
    }
}
