//! [`RegionFlushTask`]: one flush of one region — which region, and why.
//!
//! The task answers nobody: its callers (and everything fenced behind it) wait in the
//! region's worker, which hears of the job's end through a [`FlushNotify`](crate::FlushNotify).

use strata_request::RegionId;

use crate::reason::FlushReason;

/// A flush to run for one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionFlushTask {
    region_id: RegionId,
    reason: FlushReason,
}

impl RegionFlushTask {
    /// A flush of `region_id` for `reason`.
    pub fn new(region_id: RegionId, reason: FlushReason) -> Self {
        Self { region_id, reason }
    }

    /// The region.
    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// Why the flush runs.
    pub fn reason(&self) -> FlushReason {
        self.reason
    }
}
